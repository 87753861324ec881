"""Post-hoc latent samplers (MultiVae's GaussianMixtureSampler, MAFSampler, IAFSampler): gmm, maf, iaf.

Each is fitted to the training set's joint-posterior means after training (``modkit fit-sampler``) and
replaces N(0, I) when sampling from the prior (``modkit sample RUN --sampler NAME``). The mixture is fitted by
scikit-learn; the flows are zuko's masked autoregressive transforms, trained here by maximum likelihood.
Every fitted state is a table of tensors, sampled in torch from a caller's generator.
"""
from __future__ import annotations

import copy
import math

import torch
from pydantic import Field
from torch import Tensor

from modkit import LatentSampler, LatentSamplerConfig, ModkitError, hookimpl


# -- Gaussian mixture --------------------------------------------------------------------------------
class GMMConfig(LatentSamplerConfig):
    n_components: int = Field(10, ge=1, description="mixture components (fewer when there are fewer embeddings)")
    max_iter: int = Field(2000, ge=1, description="EM iterations at most (MultiVae's setting)")
    tol: float = Field(1e-3, gt=0, description="EM stops when the lower bound gains less than this")
    reg_covar: float = Field(1e-6, ge=0, description="added to each covariance's diagonal, keeping it invertible")


class GaussianMixtureSampler(LatentSampler):
    """A full-covariance Gaussian mixture fitted by EM (scikit-learn), sampled in torch."""

    Config = GMMConfig

    def __init__(self, latent_dim: int, config: GMMConfig):
        super().__init__(latent_dim, config)
        self.weights: Tensor | None = None  # (K,)
        self.means: Tensor | None = None  # (K, D)
        self.covariances: Tensor | None = None  # (K, D, D)

    def fit(self, embeddings: Tensor, seed: int) -> None:
        from sklearn.mixture import GaussianMixture

        x = embeddings.detach().double().cpu().numpy()
        k = min(self.config.n_components, len(x))
        gmm = GaussianMixture(n_components=k, covariance_type="full", max_iter=self.config.max_iter, tol=self.config.tol,
                              reg_covar=self.config.reg_covar, random_state=seed)
        gmm.fit(x)
        self.weights = torch.as_tensor(gmm.weights_, dtype=torch.float64)
        self.means = torch.as_tensor(gmm.means_, dtype=torch.float64)
        self.covariances = torch.as_tensor(gmm.covariances_, dtype=torch.float64)

    def _fitted(self) -> tuple[Tensor, Tensor, Tensor]:
        if self.weights is None or self.means is None or self.covariances is None:
            raise RuntimeError("the Gaussian mixture is not fitted")
        return self.weights, self.means, self.covariances

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        weights, means, covariances = self._fitted()
        k = torch.multinomial(weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.latent_dim, generator=generator, dtype=torch.float64)
        chol = torch.linalg.cholesky(covariances)  # (K, D, D)
        z = means[k] + (chol[k] @ eps.unsqueeze(-1)).squeeze(-1)
        return z.float()

    def log_prob(self, z: Tensor) -> Tensor:
        """log p(z) under the mixture (n,)."""
        weights, means, covariances = self._fitted()
        components = torch.distributions.MultivariateNormal(means, covariance_matrix=covariances)
        return torch.logsumexp(components.log_prob(z.double().unsqueeze(1)) + weights.log(), dim=1)

    def state_dict(self) -> dict[str, Tensor]:
        weights, means, covariances = self._fitted()
        return {"weights": weights, "means": means, "covariances": covariances}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        weights, means, covariances = (state[k].to(torch.float64) for k in ("weights", "means", "covariances"))
        k, d = means.shape
        if means.shape[1] != self.latent_dim or weights.shape != (k,) or covariances.shape != (k, d, d):
            raise ValueError(f"shapes weights {tuple(weights.shape)}, means {tuple(means.shape)}, covariances "
                             f"{tuple(covariances.shape)} do not describe a mixture over {self.latent_dim} dimensions")
        self.weights, self.means, self.covariances = weights, means, covariances


# -- normalizing flows (zuko) ------------------------------------------------------------------------
class FlowConfig(LatentSamplerConfig):
    transforms: int = Field(2, ge=1, description="autoregressive transforms (MultiVae's n_made_blocks)")
    hidden_features: list[int] = Field([128, 128, 128], min_length=1,
                                       description="hidden layer widths of each transform's masked MLP (MultiVae: 3 × 128)")
    epochs: int = Field(100, ge=1, description="passes over the embeddings")
    batch_size: int = Field(256, ge=1)
    lr: float = Field(1e-3, gt=0)
    validation_fraction: float = Field(0.1, ge=0, lt=1,
                                       description="embeddings held out; the epoch with their best likelihood is kept")


