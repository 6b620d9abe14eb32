"""The fitted model: neighbour index + routing tables + time estimator, with save/load."""

from __future__ import annotations

import gc
import json
import platform
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import scipy
import sklearn

from .config import NUMERIC, BundleError, EngineConfig
from .encoding import SMALL_FRAME, ItemEncoder, small_columns
from .files import MANIFEST, bundle_digest, sha256_file
from .neighbors import NeighborIndex
from .neighbour_table import NeighbourTable
from .numbers import json_numbers
from .routing import RES_CANDIDATES, SignatureRanker, WorkCentreRanker, proposals
from .tables import IndexData, Vocab, ranges, sequence_occurrences
from .times import MIN_WEIGHT, TimeLookup, TimeModel, lookup_times, numeric_attributes

BUNDLE_FORMAT = 1
MAX_ALTERNATIVES = 3


@dataclass
class RoutingCore:
    """Everything about a batch of queries except the final run time (shared by all candidates).

    Operations of all queries are flattened: query q owns `op_*[op_offsets[q]:op_offsets[q+1]]`.
    """

    nbr: np.ndarray
    sims: np.ndarray
    win_sig: np.ndarray
    confidence: np.ndarray
    alt_sig: np.ndarray
    alt_support: np.ndarray
    op_offsets: np.ndarray
    op_query: np.ndarray
    op_job: np.ndarray
    op_res: np.ndarray
    op_inside: np.ndarray
    times: TimeLookup
    # Per operation, the work centres the neighbours voted for (best first, -1 = none) and their shares.
    res_cand: np.ndarray | None = None
    res_support: np.ndarray | None = None


@dataclass
class TimeChoice:
    """Final times per flattened operation and where they came from."""

    run: np.ndarray
    setup: np.ndarray
    source: np.ndarray  # of the run time: object array of "actuals" / "model" / "standard"
    setup_source: np.ndarray  # of the setup time, the same vocabulary


def verify_bundle(directory: str | Path) -> dict[str, Any]:
    """Check every file of a bundle against its manifest's sha256; return the manifest.

    Raises `BundleError` naming the first missing or corrupt file (or the manifest itself).
    """
    directory = Path(directory)
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"model bundle {directory}: {MANIFEST} is missing (incomplete or not a bundle)")
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"model bundle {directory}: {MANIFEST} is unreadable ({exc})")
    if manifest.get("bundle_format") != BUNDLE_FORMAT:
        raise BundleError(f"model bundle {directory}: format {manifest.get('bundle_format')!r} is not {BUNDLE_FORMAT}")
    for name, info in files.items():
        path = directory / name
        if not path.is_file():
            raise BundleError(f"model bundle {directory}: file {name} is missing")
        if sha256_file(path) != info.get("sha256"):
            raise BundleError(f"model bundle {directory}: file {name} is corrupt (sha256 differs from {MANIFEST})")
    return manifest


def library_versions() -> dict[str, str]:
    """Versions that must match for pickled estimators to be trusted."""
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scikit-learn": sklearn.__version__,
        "scipy": scipy.__version__,
        "joblib": joblib.__version__,
    }


