"""Post-hoc latent samplers: embed the training set, fit a registered sampler, store it; load one back.

The embedding of a training example is the mean of its joint posterior q(z | every modality it has), as
MultiVae's samplers use: the point the encoders put the example at, without the posterior's noise.
The sampler classes come from plugins (``registry.add_latent_sampler``); the engine never names one.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from pydantic import ValidationError

from modkit.config.recipe import Component, component_config
from modkit.core.engine import MultimodalVAE
from modkit.core.latent_sampler import LatentSampler
from modkit.data.dataset import ModalityView
from modkit.errors import ModkitError, RecipeError
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


def sampler_config(cls: type[LatentSampler], name: str, options: Mapping[str, Any], key: str = "--set"):
    """``cls.Config`` from ``options``; a one-line error naming the bad option."""
    try:
        return component_config(Component(type=name, **dict(options)), cls.Config, key)
    except (RecipeError, ValidationError) as exc:
        raise ModkitError(str(exc).splitlines()[0]) from None


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
                       echo: Callable[[str], None] = lambda _: None) -> Fitted:
    """Fit the registered latent sampler ``name`` (with ``options``) to ``view``'s embeddings and store it
    as ``run_dir/samplers/NAME.safetensors`` + ``.json``."""
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
    path = latent_sampler_file.write(run_dir, name, sampler.state_dict(), meta)
    return Fitted(name, sampler, path, len(z))


def load_latent_sampler(registry: Registry, run_dir: Path | str, name: str, latent_dim: int) -> LatentSampler:
    """The sampler fitted as ``name`` in ``run_dir``, rebuilt from its JSON config and its tensors."""
    state, meta = latent_sampler_file.read(run_dir, name)
    cls = sampler_class(registry, meta["sampler"])
    if meta["latent_dim"] != latent_dim:
        raise ModkitError(f"latent sampler '{name}' in {run_dir} was fitted to {meta['latent_dim']}-dimensional latents; "
                          f"this model's are {latent_dim}-dimensional: fit it again")
    config = sampler_config(cls, meta["sampler"], meta["options"], key=f"samplers/{name}.json")
    try:
        return cls.restore(latent_dim, config, state)
    except (KeyError, RuntimeError, ValueError) as exc:
        raise ModkitError(f"latent sampler '{name}' in {run_dir} does not match its config ({str(exc).splitlines()[0][:200]})") from None
