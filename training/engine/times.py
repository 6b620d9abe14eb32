"""Operation times: neighbour look-ups (baseline, standard fallback) and the learned estimators.

Targets and the baseline feature are on a log1p scale: times are lognormal-ish, and a
squared error in log space does not let a few very long operations dominate the fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, TransformerMixin
from sklearn.ensemble import HistGradientBoostingRegressor, StackingRegressor
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from threadpoolctl import ThreadpoolController

from .tables import IndexData, weighted_trimmed_mean

# Similarities can be <= 0 for far-away neighbours; they still vote, just barely.
MIN_WEIGHT = 1e-6
# At most this many categories per code family (the tree allows < 255); rare codes share one.
MAX_ONEHOT = 150
# The estimators are fitted and run on one thread: their work items are small (MLP
# mini-batches, tree node splits), and with two threads OpenBLAS/OpenMP spin-wait on each
# other; measured 3-5x slower on a 2-core machine, far worse when another process is busy.
_THREADS = ThreadpoolController()


def single_thread():
    """Context manager limiting BLAS and OpenMP to one thread (libraries are looked up once)."""
    return _THREADS.limit(limits=1)


def single_blas_thread():
    """Context manager limiting BLAS (not OpenMP) to one thread."""
    return _THREADS.limit(limits=1, user_api="blas")


@dataclass
class TimeLookup:
    """Per predicted operation (arrays of length P), from the neighbours' tables."""

    base_run: np.ndarray  # similarity-weighted 10 %-trimmed mean of neighbours' actual medians (NaN: none)
    base_setup: np.ndarray
    std_run: np.ndarray  # similarity-weighted mean of neighbours' standard routing times
    std_setup: np.ndarray
    run_p10_ratio: np.ndarray  # neighbours' p10 / median, to spread any point estimate
    run_p90_ratio: np.ndarray
    setup_p10_ratio: np.ndarray
    setup_p90_ratio: np.ndarray
    sample_count: np.ndarray  # neighbours' work-result rows behind the baseline

    def of(self, target: str) -> tuple[np.ndarray, np.ndarray]:
        """(neighbour baseline, standard) minutes of a target ("run" or "setup")."""
        return (self.base_run, self.std_run) if target == "run" else (self.base_setup, self.std_setup)


