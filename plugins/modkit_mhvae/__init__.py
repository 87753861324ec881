"""MHVAE (Dorent et al., 2023): a multimodal hierarchical VAE, shared latents at every level, each a product of experts.

The latent is a ladder z_L → … → z_1, every level ``model.latent_dim`` wide; the model carries them side by side,
``[z_L, …, z_1]`` (``n_latent · latent_dim`` numbers, the fusion's ``latent_dim``), and every decoder reads z_1
alone (a latent view). The generative model is p(z_L) = N(0, I), p(z_l | z_{l+1}) = N(prior_l(top_down_l(z_{l+1}))).

Each modality's features (its encoder's, MultiVae's first-layer ``encoders``) go up its own bottom-up blocks: the
skips d_1 = features, d_2, …, d_{L−1}, and the top expert q(z_L | x_m). Going down, a modality's expert at level
l < L reads [top_down_l(z_{l+1}), d_l] (its posterior block), and the posterior of a subset S of modalities is, level
by level, the product of experts with the prior's conditional as one of them:

    q(z_L | x_S) ∝ N(0, I) Π_{m∈S} q(z_L | x_m),    q(z_l | x_S, z_{l+1}) ∝ p(z_l | z_{l+1}) Π_{m∈S} q(z_l | x_m, z_{l+1})

The objective is MultiVae's: the ELBO of every non-empty subset's posterior, averaged over the subsets, each
reconstructing every present modality from z_1:

    L = 1/|𝒮| Σ_S [ Σ_m λ_m E log p(x_m | z_1) − β β_f Σ_l E KL(q(z_l | x_S, z_{l+1}) ‖ p(z_l | z_{l+1})) ]

β is the run's schedule (``model.beta``), β_f the fusion's ``beta`` (MultiVae's). Every level is Gaussian given
the ones above, so the posterior's and the prior's densities over the carried latent are exact (a sum over the
levels): the importance-sampled likelihoods and the test ELBO are computed as for a flat latent.

The networks MultiVae leaves to the user (bottom-up, top-down, prior and posterior blocks) are small MLPs the
fusion owns, ``hidden`` wide.
"""
from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor, nn

from modkit import Batch, Engine, Fusion, FusionConfig, GaussianHead, LossOutput, RecipeError, SubsetPlan, all_subsets, hookimpl, mlp
from modkit.distributions import Experts, gaussian_log_prob, kl_gaussians

EPS = 1e-8  # added to each expert's variance before the product, as MultiVae's poe does


class MHVAEConfig(FusionConfig):
    n_latent: int = Field(3, ge=2, description="L, the number of latent levels (MultiVae's n_latent); each is model.latent_dim wide")
    beta: float = Field(1.0, ge=0, description="β_f, the weight of the KL terms (MultiVae's beta), times the run's schedule")
    hidden: int = Field(256, ge=1, description="the width of the bottom-up, top-down and posterior blocks (MultiVae ships none)")
    share_posterior_weights: bool = Field(False, description="one posterior block per level for every modality (MultiVae's list "
                                                             "of posterior_blocks) instead of one per modality (its dict); "
                                                             "needs the modalities' feature_dim to agree")


def product(mus: Tensor, logvars: Tensor, given: Tensor, prior_mu: Tensor, prior_logvar: Tensor) -> tuple[Tensor, Tensor]:
    """The product of the given experts (…, N, D) (``given`` (…, N) bool, broadcasting) and the prior expert (…, D), as
    MultiVae's ``poe`` (each variance plus 1e-8); an expert not given counts nothing, whatever it holds."""
    weight = given.unsqueeze(-1)
    precision = torch.where(weight, 1.0 / (torch.exp(logvars) + EPS), 0.0)
    prior_precision = 1.0 / (torch.exp(prior_logvar) + EPS)
    total = precision.sum(-2) + prior_precision
    mu = (torch.where(weight, mus * precision, 0.0).sum(-2) + prior_mu * prior_precision) / total
    return mu, -torch.log(total)


