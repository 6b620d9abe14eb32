"""Exact cosine top-k search over L2-normalised float32 embeddings.

`NeighborIndex` is what the model uses: spherical k-means clusters with cone bounds, so a
query scans only the clusters that can hold one of its k best items (about 5-10 % of the
items on item data) and the answer is still exactly that of the full matrix product.
`top_k` is the plain full-product search (`BruteIndex`, for the settings search's short-lived indexes, and the reference in tests).

Measured at 325k items x 32 dimensions on 2 cores: full product + argpartition ~6 ms per
query and ~1.5-3 s per 1000 queries; the clustered index ~1-2 ms and ~200 ms.
BLAS is limited to one thread during a search: the products are many and small, and with
two OpenBLAS threads they spend their time synchronising (measured 5-20x slower).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp
from threadpoolctl import ThreadpoolController

# Queries per full product: bounds the similarity block to 256 x n float32.
QUERY_CHUNK = 256
# Below this many indexed items a plain argpartition over the row is as fast as anything.
SMALL_INDEX = 8192
SAMPLE_STRIDE = 16
_THREADS = ThreadpoolController()
logger = logging.getLogger(__name__)


def one_blas_thread():
    """A context in which BLAS runs on one thread, process-wide (hold it around several threads' searches)."""
    return _THREADS.limit(limits=1, user_api="blas")


# The compiled kernel's interface this module calls; `_leafscan.ABI` says which one a build has.
LEAFSCAN_ABI = 3


def _usable_kernel(module):
    """The compiled kernel if it is built for this module's calls, else None (numpy: the same answers, slower)."""
    if module is None:
        return None
    if getattr(module, "ABI", None) != LEAFSCAN_ABI:
        # Built from another _leafscan.pyx (pulled without `make deps`): calling it would fail every search.
        logger.warning(
            "training/engine/_leafscan is a stale build (ABI %s, need %s): searching with numpy until `make deps` rebuilds it",
            getattr(module, "ABI", None),
            LEAFSCAN_ABI,
        )
        return None
    return module


try:
    from training.engine import _leafscan
except ImportError:  # not built (a checkout without `make deps`)
    _leafscan = None
_leafscan = _usable_kernel(_leafscan)


def scan_kind() -> str:
    """How this process searches neighbours, for /health: "compiled", or "numpy" with the reason."""
    return "compiled" if _leafscan is not None else "numpy (the compiled leaf scan is not built or stale: run `make deps`)"


def _top_rows_exact(sims: np.ndarray, kk: int) -> np.ndarray:
    """Column indices of the kk largest values of each row, best first (argpartition path)."""
    if kk < sims.shape[1]:
        part = np.argpartition(sims, sims.shape[1] - kk, axis=1)[:, -kk:]
    else:
        part = np.broadcast_to(np.arange(sims.shape[1]), sims.shape).copy()
    vals = np.take_along_axis(sims, part, axis=1)
    order = np.lexsort((part, -vals), axis=1) if part.size else part
    return np.take_along_axis(part, order, axis=1)


def _top_rows_bounded(sims: np.ndarray, kk: int) -> np.ndarray:
    """Same as `_top_rows_exact`, faster on long rows: sample bound, then sort survivors."""
    m, n = sims.shape
    sample = sims[:, ::SAMPLE_STRIDE]
    if n <= SMALL_INDEX or sample.shape[1] < kk:
        return _top_rows_exact(sims, kk)
    bound = np.partition(sample, sample.shape[1] - kk, axis=1)[:, sample.shape[1] - kk]
    mask = sims >= bound[:, None]
    counts = mask.sum(axis=1)
    result = np.empty((m, kk), dtype=np.int64)
    crowded = counts > 64 * kk  # many ties (identical items): argpartition is cheaper then
    if crowded.any():
        result[crowded] = _top_rows_exact(sims[crowded], kk)
        mask[crowded] = False
        counts[crowded] = 0
    if (~crowded).any():
        rows, cols = np.nonzero(mask)
        _write_ranked(result, None, rows, cols, sims[rows, cols], kk)
    return result


def _descending_key(rows: np.ndarray, vals: np.ndarray) -> np.ndarray:
    """int64 keys sorting by row ascending, then value descending (one integer sort, no lexsort).

    The float32 bit pattern is made order-preserving (negative floats flipped), inverted for
    descending order, and packed under the row number.
    """
    bits = np.ascontiguousarray(vals, dtype=np.float32).view(np.uint32).astype(np.int64)
    ordered = np.where(bits & 0x80000000, 0xFFFFFFFF - bits, bits | 0x80000000)
    return (rows.astype(np.int64) << 32) | (0xFFFFFFFF - ordered)


def _write_ranked(out_idx: np.ndarray, out_val: np.ndarray | None, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, kk: int) -> None:
    """Per row, the kk best (value desc; ties keep input order) of the (row, col, val) triples into the outputs."""
    order = np.argsort(_descending_key(rows, vals), kind="stable")
    rows, cols, vals = rows[order], cols[order], vals[order]
    first = np.concatenate(([True], rows[1:] != rows[:-1]))
    starts = np.flatnonzero(first)
    rank = np.arange(rows.size) - np.repeat(starts, np.diff(np.append(starts, rows.size)))
    keep = rank < kk
    out_idx[rows[keep], rank[keep]] = cols[keep]
    if out_val is not None:
        out_val[rows[keep], rank[keep]] = vals[keep]


def _mask_excluded(sims: np.ndarray, has_ex: np.ndarray, exclude: np.ndarray, start: int, width: int) -> None:
    if has_ex.size:
        local = exclude[has_ex] - start
        inside = (local >= 0) & (local < width)
        sims[has_ex[inside], local[inside]] = -np.inf


def top_k(
    index: np.ndarray,
    queries: np.ndarray,
    k: int,
    exclude: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The `k` most similar index rows for every query, best first.

    `exclude` holds, per query, an index row that must not be returned (the query item
    itself) or -1. Returns `(rows int64 (m, k'), similarities float32 (m, k'))` with
    `k' = min(k, number of usable index rows)`.
    """
    n = index.shape[0]
    m = queries.shape[0]
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    exclude = np.full(m, -1, dtype=np.int64) if exclude is None else np.asarray(exclude, dtype=np.int64)
    kk = max(0, min(k, n - (1 if (exclude >= 0).any() else 0)))
    if m == 0 or kk == 0:
        return np.empty((m, kk), dtype=np.int64), np.empty((m, kk), dtype=np.float32)

    rows_out = np.empty((m, kk), dtype=np.int64)
    sims_out = np.empty((m, kk), dtype=np.float32)
    for start in range(0, m, QUERY_CHUNK):
        sims = queries[start : start + QUERY_CHUNK] @ index.T
        ex = exclude[start : start + QUERY_CHUNK]
        _mask_excluded(sims, np.flatnonzero(ex >= 0), ex, 0, n)
        best = _top_rows_bounded(sims, kk)
        rows_out[start : start + QUERY_CHUNK] = best
        sims_out[start : start + QUERY_CHUNK] = np.take_along_axis(sims, best, axis=1)
    return rows_out, sims_out


# --- clustered exact index ----------------------------------------------------------------------

# Items per cluster on average; ~800 clusters at 325k items.
CLUSTER_SIZE = 400
MAX_CLUSTERS = 1024
KMEANS_SAMPLE = 30_000
KMEANS_ITERATIONS = 8
# Rows per leaf at most: the unit a query scans. Each leaf keeps the box (per-dimension minimum
# and maximum) of its rows, which bounds a query's similarity to any of them.
LEAF_SIZE = 16
# The clusters a query scans in full first, those with the nearest centroids: their k-th best
# similarity is the threshold every other cluster and leaf must reach to be scanned.
SEED_CLUSTERS = 2
# Up to this many queries, each one is searched alone (gathers, no loop over leaves).
FEW_QUERIES = 4
# Rounding margin (radians) on cluster radii so the pruning bound stays safe in float32.
ANGLE_MARGIN = 1e-3
# Float32 rounding allowance on the box bounds: the similarities are of unit vectors, and
# 1e-4 is far above d x float32 epsilon for any width we build.
BOUND_MARGIN = 1e-4
# Leaves per vectorised step of a batch scan (bounds the temporary similarities).
SCAN_CHUNK_LEAVES = 2048
# Candidates within this much of a query's k-th best (as BLAS rounds it) are scored again in
# float64 before the final ranking (see NeighborIndex._best); far above float32 rounding.
SCORE_SLACK = 1e-5
# Candidates per query and k past which the final ranking first keeps the lowest rows of identical items.
CROWDED_CANDIDATES = 8
# Memory for one block of a batch search (see NeighborIndex.search).
SEARCH_BLOCK_BYTES = 256 * 2**20


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    return np.repeat(np.asarray(starts, dtype=np.int64) - (np.cumsum(lengths) - lengths), lengths) + np.arange(total)


def _kd_leaves(block: np.ndarray, leaf_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Order of the rows of one cluster, and where its leaves start in that order.

    Halves the rows at the median of their widest dimension until at most `leaf_size` remain,
    so each leaf's box is narrow: on one-hot item data the rows of a leaf share most values.
    """
    parts: list[np.ndarray] = []
    stack = [np.arange(block.shape[0])]
    while stack:
        idx = stack.pop()
        if idx.size <= leaf_size:
            parts.append(idx)
            continue
        sub = block[idx]
        dim = int(np.argmax(sub.max(axis=0) - sub.min(axis=0)))
        order = np.argsort(sub[:, dim], kind="stable")
        half = idx.size // 2
        stack.append(idx[order[half:]])  # popped second: leaves stay in depth-first order
        stack.append(idx[order[:half]])
    sizes = np.array([p.size for p in parts], dtype=np.int64)
    return np.concatenate(parts), np.concatenate(([0], np.cumsum(sizes)[:-1]))


def _boxes(emb: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per segment of rows of `emb` (non-empty, starting at `starts`, the last one ending with
    `emb`): minimum and maximum of each dimension, transposed to (dimensions, segments).

    Segments are short (leaves), so this goes slot by slot: the j-th row of every segment
    that has one, at once (np.minimum.reduceat over rows was 4-6x slower).
    """
    d = emb.shape[1]
    if starts.size == 0:
        return np.zeros((d, 0), np.float32), np.zeros((d, 0), np.float32)
    lengths = np.diff(np.append(starts, emb.shape[0]))
    lo = np.asarray(emb[starts], dtype=np.float32)
    hi = lo.copy()
    for j in range(1, int(lengths.max())):
        has = np.flatnonzero(lengths > j)
        rows = emb[starts[has] + j]
        lo[has] = np.minimum(lo[has], rows)
        hi[has] = np.maximum(hi[has], rows)
    return np.ascontiguousarray(lo.T), np.ascontiguousarray(hi.T)


def _box_bound(queries: np.ndarray, lo_t: np.ndarray, hi_t: np.ndarray) -> np.ndarray:
    """(queries, boxes): upper bound of q . x for x in each box, sum_j max(q_j lo_j, q_j hi_j).

    Boxes are given transposed, (dimensions, boxes).
    """
    return np.maximum(queries, 0) @ hi_t + np.minimum(queries, 0) @ lo_t + BOUND_MARGIN


def _row_nonzeros(emb: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Each row's non-zero columns and values, in column order, padded with column 0 and value 0
    to the widest row: (n, w) uint16 and float32, w >= 1; (None, None) past 65,535 dimensions
    (the index then searches with numpy).

    What the compiled scan reads instead of the dense rows: an encoded item has one non-zero per
    feature, so this is a quarter of the memory traffic of a 155-wide row.
    """
    n, d = emb.shape
    if d > np.iinfo(np.uint16).max:
        return None, None
    rows, cols = np.nonzero(emb)
    counts = np.bincount(rows, minlength=n)
    width = max(1, int(counts.max(initial=0)))
    place = np.arange(rows.size) - np.repeat(np.cumsum(counts) - counts, counts)
    nz_cols = np.zeros((n, width), dtype=np.uint16)
    nz_vals = np.zeros((n, width), dtype=np.float32)
    nz_cols[rows, place] = cols
    nz_vals[rows, place] = emb[rows, cols]
    return nz_cols, nz_vals


def _identical_rows(nz_cols: np.ndarray, nz_vals: np.ndarray) -> np.ndarray:
    """int32 group 0, 1, ... of each row that has identical rows (the same non-zeros), -1 for a row
    that has none: the compiled scan returns at most k of a group per query (see _leafscan) and
    keeps a counter per group, so only real groups are numbered. One sort of the rows' bytes, 0.4 s
    at 325k items."""
    n = nz_cols.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int32)
    raw = np.concatenate([nz_cols.view(np.uint8).reshape(n, -1), nz_vals.view(np.uint8).reshape(n, -1)], axis=1)
    keys = np.ascontiguousarray(raw).view(np.dtype((np.void, raw.shape[1]))).ravel()
    _, group, size = np.unique(keys, return_inverse=True, return_counts=True)
    group = group.ravel()
    shared = size > 1
    number = np.full(size.size, -1, dtype=np.int32)
    number[shared] = np.arange(int(shared.sum()), dtype=np.int32)
    return number[group]


def _in_scan_order(same: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """`same` (by position), with each group of identical items that does not lie in one cluster in
    ascending caller rows split into single items.

    The compiled scan meets a cluster's items in position order and returns only the first k of a
    group per query, which must then be its k lowest rows. An index built here keeps that order
    (identical items share a cluster, and every sort that places them is stable); a bundle made
    before the groups existed may not, and its such groups lose the shortcut, not exactness.
    """
    n = same.size
    if n < 2:
        return same
    order = np.lexsort((np.arange(n), same))
    group = same[order]  # the -1 of items without identical ones come first and are left alone
    cluster = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))[order]
    row = rows[order]
    broken = (group[1:] == group[:-1]) & (group[1:] >= 0) & ((cluster[1:] != cluster[:-1]) | (row[1:] < row[:-1]))
    if not broken.any():
        return same
    fixed = same.copy()
    fixed[np.isin(same, group[1:][broken])] = -1
    return fixed


def _group_starts(keys: np.ndarray) -> np.ndarray:
    """Start of each run of equal values in sorted `keys`, plus the end."""
    if keys.size == 0:
        return np.zeros(1, dtype=np.int64)
    return np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1], [True])))


