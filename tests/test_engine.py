"""The pure ML core (training.engine): encoding, neighbours, votes, times, metrics, selection, bundles.

No database and no Django: the engine takes DataFrames and returns a bundle.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from training.engine import (
    DEFAULT_FEATURES,
    BundleError,
    EngineConfig,
    FeatureSpec,
    RoutingModel,
    TrainingCancelled,
    metrics,
    select_candidate,
    train,
    verify_bundle,
)
from training.engine import pipeline as train_module
from training.engine.config import CANDIDATES
from training.engine.encoding import ItemEncoder
from training.engine.neighbors import NeighborIndex, top_k
from training.engine.tables import build_tables, weighted_trimmed_mean

# --- a small factory with learnable rules ---------------------------------------------------

ROUTES = {
    "SLEEVE": ["CUT", "TURN", "INSPECT"],
    "GLAND": ["CUT", "MILL", "DRILL", "INSPECT"],
    "FACE": ["LAP", "INSPECT"],
}
JOB_NAMES = {
    "CUT": "Cutting",
    "TURN": "Turning",
    "MILL": "Milling",
    "DRILL": "Drilling",
    "INSPECT": "Inspection",
    "LAP": "Lapping",
    "HEAT": "Heat treatment",
}
RUN_PER_50MM = {"CUT": 1.0, "TURN": 4.0, "MILL": 6.0, "DRILL": 2.0, "INSPECT": 0.5, "LAP": 3.0, "HEAT": 0.2}


def make_factory(n_items: int = 300, seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Items, current routings and actuals: the part type picks the operations, steel sleeves
    are heat treated outside, the diameter picks the work centre and scales the times."""
    rng = np.random.default_rng(seed)
    part = rng.choice(list(ROUTES), n_items)
    material = rng.choice(["SS304", "CERAMIC"], n_items)
    od = np.round(rng.uniform(20, 200, n_items), 1)
    items = pd.DataFrame(
        {
            "ITEM_CD": [f"IT{i:04d}" for i in range(n_items)],
            "PART_TYPE": part,
            "ITEM_MATERIAL": material,
            "OUTDIAMETER": od,
            "INDIAMETER": np.round(od * 0.6, 1),
            "ITEM_NM": [f"name {i}" for i in range(n_items)],
        }
    )
    op_rows, act_rows = [], []
    for i, (code, p, m, d) in enumerate(zip(items.ITEM_CD, part, material, od, strict=True)):
        jobs = list(ROUTES[p])
        if p == "SLEEVE" and m == "SS304":
            jobs.insert(2, "HEAT")
        for n, job in enumerate(jobs):
            res = f"{job}-{'L' if d > 100 else 'S'}"
            std = RUN_PER_50MM[job] * d / 50
            op_rows.append((code, 10 * (n + 1), job, JOB_NAMES[job], res, "OUT" if job == "HEAT" else "IN", 15.0, std))
            if i % 5:  # every fifth item has no work results yet
                for _ in range(3):
                    act_rows.append(
                        (
                            code,
                            10 * (n + 1),
                            job,
                            res,
                            pd.Timestamp("2026-01-01") + pd.Timedelta(days=i),
                            10,
                            (8.0 + d / 10) * rng.lognormal(0, 0.05),  # bigger parts take longer to set up
                            std * 1.2 * rng.lognormal(0, 0.05),
                        )
                    )
    routings = pd.DataFrame(
        op_rows, columns=["ITEM_CD", "PROC_SEQ", "JOB_CD", "JOB_NM", "RES_CD", "INSIDE_FLAG", "SETUP_MINUTES", "RUN_MINUTES_PER_UNIT"]
    )
    actuals = pd.DataFrame(
        act_rows, columns=["ITEM_CD", "PROC_SEQ", "JOB_CD", "RES_CD", "REPORT_DT", "ORDER_QTY", "SETUP_MINUTES", "RUN_MINUTES_PER_UNIT"]
    )
    return items, routings, actuals


FAST = EngineConfig(max_time_rows=2000, max_boost_rows=2000, holdout_share=0.2, candidates=CANDIDATES)


@pytest.fixture(scope="module")
def factory():
    return make_factory()


@pytest.fixture(scope="module")
def trained(factory):
    items, routings, actuals = factory
    return train(items, routings, actuals, FAST)


# --- encoding ------------------------------------------------------------------------------


def test_categorical_encoding_has_frequent_values_other_and_missing():
    cfg = EngineConfig(features=(FeatureSpec("COLOR", "categorical"),), max_categories=2, min_category_count=1)
    frame = pd.DataFrame({"COLOR": ["red", "red", "red", "blue", "blue", "green", None, " "]})
    enc = ItemEncoder(cfg).fit(frame)
    assert enc.column_names() == ["COLOR=red", "COLOR=blue", "COLOR:other", "COLOR:missing"]
    dense = enc.encode(pd.DataFrame({"COLOR": ["blue", "green", "never seen", None, "  red "]})).toarray()
    assert dense.tolist() == [[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 0], [0, 0, 0, 1], [1, 0, 0, 0]]


def test_rare_values_go_to_other_and_absent_columns_count_as_missing():
    cfg = EngineConfig(features=(FeatureSpec("COLOR", "categorical"), FeatureSpec("SIZE", "numeric")), min_category_count=2)
    enc = ItemEncoder(cfg).fit(pd.DataFrame({"COLOR": ["red", "red", "blue"], "SIZE": [1.0, 2.0, 3.0]}))
    assert enc.column_names() == ["COLOR=red", "COLOR:other", "COLOR:missing", "SIZE", "SIZE:missing"]
    dense = enc.encode(pd.DataFrame({"OTHER": [1]})).toarray()  # neither column given
    assert dense.tolist() == [[0, 0, 1, 0, 1]]


def test_numeric_encoding_is_log_robust_scaled_with_missing_indicator():
    cfg = EngineConfig(features=(FeatureSpec("SIZE", "numeric", weight=2.0),))
    sizes = [0.0, 1.0, 3.0, 7.0, 15.0]  # log1p: 0, ln2, ln4, ln8, ln16
    enc = ItemEncoder(cfg).fit(pd.DataFrame({"SIZE": sizes}))
    logs = np.log1p(sizes)
    median, iqr = np.median(logs), np.percentile(logs, 75) - np.percentile(logs, 25)
    dense = enc.encode(pd.DataFrame({"SIZE": [7.0, None, "n/a"]})).toarray()
    assert dense[0] == pytest.approx([2.0 * (np.log1p(7.0) - median) / iqr, 0.0])
    assert dense[1].tolist() == [0.0, 2.0] and dense[2].tolist() == [0.0, 2.0]  # missing indicator carries the weight


def test_small_and_large_frames_encode_identically(factory):
    """Interactive predictions take a per-value path; it must agree with the vectorised one."""
    items = factory[0].copy()
    items.loc[3, "PART_TYPE"] = None
    items.loc[4, "OUTDIAMETER"] = np.nan
    items.loc[5, "ITEM_MATERIAL"] = "  SS304 "
    items.loc[6, "PART_TYPE"] = "UNSEEN"
    items["OUTDIAMETER"] = items["OUTDIAMETER"].astype(object)
    items.loc[7, "OUTDIAMETER"] = "not a number"
    enc = ItemEncoder(EngineConfig(n_components=4)).fit(items)
    enc.fit_embedding(enc.encode(items))
    big = enc.transform(items.iloc[:100])
    small = np.vstack([enc.transform(items.iloc[i : i + 10]) for i in range(0, 100, 10)])
    assert np.allclose(big, small, atol=1e-6)


