"""Routing and time tables of the indexed items, precomputed at fit time.

Prediction must be array look-ups only, so everything per item and per (item, JOB_CD) is
flattened here into numpy arrays with offsets (CSR style):

- per indexed item: its signature id and its operations `op_*[op_offsets[i]:op_offsets[i+1]]`;
- per signature (distinct ordered JOB_CD sequence): its job codes `sig_jobs[sig_offsets[s]:...]`;
- per operation of a current routing, keyed by its place: `item_row * stride + occ * n_jobs + job`
  where `occ` is the occurrence of the JOB_CD in the routing (0 for the first GRIND, 1 for the
  second, ...; capped at `MAX_OCCURRENCES - 1`) and `stride = n_jobs * n_occ`, sorted: the
  standard times of the current routing and the quantiles of the item's actual work-result
  times for *that* operation. An item that grinds twice keeps two different times.

Every array is a plain ndarray so that the bundle stores it as .npy and `load` can
memory-map it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields

import numpy as np
import pandas as pd

ROUTING_COLUMNS = ("ITEM_CD", "PROC_SEQ", "JOB_CD", "JOB_NM", "RES_CD", "INSIDE_FLAG", "SETUP_MINUTES", "RUN_MINUTES_PER_UNIT")
ACTUAL_COLUMNS = ("ITEM_CD", "JOB_CD", "SETUP_MINUTES", "RUN_MINUTES_PER_UNIT")
# Occurrences of one JOB_CD in a routing kept apart; a 5th GRIND shares the 4th's times.
MAX_OCCURRENCES = 4
OCC_COLUMN = "OP_OCC"


def occurrence_rank(keys: np.ndarray) -> np.ndarray:
    """For each element, how many earlier elements have the same key (0 for the first).

    With keys `(item, JOB_CD)` in routing order this is the occurrence of the operation's
    JOB_CD in its routing. Vectorised: one stable argsort.
    """
    keys = np.asarray(keys, dtype=np.int64)
    if keys.size == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    new_group = np.concatenate(([True], sorted_keys[1:] != sorted_keys[:-1]))
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(keys.size), 0))
    rank = np.empty(keys.size, dtype=np.int64)
    rank[order] = np.arange(keys.size) - group_start
    return rank


def sequence_occurrences(op_offsets: np.ndarray, op_job: np.ndarray) -> np.ndarray:
    """Occurrence of each operation's JOB_CD within its own sequence (CSR layout: `op_offsets`)."""
    lengths = np.diff(op_offsets)
    owner = np.repeat(np.arange(lengths.size, dtype=np.int64), lengths)
    width = int(op_job.max()) + 1 if op_job.size else 1
    return occurrence_rank(owner * width + np.asarray(op_job, dtype=np.int64))


def joint_codes(columns: list, strip: bool = False) -> list[np.ndarray]:
    """int64 codes of several columns over their joint distinct values, one array per column.

    A missing value is a value of its own (it matches another missing value, as a MultiIndex
    look-up would); `strip` drops surrounding blanks first (ERP codes are often padded), on the
    distinct values only. One hash pass over all rows, no Python object per row.
    """
    lengths = [len(c) for c in columns]
    joined = pd.concat([c.reset_index(drop=True) if isinstance(c, pd.Series) else pd.Series(c) for c in columns], ignore_index=True)
    codes, uniques = pd.factorize(joined, use_na_sentinel=False)
    if strip:
        cleaned = pd.Series(np.asarray(uniques, dtype=object)).map(lambda v: v.strip() if isinstance(v, str) else v)
        codes = pd.factorize(cleaned, use_na_sentinel=False)[0][codes]
    return np.split(codes.astype(np.int64), np.cumsum(lengths)[:-1])


