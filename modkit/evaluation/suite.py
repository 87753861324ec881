"""``modkit eval``: every metric for a finished run, written to ``eval.json``.

Groups (``--metrics`` picks some; registered metric plugins are picked by name):

* ``likelihood``: importance-sampled log p(x_i), log p(x_i, x_j), log p(x_i | x_j) (MVAE §5);
* ``coherence``: cross-modal from every subset to every target, and joint from prior samples;
* ``probe``: linear-probe balanced accuracy on posterior means of every subset;
* ``relatedness``: W2 between unimodal posteriors, paired vs unpaired, class × class (MEME §4.2);
* ``reconstruction``: −log p(x_t | z̄) and MSE from every subset's posterior mean;
* ``task``: metrics plugins register with ``registry.add_metric`` (mIoU, BLEU, …).

One pass over the test split encodes each batch once and decodes every target from the posterior
means of the chosen subsets at once; the other groups reuse what it collected.

Cost grows with what is asked (issue 13): by default the subsets conditioned on are every single
modality, every leave-one-out set and all together (2N + 1 of the 2^N − 1; all of them while that is
no more), and the likelihoods are every log p(x_i) and the full joint (N + 1 estimates) on at most
``iw_items`` test items. ``subsets="all"`` and ``likelihoods="all"`` ask for the 2^N − 1 subsets and the
N² pairs and conditionals. Each stage shows a progress bar on a terminal, and an estimate of the
decoding work is printed before the first one starts.
"""
from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import Tensor

from modkit.storage import files as rundir
from modkit.errors import ModkitError
from modkit.evaluation.judges import (JUDGES_FILE, JudgeSet, attribute_fields, attribute_values, fit_classifiers,
                                      flatten_lead, iterate, plan_judges, select, split_attribute)
from modkit.evaluation.likelihood import CHUNK_ELEMENTS, SCOPES, chunk_budget, likelihood_suite, no_prior_reason, prior_of, quantities
from modkit.evaluation.likelihood import output_elements
from modkit.evaluation.representations import linear_probe, relatedness
from modkit.runs.loading import LoadedRun
from modkit.core.subsets import all_subsets, subset_names

EVAL_JSON = "eval.json"
GROUPS = ("likelihood", "coherence", "probe", "relatedness", "reconstruction", "task")


@dataclass
class EvalSettings:
    metrics: list[str] | None = None  # None: every group and every registered metric
    iw_samples: int = 1000  # K importance samples (the paper's 1000)
    prior_samples: int = 5000  # prior samples for log p(x_given) in conditionals (the paper's 5000)
    denominator: str = "prior"  # or "posterior"
    iw_items: int | None = 32  # cap test items for the (costly) likelihoods (None: every test item)
    joint_samples: int = 1000  # prior samples for joint coherence
    max_items: int | None = None  # cap test items for everything else
    judge_rows: int = 5000  # training rows for the coherence classifiers
    probe_rows: int = 5000  # training rows for the linear probes
    batch_size: int = 256
    retrain_judges: bool = False
    seed: int = 0
    subsets: str = "default"  # conditioning subsets: default (2N + 1), all (2^N − 1) or "a+b,c"
    likelihoods: str = "default"  # default: log p(x_i) and the joint; all: also the pairs and N² conditionals


class Progress:
    """tqdm on a terminal, silence elsewhere (logs and tests)."""

    def __init__(self, total: int, desc: str):
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, leave=False)

    def __call__(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def registered_metrics(run: LoadedRun) -> dict[str, Callable]:
    registry = run.plugins.registry
    return {name: registry.get("metric", name) for name in registry.names("metric")}


def wanted_groups(settings: EvalSettings, metric_names: list[str]) -> tuple[set[str], list[str]]:
    if not settings.metrics:
        return set(GROUPS), list(metric_names)
    unknown = [m for m in settings.metrics if m not in GROUPS and m not in metric_names]
    if unknown:
        raise ModkitError(f"unknown metric '{unknown[0]}' (groups: {', '.join(GROUPS)}; registered: {', '.join(metric_names) or 'none'})")
    groups = {m for m in settings.metrics if m in GROUPS}
    chosen = [m for m in metric_names if m in settings.metrics or "task" in groups]
    if chosen:
        groups.add("task")
    return groups, chosen


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
    stages = {"posterior pass": len(masks) * len(test) * every if groups & {"coherence", "reconstruction", "task"} else 0.0}
    if "coherence" in groups:
        stages["joint coherence"] = settings.joint_samples * every
    todo = quantities(names, settings.likelihoods) if "likelihood" in groups else []
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


def fast_balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float | None:
    """sklearn's ``balanced_accuracy_score`` (the mean recall over the classes in ``y``) without its per-call
    input validation, which cost about 3 ms a call: one call per subset × target × attribute is thousands
    of calls (11 of 23 s of a 200-item shapes posterior pass). None without samples."""
    if len(y) == 0:
        return None
    classes, inverse = np.unique(y, return_inverse=True)
    hits = np.bincount(inverse, weights=(np.asarray(pred) == y).astype(np.float64), minlength=len(classes))
    return float(np.mean(hits / np.bincount(inverse, minlength=len(classes))))


def _cap(n: int, cap: int | None, seed: int) -> np.ndarray:
    if cap is None or n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).permutation(n)[:cap])


