"""Coherence: does generated data show the attribute it should? Cross-modal and joint (MMVAE, Shi et al. 2019 §4; MoPoE).

Cross-modal, as the papers and MultiVae's CoherenceEvaluator measure it: for every evaluated subset S and test
item, ``coherence_draws`` latents z ~ q(z | X_S) are drawn, every target decoded from each (its likelihood's
mean, e.g. pixel probabilities for a Bernoulli image, as ``modkit generate`` shows it), the attribute read off by
a judge (:mod:`modkit.evaluation.judges`) and scored by class-balanced accuracy against the item's true class.
The same score from the posterior mean z̄ instead of samples (what modkit reported before) is kept as
``coherence_mean``: it is the generator's best case, often far above what its samples show.
Joint: z ~ p(z), every modality decoded, the fraction of samples on which all judges of an attribute agree.
"""
from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import torch

from modkit.evaluation.judges import JudgeSet, flatten_lead, judges_for
from modkit.evaluation.likelihood import chunk_budget, output_elements, prior_of
from modkit.evaluation.metric import (BaseMetric, Block, Decoded, EvalContext, Figure, PosteriorBatch, Progress, Table, Text,
                                      fast_balanced_accuracy, grouped)


def draw_seed(*parts: Any) -> int:
    """A 63-bit seed from ``parts`` (the evaluation's seed, the subset's name, the batch, the draw): a subset's
    samples do not depend on which other subsets are evaluated, nor on any other metric's draws."""
    return zlib.crc32("/".join(map(str, parts)).encode()) | (zlib.crc32(repr(parts).encode()) << 31)


def posterior_draw(posterior: Any, labels: list[str], seed: int, batch_start: int, draw: int) -> torch.Tensor:
    """One z ~ q(z | X_S) for every subset and item: (S, B, D). Each subset draws from its own stream, seeded by
    ``seed``, its name, the batch and the draw, for Gaussian posteriors, mixtures of Gaussians (MoE, MoPoE) and
    posteriors stacked one distribution per subset (JNF's flows); any other posterior draws all subsets at once from
    one seeded stream."""
    mean = posterior.mean
    devices = [mean.device] if mean.device.type == "cuda" else []
    if hasattr(posterior, "std"):
        std = posterior.std
        z = torch.empty_like(mean)
        for s, label in enumerate(labels):
            g = torch.Generator(device=mean.device).manual_seed(draw_seed(seed, label, batch_start, draw))
            eps = torch.randn(mean.shape[1:], generator=g, device=mean.device, dtype=mean.dtype)
            z[s] = mean[s] + eps * std[s]
        return z
    rows = _mixture_rows(posterior, len(labels))
    if rows is not None:
        z = torch.empty_like(mean)
        for s, label in enumerate(labels):
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(draw_seed(seed, label, batch_start, draw))
                z[s] = rows(s).rsample()
        return z
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(draw_seed(seed, "all", batch_start, draw))
        return posterior.rsample()


def _mixture_rows(posterior: Any, subsets: int):
    """``s`` → the mixture of subset ``s`` alone, for a mixture of diagonal Gaussians whose batch starts with the
    subsets, or subset ``s``'s own distribution, for a posterior stacked one distribution per subset (JNF's); None
    for anything else."""
    from modkit.core.distributions import DiagLaplace, Stacked, WeightedMixture
    from modkit.core.gaussian import DiagGaussian

    if isinstance(posterior, Stacked) and len(posterior.parts) == subsets:
        return lambda s: posterior.parts[s]

    c = getattr(posterior, "components", None)
    if not isinstance(posterior, WeightedMixture) or not isinstance(c, (DiagGaussian, DiagLaplace)):
        return None
    a, b = (c.mu, c.logvar) if isinstance(c, DiagGaussian) else (c.loc, c.scale)
    if posterior.log_weights.dim() < 2 or posterior.log_weights.shape[1] != subsets or a.shape[1] != subsets:
        return None
    return lambda s: WeightedMixture(type(c)(a[:, s], b[:, s]), posterior.log_weights[:, s])


def _scores(parts: dict[tuple[int, str, str], list], labels: list[str]) -> dict[str, dict[str, float | None]]:
    cross: dict[str, dict[str, float | None]] = {}
    for (s, t, a), chunks in sorted(parts.items()):
        y = np.concatenate([p[0] for p in chunks])
        p = np.concatenate([p[1] for p in chunks])
        cross.setdefault(f"{labels[s]}->{t}", {})[a] = fast_balanced_accuracy(y, p)
    return cross


