"""Coherence: does generated data show the attribute it should? Cross-modal and joint (MMVAE, Shi et al. 2019 §4; MoPoE).

Cross-modal: every target decoded from every evaluated subset's posterior mean, its attribute read off by
a judge (:mod:`modkit.evaluation.judges`), scored by class-balanced accuracy against the test item's true
class. Joint: z ~ p(z), every modality decoded, the fraction of samples on which all judges of an
attribute agree.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from modkit.evaluation.judges import JUDGES_FILE, JudgeSet, attribute_values, fit_classifiers, flatten_lead, plan_judges
from modkit.evaluation.likelihood import prior_of
from modkit.evaluation.metric import (BaseMetric, Block, Decoded, EvalContext, Figure, PosteriorBatch, Progress, Table, Text,
                                      fast_balanced_accuracy, grouped)


class Coherence(BaseMetric):
    name = "coherence"
    group = "coherence"
    keys = ("judges", "coherence")
    needs = frozenset({"decoded"})
    description = ("Cross-modal coherence (MMVAE §4, MoPoE): each target decoded from each subset's posterior mean, its "
                   "attribute read by a judge, class-balanced accuracy over the test items that have the subset, the "
                   "target and the attribute; chance 1/K for K classes, ceiling the judge's own accuracy on real test data. "
                   "Joint coherence: joint_samples draws z ~ p(z), every modality decoded, the fraction on which all judges "
                   "of an attribute agree.")

    def start(self, context: EvalContext) -> None:
        self.context = context
        self.judges: JudgeSet | None = None
        self.parts: dict[tuple[int, str, str], list] = {}
        if context.attributes:
            with context.clock("judges"):
                self.judges = train_judges(context)

    def update(self, batch: PosteriorBatch, decoded: Decoded | None) -> None:
        judges = self.judges
        if decoded is None or judges is None or not batch.aligned or not judges.pairs(decoded.target):
            return
        s0, s1, t = decoded.start, decoded.stop, decoded.target
        verdicts = judges.judge(self.context.model, t, flatten_lead(decoded.predicted, 2))
        ok_all = decoded.valid.cpu().numpy()
        for a, p in verdicts.items():
            y = batch.attributes[a]
            ok = ok_all & (y >= 0)[None, :]
            p = p.reshape(s1 - s0, -1)
            for s in range(s0, s1):
                self.parts.setdefault((s, t, a), []).append((y[ok[s - s0]], p[s - s0][ok[s - s0]]))

    def compute(self) -> dict[str, Any]:
        labels = self.context.labels
        cross: dict[str, dict[str, float | None]] = {}
        for (s, t, a), parts in sorted(self.parts.items()):
            y = np.concatenate([p[0] for p in parts])
            p = np.concatenate([p[1] for p in parts])
            cross.setdefault(f"{labels[s]}->{t}", {})[a] = fast_balanced_accuracy(y, p)
        with self.context.clock("joint coherence"):
            has_prior = prior_of(self.context.model) is not None
            joint = joint_coherence(self.context.model, self.judges, self.context.settings) if self.judges and has_prior else {}
        out: dict[str, Any] = {} if self.judges is None else {"judges": self.judges.scores}
        out["coherence"] = {"cross": cross, "joint": joint}
        return out

    def summary(self, result: dict, names: list[str]) -> dict[str, float]:
        out: dict[str, float] = {}
        cross = result.get("coherence", {}).get("cross", {})
        shown: dict[str, set[str]] = {}  # modality → the attributes its own data are (its ``self`` judges)
        for pair, judge in result.get("judges", {}).items():
            if judge.get("kind") == "self":
                modality, attr = pair.split("/", 1)
                shown.setdefault(modality, set()).add(attr)
        by_size: dict[int, list[float]] = {}
        for key, per_attr in cross.items():
            given, target = key.split("->")
            subset = given.split("+")
            if target in subset:
                continue
            for a, v in grouped(per_attr).items():
                by_size.setdefault(len(subset), []).append(v)
                if len(subset) == 1:
                    out[f"coherence/{given}->{target}/{a}"] = v
            # conditional generation from several modalities: does the target show what they said (MVAE-19's
            # attribute-conditioned images)? The mean over the attributes the given modalities themselves carry
            said = [per_attr[a] for m in subset for a in sorted(shown.get(m, ())) if per_attr.get(a) is not None]
            if len(subset) > 1 and said:
                out[f"coherence/{given}->{target}/given"] = float(np.mean(said))
        for k, values in sorted(by_size.items()):
            out[f"coherence/given_{k}"] = float(np.mean(values))
        for a, v in grouped(result.get("coherence", {}).get("joint", {})).items():
            out[f"coherence/joint/{a}"] = v
        if cross:
            for a, v in grouped(result.get("chance", {})).items():
                out[f"chance/{a}"] = v
        return out

    def report(self, result: dict) -> list[Block]:
        coherence = result.get("coherence")
        if not coherence:
            return []
        blocks: list[Block] = [Text(["## Coherence", "",
                                     "Class-balanced accuracy of the attribute read off the generated target by a judge "
                                     "(see the judges' own accuracy on real test data below: the ceiling). The last row is chance: 1/K for "
                                     "an attribute with K classes, what any constant or random generator scores.", ""])]
        cross = {key: grouped(per_attr) for key, per_attr in coherence.get("cross", {}).items()}  # field[*]: mean over entries
        sources = list(dict.fromkeys(k.split("->")[0] for k in cross))
        columns = list(dict.fromkeys(f"{k.split('->')[1]}/{a}" for k, v in cross.items() for a in v))
        if sources and columns:
            values = np.full((len(sources), len(columns)), np.nan)
            for key, per_attr in cross.items():
                s, t = key.split("->")
                for a, v in per_attr.items():
                    if v is not None:
                        values[sources.index(s), columns.index(f"{t}/{a}")] = v
            blocks.append(Figure("heatmap", "coherence.png", "coherence table",
                                 {"rows": sources, "columns": columns, "values": values,
                                  "title": "cross-modal coherence (rows: given subset; columns: target/attribute)"}))
            chance = grouped(result.get("chance", {}))
            blocks.append(Table(["given \\ target/attribute", *columns],
                                [[s, *values[i]] for i, s in enumerate(sources)] + [["*chance*", *[chance.get(c.split("/", 1)[1]) for c in columns]]]))
        if coherence.get("joint"):
            blocks.append(Text(["Joint coherence (z ~ p(z); all judges of an attribute agree):", ""]))
            blocks.append(Table(["attribute", "agreement"], [[a, v] for a, v in grouped(coherence["joint"]).items()]))
        if result.get("judges"):
            blocks.append(Table(["judge (modality/attribute)", "kind", "balanced accuracy on real test data"],
                                [[k, v["kind"], v["balanced_accuracy"]] for k, v in result["judges"].items()]))
        return blocks


def train_judges(context: EvalContext) -> JudgeSet:
    """The run's saved judges when they fit this evaluation (same attributes and fields), else judges fitted
    now on training rows and saved beside the checkpoint."""
    run, test, train, settings = context.run, context.test, context.train, context.settings
    path = run.run_dir / JUDGES_FILE
    source = run.dataset_source()
    judges = None if settings.retrain_judges or not path.exists() else JudgeSet.load(path, source)
    if judges is not None and (judges.attributes != context.attributes or judges.fields != dict(test.fields)):
        judges = None
    if judges is None:
        context.echo(f"training coherence judges on {min(len(train), settings.judge_rows)} training rows …")
        judges = plan_judges(run.model, train, context.attributes, source)
        train_attrs = attribute_values(train.records, context.attributes, train.rows.numpy())
        fit_classifiers(run.model, judges, train, train_attrs, test, context.test_attributes, settings.batch_size,
                        settings.judge_rows, settings.seed)
        judges.save(path)
    return judges


def joint_coherence(model, judges: JudgeSet, settings, draw=None) -> dict[str, float | None]:
    """Draw z ~ p(z), decode every modality, and count how often all judges of an attribute agree.

    ``draw(n)`` → (n, D) latents replaces p(z): a fitted latent sampler's (docs/samplers.md)."""
    import torch

    if draw is None:
        draw = prior_of(model).rsample
    verdicts: dict[str, list[tuple[str, np.ndarray]]] = {}
    done = 0
    bar = Progress(settings.joint_samples, "joint coherence")
    with torch.no_grad():
        while done < settings.joint_samples:
            n = min(settings.batch_size, settings.joint_samples - done)
            z = draw(n)
            for t in model.names:
                if not judges.pairs(t):
                    continue
                pred = model.modalities[t].predict(model.modalities[t].decode(z))
                for a, p in judges.judge(model, t, pred).items():
                    verdicts.setdefault(a, []).append((t, p))
            done += n
            bar(n)
    bar.close()
    out: dict[str, float | None] = {}
    for a, parts in verdicts.items():
        by_modality: dict[str, list[np.ndarray]] = {}
        for t, p in parts:
            by_modality.setdefault(t, []).append(p)
        if len(by_modality) < 2:
            continue
        stacked = np.stack([np.concatenate(v) for v in by_modality.values()])  # (M, n)
        out[a] = float((stacked == stacked[0:1]).all(0).mean())
    return out


METRIC = Coherence
