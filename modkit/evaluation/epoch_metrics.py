"""Test-set numbers written to ``summary.json``: the joint ELBO and cross-modal coherence.

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
    """Joint ELBO (λ = 1, β = 1, ``n_samples`` draws) on fully observed samples, and coherence ``src->tgt``.

    Coherence is the accuracy of target modality ``tgt`` decoded from the posterior mean given
    ``src`` alone, over samples where both are present, for every discrete target.
    """
    model.eval()
    names = model.names
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, torch.Tensor] = {}

    def add(key: str, values: torch.Tensor, mask: torch.Tensor) -> None:
        sums[key] = sums.get(key, 0) + (values.double() * mask).sum()
        counts[key] = counts.get(key, 0) + mask.double().sum()

    everything, singles = subsets.full(len(names)).to(device), subsets.singles(len(names)).to(device)
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
        if prior is not None:
            log_qz = post.log_prob(z.unsqueeze(1)).squeeze(1)
            add("test/elbo", (rec + prior.log_prob(z) - log_qz).mean(0), complete)
        for name, ll in per.items():
            add(f"test/rec/{name}", ll.mean(0), complete)
        if not coherence or len(names) < 2:
            continue
        z_single = model.fusion.posterior(experts, singles).mean  # (N, B, D): every source at once
        for j, t in enumerate(names):
            acc = model.modalities[t].accuracy(model.modalities[t].decode(z_single), batch.data[t])  # (N, B)
            if acc is None:
                continue
            for i, s in enumerate(names):
                if s != t:
                    add(f"coherence/{s}->{t}", acc[i], batch.present[:, i] & batch.present[:, j])
    out = {k: (sums[k] / counts[k]).item() if counts[k].item() > 0 else None for k in sums}
    if model.fusion.prior() is None:
        out["test/elbo"] = None  # no unconditional prior to score the ELBO under (see Fusion.prior)
    return out

