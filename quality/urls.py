from django.urls import path

from . import views

app_name = "quality"
urlpatterns = [
    path("quality/", views.overview, name="overview"),
    path("quality/history/", views.history, name="history"),
    path("quality/compare/", views.compare, name="compare"),
    path("quality/cycles/<int:pk>/report.json", views.cycle_report, name="cycle_report"),
]
