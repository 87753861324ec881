"""The peer arm's worker: trains MultiVae's model on the rows modkit's arm trains on, run by the python of
MultiVae's own venv (never imported into modkit's process; :mod:`reproductions.peer` starts it).

    python peer_worker.py ROWS.pt CONFIG.json OUT.json

ROWS.pt holds the modkit arm's training rows exactly as its trainer sees them (the image, the label as class
ids, which modality each row shows) and its test rows; CONFIG.json the arm's networks and budget. The networks
are shaped like modkit's MLPs (SiLU between layers; the label's encoder is a bias-free linear map of the
one-hot vector — modkit's embedding table — then the MLP); the minibatches are modkit's (a permutation seeded by
seed · 1,000,003 + epoch, the last batch short); β rises linearly per step as modkit's schedule does; λ is
MultiVae's rescale factor. The model's own forward computes the loss. OUT.json: the label decoded from the mean
of q(z | image) for each test row (modkit's image → label read-out), the last epoch's mean loss and the time.
Only torch and multivae are imported here.
"""
from __future__ import annotations

import json
import math
import sys
import time

import torch
from torch import nn


def mlp(sizes: list[int], final_activation: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or final_activation:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


def networks(config: dict):
    from multivae.models.base import BaseDecoder, BaseEncoder, ModelOutput

    latent = config["latent_dim"]
    shape = tuple(config["image_shape"])
    size = math.prod(shape)
    k = config["num_classes"]

    class ImageEncoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.net = mlp([size, *config["image_hidden"]], final_activation=True)
            self.head = nn.Linear(config["image_hidden"][-1], 2 * latent)
            self.latent_dim = latent

        def forward(self, x):
            mu, log_var = self.head(self.net(x.reshape(len(x), -1))).chunk(2, dim=-1)
            return ModelOutput(embedding=mu, log_covariance=log_var.clone())  # MVAE writes inf into a missing expert's

    class ImageDecoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.net = mlp([latent, *reversed(config["image_hidden"]), size])

        def forward(self, z):
            out = self.net(z.reshape(-1, z.shape[-1]))
            return ModelOutput(reconstruction=out.reshape(*z.shape[:-1], *shape))

    class LabelEncoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(k, config["label_embedding"], bias=False)  # one-hot @ table: modkit's nn.Embedding
            self.net = mlp([config["label_embedding"], *config["label_hidden"]], final_activation=True)
            self.head = nn.Linear(config["label_hidden"][-1], 2 * latent)
            self.latent_dim = latent

        def forward(self, x):
            mu, log_var = self.head(self.net(self.embed(x))).chunk(2, dim=-1)
            return ModelOutput(embedding=mu, log_covariance=log_var.clone())  # MVAE writes inf into a missing expert's

    class LabelDecoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.net = mlp([latent, *reversed(config["label_hidden"]), k])

        def forward(self, z):
            out = self.net(z.reshape(-1, z.shape[-1]))
            return ModelOutput(reconstruction=out.reshape(*z.shape[:-1], k))

    return {"image": ImageEncoder(), "label": LabelEncoder()}, {"image": ImageDecoder(), "label": LabelDecoder()}


def build(config: dict):
    encoders, decoders = networks(config)
    common = dict(n_modalities=2, latent_dim=config["latent_dim"],
                  input_dims={"image": tuple(config["image_shape"]), "label": (config["num_classes"],)},
                  decoders_dist={"image": "bernoulli", "label": "categorical"})
    if config["model"] == "MVAE":
        from multivae.models import MVAE, MVAEConfig

        # the joint ELBO and each single modality's (MVAE's sub-sampling; k random subsets exist only above 2
        # modalities); β is set per step below, so MultiVae's own warm-up is off
        model = MVAE(MVAEConfig(**common, use_subsampling=True, k=0, warmup=0, beta=1.0), encoders, decoders)
    elif config["model"] == "MoPoE":
        from multivae.models import MoPoE, MoPoEConfig

        model = MoPoE(MoPoEConfig(**common, beta=1.0), encoders, decoders)  # all 2^N − 1 subsets
    else:
        raise SystemExit(f"peer_worker: unknown model {config['model']}")
    model.rescale_factors = {"image": float(config["weights"]["image"]), "label": float(config["weights"]["label"])}
    return model


def set_beta(model, config: dict, beta: float) -> None:
    if config["model"] == "MVAE":
        model.beta = beta  # read by forward once epoch ≥ warmup (0)
    else:
        model.model_config.beta = beta  # MoPoE's forward reads its config


def beta_at(spec: dict, progress: float) -> float:
    """modkit's schedule: linear from start to end over anneal_epochs (0: end throughout)."""
    if spec["anneal_epochs"] <= 0:
        return spec["end"]
    return spec["start"] + (spec["end"] - spec["start"]) * min(1.0, progress / spec["anneal_epochs"])


def image_to_label(model, config: dict, image: torch.Tensor) -> torch.Tensor:
    """The label decoded from the mean of q(z | image) alone: MultiVae's own single-modality posterior."""
    from multivae.data.datasets.base import MultimodalBaseDataset

    k = config["num_classes"]
    inputs = MultimodalBaseDataset({"image": image, "label": torch.zeros(len(image), k)})
    if config["model"] == "MVAE":
        mu, _ = model.compute_mu_log_var_subset(inputs, ["image"])
    else:
        mu, _ = model.inference(inputs)["subsets"]["image"]
    return model.decoders["label"](mu).reconstruction.argmax(-1)


def main() -> None:
    rows_path, config_path, out_path = sys.argv[1:4]
    config = json.loads(open(config_path).read())
    torch.set_num_threads(int(config.get("threads", 1)))
    # images in [0, 1] under a Bernoulli likelihood (as modkit's): the cross-entropy of a grey value, which
    # torch's support check would refuse
    torch.distributions.Distribution.set_default_validate_args(False)
    from multivae.data.datasets.base import IncompleteDataset, MultimodalBaseDataset

    rows = torch.load(rows_path, weights_only=True)
    k = config["num_classes"]
    image = rows["train_image"].float()
    label = torch.nn.functional.one_hot(rows["train_label"].long().clamp(0, k - 1), k).float()
    present = rows["train_present"].bool()  # (rows, 2): image, label
    label = label * present[:, 1:2]  # an absent label is zeros (MultiVae's convention for a missing modality)
    image = image * present[:, 0].reshape(-1, *([1] * (image.dim() - 1)))
    partial = not bool(present.all())

    torch.manual_seed(config["seed"])
    model = build(config)
    opt_cls = torch.optim.AdamW if config["optimizer"] == "adamw" else torch.optim.Adam
    optimizer = opt_cls(model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"], amsgrad=config["amsgrad"])
    n, batch = len(image), config["batch_size"]
    steps = math.ceil(n / batch)
    started = time.time()
    losses: list[float] = []
    model.train()
    for epoch in range(config["epochs"]):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(config["seed"] * 1_000_003 + epoch))
        losses = []
        for step in range(steps):
            idx = order[step * batch:(step + 1) * batch]
            data = {"image": image[idx], "label": label[idx]}
            inputs = (IncompleteDataset(data, {"image": present[idx, 0], "label": present[idx, 1]}) if partial
                      else MultimodalBaseDataset(data))
            set_beta(model, config, beta_at(config["beta"], epoch + step / steps))
            loss = model(inputs, epoch=epoch + 1, batch_ratio=step / steps).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.get("grad_clip"):
                torch.nn.utils.clip_grad_norm_(model.parameters(), config["grad_clip"])
            optimizer.step()
            losses.append(float(loss))
    model.eval()
    with torch.no_grad():
        test = rows["test_image"].float()
        pred = torch.cat([image_to_label(model, config, test[i:i + 1024]) for i in range(0, len(test), 1024)])
    from importlib.metadata import version

    result = {"predictions": pred.tolist(), "last_epoch_loss": sum(losses) / max(1, len(losses)),
              "finite": all(math.isfinite(v) for v in losses), "seconds": time.time() - started,
              "parameters": {m: sum(p.numel() for p in [*model.encoders[m].parameters(), *model.decoders[m].parameters()])
                             for m in ("image", "label")},
              "multivae": version("multivae"), "torch": torch.__version__, "rows": n, "partial": partial}
    with open(out_path, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
