"""A learned routing candidate beside the neighbour vote: a classifier that re-ranks the vote's signatures.

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
