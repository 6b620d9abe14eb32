"""`train`: fit the encoder and index, score the time candidates on held-out items, refit.

Selection is honest: the held-out items are chosen among items that have a routing and
actual times; the neighbour index and every time estimator are fitted without them; they
are predicted as new items, and only then scored with `metrics.evaluate`. A learned
candidate replaces the baseline only if it beats it by `min_improvement_pct` on the
trimmed run-time MAE. The chosen setup is then refitted on all items.

The encoder (one-hot vocabularies, scalers, SVD) is fitted once on the whole item master:
it sees item attributes only, never a routing or a time, and the served model must know
every item's embedding anyway.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning

from . import metrics
from .config import NUMERIC, EngineConfig
from .encoding import ItemEncoder
from .model import RoutingCore, RoutingModel
from .neighbors import NeighborIndex
from .routing import SignatureRanker, WorkCentreRanker, proposals
from .search import search as search_settings
from .tables import OCC_COLUMN, IndexData, Vocab, as_code_array, assign_occurrences, build_tables, occurrence_rank, ranges
from .times import (
    TARGETS,
    TimeFeatures,
    TimeModel,
    lookup_times,
    main_directions,
    make_estimator,
    numeric_attributes,
    single_blas_thread,
    single_thread,
)

# The time estimators' iterations are capped on purpose, so the MLP warns on every fit. Training fits
# on several threads, and a `warnings.catch_warnings` block is not thread-safe (sklearn enters them too,
# and one thread's exit can restore a list without another's filter), so this one filter is installed
# for the process rather than only around each fit. (pytest wraps the import in a block of its own, so
# the tests set the same filter in pyproject.toml.)
warnings.filterwarnings("ignore", category=ConvergenceWarning, module=r"sklearn\.neural_network")

ProgressFn = Callable[[float, str], None]
ROUTING_METRICS = ("process_match", "exact_match", "op_f1", "res_match")
CancelFn = Callable[[], None]


@dataclass
class TrainResult:
    """What a training run produced; `metrics` are the held-out metrics of the selected setup."""

    model: RoutingModel
    selected: str  # the run-time estimator
    metrics: dict[str, Any]
    candidate_scores: dict[str, dict[str, Any]]
    dataset_stats: dict[str, Any]
    duration_seconds: float
    training_cutoff: str | None
    stage_seconds: dict[str, float] = field(default_factory=dict)
    holdout_items: list[str] = field(default_factory=list)
    selected_setup: str = "baseline"  # the setup-time estimator
    selected_routing: str = "vote"  # "classifier" when the learned routing candidate ships


class _Stages:
    """Progress reporting, cancellation points and per-stage timing in one place."""

    def __init__(self, progress: ProgressFn | None, check_cancel: CancelFn | None) -> None:
        self.progress = progress
        self.check_cancel = check_cancel
        self.seconds: dict[str, float] = {}
        self._name: str | None = None
        self._t0 = time.perf_counter()
        self.started = self._t0

    def __call__(self, percent: float, name: str) -> None:
        self._close()
        if self.check_cancel is not None:
            self.check_cancel()
        if self.progress is not None:
            self.progress(float(percent), name)
        self._name, self._t0 = name, time.perf_counter()

    def _close(self) -> None:
        if self._name is not None:
            self.seconds[self._name] = self.seconds.get(self._name, 0.0) + time.perf_counter() - self._t0
            self._name = None

    def finish(self) -> float:
        self._close()
        if self.progress is not None:
            self.progress(100.0, "done")
        return time.perf_counter() - self.started


def build_model(
    config: EngineConfig,
    encoder: ItemEncoder,
    vocab: Vocab,
    index: IndexData,
    neighbors: NeighborIndex,
    known_codes: np.ndarray,
    known_emb: np.ndarray,
    known_numeric: np.ndarray | None = None,
) -> RoutingModel:
    """A baseline RoutingModel whose neighbour index holds exactly the items of `index`."""
    index_pos = np.searchsorted(known_codes, index.item_codes)
    known_index_row = np.full(len(known_codes), -1, dtype=np.int64)
    known_index_row[index_pos] = np.arange(index_pos.size)
    extra = np.flatnonzero(known_index_row < 0)
    known_extra_row = np.full(len(known_codes), -1, dtype=np.int64)
    known_extra_row[extra] = np.arange(extra.size)
    return RoutingModel(
        config=config,
        encoder=encoder,
        vocab=vocab,
        index=index,
        neighbors=neighbors,
        known_codes=known_codes,
        known_index_row=known_index_row,
        known_extra_row=known_extra_row,
        extra_emb=np.ascontiguousarray(known_emb[extra]),
        known_numeric=known_numeric,
    )


def fit_time_models(
    model: RoutingModel,
    name: str,
    rng: np.random.Generator,
    targets: tuple[str, ...] = TARGETS,
    exclude_codes: frozenset[str] = frozenset(),
    side_by_side: bool = False,
) -> tuple[dict[str, TimeModel], np.ndarray]:
    """Fit estimator `name` for each target on the operation rows of the model's indexed items.

    Returns the fitted estimators and the index rows of the items they were fitted on.

    Whole items are sampled until `max_time_rows` rows are reached, so that one neighbour
    search per sampled item suffices for every target. The baseline feature of a row comes
    from the item's neighbours *without* the item itself: the same situation as a new item
    at predict time. Items in `exclude_codes` are never fitted on (a deployment gate scores
    the model on them later). A target with fewer than two usable items gets no estimator.
    `side_by_side`: the targets' estimators are fitted on threads of their own at once (same estimators).
    """
    cfg = model.config
    idx, n_jobs, stride = model.index, model.vocab.n_jobs, model.vocab.stride
    pair_item = idx.pair_key // stride
    allowed = np.ones(idx.n_items, dtype=bool)
    if exclude_codes:
        allowed &= ~np.isin(idx.item_codes, np.array(sorted(exclude_codes), dtype=idx.item_codes.dtype))
    # The target is the mean of the item's work orders per operation (what the metrics compare with);
    # older tables without means fall back to the medians.
    medians = {
        "run": idx.pair_run_mean if idx.pair_run_mean is not None else idx.pair_run_med,
        "setup": idx.pair_setup_mean if idx.pair_setup_mean is not None else idx.pair_setup_med,
    }
    usable_any = np.zeros(idx.pair_key.size, dtype=bool)
    usable = {}
    for target in targets:
        usable[target] = (idx.pair_count > 0) & np.isfinite(medians[target]) & allowed[pair_item]
        usable_any |= usable[target]
    per_item = np.bincount(pair_item[usable_any], minlength=idx.n_items)
    candidates = np.flatnonzero(per_item)
    if candidates.size < 2:
        return {}, np.zeros(0, dtype=np.int64)
    shuffled = rng.permutation(candidates)
    max_rows = cfg.max_boost_rows if name == "boost" else cfg.max_time_rows
    n_take = int(np.searchsorted(np.cumsum(per_item[shuffled]), max_rows)) + 1
    chosen = np.sort(shuffled[:n_take])
    local = np.full(idx.n_items, -1, dtype=np.int64)
    local[chosen] = np.arange(chosen.size)
    emb = model.neighbors.vectors(chosen)
    nbr, sims = model.neighbors.search(emb, cfg.top_k, exclude=chosen)
    numeric = model.known_numeric[np.searchsorted(model.known_codes, idx.item_codes[chosen])] if model.known_numeric is not None else None
    features = TimeFeatures(
        dim=emb.shape[1],
        projection=main_directions(emb[:: max(1, len(emb) // 5000)], cfg.time_embedding_dims),
        job_counts=np.bincount(idx.op_job, minlength=n_jobs),
        res_counts=np.bincount(idx.op_res, minlength=len(model.vocab.res_codes)),
        n_numeric=0 if numeric is None else numeric.shape[1],
    )
    jobs = []  # (target, estimator, x, y)
    for target in targets:
        rows = np.flatnonzero(usable[target] & (local[pair_item] >= 0))
        if np.unique(pair_item[rows]).size < 2:
            continue
        op_query = local[pair_item[rows]]
        op_token = idx.pair_key[rows] % stride
        op_job = op_token % n_jobs
        op_res = np.asarray(idx.pair_res[rows], dtype=np.int64)
        base, std = lookup_times(idx, stride, nbr, sims, op_query, op_token).of(target)
        x = features.build(emb[op_query], op_job, op_res, base, std, numeric[op_query] if numeric is not None else None)
        y = np.log1p(np.maximum(np.asarray(medians[target][rows], dtype=np.float64), 0.0))
        jobs.append((target, make_estimator(name, features, cfg.seed, n_rows=len(y)), x, y))

    def fit(job: tuple) -> TimeModel:
        target, estimator, x, y = job
        with single_thread(), warnings.catch_warnings():
            # Iterations are capped on purpose (training time); the early-stopped fit is good enough.
            warnings.simplefilter("ignore", ConvergenceWarning)
            estimator.fit(x, y)
        return TimeModel(name=name, features=features, estimator=estimator, target=target)

    if side_by_side and len(jobs) > 1:
        # Each target's estimator is seeded and fitted on one thread of its own, so side by side they are
        # the ones fitted in turn. The process-wide limits and filters are held around the helper's life.
        with single_thread(), warnings.catch_warnings(), ThreadPoolExecutor(max_workers=len(jobs) - 1, thread_name_prefix="time-estimators-fit") as pool:
            warnings.simplefilter("ignore", ConvergenceWarning)  # what each fit's own filter restores to meanwhile
            others = [pool.submit(fit, job) for job in jobs[1:]]
            models = [fit(jobs[0]), *(other.result() for other in others)]
    else:
        models = [fit(job) for job in jobs]
    fitted = {model.target: model for model in models}
    return fitted, (chosen if fitted else np.zeros(0, dtype=np.int64))


def _fit_learned_times(
    model: RoutingModel, names: Sequence[str], rng: np.random.Generator, exclude_codes: frozenset[str]
) -> tuple[dict[str, tuple[dict[str, TimeModel], np.ndarray]], float]:
    """`fit_time_models` for each of `names` in order, and the seconds it took (run on its own thread)."""
    started = time.perf_counter()
    fits = {name: fit_time_models(model, name, rng, exclude_codes=exclude_codes, side_by_side=True) for name in names}
    return fits, time.perf_counter() - started


def _prepare_items(items: pd.DataFrame) -> pd.DataFrame:
    if "ITEM_CD" not in items.columns:
        raise ValueError("items frame lacks column ITEM_CD")
    codes = items["ITEM_CD"]
    keep = codes.notna().to_numpy()
    frame = items.loc[keep].copy()
    frame["ITEM_CD"] = frame["ITEM_CD"].astype(str)
    frame = frame.drop_duplicates("ITEM_CD").sort_values("ITEM_CD", kind="stable").reset_index(drop=True)
    return frame


def _routing_lists(vocab: Vocab, idx: IndexData, rows: np.ndarray) -> dict[str, list[str]]:
    """{item_cd: current JOB_CD sequence} of index rows (for scoring)."""
    lengths = np.diff(idx.op_offsets)[rows]
    jobs = vocab.job_codes[idx.op_job[ranges(idx.op_offsets[rows], lengths)]].tolist()
    bounds = np.concatenate(([0], np.cumsum(lengths))).tolist()
    codes = idx.item_codes[rows].tolist()
    return {code: jobs[bounds[i] : bounds[i + 1]] for i, code in enumerate(codes)}


def _work_centre_lists(vocab: Vocab, idx: IndexData, rows: np.ndarray) -> dict[str, list[str]]:
    """{item_cd: RES_CD per operation of the current routing} of index rows (for scoring work centres)."""
    lengths = np.diff(idx.op_offsets)[rows]
    res = vocab.res_codes[idx.op_res[ranges(idx.op_offsets[rows], lengths)]].tolist() if len(vocab.res_codes) else [""] * int(lengths.sum())
    bounds = np.concatenate(([0], np.cumsum(lengths))).tolist()
    return {code: res[bounds[i] : bounds[i + 1]] for i, code in enumerate(idx.item_codes[rows].tolist())}


def learned_candidates(cfg: EngineConfig, items_with_actuals: int) -> list[str]:
    """The learned time estimators to fit and score: the candidates given, and "stacking" on a small factory
    (`cfg.stacking_up_to_items`) when "boost" is one of them."""
    learned = [c for c in cfg.candidates if c != "baseline"]
    if "boost" in learned and "stacking" not in learned and 0 < items_with_actuals <= cfg.stacking_up_to_items:
        learned.append("stacking")
    return learned


def select_candidate(scores: dict[str, dict[str, Any]], min_improvement_pct: float, metric: str = "trim_mae") -> str:
    """The candidate with the best `metric` among those at least `min_improvement_pct` % better than baseline.

    Run times are chosen on `trim_mae` (DESIGN), setup times on `setup_mae`: a candidate may
    be better at one and not the other.
    """
    base = scores.get("baseline", {}).get(metric)
    if base is None:
        return "baseline"
    # A candidate qualifies at `limit` or under; the best qualifying one wins. A negative
    # percentage lets a learned candidate through even if it is worse (for experiments).
    limit = base * (1.0 - min_improvement_pct / 100.0)
    best, best_value = "baseline", None
    for name, score in scores.items():
        value = score.get(metric)
        if name != "baseline" and value is not None and value <= limit and (best_value is None or value < best_value):
            best, best_value = name, value
    return best


def monitoring_size(n: int, cfg: EngineConfig) -> int:
    """How many of `n` routed items form the monitoring set (see EngineConfig.monitoring_share)."""
    if cfg.monitoring_share <= 0:
        return 0
    return int(min(max(round(cfg.monitoring_share * n), cfg.min_monitoring_items), n // 2, cfg.max_monitoring_items))


def stratified_rows(groups: np.ndarray, take: int, rng: np.random.Generator) -> np.ndarray:
    """`take` rows, about the same share of every group, drawn at random; sorted.

    Vectorised: a random order, then each row's rank within its group in that order.
    """
    n = groups.size
    take = min(int(take), n)
    if take <= 0 or n == 0:
        return np.zeros(0, dtype=np.int64)
    share = take / n
    codes = pd.factorize(pd.Series(groups, dtype=object).fillna("(none)"))[0]
    order = rng.permutation(n)
    rank = occurrence_rank(codes[order])
    quota = np.ceil(share * np.bincount(codes)).astype(np.int64)
    chosen = order[rank < quota[codes[order]]]
    if chosen.size > take:
        chosen = rng.choice(chosen, size=take, replace=False)
    return np.sort(chosen).astype(np.int64)


def select_routing(scores: dict[str, dict[str, Any]], min_improvement_pct: float) -> str:
    """"classifier" if it beats the vote on the held-out items by the `min_improvement_pct` rule, else "vote".

    Match metrics are shares (higher is better), so "better by x %" is read on the error: the
    classifier's exact-match error (1 - exact match) must be at least x % below the vote's, and its
    process match must not be lower.
    """
    vote, learned = scores.get("vote"), scores.get("classifier")
    if not vote or not learned or vote.get("exact_match") is None or learned.get("exact_match") is None:
        return "vote"
    vote_error, learned_error = 1.0 - vote["exact_match"], 1.0 - learned["exact_match"]
    if learned_error > vote_error * (1.0 - min_improvement_pct / 100.0) or vote_error == 0:
        return "vote"
    if (learned.get("process_match") or 0.0) < (vote.get("process_match") or 0.0):
        return "vote"
    return "classifier"


def select_work_centre(scores: dict[str, dict[str, Any]], min_improvement_pct: float) -> str:
    """"classifier" if its work-centre error (1 - res_match) on the held-out items is `min_improvement_pct` % below the vote's."""
    vote, learned = (scores.get(n, {}).get("res_match") for n in ("vote", "classifier"))
    if vote is None or learned is None or vote >= 1.0:
        return "vote"
    return "classifier" if 1.0 - learned <= (1.0 - vote) * (1.0 - min_improvement_pct / 100.0) else "vote"


