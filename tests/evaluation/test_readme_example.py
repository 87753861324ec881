"""The README's own example shows what it says: on a run of the default recipe, ``modkit generate --given
label=seven --target image`` draws images that read as sevens, and eval's sampled label → image coherence says
how often generated images read as their label (benchmarks/readme_example.py measured the recipe's choice)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import modkit
from modkit.evaluation.suite import EvalSettings, evaluate_run
from modkit.runs.loading import load_run

sys.path.insert(0, str(Path(__file__).parent))
from test_sampled_coherence import CLASSES, generated_accuracy  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_default_recipe_generates_what_eval_says(tmp_path):
    out = tmp_path / "digits"
    modkit.train(str(REPO / "recipes" / "digits.yaml"), ["train.progress=false", "train.device=cpu"], out=out, echo=lambda s: None)
    run = load_run(out, torch.device("cpu"))
    verdicts, truth = generated_accuracy(run, 100)
    independent = float((verdicts == truth).mean())
    seven = float((verdicts[CLASSES.index("seven")] == 7).mean())
    assert independent >= 0.8 and seven >= 0.8, (independent, seven)
    sampled = evaluate_run(run, EvalSettings(metrics=["coherence"], joint_samples=100, coherence_draws=4))
    coherence = sampled["coherence"]["cross"]["label->image"]["label"]
    assert abs(coherence - independent) <= 0.05, (coherence, independent)
    assert np.isfinite(sampled["summary"]["ceiling/image/label"])