def test_feature_weights_are_applied_after_scaling_and_change_neighbours():
    """A query shares its colour with A and its size with B; the weights decide who is nearer."""
    frame = pd.DataFrame(
        {
            "COLOR": ["red", "red", "blue", "green", "green", "blue", "green"],
            "SIZE": [10.0, 1000.0, 10.0, 50.0, 200.0, 500.0, 5000.0],
        }
    )
    index_rows = np.arange(1, len(frame))  # row 0 is the query; A is row 1, B is row 2

    def nearest(color_weight: float, size_weight: float) -> int:
        cfg = EngineConfig(
            features=(FeatureSpec("COLOR", "categorical", color_weight), FeatureSpec("SIZE", "numeric", size_weight)),
            min_category_count=1,
            n_components=32,
        )
        enc = ItemEncoder(cfg).fit(frame)
        emb = enc.fit_embedding(enc.encode(frame))
        rows, _ = top_k(emb[index_rows], emb[:1], 1)
        return int(index_rows[rows[0, 0]])

    assert nearest(color_weight=5.0, size_weight=0.2) == 1
    assert nearest(color_weight=0.2, size_weight=5.0) == 2

    # The scaled numeric column scales linearly with its weight: it was not re-scaled away.
    one = ItemEncoder(EngineConfig(features=(FeatureSpec("SIZE", "numeric", 1.0),))).fit(frame).encode(frame).toarray()
    three = ItemEncoder(EngineConfig(features=(FeatureSpec("SIZE", "numeric", 3.0),))).fit(frame).encode(frame).toarray()
    assert three == pytest.approx(3 * one)


def test_default_features_switch_off_free_text():
    weights = {f.name: f.weight for f in DEFAULT_FEATURES}
    assert weights["DRAW_NO"] == 0 and weights["ITEM_NM"] == 0
    assert weights["PART_TYPE"] > 0 and weights["OUTDIAMETER"] > 0
    assert "ITEM_NM" not in [f.name for f in EngineConfig().active_features]


# --- neighbour search ---------------------------------------------------------------------


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("n", [500, 40_000])
def test_top_k_is_exact_on_small_and_large_indexes(n):
    rng = np.random.default_rng(0)
    index, queries = _unit(rng, n, 16), _unit(rng, 70, 16)
    rows, sims = top_k(index, queries, 7)
    expected = np.argsort(-(queries @ index.T), axis=1)[:, :7]
    assert np.array_equal(rows, expected)
    assert np.allclose(sims, np.take_along_axis(queries @ index.T, expected, axis=1))


@pytest.fixture(params=["compiled", "numpy"])
def leaf_scan(request, monkeypatch):
    """The test runs on the compiled leaf scan and again on the numpy one: both answer exactly."""
    from training.engine import neighbors

    if request.param == "numpy":
        monkeypatch.setattr(neighbors, "_leafscan", None)
    elif neighbors._leafscan is None:
        pytest.skip("the compiled leaf scan is not built here (`make deps` builds it; see test_make_builds_the_compiled_leaf_scan)")
    return request.param


def _clustered_points(rng, n_centres: int, n: int, dim: int) -> np.ndarray:
    """`n` unit vectors scattered around `n_centres` random directions (item-like clusters)."""
    centres = _unit(rng, n_centres, dim)
    points = centres[rng.integers(0, n_centres, n)] + 0.3 * rng.standard_normal((n, dim)).astype(np.float32)
    return points / np.linalg.norm(points, axis=1, keepdims=True)


@pytest.mark.parametrize("n_queries", [2, 60])
def test_clustered_index_returns_exactly_the_brute_force_neighbours(n_queries, leaf_scan):
    points = _clustered_points(np.random.default_rng(3), 40, 30_000, 16)
    index = NeighborIndex.build(points, seed=0)
    assert len(index.offsets) - 1 > 1  # really clustered
    queries = points[:n_queries]
    rows, sims = index.search(queries, 9, exclude=np.arange(n_queries))
    brute = queries @ points.T
    brute[np.arange(n_queries), np.arange(n_queries)] = -np.inf
    assert np.allclose(sims, -np.sort(-brute, axis=1)[:, :9], atol=1e-6)
    assert np.allclose(np.take_along_axis(brute, rows, axis=1), sims, atol=1e-6)
    assert np.array_equal(index.vectors(np.array([5, 7])), points[[5, 7]])

    keep = np.arange(0, 30_000, 3)
    sub = index.subset(keep)
    rows, sims = sub.search(queries, 5)
    brute = queries @ points[keep].T
    assert np.allclose(sims, -np.sort(-brute, axis=1)[:, :5], atol=1e-6)



def test_every_row_is_assigned_its_most_similar_centroid_when_blocks_go_on_two_threads():
    from training.engine.neighbors import ASSIGN_BLOCK, _nearest_centroids

    rng = np.random.default_rng(5)
    rows = _clustered_points(rng, 50, 3 * ASSIGN_BLOCK + 123, 16)  # four blocks, the last one short
    centroids = _clustered_points(rng, 50, 64, 16)
    labels = _nearest_centroids(rows, centroids)
    sims = rows.astype(np.float64) @ centroids.astype(np.float64).T
    assert labels.shape == (rows.shape[0],)
    assert np.allclose(sims[np.arange(rows.shape[0]), labels], sims.max(axis=1), atol=1e-6)

def test_a_large_batch_searched_in_blocks_answers_exactly_as_in_one_go(monkeypatch, leaf_scan):
    from training.engine import neighbors

    points = _clustered_points(np.random.default_rng(4), 30, 20_000, 24)
    index = NeighborIndex.build(points, seed=0)
    queries, exclude = points[:700], np.arange(700)
    whole = index.search(queries, 10, exclude=exclude)
    monkeypatch.setattr(neighbors, "SEARCH_BLOCK_BYTES", 1)  # blocks of 64 queries, the last one shorter
    blocked = index.search(queries, 10, exclude=exclude)
    assert np.array_equal(whole[0], blocked[0]) and np.array_equal(whole[1], blocked[1])


