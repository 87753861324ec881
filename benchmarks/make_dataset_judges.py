"""Fit a dataset's fixed coherence judges on its real data and write them as a dataset judges file.

    python benchmarks/make_dataset_judges.py recipes/digits.yaml --out plugins/modkit_digits/judges.safetensors

Every run on the dataset is then scored by these classifiers (``modkit eval`` finds a ``judges.safetensors``
beside the dataset plugin's module). The judges see only real data: each classifier judge (a standardiser,
PCA above 256 features, and a logistic regression per attribute) is fitted on every row of the recipe's
training split and scored on its test split, and that score is stored as the judge's ceiling. The file
holds numbers only (safetensors): opening it runs no code. Its provenance (command, commit, date, machine,
library versions, rows) is stored inside it and printed.

The recipe is trained for one epoch with tiny networks only to have its modalities built exactly as a run
builds them (``Modality.judge_features`` of real data; the model's weights play no part in a judge).
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipe")
    parser.add_argument("--out", required=True)
    parser.add_argument("--set", action="append", default=[], help="recipe overrides, as modkit train --set")
    args = parser.parse_args(argv)

    import sklearn
    import torch

    import modkit
    from modkit.evaluation.judges import (attribute_fields, attribute_values, dataset_identity, feature_dims, fit_classifiers,
                                          plan_judges, to_dataset_judges)
    from modkit.runs.loading import load_run

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        overrides = ["train.epochs=1", "train.progress=false", "train.device=cpu", *args.set]
        modkit.train(args.recipe, overrides, out=run_dir, echo=lambda s: None)
        run = load_run(run_dir, torch.device("cpu"))
        model, source = run.model, run.dataset_source()
        train, test = run.view(run.train_rows()), run.setup.test
        attributes = attribute_fields(train.records, source, train.rows.tolist())
        judges = plan_judges(model, train, attributes, source)
        judges.kinds = {k: v for k, v in judges.kinds.items() if v == "classifier"}  # the others need no file
        train_attrs = attribute_values(train.records, attributes, train.rows.numpy())
        test_attrs = attribute_values(test.records, attributes, test.rows.numpy())
        fit_classifiers(model, judges, train, train_attrs, test, test_attrs, 256, len(train), seed=0)
        for score in judges.scores.values():
            score["scored_on"] = "the judge's own held-out real data (the recipe's test split)"
        try:
            commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            commit = "unknown"
        provenance = {"command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
                      "commit": commit, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                      "machine": f"{platform.node()} {platform.machine()} {platform.processor() or ''}".strip(),
                      "python": platform.python_version(), "scikit-learn": sklearn.__version__, "modkit": modkit.__version__,
                      "train_rows": len(train), "test_rows": len(test),
                      "judge": "StandardScaler (+ PCA to 128 above 256 features) then LogisticRegression(max_iter=500) per attribute"}
        # a shipped file is used wherever the package is installed: no folder of the machine that made it
        shipped_identity = {k: v for k, v in dataset_identity(run).items() if k != "root"}
        fixed = to_dataset_judges(judges, model, feature_dims(model, train, judges), shipped_identity, provenance)
        fixed.save(args.out)
    print(json.dumps({"file": args.out, "judges": {k: v["balanced_accuracy"] for k, v in fixed.scores.items()},
                      "provenance": provenance}, indent=1, default=lambda o: np.asarray(o).tolist()))


if __name__ == "__main__":
    main()
