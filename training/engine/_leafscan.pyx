# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled candidate search of `NeighborIndex` (built by `make deps`; neighbors.py falls back to numpy without it).

With numpy, a batch paid its per-call overhead on every one of the ~170 leaves (16 items each) a
query scans, and each item scored was a dense row of 155 floats of which ~24 are not zero (one per
feature): the scan was bound by overhead and memory traffic, not by arithmetic. Here each query, in
one loop without the GIL:

1. scores every item of its seed clusters from the items' non-zeros (`nz_cols` / `nz_vals`, padded
   with zeros), keeping its kk best: their k-th is the threshold;
2. visits every other cluster whose bound (`cluster_bound`, from numpy) reaches the threshold,
   bounds its leaves from their boxes through the query's own non-zero dimensions, and scores the
   items of the leaves that reach it, raising the threshold as better items turn up.

Every item within `slack` of the threshold of its moment is returned, with the final threshold, but
for identical items (one group of `same`, -1 where an item has none): only the first kk of a group, which are its lowest rows.
Identical items score the same, and ties go to the lower row, so the rest can never be among the kk
best; without this, a factory with thousands of identical items sent every one of them to the
float64 ranking, for every query that resembles them (seconds and gigabytes a batch). Sums
are in double: a bound stays an upper bound and a similarity within the slack of numpy's, so the
candidates are a superset of what the final ranking (NeighborIndex._best, in float64) needs, and
that ranking, done in numpy from the same values, gives the same answer as the numpy path.
"""

import numpy as np

from libc.math cimport INFINITY
from libc.stdint cimport int32_t, int64_t, uint16_t
from libc.stdlib cimport calloc, free, malloc, realloc


# The interface of `search` (neighbors.LEAFSCAN_ABI): a build of another one is not used.
ABI = 3


cdef struct Found:
    int64_t *q
    int64_t *pos
    float *sim
    Py_ssize_t size
    Py_ssize_t capacity


cdef int _append(Found *out, int64_t q, int64_t pos, double sim) noexcept nogil:
    cdef Py_ssize_t capacity
    cdef void *grown
    if out.size == out.capacity:
        capacity = 2 * out.capacity
        grown = realloc(out.q, capacity * sizeof(int64_t))
        if grown == NULL:
            return -1
        out.q = <int64_t *> grown
        grown = realloc(out.pos, capacity * sizeof(int64_t))
        if grown == NULL:
            return -1
        out.pos = <int64_t *> grown
        grown = realloc(out.sim, capacity * sizeof(float))
        if grown == NULL:
            return -1
        out.sim = <float *> grown
        out.capacity = capacity
    out.q[out.size] = q
    out.pos[out.size] = pos
    out.sim[out.size] = <float> sim
    out.size += 1
    return 0


cdef inline double _kept(double *best, Py_ssize_t *count, Py_ssize_t kk, double s) noexcept nogil:
    """Keeps `s` among the kk best so far (best[0] highest); returns the k-th best, -inf while fewer."""
    cdef Py_ssize_t i
    if count[0] == kk:
        if s <= best[kk - 1]:
            return best[kk - 1]
        i = kk - 1
    else:
        i = count[0]
        count[0] += 1
    while i > 0 and best[i - 1] < s:
        best[i] = best[i - 1]
        i -= 1
    best[i] = s
    return best[kk - 1] if count[0] == kk else -INFINITY


cdef inline double _score(const float *query, const uint16_t *cols, const float *vals, Py_ssize_t width) noexcept nogil:
    # Four partial sums rather than one chain of dependent additions: 4-7 % less per batch (measured).
    cdef Py_ssize_t t, whole = width - width % 4
    cdef double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
    for t in range(0, whole, 4):
        s0 += <double> query[cols[t]] * vals[t]
        s1 += <double> query[cols[t + 1]] * vals[t + 1]
        s2 += <double> query[cols[t + 2]] * vals[t + 2]
        s3 += <double> query[cols[t + 3]] * vals[t + 3]
    for t in range(whole, width):
        s0 += <double> query[cols[t]] * vals[t]
    return (s0 + s1) + (s2 + s3)


def search(
    const float[:, ::1] queries,
    const int64_t[:, ::1] seeds,
    const int64_t[::1] order,
    const float[:, ::1] cluster_bound,
    Py_ssize_t kk,
    const int64_t[::1] ex_pos,
    const int64_t[::1] offsets,
    const int64_t[::1] first_leaf,
    const int64_t[::1] leaf_offsets,
    const float[:, ::1] leaf_lo_t,
    const float[:, ::1] leaf_hi_t,
    const uint16_t[:, ::1] nz_cols,
    const float[:, ::1] nz_vals,
    const int32_t[::1] same,
    Py_ssize_t n_same,
    double bound_margin,
    double slack,
):
    """Candidates (query, pos, sim) of every query's kk best and the final threshold per query (float32, -inf if fewer)."""
    cdef Py_ssize_t m = queries.shape[0]
    cdef Py_ssize_t d = queries.shape[1]
    cdef Py_ssize_t n_clusters = offsets.shape[0] - 1
    cdef Py_ssize_t n_seed = seeds.shape[1]
    cdef Py_ssize_t width = nz_cols.shape[1]
    cdef Py_ssize_t o, i, j, t, l, c, first, last, row, nnz, count, widest = 1, largest = 1
    cdef int64_t ex
    cdef double v, s, kth
    cdef const float *query
    cdef const float *box
    cdef int failed = 0
    cdef Found out
    for c in range(n_clusters):
        widest = max(widest, first_leaf[c + 1] - first_leaf[c])
        largest = max(largest, offsets[c + 1] - offsets[c])
    kth_out = np.full(m, -np.inf, dtype=np.float32)
    cdef float[::1] kth_of = kth_out
    cdef Py_ssize_t *dims = <Py_ssize_t *> malloc(max(d, 1) * sizeof(Py_ssize_t))
    cdef double *vals = <double *> malloc(max(d, 1) * sizeof(double))
    cdef double *bound = <double *> malloc(widest * sizeof(double))
    cdef double *seed_sims = <double *> malloc(max(n_seed, 1) * largest * sizeof(double))
    cdef double *best = <double *> malloc(max(kk, 1) * sizeof(double))
    cdef char *is_seed = <char *> malloc(max(n_clusters, 1) * sizeof(char))
    # Per group of identical items (`same`; -1: an item without any), how many this query has returned:
    # past kk they are not, since identical items tie and the lower rows win (met first, in pos order).
    cdef int32_t *group_count = <int32_t *> calloc(max(n_same, 1), sizeof(int32_t))
    cdef Py_ssize_t first_out
    out.capacity = 4096
    out.size = 0
    out.q = <int64_t *> malloc(out.capacity * sizeof(int64_t))
    out.pos = <int64_t *> malloc(out.capacity * sizeof(int64_t))
    out.sim = <float *> malloc(out.capacity * sizeof(float))
    try:
        if (dims == NULL or vals == NULL or bound == NULL or seed_sims == NULL or best == NULL or is_seed == NULL or group_count == NULL
                or out.q == NULL or out.pos == NULL or out.sim == NULL):
            raise MemoryError()
        if kk < 1:
            raise ValueError("kk must be at least 1")
        with nogil:
            for c in range(n_clusters):
                is_seed[c] = 0
            for o in range(m):
                i = order[o]
                query = &queries[i, 0]
                ex = ex_pos[i]
                nnz = 0
                for t in range(d):
                    if query[t] != 0:
                        dims[nnz] = t
                        vals[nnz] = query[t]
                        nnz += 1
                count = 0
                kth = -INFINITY
                first_out = out.size
                # 1. the seed clusters in full: their kk best set the threshold
                j = 0
                for t in range(n_seed):
                    c = seeds[i, t]
                    is_seed[c] = 1
                    for row in range(offsets[c], offsets[c + 1]):
                        if row == ex:
                            continue
                        s = _score(query, &nz_cols[row, 0], &nz_vals[row, 0], width)
                        seed_sims[j] = s
                        j += 1
                        kth = _kept(best, &count, kk, s)
                j = 0
                for t in range(n_seed):
                    c = seeds[i, t]
                    for row in range(offsets[c], offsets[c + 1]):
                        if row == ex:
                            continue
                        if seed_sims[j] >= kth - slack and (same[row] < 0 or group_count[same[row]] < kk):
                            if same[row] >= 0:
                                group_count[same[row]] += 1
                            if _append(&out, i, row, seed_sims[j]) != 0:
                                failed = 1
                                break
                        j += 1
                    if failed:
                        break
                # 2. the leaves of every other cluster that can still reach it
                for c in range(n_clusters):
                    if failed or is_seed[c] or cluster_bound[i, c] < kth:
                        continue
                    first = first_leaf[c]
                    last = first_leaf[c + 1]
                    for l in range(last - first):
                        bound[l] = bound_margin
                    for t in range(nnz):
                        v = vals[t]
                        # A positive weight meets the box's maximum, a negative one its minimum.
                        box = &leaf_hi_t[dims[t], first] if v > 0 else &leaf_lo_t[dims[t], first]
                        for l in range(last - first):
                            bound[l] += v * box[l]
                    for l in range(last - first):
                        if bound[l] < kth:
                            continue
                        for row in range(leaf_offsets[first + l], leaf_offsets[first + l + 1]):
                            if row == ex:
                                continue
                            s = _score(query, &nz_cols[row, 0], &nz_vals[row, 0], width)
                            if s >= kth - slack and (same[row] < 0 or group_count[same[row]] < kk):
                                if same[row] >= 0:
                                    group_count[same[row]] += 1
                                if _append(&out, i, row, s) != 0:
                                    failed = 1
                                    break
                                kth = _kept(best, &count, kk, s)
                        if failed:
                            break
                for t in range(n_seed):
                    is_seed[seeds[i, t]] = 0
                for j in range(first_out, out.size):
                    if same[out.pos[j]] >= 0:
                        group_count[same[out.pos[j]]] = 0
                kth_of[i] = <float> kth
                if failed:
                    break
        if failed:
            raise MemoryError()
        found_q = np.empty(out.size, dtype=np.int64)
        found_pos = np.empty(out.size, dtype=np.int64)
        found_sim = np.empty(out.size, dtype=np.float32)
        _copy_out(found_q, found_pos, found_sim, &out)
        return found_q, found_pos, found_sim, kth_out
    finally:
        free(dims)
        free(vals)
        free(bound)
        free(seed_sims)
        free(best)
        free(is_seed)
        free(group_count)
        free(out.q)
        free(out.pos)
        free(out.sim)


cdef void _copy_out(int64_t[::1] q, int64_t[::1] pos, float[::1] sim, Found *out) noexcept:
    cdef Py_ssize_t i
    for i in range(out.size):
        q[i] = out.q[i]
        pos[i] = out.pos[i]
        sim[i] = out.sim[i]