def by_inputs(cross: dict[str, dict[str, float | None]]) -> dict[str, dict[str, float]]:
    """MoPoE's table: per target, the mean coherence over the attributes and the given subsets of each size that
    leave the target out (``{target: {"1": …, "2": …}}``)."""
    values: dict[str, dict[int, list[float]]] = {}
    for key, per_attr in cross.items():
        given, target = key.split("->")
        subset = given.split("+")
        if target in subset:
            continue
        values.setdefault(target, {}).setdefault(len(subset), []).extend(grouped(per_attr).values())
    return {t: {str(k): float(np.mean(v)) for k, v in sorted(sizes.items()) if v} for t, sizes in values.items()}


class Coherence(BaseMetric):
    name = "coherence"
    group = "coherence"
    keys = ("judges", "judge_source", "coherence", "coherence_mean")
    needs = frozenset({"decoded"})
    description = ("Cross-modal coherence (MMVAE §4, MoPoE, MultiVae's CoherenceEvaluator): coherence_draws latents "
                   "z ~ q(z | X_S) per test item and subset, the target decoded from each (its likelihood's mean), its "
                   "attribute read by the dataset's fixed judge, class-balanced accuracy over the test items that have the "
                   "subset, the target and the attribute; chance 1/K for K classes, ceiling the judge's own accuracy on real "
                   "test data. coherence_mean: the same from the posterior mean z̄ (not the papers' measure). "
                   "Joint coherence: joint_samples draws z ~ p(z), every modality decoded, the fraction on which all judges "
                   "of an attribute agree.")

    def start(self, context: EvalContext) -> None:
        self.context = context
        self.judges: JudgeSet | None = None
        self.parts: dict[tuple[int, str, str], list] = {}  # from the posterior mean
        self.sampled: dict[tuple[int, str, str], list] = {}  # from z ~ q(z | X_S)
        self.draws = max(1, int(getattr(context.settings, "coherence_draws", 1)))
        if context.attributes:
            with context.clock("judges"):
                self.judges = judges_for(context)

    def _record(self, store: dict, batch: PosteriorBatch, target: str, s0: int, s1: int, predicted, valid) -> None:
        verdicts = self.judges.judge(self.context.model, target, flatten_lead(predicted, 2))
        ok_all = valid.cpu().numpy()
        for a, p in verdicts.items():
            y = batch.attributes[a]
            ok = ok_all & (y >= 0)[None, :]
            p = p.reshape(s1 - s0, -1)
            for s in range(s0, s1):
                store.setdefault((s, target, a), []).append((y[ok[s - s0]], p[s - s0][ok[s - s0]]))

    def update(self, batch: PosteriorBatch, decoded: Decoded | None) -> None:
        judges = self.judges
        if judges is None or not batch.aligned:
            return
        if decoded is not None:
            if judges.pairs(decoded.target):
                self._record(self.parts, batch, decoded.target, decoded.start, decoded.stop, decoded.predicted, decoded.valid)
            return
        if batch.posterior is None:
            return
        model, labels = self.context.model, self.context.labels
        S, B = batch.usable.shape
        for draw in range(self.draws):
            z = posterior_draw(batch.posterior, labels, self.context.settings.seed, int(batch.positions[0]), draw)
            for j, t in enumerate(model.names):
                if not judges.pairs(t):
                    continue
                modality = model.modalities[t]
                valid = batch.usable & batch.batch.present[:, j].unsqueeze(0)
                size = max(1, chunk_budget(model.device) // max(1, output_elements(model, [t]) * B))
                for s0 in range(0, S, size):
                    s1 = min(S, s0 + size)
                    predicted = modality.predict(modality.decode(z[s0:s1]))
                    self._record(self.sampled, batch, t, s0, s1, predicted, valid[s0:s1])

    def compute(self) -> dict[str, Any]:
        labels, settings = self.context.labels, self.context.settings
        cross = _scores(self.sampled, labels)
        with self.context.clock("joint coherence"):
            has_prior = prior_of(self.context.model) is not None
            joint = joint_coherence(self.context.model, self.judges, settings) if self.judges and has_prior else {}
        out: dict[str, Any] = {} if self.judges is None else {"judges": self.judges.scores, "judge_source": self.judges.origin}
        items = {f"{labels[s]}->{t}": int(sum(len(p[0]) for p in chunks)) for (s, t, a), chunks in self.sampled.items()}
        out["coherence"] = {"method": "sampled: z ~ q(z | X_S), target decoded (likelihood mean), judged",
                            "cross": cross, "by_inputs": by_inputs(cross), "draws": self.draws, "items": items,
                            "joint": joint, "joint_samples": settings.joint_samples if joint else 0}
        mean = _scores(self.parts, labels)
        out["coherence_mean"] = {"method": "posterior mean: z = E[z | X_S], target decoded, judged", "cross": mean,
                                 "by_inputs": by_inputs(mean)}
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
        for key, per_attr in result.get("coherence_mean", {}).get("cross", {}).items():
            given, target = key.split("->")
            if "+" not in given and given != target:
                for a, v in grouped(per_attr).items():
                    out[f"coherence_mean/{given}->{target}/{a}"] = v
        if cross:
            for a, v in grouped(result.get("chance", {})).items():
                out[f"chance/{a}"] = v
            # the ceiling of every coherence scored by a judge: its own accuracy on real data
            per_target: dict[str, dict[str, float | None]] = {}
            for pair, judge in result.get("judges", {}).items():
                modality, attr = pair.split("/", 1)
                if judge.get("kind") != "self":
                    per_target.setdefault(modality, {})[attr] = judge.get("balanced_accuracy")
            for modality, per_attr in per_target.items():
                for a, v in grouped(per_attr).items():
                    out[f"ceiling/{modality}/{a}"] = v
        return out

    def report(self, result: dict) -> list[Block]:
        coherence = result.get("coherence")
        if not coherence:
            return []
        sampled = "method" in coherence  # older eval.json files scored the posterior mean under this name
        draws = coherence.get("draws", 1)
        blocks: list[Block] = [Text(["## Coherence", "",
                                     (f"Sampled cross-modal coherence (MMVAE §4, MoPoE; {draws} draw(s) z ~ q(z | X_S) per test item "
                                      "and subset, the target decoded and its attribute read by the dataset's fixed judge): "
                                      if sampled else "Posterior-mean coherence (an eval.json from before sampling was the default): ")
                                     + "class-balanced accuracy (see the judges' own accuracy on real data below: the ceiling). "
                                       "The last row is chance: 1/K for an attribute with K classes, what any constant or random "
                                       "generator scores.", ""])]
        blocks += _cross_blocks(coherence.get("cross", {}), result, "coherence.png", "sampled cross-modal coherence")
        if coherence.get("by_inputs"):
            sizes = sorted({k for v in coherence["by_inputs"].values() for k in v}, key=int)
            blocks.append(Text(["Coherence by number of given modalities (MoPoE's tables: per target, the mean over the given "
                                "subsets of that size that leave the target out):", ""]))
            blocks.append(Table(["target", *[f"{k} given" for k in sizes]],
                                [[t, *[v.get(k) for k in sizes]] for t, v in coherence["by_inputs"].items()]))
        if coherence.get("joint"):
            n = coherence.get("joint_samples")
            blocks.append(Text([f"Joint coherence (z ~ p(z){f', {n} samples' if n else ''}; all judges of an attribute agree):", ""]))
            blocks.append(Table(["attribute", "agreement"], [[a, v] for a, v in grouped(coherence["joint"]).items()]))
        mean = result.get("coherence_mean", {}).get("cross")
        if mean:
            blocks.append(Text(["Posterior-mean coherence (`coherence_mean`: the target decoded from z̄ = E[z | X_S], not sampled; "
                                "the generator's best case, not the papers' measure):", ""]))
            blocks += [b for b in _cross_blocks(mean, result, "coherence_mean.png", "posterior-mean coherence") if isinstance(b, Table)]
        if result.get("judges"):
            source = result.get("judge_source", {})
            blocks.append(Text([f"Judges: classifiers from {source.get('classifiers', 'this run')}"
                                + (f" (`{source['file']}`)" if source.get("file") else "") + ".", ""]))
            blocks.append(Table(["judge (modality/attribute)", "kind", "balanced accuracy on real data (ceiling)", "scored on"],
                                [[k, v["kind"], v["balanced_accuracy"], v.get("scored_on", "")] for k, v in result["judges"].items()]))
        return blocks


def _cross_blocks(cross_raw: dict, result: dict, file: str, title: str) -> list[Block]:
    cross = {key: grouped(per_attr) for key, per_attr in cross_raw.items()}  # field[*]: mean over entries
    sources = list(dict.fromkeys(k.split("->")[0] for k in cross))
    columns = list(dict.fromkeys(f"{k.split('->')[1]}/{a}" for k, v in cross.items() for a in v))
    if not (sources and columns):
        return []
    values = np.full((len(sources), len(columns)), np.nan)
    for key, per_attr in cross.items():
        s, t = key.split("->")
        for a, v in per_attr.items():
            if v is not None:
                values[sources.index(s), columns.index(f"{t}/{a}")] = v
    chance = grouped(result.get("chance", {}))
    return [Figure("heatmap", file, title, {"rows": sources, "columns": columns, "values": values,
                                            "title": f"{title} (rows: given subset; columns: target/attribute)"}),
            Table(["given \\ target/attribute", *columns],
                  [[s, *values[i]] for i, s in enumerate(sources)] + [["*chance*", *[chance.get(c.split("/", 1)[1]) for c in columns]]])]


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
