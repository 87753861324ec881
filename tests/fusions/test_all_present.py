"""The host-side "all present" flag (a faster path when no modality is missing): where it is set, and that the paths it enables give the same
losses and gradients as the masked path on the same fully present batch."""
from __future__ import annotations

import copy

import pytest
import torch

from fusion_toy import toy_batch, toy_model
from modkit.config.recipe import load_recipe
from modkit.core.batch import Batch
from modkit.core.fusion import SubsetPlan
from modkit.core.subsets import all_subsets
from modkit.plugins.loader import plugins_for
from modkit.runs.lifecycle import make_trainer
from modkit_mopoe import MixtureOfProductsOfExperts, MoPoEConfig
from modkit_poe import PoEConfig, ProductOfExperts


def masked(batch: Batch) -> Batch:
    """The same data and presence, but nothing known on the host: every fusion takes its masked path."""
    return Batch(batch.data, batch.present, batch.skipped, all_present=False)


def plan_of(mask: torch.Tensor, complete: bool) -> SubsetPlan:
    plan = SubsetPlan.from_mask(mask)
    plan.complete = complete and plan.complete
    return plan


def test_the_flag_is_set_on_the_host_when_the_batch_is_built():
    full = toy_batch(torch.ones(6, 3, dtype=torch.bool))
    assert full.all_present is True
    partial = toy_batch(torch.tensor([[1, 1, 1], [1, 0, 1]]))
    assert partial.all_present is False
    assert full.to("cpu").all_present  # carried by moves (to a GPU too, where reading it back would sync)
    assert full.select(torch.tensor([0, 2])).all_present  # rows of a complete batch
    assert partial.select(torch.tensor([0])).all_present  # recomputed from the CPU rows
    assert not full.with_present(partial.present).all_present
    assert not masked(full).all_present  # False is kept: "not known"
    assert plan_of(all_subsets(3), True).complete and not SubsetPlan.from_mask(all_subsets(3)[1:]).complete
    assert not SubsetPlan.from_mask(all_subsets(3).flip(0)).complete  # the doubling needs all_subsets' order


def test_collate_sets_the_flag_from_the_presence_matrix(tiny_recipe, tmp_path):
    recipe, resolved = load_recipe(tiny_recipe, [])
    trainer = make_trainer(recipe, resolved, plugins_for(recipe.plugins, []), tmp_path / "run", "cpu", echo=lambda *a: None)
    view = trainer.setup.train
    batch = view.__getitems__(list(range(8)))
    assert batch.all_present is True
    view.presence[3, 1] = False  # one sample loses its label
    assert view.__getitems__(list(range(8))).all_present is False
    assert view.__getitems__([0, 1, 2]).all_present is True


def _loss_and_grads(model, batch, plan, seed: int):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    out = model(batch, plan, beta=0.7)
    out.loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return out, grads


FUSIONS = [
    pytest.param(MixtureOfProductsOfExperts, MoPoEConfig(type="mopoe"), id="mopoe"),
    pytest.param(MixtureOfProductsOfExperts, MoPoEConfig(type="mopoe", prior_expert=False), id="mopoe-no-prior"),
    pytest.param(MixtureOfProductsOfExperts, MoPoEConfig(type="mopoe", private_dim=1), id="mopoe-private"),
    pytest.param(MixtureOfProductsOfExperts, MoPoEConfig(type="mopoe", kl="sampled"), id="mopoe-sampled-kl"),
    pytest.param(ProductOfExperts, PoEConfig(type="poe"), id="poe"),
]


@pytest.mark.parametrize("fusion_cls, config", FUSIONS)
@pytest.mark.parametrize("latent_dim", [3, 4])
def test_fast_path_gives_the_masked_paths_losses_and_gradients(fusion_cls, config, latent_dim):
    model = toy_model(fusion_cls, config, n_modalities=4, latent_dim=latent_dim)
    batch = toy_batch(torch.ones(33, 4, dtype=torch.bool), seed=1)
    assert batch.all_present
    for mask in (all_subsets(4), all_subsets(4)[[0, 3, 6, 14]]):  # the complete mask (doubling) and a few subsets
        fast, fast_grads = _loss_and_grads(model, batch, plan_of(mask, True), seed=3)
        slow, slow_grads = _loss_and_grads(model, masked(batch), plan_of(mask, False), seed=3)
        torch.testing.assert_close(fast.loss, slow.loss, rtol=1e-6, atol=1e-6)
        assert fast.terms.keys() == slow.terms.keys()
        for key in fast.terms:
            torch.testing.assert_close(fast.terms[key], slow.terms[key], rtol=1e-6, atol=1e-6)
        assert fast_grads.keys() == slow_grads.keys()
        for name in fast_grads:
            torch.testing.assert_close(fast_grads[name], slow_grads[name], rtol=1e-5, atol=1e-6, msg=name)


def test_training_steps_are_the_same_with_and_without_the_fast_path(tiny_recipe, tmp_path):
    """Three real Trainer steps (MoPoE, all subsets) from the same weights: the same losses and weights to rounding."""
    sets = ["model.fusion=mopoe", "model.sampler=all"]
    recipe, resolved = load_recipe(tiny_recipe, sets)
    trainers = []
    for name in ("fast", "masked"):
        torch.manual_seed(0)
        trainers.append(make_trainer(recipe, resolved, plugins_for(recipe.plugins, []), tmp_path / name, "cpu",
                                     echo=lambda *a: None))
    fast, slow = trainers
    assert type(fast.model.fusion) is MixtureOfProductsOfExperts
    slow.model.load_state_dict(copy.deepcopy(fast.model.state_dict()))
    assert fast._fixed_plan.complete
    slow._fixed_plan.complete = False
    batches = [fast.setup.train.__getitems__(list(range(i * 32, (i + 1) * 32))) for i in range(3)]
    assert all(b.all_present for b in batches)
    for batch in batches:
        torch.manual_seed(11)
        fast_terms, fast_bad = fast.step(batch, 1.0)
        torch.manual_seed(11)
        slow_terms, slow_bad = slow.step(masked(batch), 1.0)
        assert float(fast_bad) == float(slow_bad) == 0.0
        torch.testing.assert_close(fast_terms["loss"], slow_terms["loss"], rtol=1e-6, atol=1e-5)
    for (name, a), b in zip(fast.model.state_dict().items(), slow.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
