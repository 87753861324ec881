"""``modkit eval``: every metric for a finished run, written to ``eval.json``.

Each metric is a :class:`~modkit.evaluation.metric.Metric`, one module per family under
``modkit/evaluation/metrics/`` (found there without a list to edit) or a class a plugin registers with
``registry.add_metric``. ``--metrics`` picks metrics by name or group; by default every one runs:

* ``likelihood``: importance-sampled log p(x_i), log p(x_i, x_j), log p(x_i | x_j) (MVAE §5);
* ``coherence``: cross-modal from every subset to every target (sampled z ~ q(z | X_S), and from the posterior
  mean as ``coherence_mean``), and joint from prior samples, judged by classifiers fixed per dataset;
* ``fid``: Fréchet distance of generated to real images, per given subset and from the prior;
* ``clustering``: k-means of the embeddings against the classes (adjusted Rand, NMI);
* ``ssim``: structural similarity of reconstructed images;
* ``probe``: linear-probe balanced accuracy on posterior means of every subset;
* ``relatedness``: W2 between unimodal posteriors, paired vs unpaired, class × class (MEME §4.2);
* ``reconstruction``: −log p(x_t | z̄) and MSE from every subset's posterior mean;
* ``active_units``: latent dimensions whose posterior mean varies over the test set (Burda et al. 2016);
* ``task``: task-metric functions plugins register with ``registry.add_metric`` (mIoU, BLEU, …).

One pass over the test split (:mod:`modkit.evaluation.posterior_pass`) encodes each batch once and
decodes every target from the posterior means of the chosen subsets; every metric is fed from it.

Cost grows with what is asked: by default the subsets conditioned on are every single modality, every
leave-one-out set and all together (2N + 1 of the 2^N − 1; all of them while that is no more), and the
likelihoods are every log p(x_i) and the full joint (N + 1 estimates) on at most ``iw_items`` test
items. ``subsets="all"`` and ``likelihoods="all"`` ask for the 2^N − 1 subsets and the N² pairs and
conditionals. Each stage shows a progress bar on a terminal, and an estimate of the decoding work is
printed before the first one starts.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
from torch import Tensor

from modkit.storage import files as rundir
from modkit.errors import ModkitError
from modkit.evaluation.judges import attribute_fields, attribute_values
from modkit.evaluation.likelihood import CHUNK_ELEMENTS, SCOPES, no_density_reason, no_prior_reason, prior_of, quantities
from modkit.evaluation.metric import (EvalContext, EvalSettings, Metric, Progress, Stages, cap, check_metric_class,
                                      fast_balanced_accuracy, grouped)
from modkit.evaluation.metrics import SUMMARY_ORDER, builtin_metrics, ordered
from modkit.evaluation.metrics.task import TaskMetrics
from modkit.evaluation.posterior_pass import posterior_pass
from modkit.core.subsets import all_subsets, subset_names

if TYPE_CHECKING:
    from modkit.runs.loading import LoadedRun

EVAL_JSON = "eval.json"
#: the groups of the built-in metrics (``--metrics`` names these, or a registered metric)
GROUPS = tuple(dict.fromkeys(cls.group for cls in builtin_metrics()))
_cap = cap  # the old private name

__all__ = ["EVAL_JSON", "GROUPS", "EvalSettings", "Progress", "evaluate_run", "eval_subsets", "estimate", "summarize", "grouped",
           "write_eval", "registered_metrics", "metric_classes", "wanted_groups", "fast_balanced_accuracy"]


def registered_metrics(run: "LoadedRun") -> dict[str, Callable]:
    """The run's registered task-metric functions (``registry.add_metric(name, fn)``), by name."""
    registry = run.plugins.registry
    return {name: registry.get("metric", name) for name in registry.names("metric")
            if check_metric_class(registry.get("metric", name)) is not None}


def metric_classes(run: "LoadedRun | None" = None) -> list[type]:
    """Every :class:`~modkit.evaluation.metric.Metric` class: the built-ins, then the ones plugins registered."""
    extra = []
    if run is not None:
        registry = run.plugins.registry
        extra = [registry.get("metric", n) for n in registry.names("metric") if check_metric_class(registry.get("metric", n)) is None]
    return [*builtin_metrics(), *extra]


