"""Conditional generation from any subset of modalities, and unconditional samples from the prior.

A given value is read by its modality's own ``load_given`` (a file, a literal) and ``preprocess`` (a class
name, a caption), so the engine never needs to know what a modality is.
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch

from modkit.reporting import figures
from modkit.core.batch import Batch
from modkit.core.modality import existing_file
from modkit.errors import DataError, ModkitError
from modkit.evaluation.judges import flatten_lead
from modkit.evaluation.likelihood import no_prior_reason, prior_of

if TYPE_CHECKING:  # the run is handed in: reporting sits below the run lifecycle and never imports it
    from modkit.runs.loading import LoadedRun


def parse_given(items: Sequence[str], names: Sequence[str]) -> dict[str, str]:
    """``MODALITY=VALUE`` strings → {modality: value}; surrounding quotes are removed."""
    out: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise ModkitError(f"--given '{item}' is not MODALITY=VALUE")
        name, value = item.split("=", 1)
        name = name.strip()
        if name not in names:
            raise ModkitError(f"--given: unknown modality '{name}' (this run has {', '.join(names)})")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        out[name] = value
    return out


#: How errors name a value: the command line's flags, or the Python API's arguments (errors raised from Python
#: speak Python: ``given['label']``, never ``--given label``).
CLI_WORDS = {"given": "--given {name}", "givens": "--given", "target": "--target", "n": "-n",
             "from_modality": "modkit generate RUN --given NAME=VALUE"}
API_WORDS = {"given": "given[{name!r}]", "givens": "given", "target": "target", "n": "n",
             "from_modality": "run.generate(given={NAME: value}, target=...)"}


def given_batch(run: LoadedRun, given: dict[str, Any], words: dict[str, str] = CLI_WORDS) -> Batch:
    """One row holding the given modalities: typed text goes through ``Modality.load_given`` (a file's
    path, or the text); a value the Python API passes (an array, a number) goes to ``preprocess`` as it is."""
    return items_batch(run, {name: [value] for name, value in given.items()}, words)


def read_value(modality, raw: Any, where: str):
    """One given value → the modality's preprocessed sample; a value it cannot read is a one-line DataError naming ``where``."""
    try:
        return modality.preprocess(modality.load_given(raw) if isinstance(raw, str) else raw)
    except DataError as exc:
        raise DataError(f"{where}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a value the modality cannot read is the user's input
        shown = repr(raw) if len(repr(raw)) <= 80 else f"{type(raw).__name__} of shape {getattr(raw, 'shape', '?')}"
        raise DataError(f"{where}={shown}: {type(exc).__name__}: {exc}") from None


def items_batch(run: LoadedRun, given: dict[str, Sequence[Any]], words: dict[str, str] = CLI_WORDS) -> Batch:
    """``len`` rows, one per item: ``given`` maps modalities to equally long sequences of values (``None``: that
    item lacks the modality); the modalities not given are absent from every row."""
    model = run.model
    sizes = {name: len(values) for name, values in given.items()}
    if len(set(sizes.values())) > 1:
        raise ModkitError(f"{words['givens']}: the modalities hold different numbers of items "
                          f"({', '.join(f'{k}: {v}' for k, v in sizes.items())})")
    count = next(iter(sizes.values()), 1)
    data, present = {}, []
    for name in model.names:
        modality = model.modalities[name]
        where = words["given"].format(name=name)
        samples = ([None if raw is None else read_value(modality, raw, where) for raw in given[name]]
                   if name in given else [None] * count)
        present.append([s is not None for s in samples])
        data[name] = modality.collate(samples)
    batch = Batch(data, torch.tensor(present, dtype=torch.bool).T.reshape(count, len(model.names)))
    for name in given:
        try:
            model.modalities[name].check(batch.data[name])
        except ValueError as exc:
            raise DataError(f"{words['given'].format(name=name)}: {exc}") from None
    return batch.to(model.device)


def _prior(model, words: dict[str, str] = CLI_WORDS):
    prior = prior_of(model)
    if prior is None:
        raise ModkitError(f"this run cannot sample from the prior: {no_prior_reason(model).removeprefix('not applicable: ')}; "
                          f"generate from a modality instead ({words['from_modality']})")
    return prior


def _latents(run: LoadedRun, given: dict[str, str], n: int, mean: bool, words: dict[str, str] = CLI_WORDS) -> torch.Tensor:
    model = run.model
    if not given:
        prior = _prior(model, words)
        return prior.mean.expand(n, -1) if mean else prior.rsample(n)
    post = model.posterior(given_batch(run, given, words), list(given))  # (1, 1, D)
    if mean:
        return post.mean.reshape(1, -1).expand(n, -1)
    return post.rsample(n).reshape(n, -1)


@torch.no_grad()
def decode_renders(run: LoadedRun, z: torch.Tensor, target: str) -> list:
    modality = run.model.modalities[target]
    pred = modality.predict(modality.decode(z))
    pred = flatten_lead(pred, 1)
    single = (lambda i: {k: v[i] for k, v in pred.items()}) if isinstance(pred, dict) else (lambda i: pred[i])
    return [modality.render(single(i)) for i in range(len(z))]


def _stem(text: str) -> str:
    """A given file's name without its folder and suffix; any other text as it is."""
    path = existing_file(text)
    return path.stem if path is not None else text


@torch.no_grad()
def generate_renders(run: LoadedRun, given: dict[str, Any], target: str, n: int = 16, mean: bool = False,
                     words: dict[str, str] = CLI_WORDS) -> list:
    """``n`` renders of ``target`` decoded from q(z | given) (the prior if nothing is given)."""
    if target not in run.model.names:
        raise ModkitError(f"{words['target']}: unknown modality '{target}' (this run has {', '.join(run.model.names)})")
    check_known(run, given, words)
    check_count(n, words)
    return decode_renders(run, _latents(run, given, n, mean, words), target)


def check_known(run: LoadedRun, given: dict[str, Any], words: dict[str, str] = CLI_WORDS) -> None:
    unknown = [k for k in given if k not in run.model.names]
    if unknown:
        raise ModkitError(f"{words['givens']}: unknown modality '{unknown[0]}' (this run has {', '.join(run.model.names)})")


MAX_SAMPLES = 10_000  # one grid or text file: far more than anyone looks at, far less than fills memory


def check_count(n: int, words: dict[str, str] = CLI_WORDS) -> None:
    """``-n`` between 1 and :data:`MAX_SAMPLES`, checked before a latent is drawn (every sample is decoded and
    rendered in memory at once)."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ModkitError(f"{words['n']} must be at least 1")
    if n > MAX_SAMPLES:
        raise ModkitError(f"{words['n']} {n} is more than {MAX_SAMPLES:,} samples at once; draw them in several calls "
                          "(with different seeds)")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:60] or "x"


@torch.no_grad()
def generate(run: LoadedRun, given: dict[str, str], target: str, n: int = 16, out: Path | None = None,
             mean: bool = False, each: bool = False) -> tuple[Path, list]:
    """Draw ``n`` latents from q(z | given) (the prior if nothing is given), decode ``target``, and write
    a PNG grid (images) or a text file (strings); with ``each`` also every image at its own resolution
    (``NAME_000.png``, …), ready to be given back as input. Returns the path and the renders."""
    renders = generate_renders(run, given, target, n, mean)
    source = "+".join(f"{k}-{_slug(_stem(v))}" for k, v in given.items()) or "prior"
    text = all(isinstance(r, str) for r in renders)
    if out is None:
        # the posterior mean is its own file: it must not overwrite the samples drawn from the same given values
        out = run.run_dir / "generated" / f"{source}_to_{target}{'_mean' if mean else ''}.{'txt' if text else 'png'}"
    out = Path(out)
    if not out.suffix:
        out = out.with_suffix(".txt" if text else ".png")
    out.parent.mkdir(parents=True, exist_ok=True)
    if text:
        from modkit.storage.files import atomic_write_text

        atomic_write_text(out, "".join(f"{r}\n" for r in renders))
    else:
        title = "given " + ", ".join(f"{k}={v if len(v) <= 60 else v[:57] + '...'}" for k, v in given.items()) if given else "from the prior"
        figures.grid([[r] for r in renders], out, title=f"{target} {title}")
        if each:
            for i, render in enumerate(renders):
                if not isinstance(render, str):
                    save_image(render, out.with_name(f"{out.stem}_{i:03d}.png"))
    return out, renders


def save_image(render, path: Path) -> None:
    """An RGB render in [0, 1] as an 8-bit PNG (grey when its channels agree)."""
    import io

    import numpy as np
    from PIL import Image

    from modkit.storage.files import atomic_write_bytes

    array = (np.clip(np.asarray(render, dtype=np.float32), 0, 1) * 255).round().astype(np.uint8)
    grey = array.ndim == 3 and np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 0], array[..., 2])
    buffer = io.BytesIO()
    Image.fromarray(array[..., 0] if grey else array).save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


@torch.no_grad()
def sample_prior(run: LoadedRun, n: int = 64, out: Path | None = None, seed: int | None = None,
                 sampler: str | None = None) -> tuple[Path, list[list]]:
    """z ~ p(z) (or the fitted latent sampler ``sampler``), every modality decoded: a grid with one cell per
    sample, one row per modality."""
    per_modality = prior_renders(run, n, seed, sampler)
    items = [list(cells) for cells in zip(*per_modality.values())]
    default = "prior_samples.png" if sampler is None else f"prior_samples_{sampler}.png"
    out = Path(out) if out is not None else run.run_dir / "generated" / default
    out.parent.mkdir(parents=True, exist_ok=True)
    source = "the prior" if sampler is None else f"latent sampler '{sampler}'"
    figures.grid(items, out, row_names=run.model.names, title=f"{n} samples from {source}")
    return out, items


def latent_draw(run: LoadedRun, sampler: str | None = None,
                words: dict[str, str] = CLI_WORDS) -> Callable[[int, torch.Generator | None], torch.Tensor]:
    """``draw(n, generator)`` → (n, D) latents on the model's device: from p(z) (torch's global RNG; the
    generator is not used), or from the latent sampler fitted as ``sampler`` in the run directory
    (``modkit fit-sampler``), every random number taken from the generator."""
    model = run.model
    if sampler is None:
        prior = _prior(model, words)

        def from_prior(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
            return prior.rsample(n)  # the fusion's prior draws from torch's global RNG: seed that one
        return from_prior
    from modkit.training.latent_samplers import load_latent_sampler

    fitted = load_latent_sampler(run.plugins.registry, run.run_dir, sampler, model.latent_dim)

    def from_sampler(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return fitted.sample(n, generator).to(model.device, torch.float32)
    return from_sampler


@torch.no_grad()
def prior_renders(run: LoadedRun, n: int, seed: int | None = None, sampler: str | None = None,
                  words: dict[str, str] = CLI_WORDS) -> dict[str, list]:
    """z ~ p(z) (or the fitted latent sampler ``sampler``), ``n`` times, decoded by every modality: modality → renders."""
    check_count(n, words)
    draw = latent_draw(run, sampler, words)
    if seed is not None:
        torch.manual_seed(seed)
    z = draw(n, None if seed is None or sampler is None else torch.Generator().manual_seed(seed))
    return {name: decode_renders(run, z, name) for name in run.model.names}


def summarize_strings(renders: list[str]) -> str:
    counts = Counter(renders)
    if len(counts) == len(renders):
        return "\n".join(renders)
    return ", ".join(f"{value} ×{count}" for value, count in counts.most_common())
