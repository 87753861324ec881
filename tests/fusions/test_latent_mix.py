"""latent_mix: the auxiliary loss, modality dropout, subset posteriors, and the downstream task head."""
from pathlib import Path

import pytest
import torch

from modkit.core.gaussian import kl_standard_normal


def test_aux_loss_is_the_mse_to_detached_features(tiny, first_batch):
    setup = tiny("digits-latent_mix")
    fusion = setup.model.fusion
    z = torch.randn(5, setup.model.latent_dim)
    target = torch.randn(5, fusion.feature_dims[fusion.aux_index], requires_grad=True)
    got = fusion.aux_loss(z, target)
    expected = ((fusion.aux_head(z).detach() - target.detach()) ** 2).mean(-1)
    torch.testing.assert_close(got.detach(), expected)
    got.sum().backward()
    assert target.grad is None  # the target is not pulled towards the guess


def test_aux_term_enters_the_loss_weighted_by_delta(tiny, first_batch):
    setup = tiny("digits-latent_mix", "model.fusion.modality_dropout=0", "model.fusion.feature_mask=0")
    model, fusion = setup.model, setup.model.fusion
    batch = first_batch(setup.train, 32)
    losses = {}
    for delta in (0.0, 3.0):
        fusion.config.aux_weight = delta
        torch.manual_seed(1)
        out = fusion.loss(model, batch, None, 1.0)
        losses[delta] = out
    torch.testing.assert_close(losses[3.0].loss - losses[0.0].loss, 3.0 * losses[0.0].terms["aux"], rtol=1e-4, atol=1e-4)


def test_modality_dropout_keeps_one_present_modality():
    from modkit_latent_mix import LatentMix, LatentMixConfig

    fusion = LatentMix.__new__(LatentMix)
    torch.nn.Module.__init__(fusion)
    fusion.config = LatentMixConfig(type="latent_mix", modality_dropout=0.5)
    torch.manual_seed(0)
    present = torch.rand(20_000, 3) < 0.7
    present[present.sum(1) == 0, 0] = True
    mask = fusion.input_mask(present)
    assert (mask <= present).all() and mask.any(1).all()
    both = present.all(1)
    # with all three present, each is hidden with chance 0.5 except that one is rescued when all are hidden
    rate = 1 - mask[both].float().mean().item()
    assert abs(rate - (0.5 - 0.125 / 3)) < 0.02, rate


def test_subset_posteriors_and_missing_rows(tiny, first_batch):
    setup = tiny("digits-latent_mix-partial")
    model = setup.model
    model.eval()
    view = setup.train
    batch = view.__getitems__(list(range(len(view) - 64, len(view))))  # unpaired rows come after the paired ones
    with torch.no_grad():
        experts = model.encode(batch)
        post = model.fusion.posterior(experts, torch.tensor([[True, False], [False, True], [True, True]]))
    assert post.mu.shape == (3, 64, model.latent_dim)
    torch.testing.assert_close(post.mu[0], experts.mu[0]) and torch.testing.assert_close(post.mu[1], experts.mu[1])
    missing_image = ~batch.present[:, 0]
    assert missing_image.any()
    assert (post.mu[0][missing_image] == 0).all() and (post.logvar[0][missing_image] == 0).all()  # nothing given: N(0, I)
    # the joint posterior of a sample lacking the image is the label-only posterior
    torch.testing.assert_close(post.mu[2][missing_image], post.mu[1][missing_image])


def test_downstream_head_replaces_the_task_decoder(tiny, first_batch):
    setup = tiny("digits-latent_mix", "model.fusion.downstream.task=label", "model.fusion.downstream.head=[16]")
    model, fusion = setup.model, setup.model.fusion
    label = model.modalities["label"]
    assert hasattr(label, "task_head")
    z = torch.randn(7, 3, model.latent_dim)
    assert label.decode(z).shape == (7, 3, 10)  # the task head's output has the decoder's shape
    torch.testing.assert_close(label.decode(z), label.task_head(z.reshape(-1, model.latent_dim)).reshape(7, 3, 10))
    batch = first_batch(setup.train, 32)
    model.train()
    out = fusion.loss(model, batch, None, 1.0)
    out.loss.backward()
    assert {"loss", "rec/label", "correct/label", "scored"} <= set(out.terms)
    grads = lambda m: sum(p.grad.abs().sum().item() for p in m.parameters() if p.grad is not None)  # noqa: E731
    assert grads(fusion.mixer) > 0 and grads(label.task_head) > 0
    assert grads(model.modalities["image"]) == 0  # frozen feature encoders
    assert grads(label.decoder) == 0  # the swapped-out decoder is unused
    # the task never feeds the mixer: predicting it from the image alone
    with torch.no_grad():
        e = model.encode(batch)
        full, image = model.fusion.posterior(e, torch.tensor([[True, True], [True, False]])).mu
    torch.testing.assert_close(full, image)


