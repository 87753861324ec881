"""Post-hoc latent samplers: embed the training set, fit a registered sampler, store it; load one back.

The embedding of a training example is the mean of its joint posterior q(z | every modality it has), as
MultiVae's samplers use: the point the encoders put the example at, without the posterior's noise.
The sampler classes come from plugins (``registry.add_latent_sampler``); the engine never names one.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
import yaml
from pydantic import ValidationError

from modkit.core.engine import MultimodalVAE
from modkit.core.latent_sampler import LatentSampler
from modkit.data.dataset import ModalityView
from modkit.errors import ModkitError
from modkit.plugins.registry import Registry
from modkit.storage import latent_sampler_file


@dataclass
class Fitted:
    name: str
    sampler: LatentSampler
    path: Path
    embedded: int


def sampler_class(registry: Registry, name: str) -> type[LatentSampler]:
    if not registry.has("latent_sampler", name):
        names = registry.names("latent_sampler")
        raise ModkitError(f"unknown latent sampler '{name}' (available: {', '.join(names) or 'none'})")
    return registry.get("latent_sampler", name)


def parse_options(items: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings → options, each value read as YAML (``n_components=20`` is a number)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ModkitError(f"--set '{item}' is not KEY=VALUE")
        try:
            out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            raise ModkitError(f"--set {key.strip()}: cannot read the value {value!r}") from None
    return out


def sampler_config(cls: type[LatentSampler], name: str, options: Mapping[str, Any], where: str = "--set"):
    """``cls.Config`` from ``options``; a one-line error naming ``where`` the options came from and the bad one."""
    try:
        return cls.Config.model_validate({**dict(options), "type": name})
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(p) for p in error["loc"])
        if error["type"] == "extra_forbidden":
            allowed = ", ".join(k for k in cls.Config.model_fields if k != "type")
            raise ModkitError(f"{where} {key}: unknown option for latent sampler '{name}' (options: {allowed})") from None
        raise ModkitError(f"{where} {key}: {error['msg']} (got {error.get('input')!r})") from None


@torch.no_grad()
def embed(model: MultimodalVAE, view: ModalityView, batch_size: int = 512) -> torch.Tensor:
    """(n, D) float32 on the CPU: the joint-posterior mean of every example of ``view``, in order."""
    if len(view) == 0:
        raise ModkitError("the training set is empty: there is nothing to fit a latent sampler to")
    was_training = model.training
    model.eval()
    out = []
    try:
        for start in range(0, len(view), batch_size):
            batch = view.__getitems__(list(range(start, min(start + batch_size, len(view))))).to(model.device)
            post = model.posterior(batch, list(model.names))
            out.append(post.mean.reshape(-1, model.latent_dim).float().cpu())
    finally:
        model.train(was_training)
    z = torch.cat(out)
    if not torch.isfinite(z).all():
        raise ModkitError("the model embeds some training examples to non-finite latents; no sampler can be fitted to them")
    return z


def fit_latent_sampler(model: MultimodalVAE, view: ModalityView, registry: Registry, run_dir: Path | str, name: str,
                       options: Mapping[str, Any] | None = None, seed: int = 0, batch_size: int = 512,
                       echo: Callable[[str], None] = lambda _: None, store_as: str | None = None) -> Fitted:
    """Fit the registered latent sampler ``name`` (with ``options``) to ``view``'s embeddings and store it
    as ``run_dir/samplers/STORE_AS.safetensors`` + ``.json`` (``store_as`` defaults to ``name``)."""
    store_as = latent_sampler_file.check_name(store_as or name)
    cls = sampler_class(registry, name)
    config = sampler_config(cls, name, options or {})
    echo(f"embedding {len(view)} training examples …")
    z = embed(model, view, batch_size)
    echo(f"fitting latent sampler '{name}' to {len(z)} embeddings of size {z.shape[1]} …")
    sampler = cls(model.latent_dim, config)
    sampler.fit(z, seed)
    meta = {
        "sampler": name,
        "options": config.model_dump(mode="json", exclude={"type"}),
        "latent_dim": model.latent_dim,
        "fitted_on": {"examples": len(z), "embedding": "joint posterior mean", "seed": seed,
                      "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")},
    }
    path = latent_sampler_file.write(run_dir, store_as, sampler.state_dict(), meta)
    return Fitted(store_as, sampler, path, len(z))


def load_latent_sampler(registry: Registry, run_dir: Path | str, name: str, latent_dim: int) -> LatentSampler:
    """The sampler fitted as ``name`` in ``run_dir``, rebuilt from its JSON config and its tensors."""
    state, meta = latent_sampler_file.read(run_dir, name)
    cls = sampler_class(registry, meta["sampler"])
    if meta["latent_dim"] != latent_dim:
        raise ModkitError(f"latent sampler '{name}' in {run_dir} was fitted to {meta['latent_dim']}-dimensional latents; "
                          f"this model's are {latent_dim}-dimensional: fit it again")
    config = sampler_config(cls, meta["sampler"], meta["options"], where=f"samplers/{name}.json")
    try:
        return cls.restore(latent_dim, config, state)
    except (KeyError, RuntimeError, ValueError) as exc:
        raise ModkitError(f"latent sampler '{name}' in {run_dir} does not match its config ({str(exc).splitlines()[0][:200]})") from None
