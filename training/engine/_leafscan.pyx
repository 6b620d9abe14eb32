# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled leaf scan of `NeighborIndex` (built by `make deps`; neighbors.py falls back to numpy without it).

numpy pays its per-call overhead on every one of the ~170 leaves (16 items each) a query scans,
so the batch scan was bound by that overhead; and a dense item row is 155 floats of which ~24 are
not zero (one per feature), so scoring it read four times the memory it needs. Here each query
bounds the leaves of its clusters from their boxes through its own non-zero dimensions, and scores
the items of the leaves that reach its threshold from their non-zeros alone (`nz_cols` / `nz_vals`,
padded with zeros), all in one loop without the GIL. Sums are in double: the bound stays an upper bound and a similarity stays
within the caller's slack, so the candidates found are a superset of numpy's scan and the final
ranking (NeighborIndex._best, in float64) is the same.
"""

import numpy as np

from libc.stdint cimport int64_t, uint16_t
from libc.stdlib cimport free, malloc, realloc


cdef struct Found:
    int64_t *q
    int64_t *pos
    float *sim
    Py_ssize_t size
    Py_ssize_t capacity


cdef int _append(Found *out, int64_t q, int64_t pos, float sim) noexcept nogil:
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
    out.sim[out.size] = sim
    out.size += 1
    return 0


def scan_leaves(
    const float[:, ::1] queries,
    const int64_t[::1] pair_q,
    const int64_t[::1] pair_c,
    const float[::1] kth,
    const int64_t[::1] ex_pos,
    const int64_t[::1] first_leaf,
    const int64_t[::1] leaf_offsets,
    const float[:, ::1] leaf_lo_t,
    const float[:, ::1] leaf_hi_t,
    const uint16_t[:, ::1] nz_cols,
    const float[:, ::1] nz_vals,
    double bound_margin,
    double slack,
):
    """(query, pos, sim) of every item, in the leaves of cluster pair_c[i] whose box bound reaches
    kth[pair_q[i]], that is within `slack` of that threshold; ex_pos[q] (the query item itself) never.

    Pairs are grouped by query (pair_q non-decreasing), so each query's non-zero dimensions are
    gathered once.
    """
    cdef Py_ssize_t d = queries.shape[1]
    cdef Py_ssize_t n_pairs = pair_q.shape[0]
    cdef Py_ssize_t width = nz_cols.shape[1]
    cdef Py_ssize_t i, t, l, first, last, row, nnz = 0, widest = 0
    cdef int64_t q, current = -1, c
    cdef double v, s, need, cut
    cdef const float *box
    cdef const float *query = NULL
    cdef const uint16_t *cols
    cdef const float *vals_of
    cdef int failed = 0
    cdef Found out
    for i in range(first_leaf.shape[0] - 1):
        widest = max(widest, first_leaf[i + 1] - first_leaf[i])
    cdef Py_ssize_t *dims = <Py_ssize_t *> malloc(max(d, 1) * sizeof(Py_ssize_t))
    cdef double *vals = <double *> malloc(max(d, 1) * sizeof(double))
    cdef double *bound = <double *> malloc(max(widest, 1) * sizeof(double))
    out.capacity = 4096
    out.size = 0
    out.q = <int64_t *> malloc(out.capacity * sizeof(int64_t))
    out.pos = <int64_t *> malloc(out.capacity * sizeof(int64_t))
    out.sim = <float *> malloc(out.capacity * sizeof(float))
    try:
        if dims == NULL or vals == NULL or bound == NULL or out.q == NULL or out.pos == NULL or out.sim == NULL:
            raise MemoryError()
        with nogil:
            for i in range(n_pairs):
                q = pair_q[i]
                c = pair_c[i]
                if q != current:
                    current = q
                    query = &queries[q, 0]
                    nnz = 0
                    for t in range(d):
                        if queries[q, t] != 0:
                            dims[nnz] = t
                            vals[nnz] = queries[q, t]
                            nnz += 1
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
                need = kth[q]
                cut = need - slack
                for l in range(last - first):
                    if bound[l] < need:
                        continue
                    for row in range(leaf_offsets[first + l], leaf_offsets[first + l + 1]):
                        if row == ex_pos[q]:
                            continue
                        cols = &nz_cols[row, 0]
                        vals_of = &nz_vals[row, 0]
                        s = 0.0
                        for t in range(width):
                            s += <double> query[cols[t]] * vals_of[t]
                        if s >= cut:
                            if _append(&out, q, row, <float> s) != 0:
                                failed = 1
                                break
                    if failed:
                        break
                if failed:
                    break
        if failed:
            raise MemoryError()
        found_q = np.empty(out.size, dtype=np.int64)
        found_pos = np.empty(out.size, dtype=np.int64)
        found_sim = np.empty(out.size, dtype=np.float32)
        _copy_out(found_q, found_pos, found_sim, &out)
        return found_q, found_pos, found_sim
    finally:
        free(dims)
        free(vals)
        free(bound)
        free(out.q)
        free(out.pos)
        free(out.sim)


cdef void _copy_out(int64_t[::1] q, int64_t[::1] pos, float[::1] sim, Found *out) noexcept:
    cdef Py_ssize_t i
    for i in range(out.size):
        q[i] = out.q[i]
        pos[i] = out.pos[i]
        sim[i] = out.sim[i]
