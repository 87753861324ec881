"""Subsets of modalities as rows of a boolean (S, N) matrix, and the samplers that choose them.

The mask rows are ANDed with per-sample presence inside the fusion, so one matrix serves the
whole batch. Samplers draw on the host from their own seeded generator (checkpointed), so no
device sync is needed to know which decoders run on which rows.
"""
from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor


def all_subsets(n: int) -> Tensor:
    """All 2^n − 1 non-empty subsets; row i is the binary expansion of i + 1 (modality 0 = lowest bit)."""
    codes = torch.arange(1, 2**n)
    return (codes.unsqueeze(1) >> torch.arange(n)) & 1 == 1


def singles(n: int) -> Tensor:
    return torch.eye(n, dtype=torch.bool)


def full(n: int) -> Tensor:
    return torch.ones(1, n, dtype=torch.bool)


def subset_names(mask: Tensor, names: list[str]) -> list[str]:
    return ["+".join(n for n, on in zip(names, row.tolist()) if on) for row in mask]


class SamplerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str


class SubsetSampler:
    """Chooses the subsets whose ELBOs a training step sums. Subclasses implement ``sample``."""

    Config: ClassVar[type[SamplerConfig]] = SamplerConfig
    #: True when every call returns the same matrix (the engine then caches it on the device)
    fixed: ClassVar[bool] = True

    def __init__(self, n_modalities: int, config: SamplerConfig, seed: int = 0):
        self.n = n_modalities
        self.config = config
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self) -> Tensor:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])

    #: above this many modalities the 2^N pool is not enumerated: subsets are drawn as random bits instead
    POOL_LIMIT: ClassVar[int] = 20

    def _pool(self, exclude_trivial: bool) -> Tensor:
        """The subsets drawn from, enumerated once per sampler: at N = 19, enumerating the 2^19 rows every step
        cost more than the step's networks."""
        cache = self.__dict__.setdefault("_pools", {})
        if exclude_trivial not in cache:
            pool = all_subsets(self.n)
            if exclude_trivial:
                sizes = pool.sum(1)
                pool = pool[(sizes > 1) & (sizes < self.n)]
            cache[exclude_trivial] = pool
        return cache[exclude_trivial]

    def _random_subsets(self, k: int, exclude_trivial: bool) -> Tensor:
        """k distinct-or-not random subsets, uniform over the allowed ones; with ``exclude_trivial`` sizes are
        2..n-1 (not full, not single)."""
        if k == 0 or (exclude_trivial and self.n < 3):
            return torch.zeros(0, self.n, dtype=torch.bool)
        if self.n > self.POOL_LIMIT:  # uniform bits, rejecting what is not allowed (rare at this N)
            rows = torch.zeros(0, self.n, dtype=torch.bool)
            while len(rows) < k:
                bits = torch.rand(2 * k, self.n, generator=self.generator) < 0.5
                sizes = bits.sum(1)
                rows = torch.cat([rows, bits[(sizes > 1) & (sizes < self.n) if exclude_trivial else sizes > 0]])
            return rows[:k]
        pool = self._pool(exclude_trivial)
        idx = torch.randint(len(pool), (k,), generator=self.generator)
        return pool[idx]


class AllSampler(SubsetSampler):
    """Every non-empty subset (2^N − 1 rows): exact for small N."""

    def sample(self) -> Tensor:
        return all_subsets(self.n)


class SinglesSampler(SubsetSampler):
    """Each modality alone."""

    def sample(self) -> Tensor:
        return singles(self.n)


class FullSampler(SubsetSampler):
    """Only the joint subset of all modalities."""

    def sample(self) -> Tensor:
        return full(self.n)


class KConfig(SamplerConfig):
    k: int = Field(1, ge=0, description="number of random subsets per step")


class MVAESampler(SubsetSampler):
    """MVAE sub-sampled training: the full set, every single modality, and k random subsets of size 2..N−1."""

    Config = KConfig

    @property
    def fixed(self) -> bool:  # type: ignore[override]
        return self.config.k == 0 or self.n <= 2

    def sample(self) -> Tensor:
        rows = [full(self.n)] + ([singles(self.n)] if self.n > 1 else [])
        rows.append(self._random_subsets(self.config.k, exclude_trivial=True))
        return torch.cat(rows)


class RandomSampler(SubsetSampler):
    """k uniformly random non-empty subsets per step."""

    Config = KConfig
    fixed = False

    def sample(self) -> Tensor:
        return self._random_subsets(max(self.config.k, 1), exclude_trivial=False)


BUILTIN_SAMPLERS = {"all": AllSampler, "mvae": MVAESampler, "singles": SinglesSampler, "random": RandomSampler, "full": FullSampler}


def subset_validity(mask: Tensor, present: Tensor, all_present: bool = False) -> Tensor:
    """(S, B) bool: subset s is non-empty and every modality in it is present in sample b.

    One (S, N) × (N, B) product counts each subset's absent members; no (S, B, N) intermediate.
    With ``all_present`` (known on the host, :attr:`Batch.all_present`) only emptiness matters: the (S, 1)
    answer expanded over the batch, no product.
    """
    if all_present:
        return mask.any(-1, keepdim=True).expand(-1, present.shape[0])
    mask_f = mask.to(torch.float32)
    missing = mask_f @ (~present).T.to(torch.float32)  # (S, B)
    return (missing == 0) & (mask_f.sum(-1, keepdim=True) > 0)
