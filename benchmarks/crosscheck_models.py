"""modkit's JMVAE, MVTCAE, DMVAE, MMVAE+, CVAE, Nexus and MHVAE objectives against MultiVae 1.0.3's, on the same networks, weights, batch and noise.

    python benchmarks/crosscheck_models.py          # writes benchmarks/results/crosscheck-models.json and .md

MultiVae's own model classes compute the peer's objective: they are imported from the MultiVae venv
(``benchmarks/.venv-multivae``, created by ``benchmarks/run.py``; its site-packages is appended to this
python's path, and it uses the same torch through a ``.pth`` file). Their encoders, decoders and joint encoder
are thin wrappers around the very modules of the modkit model (so weights are shared, not copied), and the
label is handed to MultiVae as a one-hot vector, scored by MultiVae's own categorical likelihood; images are
binarised (MultiVae's Bernoulli checks its support). Both draw their one reparameterised sample with
``torch.randn``-equivalent calls of the same shape after the same seed (JMVAE, MVTCAE, CVAE: one draw each), or are
handed the same standard draws in each one's own order (DMVAE and MMVAE+, which draw many), so the noise is shared
exactly and the loss and every parameter's gradient must agree to float32 rounding. The label's λ is MultiVae's rescale factor.
Nexus's forced perceptual dropout (a per-sample Bernoulli, subset size and permutation in MultiVae) is handed to both as
the same per-sample draws.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from run import PEER_VENV, PEER_VERSION, commit, cpu_name, peer_python  # noqa: E402

SMALL = ["modalities.image.hidden=[64]", "modalities.label.hidden=[64]", "model.latent_dim=8"]
BATCH = 32
SEEDS = (0, 1, 2)
#: float32 rounding over a few hundred terms: the gradients' largest difference relative to their largest entry
RTOL = 1e-4


def peer_site() -> Path:
    import subprocess

    python, why = peer_python(create=False)
    if python is None:
        raise SystemExit(f"{why}; create it with: python -c \"import sys; sys.path.insert(0, 'benchmarks'); "
                         "import run; run.peer_python(create=True)\"")
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         check=True, capture_output=True, text=True)
    return Path(out.stdout.strip())


def modkit_model(fusion: str, overrides: list[str]):
    from modkit.config.recipe import load_recipe
    from modkit.data.dataset import EpochBatchSampler, make_loader
    from modkit.plugins.loader import load_plugins
    from modkit.training.builder import build

    recipe, _ = load_recipe(ROOT / "recipes" / f"digits-{fusion}.yaml", [*SMALL, *overrides])
    torch.manual_seed(0)
    setup = build(recipe, load_plugins())
    batch = next(iter(make_loader(setup.train, EpochBatchSampler(len(setup.train), BATCH, seed=0))))
    batch.data["image"] = (batch.data["image"] > 0.5).float()  # binary pixels: MultiVae's Bernoulli validates its support
    return setup.model, batch


def peer_model(kind: str, model, options: dict):
    """MultiVae's model of ``kind`` around the modkit model's own modules."""
    from multivae.models.base import BaseDecoder, BaseEncoder, ModelOutput
    from multivae.models.nn.base_architectures import BaseJointEncoder, BaseMultilatentEncoder

    from modkit import over_leading

    names = model.names

    def expert(name, x):
        """modkit's encoder of ``name`` on MultiVae's input (the label arrives one-hot there)."""
        return model.modalities[name].encode(x.argmax(-1) if name == "label" else x)

    class Encoder(BaseEncoder):
        def __init__(self, name):
            super().__init__()
            self.name, self.modality = name, model.modalities[name]

        def forward(self, x):
            mu, logvar = expert(self.name, x)
            return ModelOutput(embedding=mu, log_covariance=logvar)

    layout = model.fusion.layout

    class Encoder2(BaseMultilatentEncoder):  # [shared; private] experts: MultiVae's multi-latent encoder
        def __init__(self, name):
            super().__init__()
            self.name, self.modality = name, model.modalities[name]

        def forward(self, x):
            mu, logvar = expert(self.name, x)
            d = layout.shared
            return ModelOutput(embedding=mu[..., :d], log_covariance=logvar[..., :d],
                               style_embedding=mu[..., d:], style_log_covariance=logvar[..., d:])

    class Decoder(BaseDecoder):
        def __init__(self, name):
            super().__init__()
            self.modality = model.modalities[name]

        def forward(self, z):  # MultiVae hands [u, w_m] itself: the decoder proper, without modkit's latent view
            return ModelOutput(reconstruction=over_leading(self.modality.decoder_net, z))

    class Joint(BaseJointEncoder):
        def __init__(self):
            super().__init__()
            self.joint = model.fusion.joint

        def forward(self, x):
            feats = [model.modalities[n].features(x[n].argmax(-1) if n == "label" else x[n]) for n in names]
            mu, logvar = self.joint(feats, torch.ones(1, len(names), dtype=torch.bool))
            return ModelOutput(embedding=mu, log_covariance=logvar)

    common = dict(n_modalities=len(names), latent_dim=model.latent_dim,
                  input_dims={"image": (1, 8, 8), "label": (10,)},
                  decoders_dist={"image": "bernoulli", "label": "categorical"})
    encoders = {n: Encoder(n) for n in names}
    decoders = {n: Decoder(n) for n in names}
    if kind == "jmvae":
        from multivae.models import JMVAE, JMVAEConfig

        peer = JMVAE(JMVAEConfig(**common, **options), encoders, decoders, joint_encoder=Joint())
    elif kind == "mvtcae":
        from multivae.models import MVTCAE, MVTCAEConfig

        peer = MVTCAE(MVTCAEConfig(**common, **options), encoders, decoders)
    elif kind == "dmvae":
        from multivae.models import DMVAE, DMVAEConfig

        options = {**options, "modalities_specific_dim": {n: layout.private for n in names}}
        common["latent_dim"] = layout.shared
        peer = DMVAE(DMVAEConfig(**common, **options), {n: Encoder2(n) for n in names}, decoders)
    elif kind == "mmvae_plus":
        from multivae.models import MMVAEPlus, MMVAEPlusConfig

        common["latent_dim"] = layout.shared
        peer = MMVAEPlus(MMVAEPlusConfig(**common, **options, modalities_specific_dim=layout.private),
                         {n: Encoder2(n) for n in names}, decoders)
        for n in names:  # the same prior scale parameters, not copies
            peer.logvars_priors[n] = model.fusion.modality_prior_logvar[n]
        peer.logvars_priors["shared"] = model.fusion.shared_prior_logvar
    elif kind == "cmvae":
        from multivae.models import CMVAE, CMVAEConfig

        class Rows:  # MultiVae's per-cluster parameters as fresh views of modkit's (C, D) table: the same weights, not copies
            def __init__(self, table):
                self.table = table

            def __getitem__(self, i):
                return self.table[i:i + 1]

            def __len__(self):
                return len(self.table)

        common["latent_dim"] = layout.shared
        peer = CMVAE(CMVAEConfig(**common, **options, modalities_specific_dim=layout.private), {n: Encoder2(n) for n in names}, decoders)
        for n in names:
            peer.r_logvars_priors[n] = model.fusion.modality_prior_logvar[n]
        clusters = model.fusion.clusters
        peer._pc_params = clusters.logits
        del peer.mean_clusters, peer.logvar_clusters
        peer.mean_clusters, peer.logvar_clusters = Rows(clusters.loc), Rows(clusters.raw_scale)
    elif kind == "crmvae":
        from multivae.models import CRMVAE, CRMVAEConfig

        peer = CRMVAE(CRMVAEConfig(**common, **options), encoders, decoders)
    elif kind == "cvae":
        from multivae.models import CVAE, CVAEConfig
        from multivae.models.nn.base_architectures import BaseConditionalDecoder

        fusion = model.fusion
        main, conds = fusion.config.main_modality, fusion.config.conditioning_modalities

        def feats(x: dict) -> list:
            return [model.modalities[n].features(x[n].argmax(-1) if n == "label" else x[n]) for n in names]

        class Posterior(BaseJointEncoder):  # q(z | x, y) over every modality
            def __init__(self):
                super().__init__()
                self.encoder = fusion.encoder

            def forward(self, x):
                f = feats(x)
                mu, logvar = self.encoder([f[fusion.main], *(f[i] for i in fusion.conditions)], torch.ones(1, 1 + len(conds), dtype=torch.bool))
                return ModelOutput(embedding=mu, log_covariance=logvar)

        class Prior(BaseJointEncoder):  # p(z | x) over the conditioning modalities
            def __init__(self):
                super().__init__()
                self.net = fusion.prior_net

            def forward(self, x):
                f = [model.modalities[n].features(x[n].argmax(-1) if n == "label" else x[n]) for n in conds]
                mu, logvar = self.net(f, torch.ones(1, len(conds), dtype=torch.bool))
                return ModelOutput(embedding=mu, log_covariance=logvar)

        class Conditional(BaseConditionalDecoder):  # p(y | z, x): the main decoder on [z, c(x)]
            def __init__(self):
                super().__init__()
                self.modality, self.code = model.modalities[main], fusion.code
                self.latent_dim = fusion.z_dim

            def forward(self, z, cond_mods):
                f = [model.modalities[n].features(cond_mods[n].argmax(-1) if n == "label" else cond_mods[n]) for n in conds]
                c = self.code(torch.cat([*f, torch.ones(len(z), len(conds))], -1))
                return ModelOutput(reconstruction=self.modality.decode(torch.cat([z, c], -1)))

        config = CVAEConfig(main_modality=main, conditioning_modalities=list(conds), latent_dim=fusion.z_dim,
                            input_dims={"image": (1, 8, 8), "label": (10,)}, decoder_dist="bernoulli" if main == "image" else "categorical",
                            **options)
        peer = CVAE(config, Posterior(), Conditional(), Prior() if fusion.prior_net is not None else None)
    elif kind == "telbo":
        from multivae.models import TELBO, TELBOConfig

        joint = model.fusion.joint

        class TelboJoint(BaseJointEncoder):  # q(z | X) over telbo's own copies of the encoders
            def __init__(self):
                super().__init__()
                self.joint = joint

            def forward(self, x):
                feats = [joint.trunks[n].features(x[n].argmax(-1) if n == "label" else x[n]) for n in names]
                mu, logvar = joint(feats, torch.ones(1, len(names), dtype=torch.bool))
                return ModelOutput(embedding=mu, log_covariance=logvar)

        class DecoderOnly(BaseDecoder):  # MultiVae freezes its decoders' parameters in stage 2: exactly modkit's decoder
            def __init__(self, name):
                super().__init__()
                object.__setattr__(self, "modality", model.modalities[name])  # not a submodule: its encoder must not freeze
                self.net = model.modalities[name].decoder

            def forward(self, z):
                return ModelOutput(reconstruction=over_leading(self.modality.decoder_net, z))

        peer = TELBO(TELBOConfig(**common, **options), encoders, {n: DecoderOnly(n) for n in names}, joint_encoder=TelboJoint())
    elif kind == "nexus":
        from multivae.models import Nexus, NexusConfig

        fusion = model.fusion

        class Message(BaseEncoder):  # a modality's top encoder: its message is MultiVae's embedding
            def __init__(self, name):
                super().__init__()
                self.net = fusion.top_encoders[name]

            def forward(self, w):
                return ModelOutput(embedding=self.net(w), log_covariance=None)

        class Nexus_(BaseEncoder):  # the joint encoder over the aggregated messages
            def __init__(self):
                super().__init__()
                self.net = fusion.joint_encoder

            def forward(self, h):
                mu, logvar = self.net(h)
                return ModelOutput(embedding=mu, log_covariance=logvar)

        class Top(BaseDecoder):  # g_m(u)
            def __init__(self, name):
                super().__init__()
                self.net = fusion.top_decoders[name]

            def forward(self, u):
                return ModelOutput(reconstruction=self.net(u))

        common["latent_dim"] = fusion.layout.shared
        options = {**options, "modalities_specific_dim": {n: fusion.layout.private for n in names}}
        peer = Nexus(NexusConfig(**common, **options), encoders, decoders, top_encoders={n: Message(n) for n in names},
                     joint_encoder=Nexus_(), top_decoders={n: Top(n) for n in names})
    elif kind == "mhvae":
        from multivae.models import MHVAE, MHVAEConfig

        fusion = model.fusion

        class Features(BaseEncoder):  # MultiVae's first-layer encoder: the modality's features are the skip d_1
            def __init__(self, name):
                super().__init__()
                self.name, self.modality = name, model.modalities[name]

            def forward(self, x):
                return ModelOutput(embedding=self.modality.features(x.argmax(-1) if self.name == "label" else x))

        class Head(BaseEncoder):  # a block that ends in a Gaussian (the last bottom-up, prior and posterior blocks)
            def __init__(self, net):
                super().__init__()
                self.net = net

            def forward(self, h):
                mu, logvar = self.net(h)
                return ModelOutput(embedding=mu, log_covariance=logvar)

        bottom_up = {n: [*fusion.bottom_up_blocks[n][:-1], Head(fusion.bottom_up_blocks[n][-1])] for n in names}
        if fusion.config.share_posterior_weights:
            posterior = [Head(block) for block in fusion.posterior_blocks]
        else:
            posterior = {n: [Head(block) for block in fusion.posterior_blocks[n]] for n in names}
        common["latent_dim"] = fusion.level_dim
        peer = MHVAE(MHVAEConfig(**common, **options), {n: Features(n) for n in names}, decoders, bottom_up_blocks=bottom_up,
                     top_down_blocks=list(fusion.top_down), posterior_blocks=posterior,
                     prior_blocks=[Head(block) for block in fusion.prior_blocks])
    else:
        raise ValueError(kind)
    if kind == "telbo":  # its λ and γ are the factors handed to it (a later rescale_factors would not reach them)
        return peer
    if kind != "cvae":  # MultiVae's CVAE has no weight on its one likelihood (modkit's image weight here is 1)
        peer.rescale_factors = {n: float(model.modalities[n].weight) for n in names}
    return peer


def peer_inputs(batch, names, masked: bool):
    from multivae.data.datasets.base import IncompleteDataset, MultimodalBaseDataset

    data = {n: F.one_hot(batch.data[n], 10).float() if n == "label" else batch.data[n] for n in names}
    if masked:
        return IncompleteDataset(data, {n: batch.present[:, i].clone() for i, n in enumerate(names)})
    return MultimodalBaseDataset(data)


def grads(model, loss) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {k: p.grad.detach().clone() for k, p in model.named_parameters() if p.grad is not None}


def shared_noise_dmvae(model, batch):
    """DMVAE draws its 1 + N ELBOs' shared and private noise at once, MultiVae one ``rsample_from_gaussian`` call at a
    time (per ELBO: u, then each modality's w): the same standard-normal draws, handed to each in its own order."""
    import multivae.models.dmvae.dmvae_model as peer_module

    layout, n, count = model.fusion.layout, len(batch), len(model.names)

    def setup(seed: int):
        g = torch.Generator().manual_seed(seed)
        eps_u = torch.randn(count + 1, n, layout.shared, generator=g)
        eps_w = torch.randn(count + 1, count, n, layout.private, generator=g)
        ours = [eps_u, eps_w]
        model.fusion.noise = lambda *shape, like: ours.pop(0)
        theirs = [e for r in range(count + 1) for e in (eps_u[r], *eps_w[r])]
        peer_module.rsample_from_gaussian = lambda mu, log_var, **_: mu + theirs.pop(0) * torch.exp(0.5 * log_var)
    return setup


def shared_noise_mmvae_plus(model, batch, peer):
    """MMVAE+ draws every source's u and w and every auxiliary-prior draw at once, MultiVae one ``rsample`` at a time (per
    source: u, its own w, then r_d's draw for each other modality d): the same standard draws, in each one's order."""
    laplace = model.fusion.laplace
    families = {"post_dist": peer.post_dist, "prior_dist": peer.prior_dist}
    layout, b, n, k = model.fusion.layout, len(batch), len(model.names), model.fusion.config.K
    theirs: list[torch.Tensor] = []

    def queued(family):
        class Queued(family):
            def rsample(self, sample_shape=torch.Size()):
                return self.loc + self.scale * theirs.pop(0)
        return Queued

    for attribute, family in families.items():
        setattr(peer, attribute, queued(family))

    def setup(seed: int):
        g = torch.Generator().manual_seed(seed)
        draw = (lambda *shape: torch.distributions.Laplace(0.0, 1.0).sample(shape)) if laplace else (lambda *shape: torch.randn(shape, generator=g))
        torch.manual_seed(seed)
        eps_u, eps_w, eps_r = draw(n, k, b, layout.shared), draw(n, k, b, layout.private), draw(n, n, k, b, layout.private)
        ours = [eps_u, eps_w, eps_r]
        model.fusion.noise = lambda *shape, like: ours.pop(0)
        theirs.clear()
        for m in range(n):
            theirs.extend([eps_u[m], eps_w[m], *(eps_r[m, d] for d in range(n) if d != m)])
    return setup


def shared_noise_cmvae(model, batch, peer):
    """CMVAE draws as MMVAE+ does, and MultiVae's CMVAE as its MMVAE+, through one ``latent_dist`` for every draw."""
    peer.post_dist = peer.prior_dist = peer.latent_dist
    setup = shared_noise_mmvae_plus(model, batch, peer)
    peer.latent_dist = peer.post_dist
    return setup


def shared_noise_crmvae(model, batch):
    """CRMVAE draws the joint and every unimodal posterior's noise at once, MultiVae one ``rsample_from_gaussian`` call
    at a time (the joint, then each modality): the same standard-normal draws, handed to each in its own order."""
    import multivae.models.crmvae.crmvae_model as peer_module

    shape = (1 + len(model.names), len(batch), model.latent_dim)

    def setup(seed: int):
        eps = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
        model.fusion.noise = lambda *_, like: eps
        theirs = list(eps)
        peer_module.rsample_from_gaussian = lambda mu, log_var, *_, **__: mu + theirs.pop(0) * torch.exp(0.5 * log_var)
def shared_noise_mhvae(model, batch):
    """MHVAE draws every subset's level at once, level by level (noise (L, S, B, D), subsets in modkit's all_subsets
    order); MultiVae one ``rsample_from_gaussian`` per level, z_L first, subset after subset in its combinations
    order: the same standard draws, handed to each in its own order."""
    import itertools

    import multivae.models.mhvae.mhvae_model as peer_module

    fusion, n, names = model.fusion, len(batch), model.names
    levels, count = fusion.n_latent, 2 ** len(names) - 1
    # MultiVae's subsets: sizes 1 … N, each in combinations order; modkit's row of a subset is its bit code − 1
    rows = [sum(1 << i for i in subset) - 1 for r in range(1, len(names) + 1) for subset in itertools.combinations(range(len(names)), r)]

    def setup(seed: int):
        eps = torch.randn(levels, count, n, fusion.level_dim, generator=torch.Generator().manual_seed(seed))
        fusion.noise = lambda *shape, like: eps
        theirs = [eps[k, row] for row in rows for k in range(levels)]
        peer_module.rsample_from_gaussian = lambda mu, log_var, *_, **__: mu + theirs.pop(0) * torch.exp(0.5 * log_var)
    return setup


def mhvae_cases() -> list[dict]:
    """MHVAE against MultiVae 1.0.3's ``MHVAE``: the mean over every subset of its ELBO (MultiVae's batch sum, so
    ``peer_scale`` 1/B), with the run's β times the fusion's handed to MultiVae as its ``beta``."""
    cases = []
    for beta, options, partial in [(1.0, {"n_latent": 3}, False),
                                   (0.5, {"n_latent": 2, "beta": 0.4}, False),
                                   (1.0, {"n_latent": 4, "share_posterior_weights": True}, False),
                                   (0.8, {"n_latent": 3, "beta": 2.0}, True)]:
        overrides = ["model.fusion.hidden=16", *(["data.paired_fraction=0.3"] if partial else []),
                     *(f"model.fusion.{key}={json.dumps(value)}" for key, value in options.items())]
        model, batch = modkit_model("mhvae", overrides)
        model.train()
        peer = peer_model("mhvae", model, {"n_latent": options["n_latent"], "beta": beta * model.fusion.config.beta})
        what = "modalities missing (MultiVae IncompleteDataset)" if partial else "all present"
        cases.append(compare(f"mhvae β={beta}, {options}, {what}", model, batch, peer, peer_inputs(batch, model.names, partial), beta, {},
                             noise=shared_noise_mhvae(model, batch), peer_scale=1.0 / len(batch)))
    return cases


def shared_noise_nexus(model, batch):
    """Nexus draws every modality's w at once, then u; MultiVae one ``rsample_from_gaussian`` per modality, then u:
    the same standard draws in each one's order. Forced perceptual dropout is drawn per sample in MultiVae (a
    Bernoulli, then for a dropped sample a subset size and a permutation): both are handed the same per-sample draws."""
    import multivae.models.nexus.nexus_model as peer_module

    fusion, n, count = model.fusion, len(batch), len(model.names)
    current: dict = {}
    queue: list = []

    class Proxy:  # the peer module's torch, numpy and torch.distributions, with its dropout draws taken from the queue
        def __init__(self, real, **override):
            self.real, self.override = real, override

        def __getattr__(self, name):
            return self.override[name] if name in self.override else getattr(self.real, name)

    class Bernoulli:
        def __init__(self, rate):
            pass

        def sample(self):
            current["draw"] = queue.pop(0)
            return torch.tensor(current["draw"][0])

    import numpy

    peer_module.dist = Proxy(torch.distributions, Bernoulli=Bernoulli)
    peer_module.np = Proxy(numpy, random=Proxy(numpy.random, randint=lambda low, high: current["draw"][1]))
    peer_module.torch = Proxy(torch, randperm=lambda k, *a, **kw: current["draw"][2] if k == count else torch.randperm(k, *a, **kw))

    def setup(seed: int):
        g = torch.Generator().manual_seed(seed)
        eps_w = torch.randn(count, n, fusion.layout.private, generator=g)
        eps_u = torch.randn(n, fusion.layout.shared, generator=g)
        ours = [eps_w, eps_u]
        fusion.noise = lambda *shape, like: ours.pop(0)
        theirs = [*eps_w, eps_u]
        peer_module.rsample_from_gaussian = lambda mu, log_var, **_: mu + theirs.pop(0) * torch.exp(0.5 * log_var)
        drop = torch.rand(n, generator=g) < fusion.config.dropout_rate
        size = torch.randint(1, count, (n,), generator=g)
        order = torch.stack([torch.randperm(count, generator=g) for _ in range(n)])
        keep = torch.ones(n, count, dtype=torch.bool)
        for b in range(n):
            if drop[b]:
                keep[b] = False
                keep[b, order[b, :size[b]]] = True
        fusion.dropout_keep = lambda present: keep & present
        queue[:] = [(float(drop[b]), int(size[b]), order[b]) for b in range(n)]
    return setup


def compare(label: str, model, batch, peer, inputs, modkit_beta: float, peer_kwargs: dict, noise=None, peer_scale: float = 1.0) -> dict:
    """Loss and gradients of both for each seed; ``peer_scale`` turns MultiVae's batch sum into modkit's batch mean."""
    from modkit.core.fusion import SubsetPlan
    from modkit.core.subsets import all_subsets

    plan = SubsetPlan.from_mask(all_subsets(len(model.names)))
    rows = []
    for seed in SEEDS:
        if noise:
            noise(seed)
        torch.manual_seed(seed)
        ours = model(batch, plan, modkit_beta).loss
        g_ours = grads(model, ours)
        if noise:
            noise(seed)
        torch.manual_seed(seed)
        theirs = peer(inputs, **peer_kwargs).loss * peer_scale
        g_theirs = grads(model, theirs)
        keys = sorted(set(g_ours) | set(g_theirs))
        worst, worst_key, finite = 0.0, None, True
        for k in keys:
            a, b = g_ours.get(k), g_theirs.get(k)
            if a is None or b is None:
                worst, worst_key = float("inf"), k
                continue
            finite &= bool(torch.isfinite(b).all())
            scale = max(a.abs().max().item(), b.abs().max().item(), 1e-12)
            diff = (a - b).abs().max().item() / scale
            if diff > worst:
                worst, worst_key = diff, k
        rows.append({"seed": seed, "modkit_loss": ours.item(), "multivae_loss": theirs.item(),
                     "loss_rel_diff": abs(ours.item() - theirs.item()) / max(abs(theirs.item()), 1e-12),
                     "grad_max_rel_diff": worst, "worst_param": worst_key, "parameters": len(keys), "peer_grads_finite": finite})
    match = all(r["loss_rel_diff"] < RTOL and r["grad_max_rel_diff"] < RTOL for r in rows)
    return {"case": label, "match": match, "draws": rows}


def shared_noise_telbo(model, batch):
    """TELBO draws the joint z, then (in its unimodal stage) each modality's z, one ``rsample_from_gaussian`` at a time;
    modkit draws the joint z or all modalities' at once: the same standard draws, handed to each in its own order."""
    import multivae.models.telbo.telbo_model as peer_module

    n, d, count = len(batch), model.latent_dim, len(model.names)

    def setup(seed: int):
        g = torch.Generator().manual_seed(seed)
        eps_joint, eps = torch.randn(n, d, generator=g), torch.randn(count, n, d, generator=g)
        model.fusion.noise = lambda *shape, like: eps if tuple(shape) == tuple(eps.shape) else eps_joint
        theirs = [eps_joint, *eps]
        peer_module.rsample_from_gaussian = lambda mu, log_var, *_, **__: mu + theirs.pop(0) * torch.exp(0.5 * log_var)
    return setup


class TelboKLFixed(torch.nn.Module):
    """MultiVae 1.0.3's TELBO with its unimodal KL corrected: it writes KL(q(z|x_m) ‖ p(z)) as
    −½ Σ(1 + log σ²_joint − μ_m² − σ²_m), the joint encoder's log-variance where the unimodal one belongs; adding
    −½ Σ(log σ²_m − log σ²_joint) per modality (batch mean) turns it into the true KL, which modkit computes."""

    def __init__(self, peer, model):
        super().__init__()
        self.peer, self.model = peer, model

    def forward(self, inputs, **kwargs):
        out = self.peer(inputs, **kwargs)
        joint = self.peer.joint_encoder(inputs.data).log_covariance
        fix = sum(-0.5 * (self.peer.encoders[n](inputs.data[n]).log_covariance - joint).sum() for n in self.model.names)
        out.loss = out.loss + fix / len(joint)
        return out


def telbo_cases() -> list[dict]:
    """TELBO's two stages: the joint ELBO (epoch ≤ warmup), then the unimodal ELBOs with the joint encoder and the
    decoders frozen in both (MultiVae freezes them itself; modkit's trainer freezes what the stage names)."""
    from modkit.training.stages import matches

    cases, warmup = [], 10
    for stage, factors in [("joint", None), ("joint", {"image": 0.5, "label": 3.0}), ("unimodal", None), ("unimodal", {"image": 2.0, "label": 0.7})]:
        model, batch = modkit_model("telbo", ["model.fusion.hidden=[32]"] + ([f"model.fusion.{'lambda' if stage == 'joint' else 'gamma'}_factors="
                                                                               f"{json.dumps(factors)}"] if factors else []))
        model.train()
        weights = {n: float(model.modalities[n].weight) for n in model.names}
        lambdas = factors if stage == "joint" and factors else weights
        gammas = factors if stage == "unimodal" and factors else weights
        peer = peer_model("telbo", model, {"warmup": warmup, "lambda_factors": lambdas, "gamma_factors": gammas})
        model.stage = stage
        if stage == "unimodal":
            for name, p in model.named_parameters():  # the stage's freeze list, as the trainer applies it
                p.requires_grad_(not any(matches(name, pattern) for pattern in ("fusion.joint", "modalities.*.decoder")))
            peer = TelboKLFixed(peer, model)
        what = f"{'λ' if stage == 'joint' else 'γ'}={factors or 'the modality weights'}"
        label = (f"telbo stage {stage}, {what}, all present" + (" (MultiVae's unimodal KL corrected: it uses the joint "
                                                                 "log-variance, see docs/fusions/telbo.md)" if stage == "unimodal" else ""))
        cases.append(compare(label, model, batch, peer, peer_inputs(batch, model.names, False), 1.0,
                             {"epoch": 1 if stage == "joint" else warmup + 1}, noise=shared_noise_telbo(model, batch)))
    return cases


def maf_as_zuko(maf, latent: int, read) -> dict[str, torch.Tensor]:
    """pythae's MAF (MultiVae's default flow) in zuko's parameter layout: ``read(tensor)`` of every weight and bias (the
    weights themselves, or their gradients), keyed by zuko's names under the flow's transform.

    pythae flips the latent after every MADE block; zuko alternates the blocks' variable order instead. Block k of
    zuko is flip^k ∘ pythae's block k ∘ flip^k, which for an odd k is the same network with its input columns reversed
    and its outputs read from the reversed feature. zuko's hidden units depend on the same input prefixes in the same
    order (unit h on the first h mod (D−1) + 1 variables of its order), so the hidden layers map one to one; its output
    layer interleaves each feature's (μ, log_var), where pythae's lists every μ and then every log_var. With an even
    number of blocks the flips cancel at the end, so both maps z ↦ u agree exactly."""
    out = {}
    for k, made in enumerate(maf.net):
        layers = [m for m in made.net if hasattr(m, "mask")]
        odd = k % 2 == 1
        for index, layer in enumerate(layers):
            w, b = read(layer.weight), read(layer.bias)
            if index == 0 and odd:
                w = w.flip(1)
            if index == len(layers) - 1:
                source = [latent - 1 - j if odd else j for j in range(latent)]
                rows = [r for j in source for r in (j, latent + j)]
                w, b = w[rows], b[rows]
            out[f"transforms.{k}.hyper.{2 * index}.weight"], out[f"transforms.{k}.hyper.{2 * index}.bias"] = w, b
    return out


def jnf_cases() -> list[dict]:
    """JNF against MultiVae 1.0.3's ``JNF``: the joint stage (epoch ≤ warmup) and the unimodal stage (epoch > warmup), loss
    and every gradient on shared networks; the flows are MultiVae's own pythae MAFs whose weights are copied into
    modkit's zuko MAFs (:func:`maf_as_zuko`), so the flow gradients are compared through the same map. MultiVae's
    unimodal encoders are whole networks; modkit's read the modality encoders' features, which the joint stage trains
    and the unimodal stage freezes, so the peer's unimodal encoder is handed the same features, detached. Then the
    posterior given one modality: MultiVae's ``encode(..., return_mean=True)`` (the flow's inverse at the Gaussian's mean)
    against modkit's posterior mean, and MultiVae's log-density of a flow posterior (its ``_compute_poe_posterior`` of one
    modality, no prior division) against modkit's ``log_prob``. (JNF-DCCA is not in MultiVae 1.0.3; its DCCA loss is
    checked against an independent computation in tests/fusions/test_jnf.py.)"""
    from multivae.models import JNF, JNFConfig
    from multivae.models.base import BaseDecoder, BaseEncoder, ModelOutput
    from multivae.models.nn.base_architectures import BaseJointEncoder
    from pythae.models.normalizing_flows import MAF, MAFConfig

    from modkit import over_leading

    cases = []
    warmup = 5
    for beta in (1.0, 0.5):
        model, batch = modkit_model("jnf", ["model.fusion.hidden=[32]", "model.fusion.unimodal_hidden=[16]", "model.fusion.hidden_size=16",
                                            f"model.fusion.warmup={warmup}"])
        names, fusion, latent = model.names, model.fusion, model.latent_dim

        def feats(name, x):
            return model.modalities[name].features(x.argmax(-1) if name == "label" else x)

        class Encoder(BaseEncoder):
            def __init__(self, i, name):
                super().__init__()
                self.i, self.name = i, name

            def forward(self, x):
                mu, logvar = fusion.unimodal[self.i](feats(self.name, x).detach())
                return ModelOutput(embedding=mu, log_covariance=logvar)

        class Decoder(BaseDecoder):
            def __init__(self, name):
                super().__init__()
                self.modality = model.modalities[name]

            def forward(self, z):
                return ModelOutput(reconstruction=over_leading(self.modality.decoder_net, z))

        class Joint(BaseJointEncoder):  # owns the modality encoders it reads, so MultiVae's freezing covers them
            def __init__(self):
                super().__init__()
                self.joint, self.modalities = fusion.joint, model.modalities

            def forward(self, x):
                mu, logvar = self.joint([feats(n, x[n]) for n in names], torch.ones(1, len(names), dtype=torch.bool))
                return ModelOutput(embedding=mu, log_covariance=logvar)

        torch.manual_seed(1)
        flows = {n: MAF(MAFConfig(input_dim=(latent,), n_made_blocks=2, n_hidden_in_made=3, hidden_size=16)) for n in names}
        with torch.no_grad():
            for i, n in enumerate(names):
                for p in flows[n].parameters():  # away from the initialisation, so the flows do something
                    p.add_(0.2 * torch.randn_like(p))
                params = dict(fusion.flows[i].named_parameters())
                for key, value in maf_as_zuko(flows[n], latent, lambda t: t.detach()).items():
                    params[key].copy_(value)
        config = JNFConfig(n_modalities=len(names), latent_dim=latent, input_dims={"image": (1, 8, 8), "label": (10,)},
                           decoders_dist={"image": "bernoulli", "label": "categorical"}, warmup=warmup, beta=beta)
        peer = JNF(config, {n: Encoder(i, n) for i, n in enumerate(names)}, {n: Decoder(n) for n in names}, joint_encoder=Joint(), flows=flows)
        peer.rescale_factors = {n: float(model.modalities[n].weight) for n in names}
        inputs = peer_inputs(batch, names, False)
        model.train()
        model.stage = "joint"
        cases.append(compare(f"jnf joint stage (epoch ≤ warmup), β={beta}, all present", model, batch, peer, inputs, beta, {"epoch": warmup}))
        model.stage = None
        if beta != 1.0:  # β does not enter the unimodal stage: one case of it is enough
            continue
        model.stage = "unimodal"
        rows = []
        for seed in SEEDS:
            torch.manual_seed(seed)
            ours = model(batch, SubsetPlanAll(names), beta).loss
            g_ours = grads(model, ours)
            torch.manual_seed(seed)
            theirs = peer(inputs, epoch=warmup + 1).loss
            model.zero_grad(set_to_none=True)
            for f in flows.values():
                f.zero_grad(set_to_none=True)
            theirs.backward()
            g_theirs = {k: p.grad.detach().clone() for k, p in model.named_parameters() if p.grad is not None}
            for i, n in enumerate(names):  # the flows' gradients, read in zuko's layout
                for key, value in maf_as_zuko(flows[n], latent, lambda t: t.grad.detach().clone()).items():
                    g_theirs[f"fusion.flows.{i}.{key}"] = value
            for part in (peer.joint_encoder, peer.decoders):  # MultiVae froze them (they are modkit's modules)
                part.requires_grad_(True)
            rows.append(compare_rows(seed, ours, theirs, g_ours, g_theirs))
        cases.append({"case": "jnf unimodal stage (epoch > warmup; pythae MAF weights mapped onto zuko's), all present",
                      "match": all(r["loss_rel_diff"] < RTOL and r["grad_max_rel_diff"] < RTOL for r in rows), "draws": rows})
        model.stage = None
    # the posterior given one modality: its mean and its log-density
    model.eval()
    rows = []
    with torch.no_grad():
        post = model.posterior(batch, torch.eye(len(names), dtype=torch.bool))
        z = torch.randn(len(names), len(batch), latent, generator=torch.Generator().manual_seed(0))
        ours_lp = post.log_prob(z)
        for i, n in enumerate(names):
            mean = peer.encode(inputs, cond_mod=[n], N=1, return_mean=True).z
            theirs_lp = peer._compute_poe_posterior([n], z[i], inputs.data, divide_prior=False, grad=False)
            diff = ((post.mean[i] - mean).abs().max() / mean.abs().max().clamp_min(1e-12)).item()
            a, b = ours_lp[i].sum().item(), theirs_lp.sum().item()
            rows.append({"seed": i, "modkit_loss": a, "multivae_loss": b, "loss_rel_diff": abs(a - b) / max(abs(b), 1e-12),
                         "grad_max_rel_diff": diff, "worst_param": f"posterior mean given {n}", "parameters": 0, "peer_grads_finite": True})
    cases.append({"case": "jnf posterior given one modality: Σ log q(z|x_m) (loss columns) and its mean (grad column)",
                  "match": all(r["loss_rel_diff"] < RTOL and r["grad_max_rel_diff"] < RTOL for r in rows), "draws": rows})
    return cases


def SubsetPlanAll(names):  # noqa: N802 - reads as the plan it builds
    from modkit.core.fusion import SubsetPlan
    from modkit.core.subsets import all_subsets

    return SubsetPlan.from_mask(all_subsets(len(names)))


def compare_rows(seed: int, ours, theirs, g_ours: dict, g_theirs: dict) -> dict:
    """One seed's row of :func:`compare`'s table, from both losses and both gradient dicts."""
    worst, worst_key, finite = 0.0, None, True
    for k in sorted(set(g_ours) | set(g_theirs)):
        a, b = g_ours.get(k), g_theirs.get(k)
        if a is None or b is None:
            worst, worst_key = float("inf"), k
            continue
        finite &= bool(torch.isfinite(b).all())
        scale = max(a.abs().max().item(), b.abs().max().item(), 1e-12)
        diff = (a - b).abs().max().item() / scale
        if diff > worst:
            worst, worst_key = diff, k
    return {"seed": seed, "modkit_loss": ours.item(), "multivae_loss": theirs.item(),
            "loss_rel_diff": abs(ours.item() - theirs.item()) / max(abs(theirs.item()), 1e-12),
            "grad_max_rel_diff": worst, "worst_param": worst_key, "parameters": len(set(g_ours) | set(g_theirs)), "peer_grads_finite": finite}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    sys.path.append(str(peer_site()))  # after modkit's own packages: MultiVae and its pythae come from its venv
    import multivae

    torch.set_num_threads(1)
    cases = []
    for alpha, (beta, epoch, warmup) in [(0.1, (1.0, 10, 10)), (0.5, (0.3, 3, 10))]:
        model, batch = modkit_model("jmvae", [f"model.fusion.alpha={alpha}"])
        model.train()
        peer = peer_model("jmvae", model, {"alpha": alpha, "warmup": warmup, "beta": 1.0})
        cases.append(compare(f"jmvae α={alpha}, β (annealing) = {beta}, all present", model, batch, peer,
                             peer_inputs(batch, model.names, False), beta, {"epoch": epoch}))
    for alpha, beta in [(0.1, 2.5), (0.6, 1.0)]:
        model, batch = modkit_model("mvtcae", [f"model.fusion.alpha={alpha}"])
        model.train()
        peer = peer_model("mvtcae", model, {"alpha": alpha, "beta": beta})
        cases.append(compare(f"mvtcae α={alpha}, β={beta}, all present", model, batch, peer,
                             peer_inputs(batch, model.names, False), beta, {}))
    model, batch = modkit_model("mvtcae", ["data.paired_fraction=0.3"])
    model.train()
    assert not bool(batch.present.all()), "the partial batch has every modality"
    peer = peer_model("mvtcae", model, {"alpha": 0.1, "beta": 2.5})
    cases.append(compare("mvtcae α=0.1, β=2.5, modalities missing (MultiVae IncompleteDataset)", model, batch, peer,
                         peer_inputs(batch, model.names, True), 2.5, {}))
    for beta, betas, partial in [(1.0, None, False), (0.5, {"image": 2.0, "label": 0.5}, False), (1.0, None, True)]:
        model, batch = modkit_model("dmvae", ["model.fusion.modalities_specific_dim=3"] + (["data.paired_fraction=0.3"] if partial else [])
                                    + ([f"model.fusion.modalities_specific_betas={json.dumps(betas)}"] if betas else []))
        model.train()
        peer = peer_model("dmvae", model, {"beta": beta, "modalities_specific_betas": betas})
        what = "modalities missing (MultiVae IncompleteDataset)" if partial else "all present"
        cases.append(compare(f"dmvae β={beta}, β_m={betas or 1}, {what}", model, batch, peer,
                             peer_inputs(batch, model.names, partial), beta, {}, noise=shared_noise_dmvae(model, batch)))
    for dist, objective, beta, partial, learn_shared in [("laplace_with_softmax", "dreg_looser", 1.0, False, False),
                                                          ("laplace_with_softmax", "iwae_looser", 0.5, False, True),
                                                          ("normal", "dreg_looser", 1.0, True, False),
                                                          ("normal_with_softplus", "iwae_looser", 1.0, True, True)]:
        options = {"prior_and_posterior_dist": dist, "loss": objective, "learn_shared_prior": learn_shared, "K": 3}
        model, batch = modkit_model("mmvae_plus", ["model.fusion.modalities_specific_dim=3"] + (["data.paired_fraction=0.3"] if partial else [])
                                    + [f"model.fusion.{key}={value}" for key, value in options.items()])
        with torch.no_grad():  # prior scales away from their zero start, so their gradients mean something
            model.fusion.shared_prior_logvar.normal_(0.0, 0.3)
            for p in model.fusion.modality_prior_logvar.values():
                p.normal_(0.0, 0.3)
        model.train()
        peer = peer_model("mmvae_plus", model, {**options, "beta": beta})
        what = "modalities missing (MultiVae IncompleteDataset)" if partial else "all present"
        cases.append(compare(f"mmvae_plus {dist}, {objective}, K=3, β={beta}, learn_shared_prior={learn_shared}, {what}", model, batch,
                             peer, peer_inputs(batch, model.names, partial), beta, {}, noise=shared_noise_mmvae_plus(model, batch, peer),
                             peer_scale=1.0 / len(batch)))
    for beta, options, partial in [(1.0, {"dropout_rate": 0.2}, False),
                                   (0.4, {"dropout_rate": 0.5, "top_beta": 0.3, "bottom_betas": {"image": 2.0, "label": 0.5},
                                          "gammas": {"image": 0.7, "label": 1.5}, "adapt_top_decoder_variance": ["label"]}, False),
                                   (1.0, {"dropout_rate": 0.0, "top_beta": 0.5, "gammas": {"image": 0.7, "label": 1.5}}, True)]:
        overrides = ["model.fusion.modalities_specific_dim=4", "model.fusion.msg_dim=5", "model.fusion.hidden=[16]",
                     "model.fusion.decoder_hidden=[16]", *(["data.paired_fraction=0.3"] if partial else []),
                     *(f"model.fusion.{key}={json.dumps(value)}" for key, value in options.items())]
        model, batch = modkit_model("nexus", overrides)
        model.train()
        warmup = 10
        peer = peer_model("nexus", model, {**options, "warmup": warmup})
        what = "modalities missing (MultiVae IncompleteDataset)" if partial else "all present"
        cases.append(compare(f"nexus β (annealing) = {beta}, {options or 'defaults'}, {what}", model, batch, peer,
                             peer_inputs(batch, model.names, partial), beta, {"epoch": round(beta * warmup)},
                             noise=shared_noise_nexus(model, batch)))
    for beta, prior_network in [(1.0, False), (0.5, True)]:
        model, batch = modkit_model("cvae", ["model.fusion.hidden=[32]", "model.fusion.condition_dim=4", f"model.fusion.prior_network={str(prior_network).lower()}"])
        model.train()
        peer = peer_model("cvae", model, {"beta": beta})
        cases.append(compare(f"cvae p(image given z, label), β={beta}, prior_network={prior_network}, all present", model, batch, peer,
                             peer_inputs(batch, model.names, False), beta, {}))
    for beta, partial in [(2.5, False), (1.0, False), (2.5, True)]:
        model, batch = modkit_model("crmvae", ["data.paired_fraction=0.3"] if partial else [])
        model.train()
        peer = peer_model("crmvae", model, {"beta": beta})
        what = "modalities missing (MultiVae IncompleteDataset)" if partial else "all present"
        cases.append(compare(f"crmvae β={beta}, {what}", model, batch, peer, peer_inputs(batch, model.names, partial), beta, {},
                             noise=shared_noise_crmvae(model, batch), peer_scale=1.0 / len(batch)))
    for dist, objective, beta, partial in [("laplace_with_softmax", "dreg_looser", 1.0, False),
                                           ("laplace_with_softmax", "iwae_looser", 0.5, False),
                                           ("normal", "dreg_looser", 1.0, True),
                                           ("normal_with_softplus", "iwae_looser", 1.0, True)]:
        options = {"prior_and_posterior_dist": dist, "loss": objective, "K": 3, "number_of_clusters": 4}
        model, batch = modkit_model("cmvae", ["model.fusion.modalities_specific_dim=3"] + (["data.paired_fraction=0.3"] if partial else [])
                                    + [f"model.fusion.{key}={value}" for key, value in options.items()])
        with torch.no_grad():  # weights and auxiliary prior scales away from their equal start, so their gradients mean something
            model.fusion.clusters.logits.normal_(0.0, 0.5)
            for p in model.fusion.modality_prior_logvar.values():
                p.normal_(0.0, 0.3)
        model.train()
        peer = peer_model("cmvae", model, {**options, "beta": beta})
        what = "modalities missing (MultiVae IncompleteDataset)" if partial else "all present"
        cases.append(compare(f"cmvae {dist}, {objective}, K=3, C=4, β={beta}, {what}", model, batch, peer,
                             peer_inputs(batch, model.names, partial), beta, {}, noise=shared_noise_cmvae(model, batch, peer),
                             peer_scale=1.0 / len(batch)))

    cases.extend(telbo_cases())
    cases.extend(jnf_cases())
    cases.extend(mhvae_cases())

    result = {"commit": commit(), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "machine": f"{cpu_name()} ({platform.machine()}), torch {torch.__version__}",
              "command": "python benchmarks/crosscheck_models.py", "multivae": f"{multivae.__name__} {PEER_VERSION} from {PEER_VENV.name}",
              "rtol": RTOL, "batch": BATCH, "cases": cases}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "crosscheck-models.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# modkit against MultiVae 1.0.3: objectives and gradients on shared networks, weights, batch and noise", "",
             f"Generated by `{result['command']}` at commit {result['commit']}, {result['date']}, on {result['machine']}.",
             f"Batch of {BATCH} digits (binarised image + label), latent 8; each row one seed (the shared noise); "
             f"a case matches when the loss and every parameter's gradient agree within {RTOL:g} relative.", "",
             "| case | match | seed | modkit loss | MultiVae loss | loss rel. diff | max grad rel. diff (param) |",
             "|---|---|---|---|---|---|---|"]
    for case in cases:
        for r in case["draws"]:
            lines.append(f"| {case['case']} | {'yes' if case['match'] else '**no**'} | {r['seed']} | {r['modkit_loss']:.6f} | "
                         f"{r['multivae_loss']:.6f} | {r['loss_rel_diff']:.1e} | {r['grad_max_rel_diff']:.1e} ({r['worst_param']}) |")
    (args.out / "crosscheck-models.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(c["match"] for c in cases) else 1


if __name__ == "__main__":
    raise SystemExit(main())
