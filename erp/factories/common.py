"""Building blocks shared by the demo factories of `erp.generator` (pure numpy/pandas, no Django).

The ERP view columns, small vectorised helpers, and `build_history`, which turns a profile's
current routings (an item x slot mask) into routing revisions (older, concurrently valid
alternates, withdrawn and not-yet-valid revisions) and work-order results that reference the
routing actually used. The seal profile predates this module and keeps its own code path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa

DEFAULT_TODAY = date(2026, 11, 1)

ITEM_COLUMNS = [
    "ITEM_CD", "ITEM_NM", "PART_TYPE", "PartNm", "ITEM_TYPE", "ITEM_ACCT", "ITEM_UNIT",
    "ITEM_MATERIAL", "MATERIAL_DESC", "RAW_MATL_KIND", "ITEM_GRP1", "GROUP1", "GROUP2",
    "STANDARD_YN", "DRAW_NO", "DRAW_REV", "SealTypeGrup", "IN_SEALTYPE_CD", "MID_SEALTYPE_CD",
    "OUT_SEALTYPE_CD", "OUTDIAMETER", "INDIAMETER", "OUTTHICKNESS", "IN_SEALSIZE",
    "MID_SEALSIZE", "OUT_SEALSIZE", "ROTATE_CLOCKWISE", "ROTATE_CTRCLOCKWISE", "INSRT_DT",
]  # fmt: skip
ROUTING_COLUMNS = [
    "ITEM_CD", "ROUT_NO", "PROC_SEQ", "JOB_CD", "JOB_NM", "RES_CD", "RES_DIS", "INSIDE_FLAG",
    "TIME_UNIT", "SETUP_TIME", "RUN_TIME", "RUN_TIME_QTY", "MFG_LT", "QUEUE_TIME", "WAIT_TIME",
    "MOVE_TIME", "VALID_FROM_DT", "VALID_TO_DT", "INSRT_DT",
]  # fmt: skip
WORK_RESULT_COLUMNS = [
    "ITEM_CD", "ROUT_NO", "PROC_SEQ", "JOB_CD", "RES_CD", "REPORT_DT", "ORDER_QTY", "BAD_QTY",
    "SETUP_HOURS", "MACH_WORKED_HOURS",
]  # fmt: skip

SECOND = np.timedelta64(1, "s")
DAY_S = 86_400


def _choice(rng: np.random.Generator, n: int, p) -> np.ndarray:
    """Vectorised categorical draw of n indices with probabilities p."""
    return np.searchsorted(np.cumsum(p), rng.random(n) * np.sum(p), side="right").clip(0, len(p) - 1)


def _choice_rows(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One categorical draw per row of a (n, k) probability matrix."""
    cum = np.cumsum(probs, axis=1)
    u = rng.random(len(probs))[:, None] * cum[:, -1:]
    return (cum <= u).sum(axis=1).clip(0, probs.shape[1] - 1)


def _blank(rng: np.random.Generator, values: np.ndarray, share: float) -> np.ndarray:
    """A copy of an object/float array with `share` of its values set missing."""
    out = values.copy()
    hit = rng.random(len(out)) < share
    out[hit] = None if out.dtype == object else np.nan
    return out


def _codes(prefix: np.ndarray, number: np.ndarray, width: int) -> np.ndarray:
    digits = np.strings.zfill(number.astype(np.int64).astype(str), width)
    return np.strings.add(np.strings.add(prefix.astype(str), "-"), digits).astype(object)


def text(labels: np.ndarray, codes: np.ndarray | None = None) -> pd.api.extensions.ExtensionArray:
    """`labels[codes]` as a pandas `str` array (missing where a code is < 0, or a label is None).

    Built with pyarrow's `take`: the same values and dtype the DataFrame constructor infers from
    an object array, ~5x faster for millions of rows.
    """
    dictionary = pa.array(np.asarray(labels, dtype=object), type=pa.large_string())
    if codes is None:
        return pd.array(dictionary, dtype="str")
    codes = np.asarray(codes, dtype=np.int64)
    return pd.array(dictionary.take(pa.array(codes, mask=codes < 0)), dtype="str")


def opt_text(rng: np.random.Generator, labels: np.ndarray, codes: np.ndarray, share: float) -> pd.api.extensions.ExtensionArray:
    """`text(labels, codes)` with `share` of the values missing."""
    return text(labels, blank_codes(rng, codes, share))


def blank_codes(rng: np.random.Generator, codes: np.ndarray, share: float) -> np.ndarray:
    """A copy of `codes` with `share` of them set to -1 (missing), drawn like `_blank`."""
    return np.where(rng.random(len(codes)) < share, -1, codes)


