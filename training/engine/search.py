"""Bounded search of the similarity settings on held-out items: the model learns each factory.

Which attributes decide a routing differs between factories (part family and seal type in one,
material and tolerance class in another), so fixed feature weights and a fixed k tuned on one
factory do worse than a plain nearest-neighbour vote on another. Training therefore tries a
small, bounded set of settings and keeps the best on held-out items (split by item, predicted
as new items, never their own neighbours):

1. the number of neighbours k;
2. the feature weights: a data-driven weighting (each attribute's information about the routing
   signature, measured out of sample so a free-text column with one value per item gains
   nothing), sharpened or flattened, beside uniform weights and the configured ones. Weights an
   admin gave explicitly are kept (`fixed_weights`);
3. the transform of sizes (log or linear);
4. the embedding: SVD width, or none when the encoded matrix is narrow.

Each trial encodes a fixed-size sample (`search_index_items` indexed items and
`search_query_items` held-out items), so the search costs the same few seconds at any scale.
Trials are compared on one objective: the mean of process match and exact match, with a small
term for the times the neighbours give, the trimmed run-time MAE and the setup-time MAE (10 %
better on both is worth two points of match, one point each: a prediction ships both times).
Every trial is recorded in the table the version keeps. The trials of steps 2 and 4 do not
depend on each other, nor do the several k of steps 1 and 5 on one encoding, so they are
computed two at a time (the second core; 325k items: the search 5.75 -> 4.2 s) and then
recorded and compared in order, as if one after the other.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from . import metrics
from .config import EngineConfig, FeatureSpec
from .encoding import ItemEncoder, _CategoricalColumns
from .neighbors import BruteIndex
from .tables import IndexData, Vocab
from .times import single_blas_thread

K_GRID = (5, 10, 20, 40)
WIDTH_GRID = (16, 32, 64)
# "No embedding" is tried only when the encoded matrix is at most this wide (memory: n x width float32).
MAX_IDENTITY_WIDTH = 256
# Weightings tried: the exponent applied to the normalised information gain (0 = uniform).
GAIN_EXPONENTS = {"gain^0.5": 0.5, "gain": 1.0, "gain^2": 2.0}
# A feature that carries no information about the routing still gets this weight (sizes may matter for times).
MIN_GAIN_WEIGHT = 0.05
NUMERIC_BINS = 16
# Match points given up for 10 % better times, shared equally by these MAEs (what a trial scores
# as its times). Run times alone once chose, on an 8,000-item factory, neighbours 5 points of exact
# match worse than a plain kNN's for better run times the learned estimator then replaced anyway.
TIME_TERM = 0.02
TIME_METRICS = ("trim_mae", "setup_mae")


@dataclass
class SearchResult:
    """The chosen settings and every trial with its held-out scores."""

    config: EngineConfig
    chosen: dict[str, Any]
    trials: list[dict[str, Any]] = field(default_factory=list)
    gains: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"chosen": self.chosen, "trials": self.trials, "information_gain": self.gains}


def information_gain(x: np.ndarray, y: np.ndarray, seed: int = 0) -> float:
    """Out-of-sample information (nats) that codes `x` carry about labels `y`, >= 0.

    Two-fold: P(y | x) is estimated on one half (add-one smoothing towards the prior) and its
    mean log-likelihood on the other half is compared with the prior's. Unlike the plug-in
    mutual information it does not reward many distinct values: a value seen on one side only
    predicts nothing on the other.
    """
    x = np.asarray(x, dtype=np.int64)
    y = np.asarray(y, dtype=np.int64)
    if x.size < 4:
        return 0.0
    y = np.unique(y, return_inverse=True)[1].astype(np.int64)
    x = np.unique(x, return_inverse=True)[1].astype(np.int64)
    n_y, n_x = int(y.max()) + 1, int(x.max()) + 1
    fold = np.random.default_rng(seed).random(x.size) < 0.5
    gains = []
    for train in (fold, ~fold):
        test = ~train
        if not train.any() or not test.any():
            continue
        prior = (np.bincount(y[train], minlength=n_y) + 1.0) / (train.sum() + n_y)
        joint = np.bincount(x[train] * n_y + y[train], minlength=n_x * n_y).astype(np.float64)
        per_x = np.bincount(x[train], minlength=n_x).astype(np.float64)
        xt, yt = x[test], y[test]
        conditional = (joint[xt * n_y + yt] + prior[yt]) / (per_x[xt] + 1.0)
        gains.append(float(np.mean(np.log(conditional)) - np.mean(np.log(prior[yt]))))
    return max(float(np.mean(gains)), 0.0) if gains else 0.0


def feature_codes(encoder: ItemEncoder, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per encoded feature, one small integer code per row: its category, or its size bin (missing apart)."""
    cols, data = encoder.encode_columns(frame)
    out = {}
    for b, block in enumerate(encoder.blocks):
        if isinstance(block, _CategoricalColumns):
            out[block.spec.name] = (cols[:, b] - block.offset).astype(np.int64)
        else:
            missing = cols[:, b] != block.offset
            values = data[:, b].astype(np.float64)
            edges = np.unique(np.quantile(values[~missing], np.linspace(0, 1, NUMERIC_BINS + 1)[1:-1])) if (~missing).any() else np.zeros(0)
            out[block.spec.name] = np.where(missing, NUMERIC_BINS + 1, np.searchsorted(edges, values)).astype(np.int64)
    return out


