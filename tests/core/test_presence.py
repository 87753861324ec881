"""A missing modality contributes nothing to the fused posterior or to the loss."""
import torch

from modkit.core.batch import Batch
from modkit.core.fusion import SubsetPlan
from modkit.core.gaussian import Experts, product_of_experts
from modkit.config.recipe import Component, ModalitySpec, component_config
from modkit.core.subsets import all_subsets
from modkit_image import Image
from modkit_label import Label
from modkit_poe import ProductOfExperts
from modkit.core.engine import MultimodalVAE


def make_model(latent=4):
    torch.manual_seed(0)
    image = Image("image", component_config(ModalitySpec(type="image", shape=[1, 4, 4], hidden=[16]), Image.Config, "m"), latent)
    label = Label("label", component_config(ModalitySpec(type="label", num_classes=3, hidden=[16]), Label.Config, "m"), latent)
    mods = {"image": image, "label": label}
    fusion = ProductOfExperts(mods, latent, component_config(Component(type="poe"), ProductOfExperts.Config, "f"))
    return MultimodalVAE(mods, fusion, latent)


def make_batch(b=6):
    g = torch.Generator().manual_seed(1)
    return Batch({"image": torch.rand(b, 1, 4, 4, generator=g), "label": torch.randint(0, 3, (b,), generator=g)},
                 torch.ones(b, 2, dtype=torch.bool))


def test_absent_expert_is_ignored_even_if_garbage():
    mu, logvar = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    present = torch.tensor([[True, False]] * 3)
    fused = product_of_experts(Experts(mu, logvar, present), torch.ones(1, 2, dtype=torch.bool))
    garbage_mu = mu.clone()
    garbage_mu[1] = float("nan")
    garbage_logvar = logvar.clone()
    garbage_logvar[1] = float("inf")
    fused_garbage = product_of_experts(Experts(garbage_mu, garbage_logvar, present), torch.ones(1, 2, dtype=torch.bool))
    only_first = product_of_experts(Experts(mu[:1], logvar[:1], present[:, :1]), torch.ones(1, 1, dtype=torch.bool))
    for a, b, c in zip(fused, fused_garbage, only_first):
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(a, c)


def test_missing_label_changes_neither_loss_nor_gradients_of_its_data():
    model = make_model()
    batch = make_batch()
    present = batch.present.clone()
    present[:3, 1] = False  # the first three samples have no label
    plan = SubsetPlan.from_mask(all_subsets(2))

    def run(labels):
        torch.manual_seed(5)
        b = Batch({"image": batch.data["image"], "label": labels}, present)
        model.zero_grad()
        out = model(b, plan, beta=1.0)
        out.loss.backward()
        return out.loss.detach(), [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]

    loss_a, grads_a = run(batch.data["label"])
    changed = batch.data["label"].clone()
    changed[:3] = (changed[:3] + 1) % 3  # different values where the label is missing
    loss_b, grads_b = run(changed)
    torch.testing.assert_close(loss_a, loss_b)
    for a, b in zip(grads_a, grads_b):
        torch.testing.assert_close(a, b)


def test_all_absent_modality_gets_no_gradient():
    model = make_model()
    batch = make_batch()
    present = batch.present.clone()
    present[:, 1] = False
    out = model(batch.with_present(present), SubsetPlan.from_mask(all_subsets(2)), beta=1.0)
    out.loss.backward()
    for name, p in model.modalities["label"].named_parameters():
        assert p.grad is None or torch.count_nonzero(p.grad) == 0, name


def test_loss_counts_only_subsets_fully_present(monkeypatch):
    """With the label missing everywhere, the all-subsets loss equals the image-only ELBO exactly
    (sampling noise switched off so both are deterministic)."""
    import modkit.core.gaussian

    monkeypatch.setattr(modkit.core.gaussian, "reparameterize", lambda mu, logvar: mu)
    model = make_model()
    batch = make_batch()
    present = batch.present.clone()
    present[:, 1] = False
    loss_all = model(batch.with_present(present), SubsetPlan.from_mask(all_subsets(2)), beta=0.7).loss
    loss_image = model(batch.with_present(present), SubsetPlan.from_mask(torch.tensor([[True, False]])), beta=0.7).loss
    torch.testing.assert_close(loss_all, loss_image)
    # and the image-only ELBO computed by hand
    experts = model.encode(batch)
    mu, logvar = product_of_experts(experts, torch.tensor([[True, False]]))
    image = model.modalities["image"]
    rec = image.log_likelihood(image.decode(mu), batch.data["image"])
    kl = 0.5 * (logvar.exp() + mu**2 - 1 - logvar).sum(-1)
    torch.testing.assert_close(loss_image, -(rec - 0.7 * kl).sum() / 6)


def test_summary_elbo_scores_z_under_the_fusions_prior():
    """test/elbo uses Fusion.prior(): replacing N(0, I) by N(0, 4I) shifts it by exactly the mean log-prior ratio
    of the same draws, computed here by hand."""
    import math

    from modkit.evaluation.epoch_metrics import test_metrics
    from modkit.core.gaussian import DiagGaussian

    model, batch, device = make_model(), make_batch(), torch.device("cpu")
    torch.manual_seed(0)
    before = test_metrics(model, [batch], device, n_samples=4, coherence=False)["test/elbo"]
    torch.manual_seed(0)
    z = model.posterior(batch, torch.ones(1, 2, dtype=torch.bool)).rsample(4).squeeze(1)  # the same draws
    model.fusion.prior = lambda: DiagGaussian(torch.zeros(4), torch.full((4,), math.log(4.0)))
    torch.manual_seed(0)
    after = test_metrics(model, [batch], device, n_samples=4, coherence=False)["test/elbo"]
    ratio = (-0.5 * math.log(4.0) + 3.0 * z.double() ** 2 / 8.0).sum(-1)  # log N(z; 0, 4I) − log N(z; 0, I)
    assert abs((after - before) - ratio.mean().item()) < 1e-4


def test_present_reconstruction_weights_present_terms_and_zeroes_absent_ones():
    model = make_model()
    model.modalities["label"].config.weight = 3.0
    image_ll = torch.tensor([[1.0, 2.0, 3.0]])
    label_ll = torch.tensor([[float("nan"), 10.0, float("-inf")]])  # garbage where the label is absent
    present = torch.tensor([[True, False], [True, True], [False, False]])
    total, per = model.present_reconstruction([image_ll, label_ll], present)
    assert torch.equal(total, torch.tensor([[1.0, 32.0, 0.0]]))
    assert torch.equal(per["label"], torch.tensor([[0.0, 10.0, 0.0]]))
    total, per = model.present_reconstruction([image_ll, None], present)
    assert list(per) == ["image"] and torch.equal(total, torch.tensor([[1.0, 2.0, 0.0]]))