def _dt(seconds: np.ndarray) -> np.ndarray:
    """Epoch seconds (int64, NaT-safe via the NaT sentinel) to datetime64[us]."""
    return seconds.astype("datetime64[s]").astype("datetime64[us]")


def _group_positions(group: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For rows sorted by `group`: (position within group, group start per row, group starts)."""
    n = len(group)
    change = np.ones(n, dtype=bool)
    change[1:] = group[1:] != group[:-1]
    starts = np.flatnonzero(change)
    lengths = np.diff(np.append(starts, n))
    start_per_row = np.repeat(starts, lengths)
    return np.arange(n) - start_per_row, start_per_row, starts


# ------------------------------------------------------------------------------- history builder
# kinds of routing revisions
CURRENT, OLD, ALTERNATE, WITHDRAWN, FUTURE = 0, 1, 2, 3, 4


@dataclass(frozen=True)
class Plant:
    """A profile's operation slots (canonical order; a routing is a subset) and work centres."""

    slot_job: np.ndarray  # (S,) JOB_CD per slot; a JOB_CD may occupy several slots (rough/finish)
    slot_name: np.ndarray  # (S,) JOB_NM per slot
    slot_lead_days: np.ndarray  # (S,) MFG_LT of the slot when it is outsourced
    droppable: np.ndarray  # (S,) bool: a revision or a noisy item may lack this step
    extra_ok: np.ndarray  # (S,) bool: a revision or a noisy item may have this step in addition
    res_code: np.ndarray  # (W,)
    res_name: np.ndarray  # (W,)
    res_out: np.ndarray  # (W,) bool: vendor (INSIDE_FLAG OUT, SETUP_TIME 0)


@dataclass(frozen=True)
class Revisions:
    """How many items carry more than one ROUT_NO, and of which kind."""

    share: float  # of items old enough (min_age_days) to have had revisions
    three_share: float = 0.35  # of those, share with three routings
    # scenario of a multi-routing item: older expired / older still valid (alternate, used for
    # capacity) / newest withdrawn (expired) / newest valid only from a future date
    scenario_p: tuple[float, float, float, float] = (0.40, 0.35, 0.15, 0.10)
    min_age_days: int = 400


@dataclass(frozen=True)
class Orders:
    """Work orders per item and their quantities."""

    produced_share: float | np.ndarray
    n_orders_p: tuple[float, ...]  # P(1 order), P(2 orders), ...
    qty_median: np.ndarray  # (n,) median order quantity per item
    qty_sigma: float = 0.8
    tail_share: float = 0.0  # share of orders multiplied by a heavy-tail factor e^U(1, 3)
    max_qty: float = 5000.0
    alternate_use: float = 0.3  # share of orders on a still-valid older (alternate) routing
    window_days: int = 730


@dataclass(frozen=True)
class Drift:
    res_factor: np.ndarray  # (W,) run-time factor per work centre after drift_from (1 = none)
    item_factor: np.ndarray  # (n,) run-time factor per item (e.g. by material)
    setup_factor: float = 1.3  # on work centres with res_factor > 1


RowFn = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]


def perturb_masks(
    rng: np.random.Generator, masks: np.ndarray, plant: Plant, p_add: np.ndarray, p_drop: np.ndarray, min_steps: int = 3
) -> None:
    """In place: add one `extra_ok` step where rng < p_add, else drop one `droppable` step where rng < p_add + p_drop."""
    n = len(masks)
    u = rng.random(n)
    keys = rng.random(masks.shape)
    cand = ~masks & plant.extra_ok
    pick = np.where(cand, keys, -1.0).argmax(axis=1)
    add = (u < p_add) & cand.any(axis=1)
    masks[np.flatnonzero(add), pick[add]] = True
    cand = masks & plant.droppable
    pick = np.where(cand, keys, -1.0).argmax(axis=1)
    drop = (u >= p_add) & (u < p_add + p_drop) & cand.any(axis=1) & (masks.sum(axis=1) > min_steps)
    masks[np.flatnonzero(drop), pick[drop]] = False