def feature_gains(config: EngineConfig, frame: pd.DataFrame, signatures: np.ndarray) -> dict[str, float]:
    """Information gain about the routing signature of every switched-on feature, on `frame`'s items."""
    uniform = config.replace(features=tuple(FeatureSpec(f.name, f.kind, 1.0) for f in config.active_features), n_components=0)
    encoder = ItemEncoder(uniform).fit(frame)
    return {name: information_gain(codes, signatures, config.seed) for name, codes in feature_codes(encoder, frame).items()}


def gain_weights(config: EngineConfig, gains: dict[str, float], exponent: float) -> EngineConfig:
    """The config with weights `(gain / max gain) ** exponent` (floored) on its switched-on features; others stay off."""
    top = max((gains.get(f.name, 0.0) for f in config.features if f.weight > 0), default=0.0)
    if top <= 0:
        return config.replace(features=tuple(FeatureSpec(f.name, f.kind, 1.0 if f.weight > 0 else 0.0) for f in config.features))
    weights = {}
    for f in config.features:
        if f.weight <= 0:
            weights[f.name] = 0.0
        else:
            weights[f.name] = round(max((gains.get(f.name, 0.0) / top) ** exponent, MIN_GAIN_WEIGHT), 4) if exponent else 1.0
    return config.replace(features=tuple(FeatureSpec(f.name, f.kind, weights[f.name]) for f in config.features))


def objective(scores: dict[str, Any], reference: dict[str, float]) -> float:
    """Higher is better: mean of process and exact match, minus a small penalty per time MAE worse than
    its `reference` (the first trial's), plus as much for a better one."""
    pm, em = scores.get("process_match") or 0.0, scores.get("exact_match") or 0.0
    value = 0.5 * (pm + em)
    for name in TIME_METRICS:
        mae, ref = scores.get(name), reference.get(name)
        if mae and ref:
            value -= TIME_TERM / len(TIME_METRICS) * math.log(max(mae, 1e-9) / ref) / math.log(1.1)
    return value