def _one_hot_items(rng, n: int) -> np.ndarray:
    """Unit rows shaped like encoded items: one-hot blocks (few values, so many identical rows) and two numbers."""
    blocks = [rng.integers(0, size, n) for size in (3, 5, 8, 2, 12)]
    width = sum((3, 5, 8, 2, 12)) + 2
    x = np.zeros((n, width), np.float32)
    offset = 0
    for codes, size in zip(blocks, (3, 5, 8, 2, 12), strict=True):
        x[np.arange(n), offset + codes] = 1.0
        offset += size
    x[:, -2] = np.round(rng.standard_normal(n), 1)  # rounded: equal sizes are common too
    x[:, -1] = np.where(rng.random(n) < 0.3, 0.0, rng.standard_normal(n))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _exact_ranking(points: np.ndarray, queries: np.ndarray, k: int, exclude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The definition the index must meet: float64 similarity descending, then row ascending."""
    sims = queries.astype(np.float64) @ points.astype(np.float64).T
    sims[np.arange(len(queries)), exclude] = -np.inf
    order = np.lexsort((np.broadcast_to(np.arange(points.shape[0]), sims.shape), -sims), axis=1)[:, :k]
    return order, np.take_along_axis(sims, order, axis=1)


def test_leaf_search_ranks_exactly_even_among_many_identical_items(leaf_scan):
    points = _one_hot_items(np.random.default_rng(8), 24_000)
    index = NeighborIndex.build(points, seed=0)
    assert len(index.offsets) - 1 > 1 and len(index.leaf_offsets) - 1 > 10 * (len(index.offsets) - 1)
    queries, exclude = points[:300], np.arange(300)
    expected_rows, expected_sims = _exact_ranking(points, queries, 15, exclude)
    rows, sims = index.search(queries, 15, exclude=exclude)  # many queries: leaf by leaf
    assert np.array_equal(rows, expected_rows)
    assert np.allclose(sims, expected_sims, atol=1e-6)
    # Alone, a query gets the same answer as in a batch (the few-queries path gathers instead).
    for q in (0, 7, 123):
        alone = index.search(queries[q : q + 1], 15, exclude=exclude[q : q + 1])
        assert np.array_equal(alone[0][0], rows[q]) and np.array_equal(alone[1][0], sims[q])


def test_a_one_cluster_index_ranks_exactly_and_answers_a_query_alone_as_in_a_batch(leaf_scan):
    # A small factory's index (under 2 x CLUSTER_SIZE items) is one cluster. Ranked on the float32
    # product, near-equal neighbours came out in an order that depended on the batch (BLAS rounds the
    # last bit by the product's shape) and on the CPU's BLAS kernel: a page and the API could list an
    # item's similar items differently.
    points = _one_hot_items(np.random.default_rng(8), 600)
    index = NeighborIndex.build(points, seed=0)
    assert len(index.offsets) - 1 == 1
    queries, exclude = points[:200], np.arange(200)
    expected_rows, expected_sims = _exact_ranking(points, queries, 15, exclude)
    rows, sims = index.search(queries, 15, exclude=exclude)
    assert np.array_equal(rows, expected_rows)
    assert np.allclose(sims, expected_sims, atol=1e-6)
    for q in range(200):
        alone = index.search(queries[q : q + 1], 15, exclude=exclude[q : q + 1])
        assert np.array_equal(alone[0][0], rows[q]) and np.array_equal(alone[1][0], sims[q]), q


def test_leaf_and_cluster_bounds_never_underestimate_a_similarity():
    from training.engine.neighbors import _box_bound

    points = np.concatenate([_one_hot_items(np.random.default_rng(9), 6_000), np.zeros((0, 32), np.float32)])
    index = NeighborIndex.build(points, seed=1)
    queries = np.concatenate([points[:20], _one_hot_items(np.random.default_rng(10), 20)])
    sims = queries @ index.emb.T
    leaf_of_row = np.repeat(np.arange(len(index.leaf_offsets) - 1), np.diff(index.leaf_offsets))
    cluster_of_row = np.repeat(np.arange(len(index.offsets) - 1), np.diff(index.offsets))
    leaf_bound = _box_bound(queries, index.leaf_lo_t, index.leaf_hi_t)
    cluster_bound = index._cluster_bounds(queries, queries @ index.centroids.T)
    assert (sims <= leaf_bound[:, leaf_of_row]).all()
    assert (sims <= cluster_bound[:, cluster_of_row]).all()
    # and the leaves are far tighter than the clusters: that is what makes the search cheap
    tenth = -np.sort(-sims, axis=1)[:, 9:10]
    through_leaves = (leaf_bound[:, leaf_of_row] >= tenth).mean()
    through_clusters = (cluster_bound[:, cluster_of_row] >= tenth).mean()
    assert through_leaves < 0.5 * through_clusters, (through_leaves, through_clusters)


def test_a_batch_whose_best_are_all_in_the_seed_clusters_is_answered(leaf_scan):
    """A cluster can pass its bound (the union of its leaves' boxes) while none of its leaves does."""
    q = np.array([1.0, 1.0, 0.0], np.float32) / np.sqrt(2.0)
    e1, e2 = np.array([1.0, 0.0, 0.0], np.float32), np.array([0.01, 1.0, 0.0], np.float32)
    points = np.concatenate([np.tile(q, (400, 1)), np.tile(q, (400, 1)), np.tile(e1, (192, 1)), np.tile(e2, (192, 1)), np.tile([0, 0, 1.0], (400, 1))])
    points = (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)
    labels = np.repeat([0, 1, 2, 3], [400, 400, 384, 400])
    centroids = np.stack([points[labels == c].mean(axis=0) for c in range(4)])
    index = NeighborIndex._from_labels(points, labels, (centroids / np.linalg.norm(centroids, axis=1, keepdims=True)).astype(np.float32))
    queries, exclude = points[:10], np.arange(10)  # more than a few queries: the batch path
    rows, sims = index.search(queries, 3, exclude=exclude)
    expected_rows, _ = _exact_ranking(points, queries, 3, exclude)
    assert np.array_equal(rows, expected_rows) and np.allclose(sims, 1.0)


def test_an_index_saved_without_leaves_still_searches_exactly(leaf_scan):
    points = _one_hot_items(np.random.default_rng(11), 12_000)
    index = NeighborIndex.build(points, seed=0)
    arrays = {name: arr for name, arr in index.arrays().items() if not name.startswith("leaf_")}
    older = NeighborIndex.from_arrays(arrays)  # a bundle written before leaves existed
    queries, exclude = points[:50], np.arange(50)
    expected_rows, _ = _exact_ranking(points, queries, 10, exclude)
    assert np.array_equal(older.search(queries, 10, exclude=exclude)[0], expected_rows)
    assert np.array_equal(older.search(queries[:1], 10, exclude=exclude[:1])[0], expected_rows[:1])


def test_make_builds_the_compiled_leaf_scan():
    from training.engine import neighbors

    assert neighbors._leafscan is not None, "training/engine/_leafscan.pyx is not compiled: run `make deps` (make test does)"


def test_a_stale_build_of_the_leaf_scan_is_not_called_and_the_search_uses_numpy(caplog):
    import types

    from training.engine import neighbors

    stale = types.SimpleNamespace(ABI=neighbors.LEAFSCAN_ABI - 1, search=None)
    assert neighbors._usable_kernel(stale) is None
    assert "stale build" in caplog.text and "make deps" in caplog.text
    assert neighbors._usable_kernel(types.SimpleNamespace(search=None)) is None  # built before the ABI existed
    assert neighbors._usable_kernel(None) is None
    current = types.SimpleNamespace(ABI=neighbors.LEAFSCAN_ABI)
    assert neighbors._usable_kernel(current) is current


def test_an_embedding_too_wide_for_the_kernel_is_searched_with_numpy():
    points = np.zeros((300, 66_000), np.float32)  # one cluster: small, and still past uint16 columns
    rng = np.random.default_rng(14)
    points[np.arange(300), rng.integers(0, 66_000, 300)] = 1.0
    points[np.arange(300), 65_999] = 0.5
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    index = NeighborIndex.build(points, seed=0)
    assert index.nz_cols is None and not index.compiled and "nz_cols" not in index.arrays()
    queries, exclude = points[:30], np.arange(30)
    assert np.array_equal(index.search(queries, 5, exclude=exclude)[0], _exact_ranking(points, queries, 5, exclude)[0])
    assert np.array_equal(index.vectors(np.array([3, 4])), points[[3, 4]])


@pytest.mark.parametrize("shape", ["one-hot", "dense", "with empty rows"])
def test_the_compiled_and_the_numpy_leaf_scans_give_the_same_answers(shape, monkeypatch):
    from training.engine import neighbors

    if neighbors._leafscan is None:
        pytest.skip("the compiled leaf scan is not built here")
    rng = np.random.default_rng(12)
    if shape == "dense":
        points = _clustered_points(rng, 30, 12_000, 24)
    else:
        points = _one_hot_items(rng, 12_000)
    if shape == "with empty rows":  # an item with no attribute at all encodes to zeros
        points[rng.choice(len(points), 300, replace=False)] = 0.0
    index = NeighborIndex.build(points, seed=0)
    assert index.nz_cols.shape[1] == max(1, int((points != 0).sum(axis=1).max()))
    queries = np.concatenate([points[:400], _one_hot_items(rng, 20) if shape != "dense" else _clustered_points(rng, 5, 20, 24)])
    exclude = np.concatenate([np.arange(400), np.full(20, -1)])
    answers = {}
    for scan in ("compiled", "numpy"):
        if scan == "numpy":
            monkeypatch.setattr(neighbors, "_leafscan", None)
        batch = index.search(queries, 12, exclude=exclude)
        alone = [index.search(queries[i : i + 1], 12, exclude=exclude[i : i + 1]) for i in range(0, len(queries), 7)]
        answers[scan] = (batch, alone)
    (batch, alone), (batch_np, alone_np) = answers["compiled"], answers["numpy"]
    assert np.array_equal(batch[0], batch_np[0]) and np.array_equal(batch[1], batch_np[1])
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(alone, alone_np, strict=True))
    expected_rows, _ = _exact_ranking(points, queries[:400], 12, exclude[:400])
    assert np.array_equal(batch[0][:400], expected_rows)


def test_an_index_saved_without_the_row_non_zeros_takes_them_again_on_load(leaf_scan):
    points = _one_hot_items(np.random.default_rng(13), 9_000)
    index = NeighborIndex.build(points, seed=0)
    older = NeighborIndex.from_arrays({name: arr for name, arr in index.arrays().items() if not name.startswith("nz_")})
    assert np.array_equal(older.nz_cols, index.nz_cols) and np.array_equal(older.nz_vals, index.nz_vals)
    rebuilt = np.zeros_like(index.emb)  # the padding adds zeros to column 0
    np.add.at(rebuilt, (np.arange(len(rebuilt))[:, None], older.nz_cols.astype(np.int64)), older.nz_vals)
    assert np.array_equal(rebuilt, index.emb)
    queries, exclude = points[:60], np.arange(60)
    assert np.array_equal(older.search(queries, 10, exclude=exclude)[0], _exact_ranking(points, queries, 10, exclude)[0])


def test_thousands_of_identical_items_are_ranked_exactly_without_flooding_the_final_ranking(leaf_scan, monkeypatch):
    # Items that differ only in their code encode the same: a query that resembles them ties with all of
    # them, and the lower rows win. The compiled scan hands on at most k of each group of identical items.
    rng = np.random.default_rng(15)
    points = _one_hot_items(rng, 12_000)
    copies = rng.choice(12_000, 4_000, replace=False)
    points[copies] = points[copies[0]]
    index = NeighborIndex.build(points, seed=0)
    candidates = []
    best = NeighborIndex._best

    def counting(self, queries, found, kth, kk):
        candidates.append(sum(f[0].size for f in found) / len(queries))
        return best(self, queries, found, kth, kk)

    monkeypatch.setattr(NeighborIndex, "_best", counting)
    queries = np.concatenate([points[copies[:40]], points[:40]])
    exclude = np.concatenate([copies[:40], np.arange(40)])
    rows, sims = index.search(queries, 12, exclude=exclude)
    expected_rows, expected_sims = _exact_ranking(points, queries, 12, exclude)
    assert np.array_equal(rows, expected_rows)
    assert np.allclose(sims, expected_sims, atol=1e-6)
    alone = index.search(queries[:1], 12, exclude=exclude[:1])
    assert np.array_equal(alone[0][0], rows[0])
    if leaf_scan == "compiled":
        assert max(candidates) < 200, candidates  # not the 4,000 copies per query
    cluster_of = np.repeat(np.arange(len(index.offsets) - 1), np.diff(index.offsets))
    assert np.unique(cluster_of[index.pos[copies]]).size == 1  # one cluster, so the scan meets them in row order


def test_identical_items_split_over_clusters_by_an_older_index_are_still_ranked_exactly(leaf_scan):
    rng = np.random.default_rng(16)
    points = _one_hot_items(rng, 3_000)
    copies = np.arange(0, 3_000, 2)
    points[copies] = points[0]
    # An index whose clusters split the copies, higher rows first: as one built before identical
    # items were kept together could.
    labels = np.where(np.isin(np.arange(3_000), copies), (np.arange(3_000) < 1_500).astype(np.int64), 2 + np.arange(3_000) % 3)
    centroids = np.stack([points[labels == c].mean(axis=0) for c in range(5)])
    index = NeighborIndex._from_labels(points, labels, (centroids / np.linalg.norm(centroids, axis=1, keepdims=True)).astype(np.float32))
    assert (index.same[index.pos[copies]] == -1).all()  # no longer one group
    queries, exclude = points[[0, 2, 1, 5]], np.array([0, 2, 1, 5])
    assert np.array_equal(index.search(queries, 9, exclude=exclude)[0], _exact_ranking(points, queries, 9, exclude)[0])


def test_top_k_handles_many_identical_items():
    index = np.tile(np.array([[1.0, 0.0]], dtype=np.float32), (20_000, 1))
    rows, sims = top_k(index, index[:3], 5, exclude=np.array([0, 1, 2]))
    assert rows.shape == (3, 5) and np.allclose(sims, 1.0)
    assert all(q not in rows[q] for q in range(3))


def test_neighbours_exclude_the_item_itself(trained, factory):
    items = factory[0]
    query = items.iloc[[4]]
    code = query.ITEM_CD.iloc[0]
    with_self = trained.model.predict(query, exclude_self=False)[0]
    without_self = trained.model.predict(query)[0]
    similarity = {s["item_cd"]: s["similarity"] for s in with_self["similar_items"]}
    assert similarity[code] == pytest.approx(1.0, abs=1e-5)  # itself, unless told to exclude it
    assert code not in [s["item_cd"] for s in without_self["similar_items"]]
    assert len(without_self["similar_items"]) == trained.model.config.top_k  # the k the search chose


# --- the routing vote and the times (hand-made index) -----------------------------------------


@pytest.fixture
def hand_model():
    """Four indexed items at known cosine similarities to the query direction (1, 0)."""
    routings = pd.DataFrame(
        [
            ("I1", 10, "CUT", "Cutting", "SAW-1", "IN", 5.0, 1.0),
            ("I1", 20, "TURN", "Turning", "LATHE-1", "OUT", 8.0, 1.0),
            ("I2", 10, "CUT", "Cutting", "SAW-2", "IN", 7.0, 3.0),
            ("I2", 20, "TURN", "Turning", "LATHE-1", "IN", 9.0, 2.0),
            ("I3", 10, "CUT", "Cutting", "SAW-2", "IN", 5.0, 4.0),
            ("I3", 20, "MILL", "Milling", "MILL-1", "IN", 5.0, 4.0),
            ("I4", 10, "LAP", "Lapping", "LAP-1", "IN", 5.0, 4.0),
        ],
        columns=["ITEM_CD", "PROC_SEQ", "JOB_CD", "JOB_NM", "RES_CD", "INSIDE_FLAG", "SETUP_MINUTES", "RUN_MINUTES_PER_UNIT"],
    )
    actuals = pd.DataFrame(
        [
            ("I1", "CUT", 20.0, 2.0),
            ("I1", "CUT", 30.0, 4.0),
            ("I1", "CUT", 40.0, 6.0),
            ("I2", "CUT", 10.0, 10.0),
            ("I3", "CUT", 10.0, 1.0),
            ("I3", "CUT", 10.0, 3.0),
        ],
        columns=["ITEM_CD", "JOB_CD", "SETUP_MINUTES", "RUN_MINUTES_PER_UNIT"],
    )
    codes = np.array(["I1", "I2", "I3", "I4"])
    vocab, index = build_tables(codes, routings, actuals)
    sims = np.array([0.9, 0.8, 0.95, 0.5])
    emb = np.stack([sims, np.sqrt(1 - sims**2)], axis=1).astype(np.float32)
    cfg = EngineConfig(features=(FeatureSpec("X", "numeric"),), top_k=4)
    encoder = ItemEncoder(cfg).fit(pd.DataFrame({"X": [1.0, 2.0]}))
    encoder.fit_embedding(encoder.encode(pd.DataFrame({"X": [1.0, 2.0]})))
    return train_module.build_model(cfg, encoder, vocab, index, NeighborIndex.build(emb), codes, emb)


def _predict_direction(model: RoutingModel) -> dict:
    emb = np.array([[1.0, 0.0]], dtype=np.float32)
    core = model.route(emb, None, 4)
    return model.to_dicts(core, ["NEW"], model.choose_times(core, emb, None))[0]


def test_signature_vote_confidence_and_alternatives(hand_model):
    pred = _predict_direction(hand_model)
    total = 0.9 + 0.8 + 0.95 + 0.5
    assert pred["signature"] == ["CUT", "TURN"]  # 0.9 + 0.8 beats the single closest item (0.95)
    assert pred["confidence"] == pytest.approx((0.9 + 0.8) / total, rel=1e-5)
    assert pred["alternatives"] == [
        {"signature": ["CUT", "MILL"], "support": pytest.approx(0.95 / total, rel=1e-5)},
        {"signature": ["LAP"], "support": pytest.approx(0.5 / total, rel=1e-5)},
    ]
    assert [s["item_cd"] for s in pred["similar_items"]] == ["I3", "I1", "I2", "I4"]


def test_work_centre_and_inside_flag_are_voted_within_the_winning_signature(hand_model):
    ops = _predict_direction(hand_model)["operations"]
    # CUT: SAW-1 (I1, 0.9) beats SAW-2 (I2, 0.8) — I3's SAW-2 does not count, its signature lost.
    assert [op["res_cd"] for op in ops] == ["SAW-1", "LATHE-1"]
    assert [op["inside_flag"] for op in ops] == ["IN", "OUT"]  # TURN: OUT 0.9 vs IN 0.8
    assert [op["proc_seq"] for op in ops] == [10, 20]
    assert [op["job_nm"] for op in ops] == ["Cutting", "Turning"]


def test_times_come_from_neighbour_actuals_else_standard_times(hand_model):
    cut, turn = _predict_direction(hand_model)["operations"]
    # CUT: medians 4 (I1), 10 (I2), 2 (I3 — any neighbour with the job counts), weighted by similarity.
    assert cut["time_source"] == "actuals"
    assert cut["run_minutes_per_unit"] == pytest.approx((0.9 * 4 + 0.8 * 10 + 0.95 * 2) / (0.9 + 0.8 + 0.95), rel=1e-5)
    assert cut["setup_minutes"] == pytest.approx((0.9 * 30 + 0.8 * 10 + 0.95 * 10) / (0.9 + 0.8 + 0.95), rel=1e-5)
    assert cut["sample_count"] == 6
    assert cut["run_p10"] < cut["run_minutes_per_unit"] < cut["run_p90"]
    # TURN: nobody has actuals, so the neighbours' standard times are used, and said so.
    assert turn["time_source"] == "standard"
    assert turn["run_minutes_per_unit"] == pytest.approx((0.9 * 1.0 + 0.8 * 2.0) / 1.7, rel=1e-5)
    assert turn["setup_minutes"] == pytest.approx((0.9 * 8.0 + 0.8 * 9.0) / 1.7, rel=1e-5)
    assert turn["sample_count"] == 0 and turn["run_p10"] is None


def test_weighted_trimmed_mean_drops_ten_percent_at_each_end():
    values = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 100.0])
    groups = np.zeros(10, dtype=np.int64)
    assert weighted_trimmed_mean(groups, values, np.ones(10), 1)[0] == pytest.approx(5.5)
    assert weighted_trimmed_mean(groups[:3], values[:3], np.array([1.0, 1.0, 2.0]), 1)[0] == pytest.approx(2.25)


