"""The pure ML core of Routing ML: plain pandas/numpy/scikit-learn in, a model bundle out.

Nothing here imports Django, so the engine can be tested and benchmarked alone.
"""

from . import metrics
from .config import DEFAULT_FEATURES, BundleError, EngineConfig, FeatureSpec, TrainingCancelled, check_feature_weights
from .model import RoutingModel, verify_bundle
from .pipeline import TrainResult, select_candidate, train

__all__ = [
    "DEFAULT_FEATURES",
    "BundleError",
    "EngineConfig",
    "FeatureSpec",
    "RoutingModel",
    "TrainResult",
    "TrainingCancelled",
    "check_feature_weights",
    "metrics",
    "select_candidate",
    "train",
    "verify_bundle",
]
