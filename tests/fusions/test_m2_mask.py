"""M2 with a per-pixel mask as its target: the class axis is found from the modality, not assumed last."""
import torch
from torch import nn

from modkit import Batch, Modality, ModalityConfig
from modkit.core.engine import MultimodalVAE
from modkit.core.likelihoods import Categorical
from modkit_image import Image, ImageConfig
from modkit_m2 import M2, M2Config


class Mask(Modality):
    """A toy (H, W) segmentation mask with K classes; decoder output (B, K, H, W), class axis −3."""

    def __init__(self, name, latent_dim, k=3, hw=(4, 4)):
        super().__init__(name, ModalityConfig(type="mask"), latent_dim)
        self.k, self.hw = k, hw
        self.feature_dim = 8
        self.embed = nn.Linear(k * hw[0] * hw[1], 8)
        self.head = nn.Linear(8, 2 * latent_dim)
        self.decoder = nn.Linear(latent_dim, k * hw[0] * hw[1])
        self.likelihood = Categorical(event_dims=2, class_dim=-3)

    def features(self, x):
        return self.embed(nn.functional.one_hot(x.long(), self.k).float().flatten(1))

    def encode(self, x):
        return self.head(self.features(x)).chunk(2, -1)

    def decoder_net(self, z):
        return self.decoder(z).view(-1, self.k, *self.hw)


def test_m2_per_pixel_target():
    torch.manual_seed(0)
    d = 64
    modalities = {"image": Image("image", ImageConfig(type="image", shape=(1, 4, 4), hidden=[16]), d), "mask": Mask("mask", d)}
    fusion = M2(modalities, d, M2Config(type="m2", hidden=[16]))
    assert fusion.target == "mask" and fusion.y_shape == (3, 4, 4) and fusion.class_pos == 0 and fusion.y_dim == 48

    model = MultimodalVAE(modalities, fusion, d)
    b = 6
    present = torch.ones(b, 2, dtype=torch.bool)
    present[3:, 1] = False  # half the masks are missing
    batch = Batch({"image": torch.rand(b, 1, 4, 4), "mask": torch.randint(3, (b, 4, 4))}, present)
    out = fusion.loss(model, batch, None, 1.0)
    out.loss.backward()
    assert torch.isfinite(out.loss) and 0 <= out.terms["correct"] <= out.terms["labelled"] == 0.5
    assert fusion.classifier[0].weight.grad.abs().sum() > 0
    with torch.no_grad():
        experts = fusion.encode(model, batch)
        post = fusion.posterior(experts, torch.tensor([[True, False], [True, True]]))
    assert post.mu.shape == (2, b, d)
    y_img, y_both = post.mu[0, :, -48:].view(b, 3, 4, 4), post.mu[1, :, -48:].view(b, 3, 4, 4)
    torch.testing.assert_close(y_img.sum(1), torch.ones(b, 4, 4))  # per-pixel class probabilities
    torch.testing.assert_close(y_both[:3].argmax(1), batch.data["mask"][:3])  # given masks are their one-hot codes
    torch.testing.assert_close(y_both[3:], y_img[3:])  # missing masks fall back to q(y|x)


def test_m2_with_the_mask_plugin_and_ignored_pixels():
    from modkit_mask import Mask as MaskPlugin, MaskConfig

    torch.manual_seed(0)
    d = 64
    modalities = {"image": Image("image", ImageConfig(type="image", shape=(1, 8, 8), hidden=[16]), d),
                  "seg": MaskPlugin("seg", MaskConfig(type="mask", num_classes=3, shape=(4, 4), hidden=16), d)}
    fusion = M2(modalities, d, M2Config(type="m2", hidden=[16]))
    assert fusion.target == "seg" and fusion.y_shape == (3, 4, 4)

    model = MultimodalVAE(modalities, fusion, d)
    seg = torch.randint(3, (4, 4, 4))
    seg[0, 0, :] = 255  # ignored pixels (the mask plugin's ignore_index)
    batch = Batch({"image": torch.rand(4, 1, 8, 8), "seg": seg}, torch.ones(4, 2, dtype=torch.bool))
    out = fusion.loss(model, batch, None, 1.0)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    with torch.no_grad():
        experts = fusion.encode(model, batch)
        both, image = fusion.posterior(experts, torch.tensor([[True, True], [True, False]])).mu[:, :, -48:].view(2, 4, 3, 4, 4)
    # known pixels carry the given class; ignored ones fall back to q(y|x), like an unlabelled image
    torch.testing.assert_close(both[0, :, 1:].argmax(0), seg[0, 1:])
    torch.testing.assert_close(both[0, :, 1:].amax(0), torch.ones(3, 4))  # one-hot there
    torch.testing.assert_close(both[0, :, 0], image[0, :, 0])
    torch.testing.assert_close(both[1:].argmax(1), seg[1:])
