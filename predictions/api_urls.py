from django.urls import path

from .api import PredictionView, ReviewExportView, ReviewListView

urlpatterns = [
    path("predictions/", PredictionView.as_view(), name="predictions"),
    path("reviews/", ReviewListView.as_view(), name="reviews"),
    path("reviews/export.csv", ReviewExportView.as_view(), name="reviews-export"),
]