class _Trials:
    """Runs and remembers trials on one fixed sample."""

    def __init__(
        self,
        frame_index: pd.DataFrame,
        frame_query: pd.DataFrame,
        index: IndexData,
        vocab: Vocab,
        query_codes: list[str],
        actual_routings: dict[str, list[str]],
        query_actuals: pd.DataFrame,
    ) -> None:
        self.frame_index, self.frame_query = frame_index, frame_query
        self.index, self.vocab = index, vocab
        self.query_codes, self.actual_routings, self.query_actuals = query_codes, actual_routings, query_actuals
        self.trials: list[dict[str, Any]] = []
        self._seen: dict[tuple, dict[str, Any]] = {}
        self._computed: dict[tuple, tuple[int, dict[int, dict[str, Any]]] | None] = {}
        # Per time MAE, the first trial's value that scored one: the yardstick of every trial's time term.
        self.reference: dict[str, float] = {}

    @staticmethod
    def _key(weighting: str, config: EngineConfig, k: int | tuple[int, ...]) -> tuple:
        """A trial's name (one k), or a run's (its ks): the weighting, size transform and width name the
        rest of the config within one search."""
        return (weighting, config.size_transform, config.n_components, k)

    def _untried(self, config: EngineConfig, weighting: str, ks: tuple[int, ...]) -> list[int]:
        return [k for k in dict.fromkeys(ks) if self._key(weighting, config, k) not in self._seen]

    def _compute(self, config: EngineConfig, weighting: str, ks: tuple[int, ...]) -> tuple[int, dict[int, dict[str, Any]]] | None:
        """(encoded width, {k: held-out scores}) of the ks not tried yet; None when the encoding is not tried.

        Reads the sample only, so runs can go on two threads at once.
        """
        from .pipeline import build_model  # the pipeline imports this module

        encoder = ItemEncoder(config).fit(pd.concat([self.frame_index, self.frame_query], ignore_index=True))
        if config.n_components == 0 and encoder.n_columns > min(MAX_IDENTITY_WIDTH, config.max_embedding_width):
            return None
        emb_index = encoder.fit_embedding(encoder.encode(self.frame_index))
        emb_query = encoder.embed_matrix(encoder.encode(self.frame_query))
        model = build_model(config, encoder, self.vocab, self.index, BruteIndex(emb_index), self.index.item_codes, emb_index)

        def score(k: int) -> dict[str, Any]:
            core = model.route(emb_query, None, k)
            choice = model.choose_times(core, emb_query, None, None)
            predictions = model.to_dicts(core, self.query_codes, choice, with_similar=False)
            return metrics.evaluate(predictions, self.actual_routings, self.query_actuals)

        todo = self._untried(config, weighting, ks)
        if len(todo) < 2:
            return encoder.n_columns, {k: score(k) for k in todo}
        # Several k on one encoding (steps 1 and 5): each k's routing and scoring is its own, two at a time.
        with single_blas_thread(), ThreadPoolExecutor(max_workers=2, thread_name_prefix="settings-search") as pool:
            return encoder.n_columns, dict(zip(todo, pool.map(score, todo), strict=True))

    def prefetch(self, runs: list[tuple[EngineConfig, str, tuple[int, ...]]]) -> None:
        """Compute `runs` (arguments of `run`), two at a time, for the `run` calls that follow.

        They must not depend on each other. The trials are still recorded by `run`, in its order,
        so the table and every choice are those of running them one after the other.
        """
        todo = [run for run in runs if self._untried(*run)]
        if len(todo) < 2:
            return
        # BLAS limits are process-wide: set here around both threads' lives (their own nested limits then
        # restore what this one set), one BLAS thread each as in the rest of training.
        with single_blas_thread(), ThreadPoolExecutor(max_workers=2, thread_name_prefix="settings-search") as pool:
            results = list(pool.map(lambda r: self._compute(*r), todo))
        for (config, weighting, ks), result in zip(todo, results, strict=True):
            self._computed[self._key(weighting, config, ks)] = result

    def run(self, config: EngineConfig, weighting: str, ks: tuple[int, ...]) -> list[dict[str, Any]]:
        if not self._untried(config, weighting, ks):
            # Every trial is in the table already (a trial is recorded only for an encoding that was tried).
            return [self._seen[self._key(weighting, config, k)] for k in ks]
        key = self._key(weighting, config, ks)
        computed = self._computed.pop(key) if key in self._computed else self._compute(config, weighting, ks)
        if computed is None:
            return []
        width, scores = computed
        out = []
        for k in ks:
            key = self._key(weighting, config, k)
            if key in self._seen:
                out.append(self._seen[key])
                continue
            for name in TIME_METRICS:
                if name not in self.reference and scores[k].get(name):
                    self.reference[name] = scores[k][name]
            trial = {
                "k": k,
                "weighting": weighting,
                "size_transform": config.size_transform,
                "embedding": config.n_components or "none",
                "encoded_width": width,
                **{m: _round(scores[k].get(m)) for m in ("process_match", "exact_match", "trim_mae", "mae", "setup_mae")},
            }
            trial["objective"] = _round(objective(scores[k], self.reference))
            self._seen[key] = trial
            self.trials.append(trial)
            out.append(trial)
        return out


def _round(value: Any) -> Any:
    return round(float(value), 5) if isinstance(value, int | float) and value == value else value