def assign_occurrences(actuals: pd.DataFrame, routings: pd.DataFrame) -> pd.DataFrame:
    """`actuals` with `OP_OCC`: which operation of the item's current routing each work-order row reports.

    A row is matched by (ITEM_CD, PROC_SEQ, JOB_CD) to an operation of the current routing and
    takes that operation's occurrence of its JOB_CD. A row whose sequence does not match (an
    older routing, no PROC_SEQ) is still placed when its JOB_CD occurs exactly once in the
    current routing; otherwise, and when the JOB_CD is not in the routing at all, `OP_OCC` is -1
    (the row cannot be told apart and is not used). Input order is kept. Vectorised on integer
    codes (3 M rows against 1.6 M operations: ~1 s, where string sorts and MultiIndex look-ups took 4-11 s).
    """
    out = actuals.copy()
    if actuals.empty or routings.empty:
        out[OCC_COLUMN] = np.full(len(actuals), -1 if routings.empty else 0, dtype=np.int64)
        return out
    r_item, a_item = joint_codes([routings["ITEM_CD"].astype(str), actuals["ITEM_CD"].astype(str)])
    r_job, a_job = joint_codes([routings["JOB_CD"].astype(str), actuals["JOB_CD"].astype(str)], strip=True)
    r_seq = pd.to_numeric(routings["PROC_SEQ"], errors="coerce").to_numpy(dtype=float)
    a_seq = (
        pd.to_numeric(actuals["PROC_SEQ"], errors="coerce").to_numpy(dtype=float)
        if "PROC_SEQ" in actuals.columns
        else np.full(len(actuals), np.nan)
    )
    r_seq_code, a_seq_code = joint_codes([r_seq, a_seq])
    n_job = int(max(r_job.max(), a_job.max())) + 1
    n_seq = int(max(r_seq_code.max(), a_seq_code.max())) + 1
    # The occurrence of each operation's JOB_CD in its routing: by item, then sequence (missing last).
    order = np.lexsort((r_seq, r_item))
    occ_of_operation = np.empty(len(routings), dtype=np.int64)
    occ_of_operation[order] = occurrence_rank(r_item[order] * n_job + r_job[order])
    # A row takes the occurrence of the first operation with its (item, sequence, JOB_CD).
    key_r = (r_item * n_seq + r_seq_code) * n_job + r_job
    key_a = (a_item * n_seq + a_seq_code) * n_job + a_job
    by_key = order[np.argsort(key_r[order], kind="stable")]
    sorted_keys = key_r[by_key]
    at = np.minimum(np.searchsorted(sorted_keys, key_a), len(sorted_keys) - 1)
    occ = np.where(sorted_keys[at] == key_a, occ_of_operation[by_key[at]], -1)
    # Otherwise: occurrence 0 if the item's routing has its JOB_CD exactly once.
    pairs, counts = np.unique(r_item * n_job + r_job, return_counts=True)
    pair_a = a_item * n_job + a_job
    at = np.minimum(np.searchsorted(pairs, pair_a), len(pairs) - 1)
    single = (pairs[at] == pair_a) & (counts[at] == 1)
    out[OCC_COLUMN] = np.where((occ < 0) & single, 0, occ).astype(np.int64)
    return out


def as_code_array(values: pd.Series | np.ndarray | list) -> np.ndarray:
    """Codes as a fixed-width numpy unicode array (memory-mappable, searchable)."""
    arr = np.asarray(pd.Series(values, dtype="object").fillna("").astype(str).to_numpy(), dtype=str)
    return arr if arr.dtype.itemsize else arr.astype("<U1")


def index_of(known: pd.Index, values: pd.Series) -> np.ndarray:
    """`known.get_indexer(values.astype(str))`, looking up each distinct value once.

    A column of millions of rows holds a few hundred thousand codes; the hash pass that finds them
    (Arrow's, for the ERP snapshot's text) is 2-3x cheaper than a look-up per row.
    """
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    return known.get_indexer(pd.Series(uniques).astype(str))[codes]


def factorize_sorted(values: pd.Series, missing: str = "") -> tuple[np.ndarray, np.ndarray]:
    """(codes, sorted distinct strings): a hash factorize, then only the distinct values are sorted.

    Sorting 1.6 M strings (np.unique) costs seconds; this costs a hash pass. Missing values
    become `missing`, and surrounding blanks are stripped (ERP codes are often padded).
    """
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    cleaned = np.array([str(u).strip() for u in uniques] + [missing], dtype=object)
    distinct, remap = np.unique(cleaned.astype(str), return_inverse=True)
    return remap[codes].astype(np.int64), distinct  # code -1 → the appended `missing`