@dataclass
class ClassifierSample:
    """Index rows the routing classifiers learn from, each with its neighbours found without itself.

    One neighbour search serves both classifiers (it is most of their cost at scale).
    """

    rows: np.ndarray
    emb: np.ndarray
    nbr: np.ndarray
    sims: np.ndarray

    @staticmethod
    def choose(model: RoutingModel, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
        """Up to `max_classifier_items` of index rows `rows`; None when there are too few to learn from."""
        if rows.size < 20:
            return None
        return np.sort(rng.choice(rows, size=min(model.config.max_classifier_items, rows.size), replace=False))

    @classmethod
    def search(cls, model: RoutingModel, chosen: np.ndarray | None) -> ClassifierSample | None:
        """The sample of `choose`'s rows, with their neighbours."""
        if chosen is None:
            return None
        emb = model.neighbors.vectors(chosen)
        nbr, sims = model.neighbors.search(emb, model.config.top_k, exclude=chosen)
        return cls(chosen, emb, nbr, sims)


def fit_work_centre_ranker(model: RoutingModel, sample: ClassifierSample | None) -> tuple[WorkCentreRanker | None, np.ndarray]:
    """Fit the work-centre classifier on a sample of index rows, each predicted without itself.

    Only items whose predicted signature is their own teach it (their operations line up one to one).
    """
    cfg, idx = model.config, model.index
    if sample is None:
        return None, np.zeros(0, dtype=np.int64)
    chosen, emb = sample.rows, sample.emb
    core = model.route_neighbors(emb, sample.nbr, sample.sims, model.routing_ranker, None)
    if core.res_cand is None:
        return None, np.zeros(0, dtype=np.int64)
    right = core.win_sig == idx.item_sig[chosen]
    ops = np.flatnonzero(right[core.op_query])
    position = ops - core.op_offsets[core.op_query[ops]]
    true_res = idx.op_res[idx.op_offsets[chosen[core.op_query[ops]]] + position].astype(np.int64)
    ranker = WorkCentreRanker.fit(
        core.res_cand[ops], core.res_support[ops], core.op_job[ops], emb[core.op_query[ops]], true_res, idx.op_job, idx.op_res, cfg.seed
    )
    return ranker, (chosen[right] if ranker is not None else np.zeros(0, dtype=np.int64))


def fit_routing_ranker(model: RoutingModel, sample: ClassifierSample | None) -> tuple[SignatureRanker | None, np.ndarray]:
    """Fit the routing classifier on a sample of index rows, each predicted without itself.

    Returns the ranker (None if there is nothing to learn) and the rows it was fitted on.
    """
    cfg = model.config
    if sample is None:
        return None, np.zeros(0, dtype=np.int64)
    chosen, emb, nbr, sims = sample.rows, sample.emb, sample.nbr, sample.sims
    core = model.route_neighbors(emb, nbr, sims, None)
    cand, support = proposals(core.win_sig, core.confidence, core.alt_sig, core.alt_support)
    sig_length = np.diff(model.vocab.sig_offsets)
    ranker = SignatureRanker.fit(
        cand, support, model.index.item_sig[nbr].astype(np.int64), sims, emb, model.index.item_sig[chosen].astype(np.int64),
        model.index.item_sig.astype(np.int64), sig_length, cfg.seed,
    )
    return ranker, chosen


def train(
    items: pd.DataFrame,
    routings: pd.DataFrame,
    actuals: pd.DataFrame,
    config: EngineConfig | None = None,
    progress: ProgressFn | None = None,
    check_cancel: CancelFn | None = None,
    exclude_from_time_fit: Sequence[str] = (),
) -> TrainResult:
    """Train a model version. `progress(percent, stage)` reports; `check_cancel()` may raise TrainingCancelled.

    A stratified monitoring set (`monitoring_share` of the routed items) is drawn first and kept
    out of every learned fit; the held-out items that select the settings and candidates are
    drawn from it. `exclude_from_time_fit`: further item codes no learned part may be fitted on
    (a deployment gate's evaluation sample).
    """
    # One BLAS thread throughout. Training's products are many and mid-sized, and OpenBLAS threads
    # spin while they wait: beside any other load (web workers, a quality cycle) two threads made
    # the settings search's SVDs 7-12x slower (3.6 s against 0.3 s for one 21,500 x 155 fit).
    with single_blas_thread():
        return _train(items, routings, actuals, config, progress, check_cancel, exclude_from_time_fit)


def _train(
    items: pd.DataFrame,
    routings: pd.DataFrame,
    actuals: pd.DataFrame,
    config: EngineConfig | None,
    progress: ProgressFn | None,
    check_cancel: CancelFn | None,
    exclude_from_time_fit: Sequence[str],
) -> TrainResult:
    cfg = config or EngineConfig()
    stage = _Stages(progress, check_cancel)
    rng = np.random.default_rng(cfg.seed)

    stage(1, "preparing data")
    frame = _prepare_items(items)
    known_codes = as_code_array(frame["ITEM_CD"])
    known_numeric = numeric_attributes(frame, tuple(f.name for f in cfg.features if f.kind == NUMERIC))

    stage(4, "building routing tables")
    vocab, full = build_tables(known_codes, routings, actuals)
    if full.n_items == 0:
        raise ValueError("no item of the item master has a routing: there is nothing to learn from")

    stage(10, "choosing monitoring and held-out items")
    item_pos = np.searchsorted(known_codes, full.item_codes)
    part_types = frame["PART_TYPE"].to_numpy(dtype=object)[item_pos] if "PART_TYPE" in frame.columns else np.full(full.n_items, None)
    monitoring_rows = stratified_rows(part_types, monitoring_size(full.n_items, cfg), rng)
    pair_item = full.pair_key // vocab.stride
    has_actuals = np.zeros(full.n_items, dtype=bool)
    has_actuals[pair_item[full.pair_count > 0]] = True
    with_actuals = np.flatnonzero(has_actuals)
    n_hold = min(cfg.max_holdout_items, int(round(cfg.holdout_share * with_actuals.size)))
    candidates_for_holdout = monitoring_rows[has_actuals[monitoring_rows]]
    if with_actuals.size < 10:
        n_hold = 0  # too few items to hold any out and still learn something
    n_hold = min(n_hold, candidates_for_holdout.size)
    holdout_rows = np.sort(rng.choice(candidates_for_holdout, size=n_hold, replace=False)) if n_hold else np.zeros(0, np.int64)
    holdout_codes = full.item_codes[holdout_rows].tolist()
    train_rows = np.setdiff1d(np.arange(full.n_items), holdout_rows)
    actual_routings = _routing_lists(vocab, full, holdout_rows) if n_hold else {}
    actual_centres = _work_centre_lists(vocab, full, holdout_rows) if n_hold else {}
    actual_cols = [c for c in ("ITEM_CD", "JOB_CD", OCC_COLUMN, "RUN_MINUTES_PER_UNIT", "SETUP_MINUTES") if c in actuals.columns]
    holdout_actuals = actuals.loc[actuals["ITEM_CD"].astype(str).isin(set(holdout_codes)), actual_cols] if n_hold else actuals.iloc[:0]
    if n_hold and OCC_COLUMN not in holdout_actuals.columns:
        holdout_actuals = assign_occurrences(actuals.loc[holdout_actuals.index], routings)[[*actual_cols, OCC_COLUMN]]

    search_table: dict[str, Any] = {}
    if cfg.search and n_hold >= 20 and train_rows.size >= 50:
        stage(12, "searching k, feature weights, size transform and embedding")
        found = search_settings(cfg, frame, known_codes, full, vocab, train_rows, holdout_rows, actual_routings, holdout_actuals, rng)
        cfg = found.config
        search_table = found.as_dict()

    stage(30, "encoding items")
    encoder = ItemEncoder(cfg).fit(frame)
    encoded = encoder.encode(frame)

    stage(36, "embedding items")
    known_emb = encoder.fit_embedding(encoded)
    del encoded

    stage(42, "clustering the neighbour index")
    full_neighbors = NeighborIndex.build(known_emb[item_pos], seed=cfg.seed)

    # No learned part is ever fitted on a monitoring item, nor on an item a gate will score.
    monitoring_codes = full.item_codes[monitoring_rows]
    excluded = frozenset(str(c) for c in exclude_from_time_fit) | frozenset(monitoring_codes.tolist())
    fit_allowed = ~np.isin(full.item_codes, np.array(sorted(excluded), dtype=full.item_codes.dtype)) if excluded else np.ones(full.n_items, bool)
    scores: dict[str, dict[str, Any]] = {}
    routing_scores: dict[str, dict[str, Any]] = {}
    centre_scores: dict[str, dict[str, Any]] = {}
    fitted: dict[str, dict[str, TimeModel]] = {"baseline": {}}
    time_fit_codes: dict[str, list[str]] = {}
    # (fitted ranker, codes of the items it learned from) of the routing and work-centre classifiers.
    learned_parts: dict[str, tuple[Any, list[str]] | None] = {}
    ranker = None
    if n_hold:
        stage(45, "fitting the index without held-out items")
        scoring_model = build_model(
            cfg, encoder, vocab, full.subset(train_rows, vocab.stride), full_neighbors.subset(train_rows), known_codes, known_emb, known_numeric
        )
        query_emb = full_neighbors.vectors(holdout_rows)
        query_numeric = known_numeric[item_pos[holdout_rows]]
        learned = learned_candidates(cfg, with_actuals.size)
        excluded_local = frozenset(scoring_model.index.item_codes[~fit_allowed[train_rows]].tolist())
        with_classifiers = "classifier" in cfg.routing_candidates
        classifier_rows = ClassifierSample.choose(scoring_model, np.flatnonzero(fit_allowed[train_rows]), rng) if with_classifiers else None

        def score(core: RoutingCore, run_model: TimeModel | None, setup_model: TimeModel | None) -> dict[str, Any]:
            choice = scoring_model.choose_times(core, query_emb, run_model, setup_model, query_numeric)
            predictions = scoring_model.to_dicts(core, holdout_codes, choice, with_similar=False)
            return metrics.evaluate(predictions, actual_routings, holdout_actuals, actual_centres)

        # The time estimators depend on no routing choice below, and from here the random generator
        # is theirs alone: they are fitted on a second thread (the second core: their trees and
        # products release the GIL) while this one routes, fits the classifiers and scores. Same
        # draws in the same order, so the same estimators as one after the other. Leaving the block
        # waits for the thread, so a cancelled or failed training leaves nothing running. The thread
        # limits and warning filters are process-wide: this thread sets them around the other's whole
        # life, so neither thread's own set-and-restore can undo the other's.
        with single_thread(), warnings.catch_warnings(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="time-estimators") as lane:
            time_fits = lane.submit(_fit_learned_times, scoring_model, learned, rng, excluded_local)
            vote_core = scoring_model.route(query_emb, None, cfg.top_k, ranker=None)
            stage(50, "scoring baseline")
            scores["baseline"] = score(vote_core, None, None)
            routing_scores["vote"] = {k: scores["baseline"].get(k) for k in ROUTING_METRICS}
            centre_scores["vote"] = {"res_match": scores["baseline"].get("res_match")}
            core = vote_core
            if with_classifiers:
                stage(52, "fitting and scoring the routing classifier")
                sample = ClassifierSample.search(scoring_model, classifier_rows)
                ranker, rows = fit_routing_ranker(scoring_model, sample)
                if ranker is not None:
                    learned_parts["routing"] = (ranker, scoring_model.index.item_codes[rows].tolist())
                    ranked_core = scoring_model.route_neighbors(query_emb, vote_core.nbr, vote_core.sims, ranker)
                    ranked = score(ranked_core, None, None)
                    routing_scores["classifier"] = {k: ranked.get(k) for k in ROUTING_METRICS}
                    if select_routing(routing_scores, cfg.min_improvement_pct) == "classifier":
                        core = ranked_core
                        scores["baseline"] = ranked
                        centre_scores["vote"] = {"res_match": ranked.get("res_match")}
                stage(54, "fitting and scoring the work-centre classifier")
                scoring_model.routing_ranker = ranker if select_routing(routing_scores, cfg.min_improvement_pct) == "classifier" else None
                res_ranker, rows = fit_work_centre_ranker(scoring_model, sample)
                if res_ranker is not None:
                    learned_parts["centre"] = (res_ranker, scoring_model.index.item_codes[rows].tolist())
                    centred_core = scoring_model.route_neighbors(
                        query_emb, vote_core.nbr, vote_core.sims, scoring_model.routing_ranker, res_ranker
                    )
                    centred = score(centred_core, None, None)
                    centre_scores["classifier"] = {"res_match": centred.get("res_match")}
                    if select_work_centre(centre_scores, cfg.min_improvement_pct) == "classifier":
                        core = centred_core
                        scores["baseline"] = centred
            if learned:
                stage(55, f"fitting {', '.join(learned)} (waiting for the second thread)")
            lane_fits, stage.seconds["time estimators on the second thread"] = time_fits.result()
        for i, name in enumerate(learned):
            stage(60 + 20 * i / max(len(learned), 1), f"scoring {name}")
            fitted[name], rows = lane_fits[name]
            time_fit_codes[name] = scoring_model.index.item_codes[rows].tolist()
            if fitted[name]:
                scores[name] = score(core, fitted[name].get("run"), fitted[name].get("setup"))

    selected = select_candidate(scores, cfg.min_improvement_pct, "trim_mae")
    selected_setup = select_candidate(scores, cfg.min_improvement_pct, "setup_mae")
    selected_routing = select_routing(routing_scores, cfg.min_improvement_pct)
    selected_centre = select_work_centre(centre_scores, cfg.min_improvement_pct)
    if n_hold:
        # The held-out metrics of the combination actually shipped (run and setup may come from different candidates).
        run_model, setup_model = fitted.get(selected, {}).get("run"), fitted.get(selected_setup, {}).get("setup")
        selected_metrics = scores[selected] if selected == selected_setup else score(core, run_model, setup_model)
        del scoring_model, core, vote_core
    else:
        selected_metrics = {}

    stage(82, "fitting the final index on all items")
    # The learned parts ship as they were scored: fitted without the monitoring (and held-out) items,
    # so no refit on more items could be graded honestly, and the held-out metrics describe exactly
    # what ships. Only the neighbour index grows to every item.
    model = build_model(cfg, encoder, vocab, full, full_neighbors, known_codes, known_emb, known_numeric)
    fit_codes: set[str] = set()
    if selected_routing == "classifier" and learned_parts.get("routing") is not None:
        model.routing_ranker, codes = learned_parts["routing"]
        fit_codes.update(codes)
    else:
        selected_routing = "vote"
    if selected_centre == "classifier" and learned_parts.get("centre") is not None:
        model.res_ranker, codes = learned_parts["centre"]
        fit_codes.update(codes)
    for target, name in (("run", selected), ("setup", selected_setup)):
        time_model = fitted.get(name, {}).get(target)
        if name == "baseline" or time_model is None:
            continue
        if target == "run":
            model.time_model, model.selected = time_model, name
        else:
            model.setup_model, model.selected_setup = time_model, name
        fit_codes.update(time_fit_codes[name])
    model.monitoring_codes = monitoring_codes
    model.fit_codes = np.array(sorted(fit_codes), dtype=full.item_codes.dtype) if fit_codes else np.zeros(0, dtype=full.item_codes.dtype)

    stage(97, "summarising")
    cutoff = None
    if "REPORT_DT" in actuals.columns and len(actuals):
        latest = pd.to_datetime(actuals["REPORT_DT"], errors="coerce").max()
        cutoff = None if pd.isna(latest) else latest.isoformat()
    stats = {
        "total_samples": int(len(routings)),
        "unique_items": int(routings["ITEM_CD"].nunique()) if len(routings) else 0,
        "unique_processes": int(routings["JOB_CD"].nunique()) if len(routings) else 0,
        "items_in_master": int(len(known_codes)),
        "items_indexed": int(full.n_items),
        "items_with_actuals": int(with_actuals.size),
        "actual_rows": int(len(actuals)),
        "holdout_items": int(n_hold),
        "monitoring_items": int(monitoring_codes.size),
        "learned_fit_items": int(len(model.fit_codes)),
    }
    duration = stage.finish()
    result_metrics = dict(selected_metrics)
    if search_table:
        result_metrics["search"] = search_table
    if routing_scores:
        result_metrics["routing_candidates"] = routing_scores
        result_metrics["selected_routing"] = model.selected_routing
    if centre_scores:
        result_metrics["work_centre_candidates"] = centre_scores
        result_metrics["selected_work_centre"] = model.selected_work_centre
    model.manifest.update(
        selected=model.selected,
        selected_setup=model.selected_setup,
        selected_routing=model.selected_routing,
        selected_work_centre=model.selected_work_centre,
        time_fit_excluded_items=len(excluded),
        gate_items_excluded=len(frozenset(str(c) for c in exclude_from_time_fit)),
        metrics=result_metrics,
        candidate_scores=scores,
        dataset_stats=stats,
        training_cutoff=cutoff,
        duration_seconds=round(duration, 3),
    )
    return TrainResult(
        model=model,
        selected=model.selected,
        selected_setup=model.selected_setup,
        metrics=result_metrics,
        candidate_scores=scores,
        dataset_stats=stats,
        duration_seconds=duration,
        training_cutoff=cutoff,
        stage_seconds=dict(stage.seconds),
        holdout_items=holdout_codes,
        selected_routing=model.selected_routing,
    )