def walk_down(fusion: "MHVAE", top: tuple[Tensor, Tensor], conditional, noise, z_given: Tensor | None) -> tuple[Tensor, Tensor]:
    """The top-down walk the posterior ladder and the prior share: z_L from ``top`` (mu, logvar), then each lower
    level from ``conditional(level, z_above)`` → (mu, logvar). ``noise(mu, logvar)`` draws a level, or ``z_given``
    (…, L·D) fixes every level; returns the carried latent [z_L, …, z_1] and the log-density of it."""
    d = fusion.level_dim
    mu, logvar = top
    levels, log_density = [], 0.0
    for level in range(fusion.n_latent, 0, -1):
        if level < fusion.n_latent:
            mu, logvar = conditional(level, levels[-1])
        if z_given is None:
            z = noise(mu, logvar)
        else:
            start = (fusion.n_latent - level) * d
            z = z_given[..., start:start + d]
            log_density = log_density + gaussian_log_prob(z, mu, logvar)
        levels.append(z)
    return torch.cat([torch.broadcast_to(z, levels[-1].shape) for z in levels], dim=-1), log_density


class Ladder:
    """q(z_L, …, z_1 | the given modalities), over the carried latent [z_L, …, z_1], batch shape (*S, B).

    ``top`` is the modalities' top experts (mu, logvar), each (N, B, D); ``skips[l - 1]`` the modalities' skips d_l
    (a list of (B, F) tensors); ``given`` (*S, B, N) bool. Each level is drawn given the one above, so ``log_prob`` is
    the sum of the levels' Gaussian log-densities along the way down."""

    def __init__(self, fusion: "MHVAE", top: tuple[Tensor, Tensor], skips: list[list[Tensor]], given: Tensor):
        self.fusion, self.experts, self.skips, self.given = fusion, top, skips, given.to(torch.bool)
        mu, logvar = top[0].transpose(0, 1), top[1].transpose(0, 1)  # (B, N, D)
        zeros = torch.zeros_like(mu[..., 0, :])
        self.top = product(mu, logvar, self.given, zeros, zeros)  # (*S, B, D)

    @property
    def batch_shape(self) -> torch.Size:
        return self.given.shape[:-1]

    def index_subset(self, i: int) -> "Ladder":
        """The posterior of subset row ``i`` alone, batch shape (B,) (``modkit.load(...).encode`` takes one subset)."""
        return Ladder(self.fusion, self.experts, self.skips, self.given[i])

    def _down(self, noise, z_given: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Walk down the ladder: ``noise(level, mu)`` gives z_l from its (mu, logvar), or ``z_given`` (…, L·D) fixes
        every level. Returns the carried latent and the posterior's log-density of it."""
        fusion = self.fusion
        return walk_down(fusion, self.top, lambda level, above: fusion.level(level, above, self.skips[level - 1], self.given)[:2],
                         noise, z_given)

    @property
    def mean(self) -> Tensor:
        return self._down(lambda mu, logvar: mu)[0]

    def rsample(self, n: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        lead = () if n is None else (n,)

        def draw(mu, logvar):
            shape = (*lead, *mu.shape) if mu.dim() == len(self.batch_shape) + 1 else mu.shape  # the levels below carry the lead
            eps = torch.randn(shape, device=mu.device, dtype=mu.dtype, generator=generator)
            return mu + eps * torch.exp(0.5 * logvar)
        return self._down(draw)[0]

    def log_prob(self, z: Tensor) -> Tensor:
        return self._down(None, z)[1]


class LadderPrior:
    """p(z_L, …, z_1) = N(z_L; 0, I) Π_l p(z_l | z_{l+1}) over the carried latent; samples are (n, L·D)."""

    def __init__(self, fusion: "MHVAE"):
        self.fusion = fusion

    def _down(self, noise, z_given: Tensor | None = None) -> tuple[Tensor, Tensor]:
        fusion = self.fusion
        zeros = fusion._prior_zeros[:fusion.level_dim]
        return walk_down(fusion, (zeros, zeros), lambda level, above: fusion.prior_blocks[level - 1](fusion.top_down[level - 1](above)),
                         noise, z_given)

    @property
    def mean(self) -> Tensor:
        return self._down(lambda mu, logvar: mu)[0]

    def rsample(self, n: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        def draw(mu, logvar):
            shape = mu.shape if mu.dim() > 1 or n is None else (n, *mu.shape)
            eps = torch.randn(shape, device=mu.device, dtype=mu.dtype, generator=generator)
            return mu + eps * torch.exp(0.5 * logvar)
        return self._down(draw)[0]

    def log_prob(self, z: Tensor) -> Tensor:
        return self._down(None, z)[1]


class MHVAE(Fusion):
    """MHVAE: a ladder of shared latents, each level a product of the modalities' experts and the prior's conditional."""

    Config = MHVAEConfig
    uses_sampler = False  # every subset, every step, as MultiVae

    def __init__(self, modalities, latent_dim: int, config: MHVAEConfig):
        super().__init__(modalities, latent_dim, config)
        n_latent, hidden, d = config.n_latent, config.hidden, latent_dim
        dims = []
        for name, modality in modalities.items():
            if not isinstance(getattr(modality, "feature_dim", None), int):
                raise RecipeError(f"modalities.{name}", f"{type(modality).__name__} has no feature_dim; mhvae's bottom-up blocks read features")
            if modality.latent_dim != d:
                raise RecipeError("model.fusion", f"modality '{name}' was built at latent_dim {modality.latent_dim}, not {d} "
                                                  "(build the model through the recipe builder)")
            dims.append(modality.feature_dim)
        if config.share_posterior_weights and len(set(dims)) > 1:
            raise RecipeError("model.fusion.share_posterior_weights", f"the modalities' feature_dim differ ({', '.join(map(str, dims))}); "
                                                                      "one posterior block cannot read them all")
        self.n_latent, self.level_dim = n_latent, d
        # the carried latent is every level side by side; the decoders read z_1, the last D numbers
        self.latent_dim = n_latent * d
        self.register_buffer("_prior_zeros", torch.zeros(self.latent_dim), persistent=False)
        for modality in modalities.values():
            modality.set_latent_view(torch.arange((n_latent - 1) * d, n_latent * d))

        def skip_dim(level: int, feature_dim: int) -> int:  # d_1 is the features, d_l (l > 1) a bottom-up block's output
            return feature_dim if level == 1 else hidden

        def bottom_up(feature_dim: int) -> nn.ModuleList:
            blocks = [mlp([skip_dim(i + 1, feature_dim), hidden], final_activation=True) for i in range(n_latent - 2)]
            blocks.append(nn.Sequential(mlp([skip_dim(n_latent - 1, feature_dim), hidden], final_activation=True), GaussianHead(hidden, d)))
            return nn.ModuleList(blocks)

        def posterior_blocks(feature_dim: int) -> nn.ModuleList:
            return nn.ModuleList(nn.Sequential(mlp([hidden + skip_dim(level, feature_dim), hidden], final_activation=True), GaussianHead(hidden, d))
                                 for level in range(1, n_latent))

        self.bottom_up_blocks = nn.ModuleDict({n: bottom_up(f) for n, f in zip(self.names, dims)})
        self.top_down = nn.ModuleList(mlp([d, hidden], final_activation=True) for _ in range(n_latent - 1))
        self.prior_blocks = nn.ModuleList(GaussianHead(hidden, d) for _ in range(n_latent - 1))
        if config.share_posterior_weights:
            self.posterior_blocks = posterior_blocks(dims[0])
        else:
            self.posterior_blocks = nn.ModuleDict({n: posterior_blocks(f) for n, f in zip(self.names, dims)})

    @classmethod
    def example(cls):
        return {"n_latent": 3, "hidden": 16}

    # -- the networks -----------------------------------------------------------------------------
    def bottom_up(self, features: list[Tensor]) -> tuple[tuple[Tensor, Tensor], list[list[Tensor]]]:
        """Each modality's features up its blocks: its top expert (mu, logvar), each stacked (N, B, D), and the skips,
        ``skips[l - 1]`` the modalities' d_l (l = 1 … L − 1)."""
        skips: list[list[Tensor]] = [[] for _ in range(self.n_latent - 1)]
        mus, logvars = [], []
        for name, h in zip(self.names, features):
            blocks = self.bottom_up_blocks[name]
            skips[0].append(h)
            for i in range(self.n_latent - 2):
                h = blocks[i](h)
                skips[i + 1].append(h)
            mu, logvar = blocks[-1](h)
            mus.append(mu)
            logvars.append(logvar)
        return (torch.stack(mus), torch.stack(logvars)), skips

    def _posterior_block(self, name: str, level: int) -> nn.Module:
        blocks = self.posterior_blocks if self.config.share_posterior_weights else self.posterior_blocks[name]
        return blocks[level - 1]

    def level(self, level: int, above: Tensor, skips: list[Tensor], given: Tensor) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor]]:
        """q(z_l | x_given, z_{l+1}) for l < L: ``above`` z_{l+1} (*lead, *S, B, D), ``skips`` the modalities' d_l (B, F),
        ``given`` (*S, B, N). Returns its (mu, logvar) and the prior's conditional p(z_l | z_{l+1}), shaped as ``above``."""
        h = self.top_down[level - 1](above)
        prior = self.prior_blocks[level - 1](h)
        mus, logvars = [], []
        for name, skip in zip(self.names, skips):
            mu, logvar = self._posterior_block(name, level)(torch.cat([h, skip.expand(*h.shape[:-1], skip.shape[-1])], dim=-1))
            mus.append(mu)
            logvars.append(logvar)
        mu, logvar = product(torch.stack(mus, -2), torch.stack(logvars, -2), given, *prior)
        return mu, logvar, prior

    # -- the objective ----------------------------------------------------------------------------
    def noise(self, *shape: int, like: Tensor) -> Tensor:
        """Standard normal noise (a method, so a cross-check can hand both implementations the same draws)."""
        return torch.randn(shape, device=like.device, dtype=like.dtype)

    def loss(self, model: Engine, batch: Batch, plan: SubsetPlan, beta: float) -> LossOutput:
        features, _ = model.encode_with_features(batch)
        top, skips = self.bottom_up([features[name] for name in model.names])
        present, n, d = batch.present, len(batch), self.level_dim
        subsets = all_subsets(len(self.names)).to(present.device)  # (S, N)
        given = subsets.unsqueeze(1) & present.unsqueeze(0)  # (S, B, N)
        post = Ladder(self, top, skips, given)
        eps = self.noise(self.n_latent, len(subsets), n, d, like=top[0])
        mu, logvar = post.top
        z = mu + eps[0] * torch.exp(0.5 * logvar)
        zeros = torch.zeros_like(mu)
        kls = {self.n_latent: kl_gaussians(mu, logvar, zeros, zeros)}  # (S, B)
        levels = [z]
        for level in range(self.n_latent - 1, 0, -1):
            mu, logvar, (prior_mu, prior_logvar) = self.level(level, z, skips[level - 1], given)
            z = mu + eps[self.n_latent - level] * torch.exp(0.5 * logvar)
            kls[level] = kl_gaussians(mu, logvar, prior_mu, prior_logvar)
            levels.append(z)
        lls = model.log_likelihoods(torch.cat(levels, dim=-1), batch)  # each decoder once, on every subset's z_1
        rec, per = model.present_reconstruction(lls, present, bool(batch.all_present))  # (S, B)
        kl = sum(kls.values())
        elbo = rec - beta * self.config.beta * kl  # (S, B)
        loss = -elbo.mean(0).sum() / n
        terms = {f"rec/{name}": (ll.mean(0).sum() / n).detach() for name, ll in per.items()}
        terms.update(loss=loss.detach(), kl=(kl.mean(0).sum() / n).detach())
        terms.update({f"kl_{level}": (k.mean(0).sum() / n).detach() for level, k in kls.items()})
        return LossOutput(loss, terms)

    # -- inference --------------------------------------------------------------------------------
    def encode(self, model: Engine, batch: Batch) -> Experts:
        """The modalities' experts (unused), carrying the features the bottom-up blocks read in ``posterior``."""
        features, experts = model.encode_with_features(batch)
        return experts._replace(extra={"features": [features[name] for name in model.names]})

    def posterior(self, experts: Experts, subsets: Tensor) -> Ladder:
        """The ladder posterior of each subset row (∩ present), MultiVae's ``subset_encode``; the prior where nothing
        is given. Batch shape (S, B)."""
        if not experts.extra or "features" not in experts.extra:
            raise TypeError("mhvae posteriors need the features from MHVAE.encode (use model.encode)")
        mask = subsets.to(torch.bool)
        mask = (mask.unsqueeze(1) if mask.dim() == 2 else mask) & experts.present.unsqueeze(0)  # (S, B, N)
        top, skips = self.bottom_up(experts.extra["features"])
        return Ladder(self, top, skips, mask)

    def prior(self) -> LadderPrior:
        return LadderPrior(self)


@hookimpl
def modkit_register(registry):
    registry.add_fusion("mhvae", MHVAE)
