"""Population stability index (PSI) between the items a model learned from and the items seen now.

PSI = Σ (p_now − p_ref) · ln(p_now / p_ref) over bins; < 0.1 stable, 0.1–0.25 moderate, > 0.25 drift.
Numeric features use the reference deciles as bin edges; categorical features use the reference's
frequent values plus "other" and "missing". Plain pandas/numpy, no Django.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

EPSILON = 1e-4
MISSING, OTHER = "__missing__", "__other__"
DEFAULT_NUMERIC = ["OUTDIAMETER", "INDIAMETER", "OUTTHICKNESS"]
DEFAULT_CATEGORICAL = ["PART_TYPE", "ITEM_MATERIAL", "SealTypeGrup", "GROUP1"]


def profile(items: pd.DataFrame, numeric=DEFAULT_NUMERIC, categorical=DEFAULT_CATEGORICAL, max_categories: int = 30) -> dict:
    """The reference distribution of each feature, small enough to store with a model version."""
    out: dict[str, dict] = {}
    for name in numeric:
        if name not in items:
            continue
        values = pd.to_numeric(items[name], errors="coerce")
        present = values.dropna().to_numpy(dtype=float)
        if present.size == 0:
            continue
        edges = np.unique(np.quantile(present, np.linspace(0, 1, 11)[1:-1]))
        out[name] = {"kind": "numeric", "edges": edges.tolist(), "shares": _numeric_shares(values, edges).tolist()}
    for name in categorical:
        if name not in items:
            continue
        values = items[name].astype("object").where(items[name].notna(), MISSING)
        top = values[values != MISSING].value_counts().head(max_categories).index.tolist()
        out[name] = {"kind": "categorical", "categories": top, "shares": _categorical_shares(values, top).tolist()}
    return out


def _numeric_shares(values: pd.Series, edges: np.ndarray) -> np.ndarray:
    numbers = values.to_numpy(dtype=float)
    missing = np.isnan(numbers)
    bins = np.searchsorted(edges, numbers[~missing], side="right")
    counts = np.bincount(bins, minlength=len(edges) + 1).astype(float)
    counts = np.append(counts, missing.sum())
    return counts / max(counts.sum(), 1.0)


def _categorical_shares(values: pd.Series, categories: list) -> np.ndarray:
    values = values.astype("object").where(values.notna(), MISSING)
    keyed = values.where(values.isin(categories) | (values == MISSING), OTHER)
    counts = keyed.value_counts()
    ordered = [counts.get(c, 0) for c in categories] + [counts.get(OTHER, 0), counts.get(MISSING, 0)]
    shares = np.asarray(ordered, dtype=float)
    return shares / max(shares.sum(), 1.0)


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    ref = np.clip(np.asarray(reference, dtype=float), EPSILON, None)
    cur = np.clip(np.asarray(current, dtype=float), EPSILON, None)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def compare(reference_profile: dict, items: pd.DataFrame) -> dict[str, float]:
    """PSI per feature of `items` against a stored profile (features missing from either side are skipped)."""
    result = {}
    for name, ref in reference_profile.items():
        if name not in items or items.empty:
            continue
        if ref["kind"] == "numeric":
            ref_shares = np.asarray(ref["shares"])
            if len(ref_shares) == len(ref["edges"]) + 1:  # profiles without a missing bin
                ref_shares = np.append(ref_shares, 0.0)
            cur = _numeric_shares(pd.to_numeric(items[name], errors="coerce"), np.asarray(ref["edges"]))
        else:
            ref_shares = np.asarray(ref["shares"])
            cur = _categorical_shares(items[name], ref["categories"])
        result[name] = round(psi(ref_shares, cur), 4)
    return result