def test_downstream_head_decoder_keeps_the_task_modalitys_own_decoder(tiny, first_batch):
    setup = tiny("digits-latent_mix", "model.fusion.downstream.task=image", "model.fusion.downstream.head=decoder",
                 "model.fusion.downstream.freeze_features=false")
    model, fusion = setup.model, setup.model.fusion
    image = model.modalities["image"]
    assert not hasattr(image, "task_head")  # nothing swapped: decode is the image's own decoder
    z = torch.randn(5, model.latent_dim)
    torch.testing.assert_close(image.decode(z), image.decoder_net(z))
    model.train()
    out = fusion.loss(model, first_batch(setup.train, 32), None, 1.0)
    out.loss.backward()
    grads = lambda m: sum(p.grad.abs().sum().item() for p in m.parameters() if p.grad is not None)  # noqa: E731
    assert "rec/image" in out.terms and grads(image.decoder) > 0 and grads(fusion.mixer) > 0
    assert grads(model.modalities["label"]) > 0  # the source's encoder trains too (freeze_features: false)


def test_downstream_starts_from_a_pretraining_run(tiny, tmp_path, plugins):
    from modkit.storage import checkpoint

    pre = tiny("digits-latent_mix")
    checkpoint.save_checkpoint(tmp_path, {"model": pre.model.state_dict()})
    down = tiny("digits-latent_mix", "model.fusion.downstream.task=label", f"model.fusion.downstream.init_from={tmp_path}")
    down.model.fusion.initialize(down.model)  # what a new run does once, before its first step
    for key, value in pre.model.state_dict().items():
        if key.startswith(("fusion.mixer", "fusion.gaussian", "modalities.image")):
            torch.testing.assert_close(down.model.state_dict()[key], value, rtol=0, atol=0)


def test_kl_term_is_the_standard_normal_kl(tiny, first_batch):
    setup = tiny("digits-latent_mix", "model.fusion.modality_dropout=0", "model.fusion.feature_mask=0")
    model, fusion = setup.model, setup.model.fusion
    batch = first_batch(setup.train, 16)
    model.eval()
    with torch.no_grad():
        out = fusion.loss(model, batch, None, 1.0)
        mu, logvar = fusion.mix(fusion.features(model, batch), batch.present)
    torch.testing.assert_close(out.terms["kl"], kl_standard_normal(mu, logvar).mean())


@pytest.mark.slow
def test_a_fine_tuned_run_is_self_contained(tmp_path, monkeypatch):
    """init_from is read once, when the fine-tuning run starts; the run then loads and resumes after the
    pretraining run has moved away."""
    import modkit
    from modkit.storage import checkpoint

    # this folder's conftest values, spelled out: `import conftest` finds whichever tests/*/conftest.py loaded first
    ROOT = Path(__file__).resolve().parents[2]
    SMALL = ["modalities.image.hidden=[32]", "modalities.label.hidden=[32]", "modalities.label.embedding_dim=8"]

    monkeypatch.chdir(tmp_path)
    sets = [*SMALL, "train.epochs=1", "train.device=cpu", "train.progress=false"]
    quiet = dict(echo=lambda s: None)
    pre = modkit.train(ROOT / "recipes" / "digits-latent_mix.yaml", overrides=sets, out="pre", **quiet)
    down = modkit.train(ROOT / "recipes" / "digits-latent_mix.yaml", out="down", **quiet,
                        overrides=[*sets, "model.fusion.downstream.task=label", "model.fusion.downstream.init_from=pre"])
    assert down.run_dir.is_dir()
    from modkit.storage import state_file

    # the checkpoint written before the first step holds the pretrained mixer and modalities
    first = state_file.read(tmp_path / "down" / checkpoint.PREVIOUS, checkpoint.KIND, checkpoint.CHECKPOINT_FORMAT)
    assert first["global_step"] == 0
    copied = [k for k in pre.model.state_dict() if k.startswith(("fusion.mixer", "fusion.gaussian", "modalities.image"))]
    assert copied and all(torch.equal(first["model"][k], pre.model.state_dict()[k].cpu()) for k in copied)
    (tmp_path / "pre").rename(tmp_path / "moved")
    loaded = modkit.load("down", "cpu")
    assert loaded.generate(given={"image": loaded.setup.test.__getitems__([0]).data["image"][0].numpy()}, target="label", n=1)
    resumed = modkit.train(resume="down", overrides={"train.epochs": 2}, **quiet)
    assert resumed.checkpoint_epoch == 2