def wanted_groups(settings: EvalSettings, metric_names: list[str], classes: list[type] | None = None) -> tuple[set[str], list[str]]:
    """The metric classes' names chosen by ``settings.metrics`` (every one when None), and the task-metric
    functions of ``metric_names`` chosen (by name, or all of them by the group ``task``)."""
    classes = list(builtin_metrics()) if classes is None else classes
    groups = tuple(dict.fromkeys(c.group for c in classes))
    if not settings.metrics:
        return {c.name for c in classes}, list(metric_names)
    known = {*groups, *(c.name for c in classes), *metric_names}
    unknown = [m for m in settings.metrics if m not in known]
    if unknown:
        raise ModkitError(f"unknown metric '{unknown[0]}' (groups: {', '.join(groups)}; registered: {', '.join(metric_names) or 'none'})")
    chosen = {c.name for c in classes if c.name in settings.metrics or c.group in settings.metrics}
    tasks = [m for m in metric_names if m in settings.metrics or TaskMetrics.group in settings.metrics]
    if tasks:
        chosen.add(TaskMetrics.name)
    return chosen, tasks


def eval_subsets(names: list[str], spec: str = "default") -> Tensor:
    """The subsets evaluation conditions on, as rows of :func:`all_subsets` (same order, whatever ``spec``):
    ``all``; ``default``: every single modality, every leave-one-out set and all together (all subsets
    while there are no more than 2N + 1 of them); or comma-separated ``a+b`` names."""
    n = len(names)
    every = all_subsets(n)
    if spec == "all":
        return every
    size = every.sum(1)
    if spec == "default":
        return every if len(every) <= 2 * n + 1 else every[(size == 1) | (size >= n - 1)]
    codes = set()
    for item in spec.split(","):
        parts = [p.strip() for p in item.split("+")]
        unknown = [p for p in parts if p not in names]
        if unknown:
            raise ModkitError(f"--subsets: '{unknown[0]}' in '{item.strip()}' is not a modality of this run "
                              f"(modalities: {', '.join(names)}; or default, all)")
        codes.add(sum(1 << names.index(p) for p in set(parts)))
    return every[[code - 1 for code in sorted(codes)]]


def _decode_seconds(model, view, rows: int = 64) -> dict[str, float]:
    """Seconds to decode and score one latent, per modality, timed once on a test batch: the estimate's unit."""
    if len(view) == 0:
        return {name: 0.0 for name in model.names}
    batch = view.__getitems__(list(range(min(rows, len(view))))).to(model.device)
    z = torch.zeros(len(batch), model.latent_dim, device=model.device)  # no draw: the evaluation's random stream is untouched
    out = {}
    for name, modality in model.modalities.items():
        modality.log_likelihood(modality.decode(z), batch.data[name])  # warm-up (first-call allocations)
        started = time.perf_counter()
        modality.log_likelihood(modality.decode(z), batch.data[name])
        out[name] = (time.perf_counter() - started) / len(batch)
    return out


def estimate(model, test, iw, masks: Tensor, groups: set[str], settings: EvalSettings) -> str:
    """What the evaluation will do and about how long its decoding takes (rows decoded × a timed decode)."""
    names = model.names
    per_row = _decode_seconds(model, test)
    every = sum(per_row.values())
    passes = (1 if groups & {"coherence", "reconstruction", "task"} else 0) + (settings.coherence_draws if "coherence" in groups else 0)
    passes += 1 if "fid" in groups else 0  # one sampled draw per subset for the generated images
    stages = {"posterior pass": len(masks) * len(test) * every * passes}
    if "coherence" in groups:
        stages["joint coherence"] = settings.joint_samples * every
    todo = quantities(names, settings.likelihoods) if "likelihood" in groups and no_density_reason(model) is None else []
    if todo:
        rows = sum(settings.iw_samples * sum(per_row[t] for t in dict.fromkeys([*targets, *given])) for _, targets, given in todo)
        rows += sum(settings.prior_samples * per_row[g] for g in {g for _, _, given in todo for g in given})
        stages["likelihoods"] = len(iw) * rows
    total = 2 ** len(names) - 1
    subsets = f"{len(masks)} of {total} subsets" + (" (--subsets all for every one)" if len(masks) < total else "")
    likelihoods = (f"; {len(todo)} likelihood estimates on {len(iw)} items at K={settings.iw_samples}"
                   + (" (--likelihoods all for the pairs and conditionals)" if settings.likelihoods == "default" and len(names) > 1 else "")
                   if todo else "")
    parts = ", ".join(f"{k} {v:.0f} s" for k, v in stages.items())
    return (f"evaluating {len(test)} test items, {subsets}{likelihoods}; "
            f"estimated decoding ≈ {sum(stages.values()):.0f} s ({parts}), plus the judges and linear probes")


