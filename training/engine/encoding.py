"""Item attributes → sparse feature matrix → L2-normalised float32 embedding.

Categorical features become one-hot columns of their frequent values plus an "other" and a
"missing" column; numeric features become a signed log1p, robust-scaled value plus a missing
indicator. Every feature therefore produces exactly one non-zero per item, which lets the
matrix be built as CSR in one shot without a Python loop over rows. The feature weight is
multiplied in *after* scaling. A TruncatedSVD then compresses the matrix to a few dozen
dimensions for a fast dense cosine search.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.decomposition import TruncatedSVD

from .config import CATEGORICAL, EngineConfig, FeatureSpec

# Up to this many rows, encoding runs per value in plain Python (faster than pandas there).
SMALL_FRAME = 32
# Scaled numerics are clipped so that one absurd value (a typo of 10^6 mm) cannot dominate a distance.
NUMERIC_CLIP = 5.0


def factorize_categorical(values: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Codes into a list of cleaned distinct values; -1 = missing.

    Cleaning (str + strip, empty → missing) runs on the few distinct values only, never per row.
    """
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    cleaned = [str(u).strip() for u in uniques]
    distinct = sorted({c for c in cleaned if c})
    position = {c: i for i, c in enumerate(distinct)}
    remap = np.array([position.get(c, -1) for c in cleaned] + [-1], dtype=np.int64)
    # codes == -1 indexes the trailing -1 of `remap`, so missing stays missing.
    return remap[codes], distinct


def small_columns(frame: pd.DataFrame) -> dict[str, list]:
    """{column: list of values} of a small frame in one conversion (cheaper than per column)."""
    values = frame.to_numpy(dtype=object)
    return {str(name): values[:, j].tolist() for j, name in enumerate(frame.columns)}