# --- metrics ---------------------------------------------------------------------------------


def test_lcs_helpers():
    assert metrics.lcs_length(list("ABCBDAB"), list("BDCABA")) == 4
    assert metrics.lcs_pairs(["A", "B", "C", "D"], ["A", "C", "D", "E"]) == [(0, 0), (2, 1), (3, 2)]
    assert metrics.lcs_pairs([], ["A"]) == [] and metrics.lcs_length(["A"], []) == 0
    assert metrics.process_match(["A", "B"], ["A", "B", "C", "D"]) == 0.5


def _op(job: str, run: float | None, setup: float | None = None) -> dict:
    return {"job_cd": job, "run_minutes_per_unit": run, "setup_minutes": setup}


def test_evaluate_matches_hand_computed_values():
    predictions = [
        {"item_cd": "A", "operations": [_op("CUT", 2.0, 12.0), _op("TURN", 3.0, 5.0), _op("INSPECT", 1.0)]},
        {"item_cd": "B", "operations": [_op("LAP", 1.0), _op("PACK", 1.0)]},
        {"item_cd": "NOT-EVALUATED", "operations": [_op("LAP", 1.0)]},
    ]
    actual_routings = {"A": ["CUT", "TURN", "HEAT", "INSPECT"], "B": ["LAP", "PACK"]}
    actual_times = pd.DataFrame(
        {
            "ITEM_CD": ["A", "A", "A", "Z"],
            "JOB_CD": ["CUT", "CUT", "TURN", "CUT"],
            "RUN_MINUTES_PER_UNIT": [1.0, 3.0, 4.0, 99.0],
            "SETUP_MINUTES": [10.0, 20.0, 5.0, 99.0],
        }
    )
    got = metrics.evaluate(predictions, actual_routings, actual_times)
    assert got["items_evaluated"] == 2
    assert got["items_without_actuals"] == 1  # B: counted, and still in the routing metrics
    assert got["process_match"] == pytest.approx((3 / 4 + 1) / 2)
    assert got["exact_match"] == pytest.approx(0.5)
    assert got["op_precision"] == pytest.approx(5 / 5)
    assert got["op_recall"] == pytest.approx(5 / 6)
    assert got["op_f1"] == pytest.approx(10 / 11)
    # Aligned ops with actuals: CUT |2 - mean(1, 3)| = 0, TURN |3 - 4| = 1; INSPECT has none.
    assert got["operations_compared"] == 2
    assert got["mae"] == pytest.approx(0.5)
    assert got["trim_mae"] == pytest.approx(0.5)
    assert got["rmse"] == pytest.approx(math.sqrt(0.5))
    assert got["setup_mae"] == pytest.approx((3 + 0) / 2)
    assert got["cv"] == pytest.approx(np.std([1.0, 3.0], ddof=1) / 2.0)  # only (A, CUT) has 2 rows
    assert got["sample_count"] == pytest.approx((2 + 1) / 2)
    assert set(metrics.METRIC_NAMES) <= set(got)


