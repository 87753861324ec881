"""M2: Gumbel-softmax limits, the temperature schedule, and the supervised vs unsupervised terms."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from modkit_m2.relaxed import annealed_temperature, entropy, one_hot, relaxed_one_hot


def test_gumbel_softmax_low_temperature_gives_one_hot_with_class_frequencies():
    torch.manual_seed(0)
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    n = 40_000
    samples = relaxed_one_hot(probs.log().expand(n, 4), tau=1e-3, class_axis=-1)
    assert (samples.max(-1).values > 0.99).float().mean() > 0.99  # essentially one-hot
    freq = samples.argmax(-1).bincount(minlength=4).float() / n
    se = torch.sqrt(probs * (1 - probs) / n)
    assert ((freq - probs).abs() < 4 * se).all(), (freq, probs)


def test_gumbel_softmax_per_pixel_class_axis():
    torch.manual_seed(1)
    logits = torch.randn(1, 3, 2, 2)  # (B, K, H, W): per-pixel classes on axis 1
    n = 20_000
    samples = relaxed_one_hot(logits.expand(n, 3, 2, 2), tau=0.01, class_axis=1)
    torch.testing.assert_close(samples.sum(1), torch.ones(n, 2, 2))
    freq = torch.nn.functional.one_hot(samples.argmax(1), 3).float().mean(0).permute(2, 0, 1)  # (K, H, W)
    probs = logits[0].softmax(0)
    assert ((freq - probs).abs() < 4 * torch.sqrt(probs * (1 - probs) / n) + 1e-3).all()


def test_gumbel_softmax_high_temperature_is_near_uniform():
    torch.manual_seed(2)
    logits = torch.tensor([[4.0, 0.0, -2.0, 1.0]]).expand(1000, 4)
    samples = relaxed_one_hot(logits, tau=1000.0, class_axis=-1)
    assert (samples - 0.25).abs().max() < 0.02


def test_temperature_schedule():
    steps = torch.tensor([0, 1000, 10_000, 10**6])
    tau = annealed_temperature(steps, start=2.0, minimum=0.5, rate=1e-4)
    expected = [max(0.5, 2.0 * math.exp(-1e-4 * s)) for s in steps.tolist()]
    torch.testing.assert_close(tau, torch.tensor(expected))


def test_entropy_and_one_hot_with_class_axis():
    logits = torch.randn(2, 3, 4, 5)
    p = logits.double().softmax(1).numpy()
    expected = -(p * np.log(p)).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(entropy(logits, 1).numpy(), expected, rtol=1e-5)
    labels = torch.randint(3, (2, 4, 5))
    codes = one_hot(labels, 3, class_axis=1)
    assert codes.shape == (2, 3, 4, 5) and torch.equal(codes.argmax(1), labels)


def _loss(fusion, model, batch, seed):
    torch.manual_seed(seed)
    return fusion.loss(model, batch, None, 1.0).loss


def test_supervised_term_only_on_labelled_samples(tiny, first_batch):
    setup = tiny("digits-m2")
    model, fusion = setup.model, setup.model.fusion
    batch = first_batch(setup.train, 32)
    n = len(batch)
    labelled = batch.present.clone()
    unlabelled = batch.present.clone()
    unlabelled[:, fusion.t_index] = False
    fusion.eval()  # the temperature step counter stays put
    h = fusion._inputs(fusion.input_features(model, batch), batch.present[:, fusion.inputs])
    log_qy = torch.log_softmax(fusion.classify(h), -1).gather(1, batch.data["label"].view(-1, 1)).squeeze(1)  # independent
    with torch.no_grad():
        for alpha in (0.0, 7.0):
            fusion.config.alpha = alpha
            lab = _loss(fusion, model, batch.with_present(labelled), 5)
            unl = _loss(fusion, model, batch.with_present(unlabelled), 5)
            if alpha == 0.0:
                lab0, unl0 = lab, unl
    # labelled: the loss moves by exactly -Δα·Σ log q(y|x)/B; unlabelled: not at all
    torch.testing.assert_close(lab - lab0, -7.0 * log_qy.sum().detach() / n, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(unl, unl0, rtol=0, atol=0)


def test_classifier_gradient_comes_from_alpha_on_labelled_and_from_the_bound_on_unlabelled(tiny, first_batch):
    setup = tiny("digits-m2", "model.fusion.alpha=0")
    model, fusion = setup.model, setup.model.fusion
    batch = first_batch(setup.train, 32)
    unlabelled = batch.present.clone()
    unlabelled[:, fusion.t_index] = False

    def classifier_grad(b):
        model.zero_grad()
        _loss(fusion, model, b, 3).backward()
        return sum(p.grad.abs().sum() for p in fusion.classifier.parameters() if p.grad is not None)

    assert classifier_grad(batch) == 0  # true one-hot y, α = 0: q(y|x) is not in the bound
    assert classifier_grad(batch.with_present(unlabelled)) > 0  # relaxed y ~ q(y|x) and H(q) are


def test_posterior_puts_the_given_label_in_the_reserved_dims(tiny, first_batch):
    setup = tiny("digits-m2")
    model, fusion = setup.model, setup.model.fusion
    batch = first_batch(setup.train, 16)
    model.eval()
    with torch.no_grad():
        post = model.posterior(batch, ["image", "label"]).mean[0]
        image_only = model.posterior(batch, ["image"]).mean[0]
        label_only = model.posterior(batch, ["label"]).mean[0]
    k = fusion.num_classes
    assert post.shape == (16, model.latent_dim)
    torch.testing.assert_close(post[:, -k:], one_hot(batch.data["label"], k, 1))
    torch.testing.assert_close(image_only[:, -k:].sum(-1), torch.ones(16))  # q(y|x) probabilities
    torch.testing.assert_close(label_only[:, :-k], torch.zeros(16, model.latent_dim - k))  # z_c from the prior


def test_temperature_anneals_with_training_steps(tiny, first_batch):
    setup = tiny("digits-m2", "model.fusion.temperature.rate=0.1")
    model, fusion = setup.model, setup.model.fusion
    batch = first_batch(setup.train, 8)
    model.train()
    taus = [fusion.loss(model, batch, None, 1.0).terms["tau"].item() for _ in range(3)]
    assert taus == pytest.approx([1.0, math.exp(-0.1), math.exp(-0.2)], rel=1e-5)
    assert int(model.state_dict()["fusion.step"]) == 3  # the schedule's clock is checkpointed, so resume continues it


def test_accuracy_helper_reads_the_run_through_modkit_load(tmp_path, monkeypatch):
    """python -m modkit_m2.accuracy RUN: the run's own recipe and checkpoint (modkit.load), no rebuild of its own."""
    import modkit
    from modkit_m2.accuracy import classifier_accuracy, main

    # this folder's conftest values, spelled out: `import conftest` finds whichever tests/*/conftest.py loaded first
    ROOT = Path(__file__).resolve().parents[2]
    SMALL = ["modalities.image.hidden=[32]", "modalities.label.hidden=[32]", "modalities.label.embedding_dim=8"]

    monkeypatch.chdir(tmp_path)
    modkit.train(ROOT / "recipes" / "digits-m2.yaml", overrides=[*SMALL, "train.epochs=1", "train.device=cpu"], out="m2",
                 echo=lambda s: None)
    result = classifier_accuracy(tmp_path / "m2", "cpu")
    assert 0 <= result["classifier_accuracy"] <= 1 and result["n"] > 0
    assert main([str(tmp_path / "nowhere")]) == 1


def test_no_gaussian_prior_so_test_elbo_and_likelihoods_are_not_applicable(tiny):
    """z = [z_c, y] with y a near point mass: under N(0, I) the test ELBO would be dominated by y's fake density."""
    from modkit.data.dataset import EpochBatchSampler, make_loader
    from modkit.evaluation import epoch_metrics
    from modkit.evaluation.likelihood import no_prior_reason

    setup = tiny("digits-m2")
    assert setup.model.fusion.prior() is None
    loader = make_loader(setup.test, EpochBatchSampler(len(setup.test), 256, shuffle=False))
    metrics = epoch_metrics.test_metrics(setup.model, loader, torch.device("cpu"))
    assert metrics["test/elbo"] is None and 0 <= metrics["balanced_accuracy/image->label"] <= 1
    assert no_prior_reason(setup.model).startswith("not applicable: the M2 fusion carries y as a relaxed one-hot")
