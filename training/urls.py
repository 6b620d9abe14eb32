from rest_framework.routers import SimpleRouter

from .api import TrainingJobViewSet

router = SimpleRouter()
router.register("training/jobs", TrainingJobViewSet, basename="training-job")
urlpatterns = router.urls