def test_trim_mae_trims_ten_percent_of_errors():
    jobs = [f"J{i}" for i in range(10)]
    predictions = [{"item_cd": "A", "operations": [_op(j, 0.0) for j in jobs]}]
    times = pd.DataFrame({"ITEM_CD": "A", "JOB_CD": jobs, "RUN_MINUTES_PER_UNIT": [1, 2, 3, 4, 5, 6, 7, 8, 9, 100.0]})
    got = metrics.evaluate(predictions, {"A": jobs}, times)
    assert got["mae"] == pytest.approx(14.5)
    assert got["trim_mae"] == pytest.approx(5.5)


def test_evaluate_with_nothing_to_compare_reports_none_not_zero():
    got = metrics.evaluate([{"item_cd": "A", "operations": [_op("CUT", 1.0)]}], {"A": ["CUT"]}, None)
    assert got["items_evaluated"] == 1 and got["items_without_actuals"] == 1
    assert got["mae"] is None and got["trim_mae"] is None and got["process_match"] == 1.0


# --- selection and training ------------------------------------------------------------------------


def test_candidate_replaces_baseline_only_with_enough_improvement():
    assert select_candidate({"baseline": {"trim_mae": 10.0}, "mlp": {"trim_mae": 9.6}}, 5.0) == "baseline"
    assert select_candidate({"baseline": {"trim_mae": 10.0}, "mlp": {"trim_mae": 9.5}}, 5.0) == "mlp"
    scores = {"baseline": {"trim_mae": 10.0}, "mlp": {"trim_mae": 9.0}, "stacking": {"trim_mae": 8.0}}
    assert select_candidate(scores, 5.0) == "stacking"
    assert select_candidate(scores, 25.0) == "baseline"
    assert select_candidate({"baseline": {"trim_mae": None}, "mlp": {"trim_mae": 1.0}}, 5.0) == "baseline"