class RoutingModel:
    """Predicts routings and times of items from their most similar indexed items.

    Large arrays (embeddings, routing tables) may be memory-mapped read-only after `load`,
    so several server processes share one copy of them.
    """

    def __init__(
        self,
        config: EngineConfig,
        encoder: ItemEncoder,
        vocab: Vocab,
        index: IndexData,
        neighbors: NeighborIndex,
        known_codes: np.ndarray,
        known_index_row: np.ndarray,
        known_extra_row: np.ndarray,
        extra_emb: np.ndarray,
        time_model: TimeModel | None = None,
        selected: str = "baseline",
        setup_model: TimeModel | None = None,
        selected_setup: str = "baseline",
        manifest: dict[str, Any] | None = None,
        routing_ranker: SignatureRanker | None = None,
        res_ranker: WorkCentreRanker | None = None,
        monitoring_codes: np.ndarray | None = None,
        fit_codes: np.ndarray | None = None,
        known_numeric: np.ndarray | None = None,
    ) -> None:
        self.config = config
        self.encoder = encoder
        self.vocab = vocab
        self.index = index
        self.neighbors = neighbors
        self.known_codes = known_codes
        self.known_index_row = known_index_row
        self.known_extra_row = known_extra_row
        self.extra_emb = extra_emb
        self.time_model = time_model  # run minutes per unit; None = baseline
        self.selected = selected
        self.setup_model = setup_model  # setup minutes; None = baseline
        self.selected_setup = selected_setup
        self.manifest: dict[str, Any] = manifest or {}
        self.routing_ranker = routing_ranker  # None: the neighbour vote decides the routing
        self.res_ranker = res_ranker  # None: the neighbour vote decides each operation's work centre
        # Items kept out of every learned fit (quality cycles sample from them), and the items any
        # shipped learned part was fitted on: sorted code arrays, empty for older bundles.
        self.monitoring_codes = monitoring_codes if monitoring_codes is not None else np.zeros(0, dtype="<U1")
        self.fit_codes = fit_codes if fit_codes is not None else np.zeros(0, dtype="<U1")
        # Numeric attributes of every known item, for the time estimators (None in older bundles).
        self.known_numeric = known_numeric
        # Every known item's neighbours, worked out once (see neighbour_table); None: search every time.
        self.neighbour_table: NeighbourTable | None = None
        self.bundle_digest: str | None = None  # sha256 of the manifest of the bundle it was loaded from
        self._sig_cache: dict[int, list[str]] = {}

    def __repr__(self) -> str:
        return f"<RoutingModel {self.selected} items={len(self.known_codes)} indexed={self.index.n_items} dim={self.encoder.dim}>"

    # -- item look-ups -------------------------------------------------------------------
    def _known_position(self, codes: np.ndarray) -> np.ndarray:
        """Position of each code in `known_codes`, or -1."""
        if len(self.known_codes) == 0 or len(codes) == 0:
            return np.full(len(codes), -1, dtype=np.int64)
        codes = np.asarray(codes, dtype=str)
        pos = np.minimum(np.searchsorted(self.known_codes, codes), len(self.known_codes) - 1)
        return np.where(self.known_codes[pos] == codes, pos, -1)

    def has_item(self, item_cd: str) -> bool:
        """True if the item was in the training item master (with or without a routing)."""
        return bool(self.has_items([item_cd])[0])

    def has_items(self, item_codes: list[str]) -> np.ndarray:
        """`has_item` of each code at once (one sorted look-up, not one per item: a 1,000-item request)."""
        return self._known_position(np.array([str(c) for c in item_codes], dtype=str)) >= 0

    def index_row(self, item_cd: str) -> int:
        """Row of the item in the neighbour index (items with routings), or -1."""
        pos = self._known_position(np.array([str(item_cd)]))[0]
        return int(self.known_index_row[pos]) if pos >= 0 else -1

    def indexed_item_codes(self) -> list[str]:
        """Codes of the items whose routings the model can propose."""
        return self.index.item_codes.tolist()

    def signature(self, sig: int) -> list[str]:
        """Job codes of signature `sig` (cached: signatures repeat across items)."""
        jobs = self._sig_cache.get(sig)
        if jobs is None:
            jobs = self._sig_cache[sig] = self.vocab.signature_jobs(sig)
        return jobs

    def cache_signatures(self, limit: int = 100_000) -> None:
        """Fill the signature cache up front (the first `limit` signatures; a few hundred in a typical factory).

        A server calls this before it forks its workers: filled inside a batch, each new entry is a
        small long-lived object among the batch's short-lived ones, and keeps its memory from being
        handed back.
        """
        for sig in range(min(len(self.vocab.sig_offsets) - 1, limit)):
            self.signature(sig)

    def item_routing(self, item_cd: str) -> list[dict[str, Any]] | None:
        """The current routing the model holds for an indexed item, with its actual-time medians."""
        row = self.index_row(item_cd)
        if row < 0:
            return None
        idx, vocab = self.index, self.vocab
        sl = slice(int(idx.op_offsets[row]), int(idx.op_offsets[row + 1]))
        jobs = idx.op_job[sl]
        keys = row * vocab.stride + vocab.tokens(jobs, sequence_occurrences(np.array([0, jobs.size]), jobs))
        pos = np.minimum(np.searchsorted(idx.pair_key, keys), max(idx.pair_key.size - 1, 0))
        return [
            {
                "proc_seq": int(seq),
                "job_cd": str(vocab.job_codes[j]),
                "job_nm": str(vocab.job_names[j]),
                "res_cd": str(vocab.res_codes[r]),
                "inside_flag": "IN" if inside else "OUT",
                "setup_minutes": None if np.isnan(s) else float(s),
                "run_minutes_per_unit": None if np.isnan(u) else float(u),
                "actual_run_median": None if np.isnan(idx.pair_run_med[p]) else float(idx.pair_run_med[p]),
                "actual_count": int(idx.pair_count[p]),
            }
            for seq, j, r, inside, s, u, p in zip(
                idx.op_seq[sl], jobs, idx.op_res[sl], idx.op_inside[sl], idx.op_setup[sl], idx.op_run[sl], pos, strict=True
            )
        ]

    # -- embedding of queries ---------------------------------------------------------------
    def embed(self, items: pd.DataFrame | dict[str, list]) -> tuple[np.ndarray, np.ndarray, list[str | None], np.ndarray]:
        """Embedding, index row of the item itself (-1 if not indexed), code and numeric attributes of each query row.

        A row that names a known item and carries no attribute at all uses the item's stored
        embedding; otherwise the given attributes are encoded (a described item wins).
        `items` is a DataFrame or, for a few rows, a dict of column lists.
        """
        return self._embed(items)[:4]

    def stored_embeddings(self, positions: np.ndarray) -> np.ndarray:
        """The embeddings the model stored for known items (positions in `known_codes`)."""
        p = np.asarray(positions, dtype=np.int64)
        in_index = self.known_index_row[p] >= 0
        block = np.empty((p.size, self.encoder.dim), dtype=np.float32)
        block[in_index] = self.neighbors.vectors(self.known_index_row[p[in_index]])
        block[~in_index] = self.extra_emb[self.known_extra_row[p[~in_index]]]
        return block

    def _embed(self, items: pd.DataFrame | dict[str, list]) -> tuple[np.ndarray, np.ndarray, list[str | None], np.ndarray, np.ndarray]:
        """`embed`, plus the known position of each row answered from its stored embedding (-1 for the others)."""
        if isinstance(items, pd.DataFrame) and len(items) <= SMALL_FRAME:
            items = small_columns(items)
        if isinstance(items, dict):
            m = max((len(v) for v in items.values()), default=0)
            raw = items.get("ITEM_CD")
        else:
            m = len(items)
            raw = items["ITEM_CD"].tolist() if "ITEM_CD" in items.columns else None
        codes = [None if v is None or v is pd.NA or v != v else str(v) for v in raw] if raw is not None else [None] * m
        pos = self._known_position(np.array([c if c is not None else "" for c in codes], dtype=str)) if m else np.zeros(0, np.int64)
        pos = np.where(np.array([c is not None for c in codes], dtype=bool), pos, -1) if m else pos
        self_rows = np.where(pos >= 0, self.known_index_row[np.maximum(pos, 0)], -1).astype(np.int64)
        cols, data = self.encoder.encode_columns(items)
        missing = cols == self.encoder.missing_columns()[None, :]
        has_attrs = (~missing).any(axis=1)
        # A new item (not in the training item master) is compared on the attributes it gives: an
        # attribute it leaves empty says nothing about which items it resembles, so a planner who
        # describes a new item by three attributes gets the neighbours that share those three (and
        # not the items whose other attributes happen to be empty too). A known item described by its
        # master row keeps the encoding it was indexed with.
        data = np.where(missing & (pos < 0)[:, None], np.float32(0.0), data)
        stored = (pos >= 0) & ~has_attrs
        if stored.any():
            emb = np.empty((m, self.encoder.dim), dtype=np.float32)
            if (~stored).any():
                emb[~stored] = self.encoder.project(cols[~stored], data[~stored])
            emb[stored] = self.stored_embeddings(pos[stored])
        else:
            emb = self.encoder.project(cols, data)
        numeric = numeric_attributes(items, self.numeric_names)
        if stored.any() and self.known_numeric is not None:
            numeric[stored] = self.known_numeric[pos[stored]]
        return emb, self_rows, codes, numeric, np.where(stored, pos, -1)

    # -- the routing part -----------------------------------------------------------------
    @property
    def numeric_names(self) -> tuple[str, ...]:
        """The numeric attributes handed to the time estimators as such (every numeric feature, on or off)."""
        return tuple(f.name for f in self.config.features if f.kind == NUMERIC)

    @property
    def selected_routing(self) -> str:
        return "classifier" if self.routing_ranker is not None else "vote"

    @property
    def selected_work_centre(self) -> str:
        return "classifier" if self.res_ranker is not None else "vote"

    def route(
        self,
        emb: np.ndarray,
        exclude_rows: np.ndarray | None,
        k: int,
        ranker: SignatureRanker | None | str = "model",
        res_ranker: WorkCentreRanker | None | str = "model",
        stored: np.ndarray | None = None,
    ) -> RoutingCore:
        """Neighbours, signature vote (re-ranked by the routing classifier if any), per-operation work centre / flag vote, times.

        `ranker` / `res_ranker`: "model" uses the model's own classifiers; None or another one overrides it (scoring).
        `stored`: each query's known position where it is a known item's stored embedding (see `_embed`), which
        the neighbour table may answer.
        """
        nbr, sims = self.neighbours(emb, exclude_rows, k, stored)
        return self.route_neighbors(
            emb, nbr, sims, self.routing_ranker if isinstance(ranker, str) else ranker, self.res_ranker if isinstance(res_ranker, str) else res_ranker
        )

    def neighbours(self, emb: np.ndarray, exclude_rows: np.ndarray | None, k: int, stored: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """`neighbors.search(emb, k, exclude_rows)`, read from the neighbour table where it holds the answer.

        It does for a query that is a known item's stored embedding (`stored` >= 0) whose own row is
        excluded (or is not in the index), when k is at most the table's: the search ranks by a total
        order (similarity, then row), so its k best are the first k of the table's.
        """
        table = self.neighbour_table
        m = emb.shape[0]
        if table is None or stored is None or m == 0 or not 1 <= k <= min(table.k, self.neighbors.n_items - 1):
            return self.neighbors.search(emb, k, exclude_rows)
        stored = np.asarray(stored, dtype=np.int64)
        # The table holds each known item's search with its own index row excluded (-1 for an item not in the
        # index): it answers exactly the queries that exclude just that.
        excluded = np.full(m, -1, dtype=np.int64) if exclude_rows is None else np.asarray(exclude_rows, dtype=np.int64)
        hit = (stored >= 0) & (excluded == self.known_index_row[np.maximum(stored, 0)])
        if not hit.any():
            return self.neighbors.search(emb, k, exclude_rows)
        nbr = np.empty((m, k), dtype=np.int64)
        sims = np.empty((m, k), dtype=np.float32)
        nbr[hit] = table.rows[stored[hit], :k]
        sims[hit] = table.sims[stored[hit], :k]
        miss = np.flatnonzero(~hit)
        if miss.size:
            # The table holds no answer of more than n - 1 items, so every query here has that width too.
            found_rows, found_sims = self.neighbors.search(emb[miss], k, None if exclude_rows is None else np.asarray(exclude_rows)[miss])
            nbr[miss], sims[miss] = found_rows, found_sims
        return nbr, sims

    def use_neighbour_table(self, table: NeighbourTable | None) -> None:
        """Serve known items' neighbours from `table` (None: search again); it must be this model's (see neighbour_table.load)."""
        if table is not None and (
            table.rows.shape[0] != len(self.known_codes)
            or table.k > self.neighbors.n_items - 1
            or (table.rows.size and not 0 <= int(table.rows.min()) <= int(table.rows.max()) < self.neighbors.n_items)
        ):
            raise BundleError(f"neighbour table of {table.rows.shape[0]} items x {table.k} does not fit this model")
        self.neighbour_table = table

    def route_neighbors(
        self, emb: np.ndarray, nbr: np.ndarray, sims: np.ndarray, ranker: SignatureRanker | None = None, res_ranker: WorkCentreRanker | None = None
    ) -> RoutingCore:
        """`route` for neighbours already found."""
        m, kk = nbr.shape
        vocab, idx = self.vocab, self.index
        n_sig = max(len(vocab.sig_offsets) - 1, 1)
        win = np.full(m, -1, dtype=np.int64)
        conf = np.zeros(m)
        alt_sig = np.full((m, MAX_ALTERNATIVES), -1, dtype=np.int64)
        alt_support = np.zeros((m, MAX_ALTERNATIVES))
        w = np.maximum(sims, MIN_WEIGHT).astype(np.float64)
        sig = idx.item_sig[nbr].astype(np.int64)
        if kk:
            q = np.repeat(np.arange(m), kk)
            uniq, inv = np.unique(q * n_sig + sig.ravel(), return_inverse=True)
            support = np.bincount(inv.ravel(), weights=w.ravel())
            uq, us = uniq // n_sig, uniq % n_sig
            order = np.lexsort((us, -support, uq))  # per query: support desc, then sig id for determinism
            uq, us, support = uq[order], us[order], support[order]
            counts = np.bincount(uq, minlength=m)
            rank = np.arange(uq.size) - (np.cumsum(counts) - counts)[uq]
            share = support / np.bincount(q, weights=w.ravel(), minlength=m)[uq]
            first = rank == 0
            win[uq[first]] = us[first]
            conf[uq[first]] = share[first]
            alt = (rank >= 1) & (rank <= MAX_ALTERNATIVES)
            alt_sig[uq[alt], rank[alt] - 1] = us[alt]
            alt_support[uq[alt], rank[alt] - 1] = share[alt]
            if ranker is not None:
                cand, support = proposals(win, conf, alt_sig, alt_support)
                order, _ = ranker.rerank(cand, support, sig, sims, emb)
                cand, support = np.take_along_axis(cand, order, axis=1), np.take_along_axis(support, order, axis=1)
                win, conf = cand[:, 0].copy(), support[:, 0].copy()
                alt_sig, alt_support = np.ascontiguousarray(cand[:, 1:]), np.ascontiguousarray(support[:, 1:])

        sig_len = np.diff(vocab.sig_offsets)
        lengths = np.where(win >= 0, sig_len[np.maximum(win, 0)], 0) if len(sig_len) else np.zeros(m, np.int64)
        op_offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
        op_query = np.repeat(np.arange(m), lengths)
        pos = np.arange(op_query.size) - op_offsets[op_query]
        op_job = vocab.sig_jobs[vocab.sig_offsets[win[op_query]] + pos].astype(np.int64) if op_query.size else np.zeros(0, np.int64)

        # Work centre and in-house flag: weighted vote of the neighbours that share the winning
        # signature, position by position (their operations line up one to one).
        n_ops = op_query.size
        op_res = np.zeros(n_ops, dtype=np.int64)
        op_inside = np.ones(n_ops, dtype=bool)
        res_cand = res_support = None
        if n_ops:
            mq, mj = np.nonzero(sig == win[:, None])
            mrow = nbr[mq, mj]
            mlen = lengths[mq]
            src = ranges(idx.op_offsets[mrow], mlen)
            grp = ranges(op_offsets[mq], mlen)
            wexp = np.repeat(w[mq, mj], mlen)
            res = idx.op_res[src].astype(np.int64)
            n_res = max(len(vocab.res_codes), 1)
            uniq, inv = np.unique(grp * n_res + res, return_inverse=True)
            support = np.bincount(inv.ravel(), weights=wexp)
            ug, ur = uniq // n_res, uniq % n_res
            order = np.lexsort((ur, -support, ug))
            ug, ur, support = ug[order], ur[order], support[order]
            first = np.concatenate(([True], ug[1:] != ug[:-1]))
            op_res[ug[first]] = ur[first]
            rank = np.arange(ug.size) - np.maximum.accumulate(np.where(first, np.arange(ug.size), 0))
            top = rank < RES_CANDIDATES
            res_cand = np.full((n_ops, RES_CANDIDATES), -1, dtype=np.int64)
            res_support = np.zeros((n_ops, RES_CANDIDATES))
            res_cand[ug[top], rank[top]] = ur[top]
            res_support[ug[top], rank[top]] = support[top] / np.bincount(ug, weights=support, minlength=n_ops)[ug[top]]
            if res_ranker is not None:
                order = res_ranker.rerank(res_cand, res_support, op_job, emb[op_query])
                res_cand = np.take_along_axis(res_cand, order, axis=1)
                res_support = np.take_along_axis(res_support, order, axis=1)
                op_res = np.where(res_cand[:, 0] >= 0, res_cand[:, 0], op_res)
            inside_w = np.bincount(grp, weights=wexp * idx.op_inside[src], minlength=n_ops)
            op_inside = inside_w >= 0.5 * np.bincount(grp, weights=wexp, minlength=n_ops)

        op_token = vocab.tokens(op_job, sequence_occurrences(op_offsets, op_job))
        times = lookup_times(idx, vocab.stride, nbr, sims, op_query, op_token)
        return RoutingCore(
            nbr, sims, win, conf, alt_sig, alt_support, op_offsets, op_query, op_job, op_res, op_inside, times, res_cand, res_support
        )

    # -- the time part ----------------------------------------------------------------------
    def choose_times(
        self,
        core: RoutingCore,
        emb: np.ndarray,
        time_model: TimeModel | None,
        setup_model: TimeModel | None = None,
        numeric: np.ndarray | None = None,
    ) -> TimeChoice:
        """Run and setup minutes per operation, each with where it came from.

        Where some neighbour has actual times for the operation: the learned estimator of that
        target if one is given ("model"), else the neighbours' trimmed mean ("actuals"). Where
        none has: the neighbours' standard routing times ("standard"), whatever the estimator.
        """
        t = core.times

        def one(model: TimeModel | None, target: str) -> tuple[np.ndarray, np.ndarray]:
            base, std = t.of(target)
            has_actuals = np.isfinite(base)
            value = base
            if model is not None:
                value = model.predict_minutes(
                    emb[core.op_query], core.op_job, core.op_res, base, std, numeric[core.op_query] if numeric is not None else None
                )
            source = np.where(has_actuals, "model" if model is not None else "actuals", "standard").astype(object)
            return np.where(has_actuals, value, std), source

        run, source = one(time_model, "run")
        setup, setup_source = one(setup_model, "setup")
        return TimeChoice(run=run, setup=setup, source=source, setup_source=setup_source)

    # -- output ---------------------------------------------------------------------------------
    def to_dicts(
        self, core: RoutingCore, codes: list[str | None], choice: TimeChoice, with_similar: bool = True, decimals: int | None = None
    ) -> list[dict[str, Any]]:
        """The public prediction records (plain Python types, JSON-ready).

        `decimals`: minutes and similarities rounded as `round(v, decimals)` would (all at once, see
        `numbers`), and infinite ones None like NaN; None leaves them as computed (NaN → None).
        """
        # Tens of thousands of small dicts and lists: the cyclic GC would otherwise run
        # repeatedly while they are built (and find nothing to free).
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return self._to_dicts(core, codes, choice, with_similar, decimals)
        finally:
            if was_enabled:
                gc.enable()

    def _to_dicts(
        self, core: RoutingCore, codes: list[str | None], choice: TimeChoice, with_similar: bool, decimals: int | None
    ) -> list[dict[str, Any]]:
        vocab, t = self.vocab, core.times
        job = vocab.job_codes[core.op_job].tolist()
        job_nm = vocab.job_names[core.op_job].tolist()
        res = vocab.res_codes[core.op_res].tolist() if len(vocab.res_codes) else [""] * core.op_job.size
        inside = np.where(core.op_inside, "IN", "OUT").tolist()
        run = json_numbers(choice.run, decimals)
        setup = json_numbers(choice.setup, decimals)
        run_p10 = json_numbers(choice.run * t.run_p10_ratio, decimals)
        run_p90 = json_numbers(choice.run * t.run_p90_ratio, decimals)
        setup_p10 = json_numbers(choice.setup * t.setup_p10_ratio, decimals)
        setup_p90 = json_numbers(choice.setup * t.setup_p90_ratio, decimals)
        source = choice.source.tolist()
        setup_source = choice.setup_source.tolist()
        count = t.sample_count.tolist()
        offsets = core.op_offsets.tolist()
        conf = core.confidence.tolist()
        win = core.win_sig.tolist()
        alt_sig = core.alt_sig.tolist()
        alt_support = core.alt_support.tolist()
        if with_similar:
            nb_codes = self.index.item_codes[core.nbr].tolist()
            kk = core.sims.shape[1]
            flat = core.sims.tolist() if decimals is None else json_numbers(core.sims.ravel(), decimals)
            nb_sims = flat if decimals is None else [flat[q * kk : (q + 1) * kk] for q in range(len(codes))]
            nb_sig = self.index.item_sig[core.nbr].tolist()
        out = []
        for q, code in enumerate(codes):
            lo, hi = offsets[q], offsets[q + 1]
            ops = [
                {
                    "proc_seq": 10 * (i - lo + 1),
                    "job_cd": job[i],
                    "job_nm": job_nm[i],
                    "res_cd": res[i],
                    "inside_flag": inside[i],
                    "setup_minutes": setup[i],
                    "run_minutes_per_unit": run[i],
                    "time_source": source[i],
                    "setup_source": setup_source[i],
                    "run_p10": run_p10[i],
                    "run_p90": run_p90[i],
                    "setup_p10": setup_p10[i],
                    "setup_p90": setup_p90[i],
                    "sample_count": count[i],
                }
                for i in range(lo, hi)
            ]
            record = {
                "item_cd": code,
                "signature": list(self.signature(win[q])) if win[q] >= 0 else [],
                "confidence": conf[q],
                "operations": ops,
                "alternatives": [
                    {"signature": list(self.signature(s)), "support": sup}
                    for s, sup in zip(alt_sig[q], alt_support[q], strict=True)
                    if s >= 0
                ],
            }
            if with_similar:
                record["similar_items"] = [
                    {"item_cd": c, "similarity": s, "signature": list(self.signature(g))}
                    for c, s, g in zip(nb_codes[q], nb_sims[q], nb_sig[q], strict=True)
                ]
            else:
                record["similar_items"] = []
            out.append(record)
        return out

    def predict(
        self, items: pd.DataFrame | list[dict[str, Any]], top_k: int | None = None, exclude_self: bool = True, decimals: int | None = None
    ) -> list[dict[str, Any]]:
        """Predicted routing of every row of `items`, in order.

        `items` holds any subset of the item columns (a row may describe a new item by a few
        attributes, or name a known item by `ITEM_CD` alone); a list of dicts (records) is
        accepted too and is the fastest input for a few items. With `exclude_self` an
        indexed item never counts as its own neighbour. `decimals`: see `to_dicts`.
        """
        if isinstance(items, list):
            # Records (list of dicts): a few go straight to the per-value encoder.
            names = {"ITEM_CD", *(f.name for f in self.config.active_features)}
            items = {name: [r.get(name) for r in items] for name in names} if len(items) <= SMALL_FRAME else pd.DataFrame(items)
        elif not isinstance(items, (pd.DataFrame, dict)):
            items = pd.DataFrame(items)
        k = int(top_k or self.config.top_k)
        emb, self_rows, codes, numeric, stored = self._embed(items)
        core = self.route(emb, self_rows if exclude_self else None, k, stored=stored)
        return self.to_dicts(core, codes, self.choose_times(core, emb, self.time_model, self.setup_model, numeric), decimals=decimals)

    # -- persistence ------------------------------------------------------------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {f"nn_{name}": arr for name, arr in self.neighbors.arrays().items()}
        arrays.update(
            {
                "extra_emb": self.extra_emb,
                "known_codes": self.known_codes,
                "known_index_row": self.known_index_row,
                "known_extra_row": self.known_extra_row,
            }
        )
        arrays.update({f"vocab_{f.name}": getattr(self.vocab, f.name) for f in fields(self.vocab)})
        arrays.update({f"index_{name}": arr for name, arr in self.index.arrays().items()})
        arrays.update(monitoring_codes=self.monitoring_codes, fit_codes=self.fit_codes)
        if self.known_numeric is not None:
            arrays["known_numeric"] = self.known_numeric
        return arrays

    def save(self, directory: str | Path) -> dict[str, Any]:
        """Write the bundle into `directory`, manifest last; returns the manifest.

        Arrays go to .npy (memory-mappable), the encoder and the estimator to joblib.
        `manifest.json` lists the sha256 of every other file, so a reader can tell a complete
        bundle from a half-written or corrupted one.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        written: list[str] = []
        for name, arr in self._arrays().items():
            np.save(directory / f"{name}.npy", np.ascontiguousarray(arr), allow_pickle=False)
            written.append(f"{name}.npy")
        joblib.dump(self.encoder, directory / "encoder.joblib")
        written.append("encoder.joblib")
        for name, estimator in (
            ("time_model.joblib", self.time_model),
            ("setup_model.joblib", self.setup_model),
            ("routing_model.joblib", self.routing_ranker),
            ("work_centre_model.joblib", self.res_ranker),
        ):
            if estimator is not None:
                joblib.dump(estimator, directory / name)
                written.append(name)
        # The admin-facing copy of the weights (DESIGN: artifacts include feature_weights.json).
        (directory / "feature_weights.json").write_text(json.dumps(self.config.feature_weights(), indent=2))
        written.append("feature_weights.json")
        meta = {"selected": self.selected, "selected_setup": self.selected_setup, "config": self.config.to_dict()}
        (directory / "model.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        written.append("model.json")
        # Files the caller put there first (metrics.json, training_request.json) are pinned too.
        pinned = set(written) | {p.name for p in directory.iterdir() if p.is_file() and p.name != MANIFEST}
        manifest = {k: v for k, v in self.manifest.items() if k not in ("files", "libraries", "bundle_format")}
        manifest.update(
            bundle_format=BUNDLE_FORMAT,
            created_at=manifest.get("created_at") or datetime.now(UTC).isoformat(),
            selected=self.selected,
            selected_setup=self.selected_setup,
            selected_routing=self.selected_routing,
            selected_work_centre=self.selected_work_centre,
            monitoring_items=int(len(self.monitoring_codes)),
            learned_fit_items=int(len(self.fit_codes)),
            config=self.config.to_dict(),
            feature_weights=self.config.feature_weights(),
            items_indexed=int(self.index.n_items),
            items_known=int(len(self.known_codes)),
            embedding_dim=int(self.encoder.dim),
            libraries=library_versions(),
            files={name: {"sha256": sha256_file(directory / name), "bytes": (directory / name).stat().st_size} for name in sorted(pinned)},
        )
        (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
        self.manifest = manifest
        return manifest

    @classmethod
    def load(cls, directory: str | Path, mmap: bool = True) -> RoutingModel:
        """Load a bundle after checking every file against the manifest's sha256.

        Raises `BundleError` naming the first missing or corrupt file. With `mmap` the large
        arrays are memory-mapped read-only instead of read into memory.
        """
        directory = Path(directory)
        manifest = verify_bundle(directory)
        digest = bundle_digest(directory)  # what a neighbour table must name to serve this model
        files = manifest["files"]
        try:
            # Plain ndarray views of the maps: same shared pages, without np.memmap's
            # per-slice overhead (thousands of slices per batch prediction).
            arrays = {
                name[: -len(".npy")]: np.load(directory / name, mmap_mode="r" if mmap else None, allow_pickle=False).view(np.ndarray)
                for name in files
                if name.endswith(".npy")
            }
            encoder = joblib.load(directory / "encoder.joblib")
            time_model = joblib.load(directory / "time_model.joblib") if "time_model.joblib" in files else None
            setup_model = joblib.load(directory / "setup_model.joblib") if "setup_model.joblib" in files else None
            routing_ranker = joblib.load(directory / "routing_model.joblib") if "routing_model.joblib" in files else None
            res_ranker = joblib.load(directory / "work_centre_model.joblib") if "work_centre_model.joblib" in files else None
            meta = json.loads((directory / "model.json").read_text())
            # occ_count is absent from bundles made before operations were keyed by their place.
            vocab = Vocab(**{f.name: arrays[f"vocab_{f.name}"] for f in fields(Vocab) if f"vocab_{f.name}" in arrays or f.name != "occ_count"})
            # The per-operation means are absent from bundles made before the estimators learned them.
            index = IndexData(**{f.name: arrays[f"index_{f.name}"] for f in fields(IndexData) if f"index_{f.name}" in arrays or not f.name.endswith("_mean")})
        except (KeyError, ValueError, OSError, EOFError) as exc:
            raise BundleError(f"model bundle {directory}: cannot be read ({exc})")
        model = cls(
            config=EngineConfig.from_dict(meta["config"]),
            encoder=encoder,
            vocab=vocab,
            index=index,
            neighbors=NeighborIndex.from_arrays({name[len("nn_") :]: arr for name, arr in arrays.items() if name.startswith("nn_")}),
            known_codes=arrays["known_codes"],
            known_index_row=arrays["known_index_row"],
            known_extra_row=arrays["known_extra_row"],
            extra_emb=arrays["extra_emb"],
            time_model=time_model,
            selected=meta["selected"],
            setup_model=setup_model,
            selected_setup=meta.get("selected_setup", "baseline"),
            manifest=manifest,
            routing_ranker=routing_ranker,
            res_ranker=res_ranker,
            monitoring_codes=arrays.get("monitoring_codes"),
            fit_codes=arrays.get("fit_codes"),
            known_numeric=arrays.get("known_numeric"),
        )
        model.bundle_digest = digest
        return model
