"""The peer side of the benchmark: MultiVae 1.0.3, run by the python of its own venv (see run.py).

Builds MultiVae's MVAE, MoPoE and MMVAE with the same networks modkit's image modality builds
(784→512→512→(μ, log σ²) encoders and 64→512→512→784 Bernoulli-logit decoders, SiLU between
layers), on the same synthetic data, and times what MultiVae's ``BaseTrainer.train_step`` does per
batch: ``model(inputs)``, backward, Adam step, ``loss.item()``. Its data loading and metric
bookkeeping are left out, which only flatters the peer.
"""
from __future__ import annotations

import argparse
import json

import torch
from torch import nn

from bench_common import SIDE, PRIVATE, Floor, base_args, device_tools, floor_rows, rates, emit, set_threads, summary, synthetic_data, time_interleaved


def mlp(widths: list) -> nn.Sequential:
    """Linear layers of these widths with SiLU between them (none after the last), as modkit's ``mlp``."""
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.SiLU()]
    return nn.Sequential(*layers[:-1])


def flat(x):
    return x.reshape(len(x), -1)


def trunk() -> nn.Sequential:
    """The encoders' 784→512→512 part, whose output is a modality's features in modkit."""
    return nn.Sequential(nn.Linear(784, 512), nn.SiLU(), nn.Linear(512, 512), nn.SiLU())