@torch.no_grad()
def evaluate_run(run: "LoadedRun", settings: EvalSettings | None = None, echo: Callable[[str], None] = lambda s: None) -> dict:
    """Build the pass, feed it the metrics ``settings.metrics`` chooses, gather what they compute (eval.json)."""
    settings = settings or EvalSettings()
    model = run.model.eval()
    names = model.names
    task_fns = registered_metrics(run)
    classes = metric_classes(run)
    chosen, chosen_tasks = wanted_groups(settings, list(task_fns), classes)
    metrics: list[Metric] = [cls() for cls in classes if cls.name in chosen]
    torch.manual_seed(settings.seed)
    started = time.perf_counter()

    test_full = run.setup.test
    test = run.view(test_full.rows.numpy()[cap(len(test_full), settings.max_items, settings.seed)])
    records = test.records
    source = run.dataset_source()
    train = run.view(run.train_rows())
    attrs = attribute_fields(records, source, train.rows.tolist())
    test_attrs = attribute_values(records, attrs, test.rows.numpy())
    result: dict[str, Any] = {
        "run": str(run.run_dir), "epoch": run.checkpoint_epoch, "device": str(run.device), "test_items": len(test),
        "modalities": names, "attributes": attrs,
        "settings": dict(settings.__dict__),
    }

    if settings.likelihoods not in SCOPES:
        raise ModkitError(f"--likelihoods must be one of {', '.join(SCOPES)} (got '{settings.likelihoods}')")
    masks = eval_subsets(names, settings.subsets).to(model.device)
    labels = subset_names(masks.cpu(), names)
    iw = run.view(test.rows.numpy()[cap(len(test), settings.iw_items, settings.seed)])
    groups = {m.group for m in metrics}
    echo(estimate(model, test, iw, masks, groups, settings))
    stages: dict[str, float] = {}
    context = EvalContext(run=run, model=model, settings=settings, names=names, masks=masks, labels=labels, test=test, train=train,
                          iw=iw, attributes=attrs, test_attributes=test_attrs, echo=echo, clock=Stages(stages),
                          task_metrics={m: task_fns[m] for m in chosen_tasks})
    for metric in metrics:
        metric.start(context)
    with context.clock("posterior pass"):
        posterior_pass(context, metrics, CHUNK_ELEMENTS)

    # chance of a class-balanced accuracy: 1/K for an attribute with K classes, whatever predicts it
    result["chance"] = {a: 1.0 / max(1, len(np.unique(v[v >= 0]))) for a, v in test_attrs.items()}
    if prior_of(model) is None:
        result["not_applicable"] = {k: no_prior_reason(model) for k in ("coherence.joint", "likelihood") if k.split(".")[0] in groups}
    elif no_density_reason(model) is not None and "likelihood" in groups:
        result["not_applicable"] = {"likelihood": no_density_reason(model)}
    for metric in metrics:
        values = metric.compute()
        stray = sorted(set(values) - set(metric.keys))
        if stray:
            raise ModkitError(f"metric '{metric.name}' wrote {', '.join(stray)}, which it does not declare in keys {metric.keys}")
        result.update(values)
    result["stage_seconds"] = stages
    result["summary"] = summarize(result, names, classes)
    result["seconds"] = round(time.perf_counter() - started, 2)
    return result


def summarize(result: dict, names: list[str], classes: list[type] | None = None) -> dict[str, float]:
    """Headline numbers (what ``modkit sweep`` plots by default): each metric's, in the built-ins' order, then the others'."""
    out: dict[str, float] = {}
    for cls in ordered(list(builtin_metrics()) if classes is None else classes, SUMMARY_ORDER):
        out.update(cls().summary(result, names))
    return out


def write_eval(run: "LoadedRun", result: dict) -> None:
    rundir.write_json(run.run_dir / EVAL_JSON, result)