def test_training_learns_the_routing_rules(trained, factory):
    items, routings, actuals = factory
    stats = trained.dataset_stats
    assert stats["total_samples"] == len(routings)
    assert stats["unique_items"] == 300 and stats["unique_processes"] == 7
    assert stats["items_with_actuals"] == 240 and stats["actual_rows"] == len(actuals)
    assert stats["holdout_items"] == 48 == len(trained.holdout_items)
    assert trained.training_cutoff == actuals.REPORT_DT.max().isoformat()
    assert set(trained.candidate_scores) == set(CANDIDATES)
    shipped = {k: v for k, v in trained.metrics.items() if not isinstance(v, dict | str)}  # the search and candidate tables apart
    assert shipped == trained.candidate_scores[trained.selected]
    assert trained.metrics["selected_routing"] in ("vote", "classifier") and "trials" in trained.metrics["search"]
    assert trained.metrics["items_evaluated"] == 48 and trained.metrics["items_without_actuals"] == 0
    assert trained.metrics["process_match"] > 0.95
    base_mae = trained.candidate_scores["baseline"]["mae"]
    assert base_mae is not None and base_mae < 1.0  # minutes per unit; rules scale with diameter

    new_gland = pd.DataFrame({"PART_TYPE": ["GLAND"], "ITEM_MATERIAL": ["CERAMIC"], "OUTDIAMETER": [150.0]})
    pred = trained.model.predict(new_gland)[0]
    assert pred["item_cd"] is None
    assert pred["signature"] == ROUTES["GLAND"] and pred["confidence"] > 0.9
    assert all(op["res_cd"].endswith("-L") for op in pred["operations"])  # large diameter → large machines


def test_predict_by_item_code_alone_uses_the_stored_item(trained, factory):
    items = factory[0]
    code = items.ITEM_CD.iloc[7]
    by_code = trained.model.predict(pd.DataFrame({"ITEM_CD": [code]}))[0]
    by_attributes = trained.model.predict(items.iloc[[7]])[0]
    assert by_code["signature"] == by_attributes["signature"]
    assert [s["item_cd"] for s in by_code["similar_items"]] == [s["item_cd"] for s in by_attributes["similar_items"]]
    assert trained.model.has_item(code) and not trained.model.has_item("NOPE")
    own = factory[1][factory[1].ITEM_CD == code]
    assert [op["job_cd"] for op in trained.model.item_routing(code)] == own.JOB_CD.tolist()
    assert trained.model.item_routing("NOPE") is None


def test_records_and_frames_give_the_same_predictions(trained, factory):
    rows = factory[0].iloc[10:13]
    records = rows.to_dict("records")
    records.append({"PART_TYPE": "FACE", "OUTDIAMETER": 40.0})  # a new item, two attributes
    frame = pd.concat([rows, pd.DataFrame([records[-1]])], ignore_index=True)
    assert trained.model.predict(records) == trained.model.predict(frame)
    big = factory[0].iloc[:100]  # more rows than the per-value path takes
    for a, b in zip(trained.model.predict(big)[:3], trained.model.predict(big.iloc[:3]), strict=True):
        assert a["signature"] == b["signature"] and a["confidence"] == pytest.approx(b["confidence"], rel=1e-5)
        assert [s["item_cd"] for s in a["similar_items"]] == [s["item_cd"] for s in b["similar_items"]]
        assert [o["run_minutes_per_unit"] for o in a["operations"]] == pytest.approx(
            [o["run_minutes_per_unit"] for o in b["operations"]], rel=1e-4
        )


def test_holdout_items_are_never_in_the_fitted_index(factory, monkeypatch):
    built, fitted_on = [], []
    real_build, real_fit = train_module.build_model, train_module.fit_time_models

    def spy_build(*args, **kwargs):
        model = real_build(*args, **kwargs)
        built.append(set(model.indexed_item_codes()))
        return model

    def spy_fit(model, name, rng, **kwargs):
        fitted_on.append(set(model.indexed_item_codes()))
        return real_fit(model, name, rng, **kwargs)

    monkeypatch.setattr(train_module, "build_model", spy_build)
    monkeypatch.setattr(train_module, "fit_time_models", spy_fit)
    result = train(*factory, FAST.replace(candidates=("baseline", "mlp"), min_improvement_pct=-1000.0))
    holdout = set(result.holdout_items)
    assert holdout and built[0].isdisjoint(holdout)  # the scoring index
    assert fitted_on == [built[0]]  # the candidate was fitted once, on the scoring index's items only ...
    assert result.selected == "mlp" and result.model.time_model is not None  # ... and ships as it was scored
    assert holdout.isdisjoint(result.model.fit_codes.tolist())
    assert holdout <= set(result.model.indexed_item_codes())  # the served index holds every item