def _weighted_mean(groups: np.ndarray, values: np.ndarray, weights: np.ndarray, n: int) -> np.ndarray:
    ok = np.isfinite(values)
    num = np.bincount(groups[ok], weights=(weights * values)[ok], minlength=n)
    den = np.bincount(groups[ok], weights=weights[ok], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def main_directions(emb: np.ndarray, dims: int) -> np.ndarray | None:
    """(d, dims) the first `dims` right singular vectors of `emb` (n, d); None when d <= dims already."""
    if emb.shape[1] <= dims or emb.shape[0] == 0:
        return None
    _, _, vt = np.linalg.svd(np.asarray(emb, dtype=np.float64), full_matrices=False)
    directions = np.zeros((emb.shape[1], dims))
    directions[:, : min(dims, vt.shape[0])] = vt[:dims].T
    return directions


def lookup_times(index: IndexData, stride: int, nbr: np.ndarray, sims: np.ndarray, op_query: np.ndarray, op_token: np.ndarray) -> TimeLookup:
    """Times of the predicted operations `(op_query[p], op_token[p])` from the query's neighbours.

    `op_token` is `Vocab.tokens(job, occurrence)`: every neighbour whose current routing has the
    same JOB_CD at the same occurrence (its first GRIND for a first GRIND) contributes, whatever
    its signature, weighted by its similarity. `stride` is `Vocab.stride`.
    """
    n_ops = op_query.size
    k = nbr.shape[1]
    nan = np.full(n_ops, np.nan)
    if n_ops == 0 or k == 0 or index.pair_key.size == 0:
        return TimeLookup(nan, nan, nan, nan, nan, nan, nan, nan, np.zeros(n_ops, dtype=np.int64))
    keys = (nbr[op_query] * stride + np.asarray(op_token, dtype=np.int64)[:, None]).ravel()
    weights = np.maximum(sims[op_query], MIN_WEIGHT).ravel().astype(np.float64)
    pos = np.minimum(np.searchsorted(index.pair_key, keys), index.pair_key.size - 1)
    found = index.pair_key[pos] == keys
    g = np.repeat(np.arange(n_ops), k)[found]
    p = pos[found]
    w = weights[found]

    def col(name: str) -> np.ndarray:
        return np.asarray(getattr(index, name)[p], dtype=np.float64)

    counts = np.asarray(index.pair_count[p], dtype=np.int64)
    run_med, setup_med = col("pair_run_med"), col("pair_setup_med")
    run_ok = (counts > 0) & np.isfinite(run_med)
    setup_ok = (counts > 0) & np.isfinite(setup_med)
    with np.errstate(invalid="ignore", divide="ignore"):
        run_lo = np.where(run_med > 0, col("pair_run_p10") / run_med, np.nan)
        run_hi = np.where(run_med > 0, col("pair_run_p90") / run_med, np.nan)
        setup_lo = np.where(setup_med > 0, col("pair_setup_p10") / setup_med, np.nan)
        setup_hi = np.where(setup_med > 0, col("pair_setup_p90") / setup_med, np.nan)
    return TimeLookup(
        base_run=weighted_trimmed_mean(g[run_ok], run_med[run_ok], w[run_ok], n_ops),
        base_setup=weighted_trimmed_mean(g[setup_ok], setup_med[setup_ok], w[setup_ok], n_ops),
        std_run=_weighted_mean(g, col("pair_std_run"), w, n_ops),
        std_setup=_weighted_mean(g, col("pair_std_setup"), w, n_ops),
        run_p10_ratio=_weighted_mean(g[run_ok], run_lo[run_ok], w[run_ok], n_ops),
        run_p90_ratio=_weighted_mean(g[run_ok], run_hi[run_ok], w[run_ok], n_ops),
        setup_p10_ratio=_weighted_mean(g[setup_ok], setup_lo[setup_ok], w[setup_ok], n_ops),
        setup_p90_ratio=_weighted_mean(g[setup_ok], setup_hi[setup_ok], w[setup_ok], n_ops),
        sample_count=np.bincount(g, weights=counts, minlength=n_ops).astype(np.int64),
    )


class BaselineColumn(RegressorMixin, BaseEstimator):
    """'Predicts' one input column: lets the stacker weigh the neighbour baseline directly."""

    def __init__(self, column: int = 0) -> None:
        self.column = column

    def fit(self, X: np.ndarray, y: np.ndarray) -> BaselineColumn:  # noqa: N803 - sklearn naming
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        return np.asarray(X[:, self.column], dtype=np.float64)


class ResidualBoost(RegressorMixin, BaseEstimator):
    """Per-operation linear model in log space, then gradient-boosted trees on what it leaves.

    Operation times often follow power laws of the item's sizes (run time ~ length^a x thickness^b,
    per operation): in log space that is linear, with slopes of its own per JOB_CD. Stage one fits,
    for each JOB_CD code, a ridge regression of log1p(minutes) on the neighbour baseline, the standard
    time and the item's numeric attributes (each with a missing-value indicator), shrunk towards one
    regression over all operations so that a rare JOB_CD borrows from the others. Stage two fits
    boosted trees on the residual with every feature (embedding, codes, ...): what is not linear.
    One fit each, no cross-validation: cheap enough to learn from several times the network's rows.
    """

    def __init__(
        self, job_column: int = 0, linear_columns: tuple[int, ...] = (), shrink: float = 20.0,
        max_iter: int = 100, learning_rate: float = 0.2, max_leaf_nodes: int = 31, seed: int = 0,
    ) -> None:
        self.job_column = job_column
        self.linear_columns = linear_columns
        self.shrink = shrink
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.seed = seed

    def _design(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        values = np.asarray(X[:, list(self.linear_columns)], dtype=np.float64)
        missing = values == MISSING_NUMERIC
        return np.hstack([np.ones((len(values), 1)), np.where(missing, 0.0, values), missing])

    def _linear(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        jobs = np.clip(X[:, self.job_column].astype(np.int64), 0, self.coef_.shape[0] - 1)
        return np.einsum("ij,ij->i", self._design(X), self.coef_[jobs])

    def fit(self, X: np.ndarray, y: np.ndarray) -> ResidualBoost:  # noqa: N803 - sklearn naming
        y = np.asarray(y, dtype=np.float64)
        z = self._design(X)
        q = z.shape[1]
        ridge = np.eye(q) * 1e-3
        ridge[0, 0] = 0.0
        shared = np.linalg.lstsq(z.T @ z + ridge * len(y), z.T @ y, rcond=None)[0]
        jobs = X[:, self.job_column].astype(np.int64)
        self.coef_ = np.tile(shared, (int(jobs.max(initial=0)) + 1, 1))
        prior = np.eye(q) * self.shrink
        for job in np.unique(jobs):
            rows = jobs == job
            zj = z[rows]
            self.coef_[job] = np.linalg.lstsq(zj.T @ zj + prior, zj.T @ y[rows] + prior @ shared, rcond=None)[0]
        self.tree_ = HistGradientBoostingRegressor(
            max_iter=self.max_iter, learning_rate=self.learning_rate, max_leaf_nodes=self.max_leaf_nodes,
            early_stopping=False, random_state=self.seed,
        ).fit(X, y - self._linear(X))
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        return self._linear(X) + self.tree_.predict(X)


class TimeFeatures:
    """Builds the estimator input: item embedding, JOB_CD / RES_CD codes, log baseline, log standard.

    JOB_CD and RES_CD stay single integer columns here: the tree treats them as native
    categorical features and the MLP one-hot encodes them inside its pipeline. Handing
    ~300 one-hot columns to the tree instead made it several times slower.
    """

    def __init__(self, dim: int, job_counts: np.ndarray, res_counts: np.ndarray, n_numeric: int = 0, projection: np.ndarray | None = None) -> None:
        # A wide item embedding (one-hot, no SVD) enters the estimators through its main directions:
        # `projection` (embedding dim, dim) keeps their cost bounded by `dim`, not by the encoding.
        self.projection = None if projection is None else np.ascontiguousarray(projection, dtype=np.float32)
        self.dim = dim if projection is None else int(projection.shape[1])
        self.job_col, self.n_job_cols = self._columns(job_counts)
        self.res_col, self.n_res_cols = self._columns(res_counts)
        # The item's numeric attributes as such (see `numeric_attributes`): the embedding mixes and
        # weights them for similarity, but a time scales with the size itself.
        self.n_numeric = n_numeric

    @staticmethod
    def _columns(counts: np.ndarray) -> tuple[np.ndarray, int]:
        # The most frequent codes keep their own category; the rest share the last one.
        order = np.argsort(-counts, kind="stable")
        keep = order[: min(MAX_ONEHOT, counts.size)]
        col = np.full(counts.size, keep.size, dtype=np.int64)
        col[keep] = np.arange(keep.size)
        return col, keep.size + 1

    @property
    def code_columns(self) -> list[int]:
        return [self.dim, self.dim + 1]

    @property
    def baseline_column(self) -> int:
        return self.dim + 2

    @property
    def width(self) -> int:
        return self.dim + 6 + getattr(self, "n_numeric", 0)

    def build(
        self, emb: np.ndarray, op_job: np.ndarray, op_res: np.ndarray, base: np.ndarray, std: np.ndarray, numeric: np.ndarray | None = None
    ) -> np.ndarray:
        """Feature matrix (P, width) float32 for operations with embeddings `emb` (P, dim).

        `base` and `std` are the target's neighbour baseline and standard minutes (NaN: none);
        `numeric` (P, n_numeric) the items' numeric attributes (`numeric_attributes`; None: unknown).
        """
        n = emb.shape[0]
        x = np.empty((n, self.width), dtype=np.float32)
        projection = getattr(self, "projection", None)
        x[:, : self.dim] = emb if projection is None else emb @ projection
        x[:, self.dim] = self.job_col[op_job]
        x[:, self.dim + 1] = self.res_col[op_res]
        std_missing = ~np.isfinite(std)
        log_std = np.log1p(np.where(std_missing, 0.0, np.maximum(std, 0.0)))
        base_missing = ~np.isfinite(base)
        # Without neighbour actuals the standard time stands in, flagged by the indicator.
        log_base = np.where(base_missing, log_std, np.log1p(np.maximum(np.where(base_missing, 0.0, base), 0.0)))
        c = self.baseline_column
        x[:, c] = log_base
        x[:, c + 1] = base_missing
        x[:, c + 2] = log_std
        x[:, c + 3] = std_missing
        n_numeric = getattr(self, "n_numeric", 0)
        if n_numeric:
            x[:, c + 4 :] = MISSING_NUMERIC if numeric is None else numeric[:, :n_numeric]
        return x


class CodesOneHotScaled(TransformerMixin, BaseEstimator):
    """One-hot of the integer code columns + standard scaling of the others, in plain numpy.

    Does what ColumnTransformer(OneHotEncoder, StandardScaler) does, without its per-call
    overhead (~3 ms per prediction, more than the network itself).
    """

    def __init__(self, code_columns: tuple[int, ...] = (), n_codes: tuple[int, ...] = ()) -> None:
        self.code_columns = code_columns
        self.n_codes = n_codes

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> CodesOneHotScaled:  # noqa: N803 - sklearn naming
        self.value_columns_ = np.array([c for c in range(X.shape[1]) if c not in self.code_columns], dtype=np.int64)
        values = np.asarray(X[:, self.value_columns_], dtype=np.float64)
        self.mean_ = values.mean(axis=0)
        std = values.std(axis=0)
        self.scale_ = np.where(std > 0, std, 1.0)
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        n = X.shape[0]
        width = sum(self.n_codes) + self.value_columns_.size
        out = np.zeros((n, width), dtype=np.float32)
        offset = 0
        rows = np.arange(n)
        for column, n_codes in zip(self.code_columns, self.n_codes, strict=True):
            codes = np.clip(X[:, column].astype(np.int64), 0, n_codes - 1)
            out[rows, offset + codes] = 1.0
            offset += n_codes
        out[:, offset:] = (X[:, self.value_columns_] - self.mean_) / self.scale_
        return out


def make_estimator(name: str, features: TimeFeatures, seed: int, n_rows: int = 20_000) -> BaseEstimator:
    """A fresh, unfitted time estimator for candidate `name` ("mlp" or "stacking"), for either target.

    Sizes are set for training speed at ~20k rows (measured: MLP ~1.3 s, tree ~0.6 s on one
    core); larger networks or more trees did not improve the held-out error on demo data.
    """
    # Large mini-batches are cheaper per epoch; stay well below a stacking fold's size.
    batch_size = int(min(512, max(16, n_rows // 4)))

    def mlp() -> BaseEstimator:
        return make_pipeline(
            CodesOneHotScaled(tuple(features.code_columns), (features.n_job_cols, features.n_res_cols)),
            MLPRegressor(
                hidden_layer_sizes=(64, 32),
                alpha=1e-3,
                batch_size=batch_size,
                learning_rate_init=2e-3,
                max_iter=25,
                early_stopping=True,
                n_iter_no_change=4,
                random_state=seed,
            ),
        )

    if name == "mlp":
        return mlp()
    if name == "boost":
        c = features.baseline_column
        return ResidualBoost(features.code_columns[0], tuple(range(c, features.width)), seed=seed)
    if name == "stacking":
        # Codes go to the tree as plain ordinal numbers: its native categorical support wraps
        # every predict in a ColumnTransformer (~3 ms per call); the baseline feature already
        # carries the per-job scale, so the tree loses little.
        tree = HistGradientBoostingRegressor(max_iter=60, learning_rate=0.15, early_stopping=False, random_state=seed)
        return StackingRegressor(
            estimators=[("baseline", BaselineColumn(features.baseline_column)), ("tree", tree), ("mlp", mlp())],
            final_estimator=RidgeCV(alphas=(0.01, 0.1, 1.0, 10.0)),
            cv=KFold(3, shuffle=True, random_state=seed),
        )
    raise ValueError(f"unknown time estimator {name!r}")


class _FastTrees:
    """All trees of a fitted HistGradientBoostingRegressor, walked together in numpy.

    sklearn's own predict spends ~2 ms per call in validation and one Python call per
    tree; for the handful of operations of an interactive prediction this walks all
    trees at once, one vectorised step per tree level. Same decisions as sklearn's
    predictor (numeric splits, NaN to the `missing_go_to_left` side).
    """

    def __init__(self, model: HistGradientBoostingRegressor) -> None:
        trees = [predictors[0].nodes for predictors in model._predictors]
        sizes = np.array([len(t) for t in trees])
        offsets = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        nodes = np.concatenate(trees)
        shift = np.repeat(offsets, sizes)
        self.roots = offsets.astype(np.int64)
        self.feature = nodes["feature_idx"].astype(np.int64)
        self.threshold = nodes["num_threshold"].astype(np.float64)
        self.missing_left = nodes["missing_go_to_left"].astype(bool)
        self.left = nodes["left"].astype(np.int64) + shift
        self.right = nodes["right"].astype(np.int64) + shift
        self.is_leaf = nodes["is_leaf"].astype(bool)
        self.value = nodes["value"].astype(np.float64)
        self.baseline = float(np.ravel(model._baseline_prediction)[0])

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        rows = np.arange(x.shape[0])[:, None]
        node = np.broadcast_to(self.roots, (x.shape[0], self.roots.size)).copy()
        while True:
            inner = ~self.is_leaf[node]
            if not inner.any():
                break
            value = x[rows, self.feature[node]]
            go_left = np.where(np.isnan(value), self.missing_left[node], value <= self.threshold[node])
            node = np.where(inner, np.where(go_left, self.left[node], self.right[node]), node)
        return self.baseline + self.value[node].sum(axis=1)


class _FastMLP:
    """Forward pass of Pipeline(CodesOneHotScaled, MLPRegressor) without sklearn's per-call checks."""

    def __init__(self, pipeline: BaseEstimator) -> None:
        self.encode, network = pipeline.steps[0][1], pipeline.steps[-1][1]
        self.weights = [w.astype(np.float64) for w in network.coefs_]
        self.biases = [b.astype(np.float64) for b in network.intercepts_]

    def predict(self, x: np.ndarray) -> np.ndarray:
        h = self.encode.transform(x).astype(np.float64)
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = h @ w + b
            if i < len(self.weights) - 1:
                np.maximum(h, 0.0, out=h)  # relu; the output layer is linear
        return h.ravel()


def _fast_predictor(estimator: BaseEstimator):
    """A callable equivalent to `estimator.predict` for the estimators built here, else None."""
    if isinstance(estimator, HistGradientBoostingRegressor) and estimator.n_trees_per_iteration_ == 1 and estimator.is_categorical_ is None:
        return _FastTrees(estimator).predict
    if isinstance(estimator, BaseEstimator) and hasattr(estimator, "steps") and isinstance(estimator.steps[0][1], CodesOneHotScaled):
        network = estimator.steps[-1][1]
        if isinstance(network, MLPRegressor) and network.activation == "relu" and len(estimator.steps) == 2:
            return _FastMLP(estimator).predict
    if isinstance(estimator, ResidualBoost):
        trees = _fast_predictor(estimator.tree_)
        return None if trees is None else (lambda x: estimator._linear(x) + trees(x))
    if isinstance(estimator, StackingRegressor) and not estimator.passthrough and isinstance(estimator.final_estimator_, RidgeCV):
        parts = [_fast_predictor(e) if not isinstance(e, BaselineColumn) else e.predict for e in estimator.estimators_]
        if all(p is not None for p in parts):
            coef = np.ravel(estimator.final_estimator_.coef_).astype(np.float64)
            intercept = float(np.ravel(estimator.final_estimator_.intercept_)[0])
            return lambda x: np.column_stack([p(x) for p in parts]) @ coef + intercept
    return None


# Up to this many operations the numpy re-implementation predicts; above, sklearn's own
# (multi-threaded, compiled) predict is faster.
FAST_PREDICT_ROWS = 256


TARGETS = ("run", "setup")
# Stands for an empty numeric attribute in the estimators' input (real values are log1p of sizes >= 0).
MISSING_NUMERIC = -1.0


def numeric_attributes(rows, names: tuple[str, ...]) -> np.ndarray:
    """(n, len(names)) float32: signed log1p of each numeric attribute, MISSING_NUMERIC where empty.

    `rows` is a DataFrame or, for a few rows, a dict of column lists (plain Python per value there:
    pandas' per-call overhead would dominate an interactive prediction).
    """
    import math

    import pandas as pd

    small = isinstance(rows, dict)
    n = max((len(v) for v in rows.values()), default=0) if small else len(rows)
    out = np.full((n, len(names)), MISSING_NUMERIC, dtype=np.float32)
    for j, name in enumerate(names):
        if small:
            for i, value in enumerate(rows.get(name) or ()):
                try:
                    x = float(value) if value is not None else math.nan
                except (TypeError, ValueError):
                    continue
                if math.isfinite(x):
                    out[i, j] = math.copysign(math.log1p(abs(x)), x)
        elif name in rows.columns:
            values = pd.to_numeric(rows[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
            ok = np.isfinite(values)
            out[ok, j] = np.sign(values[ok]) * np.log1p(np.abs(values[ok]))
    return out


@dataclass
class TimeModel:
    """A fitted estimator of log1p(minutes) for one target with its feature builder.

    `target` "run" estimates run minutes per unit, "setup" setup minutes per operation; the
    features are the same, with that target's neighbour baseline and standard time.
    """

    name: str
    features: TimeFeatures
    estimator: BaseEstimator
    target: str = "run"

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"unknown time target {self.target!r}; choose from {TARGETS}")
        self._fast = _fast_predictor(self.estimator)

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._fast = _fast_predictor(self.estimator)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_fast"}

    def predict_log(self, x: np.ndarray) -> np.ndarray:
        """log1p(minutes) for a feature matrix from `features.build`."""
        if self._fast is not None and x.shape[0] <= FAST_PREDICT_ROWS:
            return self._fast(x)
        with single_thread():
            return self.estimator.predict(x)

    def predict_minutes(
        self, emb: np.ndarray, op_job: np.ndarray, op_res: np.ndarray, base: np.ndarray, std: np.ndarray, numeric: np.ndarray | None = None
    ) -> np.ndarray:
        """Minutes (>= 0) of this target for the given operations; `base`/`std` are the target's neighbour and standard times."""
        if emb.shape[0] == 0:
            return np.zeros(0)
        x = self.features.build(emb, op_job, op_res, base, std, numeric)
        # Clip in log space: an extrapolating network must not overflow expm1.
        return np.expm1(np.clip(self.predict_log(x), 0.0, 20.0))