@torch.no_grad()
def evaluate_run(run: LoadedRun, settings: EvalSettings | None = None, echo: Callable[[str], None] = lambda s: None) -> dict:
    settings = settings or EvalSettings()
    model = run.model.eval()
    names = model.names
    metric_fns = registered_metrics(run)
    groups, chosen_metrics = wanted_groups(settings, list(metric_fns))
    torch.manual_seed(settings.seed)
    started = time.perf_counter()

    test_full = run.setup.test
    test = run.view(test_full.rows.numpy()[_cap(len(test_full), settings.max_items, settings.seed)])
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
    iw = run.view(test.rows.numpy()[_cap(len(test), settings.iw_items, settings.seed)])
    echo(estimate(model, test, iw, masks, groups, settings))
    stages: dict[str, float] = {}
    clock = _Stages(stages)

    judges = None
    if "coherence" in groups and attrs:
        with clock("judges"):
            judges = _judges(run, test, train, attrs, test_attrs, settings, echo)
        result["judges"] = judges.scores

    with clock("posterior pass"):
        pass_out = _posterior_pass(run, test, masks, labels, judges, test_attrs, groups, metric_fns, chosen_metrics, settings)

    # chance of a class-balanced accuracy: 1/K for an attribute with K classes, whatever predicts it
    result["chance"] = {a: 1.0 / max(1, len(np.unique(v[v >= 0]))) for a, v in test_attrs.items()}
    has_prior = prior_of(model) is not None
    if not has_prior:
        result["not_applicable"] = {k: no_prior_reason(model) for k in ("coherence.joint", "likelihood") if k.split(".")[0] in groups}
    if "coherence" in groups:
        with clock("joint coherence"):
            joint = _joint_coherence(model, judges, settings) if judges and has_prior else {}
        result["coherence"] = {"cross": pass_out["coherence"], "joint": joint}
    if "reconstruction" in groups:
        result["reconstruction"] = pass_out["reconstruction"]
    if "task" in groups:
        result["task"] = pass_out["task"]
    if "probe" in groups and attrs:
        echo("linear probes …")
        with clock("probes"):
            result["probe"] = _probes(run, train, attrs, masks, labels, pass_out["latents"], test_attrs, settings)
    if "relatedness" in groups and len(names) > 1:
        with clock("relatedness"):
            result["relatedness"] = _relatedness(names, pass_out["latents"], test_attrs, settings)
    if "likelihood" in groups and has_prior:
        echo(f"importance-sampled log-likelihoods (K={settings.iw_samples}, {settings.prior_samples} prior samples) …")
        bar = Progress(len(iw), "log-likelihoods")
        batches = (b for _, b in iterate(iw, max(1, settings.batch_size // 4)))
        with clock("likelihoods"):
            result["likelihood"] = likelihood_suite(model, batches, settings.iw_samples, settings.prior_samples,
                                                    settings.denominator, progress=bar, scope=settings.likelihoods)
        bar.close()
        for cell in result["likelihood"].values():
            if cell.get("warning"):
                echo(f"warning: {cell['warning']}")
    result["stage_seconds"] = stages
    result["summary"] = summarize(result, names)
    result["seconds"] = round(time.perf_counter() - started, 2)
    return result


class _Stages:
    """``with clock("name"):`` adds the block's wall seconds to ``stages["name"]`` (eval.json's stage_seconds)."""

    def __init__(self, stages: dict[str, float]):
        self.stages = stages

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = round(self.stages.get(name, 0.0) + time.perf_counter() - started, 2)


def _judges(run, test, train, attrs, test_attrs, settings, echo) -> JudgeSet:
    path = run.run_dir / JUDGES_FILE
    source = run.dataset_source()
    judges = None if settings.retrain_judges or not path.exists() else JudgeSet.load(path, source)
    if judges is not None and (judges.attributes != attrs or judges.fields != dict(test.fields)):
        judges = None
    if judges is None:
        echo(f"training coherence judges on {min(len(train), settings.judge_rows)} training rows …")
        judges = plan_judges(run.model, train, attrs, source)
        train_attrs = attribute_values(train.records, attrs, train.rows.numpy())
        fit_classifiers(run.model, judges, train, train_attrs, test, test_attrs, settings.batch_size, settings.judge_rows, settings.seed)
        judges.save(path)
    return judges


def _posterior_pass(run, test, masks, labels, judges, test_attrs, groups, metric_fns, chosen_metrics, settings) -> dict:
    """Encode each test batch once; decode every target from every subset's posterior mean."""
    model = run.model
    names = model.names
    S = len(masks)
    latents = {"mu": [], "single_mu": [], "single_std": [], "present": [], "positions": []}
    # rows of the one-modality subsets among the chosen ones; None: fuse them on their own (explicit --subsets)
    singles = torch.tensor([labels.index(n) for n in names], device=model.device) if set(names) <= set(labels) else None
    coh: dict[tuple[int, str, str], list] = {}
    rec: dict[int, Tensor] = {}
    has_mse = {t: True for t in names}
    states: dict[tuple[str, int, str], Any] = {}
    broken: dict[str, str] = {}
    out_size = {t: output_elements(model, [t]) for t in names}
    bar = Progress(len(test), "posteriors")
    for positions, batch in iterate(test, settings.batch_size):
        aligned = len(batch) == len(positions)
        batch = batch.to(model.device)
        experts = model.encode(batch)
        post = model.fusion.posterior(experts, masks)
        mean = post.mean
        latents["mu"].append(mean.float().cpu())
        # unimodal Gaussians for W2: the fusion's single-modality posteriors when Gaussian, else the raw experts
        # (a mixture posterior, as in MoE, has no single mean and scale)
        if hasattr(post, "std"):
            single = post if singles is not None else model.fusion.posterior(experts, torch.eye(len(names), dtype=torch.bool, device=model.device))
            rows = singles if singles is not None else slice(None)
            latents["single_mu"].append(single.mean[rows].float().cpu())
            latents["single_std"].append(single.std[rows].float().cpu())
        else:
            latents["single_mu"].append(experts.mu.float().cpu())
            latents["single_std"].append(torch.exp(0.5 * experts.logvar.float()).cpu())
        latents["present"].append(batch.present.cpu())
        latents["positions"].append(torch.as_tensor(positions if aligned else np.full(len(batch), -1)))
        # a subset counts for a sample when all its modalities are present
        usable = (masks.unsqueeze(1) <= batch.present.unsqueeze(0)).all(-1)  # (S, B)
        decoded = names if groups & {"coherence", "reconstruction", "task"} else []  # else only the latents are wanted
        for j, t in enumerate(decoded):
            modality = model.modalities[t]
            x = batch.data[t]
            valid_all = usable & batch.present[:, j].unsqueeze(0)  # (S, B)
            budget = min(CHUNK_ELEMENTS, chunk_budget(model.device))
            step = max(1, budget // max(1, out_size[t] * len(batch)))  # subsets decoded at once
            if j not in rec:
                rec[j] = torch.zeros(3, S, dtype=torch.float64, device=model.device)  # Σ nll, items, Σ mse
            for s0 in range(0, S, step):
                s1 = min(S, s0 + step)
                out = modality.decode(mean[s0:s1])  # (s, B, ...)
                pred = modality.predict(out)
                valid = valid_all[s0:s1]
                if "reconstruction" in groups:
                    nll = -modality.log_likelihood(out, x).float()
                    rec[j][0, s0:s1] += nll.double().mul(valid).sum(1)
                    rec[j][1, s0:s1] += valid.sum(1).double()
                    if isinstance(pred, Tensor) and isinstance(x, Tensor) and pred.is_floating_point() and pred.shape[1:] == x.shape:
                        rec[j][2, s0:s1] += (pred - x.to(pred.dtype)).pow(2).flatten(2).mean(-1).double().mul(valid).sum(1)
                    else:
                        has_mse[t] = False
                if "task" in groups:
                    for metric in chosen_metrics:
                        if metric in broken:
                            continue
                        for s in range(s0, s1):
                            key = (metric, s, t)
                            try:
                                if key not in states:
                                    states[key] = metric_fns[metric](modality)
                                if states[key] is not None and bool(valid[s - s0].any()):
                                    index = valid[s - s0].nonzero().flatten()
                                    predicted = {k: v[s - s0][index] for k, v in pred.items()} if isinstance(pred, dict) else pred[s - s0][index]
                                    states[key].update(predicted, select(x, index))
                            except Exception as exc:  # noqa: BLE001 - a faulty plugin metric is reported, not fatal
                                broken[metric] = (f"metric '{metric}' failed on {labels[s]}->{t}: {type(exc).__name__}: {exc} "
                                                  "(a metric is fn(modality) -> None or a state with update(predicted, target) and compute())")
                                break
                if judges is not None and aligned and judges.pairs(t):
                    verdicts = judges.judge(model, t, flatten_lead(pred, 2))
                    ok_all = valid.cpu().numpy()
                    for a, p in verdicts.items():
                        y = test_attrs[a][positions]
                        ok = ok_all & (y >= 0)[None, :]
                        p = p.reshape(s1 - s0, -1)
                        for s in range(s0, s1):
                            coh.setdefault((s, t, a), []).append((y[ok[s - s0]], p[s - s0][ok[s - s0]]))
        bar(len(batch))
    bar.close()

    coherence: dict[str, dict[str, float | None]] = {}
    for (s, t, a), parts in sorted(coh.items()):
        y = np.concatenate([p[0] for p in parts])
        p = np.concatenate([p[1] for p in parts])
        coherence.setdefault(f"{labels[s]}->{t}", {})[a] = fast_balanced_accuracy(y, p)
    reconstruction: dict[str, dict[str, float | None]] = {}
    if "reconstruction" in groups:
        for j, sums in rec.items():
            sums = sums.cpu()
            for s in range(S):
                n = sums[1, s].item()
                cell = {"nll": sums[0, s].item() / n if n else None, "items": int(n)}
                if has_mse[names[j]]:
                    cell["mse"] = sums[2, s].item() / n if n else None
                reconstruction[f"{labels[s]}->{names[j]}"] = cell
    task: dict[str, dict[str, Any]] = {}
    for (metric, s, t), state in states.items():
        if state is not None and metric not in broken:
            try:
                value = state.compute()
            except ZeroDivisionError:
                value = None
            except Exception as exc:  # noqa: BLE001
                broken[metric] = f"metric '{metric}' failed in compute() on {labels[s]}->{t}: {type(exc).__name__}: {exc}"
                continue
            task.setdefault(metric, {})[f"{labels[s]}->{t}"] = value
    for metric, message in broken.items():
        task[metric] = {"error": message}
    latent = {k: torch.cat(v, dim=1 if k in ("mu", "single_mu", "single_std") else 0) for k, v in latents.items()}
    return {"coherence": coherence, "reconstruction": reconstruction, "task": task, "latents": latent}


@torch.no_grad()
def _joint_coherence(model, judges: JudgeSet, settings: EvalSettings) -> dict[str, float | None]:
    """Draw z ~ p(z), decode every modality, and count how often all judges of an attribute agree."""
    prior = prior_of(model)
    verdicts: dict[str, list[tuple[str, np.ndarray]]] = {}
    done = 0
    bar = Progress(settings.joint_samples, "joint coherence")
    while done < settings.joint_samples:
        n = min(settings.batch_size, settings.joint_samples - done)
        z = prior.rsample(n)
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


def _probes(run, train_view, attrs, masks, labels, test_latents, test_attrs, settings) -> dict:
    """Fit on training-row posterior means, score on test-row means, per subset and attribute."""
    model = run.model
    rows = _cap(len(train_view), settings.probe_rows, settings.seed)
    probe_view = run.view(train_view.rows.numpy()[rows])
    train_attrs = attribute_values(probe_view.records, attrs, probe_view.rows.numpy())
    mus, kept = [], []
    for positions, batch in iterate(probe_view, settings.batch_size):
        if len(batch) != len(positions):
            continue
        batch = batch.to(model.device)
        mus.append(model.fusion.posterior(model.encode(batch), masks).mean.float().cpu())
        kept.append(positions)
    train_mu = torch.cat(mus, 1).numpy()
    kept_rows = np.concatenate(kept)
    test_mu = test_latents["mu"].numpy()
    test_pos = test_latents["positions"].numpy()
    ok = test_pos >= 0
    # Only the labels the model was allowed to see with the probed subset's modalities: under weak
    # supervision an unpaired row shows its label alone, so a probe from the image may not learn from it.
    probe_rows = probe_view.rows.numpy()[kept_rows]
    out: dict[str, dict[str, float | None]] = {}
    bar = Progress(len(labels), "linear probes")
    for s, label in enumerate(labels):
        given = [n for n, on in zip(model.names, masks[s].tolist()) if on]
        shown: dict[str, np.ndarray | None] = {}  # per field: which probe rows showed it with ``given`` (48 attributes, one field)
        for a in attrs:
            field = split_attribute(a)[0]
            if field not in shown:
                seen = run.seen_rows(field, given)
                shown[field] = None if seen is None else np.isin(probe_rows, seen)
            y = train_attrs[a][kept_rows]
            if shown[field] is not None:
                y = np.where(shown[field], y, -1)
            out.setdefault(label, {})[a] = linear_probe(train_mu[s], y, test_mu[s][ok], test_attrs[a][test_pos[ok]])
        bar(1)
    bar.close()
    return out


def _relatedness(names, latents, test_attrs, settings) -> dict:
    """W2 between each pair of unimodal posteriors (single-modality subsets) on items that have both."""
    mu, std, present, pos = latents["single_mu"], latents["single_std"], latents["present"], latents["positions"].numpy()
    out = {}
    for i, a in enumerate(names):
        for j, b in enumerate(names[i + 1:], start=i + 1):
            both = (present[:, i] & present[:, j]).numpy() & (pos >= 0)
            if both.sum() < 2:
                continue
            classes = {attr: test_attrs[attr][pos[both]] for attr in test_attrs}
            out[f"{a}~{b}"] = relatedness(mu[i][both], std[i][both], mu[j][both], std[j][both], classes, seed=settings.seed)
    return out


def grouped(per_attribute: dict[str, float | None]) -> dict[str, float]:
    """Entries ``field[k]`` of a vector attribute averaged into ``field[*]`` (48 binary attributes → one number)."""
    sums: dict[str, list[float]] = {}
    for a, v in per_attribute.items():
        field, k = split_attribute(a)
        if v is not None:
            sums.setdefault(a if k is None else f"{field}[*]", []).append(v)
    return {a: float(np.mean(v)) for a, v in sums.items()}


def summarize(result: dict, names: list[str]) -> dict[str, float]:
    """Headline numbers (what ``modkit sweep`` plots by default)."""
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
    for key, cell in result.get("likelihood", {}).items():
        if cell["mean"] is not None:
            out[f"likelihood/{key}"] = cell["mean"]
        if cell.get("log_w_var") is not None:  # MVAE's Table 3: how good the proposal is
            out[f"log_w_var/{key}"] = cell["log_w_var"]
    for subset in [*names, "+".join(names)] if len(names) > 1 else names:  # each modality alone, and all together
        for a, v in grouped(result.get("probe", {}).get(subset, {})).items():
            out[f"probe/{subset}/{a}"] = v
    for key, cell in result.get("relatedness", {}).items():
        if cell.get("auc") is not None:
            out[f"relatedness/{key}/auc"] = cell["auc"]
    for key, cell in result.get("reconstruction", {}).items():
        given, target = key.split("->")
        if given == target and cell.get("nll") is not None:
            out[f"reconstruction/{target}/nll"] = cell["nll"]
        elif "+" not in given:  # one modality translated into another (MVAE's vision transforms: edges -> image)
            out.update({f"reconstruction/{key}/{m}": cell[m] for m in ("nll", "mse") if cell.get(m) is not None})
    headline = {*names, "+".join(names)}  # single sources and all together; every subset is in eval.json
    for metric, cells in result.get("task", {}).items():
        for key, value in cells.items():
            if key.split("->")[0] in headline and isinstance(value, (int, float)) and not math.isnan(value):
                out[f"task/{metric}/{key}"] = float(value)
    return out


def write_eval(run: LoadedRun, result: dict) -> None:
    rundir.write_json(run.run_dir / EVAL_JSON, result)