def test_selected_model_estimates_run_and_setup_times_with_the_model(factory, tmp_path):
    result = train(*factory, FAST.replace(candidates=("baseline", "mlp"), min_improvement_pct=-1000.0))
    assert (result.selected, result.selected_setup) == ("mlp", "mlp")
    assert result.model.time_model.target == "run" and result.model.setup_model.target == "setup"
    ops = result.model.predict(factory[0].iloc[[3]])[0]["operations"]
    assert {op["time_source"] for op in ops} == {"model"} and {op["setup_source"] for op in ops} == {"model"}
    assert all(op["run_minutes_per_unit"] >= 0 and op["setup_minutes"] >= 0 for op in ops)
    # The learned setup estimate differs from the neighbours' mean it starts from, and survives a save/load.
    baseline = train(*factory, FAST.replace(candidates=("baseline",)))
    base_ops = baseline.model.predict(factory[0].iloc[[3]])[0]["operations"]
    assert [op["setup_minutes"] for op in ops] != pytest.approx([op["setup_minutes"] for op in base_ops], rel=1e-6)
    assert result.candidate_scores["mlp"]["setup_mae"] != pytest.approx(result.candidate_scores["baseline"]["setup_mae"])
    result.model.save(tmp_path / "bundle")
    loaded = RoutingModel.load(tmp_path / "bundle")
    assert loaded.selected_setup == "mlp" and loaded.manifest["selected_setup"] == "mlp"
    assert [op["setup_minutes"] for op in loaded.predict(factory[0].iloc[[3]])[0]["operations"]] == pytest.approx(
        [op["setup_minutes"] for op in ops], rel=1e-5
    )


def test_run_and_setup_estimators_are_selected_each_on_their_own_metric():
    scores = {"baseline": {"trim_mae": 10.0, "setup_mae": 4.0}, "mlp": {"trim_mae": 9.0, "setup_mae": 4.5}, "stacking": {"trim_mae": 9.8, "setup_mae": 3.0}}
    assert select_candidate(scores, 5.0, "trim_mae") == "mlp"
    assert select_candidate(scores, 5.0, "setup_mae") == "stacking"


def test_shipped_metrics_are_those_of_the_shipped_run_and_setup_combination(factory, monkeypatch):
    real_select = train_module.select_candidate

    def run_mlp_setup_baseline(scores, pct, metric="trim_mae"):
        return "mlp" if metric == "trim_mae" else "baseline"

    monkeypatch.setattr(train_module, "select_candidate", run_mlp_setup_baseline)
    result = train(*factory, FAST.replace(candidates=("baseline", "mlp")))
    monkeypatch.setattr(train_module, "select_candidate", real_select)
    assert (result.selected, result.selected_setup) == ("mlp", "baseline") and result.model.setup_model is None
    assert result.metrics["trim_mae"] == pytest.approx(result.candidate_scores["mlp"]["trim_mae"])
    assert result.metrics["setup_mae"] == pytest.approx(result.candidate_scores["baseline"]["setup_mae"])


def test_operations_without_neighbour_actuals_use_standard_times_even_with_a_learned_model(hand_model):
    emb = np.array([[1.0, 0.0]], dtype=np.float32)
    core = hand_model.route(emb, None, 4)

    # Stand-in estimators that would answer 999 minutes: they must only be asked where actuals exist.
    class Constant:
        def __init__(self, target):
            self.target = target

        def predict_minutes(self, emb, op_job, op_res, base, std, numeric=None):
            return np.full(op_job.size, 999.0)

    cut, turn = hand_model.to_dicts(core, ["NEW"], hand_model.choose_times(core, emb, Constant("run"), Constant("setup")))[0]["operations"]
    assert (cut["time_source"], cut["setup_source"], cut["run_minutes_per_unit"], cut["setup_minutes"]) == ("model", "model", 999.0, 999.0)
    assert (turn["time_source"], turn["setup_source"]) == ("standard", "standard")
    assert turn["run_minutes_per_unit"] == pytest.approx((0.9 * 1.0 + 0.8 * 2.0) / 1.7, rel=1e-5)
    assert turn["setup_minutes"] == pytest.approx((0.9 * 8.0 + 0.8 * 9.0) / 1.7, rel=1e-5)