def group_quantiles(groups: np.ndarray, values: np.ndarray, n_groups: int, qs: tuple[float, ...]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Per-group count and linear-interpolated quantiles of the finite, non-negative values.

    Group and value are packed into one int64 (group in the high 32 bits, the float32 bit
    pattern in the low 32 — for non-negative floats the bit order is the numeric order), so
    one integer sort replaces a lexsort: ~10x faster on millions of rows.
    """
    valid = np.isfinite(values) & (values >= 0)
    g = groups[valid].astype(np.int64)
    bits = values[valid].astype(np.float32).view(np.uint32).astype(np.int64)
    packed = np.sort((g << 32) | bits)
    v = (packed & 0xFFFFFFFF).astype(np.uint32).view(np.float32).astype(np.float64)
    counts = np.bincount(g, minlength=n_groups)
    starts = np.cumsum(counts) - counts
    has = counts > 0
    out = []
    for q in qs:
        pos = starts + q * np.maximum(counts - 1, 0)
        lo = np.floor(pos).astype(np.int64)
        hi = np.ceil(pos).astype(np.int64)
        frac = pos - lo
        res = np.full(n_groups, np.nan, dtype=np.float64)
        res[has] = v[lo[has]] + (v[hi[has]] - v[lo[has]]) * frac[has]
        out.append(res)
    return counts, out


def weighted_trimmed_mean(groups: np.ndarray, values: np.ndarray, weights: np.ndarray, n_groups: int, trim: float = 0.1) -> np.ndarray:
    """Per group, drop `floor(trim * n)` values at each end, then the weighted mean of the rest.

    The cut matches `scipy.stats.trim_mean`; groups without values get NaN. `values` must
    be >= 0 (times).
    """
    # One int64 argsort on (group << 32 | float32 bits) instead of a lexsort: the values
    # here are times (>= 0), whose float bit patterns sort like the numbers.
    bits = np.asarray(values, dtype=np.float32).view(np.uint32).astype(np.int64)
    order = np.argsort((np.asarray(groups, dtype=np.int64) << 32) | bits, kind="stable")
    g, v, w = groups[order], values[order], weights[order]
    counts = np.bincount(g, minlength=n_groups)
    starts = np.cumsum(counts) - counts
    rank = np.arange(g.size) - starts[g]
    cut = np.floor(trim * counts).astype(np.int64)[g]
    keep = (rank >= cut) & (rank < counts[g] - cut)
    num = np.bincount(g[keep], weights=(w * v)[keep], minlength=n_groups)
    den = np.bincount(g[keep], weights=w[keep], minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _group_mean(groups: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """Per-group mean of the finite, non-negative values (NaN where a group has none), float32."""
    ok = np.isfinite(values) & (values >= 0)
    total = np.bincount(groups[ok], weights=values[ok], minlength=n_groups)
    count = np.bincount(groups[ok], minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan).astype(np.float32)


def ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of `arange(s, s + l)` for every (s, l), without a Python loop."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.cumsum(lengths) - lengths
    return np.repeat(np.asarray(starts, dtype=np.int64) - offsets, lengths) + np.arange(total, dtype=np.int64)


@dataclass
class Vocab:
    """Code tables shared by all indexed items (job, work centre, signature)."""

    job_codes: np.ndarray
    job_names: np.ndarray
    res_codes: np.ndarray
    sig_offsets: np.ndarray
    sig_jobs: np.ndarray
    # One element: how many occurrences of a JOB_CD per routing are kept apart (bundles made
    # before operations were keyed by their place have none: 1).
    occ_count: np.ndarray = field(default_factory=lambda: np.ones(1, dtype=np.int64))

    @property
    def n_jobs(self) -> int:
        return len(self.job_codes)

    @property
    def n_occ(self) -> int:
        return int(self.occ_count[0]) if len(self.occ_count) else 1

    @property
    def stride(self) -> int:
        """Keys per item in `IndexData.pair_key`: one per (occurrence, JOB_CD)."""
        return max(self.n_jobs * self.n_occ, 1)

    def tokens(self, op_job: np.ndarray, occ: np.ndarray) -> np.ndarray:
        """The per-item part of a pair key for operations with these JOB_CDs and occurrences."""
        return np.minimum(np.asarray(occ, dtype=np.int64), self.n_occ - 1) * self.n_jobs + np.asarray(op_job, dtype=np.int64)

    def signature_jobs(self, sig: int) -> list[str]:
        """Job codes of one signature."""
        return self.job_codes[self.sig_jobs[self.sig_offsets[sig] : self.sig_offsets[sig + 1]]].tolist()


@dataclass
class IndexData:
    """Per indexed item and per operation (item, occurrence, JOB_CD) arrays; row i is `item_codes[i]`."""

    item_codes: np.ndarray
    item_sig: np.ndarray
    op_offsets: np.ndarray
    op_seq: np.ndarray
    op_job: np.ndarray
    op_res: np.ndarray
    op_inside: np.ndarray
    op_setup: np.ndarray
    op_run: np.ndarray
    pair_key: np.ndarray
    pair_res: np.ndarray
    pair_std_setup: np.ndarray
    pair_std_run: np.ndarray
    pair_count: np.ndarray
    pair_run_med: np.ndarray
    pair_run_p10: np.ndarray
    pair_run_p90: np.ndarray
    pair_setup_med: np.ndarray
    pair_setup_p10: np.ndarray
    pair_setup_p90: np.ndarray
    # Means of the item's work orders per operation: what the time estimators learn (the metrics compare
    # with the mean of an item's orders). Bundles made before have none: the medians stand in.
    pair_run_mean: np.ndarray | None = None
    pair_setup_mean: np.ndarray | None = None

    @property
    def n_items(self) -> int:
        return len(self.item_codes)

    def arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def subset(self, rows: np.ndarray, stride: int) -> IndexData:
        """The same tables restricted to `rows` (ascending), renumbered 0..len(rows)-1 (`stride`: `Vocab.stride`)."""
        rows = np.asarray(rows, dtype=np.int64)
        new_row = np.full(self.n_items, -1, dtype=np.int64)
        new_row[rows] = np.arange(rows.size)
        lengths = np.diff(self.op_offsets)[rows]
        op_take = ranges(self.op_offsets[rows], lengths)
        pair_item = self.pair_key // stride
        keep = new_row[pair_item] >= 0
        # new_row is increasing on the kept rows, so the new keys stay sorted.
        new_key = new_row[pair_item[keep]] * stride + self.pair_key[keep] % stride
        data = {
            "item_codes": self.item_codes[rows],
            "item_sig": self.item_sig[rows],
            "op_offsets": np.concatenate(([0], np.cumsum(lengths))).astype(np.int64),
            "pair_key": new_key,
        }
        for f in fields(self):
            if f.name.startswith("op_") and f.name != "op_offsets":
                data[f.name] = getattr(self, f.name)[op_take]
            elif f.name.startswith("pair_") and f.name != "pair_key" and getattr(self, f.name) is not None:
                data[f.name] = getattr(self, f.name)[keep]
        return IndexData(**data)


def _signature_ids(op_offsets: np.ndarray, op_job: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Signature id per item plus the signature table (offsets, jobs), vectorised.

    Each job sequence is hashed (64-bit, position-dependent multipliers); the table is then
    checked against every item's sequence, and on the (astronomically unlikely) collision
    the exact but slower grouping by tuples is used instead.
    """
    n = len(op_offsets) - 1
    lengths = np.diff(op_offsets)
    max_len = int(lengths.max()) if n else 0
    mult = np.random.default_rng(20240601).integers(1, 2**63 - 1, size=max(max_len, 1), dtype=np.int64).astype(np.uint64) | np.uint64(1)
    pos = np.arange(op_job.size) - np.repeat(op_offsets[:-1], lengths)
    with np.errstate(over="ignore"):
        terms = (op_job.astype(np.uint64) + np.uint64(1)) * mult[pos]
        hashes = np.zeros(n, dtype=np.uint64)
        nonempty = lengths > 0
        hashes[nonempty] = np.add.reduceat(terms, op_offsets[:-1][nonempty]) if terms.size else 0
        hashes = hashes * np.uint64(1_000_003) + lengths.astype(np.uint64)
    _, first, item_sig = np.unique(hashes, return_index=True, return_inverse=True)
    sig_lengths = lengths[first]
    sig_offsets = np.concatenate(([0], np.cumsum(sig_lengths))).astype(np.int64)
    sig_jobs = op_job[ranges(op_offsets[:-1][first], sig_lengths)].astype(np.int32)
    # Verify: every item's jobs equal its signature's jobs position by position.
    expected = sig_jobs[np.repeat(sig_offsets[:-1][item_sig], lengths) + pos]
    if not (np.array_equal(lengths, sig_lengths[item_sig]) and np.array_equal(expected, op_job)):
        seqs = [tuple(op_job[op_offsets[i] : op_offsets[i + 1]]) for i in range(n)]
        codes, uniques = pd.factorize(pd.Series(seqs, dtype=object))
        item_sig = codes
        sig_lengths = np.array([len(u) for u in uniques], dtype=np.int64)
        sig_offsets = np.concatenate(([0], np.cumsum(sig_lengths))).astype(np.int64)
        sig_jobs = np.concatenate([np.asarray(u, dtype=np.int32) for u in uniques]) if len(uniques) else np.zeros(0, np.int32)
    return item_sig.astype(np.int32), sig_offsets, sig_jobs


def build_tables(item_codes: np.ndarray, routings: pd.DataFrame, actuals: pd.DataFrame) -> tuple[Vocab, IndexData]:
    """Tables for every item of `item_codes` (sorted, unique) that has a routing.

    Routing rows of items outside `item_codes` or without JOB_CD are ignored; actual rows
    count only for operations of the item's current routing, placed by `OP_OCC` (see
    `assign_occurrences`, applied here when the column is absent).
    """
    missing = [c for c in ROUTING_COLUMNS if c not in routings.columns]
    if missing:
        raise ValueError(f"routings frame lacks columns {missing}")
    known = pd.Index(item_codes)
    r_item = index_of(known, routings["ITEM_CD"])
    all_job, all_job_text = factorize_sorted(routings["JOB_CD"])
    keep = (r_item >= 0) & (all_job_text[all_job] != "")
    r = routings.loc[keep, list(ROUTING_COLUMNS)]
    r_item = r_item[keep]
    # The job vocabulary holds only jobs of indexed routings (and never the empty code).
    used, r_job = np.unique(all_job[keep], return_inverse=True)
    job_codes_u = all_job_text[used]
    job_codes = as_code_array(job_codes_u)
    r_res, res_codes_u = factorize_sorted(r["RES_CD"])
    res_codes = as_code_array(res_codes_u)
    n_jobs = len(job_codes)

    # Most frequent JOB_NM per JOB_CD (names drift in ERP data; the majority is the best label).
    names = pd.DataFrame({"job": r_job, "name": r["JOB_NM"].fillna("").astype(str).to_numpy()})
    top = names.value_counts().reset_index().drop_duplicates("job").set_index("job")["name"]
    job_names = as_code_array(top.reindex(range(n_jobs)).fillna("").to_numpy())

    # Indexed items are those with routing rows, in code order; operations by PROC_SEQ.
    routed = np.unique(r_item)
    row_of = np.full(len(item_codes), -1, dtype=np.int64)
    row_of[routed] = np.arange(routed.size)
    op_item = row_of[r_item]
    seq = pd.to_numeric(r["PROC_SEQ"], errors="coerce").fillna(0).to_numpy(dtype=np.int64)
    seq_rank = seq - seq.min() if seq.size else seq
    order = np.argsort(op_item * (int(seq_rank.max(initial=0)) + 1) + seq_rank, kind="stable")
    op_item = op_item[order]
    op_offsets = np.concatenate(([0], np.cumsum(np.bincount(op_item, minlength=routed.size)))).astype(np.int64)
    op_job = r_job[order].astype(np.int32)
    flag_codes, flags = factorize_sorted(r["INSIDE_FLAG"], missing="IN")
    inside = np.char.upper(flags.astype(str)) != "OUT"
    inside = inside[flag_codes]
    ops = {
        "op_seq": seq[order].astype(np.int32),
        "op_job": op_job,
        "op_res": r_res[order].astype(np.int32),
        "op_inside": inside[order].astype(np.int8),
        "op_setup": pd.to_numeric(r["SETUP_MINUTES"], errors="coerce").to_numpy(dtype=np.float32, na_value=np.nan)[order],
        "op_run": pd.to_numeric(r["RUN_MINUTES_PER_UNIT"], errors="coerce").to_numpy(dtype=np.float32, na_value=np.nan)[order],
    }
    item_sig, sig_offsets, sig_jobs = _signature_ids(op_offsets, op_job)

    # Operations keyed by their place: (item, occurrence of the JOB_CD in the routing, JOB_CD).
    op_occ = occurrence_rank(op_item * max(n_jobs, 1) + op_job)
    n_occ = int(min(op_occ.max(initial=0) + 1, MAX_OCCURRENCES))
    stride = max(n_jobs * n_occ, 1)
    op_key = op_item * stride + np.minimum(op_occ, n_occ - 1) * n_jobs + op_job
    pair_key, first, inverse = np.unique(op_key, return_index=True, return_inverse=True)
    n_pairs = pair_key.size

    def pair_mean(values: np.ndarray) -> np.ndarray:
        ok = np.isfinite(values)
        num = np.bincount(inverse[ok], weights=values[ok], minlength=n_pairs)
        den = np.bincount(inverse[ok], minlength=n_pairs)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / np.maximum(den, 1), np.nan).astype(np.float32)

    pairs = {
        "pair_key": pair_key.astype(np.int64),
        "pair_res": ops["op_res"][first],
        "pair_std_setup": pair_mean(ops["op_setup"]),
        "pair_std_run": pair_mean(ops["op_run"]),
    }

    # Actual times per pair: count and 10/50/90 % quantiles.
    missing = [c for c in ACTUAL_COLUMNS if c not in actuals.columns]
    if missing:
        raise ValueError(f"actuals frame lacks columns {missing}")
    a_row = index_of(known, actuals["ITEM_CD"])
    a_row = np.where(a_row >= 0, row_of[np.maximum(a_row, 0)], -1)
    a_job_codes, a_jobs = factorize_sorted(actuals["JOB_CD"])
    a_job = pd.Index(job_codes_u).get_indexer(a_jobs)[a_job_codes]
    if OCC_COLUMN not in actuals.columns:
        actuals = assign_occurrences(actuals, routings)
    a_occ = pd.to_numeric(actuals[OCC_COLUMN], errors="coerce").fillna(-1).to_numpy(dtype=np.int64)
    a_ok = (a_row >= 0) & (a_job >= 0) & (a_occ >= 0)
    a_key = a_row[a_ok] * stride + np.minimum(a_occ[a_ok], n_occ - 1) * n_jobs + a_job[a_ok]
    a_pair = np.searchsorted(pair_key, a_key)
    a_pair = np.minimum(a_pair, max(n_pairs - 1, 0))
    in_routing = pair_key[a_pair] == a_key if n_pairs else np.zeros(a_key.size, bool)
    a_pair = a_pair[in_routing]
    run = pd.to_numeric(actuals["RUN_MINUTES_PER_UNIT"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)[a_ok][in_routing]
    setup = pd.to_numeric(actuals["SETUP_MINUTES"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)[a_ok][in_routing]
    # Run and setup quantiles side by side: each is one big integer sort, which releases the GIL.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tables") as pool:
        setup_quantiles = pool.submit(group_quantiles, a_pair, setup, n_pairs, (0.1, 0.5, 0.9))
        count, (r10, r50, r90) = group_quantiles(a_pair, run, n_pairs, (0.1, 0.5, 0.9))
        _, (s10, s50, s90) = setup_quantiles.result()
    pairs.update(
        pair_count=count.astype(np.int32),
        pair_run_med=r50.astype(np.float32),
        pair_run_p10=r10.astype(np.float32),
        pair_run_p90=r90.astype(np.float32),
        pair_setup_med=s50.astype(np.float32),
        pair_setup_p10=s10.astype(np.float32),
        pair_setup_p90=s90.astype(np.float32),
        pair_run_mean=_group_mean(a_pair, run, n_pairs),
        pair_setup_mean=_group_mean(a_pair, setup, n_pairs),
    )
    vocab = Vocab(
        job_codes=job_codes,
        job_names=job_names,
        res_codes=res_codes,
        sig_offsets=sig_offsets,
        sig_jobs=sig_jobs,
        occ_count=np.array([n_occ], dtype=np.int64),
    )
    data = IndexData(item_codes=np.asarray(item_codes)[routed], item_sig=item_sig, op_offsets=op_offsets, **ops, **pairs)
    return vocab, data
