"""Every recipe of this area trains a few steps on digits, fully paired and at 10%, with finite losses and metrics."""
import math

import pytest
import torch

from modkit.data.dataset import EpochBatchSampler, make_loader
from modkit.evaluation import epoch_metrics as evaluate

RECIPES = ["digits-meme", "digits-meme-partial", "digits-latent_mix", "digits-latent_mix-partial", "digits-m2", "digits-m2-partial"]


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_trains_without_nan(tiny, recipe):
    setup = tiny(recipe)
    model = setup.model
    lr = setup.recipe.train.lr
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loader = make_loader(setup.train, EpochBatchSampler(len(setup.train), 64, seed=0))
    model.train()
    losses = []
    for step, batch in enumerate(loader):
        out = model(batch, None, 1.0)
        opt.zero_grad()
        out.loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        opt.step()
        losses.append(out.loss.item())
        if step == 5:
            break
    assert all(math.isfinite(v) for v in losses)
    if "partial" in recipe:
        assert not setup.train.presence.all()  # the 10% protocol really left samples unpaired
    metrics = evaluate.test_metrics(model, make_loader(setup.test, EpochBatchSampler(len(setup.test), 512, shuffle=False)), torch.device("cpu"))
    if model.fusion.prior() is None:  # MEME with pseudo-samples: no unconditional prior to score an ELBO under
        assert metrics["test/elbo"] is None
    else:
        assert math.isfinite(metrics["test/elbo"])
    assert 0 <= metrics["balanced_accuracy/image->label"] <= 1
    assert 0 <= metrics["balanced_accuracy/label->image"] <= 1 if "balanced_accuracy/label->image" in metrics else True


def test_meme_moe_combination_trains(tiny):
    setup = tiny("digits-meme-partial", "model.fusion.combine=moe", "model.fusion.pseudo_samples=8")
    batch = setup.train.__getitems__(list(range(0, len(setup.train), 20)))
    out = setup.model(batch, None, 1.0)
    out.loss.backward()
    assert torch.isfinite(out.loss) and setup.model.fusion.pseudo["label"].grad is not None