def test_items_excluded_from_time_fit_are_never_fitted_on(trained, monkeypatch):
    model = trained.model
    codes = model.indexed_item_codes()
    excluded = frozenset(codes[: len(codes) // 2])
    queried: list[str] = []
    real_vectors = model.neighbors.vectors

    def spy_vectors(rows):
        queried.extend(model.index.item_codes[rows].tolist())
        return real_vectors(rows)

    monkeypatch.setattr(model.neighbors, "vectors", spy_vectors)
    fitted, rows = train_module.fit_time_models(model, "mlp", np.random.default_rng(0), exclude_codes=excluded)
    assert set(fitted) == {"run", "setup"}
    assert queried and excluded.isdisjoint(queried)
    assert sorted(model.index.item_codes[rows].tolist()) == sorted(set(queried))  # the items reported as fitted on


def test_training_passes_the_gate_sample_out_of_the_time_fit(factory, monkeypatch):
    seen = []
    real_fit = train_module.fit_time_models

    def spy_fit(model, name, rng, **kwargs):
        seen.append(kwargs.get("exclude_codes"))
        return real_fit(model, name, rng, **kwargs)

    monkeypatch.setattr(train_module, "fit_time_models", spy_fit)
    gate_sample = factory[0]["ITEM_CD"].iloc[:40].tolist()
    result = train(*factory, FAST.replace(candidates=("baseline", "mlp"), min_improvement_pct=-1000.0), exclude_from_time_fit=gate_sample)
    # One fit (scored, then shipped as it is); it keeps the monitoring set out too.
    assert len(seen) == 1 and frozenset(gate_sample) - set(result.holdout_items) <= seen[0]
    assert result.model.manifest["gate_items_excluded"] == 40
    assert not set(gate_sample) & set(result.model.fit_codes.tolist()) and len(result.model.fit_codes) > 0



class _InlineExecutor:
    """Runs each call at once, on the calling thread: what training did before it used a second thread."""

    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, fn, *args, **kwargs):
        from concurrent.futures import Future

        future = Future()
        future.set_result(fn(*args, **kwargs))
        return future

    def map(self, fn, *iterables):
        return [fn(*args) for args in zip(*iterables, strict=True)]


def _time_estimator_threads() -> list:
    import threading

    return [t for t in threading.enumerate() if t.name.startswith("time-estimators")]


def test_time_estimators_fitted_beside_the_classifiers_equal_those_fitted_on_their_own(factory, monkeypatch):
    import threading

    config = FAST.replace(candidates=("baseline", "mlp", "boost"), min_improvement_pct=-1000.0)
    assert train(*factory, config).stage_seconds["time estimators on the second thread"] > 0
    threads = set()
    real_fit = train_module.TimeModel

    def spy_model(*args, **kwargs):
        threads.add(threading.current_thread().name)
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(train_module, "TimeModel", spy_model)
    beside = train(*factory, config)
    # Each candidate's run and setup estimators were fitted side by side, beside the classifiers.
    assert len(threads) == 2 and all(name.startswith("time-estimators") for name in threads)
    monkeypatch.setattr(train_module, "ThreadPoolExecutor", _InlineExecutor)
    alone = train(*factory, config)
    assert beside.candidate_scores == alone.candidate_scores
    assert (beside.selected, beside.selected_setup, beside.selected_routing) == (alone.selected, alone.selected_setup, alone.selected_routing)
    assert beside.model.predict(factory[0].iloc[:40]) == alone.model.predict(factory[0].iloc[:40])
    assert beside.model.fit_codes.tolist() == alone.model.fit_codes.tolist()



def test_the_settings_search_runs_independent_trials_two_at_a_time_and_keeps_the_same_table(factory, monkeypatch):
    import threading

    from training.engine import search as search_module

    threads = []
    real_compute = search_module._Trials._compute

    def spy_compute(self, *args):
        threads.append(threading.current_thread().name)
        return real_compute(self, *args)

    monkeypatch.setattr(search_module._Trials, "_compute", spy_compute)
    config = FAST.replace(candidates=("baseline",))
    two = train(*factory, config)
    assert sum(name.startswith("settings-search") for name in threads) >= 4  # the weightings, then the widths
    monkeypatch.setattr(search_module, "ThreadPoolExecutor", _InlineExecutor)
    one = train(*factory, config)
    assert two.metrics["search"]["trials"] == one.metrics["search"]["trials"] and len(one.metrics["search"]["trials"]) >= 8
    assert two.metrics["search"] == one.metrics["search"]
    assert two.model.predict(factory[0].iloc[:40]) == one.model.predict(factory[0].iloc[:40])

def test_a_failing_time_estimator_fails_the_training_and_leaves_no_thread_running(factory, monkeypatch):
    def broken_fit(model, name, rng, **kwargs):
        raise FloatingPointError(f"{name} diverged")

    monkeypatch.setattr(train_module, "fit_time_models", broken_fit)
    with pytest.raises(FloatingPointError, match="mlp diverged"):
        train(*factory, FAST.replace(candidates=("baseline", "mlp")))
    assert not _time_estimator_threads()


def test_a_training_cancelled_beside_the_time_fit_stops_only_once_that_thread_is_done(factory, monkeypatch):
    import threading

    cancelled, finished = threading.Event(), threading.Event()
    real_fit = train_module.fit_time_models

    def fit_until_after_the_cancel(model, name, rng, **kwargs):
        assert cancelled.wait(60)  # still fitting when the training is cancelled
        result = real_fit(model, name, rng, **kwargs)
        finished.set()
        return result

    def cancel_at_the_classifier():
        if cancel_at_the_classifier.stage == "fitting and scoring the routing classifier":
            cancelled.set()
            raise TrainingCancelled("cancelled on request")

    def progress(percent, stage):
        cancel_at_the_classifier.stage = stage

    cancel_at_the_classifier.stage = None
    monkeypatch.setattr(train_module, "fit_time_models", fit_until_after_the_cancel)
    with pytest.raises(TrainingCancelled):
        train(*factory, FAST.replace(candidates=("baseline", "mlp")), progress=progress, check_cancel=cancel_at_the_classifier)
    # The estimators were still being fitted when the cancellation came; it is reported after them, not beside them.
    assert finished.is_set() and not _time_estimator_threads()

@pytest.mark.parametrize("name", ["mlp", "stacking", "boost"])
def test_fast_time_prediction_equals_sklearn_predict(name):
    from training.engine.times import TimeFeatures, TimeModel, make_estimator, single_thread

    rng = np.random.default_rng(0)
    features = TimeFeatures(dim=8, job_counts=np.array([5, 3, 1]), res_counts=np.array([2, 2]))
    x = rng.standard_normal((300, features.width)).astype(np.float32)
    x[:, features.code_columns] = rng.integers(0, 5, (300, 2))
    x[::7, features.baseline_column] = np.nan  # missing values take the trees' missing branch
    y = rng.standard_normal(300)
    with single_thread():
        estimator = make_estimator(name, features, 0, n_rows=len(y)).fit(np.nan_to_num(x), y)
    model = TimeModel(name, features, estimator)
    clean = np.nan_to_num(x[:50])
    assert model._fast is not None
    assert model.predict_log(clean) == pytest.approx(estimator.predict(clean), abs=1e-5)  # float32 network


def test_training_without_actuals_uses_standard_times_and_holds_nothing_out():
    items, routings, actuals = make_factory(60)
    result = train(items, routings, actuals.iloc[0:0], FAST)
    assert result.selected == "baseline" and result.candidate_scores == {} and result.metrics == {}
    assert result.dataset_stats["holdout_items"] == 0 and result.training_cutoff is None
    ops = result.model.predict(items.iloc[[0]])[0]["operations"]
    assert ops and {op["time_source"] for op in ops} == {"standard"} and {op["setup_source"] for op in ops} == {"standard"}


def test_training_without_routings_is_refused():
    items, routings, actuals = make_factory(20)
    with pytest.raises(ValueError, match="routing"):
        train(items, routings.iloc[0:0], actuals, FAST)


def test_cancellation_between_stages_raises_training_cancelled(factory):
    calls, seen = [], []

    def check_cancel():
        calls.append(1)
        if len(calls) == 3:
            raise TrainingCancelled("stop")

    with pytest.raises(TrainingCancelled):
        train(*factory, FAST, progress=lambda pct, stage: seen.append(pct), check_cancel=check_cancel)
    assert len(seen) == 2 and seen == sorted(seen)


def test_progress_reaches_one_hundred(factory):
    seen = []
    train(*factory, FAST.replace(candidates=("baseline",)), progress=lambda pct, stage: seen.append((pct, stage)))
    assert seen[-1] == (100.0, "done") and [p for p, _ in seen] == sorted(p for p, _ in seen)


# --- bundles ------------------------------------------------------------------------------------------


def test_bundle_round_trip_gives_identical_predictions(trained, factory, tmp_path):
    manifest = trained.model.save(tmp_path / "bundle")
    assert manifest["selected"] == trained.selected
    assert set(manifest["libraries"]) >= {"python", "numpy", "pandas", "scikit-learn"}
    files = {p.name for p in (tmp_path / "bundle").iterdir()} - {"manifest.json"}
    assert files == set(manifest["files"]) and all(len(f["sha256"]) == 64 for f in manifest["files"].values())
    assert json.loads((tmp_path / "bundle" / "manifest.json").read_text())["files"] == manifest["files"]

    loaded = RoutingModel.load(tmp_path / "bundle", mmap=True)
    assert isinstance(loaded.neighbors.emb.base, np.memmap)  # shared pages, not a private copy
    query = pd.concat([factory[0].iloc[:20], pd.DataFrame({"PART_TYPE": ["FACE"], "OUTDIAMETER": [30.0]})])
    assert loaded.predict(query) == trained.model.predict(query)
    assert loaded.manifest["metrics"] == trained.metrics
    assert RoutingModel.load(tmp_path / "bundle", mmap=False).predict(query) == trained.model.predict(query)


def test_corrupt_bundle_file_raises_bundle_error_naming_the_file(trained, tmp_path):
    trained.model.save(tmp_path)
    path = tmp_path / "index_op_run.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="index_op_run.npy"):
        RoutingModel.load(tmp_path)
    with pytest.raises(BundleError, match="index_op_run.npy"):
        verify_bundle(tmp_path)


def test_missing_bundle_file_raises_bundle_error(trained, tmp_path):
    trained.model.save(tmp_path)
    (tmp_path / "encoder.joblib").unlink()
    with pytest.raises(BundleError, match="encoder.joblib"):
        RoutingModel.load(tmp_path)
    (tmp_path / "manifest.json").unlink()
    with pytest.raises(BundleError, match="manifest.json"):
        RoutingModel.load(tmp_path)


def test_config_round_trips_through_json():
    cfg = EngineConfig().with_weights({"PART_TYPE": 3.0})
    again = EngineConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.feature_weights()["PART_TYPE"] == 3.0
    with pytest.raises(ValueError):
        EngineConfig(candidates=("baseline", "magic"))
