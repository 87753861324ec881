"""Test-set numbers written to ``summary.json``: the joint ELBO and cross-modal accuracy from the model's own decoders.

(``modkit eval``'s *coherence* is another measure: generated data judged by independent classifiers.)

Accumulates on the device and reads back once at the end (no per-batch host sync).
"""
from __future__ import annotations

from typing import Iterable

import torch

from modkit.core.batch import Batch
from modkit.core import subsets
from modkit.core.engine import MultimodalVAE


@torch.no_grad()
def test_metrics(model: MultimodalVAE, batches: Iterable[Batch], device: torch.device, n_samples: int = 10,
                 coherence: bool = True) -> dict:
    """Joint ELBO (λ = 1, β = 1, ``n_samples`` draws) on fully observed samples, and cross-modal accuracy.

    For every target that has classes, ``balanced_accuracy/src->tgt``: the target decoded from the
    posterior mean given ``src`` alone, over samples where both are present, scored by mean recall per
    class (chance ``chance/tgt`` = 1/K); for other targets with a per-sample accuracy (masks' pixels,
    exact-match text) ``accuracy/src->tgt``.
    """
    model.eval()
    names = model.names
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, torch.Tensor] = {}
    hits: dict[str, torch.Tensor] = {}  # per class target: (N sources, V variables, K classes) correct and total counts
    totals: dict[str, torch.Tensor] = {}
    n_classes: dict[str, int] = {}

    def add(key: str, values: torch.Tensor, mask: torch.Tensor) -> None:
        sums[key] = sums.get(key, 0) + (values.double() * mask).sum()
        counts[key] = counts.get(key, 0) + mask.double().sum()

    everything, singles = subsets.full(len(names)).to(device), subsets.singles(len(names)).to(device)
    no_density = getattr(model.fusion, "no_likelihood_reason", None) is not None  # no density over z: no ELBO to score
    for batch in batches:
        batch = batch.to(device)
        if len(batch) == 0:
            continue
        experts = model.encode(batch)
        complete = batch.present.all(1)
        post = model.fusion.posterior(experts, everything)
        z = post.rsample(n_samples).squeeze(1)  # (K, B, D)
        _, per = model.weighted_reconstruction(z, batch)
        rec = sum(per.values())
        prior = model.fusion.prior()  # the fusion's own prior (MMVAE's may be learned or Laplace; MEME has none)
        if prior is not None and not no_density:
            log_qz = post.log_prob(z.unsqueeze(1)).squeeze(1)
            add("test/elbo", (rec + prior.log_prob(z) - log_qz).mean(0), complete)
        for name, ll in per.items():
            add(f"test/rec/{name}", ll.mean(0), complete)
        if not coherence or len(names) < 2:
            continue
        z_single = model.fusion.posterior(experts, singles).mean  # (N, B, D): every source at once
        for j, t in enumerate(names):
            modality = model.modalities[t]
            out = modality.decode(z_single)
            both = batch.present & batch.present[:, j:j + 1]  # (B, N): source i and target j present
            classes = modality.class_predictions(out, batch.data[t])
            if classes is not None:
                pred, truth, k = classes  # (N, B, V), (B, V)
                truth = truth.clamp(0, k - 1)  # an absent target's filler value is masked out below
                onehot = torch.nn.functional.one_hot(truth, k).double()  # (B, V, K)
                mask = both.t().double()  # (N, B)
                hits[t] = hits.get(t, 0) + torch.einsum("nb,nbv,bvk->nvk", mask, (pred == truth).double(), onehot)
                totals[t] = totals.get(t, 0) + torch.einsum("nb,bvk->nvk", mask, onehot)
                n_classes[t] = k
                continue
            acc = modality.accuracy(out, batch.data[t])  # (N, B)
            if acc is None:
                continue
            for i, s in enumerate(names):
                if s != t:
                    add(f"accuracy/{s}->{t}", acc[i], both[:, i])
    out = {k: (sums[k] / counts[k]).item() if counts[k].item() > 0 else None for k in sums}
    for t, hit in hits.items():
        out.update(_balanced(names, t, hit, totals[t]))
        out[f"chance/{t}"] = 1.0 / n_classes[t]
    if model.fusion.prior() is None or no_density:
        out["test/elbo"] = None  # no unconditional prior, or no density over z, to score the ELBO under (Fusion.prior, no_likelihood_reason)
    return out


def _balanced(names: list[str], target: str, hits: torch.Tensor, totals: torch.Tensor) -> dict[str, float | None]:
    """Balanced accuracy per source from (N, V, K) hit and item counts: mean recall over the classes
    that occur, then mean over the V variables."""
    seen = totals > 0
    recall = torch.where(seen, hits / totals.clamp_min(1), torch.zeros_like(hits))
    per_variable = recall.sum(-1) / seen.sum(-1).clamp_min(1)  # (N, V)
    has = seen.any(-1)  # (N, V)
    score = (per_variable * has).sum(-1) / has.sum(-1).clamp_min(1)  # (N,)
    return {f"balanced_accuracy/{s}->{target}": (score[i].item() if has[i].any() else None)
            for i, s in enumerate(names) if s != target}