def build_history(
    rng: np.random.Generator,
    *,
    today_s: int,
    item_codes: np.ndarray,
    item_insrt: np.ndarray,
    mask: np.ndarray,
    plant: Plant,
    row_fn: RowFn,
    revisions: Revisions,
    orders: Orders,
    drift: Drift,
    drift_from: date | None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(routings, work_results) frames for items whose current routing is `mask` (n x S).

    `row_fn(item_index, slot_index)` gives per routing row (work centre, alternative work centre
    or -1, standard setup minutes, standard run minutes per unit). Revisions that are not current
    differ from the current routing by a dropped/added step, other machines and other times.
    Every random draw happens whether or not `drift_from` is given, so drift changes hours only.
    """
    n, _ = mask.shape
    day = DAY_S
    # ---------------------------------------------------------------- revisions per item
    multi = (rng.random(n) < revisions.share) & (item_insrt <= today_s - revisions.min_age_days * day)
    scen = np.where(multi, _choice(rng, n, revisions.scenario_p), -1)
    extra_new = (scen == 2) | (scen == 3)
    three = rng.random(n) < revisions.three_share
    n_active = np.where(multi, np.where(extra_new, 1 + three, 2 + three), 1)
    first = item_insrt + rng.integers(0, 20 * day, n)
    span = np.maximum(today_s - 40 * day - first - 30 * day, day)
    last = np.where(n_active > 1, first + 30 * day + (rng.random(n) * span).astype(np.int64), first)
    mid = (first + last) // 2
    wd_insrt = last + 5 * day + (rng.random(n) * np.maximum(today_s - 30 * day - last - 5 * day, day)).astype(np.int64)
    wd_to = np.minimum((wd_insrt // day + rng.integers(20, 120, n)) * day, (today_s // day - 3) * day)
    fut_insrt = today_s - rng.integers(1, 30, n) * day
    fut_from = (today_s // day + rng.integers(7, 90, n)) * day

    def floor_day(s: np.ndarray) -> np.ndarray:
        return (s // day) * day

    parts = []  # (item, rout, insrt, valid_from, valid_to, kind)
    idx = np.arange(n)
    for j in range(3):
        has = j < n_active
        i = idx[has]
        insrt = np.where(j == 0, first[i], np.where(j == n_active[i] - 1, last[i], mid[i]))
        nxt = np.where(j + 1 == n_active[i] - 1, last[i], mid[i])  # insert time of the next active revision
        is_last = j == n_active[i] - 1
        alternate = (scen[i] == 1) & (j == n_active[i] - 2)
        valid_to = np.where(is_last | alternate, -1, floor_day(nxt) - day)
        kind = np.where(is_last, CURRENT, np.where(alternate, ALTERNATE, OLD))
        parts.append((i, np.full(len(i), j + 1), insrt, floor_day(insrt), valid_to, kind))
    i = idx[extra_new]
    wd = scen[i] == 2
    parts.append(
        (
            i,
            n_active[i] + 1,
            np.where(wd, wd_insrt[i], fut_insrt[i]),
            np.where(wd, floor_day(wd_insrt[i]), fut_from[i]),
            np.where(wd, wd_to[i], -1),
            np.where(wd, WITHDRAWN, FUTURE),
        )
    )
    v_item, v_rout, v_insrt, v_from, v_to, v_kind = (np.concatenate([p[k] for p in parts]) for k in range(6))
    order = np.lexsort((v_rout, v_item))
    v_item, v_rout, v_insrt, v_from, v_to, v_kind = (a[order] for a in (v_item, v_rout, v_insrt, v_from, v_to, v_kind))
    nv = len(v_item)
    v_start = np.searchsorted(v_item, idx)
    v_count = np.bincount(v_item, minlength=n)
    v_cur = np.full(n, -1)
    v_cur[v_item[v_kind == CURRENT]] = np.flatnonzero(v_kind == CURRENT)
    v_alt = np.full(n, -1)
    v_alt[v_item[v_kind == ALTERNATE]] = np.flatnonzero(v_kind == ALTERNATE)

    v_mask = mask[v_item]
    other = v_kind != CURRENT
    perturb_masks(rng, v_mask, plant, np.where(other, 0.3, 0.0), np.where(other, 0.45, 0.0))
    time_mu = np.array([0.0, 0.12, 0.05, -0.10, -0.05])[v_kind]
    time_sd = np.array([0.0, 0.08, 0.10, 0.06, 0.05])[v_kind]
    v_time_f = np.exp(time_mu + time_sd * rng.standard_normal(nv))

    # ---------------------------------------------------------------- routing rows
    vi, r_slot = np.nonzero(v_mask)  # sorted by item, ROUT_NO, slot
    r_item = v_item[vi]
    r_res, r_alt, setup, run_unit = row_fn(r_item, r_slot)
    kind = v_kind[vi]
    swap = (r_alt >= 0) & ((kind == ALTERNATE) | ((kind != CURRENT) & (rng.random(len(vi)) < 0.3)))
    r_res = np.where(swap, r_alt, r_res)
    r_out = plant.res_out[r_res]
    tf = v_time_f[vi]
    r_setup = np.where(r_out, 0.0, np.maximum(np.round(setup * tf / 5) * 5, 5.0))
    run_unit = np.maximum(np.round(run_unit * tf, 3), 0.01)
    u = rng.random(len(vi))
    run_qty = np.where(run_unit < 0.2, 100.0, np.where((run_unit < 1.5) & (u < 0.3), 10.0, 1.0))
    run_qty = np.where((run_qty == 1.0) & (u > 0.97), 10.0, run_qty)
    r_run_time = np.maximum(np.round(run_unit * run_qty, 2), 0.01)
    r_run_unit = r_run_time / run_qty
    pos, _, _ = _group_positions(vi)
    r_seq = ((pos + 1) * 10).astype(np.int64)
    mr = len(vi)
    rout_labels = np.strings.zfill(np.arange(1, int(v_rout.max()) + 1).astype(str), 3).astype(object)
    rout_code = v_rout - 1

    def opt(values: np.ndarray, share: float) -> np.ndarray:
        return _blank(rng, values, share)

    r_to = v_to[vi]
    routings = pd.DataFrame(
        {
            "ITEM_CD": text(item_codes, r_item),
            "ROUT_NO": text(rout_labels, rout_code[vi]),
            "PROC_SEQ": r_seq,
            "JOB_CD": text(plant.slot_job, r_slot),
            "JOB_NM": text(plant.slot_name, r_slot),
            "RES_CD": text(plant.res_code, r_res),
            "RES_DIS": text(plant.res_name, blank_codes(rng, r_res, 0.05)),
            "INSIDE_FLAG": text(np.array(["IN", "OUT"], dtype=object), r_out.astype(np.int64)),
            "TIME_UNIT": text(np.array(["MIN"], dtype=object), np.zeros(mr, dtype=np.int64)),
            "SETUP_TIME": r_setup,
            "RUN_TIME": r_run_time,
            "RUN_TIME_QTY": run_qty,
            "MFG_LT": np.where(r_out, plant.slot_lead_days[r_slot], 1.0),
            "QUEUE_TIME": opt(rng.integers(0, 5, mr) * 30.0, 0.3),
            "WAIT_TIME": opt(np.where(r_out, 0.0, rng.integers(0, 3, mr) * 30.0), 0.3),
            "MOVE_TIME": opt(np.where(r_out, 60.0, 10.0), 0.3),
            "VALID_FROM_DT": _dt(v_from[vi]),
            "VALID_TO_DT": _dt(np.where(r_to < 0, np.iinfo(np.int64).min, r_to)),
            "INSRT_DT": _dt(v_insrt[vi]),
        },
        columns=ROUTING_COLUMNS,
    )

    # ---------------------------------------------------------------- work orders
    produced = rng.random(n) < orders.produced_share
    n_orders = np.where(produced, _choice(rng, n, orders.n_orders_p) + 1, 0)
    o_item = np.repeat(idx, n_orders)
    no = len(o_item)
    window_start = today_s - orders.window_days * day
    lo = np.minimum(np.maximum(window_start, floor_day(first)[o_item]), today_s - 5 * day)
    o_day = lo + (rng.random(no) * (today_s - 5 * day - lo)).astype(np.int64)
    best = np.full(no, -1)
    best_insrt = np.full(no, np.iinfo(np.int64).min)
    for j in range(int(v_count.max())):
        cand = v_start[o_item] + j
        exists = j < v_count[o_item]
        cand = np.where(exists, cand, 0)
        ok = exists & (v_from[cand] <= o_day) & ((v_to[cand] < 0) | (v_to[cand] >= o_day)) & (v_insrt[cand] > best_insrt)
        best = np.where(ok, cand, best)
        best_insrt = np.where(ok, v_insrt[cand], best_insrt)
    best = np.where(best < 0, v_cur[o_item], best)
    alt_v = v_alt[o_item]
    alt_ok = (alt_v >= 0) & (v_from[np.maximum(alt_v, 0)] <= o_day)
    o_ver = np.where(alt_ok & (rng.random(no) < orders.alternate_use), alt_v, best)
    o_qty = orders.qty_median[o_item] * np.exp(orders.qty_sigma * rng.standard_normal(no))
    o_qty = o_qty * np.where(rng.random(no) < orders.tail_share, np.exp(rng.uniform(1.0, 3.0, no)), 1.0)
    o_qty = np.maximum(1, np.round(o_qty)).clip(max=orders.max_qty)

    v_row_count = np.bincount(vi, minlength=nv)
    v_row_start = np.cumsum(v_row_count) - v_row_count
    o_cnt = v_row_count[o_ver]
    o_first = np.cumsum(o_cnt) - o_cnt
    w_row = np.repeat(v_row_start[o_ver], o_cnt) + (np.arange(o_cnt.sum()) - np.repeat(o_first, o_cnt))
    w_order = np.repeat(np.arange(no), o_cnt)
    mw = len(w_row)
    w_out = r_out[w_row]
    step_days = np.where(w_out, rng.integers(5, 11, mw), rng.integers(0, 2, mw))
    cum = np.cumsum(step_days)
    cum_in_order = cum - np.repeat(cum[o_first] - step_days[o_first], o_cnt)
    o_total = cum_in_order[np.cumsum(o_cnt) - 1]
    o_start = np.maximum(np.minimum(o_day, today_s - day - o_total * day), v_from[o_ver])
    report = np.repeat(o_start, o_cnt) + cum_in_order * day + rng.integers(7 * 60, 19 * 60, mw) * 60
    report = np.minimum(report, today_s - 3600)

    n_res = len(plant.res_code)
    wc_run_bias = np.exp(rng.normal(0, 0.15, n_res))
    wc_setup_bias = np.exp(rng.normal(0, 0.2, n_res))
    wc_sigma = rng.uniform(0.15, 0.3, n_res)
    item_true = np.exp(rng.normal(0, 0.12, n))
    w_res = r_res[w_row]
    w_alt = r_alt[w_row]
    dispatched = (w_alt >= 0) & (w_alt != w_res) & (rng.random(mw) < 0.04)
    w_res = np.where(dispatched, w_alt, w_res)
    w_item = r_item[w_row]
    w_qty = o_qty[w_order]
    run_min = r_run_unit[w_row] * wc_run_bias[w_res] * item_true[w_item] * w_qty * np.exp(wc_sigma[w_res] * rng.standard_normal(mw))
    setup_min = r_setup[w_row] * wc_setup_bias[w_res] * np.exp(0.3 * rng.standard_normal(mw))
    bad = rng.binomial(w_qty.astype(np.int64), 0.004).astype(float)
    missing_run = rng.random(mw) < 0.01
    missing_setup = rng.random(mw) < 0.01
    if drift_from is not None:
        after = report >= int(np.datetime64(drift_from, "s").astype(np.int64))
        res_f = drift.res_factor[w_res]
        run_min = np.where(after, run_min * res_f * drift.item_factor[w_item], run_min)
        setup_min = np.where(after & (res_f > 1), setup_min * drift.setup_factor, setup_min)

    work_results = pd.DataFrame(
        {
            "ITEM_CD": text(item_codes, w_item),
            "ROUT_NO": text(rout_labels, rout_code[vi[w_row]]),
            "PROC_SEQ": r_seq[w_row],
            "JOB_CD": text(plant.slot_job, r_slot[w_row]),
            "RES_CD": text(plant.res_code, w_res),
            "REPORT_DT": _dt(report),
            "ORDER_QTY": w_qty.astype(float),
            "BAD_QTY": bad,
            "SETUP_HOURS": np.where(missing_setup, np.nan, np.round(setup_min / 60.0, 4)),
            "MACH_WORKED_HOURS": np.where(missing_run, np.nan, np.maximum(np.round(run_min / 60.0, 5), 1e-5)),
        },
        columns=WORK_RESULT_COLUMNS,
    )
    return routings, work_results


def size_class(values: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    """0 small, 1 medium, 2 large."""
    return np.searchsorted(np.array(bounds), values, side="right")


def res_table(work_centres: list[tuple[str, str]]) -> tuple[dict[str, int], np.ndarray, np.ndarray, np.ndarray]:
    """(index by code, codes, names, outsourced flags) of a work-centre list; vendors start with V-."""
    index = {w[0]: i for i, w in enumerate(work_centres)}
    codes = np.array([w[0] for w in work_centres], dtype=object)
    names = np.array([w[1] for w in work_centres], dtype=object)
    return index, codes, names, np.array([w[0].startswith("V-") for w in work_centres])


def res_plan(slot_jobs: list[str], plan: dict, index: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """(primary, alternative or -1) work centre per (slot, size class) from {slot key: ((p, a),)*3}."""
    primary = np.zeros((len(slot_jobs), 3), dtype=np.int64)
    alt = np.full((len(slot_jobs), 3), -1, dtype=np.int64)
    for s, key in enumerate(slot_jobs):
        for c, (p, a) in enumerate(plan[key]):
            primary[s, c] = index[p]
            alt[s, c] = index[a] if a else -1
    return primary, alt
