"""Learned routing candidates beside the neighbour vote: classifiers that re-rank the vote's proposals.

`SignatureRanker` re-ranks the proposed signatures of an item; `WorkCentreRanker` re-ranks the
work centres proposed for each operation of the chosen signature (features: the vote's shares,
the JOB_CD, the candidate work centre, how often that job runs there, the item's embedding).

The vote proposes, per query, its best few signatures (the winner and the alternatives). For
each (query, proposed signature) the classifier sees the vote's evidence (support share, rank,
how many neighbours and how similar the closest one with that signature), how common the
signature is, its length, and the query's encoded attributes (its embedding), and estimates the
probability that it is the item's routing. The most probable proposal wins. It can learn, for
example, that in this factory a close neighbour's signature beats a far majority, or that a
region of the attribute space always takes the second proposal.

It is a candidate like the learned time estimators: fitted on items outside the held-out and
monitoring sets, scored on the held-out items, and shipped only when it beats the vote by
`min_improvement_pct` (see `pipeline.select_routing`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

from .times import MIN_WEIGHT, single_thread

# Embedding dimensions handed to the classifier (the leading SVD directions carry the most).
MAX_EMBEDDING_FEATURES = 32
# Work centres proposed per operation by the neighbours' vote.
RES_CANDIDATES = 3
PAIR_KEY = 1 << 24


def proposals(win_sig: np.ndarray, confidence: np.ndarray, alt_sig: np.ndarray, alt_support: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(signatures (m, P), support shares (m, P)) of the vote's proposals, winner first; -1 = none."""
    return np.column_stack([win_sig, alt_sig]), np.column_stack([confidence, alt_support])


