from rest_framework.routers import SimpleRouter

from .api import ModelVersionViewSet

router = SimpleRouter()
router.register("models", ModelVersionViewSet, basename="model-version")
urlpatterns = router.urls