class _FlowSampler(LatentSampler):
    """A zuko flow over the standardised embeddings; ``inverse`` picks IAF (sampling is the cheap direction)."""

    Config = FlowConfig
    inverse = False

    def __init__(self, latent_dim: int, config: FlowConfig):
        super().__init__(latent_dim, config)
        self.flow = self._build()
        # the embeddings' per-dimension mean and scale: the flow sees standardised data
        self.loc = torch.zeros(latent_dim)
        self.scale = torch.ones(latent_dim)

    def _build(self):
        try:
            import zuko
        except ImportError:
            raise ModkitError(f"the {type(self).__name__} latent sampler needs the zuko package (pip install zuko)") from None

        d, config = self.latent_dim, self.config
        orders = [torch.arange(d), torch.flipud(torch.arange(d))]
        transforms = []
        for i in range(config.transforms):
            t = zuko.flows.MaskedAutoregressiveTransform(features=d, order=orders[i % 2],
                                                         hidden_features=tuple(config.hidden_features))
            transforms.append(zuko.flows.LazyInverse(t) if self.inverse else t)
        base = zuko.flows.UnconditionalDistribution(zuko.distributions.DiagNormal, torch.zeros(d), torch.ones(d), buffer=True)
        return zuko.flows.Flow(transforms, base)

    def fit(self, embeddings: Tensor, seed: int) -> None:
        config = self.config
        torch.manual_seed(seed)  # the masked MLPs' initialisation
        self.flow = self._build()
        x = embeddings.detach().float().cpu()
        self.loc = x.mean(0)
        self.scale = x.std(0).clamp_min(1e-6) if len(x) > 1 else torch.ones(self.latent_dim)
        x = (x - self.loc) / self.scale
        g = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(x), generator=g)
        n_val = int(len(x) * config.validation_fraction) if len(x) >= 10 else 0
        val, train = x[order[:n_val]], x[order[n_val:]]
        optimizer = torch.optim.Adam(self.flow.parameters(), lr=config.lr)
        best, best_state = math.inf, None
        self.flow.train()
        for _ in range(config.epochs):
            perm = torch.randperm(len(train), generator=g)
            for start in range(0, len(train), config.batch_size):
                loss = -self.flow().log_prob(train[perm[start:start + config.batch_size]]).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            if n_val:
                with torch.no_grad():
                    score = -self.flow().log_prob(val).mean().item()
                if score < best:
                    best, best_state = score, copy.deepcopy(self.flow.state_dict())
        if best_state is not None:
            self.flow.load_state_dict(best_state)
        self.flow.eval()

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        dist = self.flow()
        u = torch.randn(n, self.latent_dim, generator=generator)  # the base is N(0, I): drawn here, from the generator
        return dist.transform.inv(u) * self.scale + self.loc

    def log_prob(self, z: Tensor) -> Tensor:
        """log p(z) (n,): the flow's density of the standardised z, with the standardisation's Jacobian."""
        return self.flow().log_prob((z.float() - self.loc) / self.scale) - self.scale.log().sum()

    def state_dict(self) -> dict[str, Tensor]:
        state = {f"flow.{k}": v.detach().cpu() for k, v in self.flow.state_dict().items()}
        return {**state, "loc": self.loc, "scale": self.scale}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        flow = {k.removeprefix("flow."): v for k, v in state.items() if k.startswith("flow.")}
        self.flow.load_state_dict(flow)  # strict: a state from another configuration is refused
        loc, scale = state["loc"].float(), state["scale"].float()
        if loc.shape != (self.latent_dim,) or scale.shape != (self.latent_dim,):
            raise ValueError(f"loc/scale of shape {tuple(loc.shape)}, expected ({self.latent_dim},)")
        self.loc, self.scale = loc, scale
        self.flow.eval()


class MAFSampler(_FlowSampler):
    """A masked autoregressive flow (zuko): density in one pass, so fitting is fast; sampling takes D passes."""


class IAFSampler(_FlowSampler):
    """An inverse autoregressive flow (zuko's MAF transforms inverted): sampling in one pass, fitting takes D passes."""

    inverse = True


@hookimpl
def modkit_register(registry):
    registry.add_latent_sampler("gmm", GaussianMixtureSampler)
    registry.add_latent_sampler("maf", MAFSampler)
    registry.add_latent_sampler("iaf", IAFSampler)