@dataclass
class SignatureRanker:
    """A fitted re-ranker over the vote's proposals (see the module docstring)."""

    classifier: HistGradientBoostingClassifier
    sig_log_count: np.ndarray  # log1p(indexed items per signature)
    sig_length: np.ndarray
    n_emb: int

    @staticmethod
    def features(
        cand: np.ndarray, support: np.ndarray, nbr_sig: np.ndarray, sims: np.ndarray, emb: np.ndarray, sig_log_count: np.ndarray, sig_length: np.ndarray, n_emb: int
    ) -> np.ndarray:
        """Rows (m * P, F): one per (query, proposal), proposals in order."""
        m, p = cand.shape
        w = np.maximum(sims, MIN_WEIGHT)
        rows = []
        for j in range(p):
            has = nbr_sig == cand[:, j : j + 1]
            count = has.sum(axis=1)
            best = np.where(has, sims, -np.inf).max(axis=1, initial=-np.inf)
            first = np.where(has.any(axis=1), has.argmax(axis=1), nbr_sig.shape[1])
            valid = cand[:, j] >= 0
            safe = np.maximum(cand[:, j], 0)
            rows.append(
                np.column_stack(
                    [
                        np.where(valid, support[:, j], 0.0),
                        np.full(m, j),
                        count / max(nbr_sig.shape[1], 1),
                        np.where(np.isfinite(best), best, -1.0),
                        first,
                        (np.where(has, w, 0).sum(axis=1)) / np.maximum(w.sum(axis=1), MIN_WEIGHT),
                        np.where(valid, sig_log_count[safe], -1.0),
                        np.where(valid, sig_length[safe], -1.0),
                        support[:, 0] - np.where(valid, support[:, j], 0.0),
                        emb[:, :n_emb],
                    ]
                )
            )
        # (P, m, F) → (m, P, F) → (m * P, F)
        return np.ascontiguousarray(np.stack(rows, axis=1).reshape(m * p, -1), dtype=np.float32)

    @classmethod
    def fit(
        cls,
        cand: np.ndarray,
        support: np.ndarray,
        nbr_sig: np.ndarray,
        sims: np.ndarray,
        emb: np.ndarray,
        true_sig: np.ndarray,
        item_sig: np.ndarray,
        sig_length: np.ndarray,
        seed: int,
    ) -> SignatureRanker | None:
        """Fit on queries whose true signature is known; None when there is nothing to learn (one class)."""
        n_sig = sig_length.size
        sig_log_count = np.log1p(np.bincount(item_sig, minlength=n_sig)).astype(np.float64)
        n_emb = min(emb.shape[1], MAX_EMBEDDING_FEATURES)
        x = cls.features(cand, support, nbr_sig, sims, emb, sig_log_count, sig_length, n_emb)
        y = ((cand == true_sig[:, None]) & (cand >= 0)).ravel()
        keep = (cand >= 0).ravel()
        if y[keep].all() or not y[keep].any():
            return None
        classifier = HistGradientBoostingClassifier(max_iter=50, learning_rate=0.15, max_leaf_nodes=31, random_state=seed)
        with single_thread():
            classifier.fit(x[keep], y[keep])
        return cls(classifier=classifier, sig_log_count=sig_log_count, sig_length=sig_length.astype(np.float64), n_emb=n_emb)

    def rerank(
        self, cand: np.ndarray, support: np.ndarray, nbr_sig: np.ndarray, sims: np.ndarray, emb: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(order (m, P), probability (m, P)): the proposals sorted by the classifier, most probable first."""
        m, p = cand.shape
        if m == 0:
            return np.zeros((0, p), dtype=np.int64), np.zeros((0, p))
        x = self.features(cand, support, nbr_sig, sims, emb, self.sig_log_count, self.sig_length, self.n_emb)
        with single_thread():
            prob = self.classifier.predict_proba(x)[:, 1].reshape(m, p)
        prob = np.where(cand >= 0, prob, -1.0)
        order = np.argsort(-prob, axis=1, kind="stable")
        return order, np.take_along_axis(prob, order, axis=1)


@dataclass
class WorkCentreRanker:
    """A fitted re-ranker over the work centres the vote proposes for each predicted operation."""

    classifier: HistGradientBoostingClassifier
    pair_keys: np.ndarray  # sorted job * PAIR_KEY + res of the indexed operations
    pair_log_count: np.ndarray  # log1p(operations) per key
    n_emb: int

    def features(self, cand: np.ndarray, support: np.ndarray, op_job: np.ndarray, emb: np.ndarray) -> np.ndarray:
        """Rows (n_ops * R, F): one per (operation, proposed work centre)."""
        n, r = cand.shape
        job = np.repeat(np.asarray(op_job, dtype=np.int64), r)
        flat = cand.ravel()
        keys = job * PAIR_KEY + flat
        pos = np.minimum(np.searchsorted(self.pair_keys, keys), max(self.pair_keys.size - 1, 0))
        found = (self.pair_keys[pos] == keys) if self.pair_keys.size else np.zeros(keys.size, dtype=bool)
        counts = np.where(found, self.pair_log_count[pos] if self.pair_keys.size else 0.0, 0.0)
        return np.ascontiguousarray(
            np.column_stack(
                [
                    support.ravel(),
                    np.tile(np.arange(r), n),
                    job,
                    flat,
                    counts,
                    np.repeat(support[:, 0], r) - support.ravel(),
                    np.repeat(emb[:, : self.n_emb], r, axis=0),
                ]
            ),
            dtype=np.float32,
        )

    @classmethod
    def fit(
        cls, cand: np.ndarray, support: np.ndarray, op_job: np.ndarray, emb: np.ndarray, true_res: np.ndarray, index_job: np.ndarray, index_res: np.ndarray, seed: int
    ) -> WorkCentreRanker | None:
        """Fit on operations whose true work centre is known; None when the vote leaves nothing to learn."""
        keys, counts = np.unique(np.asarray(index_job, dtype=np.int64) * PAIR_KEY + np.asarray(index_res, dtype=np.int64), return_counts=True)
        ranker = cls(classifier=HistGradientBoostingClassifier(max_iter=50, learning_rate=0.15, max_leaf_nodes=31, random_state=seed),
                     pair_keys=keys, pair_log_count=np.log1p(counts).astype(np.float64), n_emb=min(emb.shape[1], MAX_EMBEDDING_FEATURES))  # fmt: skip
        x = ranker.features(cand, support, op_job, emb)
        y = ((cand == true_res[:, None]) & (cand >= 0)).ravel()
        keep = (cand >= 0).ravel()
        # Only operations where the vote had a choice teach anything.
        several = np.repeat((cand >= 0).sum(axis=1) > 1, cand.shape[1])
        keep &= several
        if not keep.any() or y[keep].all() or not y[keep].any():
            return None
        with single_thread():
            ranker.classifier.fit(x[keep], y[keep])
        return ranker

    def rerank(self, cand: np.ndarray, support: np.ndarray, op_job: np.ndarray, emb: np.ndarray) -> np.ndarray:
        """Order (n_ops, R) of the proposals, most probable first (operations with one proposal keep it)."""
        n, r = cand.shape
        if n == 0:
            return np.zeros((0, r), dtype=np.int64)
        with single_thread():
            prob = self.classifier.predict_proba(self.features(cand, support, op_job, emb))[:, 1].reshape(n, r)
        prob = np.where(cand >= 0, prob, -1.0)
        return np.argsort(-prob, axis=1, kind="stable")
