"""A deliberately plain kNN yardstick: what any factory gets without our engine's tuning.

`plain_knn(items, routings, actuals, holdout_codes)` predicts the held-out items from the other
items with a textbook nearest-neighbour recipe and returns `metrics.evaluate`'s metrics, so the
trained model's held-out metrics can be put beside it on exactly the same split:

* items are encoded as one-hot of every categorical attribute (the free-text ones — DRAW_NO,
  ITEM_NM, DRAW_REV — skipped) plus z-scored numeric sizes (missing → 0 and a missing
  indicator); no feature weights, no embedding;
* cosine similarity, the k = 7 most similar items among the non-held-out items with a routing;
* the routing signature (ordered JOB_CD tuple) is the similarity-weighted majority (ties → the
  most similar neighbour's); the work centre and in-house flag of each operation are the
  weighted vote, position by position, of the neighbours with that signature;
* the times of each predicted operation are the similarity-weighted mean of the neighbours'
  mean actual times of the same JOB_CD and the same occurrence of it (0-based count of that
  JOB_CD earlier in the routing); when no neighbour has actuals there, their routing's
  standard times.

Pure pandas/numpy, vectorised: one matrix product per chunk of held-out items.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from . import metrics
from .config import CATEGORICAL, DEFAULT_FEATURES, NUMERIC, FeatureSpec

FREE_TEXT = frozenset({"DRAW_NO", "ITEM_NM", "DRAW_REV"})
SEP = "\x1f"  # joins the work centre and the in-house flag into one vote label
CHUNK_CELLS = 20_000_000  # similarities per block (80 MB of float32), whatever the number of reference items
TARGET_COLUMNS = {"run_minutes_per_unit": "RUN_MINUTES_PER_UNIT", "setup_minutes": "SETUP_MINUTES"}


def encode_items(items: pd.DataFrame, features: Iterable[FeatureSpec] = DEFAULT_FEATURES) -> np.ndarray:
    """Rows of unit length (all-zero rows stay zero): one-hot categoricals + z-scored numerics + missing flags."""
    blocks: list[np.ndarray] = []
    n = len(items)
    for spec in features:
        if spec.name not in items.columns or spec.name in FREE_TEXT:
            continue
        column = items[spec.name]
        if spec.kind == CATEGORICAL:
            codes, uniques = pd.factorize(column.astype(object).where(column.notna(), None))
            if not len(uniques):
                continue
            block = np.zeros((n, len(uniques)), dtype=np.float32)
            present = codes >= 0
            block[np.flatnonzero(present), codes[present]] = 1.0
            blocks.append(block)
        elif spec.kind == NUMERIC:
            values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
            missing = np.isnan(values)
            if missing.all():
                continue
            mean, std = np.nanmean(values), np.nanstd(values)
            z = (values - mean) / std if std > 0 else values - mean
            blocks.append(np.column_stack([np.where(missing, 0.0, z), missing]).astype(np.float32))
    if not blocks:
        return np.zeros((n, 1), dtype=np.float32)
    matrix = np.hstack(blocks)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


def occurrences(frame: pd.DataFrame) -> np.ndarray:
    """0-based count of each row's JOB_CD earlier in its item's sequence (`frame` sorted by ITEM_CD, PROC_SEQ)."""
    return frame.groupby(["ITEM_CD", "JOB_CD"], sort=False).cumcount().to_numpy(dtype=np.int64)


def with_occurrences(actuals: pd.DataFrame, routings: pd.DataFrame) -> pd.DataFrame:
    """`actuals` with an `OP_OCC` column: kept if present, else matched on (ITEM_CD, PROC_SEQ, JOB_CD), else 0."""
    if "OP_OCC" in actuals.columns:
        return actuals
    keys = routings[["ITEM_CD", "PROC_SEQ", "JOB_CD"]].copy()
    keys["OP_OCC"] = occurrences(routings)
    keys = keys.drop_duplicates(["ITEM_CD", "PROC_SEQ", "JOB_CD"])
    left = actuals.reset_index(drop=True)
    probe = pd.DataFrame(
        {
            "ITEM_CD": left["ITEM_CD"].astype(str).to_numpy(),
            "PROC_SEQ": pd.to_numeric(left["PROC_SEQ"], errors="coerce").to_numpy(dtype=float),
            "JOB_CD": left["JOB_CD"].astype(str).to_numpy(),
        }
    )
    keys = keys.assign(
        ITEM_CD=keys["ITEM_CD"].astype(str), PROC_SEQ=keys["PROC_SEQ"].astype(float), JOB_CD=keys["JOB_CD"].astype(str)
    )
    occ = probe.merge(keys, on=["ITEM_CD", "PROC_SEQ", "JOB_CD"], how="left")["OP_OCC"]
    out = left.copy()
    out["OP_OCC"] = occ.fillna(0).to_numpy(dtype=np.int64)
    return out


def _nearest(query: np.ndarray, reference: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, similarities) of the k most similar reference rows per query row, most similar first."""
    k = min(k, reference.shape[0])
    rows = np.empty((query.shape[0], k), dtype=np.int64)
    sims = np.empty((query.shape[0], k), dtype=np.float32)
    ref_t = np.ascontiguousarray(reference.T)
    chunk = max(1, CHUNK_CELLS // max(reference.shape[0], 1))
    for start in range(0, query.shape[0], chunk):
        block = query[start : start + chunk] @ ref_t
        top = np.argpartition(-block, k - 1, axis=1)[:, :k] if k < block.shape[1] else np.argsort(-block, axis=1)
        top_sims = np.take_along_axis(block, top, axis=1)
        # most similar first; equal similarities in reference order, so the result is deterministic
        order = np.lexsort((top, -top_sims), axis=1)
        rows[start : start + chunk] = np.take_along_axis(top, order, axis=1)
        sims[start : start + chunk] = np.take_along_axis(top_sims, order, axis=1)
    return rows, sims


def _weighted_choice(group: np.ndarray, label: np.ndarray, weight: np.ndarray, rank: np.ndarray) -> pd.DataFrame:
    """Per group, the label with the largest summed weight; ties → the label of the lowest rank."""
    votes = pd.DataFrame({"g": group, "label": label, "w": weight, "rank": rank})
    summed = votes.groupby(["g", "label"], sort=False).agg(w=("w", "sum"), rank=("rank", "min")).reset_index()
    best = summed.sort_values(["g", "w", "rank"], ascending=[True, False, True], kind="stable")
    return best.drop_duplicates("g").set_index("g")


def _signatures(ops: pd.DataFrame, start: np.ndarray) -> tuple[np.ndarray, list[list[str]]]:
    """(signature id per item, JOB_CD list per signature id) of `ops` (one row per operation, sorted by ref, pos).

    Vectorised: each (JOB_CD, position) draws a random 64-bit code and an item's signature is the
    wrapping sum of its codes plus its length — equal sequences get equal sums; a collision of two
    different sequences has a probability of about n² / 2⁶⁴.
    """
    job, _ = pd.factorize(ops["JOB_CD"])
    pos = ops["pos"].to_numpy()
    codes = np.random.default_rng(0).integers(0, 2**63, size=(job.max() + 1, pos.max() + 2), dtype=np.uint64)
    with np.errstate(over="ignore"):
        per_op = codes[job, pos]
        lengths = np.diff(np.append(start, len(ops)))
        hashed = np.add.reduceat(per_op, start) + codes[0, -1] * lengths.astype(np.uint64)
    sig_code, uniques = pd.factorize(hashed)
    first = np.zeros(len(uniques), dtype=np.int64)
    first[sig_code[::-1]] = np.arange(len(sig_code))[::-1]  # the first item of each signature
    jobs = ops["JOB_CD"].to_numpy(dtype=object)
    return sig_code, [jobs[start[i] : start[i] + lengths[i]].tolist() for i in first]


def plain_knn_predictions(
    items: pd.DataFrame,
    routings: pd.DataFrame,
    actuals: pd.DataFrame,
    holdout_codes: Iterable[str],
    k: int = 7,
    features: Iterable[FeatureSpec] = DEFAULT_FEATURES,
) -> tuple[list[dict[str, Any]], dict[str, list[str]], pd.DataFrame]:
    """(prediction records, actual routings of the held-out items, their actuals) for `metrics.evaluate`."""
    items = items.drop_duplicates("ITEM_CD").reset_index(drop=True)
    codes = items["ITEM_CD"].astype(str).to_numpy()
    holdout = np.unique(np.asarray(list(map(str, holdout_codes)), dtype=object))
    routings = routings.assign(ITEM_CD=routings["ITEM_CD"].astype(str), JOB_CD=routings["JOB_CD"].astype(str))
    routings = routings.sort_values(["ITEM_CD", "PROC_SEQ"], kind="stable").reset_index(drop=True)
    routings["OP_OCC"] = occurrences(routings)
    actuals = with_occurrences(actuals, routings)
    actuals = actuals.assign(ITEM_CD=actuals["ITEM_CD"].astype(str), JOB_CD=actuals["JOB_CD"].astype(str))

    actual_routings = {
        item: jobs.tolist() for item, jobs in routings[routings["ITEM_CD"].isin(holdout)].groupby("ITEM_CD", sort=False)["JOB_CD"]
    }
    holdout_actuals = actuals[actuals["ITEM_CD"].isin(holdout)]

    code_index = pd.Index(codes)
    is_query = code_index.isin(holdout)
    is_ref = ~is_query & code_index.isin(routings["ITEM_CD"].unique())
    query_rows, ref_rows = np.flatnonzero(is_query), np.flatnonzero(is_ref)
    if not len(query_rows) or not len(ref_rows):
        return [], actual_routings, holdout_actuals

    encoded = encode_items(items, features)
    nn, sims = _nearest(encoded[query_rows], encoded[ref_rows], k)
    ref_codes = codes[ref_rows]
    weights = np.maximum(sims.astype(float), 1e-9)  # a dissimilar neighbour still votes, just barely
    nq, kk = nn.shape

    # Reference operations: one row per operation of each reference item's routing.
    ref_ops = routings[routings["ITEM_CD"].isin(ref_codes)].copy()
    ref_ops["ref"] = pd.Index(ref_codes).get_indexer(ref_ops["ITEM_CD"])
    ref_ops = ref_ops.sort_values(["ref", "PROC_SEQ"], kind="stable").reset_index(drop=True)
    ref_ops["pos"] = ref_ops.groupby("ref", sort=False).cumcount()
    ref_start = np.searchsorted(ref_ops["ref"].to_numpy(), np.arange(len(ref_codes)))
    sig_code, sig_jobs = _signatures(ref_ops, ref_start)

    # Signature: weighted majority over the k neighbours; ties → the most similar neighbour's.
    q_idx = np.repeat(np.arange(nq), kk)
    rank = np.tile(np.arange(kk), nq)
    chosen = _weighted_choice(q_idx, sig_code[nn].ravel(), weights.ravel(), rank)["label"].to_numpy()
    agrees = sig_code[nn] == chosen[:, None]  # (nq, k): neighbours that have the chosen signature

    # Predicted operations, one row per (query, position).
    lengths = np.array([len(j) for j in sig_jobs], dtype=np.int64)[chosen]
    op_q = np.repeat(np.arange(nq), lengths)
    op_pos = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    op_job = np.array([job for c in chosen for job in sig_jobs[c]], dtype=object)
    op_occ = pd.DataFrame({"q": op_q, "job": op_job}).groupby(["q", "job"], sort=False).cumcount().to_numpy()

    # Work centre and in-house flag: weighted vote per position among the agreeing neighbours.
    op_ids = np.arange(len(op_q))
    pair_op = np.repeat(op_ids, kk)
    pair_j = np.tile(np.arange(kk), len(op_q))
    pair_ref = nn[op_q][:, :].ravel()
    pair_w = weights[op_q].ravel()
    voting = agrees[op_q].ravel()
    vote_row = ref_start[pair_ref[voting]] + op_pos[pair_op[voting]]
    res = ref_ops["RES_CD"].astype(object).where(ref_ops["RES_CD"].notna(), "").to_numpy()
    flag = ref_ops["INSIDE_FLAG"].astype(object).where(ref_ops["INSIDE_FLAG"].notna(), "").to_numpy()
    label = pd.Series(res[vote_row]).str.cat(pd.Series(flag[vote_row]), sep=SEP).to_numpy()
    centre = _weighted_choice(pair_op[voting], label, pair_w[voting], pair_j[voting])["label"].reindex(op_ids).to_numpy()

    # Times: weighted mean over all k neighbours of their per-(JOB_CD, occurrence) means.
    job_codes = pd.Index(pd.unique(np.concatenate([ref_ops["JOB_CD"].to_numpy(dtype=object), op_job])))
    n_occ = int(max(ref_ops["OP_OCC"].max(), op_occ.max() if len(op_occ) else 0, actuals["OP_OCC"].max() if len(actuals) else 0)) + 1

    def key(ref, job, occ):
        return (np.asarray(ref, dtype=np.int64) * len(job_codes) + job) * n_occ + np.asarray(occ, dtype=np.int64)

    ref_actuals = actuals[actuals["ITEM_CD"].isin(ref_codes)]
    job_of_actual = job_codes.get_indexer(ref_actuals["JOB_CD"])
    ok = job_of_actual >= 0
    actual_keys = key(pd.Index(ref_codes).get_indexer(ref_actuals["ITEM_CD"])[ok], job_of_actual[ok], ref_actuals["OP_OCC"].to_numpy()[ok])
    actual_means = (
        ref_actuals.loc[ok, list(TARGET_COLUMNS.values())].apply(pd.to_numeric, errors="coerce").groupby(actual_keys).mean()
    )
    standard_keys = key(ref_ops["ref"].to_numpy(), job_codes.get_indexer(ref_ops["JOB_CD"]), ref_ops["OP_OCC"].to_numpy())
    standard = ref_ops[list(TARGET_COLUMNS.values())].apply(pd.to_numeric, errors="coerce").groupby(standard_keys).mean()

    all_keys = key(pair_ref, job_codes.get_indexer(op_job)[pair_op], op_occ[pair_op])
    times: dict[str, np.ndarray] = {}
    for name, column in TARGET_COLUMNS.items():
        estimate = np.full(len(op_q), np.nan)
        for table in (actual_means, standard):
            values = table[column].reindex(all_keys).to_numpy(dtype=float, copy=True)
            values[values < 0] = np.nan
            has = ~np.isnan(values)
            total = np.bincount(pair_op, weights=np.where(has, values * pair_w, 0.0), minlength=len(op_q))
            wsum = np.bincount(pair_op, weights=np.where(has, pair_w, 0.0), minlength=len(op_q))
            fill = np.isnan(estimate) & (wsum > 0)
            estimate[fill] = total[fill] / wsum[fill]
        times[name] = estimate

    query_codes = codes[query_rows]
    records: list[dict[str, Any]] = [{"item_cd": str(c), "signature": [], "operations": []} for c in query_codes]
    for i, (q, job) in enumerate(zip(op_q.tolist(), op_job.tolist(), strict=True)):
        res_cd, inside = (centre[i].split(SEP) + [""])[:2] if isinstance(centre[i], str) else ("", "")
        run, setup = times["run_minutes_per_unit"][i], times["setup_minutes"][i]
        records[q]["signature"].append(job)
        records[q]["operations"].append(
            {
                "job_cd": job,
                "res_cd": res_cd or None,
                "inside_flag": inside or None,
                "setup_minutes": None if np.isnan(setup) else float(setup),
                "run_minutes_per_unit": None if np.isnan(run) else float(run),
            }
        )
    return records, actual_routings, holdout_actuals


def plain_knn(
    items: pd.DataFrame,
    routings: pd.DataFrame,
    actuals: pd.DataFrame,
    holdout_codes: Iterable[str],
    k: int = 7,
    features: Iterable[FeatureSpec] = DEFAULT_FEATURES,
) -> dict[str, Any]:
    """`metrics.evaluate` metrics of the plain kNN on the held-out items (see the module docstring)."""
    return metrics.evaluate(*plain_knn_predictions(items, routings, actuals, holdout_codes, k, features))
