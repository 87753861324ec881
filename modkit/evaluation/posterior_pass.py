"""The one posterior pass over the test split that every :class:`~modkit.evaluation.metric.Metric` is fed from.

Each batch is encoded once and fused for every evaluated subset; the unimodal posteriors are formed only
when a metric needs them, and every target is decoded from the posterior means (a chunk of subsets at a
time, so the decoded outputs of all subsets never sit in memory together) only when a metric needs
decoded outputs.
"""
from __future__ import annotations

from typing import Sequence

import torch

from modkit.evaluation.judges import iterate
from modkit.evaluation.likelihood import chunk_budget, output_elements
from modkit.evaluation.metric import Decoded, EvalContext, Metric, PosteriorBatch, Progress


@torch.no_grad()
def posterior_pass(context: EvalContext, metrics: Sequence[Metric], chunk_elements: int) -> None:
    """Feed ``metrics`` every test batch of ``context`` (``update(batch, None)``), then every decoded chunk
    (``update(batch, decoded)``, to the metrics that need ``decoded``)."""
    model, names, masks, labels = context.model, context.names, context.masks, context.labels
    S = len(masks)
    want_singles = any("singles" in m.needs for m in metrics)
    decoders = [m for m in metrics if "decoded" in m.needs]
    # rows of the one-modality subsets among the chosen ones; None: fuse them on their own (explicit --subsets)
    singles = torch.tensor([labels.index(n) for n in names], device=model.device) if set(names) <= set(labels) else None
    out_size = {t: output_elements(model, [t]) for t in names} if decoders else {}
    bar = Progress(len(context.test), "posteriors")
    for positions, batch in iterate(context.test, context.settings.batch_size):
        aligned = len(batch) == len(positions)
        batch = batch.to(model.device)
        experts = model.encode(batch)
        post = model.fusion.posterior(experts, masks)
        mean = post.mean
        step = PosteriorBatch(positions=positions, aligned=aligned, batch=batch, mean=mean,
                              usable=(masks.unsqueeze(1) <= batch.present.unsqueeze(0)).all(-1),  # (S, B)
                              attributes={a: v[positions] for a, v in context.test_attributes.items()} if aligned else {},
                              posterior=post)
        if want_singles:
            # unimodal Gaussians: the fusion's single-modality posteriors when Gaussian, else the raw experts
            # (a mixture posterior, as in MoE, has no single mean and scale)
            if hasattr(post, "std"):
                single = post if singles is not None else model.fusion.posterior(experts, torch.eye(len(names), dtype=torch.bool, device=model.device))
                rows = singles if singles is not None else slice(None)
                step.single_mean, step.single_std = single.mean[rows], single.std[rows]
            else:
                step.single_mean, step.single_std = experts.mu, torch.exp(0.5 * experts.logvar.float())
        for metric in metrics:
            metric.update(step, None)
        for j, t in enumerate(names if decoders else []):
            modality = model.modalities[t]
            valid_all = step.usable & batch.present[:, j].unsqueeze(0)  # (S, B)
            budget = min(chunk_elements, chunk_budget(model.device))
            size = max(1, budget // max(1, out_size[t] * len(batch)))  # subsets decoded at once
            for s0 in range(0, S, size):
                s1 = min(S, s0 + size)
                out = modality.decode(mean[s0:s1])  # (s, B, ...)
                decoded = Decoded(target=t, index=j, start=s0, stop=s1, out=out, predicted=modality.predict(out),
                                  data=batch.data[t], valid=valid_all[s0:s1])
                for metric in decoders:
                    metric.update(step, decoded)
        bar(len(batch))
    bar.close()

