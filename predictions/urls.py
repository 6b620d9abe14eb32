from django.urls import path

from . import views

app_name = "predictions"

urlpatterns = [
    path("predict/", views.predict, name="predict"),
    path("predict/r/<str:qid>/", views.result, name="result"),
    path("predict/r/<str:qid>.csv", views.download_csv, name="download_csv"),
    path("predict/r/<str:qid>.json", views.download_json, name="download_json"),
    path("reviews/", views.my_reviews, name="reviews"),
    path("review/<path:item_cd>/", views.review, name="review"),
    path("items/<path:item_cd>/", views.item_detail, name="item"),
    path("predict/assets/plotly-<str:version>.min.js", views.plotly_js, name="plotly_js"),
]