def search(
    config: EngineConfig,
    frame: pd.DataFrame,
    known_codes: np.ndarray,
    full: IndexData,
    vocab: Vocab,
    train_rows: np.ndarray,
    query_rows: np.ndarray,
    actual_routings: dict[str, list[str]],
    actuals: pd.DataFrame,
    rng: np.random.Generator,
) -> SearchResult:
    """Try the bounded grid (coordinate-wise) and return the best config with the table of trials.

    `frame` is the item master sorted by code (`known_codes`); `train_rows` / `query_rows` are rows
    of `full` (the indexed items) to index and to predict as new items.
    """
    index_rows = np.sort(rng.choice(train_rows, size=min(config.search_index_items, train_rows.size), replace=False))
    query_rows = np.sort(rng.choice(query_rows, size=min(config.search_query_items, query_rows.size), replace=False))
    index = full.subset(index_rows, vocab.stride)
    query_codes = full.item_codes[query_rows].tolist()
    position = np.searchsorted(known_codes, full.item_codes)
    frame_index = frame.iloc[position[index_rows]].reset_index(drop=True)
    frame_query = frame.iloc[position[query_rows]].reset_index(drop=True)
    wanted = set(query_codes)
    trials = _Trials(
        frame_index,
        frame_query,
        index,
        vocab,
        query_codes,
        {c: r for c, r in actual_routings.items() if c in wanted},
        actuals[actuals["ITEM_CD"].astype(str).isin(wanted)],
    )

    gains = {} if config.fixed_weights else feature_gains(config, frame_index, index.item_sig)
    weightings = {"configured": config}
    if not config.fixed_weights:
        weightings.update({"uniform": gain_weights(config, gains, 0.0)})
        weightings.update({name: gain_weights(config, gains, exponent) for name, exponent in GAIN_EXPONENTS.items()})
    start = "configured" if config.fixed_weights else "gain"

    best_weighting = start
    current = weightings[start]

    def best_of(results: list[dict[str, Any]]) -> dict[str, Any]:
        return max(results, key=lambda t: (t["objective"], -t["k"]))

    # 1. k on the starting encoding.
    best = best_of(trials.run(current, start, K_GRID))
    # 2. the weighting.
    trials.prefetch(
        [
            (weighted.replace(size_transform=current.size_transform, n_components=current.n_components), name, (best["k"],))
            for name, weighted in weightings.items()
            if name != best_weighting
        ]
    )
    for name, weighted in weightings.items():
        if name != best_weighting:
            candidate = best_of(
                trials.run(weighted.replace(size_transform=current.size_transform, n_components=current.n_components), name, (best["k"],))
            )
            if candidate["objective"] > best["objective"]:
                best, best_weighting = candidate, name
    current = weightings[best_weighting].replace(n_components=config.n_components)
    # 3. the size transform.
    for transform in ("log", "linear"):
        if transform != current.size_transform:
            results = trials.run(current.replace(size_transform=transform), best_weighting, (best["k"],))
            if results and results[0]["objective"] > best["objective"]:
                best = results[0]
                current = current.replace(size_transform=transform)
    # 4. the embedding width (or none).
    widths = (*(w for w in WIDTH_GRID if w <= config.max_embedding_width), 0)
    trials.prefetch(
        [(current.replace(n_components=width), best_weighting, (best["k"],)) for width in widths if width != current.n_components]
    )
    for width in widths:
        if width != current.n_components:
            results = trials.run(current.replace(n_components=width), best_weighting, (best["k"],))
            if results and results[0]["objective"] > best["objective"]:
                best = results[0]
                current = current.replace(n_components=width)
    # 5. k again, on the chosen encoding.
    best = best_of([best, *trials.run(current, best_weighting, K_GRID)])
    chosen_config = current.replace(top_k=int(best["k"]))
    chosen = {
        "k": int(best["k"]),
        "weighting": best_weighting,
        "size_transform": chosen_config.size_transform,
        "embedding": chosen_config.n_components or "none",
        "feature_weights": {f.name: f.weight for f in chosen_config.features if f.weight > 0},
        "trials": len(trials.trials),
        "index_items": int(index_rows.size),
        "query_items": int(query_rows.size),
    }
    return SearchResult(config=chosen_config, chosen=chosen, trials=trials.trials, gains={k: round(v, 5) for k, v in gains.items()})
