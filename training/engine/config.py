"""Configuration objects and errors of the routing engine.

Everything here is plain data so that the Django side can store a config as JSON
(`EngineConfig.to_dict` / `EngineConfig.from_dict`) and rebuild it later.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

CATEGORICAL = "categorical"
NUMERIC = "numeric"
CANDIDATES = ("baseline", "mlp", "stacking", "boost")
# "boost" (per-operation linear model + trees on the residual) beat mlp and stacking on every demo
# profile's held-out times at a fraction of their cost; both stay available to a training job.
DEFAULT_CANDIDATES = ("baseline", "boost")
ROUTING_CANDIDATES = ("vote", "classifier")
SIZE_TRANSFORMS = ("log", "linear")


class TrainingCancelled(Exception):
    """Raised by a `check_cancel` callback to stop `train` between two stages."""


class BundleError(Exception):
    """A model bundle on disk is missing, incomplete or corrupt (the message names the file)."""


@dataclass(frozen=True)
class FeatureSpec:
    """One item attribute used for similarity.

    `weight` multiplies the feature's columns *after* they are scaled, so it really
    changes distances (a weight applied before a scaler would be scaled away again).
    A weight of 0 switches the feature off.
    """

    name: str
    kind: Literal["categorical", "numeric"]
    weight: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in (CATEGORICAL, NUMERIC):
            raise ValueError(f"feature {self.name!r}: kind must be 'categorical' or 'numeric', not {self.kind!r}")
        if not self.weight >= 0:
            raise ValueError(f"feature {self.name!r}: weight must be >= 0, not {self.weight!r}")


def check_feature_weights(weights: Any, features: tuple[FeatureSpec, ...] | None = None) -> dict[str, float]:
    """`{feature: weight}` as floats, or ValueError naming what is wrong (unknown feature, not a number, negative).

    The names are the ERP column names of `features` (default: DEFAULT_FEATURES); a weight of 0
    switches a feature off, a positive weight also switches on one that is off by default.
    """
    import math

    known = {f.name for f in (features or DEFAULT_FEATURES)}
    if not isinstance(weights, dict):
        raise ValueError('feature weights must be an object of {"FEATURE": weight}, e.g. {"OUTDIAMETER": 2.0}')
    clean: dict[str, float] = {}
    for name, value in weights.items():
        if name not in known:
            raise ValueError(f"unknown feature {name!r}; choose from {', '.join(sorted(known))}")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise ValueError(f"feature {name!r}: the weight must be a number >= 0, not {value!r}")
        clean[name] = float(value)
    return clean


def _cat(name: str, weight: float = 1.0) -> FeatureSpec:
    return FeatureSpec(name, CATEGORICAL, weight)


def _num(name: str, weight: float = 1.0) -> FeatureSpec:
    return FeatureSpec(name, NUMERIC, weight)


# Part type, material, groups and seal types decide which operations an item needs; sizes
# decide the work centre and the times. Free text with one value per item (name, drawing
# number) only adds noise to the similarity, so it is listed with weight 0 (off) so that an
# admin sees it and can switch it on.
DEFAULT_FEATURES: tuple[FeatureSpec, ...] = (
    _cat("PART_TYPE", 2.0),
    _cat("PartNm", 1.0),
    _cat("ITEM_TYPE", 1.0),
    _cat("ITEM_ACCT", 0.5),
    _cat("ITEM_UNIT", 0.5),
    _cat("ITEM_MATERIAL", 1.5),
    _cat("MATERIAL_DESC", 0.5),
    _cat("RAW_MATL_KIND", 1.0),
    _cat("ITEM_GRP1", 1.0),
    _cat("GROUP1", 1.0),
    _cat("GROUP2", 1.0),
    _cat("STANDARD_YN", 0.5),
    _cat("SealTypeGrup", 1.0),
    _cat("IN_SEALTYPE_CD", 1.0),
    _cat("MID_SEALTYPE_CD", 1.0),
    _cat("OUT_SEALTYPE_CD", 1.0),
    _cat("DRAW_REV", 0.0),
    _cat("DRAW_NO", 0.0),
    _cat("ITEM_NM", 0.0),
    _num("OUTDIAMETER", 1.5),
    _num("INDIAMETER", 1.0),
    _num("OUTTHICKNESS", 1.0),
    _num("IN_SEALSIZE", 1.0),
    _num("MID_SEALSIZE", 1.0),
    _num("OUT_SEALSIZE", 1.0),
    _num("ROTATE_CLOCKWISE", 0.5),
    _num("ROTATE_CTRCLOCKWISE", 0.5),
)


@dataclass(frozen=True)
class EngineConfig:
    """Parameters of one training run (stored in the bundle's manifest)."""

    features: tuple[FeatureSpec, ...] = DEFAULT_FEATURES
    n_components: int = 32
    top_k: int = 20
    holdout_share: float = 0.1
    max_holdout_items: int = 5000
    candidates: tuple[str, ...] = DEFAULT_CANDIDATES
    # A factory with at most this many items with actual times also tries "stacking" wherever "boost" is a
    # candidate (0: only the candidates given). There its few seconds buy what the tree alone lacks: over
    # 54 bench_profiles trainings (3 profiles x 3,000 / 8,000 / 20,000 items x 6 seeds) 51 met the issue 9
    # targets against 45 without, most of the gain at 3,000 items; at 325,000 items it would cost ~10 s of
    # a training for little.
    stacking_up_to_items: int = 20_000
    min_improvement_pct: float = 5.0
    seed: int = 0
    # One-hot columns per categorical feature (the most frequent values; the rest is "other").
    max_categories: int = 64
    # A value seen fewer times than this goes to "other": a one-off value cannot make two items similar.
    min_category_count: int = 2
    # Rows (item, operation) used to fit the mlp/stacking time estimators: bounds training time at any
    # scale. 30,000 rather than 20,000: on the fabrication profile (long routings) run-time MAE went from
    # 0.86x to 0.81x of the plain kNN's, for ~40 % more estimator fitting.
    max_time_rows: int = 30_000
    # The same for "boost": one tree fit, no cross-validation, so it can afford more rows.
    max_boost_rows: int = 60_000
    # The widest item embedding the search may choose ("none" counts as the encoded width). A wide
    # embedding can route better but every neighbour search costs in proportion (and prunes worse
    # above ~32 dimensions): a factory that needs faster answers sets 32.
    max_embedding_width: int = 256
    # The time estimators see the item embedding through at most this many main directions.
    time_embedding_dims: int = 32
    # How numeric attributes are compared: "log" (sizes spanning decades) or "linear".
    size_transform: str = "log"
    # Search k, feature weights, size transform and embedding width on held-out items (see engine.search).
    search: bool = True
    # The feature weights came from an admin: the search keeps them and tunes the rest.
    fixed_weights: bool = False
    # Items per search trial: a sample of the index and of the held-out items (bounds its cost at any scale).
    search_index_items: int = 20_000
    search_query_items: int = 1_500
    # Share of items (stratified by PART_TYPE) kept out of every learned fit, so that quality cycles and
    # the deployment gate grade a version on items it never learned from; renewed at each training.
    monitoring_share: float = 0.2
    # ... but at least this many (never more than half the items): a small factory still gets a
    # monitoring set that holds enough recently produced items for a cycle's sample.
    min_monitoring_items: int = 1_000
    max_monitoring_items: int = 50_000
    routing_candidates: tuple[str, ...] = ROUTING_CANDIDATES
    # Items whose neighbours' votes train the routing classifier.
    max_classifier_items: int = 6_000
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Accept lists (from JSON) and dicts for features, and normalise to tuples.
        feats = tuple(f if isinstance(f, FeatureSpec) else FeatureSpec(**f) for f in self.features)
        object.__setattr__(self, "features", feats)
        object.__setattr__(self, "candidates", tuple(self.candidates))
        object.__setattr__(self, "routing_candidates", tuple(self.routing_candidates))
        unknown = set(self.candidates) - set(CANDIDATES)
        if unknown:
            raise ValueError(f"unknown candidates {sorted(unknown)}; choose from {CANDIDATES}")
        unknown = set(self.routing_candidates) - set(ROUTING_CANDIDATES)
        if unknown:
            raise ValueError(f"unknown routing candidates {sorted(unknown)}; choose from {ROUTING_CANDIDATES}")
        if self.size_transform not in SIZE_TRANSFORMS:
            raise ValueError(f"size_transform must be one of {SIZE_TRANSFORMS}, not {self.size_transform!r}")
        if not 0 <= self.monitoring_share < 1:
            raise ValueError("monitoring_share must be in [0, 1)")
        names = [f.name for f in feats]
        if len(names) != len(set(names)):
            raise ValueError("feature names must be unique")
        if self.n_components < 0 or self.top_k < 1:
            raise ValueError("n_components must be >= 0 (0: no embedding) and top_k >= 1")
        if not 0 <= self.holdout_share < 1:
            raise ValueError("holdout_share must be in [0, 1)")
        if self.stacking_up_to_items < 0:
            raise ValueError("stacking_up_to_items must be >= 0 (0: only the candidates given)")

    @property
    def active_features(self) -> tuple[FeatureSpec, ...]:
        """Features with a positive weight (weight 0 means off)."""
        return tuple(f for f in self.features if f.weight > 0)

    def feature_weights(self) -> dict[str, float]:
        """`{name: weight}` of every listed feature, as shown to admins."""
        return {f.name: f.weight for f in self.features}

    def with_weights(self, weights: dict[str, float]) -> EngineConfig:
        """A copy with some feature weights replaced (unknown names and negative weights are refused)."""
        weights = check_feature_weights(weights, self.features)
        feats = tuple(FeatureSpec(f.name, f.kind, float(weights.get(f.name, f.weight))) for f in self.features)
        return self.replace(features=feats)

    def replace(self, **changes: Any) -> EngineConfig:
        """A copy with some fields changed."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data.update(changes)
        return EngineConfig(**data)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        data = asdict(self)
        data["features"] = [asdict(f) for f in self.features]
        data["candidates"] = list(self.candidates)
        data["routing_candidates"] = list(self.routing_candidates)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineConfig:
        """Rebuild from `to_dict` output; unknown keys are ignored so old manifests still load."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
