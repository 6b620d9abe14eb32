from django.urls import path

from .api import PredictionView

urlpatterns = [
    path("predictions/", PredictionView.as_view(), name="predictions"),
]