def build(kind: str, n: int, latent: int, moe_k: int, joint: str = "multivae"):
    """MultiVae's model of ``kind`` on the benchmark's networks. ``joint`` (JMVAE, TELBO, JNF): "multivae", MultiVae's
    default joint encoder (copies of the encoders, their means concatenated, then 2 × 512: what its users get), or
    "modkit", modkit's (an MLP over the trunks' 512 features each: the same function as modkit's model)."""
    from multivae.models.base import BaseDecoder, BaseEncoder, ModelOutput
    from multivae.models.nn.base_architectures import BaseJointEncoder, BaseMultilatentEncoder

    class Encoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.net = trunk()
            self.head = nn.Linear(512, 2 * latent)
            self.latent_dim = latent  # MultiVae's default joint encoder (JMVAE) sizes itself from it

        def forward(self, x):
            mu, log_var = self.head(self.net(x.reshape(-1, 784))).chunk(2, dim=-1)
            return ModelOutput(embedding=mu, log_covariance=log_var)

    class Decoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(latent, 512), nn.SiLU(), nn.Linear(512, 512), nn.SiLU(), nn.Linear(512, 784))

        def forward(self, z):
            out = self.net(z.reshape(-1, z.shape[-1]))
            return ModelOutput(reconstruction=out.reshape(*z.shape[:-1], *SIDE))

    class StyleEncoder(BaseMultilatentEncoder):  # [shared; private] heads for DMVAE and MMVAE+
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(784, 512), nn.SiLU(), nn.Linear(512, 512), nn.SiLU())
            self.head = nn.Linear(512, 2 * (latent + PRIVATE))

        def forward(self, x):
            h = self.head(self.net(x.reshape(-1, 784)))
            mu, log_var, style_mu, style_log_var = h.split([latent, latent, PRIVATE, PRIVATE], dim=-1)
            return ModelOutput(embedding=mu, log_covariance=log_var, style_embedding=style_mu, style_log_covariance=style_log_var)

    class StyleDecoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(latent + PRIVATE, 512), nn.SiLU(), nn.Linear(512, 512), nn.SiLU(), nn.Linear(512, 784))

        def forward(self, z):
            out = self.net(z.reshape(-1, z.shape[-1]))
            return ModelOutput(reconstruction=out.reshape(*z.shape[:-1], *SIDE))

    class Joint(BaseJointEncoder):
        """modkit's joint encoder (``modkit.JointEncoder``, hidden [512, 512]), for ``joint="modkit"``: an MLP over every modality's 512
        features and the presence bits, on ``trunks`` (the unimodal encoders' own, shared, where modkit's joint
        encoder reads the encoders' features; copies where modkit's has its own, as TELBO's). MultiVae hands a joint
        encoder the raw inputs, so shared trunks run again here."""

        def __init__(self, trunks):
            super().__init__()
            self.trunks, self.net = nn.ModuleList(trunks), mlp([512 * n + n, 512, 512, 2 * latent])
            self.latent_dim = latent

        def forward(self, x):
            f = [t(flat(x[m])) for t, m in zip(self.trunks, names)]
            mu, log_var = self.net(torch.cat([*f, f[0].new_ones(len(f[0]), n)], -1)).chunk(2, dim=-1)
            return ModelOutput(embedding=mu, log_covariance=log_var)

    names = [f"m{i}" for i in range(n)]
    common = dict(n_modalities=n, latent_dim=latent, input_dims={m: SIDE for m in names},
                  decoders_dist={m: "bernoulli" for m in names})
    encoders = {m: Encoder() for m in names}
    decoders = {m: Decoder() for m in names}
    if kind == "mvae":
        from multivae.models import MVAE, MVAEConfig

        # full + singles (use_subsampling, k = 0), β = 1 from the first step (warmup 0)
        return MVAE(MVAEConfig(**common, use_subsampling=True, k=0, warmup=0, beta=1.0), encoders, decoders), names
    if kind == "mopoe":
        from multivae.models import MoPoE, MoPoEConfig

        return MoPoE(MoPoEConfig(**common, beta=1.0), encoders, decoders), names  # all 2^N − 1 subsets
    if kind == "moe":
        from multivae.models import MMVAE, MMVAEConfig

        config = MMVAEConfig(**common, K=moe_k, prior_and_posterior_dist="normal", learn_prior=False, beta=1.0, loss="dreg_looser")
        return MMVAE(config, encoders, decoders), names
    if kind == "jmvae":
        from multivae.models import JMVAE, JMVAEConfig

        shared = Joint([encoders[m].net for m in names]) if joint == "modkit" else None  # no warm-up
        return JMVAE(JMVAEConfig(**common, alpha=0.1, warmup=0), encoders, decoders, joint_encoder=shared), names
    if kind == "mvtcae":
        from multivae.models import MVTCAE, MVTCAEConfig

        return MVTCAE(MVTCAEConfig(**common, alpha=0.1, beta=1.0), encoders, decoders), names
    if kind == "dmvae":
        from multivae.models import DMVAE, DMVAEConfig

        config = DMVAEConfig(**common, modalities_specific_dim={m: PRIVATE for m in names})
        return DMVAE(config, {m: StyleEncoder() for m in names}, {m: StyleDecoder() for m in names}), names
    if kind == "mmvae_plus":
        from multivae.models import MMVAEPlus, MMVAEPlusConfig

        config = MMVAEPlusConfig(**common, K=moe_k, modalities_specific_dim=PRIVATE, loss="dreg_looser")
        return MMVAEPlus(config, {m: StyleEncoder() for m in names}, {m: StyleDecoder() for m in names}), names
    if kind == "cmvae":
        from multivae.models import CMVAE, CMVAEConfig

        config = CMVAEConfig(**common, K=moe_k, modalities_specific_dim=PRIVATE, loss="dreg_looser", number_of_clusters=10)
        return CMVAE(config, {m: StyleEncoder() for m in names}, {m: StyleDecoder() for m in names}), names
    if kind == "crmvae":
        from multivae.models import CRMVAE, CRMVAEConfig

        return CRMVAE(CRMVAEConfig(**common, beta=1.0), encoders, decoders), names
    if kind == "cvae":
        from multivae.models import CVAE, CVAEConfig
        from multivae.models.nn.base_architectures import BaseConditionalDecoder

        # the networks modkit's CVAE builds (its defaults: hidden [512, 512], a 16-wide code c(x), N(0, I) prior) rather
        # than MultiVae's smaller default MLPs, so both engines train the same function: q(z | x, y) a joint MLP over every
        # modality's encoder trunk; p(y | z, x) the main decoder on [z, c(x)], c an MLP over the conditioning trunks.
        # MultiVae hands each network the raw inputs, so the decoder runs the conditioning trunks again (same weights).
        trunks = nn.ModuleList(trunk() for _ in names)
        code_dim = 16

        class Conditional(BaseConditionalDecoder):
            def __init__(self):
                super().__init__()
                self.trunks, self.code = trunks, mlp([512 * (n - 1) + n - 1, 512, 512, code_dim])
                self.net = mlp([latent + code_dim, 512, 512, 784])
                self.latent_dim = latent

            def forward(self, z, cond_mods):
                f = [t(flat(cond_mods[m])) for t, m in zip(self.trunks[1:], names[1:])]
                c = self.code(torch.cat([*f, f[0].new_ones(len(f[0]), n - 1)], -1))
                return ModelOutput(reconstruction=self.net(torch.cat([z, c], -1)).reshape(len(z), *SIDE))

        config = CVAEConfig(main_modality="m0", conditioning_modalities=names[1:], input_dims={m: SIDE for m in names},
                            latent_dim=latent, decoder_dist="bernoulli")
        return CVAE(config, encoder=Joint(list(trunks)), decoder=Conditional()), names  # q(z | x, y): the joint MLP
    if kind == "telbo":
        from multivae.models import TELBO, TELBOConfig

        # modkit's TELBO joint encoder has its own copies of the trunks; λ = γ = 1 as modkit's weights; epoch 1: the
        # joint stage
        ones = {m: 1.0 for m in names}
        own = Joint([trunk() for _ in names]) if joint == "modkit" else None
        return TELBO(TELBOConfig(**common, warmup=10, lambda_factors=ones, gamma_factors=ones), encoders, decoders,
                     joint_encoder=own), names
    if kind == "jnf":
        from multivae.models import JNF, JNFConfig

        # MultiVae's default MAF flows; epoch 1 of its 10 warm-up epochs trains the joint stage
        shared = Joint([encoders[m].net for m in names]) if joint == "modkit" else None
        return JNF(JNFConfig(**common, warmup=10), encoders, decoders, joint_encoder=shared), names
    if kind == "nexus":
        from multivae.models import Nexus, NexusConfig

        # MultiVae's default top encoders, joint encoder (2 × 512) and top decoders (1 × 512); modality latents = latent
        config = NexusConfig(**common, modalities_specific_dim={m: latent for m in names}, warmup=1)
        return Nexus(config, encoders, decoders), names
    if kind == "mhvae":
        from multivae.models import MHVAE, MHVAEConfig

        # MultiVae ships no blocks for MHVAE: the ones modkit's fusion builds (3 levels, 256 wide, SiLU), over the
        # encoders' 512 features (the first-layer encoders), one posterior block per modality and level
        hidden, levels = 256, 3

        class Features(BaseEncoder):
            def __init__(self):
                super().__init__()
                self.net = nn.Sequential(nn.Linear(784, 512), nn.SiLU(), nn.Linear(512, 512), nn.SiLU())

            def forward(self, x):
                return ModelOutput(embedding=self.net(x.reshape(-1, 784)))

        class Gaussian(BaseEncoder):
            def __init__(self, width, deep=True):
                super().__init__()
                self.net = nn.Sequential(nn.Linear(width, hidden), nn.SiLU(), nn.Linear(hidden, 2 * latent)) if deep else nn.Linear(width, 2 * latent)

            def forward(self, h):
                mu, log_var = self.net(h).chunk(2, dim=-1)
                return ModelOutput(embedding=mu, log_covariance=log_var)

        def skip(level):  # d_1: the 512 features; d_l: a bottom-up block's output
            return 512 if level == 1 else hidden

        bottom_up = {m: [*(nn.Sequential(nn.Linear(skip(i + 1), hidden), nn.SiLU()) for i in range(levels - 2)), Gaussian(skip(levels - 1))]
                     for m in names}
        top_down = [nn.Sequential(nn.Linear(latent, hidden), nn.SiLU()) for _ in range(levels - 1)]
        posterior = {m: [Gaussian(hidden + skip(level)) for level in range(1, levels)] for m in names}
        prior = [Gaussian(hidden, deep=False) for _ in range(levels - 1)]
        config = MHVAEConfig(**common, n_latent=levels, beta=1.0)
        return MHVAE(config, {m: Features() for m in names}, decoders, bottom_up, top_down, posterior, prior), names
    raise SystemExit(f"unknown peer model {kind}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["mvae", "mopoe", "moe", "jmvae", "mvtcae", "dmvae", "mmvae_plus", "cvae", "nll", "crmvae", "cmvae", "telbo", "jnf", "nexus", "mhvae"])
    base_args(parser)
    parser.add_argument("--peer-joint", choices=["multivae", "modkit"], default="multivae",
                        help="JMVAE, TELBO, JNF: MultiVae's default joint encoder, or modkit's (the same function as modkit's)")
    args = parser.parse_args()
    set_threads(args.threads)
    torch.manual_seed(args.seed)
    from multivae.data.datasets.base import MultimodalBaseDataset

    kind = "mvae" if args.mode == "nll" else args.mode
    model, names = build(kind, args.n, args.latent, args.moe_k, args.peer_joint)
    device, sync, probe = device_tools(args.device)
    model.to(device)
    if args.mode == "nll":
        data = synthetic_data(args.n, args.nll_points, args.seed)
        inputs = MultimodalBaseDataset({m: torch.from_numpy(x).to(device) for m, x in zip(names, data)})
        model.eval()
        floor = Floor(args.n, args.latent, 1, device=args.device)
        xs = [inputs.data[m] for m in names]
        times = time_interleaved({"peer": lambda: model.compute_joint_nll(inputs, K=args.nll_k, batch_size_K=100),
                                  "floor": lambda: floor.nll_decode(xs, args.nll_k)}, 1, args.nll_repeats, 0.0, args.nll_repeats, sync=sync)
        emit({"engine": "multivae", "device": args.device, **rates(times, args.nll_points)})
        return

    n_batches = 4
    data = synthetic_data(args.n, n_batches * args.batch, args.seed)
    batches = [MultimodalBaseDataset({m: torch.from_numpy(x[i * args.batch:(i + 1) * args.batch]).to(device) for m, x in zip(names, data)})
               for i in range(n_batches)]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    counter = [0]

    def step() -> None:
        inputs = batches[counter[0] % n_batches]
        counter[0] += 1
        out = model(inputs, epoch=1, batch_ratio=0.0)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        out.loss.item()  # MultiVae's trainer reads the loss back every step

    with probe() as memory:
        for _ in range(3):
            step()
    # the floor, timed step by step between the peer's steps, so both feel the same machine load
    plan = json.loads(args.floor_plan) if args.floor_plan else None  # modkit's model's plan, from run.py: the same floor
    floor = Floor(args.n, args.latent, floor_rows(kind, args.n, args.moe_k), device=args.device, plan=plan)
    xs = [[b.data[m] for m in names] for b in batches]
    times = time_interleaved({"peer": step, "floor": lambda: floor.step(xs[counter[0] % n_batches])},
                             args.warmup, args.steps, args.max_seconds, sync=sync)
    emit({"engine": "multivae", "model": kind, "device": args.device, **summary(times["peer"]), **memory.result(),
          "floor": {**summary(times["floor"]), "plan": plan}})


if __name__ == "__main__":
    main()
