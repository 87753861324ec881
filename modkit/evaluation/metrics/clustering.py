"""k-means clustering of the joint and unimodal embeddings, scored against the classes (MultiVae's clustering
evaluation; the latent classification beside it is the linear probe, ``probe``).

For each modality alone and all of them together, the posterior means E[z | X_S] of the test items that have
the subset are clustered by k-means (scikit-learn, K = the attribute's number of classes, 10 initialisations,
seeded), and the clusters are compared with the classes by the adjusted Rand index (0: chance, 1: the classes
exactly) and normalised mutual information (0 to 1), for every class attribute that is one integer field
(0/1 vector entries are left out: each would be its own two-cluster run).

A model whose prior is itself a mixture of clusters (:class:`modkit.ClusteredPrior`, CMVAE) also has its own
clusters scored the same way: each posterior mean's most probable cluster, argmax_c p(c | z), beside k-means
(``prior_ari``, ``prior_nmi``, and ``prior_clusters``, how many of the prior's clusters the items fell into).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from modkit.core.capabilities import ClusteredPrior
from modkit.evaluation.judges import split_attribute
from modkit.evaluation.metric import BaseMetric, Block, Decoded, EvalContext, PosteriorBatch, Table, Text, headline_subsets

MAX_ITEMS = 10000


class Clustering(BaseMetric):
    name = "clustering"
    group = "clustering"
    keys = ("clustering",)
    needs = frozenset()
    description = ("k-means of the posterior means (MultiVae's clustering evaluation) of each modality alone and all together, "
                   "K = the attribute's classes, 10 seeded initialisations, on the test items with the subset (at most "
                   f"{MAX_ITEMS}); adjusted Rand index (chance 0, ceiling 1) and NMI (0 to 1) against the classes.")

    def start(self, context: EvalContext) -> None:
        self.context = context
        wanted = set(headline_subsets(context.names))
        self.rows = [s for s, label in enumerate(context.labels) if label in wanted]
        self.attributes = [a for a in context.attributes if split_attribute(a)[1] is None]
        self.means: dict[int, list[np.ndarray]] = {s: [] for s in self.rows}
        self.classes: dict[int, dict[str, list[np.ndarray]]] = {s: {a: [] for a in self.attributes} for s in self.rows}
        fusion = context.model.fusion
        self.prior = fusion if isinstance(fusion, ClusteredPrior) else None  # the model's own clusters, read out beside k-means
        self.assigned: dict[int, list[np.ndarray]] = {s: [] for s in self.rows}

    def update(self, batch: PosteriorBatch, decoded: Decoded | None) -> None:
        if decoded is not None or not batch.aligned or not self.attributes:
            return
        for s in self.rows:
            ok = batch.usable[s].cpu().numpy()
            self.means[s].append(batch.mean[s][batch.usable[s]].float().cpu().numpy())
            if self.prior is not None:
                self.assigned[s].append(self.prior.cluster_log_posterior(batch.mean[s][batch.usable[s]]).argmax(-1).cpu().numpy())
            for a in self.attributes:
                self.classes[s][a].append(batch.attributes[a][ok])

    def compute(self) -> dict[str, Any]:
        from sklearn.cluster import KMeans
        from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

        out: dict[str, dict[str, Any]] = {}
        seed = self.context.settings.seed
        for s in self.rows:
            if not self.means[s]:
                continue
            z = np.concatenate(self.means[s])
            for a in self.attributes:
                y = np.concatenate(self.classes[s][a])
                keep = y >= 0
                if keep.sum() > MAX_ITEMS:
                    keep &= np.isin(np.arange(len(y)), np.random.default_rng(seed).permutation(len(y))[:MAX_ITEMS])
                k = len(np.unique(y[keep]))
                if k < 2 or keep.sum() <= k:
                    continue
                found = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(z[keep])
                cell = out.setdefault(self.context.labels[s], {})[a] = {
                    "ari": float(adjusted_rand_score(y[keep], found)), "nmi": float(normalized_mutual_info_score(y[keep], found)),
                    "k": int(k), "items": int(keep.sum())}
                if self.prior is not None:
                    own = np.concatenate(self.assigned[s])[keep]
                    cell.update(prior_ari=float(adjusted_rand_score(y[keep], own)), prior_nmi=float(normalized_mutual_info_score(y[keep], own)),
                                prior_clusters=int(len(np.unique(own))))
        return {"clustering": out} if out else {}

    def summary(self, result: dict, names: list[str]) -> dict[str, float]:
        return {f"clustering/{s}/{a}/{m}": cell[m] for s, per in result.get("clustering", {}).items()
                for a, cell in per.items() for m in ("ari", "nmi", "prior_ari", "prior_nmi") if m in cell}

    def report(self, result: dict) -> list[Block]:
        if not result.get("clustering"):
            return []
        blocks: list[Block] = [Text(["## Clustering of the embeddings", "", self.description, ""]),
                               Table(["subset", "attribute", "K", "adjusted Rand", "NMI", "items"],
                                     [[s, a, c["k"], c["ari"], c["nmi"], c["items"]] for s, per in result["clustering"].items() for a, c in per.items()])]
        own = [[s, a, c["prior_clusters"], c["prior_ari"], c["prior_nmi"], c["items"]] for s, per in result["clustering"].items()
               for a, c in per.items() if "prior_ari" in c]
        if own:
            blocks += [Text(["", "The model's own clusters (argmax_c p(c | z) of each posterior mean, its mixture prior's read-out):", ""]),
                       Table(["subset", "attribute", "clusters used", "adjusted Rand", "NMI", "items"], own)]
        return blocks


METRIC = Clustering