# Rows per similarity block when assigning rows to centroids (bounds a block to 16k x clusters floats).
ASSIGN_BLOCK = 16384


def _nearest_centroids(rows: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the most similar centroid of every row, blocks of rows on two threads.

    Each block is its own product (one BLAS thread, the GIL released), so the labels are those of
    one thread block by block, and the second core halves the largest products of an index build.
    """
    labels = np.empty(rows.shape[0], dtype=np.int64)

    def assign(start: int) -> None:
        labels[start : start + ASSIGN_BLOCK] = np.argmax(rows[start : start + ASSIGN_BLOCK] @ centroids.T, axis=1)

    starts = range(0, rows.shape[0], ASSIGN_BLOCK)
    if len(starts) < 2:
        for start in starts:
            assign(start)
        return labels
    # BLAS limits are process-wide: held here around both threads' lives, one BLAS thread each.
    with _THREADS.limit(limits=1, user_api="blas"), ThreadPoolExecutor(max_workers=2, thread_name_prefix="index-build") as pool:
        list(pool.map(assign, starts))
    return labels


class NeighborIndex:
    """Exact cosine top-k with pruning: spherical k-means clusters, each cut into small leaves.

    Items are grouped by cluster (contiguous rows of `emb`), and each cluster's items are
    ordered into leaves of at most LEAF_SIZE (`leaf_offsets`) by halving at the median of the
    widest dimension. Two bounds say that no item of a cluster or leaf can be more similar to a
    query than some value: the cone bound (every item lies within angle `theta[c]` of its
    centroid: `cos(max(a - theta[c], 0))`) and the box bound (the leaf's per-dimension minimum
    and maximum, `leaf_lo_t` / `leaf_hi_t`; a cluster's box is that of its leaves). A query
    first scans its SEED_CLUSTERS nearest clusters, whose k-th best similarity is a threshold;
    then it scans only the leaves whose bound reaches it.

    The result is exactly that of the full matrix product, ties broken by the caller's row like
    `top_k`. The box bound is what prunes on wide one-hot encodings, where cones are wide: at
    325k items x 155 dimensions about 1 % of the items are scanned (median) per query, against ~75 % with
    cones alone. Boxes are stored by dimension, (d, leaves): an encoded item has one non-zero per
    feature (24 of 155 on the seal demo), and a single query reads only those dimensions' rows
    to bound every leaf at once.

    All state is plain arrays (memory-mappable): `emb` in cluster and leaf order, `rows` the
    caller's row of each item, `pos` the inverse, `offsets` per cluster, `centroids`, `theta`,
    `leaf_offsets`, `leaf_lo_t`, `leaf_hi_t`.
    """

    def __init__(
        self,
        emb: np.ndarray,
        rows: np.ndarray,
        pos: np.ndarray,
        offsets: np.ndarray,
        centroids: np.ndarray,
        theta: np.ndarray,
        leaf_offsets: np.ndarray,
        leaf_lo_t: np.ndarray,
        leaf_hi_t: np.ndarray,
        nz_cols: np.ndarray | None = None,
        nz_vals: np.ndarray | None = None,
        same: np.ndarray | None = None,
    ) -> None:
        self.emb = emb
        self.rows = rows
        self.pos = pos
        self.offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        self.centroids = centroids
        self.theta = theta
        # The compiled scan takes these as typed contiguous buffers: no copy where they already are
        # (memory-mapped from a bundle), a converted copy of any other dtype.
        self.leaf_offsets = np.ascontiguousarray(leaf_offsets, dtype=np.int64)
        self.leaf_lo_t = np.ascontiguousarray(leaf_lo_t, dtype=np.float32)
        self.leaf_hi_t = np.ascontiguousarray(leaf_hi_t, dtype=np.float32)
        if nz_cols is None or nz_vals is None:
            nz_cols, nz_vals = _row_nonzeros(emb)
        self.nz_cols = None if nz_cols is None else np.ascontiguousarray(nz_cols, dtype=np.uint16)
        self.nz_vals = None if nz_vals is None else np.ascontiguousarray(nz_vals, dtype=np.float32)
        if same is None and self.nz_cols is not None:
            same = _identical_rows(self.nz_cols, self.nz_vals)
        self.same = None if same is None else _in_scan_order(np.ascontiguousarray(same, dtype=np.int32), self.offsets, self.rows)
        self.n_same = 0 if same is None else int(self.same.max(initial=-1)) + 1
        # Leaves nest in clusters: cluster c owns leaves first_leaf[c] .. first_leaf[c + 1] - 1.
        self.first_leaf = np.searchsorted(leaf_offsets[:-1], offsets).astype(np.int64)
        busy = np.flatnonzero(np.diff(self.first_leaf) > 0)
        d = emb.shape[1]
        self.cluster_lo_t = np.zeros((d, len(offsets) - 1), np.float32)
        self.cluster_hi_t = np.zeros((d, len(offsets) - 1), np.float32)
        if busy.size:
            self.cluster_lo_t[:, busy] = np.minimum.reduceat(leaf_lo_t, self.first_leaf[busy], axis=1)
            self.cluster_hi_t[:, busy] = np.maximum.reduceat(leaf_hi_t, self.first_leaf[busy], axis=1)

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> NeighborIndex:
        """The index from `arrays()` output, or from a bundle written before leaves existed
        (each cluster's consecutive items become its leaves: still exact, prunes less)."""
        arrays = dict(arrays)
        for name in ("leaf_lo", "leaf_hi"):  # boxes by leaf, as stored for a few days
            if name in arrays:
                arrays[f"{name}_t"] = np.ascontiguousarray(np.asarray(arrays.pop(name)).T)
        if "leaf_offsets" not in arrays:
            offsets = arrays["offsets"]
            sizes = np.diff(offsets)
            per = -(-sizes // LEAF_SIZE)
            starts = np.repeat(offsets[:-1], per) + LEAF_SIZE * (np.arange(per.sum()) - np.repeat(np.cumsum(per) - per, per))
            arrays["leaf_offsets"] = np.append(starts, arrays["emb"].shape[0]).astype(np.int64)
            arrays["leaf_lo_t"], arrays["leaf_hi_t"] = _boxes(np.asarray(arrays["emb"]), arrays["leaf_offsets"][:-1])
        return cls(**arrays)

    @property
    def n_items(self) -> int:
        return int(self.emb.shape[0])

    @property
    def compiled(self) -> bool:
        """Whether searches go through the compiled kernel (built, and the rows' non-zeros at hand)."""
        return _leafscan is not None and self.nz_cols is not None

    def arrays(self) -> dict[str, np.ndarray]:
        nonzeros = {"nz_cols": self.nz_cols, "nz_vals": self.nz_vals, "same": self.same} if self.nz_cols is not None else {}
        return {
            "emb": self.emb,
            "rows": self.rows,
            "pos": self.pos,
            "offsets": self.offsets,
            "centroids": self.centroids,
            "theta": self.theta,
            "leaf_offsets": self.leaf_offsets,
            "leaf_lo_t": self.leaf_lo_t,
            "leaf_hi_t": self.leaf_hi_t,
            **nonzeros,
        }

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """Embeddings of the given caller rows."""
        return self._dense_rows(self.pos[np.asarray(rows, dtype=np.int64)])

    def _dense_rows(self, pos: np.ndarray) -> np.ndarray:
        """Rows `pos` of `emb`, the same values, put together from their non-zeros.

        A served query reads `nz_cols` / `nz_vals` and never `emb`, so a web worker does not map the
        dense matrix into its memory (four times the size) for the few rows it needs.
        """
        if self.nz_cols is None:
            return np.asarray(self.emb[pos])
        cols, vals = self.nz_cols[pos], self.nz_vals[pos]
        out = np.zeros((pos.size, self.emb.shape[1]), dtype=np.float32)
        real = vals != 0  # the padding is (column 0, value 0)
        out[np.nonzero(real)[0], cols[real]] = vals[real]
        return out

    # -- building --------------------------------------------------------------------------
    @classmethod
    def build(cls, emb: np.ndarray, seed: int = 0) -> NeighborIndex:
        """Cluster `emb` (n, d) unit rows; the caller's row i is `emb[i]`."""
        emb = np.ascontiguousarray(emb, dtype=np.float32)
        n, d = emb.shape
        n_clusters = int(min(MAX_CLUSTERS, max(1, n // CLUSTER_SIZE)))
        if n_clusters == 1:
            labels = np.zeros(n, dtype=np.int64)
            centroids = emb.mean(axis=0, keepdims=True) if n else np.zeros((1, d), np.float32)
            norm = np.linalg.norm(centroids)
            centroids = (centroids / norm if norm > 0 else centroids).astype(np.float32)
        else:
            centroids = cls._kmeans(emb, n_clusters, seed)
            labels = _nearest_centroids(emb, centroids)
        nz_cols, nz_vals = _row_nonzeros(emb)
        if nz_cols is None:
            return cls._from_labels(emb, labels, centroids)
        same = _identical_rows(nz_cols, nz_vals)
        # Identical items into the cluster of the first of them (the product rounds their similarity to
        # two equal centroids alike only in the same block): the compiled scan counts them per query
        # and takes the first k it meets for the lowest rows (see _in_scan_order).
        shared = np.flatnonzero(same >= 0)
        first = np.full(int(same.max(initial=-1)) + 1, n, dtype=np.int64)
        np.minimum.at(first, same[shared], shared)
        labels = labels.copy()
        labels[shared] = labels[first[same[shared]]]
        return cls._from_labels(emb, labels, centroids, (nz_cols, nz_vals, same))

    @staticmethod
    def _kmeans(emb: np.ndarray, n_clusters: int, seed: int) -> np.ndarray:
        """Spherical k-means on a sample: good enough centroids, bounded cost."""
        rng = np.random.default_rng(seed)
        sample = emb[np.sort(rng.choice(emb.shape[0], size=min(KMEANS_SAMPLE, emb.shape[0]), replace=False))]
        centroids = sample[rng.choice(sample.shape[0], size=n_clusters, replace=False)].copy()
        for _ in range(KMEANS_ITERATIONS):
            labels = _nearest_centroids(sample, centroids)
            # Per-cluster sums as a sparse product: the same float64 additions in the same order as
            # np.add.at, without its per-element dispatch (seconds at 30k x 155).
            members = sp.csr_matrix((np.ones(labels.size), (labels, np.arange(labels.size))), shape=(n_clusters, labels.size))
            sums = np.asarray(members @ sample.astype(np.float64))
            norms = np.linalg.norm(sums, axis=1, keepdims=True)
            # An empty cluster keeps its old centroid.
            centroids = np.where(norms > 0, sums / np.maximum(norms, 1e-12), centroids).astype(np.float32)
        return centroids

    @classmethod
    def _from_labels(cls, emb: np.ndarray, labels: np.ndarray, centroids: np.ndarray, nonzeros: tuple | None = None) -> NeighborIndex:
        """The index of these clusters; `nonzeros`: (nz_cols, nz_vals, same) of `emb`'s rows, else taken again."""
        n = emb.shape[0]
        n_clusters = centroids.shape[0]
        cos = np.einsum("ij,ij->i", emb, centroids[labels]) if n else np.zeros(0, np.float32)
        # By cluster, most central member first (a single cluster is searched by one full product
        # and keeps this order); then each cluster's rows in leaf order.
        order = np.lexsort((-cos, labels))
        offsets = np.concatenate(([0], np.cumsum(np.bincount(labels, minlength=n_clusters)))).astype(np.int64)
        leaf_starts = [np.zeros(0, np.int64)]
        for c in range(n_clusters):
            lo, hi = int(offsets[c]), int(offsets[c + 1])
            if hi == lo:
                continue
            if n_clusters == 1:
                leaf_starts.append(np.arange(lo, hi, LEAF_SIZE, dtype=np.int64))
                continue
            perm, starts = _kd_leaves(emb[order[lo:hi]], LEAF_SIZE)
            order[lo:hi] = order[lo:hi][perm]
            leaf_starts.append(starts + lo)
        leaf_offsets = np.append(np.concatenate(leaf_starts), n).astype(np.int64)
        sorted_emb = np.ascontiguousarray(emb[order])
        pos = np.empty(n, dtype=np.int64)
        pos[order] = np.arange(n)
        angle = np.arccos(np.clip(cos[order], -1.0, 1.0))
        theta = np.zeros(n_clusters)
        busy = np.flatnonzero(np.diff(offsets) > 0)
        if busy.size:
            theta[busy] = np.maximum.reduceat(angle, offsets[busy])
        leaf_lo_t, leaf_hi_t = _boxes(sorted_emb, leaf_offsets[:-1])
        return cls(
            sorted_emb,
            order.astype(np.int64),
            pos,
            offsets,
            centroids.astype(np.float32),
            (theta + ANGLE_MARGIN).astype(np.float32),
            leaf_offsets,
            leaf_lo_t,
            leaf_hi_t,
            *((part[order] for part in nonzeros) if nonzeros is not None else ()),
        )

    def subset(self, rows: np.ndarray) -> NeighborIndex:
        """The index restricted to caller rows `rows` (ascending), renumbered 0..len-1.

        The centroids stay; the radii stay valid upper bounds (a subset is never wider); the
        leaves keep their items that remain, and their boxes are taken again.
        """
        new_row = np.full(self.n_items, -1, dtype=np.int64)
        new_row[np.asarray(rows, dtype=np.int64)] = np.arange(len(rows))
        keep = np.flatnonzero(new_row[self.rows] >= 0)
        labels = np.repeat(np.arange(len(self.offsets) - 1), np.diff(self.offsets))[keep]
        leaves = np.repeat(np.arange(len(self.leaf_offsets) - 1), np.diff(self.leaf_offsets))[keep]
        emb = np.ascontiguousarray(self.emb[keep])
        kept_rows = new_row[self.rows[keep]]
        pos = np.empty(kept_rows.size, dtype=np.int64)
        pos[kept_rows] = np.arange(kept_rows.size)
        offsets = np.concatenate(([0], np.cumsum(np.bincount(labels, minlength=len(self.offsets) - 1)))).astype(np.int64)
        leaf_offsets = np.append(_group_starts(leaves)[:-1] if leaves.size else np.zeros(0, np.int64), leaves.size).astype(np.int64)
        leaf_lo_t, leaf_hi_t = _boxes(emb, leaf_offsets[:-1])
        # The kept rows' non-zeros and groups, in the same order (a group left with one item is harmless).
        nonzeros = (self.nz_cols[keep], self.nz_vals[keep], self.same[keep]) if self.nz_cols is not None else ()
        return NeighborIndex(emb, kept_rows, pos, offsets, self.centroids, self.theta, leaf_offsets, leaf_lo_t, leaf_hi_t, *nonzeros)

    # -- searching --------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Same contract as `top_k`: caller rows (m, k') and similarities, best first."""
        n = self.n_items
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        m = queries.shape[0]
        exclude = np.full(m, -1, dtype=np.int64) if exclude is None else np.asarray(exclude, dtype=np.int64)
        kk = max(0, min(k, n - (1 if (exclude >= 0).any() else 0)))
        if m == 0 or kk == 0:
            return np.empty((m, kk), dtype=np.int64), np.empty((m, kk), dtype=np.float32)
        # Each query's answer depends on that query alone, so large batches go in blocks: per
        # query, a bound per cluster and the items of its seed clusters are held at once.
        largest = int(np.diff(self.offsets).max())
        per_query = 12 * len(self.offsets) + 20 * SEED_CLUSTERS * largest
        block = max(64, SEARCH_BLOCK_BYTES // per_query)
        if m > block:
            parts = [self._search_block(queries[s : s + block], kk, exclude[s : s + block]) for s in range(0, m, block)]
            return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        return self._search_block(queries, kk, exclude)

    def _search_block(self, queries: np.ndarray, kk: int, exclude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ex_pos = np.where(exclude >= 0, self.pos[np.maximum(exclude, 0)], -1)
        n_clusters = len(self.offsets) - 1
        m = queries.shape[0]
        with _THREADS.limit(limits=1, user_api="blas"):
            if n_clusters == 1:
                # The one cluster is the whole index: scanned whole, then ranked like any other, so
                # near-equal neighbours come in the same order alone, in a batch and on any CPU.
                if self.compiled:
                    return self._search_compiled(queries, np.zeros((m, 1), np.int64), np.zeros((m, 1), np.float32), kk, ex_pos)
                found = [self._scan_clusters(queries, np.arange(m), np.zeros(m, dtype=np.int64), kk, ex_pos)]
                return self._best(queries, found, self._kth(found[0], m, kk), kk)
            cos = queries @ self.centroids.T
            bound = self._cluster_bounds(queries, cos)
            # Seeds by centroid similarity, not by bound: on wide encodings many clusters' bounds
            # reach 1, while the nearest centroids hold a near-final k-th best.
            n_seed = min(SEED_CLUSTERS, n_clusters)
            seeds = np.argpartition(-np.where(np.isfinite(bound), cos, -np.inf), n_seed - 1, axis=1)[:, :n_seed]
            if self.compiled:
                return self._search_compiled(queries, seeds, bound, kk, ex_pos)
            found = [self._scan_clusters(queries, np.repeat(np.arange(m), n_seed), seeds.ravel(), kk, ex_pos)]
            kth = self._kth(found[0], m, kk)
            if m <= FEW_QUERIES:
                found += [self._scan_leaves_of(queries[q], q, seeds[q], kth[q], ex_pos[q]) for q in range(m)]
            else:
                np.put_along_axis(bound, seeds, -np.inf, axis=1)  # scanned already
                q_more, c_more = np.nonzero(bound >= kth[:, None])
                if q_more.size:
                    found.append(self._scan_leaves(queries, q_more, c_more, kth, ex_pos))
        return self._best(queries, found, kth, kk)

    def _search_compiled(
        self, queries: np.ndarray, seeds: np.ndarray, bound: np.ndarray, kk: int, ex_pos: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The seed and leaf scans by the compiled kernel (`_leafscan.search`), ranked by `_best` like numpy's."""
        q, p, v, kth = _leafscan.search(
            queries,
            np.ascontiguousarray(seeds, dtype=np.int64),
            np.argsort(seeds[:, 0], kind="stable"),  # neighbouring queries one after another: their leaves stay in cache
            np.ascontiguousarray(bound, dtype=np.float32),
            kk,
            np.ascontiguousarray(ex_pos, dtype=np.int64),
            self.offsets,
            self.first_leaf,
            self.leaf_offsets,
            self.leaf_lo_t,
            self.leaf_hi_t,
            self.nz_cols,
            self.nz_vals,
            self.same,
            self.n_same,
            BOUND_MARGIN,
            SCORE_SLACK,
        )
        return self._best(queries, [(q, p, v)], kth, kk)

    def _cluster_bounds(self, queries: np.ndarray, cos: np.ndarray) -> np.ndarray:
        """(m, clusters): no item of cluster c is more similar to query q than bound[q, c].

        `cos` is the queries' similarity to the centroids.
        """
        # The margin also covers float32 similarities of identical unit rows, which round to 1 + 1 ulp.
        cone = np.cos(np.maximum(np.arccos(np.clip(cos, -1.0, 1.0)) - self.theta[None, :], 0.0)) + BOUND_MARGIN
        bound = np.minimum(cone, _box_bound(queries, self.cluster_lo_t, self.cluster_hi_t))
        bound[:, np.diff(self.offsets) == 0] = -np.inf
        return bound

    @staticmethod
    def _kth(found: tuple[np.ndarray, np.ndarray, np.ndarray], m: int, kk: int) -> np.ndarray:
        """Per query, the kk-th best similarity among (query, pos, sim) triples; -inf if fewer."""
        q, _, sims = found
        order = np.argsort(_descending_key(q, sims), kind="stable")
        q, sims = q[order], sims[order]
        starts = np.searchsorted(q, np.arange(m))
        counts = np.bincount(q, minlength=m)
        kth = np.full(m, -np.inf, dtype=np.float32)
        enough = counts >= kk
        kth[enough] = sims[starts[enough] + kk - 1]
        return kth

    def _scan_clusters(
        self, queries: np.ndarray, q: np.ndarray, c: np.ndarray, kk: int, ex_pos: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cluster c[i] against query q[i]: (query, pos, sim) triples of the items that can be
        among the query's kk best, i.e. those within SCORE_SLACK of the cluster's kk-th best."""
        order = np.argsort(c, kind="stable")
        q, c = q[order], c[order]
        out_q, out_p, out_v = [], [], []
        for a, b in _pairs(_group_starts(c)):
            lo, hi = int(self.offsets[c[a]]), int(self.offsets[c[a] + 1])
            qs = q[a:b]
            sims = queries[qs] @ self.emb[lo:hi].T
            ex = ex_pos[qs] - lo
            inside = np.flatnonzero((ex >= 0) & (ex < hi - lo))
            sims[inside, ex[inside]] = -np.inf  # the query item itself must not count among its kk best
            if hi - lo > kk:
                kth = np.partition(sims, hi - lo - kk, axis=1)[:, hi - lo - kk]
                i, j = np.nonzero(sims >= kth[:, None] - SCORE_SLACK)
            else:
                i, j = np.nonzero(np.isfinite(sims))
            out_q.append(qs[i])
            out_p.append(j + lo)
            out_v.append(sims[i, j])
        return _drop_excluded(out_q, out_p, out_v, ex_pos)

    def _scan_leaves(
        self, queries: np.ndarray, q: np.ndarray, c: np.ndarray, kth: np.ndarray, ex_pos: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Many queries: leaves of clusters c[i] whose box reaches kth[q[i]], scanned leaf by leaf."""
        order = np.argsort(c, kind="stable")
        q, c = q[order], c[order]
        leaf_q, leaf_l = [], []
        for a, b in _pairs(_group_starts(c)):
            first, last = int(self.first_leaf[c[a]]), int(self.first_leaf[c[a] + 1])
            qs = q[a:b]
            reach = _box_bound(queries[qs], self.leaf_lo_t[:, first:last], self.leaf_hi_t[:, first:last]) >= kth[qs, None]
            i, j = np.nonzero(reach)
            leaf_q.append(qs[i])
            leaf_l.append(j + first)
        q = np.concatenate(leaf_q)
        leaf = np.concatenate(leaf_l)
        order = np.argsort(leaf, kind="stable")
        q, leaf = q[order], leaf[order]
        starts = _group_starts(leaf)
        out_q, out_p, out_v = [], [], []
        # Tens of thousands of leaves: the loop only multiplies; the bookkeeping of a chunk of
        # leaves is vectorised after it (a leaf's block, flattened, is its queries x its items).
        for chunk in range(0, starts.size - 1, SCAN_CHUNK_LEAVES):
            bounds = starts[chunk : chunk + SCAN_CHUNK_LEAVES + 1]
            first = leaf[bounds[:-1]]
            spans = zip(
                bounds[:-1].tolist(),
                bounds[1:].tolist(),
                self.leaf_offsets[first].tolist(),
                self.leaf_offsets[first + 1].tolist(),
                strict=True,
            )
            sims = np.concatenate([(queries[q[a:b]] @ self.emb[lo:hi].T).ravel() for a, b, lo, hi in spans])
            pairs = slice(bounds[0], bounds[-1])
            size = self.leaf_offsets[leaf[pairs] + 1] - self.leaf_offsets[leaf[pairs]]
            pair_q = np.repeat(q[pairs], size)
            hit = np.flatnonzero(sims >= kth[pair_q] - SCORE_SLACK)
            out_q.append(pair_q[hit])
            out_p.append(_ranges(self.leaf_offsets[leaf[pairs]], size)[hit])
            out_v.append(sims[hit])
        return _drop_excluded(out_q, out_p, out_v, ex_pos)

    def _scan_leaves_of(
        self, vector: np.ndarray, query: int, seeds: np.ndarray, kth: float, ex_pos: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One query: every leaf (outside the seed clusters) whose box reaches `kth`, at once.

        Only the query's non-zero dimensions of the boxes are read.
        """
        up, down = np.flatnonzero(vector > 0), np.flatnonzero(vector < 0)
        bound = vector[up] @ self.leaf_hi_t[up] + vector[down] @ self.leaf_lo_t[down] + BOUND_MARGIN
        for c in seeds.tolist():
            bound[self.first_leaf[c] : self.first_leaf[c + 1]] = -np.inf
        reach = np.flatnonzero(bound >= kth)
        pos = _ranges(self.leaf_offsets[reach], self.leaf_offsets[reach + 1] - self.leaf_offsets[reach])
        sims = self.emb[pos] @ vector
        hit = (sims >= kth - SCORE_SLACK) & (pos != ex_pos)
        return np.full(int(hit.sum()), query, dtype=np.int64), pos[hit], sims[hit].astype(np.float32, copy=False)

    def _lowest_of_identical(self, q: np.ndarray, p: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
        """Of each query's candidates that are identical items (one group of `same`), the kk lowest caller rows.

        Identical items score the same and ties go to the lower row, so the others cannot be among
        the kk best: the numpy scan's counterpart of the compiled scan's rule, for many identical items.
        """
        group = np.where(self.same[p] >= 0, self.same[p], self.n_same + p)  # an item without identical ones: a group of its own
        order = np.lexsort((self.rows[p], group, q))
        qs, gs = q[order], group[order]
        first = np.concatenate(([True], (qs[1:] != qs[:-1]) | (gs[1:] != gs[:-1])))
        starts = np.flatnonzero(first)
        rank = np.arange(qs.size) - np.repeat(starts, np.diff(np.append(starts, qs.size)))
        keep = np.sort(order[rank < kk])
        return q[keep], p[keep]

    def _best(self, queries: np.ndarray, found: list, kth: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
        """The kk best of the found (query, pos, sim) triples per query, best first.

        BLAS rounds a similarity differently with the shape of the product it is part of, so the
        candidates near the top are scored again one by one in float64 and ranked by that score,
        then by caller row: a query's answer does not depend on the other queries of its batch
        nor on the path it took, and equals the full product's up to float32 rounding.
        """
        m = queries.shape[0]
        q = np.concatenate([f[0] for f in found])
        p = np.concatenate([f[1] for f in found])
        v = np.concatenate([f[2] for f in found])
        keep = v >= kth[q] - SCORE_SLACK
        q, p = q[keep], p[keep]
        if self.same is not None and q.size > CROWDED_CANDIDATES * kk * m:
            q, p = self._lowest_of_identical(q, p, kk)
        # Cast inside einsum, block by block: the same sums as on float64 copies, without the copies.
        score = np.einsum("ij,ij->i", queries[q], self._dense_rows(p), dtype=np.float64)
        rows = self.rows[p]
        order = np.lexsort((rows, -score, q))
        q, rows, score = q[order], rows[order], score[order]
        rank = np.arange(q.size) - np.searchsorted(q, q)
        take = rank < kk
        out_rows = np.empty((m, kk), dtype=np.int64)
        out_sims = np.empty((m, kk), dtype=np.float32)
        out_rows[q[take], rank[take]] = rows[take]
        out_sims[q[take], rank[take]] = score[take]
        return out_rows, out_sims


def _pairs(starts: np.ndarray) -> list[tuple[int, int]]:
    return list(zip(starts[:-1].tolist(), starts[1:].tolist(), strict=True))


def _drop_excluded(out_q: list, out_p: list, out_v: list, ex_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not out_q:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    q, p, v = np.concatenate(out_q), np.concatenate(out_p), np.concatenate(out_v).astype(np.float32, copy=False)
    keep = p != ex_pos[q]
    if keep.all():
        return q, p, v
    return q[keep], p[keep], v[keep]


class BruteIndex:
    """Exact search by one full matrix product, with nothing to build: for small, short-lived indexes.

    The settings search scores a dozen encodings of a fixed-size sample; clustering each would cost
    more than all of its queries (measured at 20,000 x 155: build 1.5 s vs 0.4 s for 1,500 queries).
    Same interface as `NeighborIndex` for what a RoutingModel asks of it.
    """

    def __init__(self, emb: np.ndarray) -> None:
        self.emb = np.ascontiguousarray(emb, dtype=np.float32)

    @property
    def n_items(self) -> int:
        return self.emb.shape[0]

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        return self.emb[np.asarray(rows, dtype=np.int64)]

    def search(self, queries: np.ndarray, k: int, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        with _THREADS.limit(limits=1, user_api="blas"):
            return top_k(self.emb, queries, k, exclude)
