"""A batch: each modality's data plus a (B, N) presence mask, so missing data is a first-class state.

``all_present`` is the host's knowledge that no sample lacks any modality, taken when the batch is built
(collate) from the presence matrix while it is still on the CPU: fusions then skip presence masking
without asking the device (a read of the device would wait for the GPU every step). False means "not known",
never "something is missing"."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import torch
from torch import Tensor

#: What a modality's batched data is: one tensor, or a dict of tensors (tokens + lengths, …).
Data = Union[Tensor, dict[str, Tensor]]


def _map(data: Data, fn) -> Data:
    return {k: fn(v) for k, v in data.items()} if isinstance(data, dict) else fn(data)


@dataclass
class Batch:
    data: dict[str, Data]
    present: Tensor  # (B, N) bool, columns in the model's modality order
    skipped: int = 0  # bad samples dropped while this batch was built (data.on_bad_sample: skip)
    #: every sample has every modality, known on the host; None: read it from ``present`` if that is on the CPU
    all_present: bool | None = None

    def __post_init__(self) -> None:
        if self.all_present is None:  # a CPU tensor answers without a device sync; elsewhere stay on the safe path
            self.all_present = self.present.device.type == "cpu" and bool(self.present.all())

    def __len__(self) -> int:
        return self.present.shape[0]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        move = lambda t: t.to(device, non_blocking=non_blocking)  # noqa: E731
        return Batch({k: _map(v, move) for k, v in self.data.items()}, move(self.present), self.skipped, self.all_present)

    def pin_memory(self) -> "Batch":
        pin = lambda t: t.pin_memory()  # noqa: E731
        return Batch({k: _map(v, pin) for k, v in self.data.items()}, self.present.pin_memory(), self.skipped, self.all_present)

    def select(self, index: Tensor) -> "Batch":
        take = lambda t: t[index]  # noqa: E731
        return Batch({k: _map(v, take) for k, v in self.data.items()}, self.present[index],
                     all_present=True if self.all_present else None)  # rows of a complete batch are complete

    def with_present(self, present: Tensor) -> "Batch":
        return Batch(self.data, present)
