"""modkit.Engine names everything a fusion uses of the model: checked by running every registered fusion (and
the documented example fusion) against a model that answers those members and raises on anything else."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from modkit import Engine, Fusion, LossOutput, MultimodalVAE, SubsetPlan, all_subsets
from modkit.testing import FusionCase, fusion_cases, toy_batch, toy_model

ROOT = Path(__file__).resolve().parents[2]
#: the protocol's members: its annotated attributes and its methods
MEMBERS = frozenset(Engine.__annotations__) | {n for n, v in vars(Engine).items() if callable(v) and not n.startswith("_")}


class StrictEngine:
    """A model seen only through :class:`modkit.Engine`: a member the protocol names is the real model's; any other
    attribute raises AssertionError naming it. :func:`used` says which members were touched.

    ``encode`` does what :meth:`MultimodalVAE.encode` does, ``model.fusion.encode(model, batch)``, with this
    proxy as the model, so what a fusion's own ``encode`` calls is checked too.
    """

    def __init__(self, model: MultimodalVAE):
        object.__setattr__(self, "_StrictEngine__model", model)
        object.__setattr__(self, "_StrictEngine__used", set())

    def __getattribute__(self, name: str):
        if name in ("__class__", "__dict__", "__setattr__", "__getattribute__") or name.startswith("_StrictEngine__"):
            return object.__getattribute__(self, name)
        if name not in MEMBERS:
            raise AssertionError(f"a fusion used model.{name}, which modkit.Engine does not name")
        model = object.__getattribute__(self, "_StrictEngine__model")
        object.__getattribute__(self, "_StrictEngine__used").add(name)
        if name == "encode":
            return lambda batch: model.fusion.encode(self, batch)
        return getattr(model, name)

    def __setattr__(self, name: str, value) -> None:
        raise AssertionError(f"a fusion set model.{name}")


def used(strict: StrictEngine) -> set[str]:
    return object.__getattribute__(strict, "_StrictEngine__used")


def _example_fusion_case() -> FusionCase:
    import sys

    sys.path.insert(0, str(ROOT / "docs" / "examples"))
    try:
        [case] = fusion_cases(["gated_fusion"], ["gated_moe"])
    finally:
        sys.path.remove(str(ROOT / "docs" / "examples"))
    return case


CASES = fusion_cases()


def test_the_protocol_names_the_primitives():
    assert MEMBERS == {"names", "modalities", "stage", "encode", "encode_experts", "encode_with_features",
                       "log_likelihoods", "present_reconstruction", "weighted_reconstruction"}


def test_multimodal_vae_is_an_engine_and_a_bare_module_is_not():
    model = toy_model(CASES[0].cls, {"type": CASES[0].name, **CASES[0].options})
    assert isinstance(model, Engine)
    assert isinstance(StrictEngine(model), Engine)
    assert not isinstance(torch.nn.Linear(2, 2), Engine)
    for name in MEMBERS - set(Engine.__annotations__):  # the signatures agree, parameter by parameter
        import inspect

        ours = list(inspect.signature(getattr(Engine, name)).parameters)
        theirs = list(inspect.signature(getattr(MultimodalVAE, name)).parameters)
        assert theirs[:len(ours)] == ours, (name, ours, theirs)


def test_the_strict_engine_refuses_what_the_protocol_does_not_name():
    """The check below is real: a fusion that reaches past the protocol (here for ``model.fusion``) fails."""

    class Nosy(CASES[0].cls):
        def loss(self, model, batch, plan, beta):
            return model.fusion.loss(model, batch, plan, beta)

    model = toy_model(Nosy, {"type": CASES[0].name, **CASES[0].options})
    with pytest.raises(AssertionError, match="model.fusion, which modkit.Engine does not name"):
        model.fusion.loss(StrictEngine(model), toy_batch(), SubsetPlan.from_mask(all_subsets(3)), 1.0)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_every_registered_fusion_uses_only_the_protocol(case):
    _check(case)


def test_the_protocol_is_exactly_what_the_fusions_use():
    """No member is there for nobody: the first-party fusions and the documented example together use them all."""
    touched = set().union(*(_check(case) for case in [*CASES, _example_fusion_case()]))
    assert touched == MEMBERS


def _check(case: FusionCase) -> set[str]:
    """``loss`` (in every stage objective the fusion has), ``encode`` and ``initialize`` through the strict engine;
    the loss equals the real model's, same seed."""
    model = case.build().train()
    batch, plan = toy_batch(), SubsetPlan.from_mask(all_subsets(len(model.names)))
    strict = StrictEngine(model)
    for stage in (None, *case.cls.objectives):
        model.stage = stage
        torch.manual_seed(0)
        expected = model(batch, plan, 1.0)
        torch.manual_seed(0)
        out = model.fusion.loss(strict, batch, plan, 1.0)
        assert isinstance(out, LossOutput) and torch.isfinite(out.loss)
        torch.testing.assert_close(out.loss, expected.loss)
        model.zero_grad(set_to_none=True)
        out.loss.backward()
        assert any(p.grad is not None for p in model.parameters())
    model.stage = None
    with torch.no_grad():
        experts = model.fusion.encode(strict, batch)
        torch.testing.assert_close(experts.mu, model.encode(batch).mu)
    model.fusion.initialize(strict)
    assert isinstance(model.fusion, Fusion)
    return used(strict)
