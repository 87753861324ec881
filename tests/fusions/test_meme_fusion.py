"""The MEME fusion's loss against the objective written out by hand on real digits modalities."""
import pytest
import torch

from modkit.core.gaussian import kl_gaussians, kl_standard_normal, reparameterize


def test_paired_loss_with_no_extra_samples_matches_the_written_out_objective(tiny, first_batch):
    # K = 0 and the posterior sample included: log q(t|s) = log q(t|z0), so w = 1 exactly
    setup = tiny("digits-meme", "model.fusion.samples=0", "model.fusion.supervision=3", "modalities.label.weight=2")
    model, fusion = setup.model, setup.model.fusion
    batch = first_batch(setup.train, 16)
    beta = 0.5
    with torch.no_grad():
        torch.manual_seed(7)
        out = fusion.loss(model, batch, None, beta)
        torch.manual_seed(7)
        e = model.encode(batch)
        z = reparameterize(e.mu, e.logvar)  # (2, B, D): z[0] from the image, z[1] from the label
        img, lab = model.modalities["image"], model.modalities["label"]
        x, y = batch.data["image"], batch.data["label"]
        ll = {("image", 0): img.log_likelihood(img.decode(z[0]), x), ("label", 0): lab.log_likelihood(lab.decode(z[0]), y),
              ("image", 1): img.log_likelihood(img.decode(z[1]), x), ("label", 1): lab.log_likelihood(lab.decode(z[1]), y)}
        kl_img = kl_gaussians(e.mu[0], e.logvar[0], e.mu[1], e.logvar[1])  # KL(q(z|image) ‖ q(z|label))
        kl_lab = kl_gaussians(e.mu[1], e.logvar[1], e.mu[0], e.logvar[0])
        c = 3.0
        image_dir = 1.0 * ll["image", 0] - ll["label", 0] - beta * kl_img + c * ll["label", 0]
        label_dir = 2.0 * ll["label", 1] - ll["image", 1] - beta * kl_lab + c * ll["image", 1]
        expected = -(image_dir + label_dir).sum() / len(batch)
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(out.terms["w"] / out.terms["paired"], torch.tensor(1.0))


def test_unpaired_samples_use_the_prior_and_only_their_own_decoder(tiny, first_batch):
    setup = tiny("digits-meme", "model.fusion.pseudo_samples=0")
    model, fusion = setup.model, setup.model.fusion
    batch = first_batch(setup.train, 16)
    present = batch.present.clone()
    present[:8, 1] = False  # rows 0-7: image only
    present[8:, 0] = False  # rows 8-15: label only
    batch = batch.with_present(present)
    with torch.no_grad():
        torch.manual_seed(3)
        out = fusion.loss(model, batch, None, 1.0)
        torch.manual_seed(3)
        e = model.encode(batch)
        z = reparameterize(e.mu, e.logvar)
        img, lab = model.modalities["image"], model.modalities["label"]
        image_rows = img.log_likelihood(img.decode(z[0]), batch.data["image"]) - kl_standard_normal(e.mu[0], e.logvar[0])
        label_rows = lab.log_likelihood(lab.decode(z[1]), batch.data["label"]) - kl_standard_normal(e.mu[1], e.logvar[1])
        expected = -(image_rows[:8].sum() + label_rows[8:].sum()) / 16
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-4)


def test_pseudo_samples_get_gradients_only_from_unpaired_samples(tiny, first_batch):
    setup = tiny("digits-meme", "model.fusion.pseudo_samples=4")
    model, fusion = setup.model, setup.model.fusion
    batch = first_batch(setup.train, 16)
    fusion.loss(model, batch, None, 1.0).loss.backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in fusion.pseudo.values())  # all paired
    model.zero_grad()
    present = batch.present.clone()
    present[:, 1] = False
    fusion.loss(model, batch.with_present(present), None, 1.0).loss.backward()
    assert fusion.pseudo["label"].grad.abs().sum() > 0  # image-only rows: the label pseudo-samples are their prior


THIRD = "modalities.digit={type: label, num_classes: 10, field: label, hidden: [32], embedding_dim: 8}"


def test_three_modalities_use_the_product_of_the_other_two_as_prior(tiny, first_batch):
    setup = tiny("digits-meme", THIRD, "model.fusion.samples=0", "model.fusion.supervision=2")
    model, fusion = setup.model, setup.model.fusion
    batch = first_batch(setup.train, 8)
    with torch.no_grad():
        torch.manual_seed(4)
        out = fusion.loss(model, batch, None, 1.0)
        torch.manual_seed(4)
        e = model.encode(batch)
        z = reparameterize(e.mu, e.logvar)
        names = model.names
        ll = [[model.modalities[t].log_likelihood(model.modalities[t].decode(z[s]), batch.data[t]) for t in names] for s in range(3)]
        total = 0
        for s in range(3):
            others = [t for t in range(3) if t != s]
            prec = sum(torch.exp(-e.logvar[t].double()) for t in others)  # PoE of the other two, by hand
            mu = sum(e.mu[t].double() * torch.exp(-e.logvar[t].double()) for t in others) / prec
            kl = kl_gaussians(e.mu[s].double(), e.logvar[s].double(), mu, -torch.log(prec))
            log_qt = sum(ll[s][t] for t in others)
            total = total + ll[s][s] - log_qt - kl + 2.0 * log_qt
        expected = -total.sum() / len(batch)
    torch.testing.assert_close(out.loss.double(), expected, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("combine", ["poe", "moe"])
def test_three_modalities_train_with_missing_ones(tiny, combine):
    setup = tiny("digits-meme-partial", THIRD, f"model.fusion.combine={combine}", "model.fusion.pseudo_samples=8")
    model = setup.model
    batch = setup.train.__getitems__(list(range(0, len(setup.train), 25)))
    present = batch.present.clone()
    present[::3, 2] = False  # some rows lose the third modality too: partially paired triples
    out = model(batch.with_present(present), None, 1.0)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
