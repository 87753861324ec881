"""Test accuracy of a trained M2 run's classifier q(y|x): ``python -m modkit_m2.accuracy RUN_DIR``.

The generic summary reports ``balanced_accuracy/<input>-><target>`` through the target's decoder; this reads
the classifier itself, which is what the M2 papers report.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from modkit import EpochBatchSampler, ModkitError, load, make_loader


@torch.no_grad()
def classifier_accuracy(run_dir: Path, device: str = "auto") -> dict[str, float]:
    """Argmax accuracy of q(y|x) on the run's test split (samples with the target and an input present),
    and how often the target's decoder, reading q(z | inputs), agrees with it."""
    run = load(run_dir, device)  # the run's own recipe, files (tokenizers) and checkpoint: nothing refitted
    setup, model, recipe = run.setup, run.model, run.recipe
    fusion = model.fusion
    if not hasattr(fusion, "classify"):
        raise ModkitError(f"{run_dir} is not an m2 run (fusion '{recipe.model.fusion.type}')")
    correct = agree = count = 0.0
    inputs = [model.names[i] for i in fusion.inputs]
    loader = make_loader(setup.test, EpochBatchSampler(len(setup.test), 512, shuffle=False))
    for batch in loader:
        batch = batch.to(model.device)
        x_present = batch.present[:, fusion.inputs]
        keep = batch.present[:, fusion.t_index] & x_present.any(-1)
        h = fusion._inputs(fusion.input_features(model, batch), x_present)
        cax = 1 + fusion.class_pos
        pred = fusion.classify(h).argmax(cax)
        y = batch.data[fusion.target].long()
        decoded = model.modalities[fusion.target].decode(model.posterior(batch, inputs).mean[0]).argmax(cax)
        per = lambda t: t.float().flatten(1).mean(-1) if t.dim() > 1 else t.float()  # noqa: E731
        correct += per(pred == y)[keep].sum().item()
        agree += per(decoded == pred)[keep].sum().item()
        count += keep.sum().item()
    return {"classifier_accuracy": correct / max(count, 1), "decoder_agreement": agree / max(count, 1), "n": int(count)}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m modkit_m2.accuracy RUN_DIR", file=sys.stderr)
        return 2
    try:
        result = classifier_accuracy(Path(args[0]))
    except ModkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args[0]}: classifier accuracy {result['classifier_accuracy']:.4f} on {result['n']} test samples; "
          f"target decoder agrees with it on {result['decoder_agreement']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