def _normalise(emb: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    emb /= np.where(norms > 0, norms, 1.0)
    return np.ascontiguousarray(emb, dtype=np.float32)


def signed_log1p(values: np.ndarray) -> np.ndarray:
    """log1p that keeps the sign, so negative measurements stay ordered."""
    return np.sign(values) * np.log1p(np.abs(values))


def _size_transform(config: EngineConfig) -> str:
    # Encoders pickled before the transform was a setting were all "log".
    return getattr(config, "size_transform", "log")


def transform_sizes(values: np.ndarray, how: str) -> np.ndarray:
    """Numeric attribute → the scale it is compared on: signed log1p ("log") or as is ("linear")."""
    return signed_log1p(values) if how == "log" else np.asarray(values, dtype=float)


@dataclass
class _CategoricalColumns:
    spec: FeatureSpec
    categories: list[str]
    offset: int  # first column; then len(categories) value columns, "other", "missing"
    _lookup: dict[str, int] | None = None

    def lookup(self) -> dict[str, int]:
        """{value: position among the categories}, built once."""
        if self._lookup is None:
            self._lookup = {c: i for i, c in enumerate(self.categories)}
        return self._lookup

    @property
    def width(self) -> int:
        return len(self.categories) + 2


@dataclass
class _NumericColumns:
    spec: FeatureSpec
    center: float
    scale: float
    offset: int  # value column, then the missing indicator

    @property
    def width(self) -> int:
        return 2


class ItemEncoder:
    """Fits the one-hot vocabularies, numeric scalers and the SVD on an items frame."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.blocks: list[_CategoricalColumns | _NumericColumns] = []
        self.n_columns = 0
        self.components: np.ndarray | None = None  # (n_components, n_columns) or None = identity
        self.dim = 0

    # -- fitting -------------------------------------------------------------------------
    def fit(self, items: pd.DataFrame) -> ItemEncoder:
        """Learn vocabularies and scalers from `items` (unsupervised: no routing or time is used)."""
        cfg = self.config
        self.blocks = []
        offset = 0
        for spec in cfg.active_features:
            column = items[spec.name] if spec.name in items.columns else pd.Series(np.nan, index=items.index)
            if spec.kind == CATEGORICAL:
                codes, distinct = factorize_categorical(column)
                counts = np.bincount(codes[codes >= 0], minlength=len(distinct))
                # Ties broken by value so that the vocabulary does not depend on row order.
                ordered = sorted(((-int(c), v) for v, c in zip(distinct, counts, strict=True) if c >= cfg.min_category_count))
                block = _CategoricalColumns(spec, [v for _, v in ordered[: cfg.max_categories]], offset)
            else:
                values = transform_sizes(pd.to_numeric(column, errors="coerce").to_numpy(dtype=float, na_value=np.nan), _size_transform(cfg))
                present = values[np.isfinite(values)]
                if present.size:
                    q25, center, q75 = np.percentile(present, [25, 50, 75])
                    scale = (q75 - q25) or float(np.std(present)) or 1.0
                else:
                    center, scale = 0.0, 1.0
                block = _NumericColumns(spec, float(center), float(scale), offset)
            self.blocks.append(block)
            offset += block.width
        self.n_columns = offset
        return self

    def fit_embedding(self, matrix: sp.csr_matrix) -> np.ndarray:
        """Fit the SVD on the encoded matrix and return the normalised embedding of its rows."""
        cfg = self.config
        # n_components 0 means "no embedding": the scaled, weighted columns themselves (narrow encodings only).
        if cfg.n_components and self.n_columns > cfg.n_components:
            svd = TruncatedSVD(n_components=cfg.n_components, algorithm="randomized", n_iter=4, random_state=cfg.seed)
            svd.fit(matrix)
            self.components = svd.components_.astype(np.float32)
            self.dim = cfg.n_components
        else:
            # Fewer columns than components: the encoded matrix itself is already small.
            self.components = None
            self.dim = max(self.n_columns, 1)
        return self.embed_matrix(matrix)

    # -- transforming ----------------------------------------------------------------------
    def encode_columns(self, frame: pd.DataFrame | dict[str, list]) -> tuple[np.ndarray, np.ndarray]:
        """Per row and feature block: the one non-zero column and its value, (n, n_blocks) each.

        `frame` may also be a dict of column lists (see `small_columns`), the fast path for
        a few rows.
        """
        if isinstance(frame, dict):
            return self._encode_columns_small(frame)
        if len(frame) <= SMALL_FRAME:
            return self._encode_columns_small(small_columns(frame))
        n = len(frame)
        n_blocks = len(self.blocks)
        cols = np.empty((n, n_blocks), dtype=np.int32)
        data = np.empty((n, n_blocks), dtype=np.float32)
        for b, block in enumerate(self.blocks):
            name = block.spec.name
            column = frame[name] if name in frame.columns else pd.Series(np.nan, index=frame.index, dtype=float)
            weight = block.spec.weight
            if isinstance(block, _CategoricalColumns):
                codes, distinct = factorize_categorical(column)
                other = len(block.categories)
                position = block.lookup()
                # Distinct value → its column; unknown → "other"; the appended slot (code -1) → "missing".
                column_of = np.array([position.get(v, other) for v in distinct] + [other + 1], dtype=np.int32)
                cols[:, b] = block.offset + column_of[codes]
                data[:, b] = weight
            else:
                raw = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
                values = transform_sizes(raw, _size_transform(self.config))
                missing = ~np.isfinite(values)
                scaled = np.clip((np.where(missing, 0.0, values) - block.center) / block.scale, -NUMERIC_CLIP, NUMERIC_CLIP)
                cols[:, b] = block.offset + missing.astype(np.int32)
                data[:, b] = np.where(missing, weight, weight * scaled)
        return cols, data

    def _encode_columns_small(self, columns: dict[str, list]) -> tuple[np.ndarray, np.ndarray]:
        """Same as `encode_columns` with plain Python per value: for a few rows, pandas'
        per-call overhead (~0.2 ms per column) would dominate an interactive prediction."""
        n = max((len(v) for v in columns.values()), default=0)
        n_blocks = len(self.blocks)
        cols = np.empty((n, n_blocks), dtype=np.int32)
        data = np.empty((n, n_blocks), dtype=np.float32)
        log_sizes = _size_transform(self.config) == "log"
        for b, block in enumerate(self.blocks):
            name = block.spec.name
            values = columns.get(name) or [None] * n
            weight = block.spec.weight
            if isinstance(block, _CategoricalColumns):
                position = block.lookup()
                other = len(block.categories)
                for i, v in enumerate(values):
                    missing = v is None or v is pd.NA or (isinstance(v, float) and v != v)  # v != v: NaN
                    text = "" if missing else str(v).strip()
                    cols[i, b] = block.offset + (other + 1 if not text else position.get(text, other))
                data[:, b] = weight
            else:
                for i, v in enumerate(values):
                    try:
                        x = float(v) if v is not None else math.nan
                    except (TypeError, ValueError):
                        x = math.nan
                    if math.isfinite(x):
                        z = ((math.copysign(math.log1p(abs(x)), x) if log_sizes else x) - block.center) / block.scale
                        cols[i, b] = block.offset
                        data[i, b] = weight * min(max(z, -NUMERIC_CLIP), NUMERIC_CLIP)
                    else:
                        cols[i, b] = block.offset + 1
                        data[i, b] = weight
        return cols, data

    def encode(self, frame: pd.DataFrame) -> sp.csr_matrix:
        """Sparse (n_rows, n_columns) float32 matrix; absent columns count as missing values."""
        cols, data = self.encode_columns(frame)
        n, n_blocks = cols.shape
        indptr = np.arange(0, n * n_blocks + 1, n_blocks, dtype=np.int64)
        return sp.csr_matrix((data.ravel(), cols.ravel(), indptr), shape=(n, self.n_columns))

    def embed_matrix(self, matrix: sp.csr_matrix) -> np.ndarray:
        """Project an encoded matrix and L2-normalise its rows (float32, C-contiguous)."""
        if self.components is not None:
            emb = np.asarray(matrix @ self.components.T, dtype=np.float32)
        else:
            emb = np.zeros((matrix.shape[0], self.dim), dtype=np.float32)
            emb[:, : matrix.shape[1]] = matrix.toarray()
        return _normalise(emb)

    def missing_columns(self) -> np.ndarray:
        """Per feature block, the column that means "value missing"."""
        return np.array(
            [b.offset + len(b.categories) + 1 if isinstance(b, _CategoricalColumns) else b.offset + 1 for b in self.blocks],
            dtype=np.int32,
        )

    def project(self, cols: np.ndarray, data: np.ndarray) -> np.ndarray:
        """Embedding from `encode_columns` output."""
        n = cols.shape[0]
        if n > 4096 or self.components is None:
            indptr = np.arange(0, cols.size + 1, max(cols.shape[1], 1), dtype=np.int64)[: n + 1]
            return self.embed_matrix(sp.csr_matrix((data.ravel(), cols.ravel(), indptr), shape=(n, self.n_columns)))
        # Few rows: gather the projection rows of the non-zero columns instead of a sparse product.
        emb = np.einsum("nb,nbd->nd", data, self.components.T[cols]).astype(np.float32)
        return _normalise(emb)

    def transform(self, frame: pd.DataFrame | dict[str, list]) -> np.ndarray:
        """Embedding of the items in `frame`."""
        return self.project(*self.encode_columns(frame))

    def column_names(self) -> list[str]:
        """Human-readable names of the encoded columns (for debugging and feature reports)."""
        names: list[str] = []
        for block in self.blocks:
            if isinstance(block, _CategoricalColumns):
                names += [f"{block.spec.name}={c}" for c in block.categories]
                names += [f"{block.spec.name}:other", f"{block.spec.name}:missing"]
            else:
                names += [f"{block.spec.name}", f"{block.spec.name}:missing"]
        return names
