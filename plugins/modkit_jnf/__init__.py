"""JNF (Senellart et al., "Improving multimodal joint variational autoencoders through normalizing flows and
correlation analysis"): a joint VAE first, then unimodal posteriors that are normalizing flows fitted to it.

Trained in two stages, as MultiVae's ``JNF`` is:

* ``joint``: the joint encoder q(z | X) (:class:`modkit.JointEncoder` over every modality's features) and the
  decoders, on the joint ELBO  E_q(z|X)[Σ_m λ_m log p(x_m | z)] − β KL(q(z|X) ‖ p(z));
* ``unimodal``: with the joint parts frozen (the joint encoder, and the modalities' encoders and decoders), each
  modality's posterior q(z | x_m) — a Gaussian encoder over the frozen features, carried through a masked
  autoregressive flow (zuko's MAF) — fitted to the joint one by minimising Σ_m −log q(z | x_m) at z ~ q(z | X),
  which is Σ_m KL(q(z|X) ‖ q(z|x_m)) up to the joint posterior's entropy (constant in this stage).

The stage is read from ``model.stage`` (set by the trainer, :meth:`stages` gives the default split: ``warmup``
epochs of the joint stage, the rest unimodal). Outside staged training (``model.stage`` None) both objectives are
minimised at once, the unimodal one on detached features and a detached joint draw, so each part receives exactly
the gradient its own stage would give it.

Cross-modal generation reads the flow posteriors: q(z | x_m) is a :class:`modkit.distributions.Pushforward`
(sampled through the flow's inverse, scored by change of variables), so importance-sampled likelihoods and
sampled coherence work from it like from any posterior. docs/fusions/jnf.md says what differs from MultiVae.
"""
from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.distributions.transforms import AffineTransform

from modkit import Batch, Engine, Fusion, FusionConfig, GaussianHead, JointEncoder, LossOutput, RecipeError, SubsetPlan, hookimpl, mlp
from modkit.distributions import (DiagGaussian, Experts, Pushforward, Stacked, WeightedMixture, kl_standard_normal,
                                  reparameterize, uniform_log_weights)

JOINT, UNIMODAL = "joint", "unimodal"


# -- the flow ---------------------------------------------------------------------------------------
def made_affine(mu: Tensor, log_var: Tensor) -> AffineTransform:
    """One MADE step as pythae's MAF (MultiVae's default flow) parametrises it: u = (z − μ) · exp(−log_var),
    μ and log_var read off the preceding coordinates. zuko's own MAF step bounds its log-scale instead; this one
    keeps MultiVae's parameters meaning what they mean there."""
    scale = torch.exp(-log_var)
    return AffineTransform(-mu * scale, scale)


def maf(latent_dim: int, n_made_blocks: int, n_hidden_in_made: int, hidden_size: int) -> nn.Module:
    """A masked autoregressive flow over the latent, from zuko: ``n_made_blocks`` MADE steps (alternating order),
    each a masked MLP of ``n_hidden_in_made`` layers of ``hidden_size`` (MultiVae's MAFConfig names). Returns the
    lazy transform: called, it gives the map z ↦ u toward the base space (one pass; its inverse, for sampling,
    takes ``latent_dim`` passes)."""
    import zuko

    flow = zuko.flows.MAF(features=latent_dim, transforms=n_made_blocks, hidden_features=[hidden_size] * n_hidden_in_made,
                          univariate=made_affine, shapes=[(), ()])
    return flow.transform


def flow_posterior(mu: Tensor, logvar: Tensor, to_base) -> Pushforward:
    """q(z | x_m): the Gaussian N(mu, exp(logvar)) carried through the flow's inverse."""
    return Pushforward(DiagGaussian(mu, logvar), to_base)


# -- the objectives -----------------------------------------------------------------------------------
def joint_elbo(model: Engine, batch: Batch, mu: Tensor, logvar: Tensor, beta: float) -> tuple[Tensor, Tensor, dict[str, Tensor], Tensor]:
    """The joint ELBO per sample under q(z | X) = N(mu, exp(logvar)) (B, D), one reparameterised draw: (bound (B,),
    KL (B,), per-modality reconstruction, the draw z (B, D))."""
    z = reparameterize(mu, logvar)
    lls = model.log_likelihoods(z.unsqueeze(0), batch)
    rec, per = model.present_reconstruction([ll[0] for ll in lls], batch.present, bool(batch.all_present))
    kl = kl_standard_normal(mu, logvar)
    return rec - beta * kl, kl, per, z


def unimodal_nll(z: Tensor, bases: list[tuple[Tensor, Tensor]], flows: list, present: Tensor) -> Tensor:
    """Σ_m −log q(z | x_m) per sample (B,) over the present modalities: each q a Gaussian (mu, logvar) (B, D) through
    its flow (``flows[m]()``: the map toward the base space). MultiVae's JNF unimodal loss (its ``ljm``)."""
    total = z.new_zeros(z.shape[0])
    for i, ((mu, logvar), flow) in enumerate(zip(bases, flows)):
        nll = -flow_posterior(mu, logvar, flow()).log_prob(z)
        total = total + torch.where(present[:, i], nll, 0.0)
    return total


class JNFConfig(FusionConfig):
    warmup: int = Field(10, ge=1, description="epochs of the joint stage when the recipe gives no train.stages (MultiVae's "
                                             "warmup); the remaining epochs train the unimodal flow posteriors")
    hidden: list[int] = Field([512, 512], min_length=1, description="hidden sizes of the joint encoder over the concatenated "
                                                                    "features (MultiVae's default joint encoder: 2 × 512)")
    unimodal_hidden: list[int] = Field([512], description="hidden sizes of each modality's Gaussian encoder over its "
                                                          "frozen features, before its flow ([]: one linear layer)")
    n_made_blocks: int = Field(2, ge=1, description="MADE steps in each modality's flow (MultiVae's MAFConfig default 2)")
    n_hidden_in_made: int = Field(3, ge=1, description="hidden layers in each MADE step (MAFConfig default 3)")
    hidden_size: int = Field(128, ge=1, description="units in each MADE hidden layer (MAFConfig default 128)")


class JNF(Fusion):
    """Joint encoder and decoders on the joint ELBO, then unimodal Gaussian-and-flow posteriors fitted to it."""

    Config = JNFConfig
    uses_sampler = False
    objectives = (JOINT, UNIMODAL)

    def __init__(self, modalities, latent_dim: int, config: JNFConfig):
        super().__init__(modalities, latent_dim, config)
        if latent_dim < 2:
            raise RecipeError("model.latent_dim", f"{config.type}'s autoregressive flows need a latent of at least 2 dimensions")
        dims = []
        for name, modality in modalities.items():
            if not isinstance(getattr(modality, "feature_dim", None), int):
                raise RecipeError(f"modalities.{name}", f"{type(modality).__name__} has no feature_dim; "
                                                        f"{config.type}'s joint encoder reads features")
            dims.append(modality.feature_dim)
        self.joint = JointEncoder(dims, latent_dim, config.hidden)
        widths = self.unimodal_input_dims(dims)
        self.unimodal = nn.ModuleList(nn.Sequential(mlp([w, *config.unimodal_hidden], final_activation=True),
                                                    GaussianHead(config.unimodal_hidden[-1] if config.unimodal_hidden else w, latent_dim))
                                      for w in widths)
        self.flows = nn.ModuleList(maf(latent_dim, config.n_made_blocks, config.n_hidden_in_made, config.hidden_size) for _ in dims)

    # -- stages -----------------------------------------------------------------------------------
    @classmethod
    def stages(cls, config: JNFConfig, epochs: int) -> list[dict[str, Any]]:
        """``warmup`` epochs of the joint stage, then the unimodal one with the joint parts frozen."""
        if epochs <= config.warmup:
            raise RecipeError("model.fusion.warmup", f"warmup {config.warmup} leaves none of the {epochs} epochs for the "
                                                     "unimodal stage; lower it or raise train.epochs")
        return [{"name": JOINT, "epochs": config.warmup, "freeze": []},
                {"name": UNIMODAL, "epochs": epochs - config.warmup, "freeze": ["fusion.joint", "modalities"]}]

    @classmethod
    def example(cls) -> dict[str, Any]:
        return {"hidden": [8], "unimodal_hidden": [8], "hidden_size": 8, "n_hidden_in_made": 1, "warmup": 2}

    # -- what the unimodal encoders read ------------------------------------------------------------
    def unimodal_input_dims(self, feature_dims: list[int]) -> list[int]:
        return feature_dims

    def unimodal_inputs(self, features: list[Tensor]) -> list[Tensor]:
        """What each modality's Gaussian encoder reads: its features (JNF-DCCA: their DCCA embedding)."""
        return features

    def bases(self, inputs: list[Tensor]) -> list[tuple[Tensor, Tensor]]:
        return [net(x) for net, x in zip(self.unimodal, inputs)]

    # -- the objective ------------------------------------------------------------------------------
    def features(self, model: Engine, batch: Batch) -> list[Tensor]:
        return [model.modalities[name].features(batch.data[name]) for name in model.names]

    def loss(self, model: Engine, batch: Batch, plan: SubsetPlan, beta: float) -> LossOutput:
        """The current stage's objective (``model.stage``), or every stage's at once when there is none."""
        stage = model.stage
        if stage is not None and stage not in self.objectives:
            raise RecipeError("train.stages", f"{self.config.type} has no stage objective {stage!r}; it has {', '.join(self.objectives)}")
        n, present = len(batch), batch.present
        features = self.features(model, batch)
        terms: dict[str, Tensor] = {}
        loss, z = features[0].new_zeros(()), None
        if stage in (None, JOINT):
            some = present.any(-1)
            bound, kl, per, z = joint_elbo(model, batch, *self.joint(features, present), beta)
            loss = loss - torch.where(some, bound, 0.0).sum() / n
            terms.update({f"rec/{name}": (ll.sum() / n).detach() for name, ll in per.items()})
            terms["kl"] = (torch.where(some, kl, 0.0).sum() / n).detach()
        elif stage == UNIMODAL:  # the frozen joint posterior's draw, the one thing the unimodal posteriors are fitted to
            z = reparameterize(*self.joint(features, present))
        loss = loss + self.stage_loss(stage, [f.detach() for f in features], None if z is None else z.detach(), present, n, terms)
        terms["loss"] = loss.detach()
        return LossOutput(loss, terms)

    def stage_loss(self, stage: str | None, features: list[Tensor], z: Tensor | None, present: Tensor, n: int,
                   terms: dict[str, Tensor]) -> Tensor:
        """The objectives beside the joint ELBO, on detached features and (in the unimodal stage, or with no stage) a
        detached joint draw ``z``."""
        if stage not in (None, UNIMODAL):
            return features[0].new_zeros(())
        inputs = [x.detach() for x in self.unimodal_inputs(features)]  # JNF-DCCA's embeddings: trained in their own stage
        nll = unimodal_nll(z, self.bases(inputs), list(self.flows), present).sum() / n
        terms["unimodal_nll"] = nll.detach()
        return nll

    # -- inference ------------------------------------------------------------------------------
    def encode(self, model: Engine, batch: Batch) -> Experts:
        """Each modality's Gaussian (before its flow) as the experts, carrying the features the joint encoder reads."""
        features = self.features(model, batch)
        bases = self.bases(self.unimodal_inputs(features))
        return Experts(torch.stack([m for m, _ in bases]), torch.stack([v for _, v in bases]), batch.present,
                       extra={"features": features}, all_present=bool(batch.all_present))

    def posterior(self, experts: Experts, subsets: Tensor) -> Stacked:
        """The joint encoder when every modality is given (and present), the modality's flow posterior when one is, the
        uniform mixture of the given modalities' flow posteriors when several but not all are, and the prior N(0, I)
        when none is. One distribution per subset row (a :class:`Stacked` of them, batch (S, B)), built from only the
        components some sample of that row uses — each flow posterior costs D sequential passes to sample — and a
        mixture over them, weighted per sample, where the samples of a row differ in what they have."""
        if not experts.extra or "features" not in experts.extra:
            raise TypeError(f"{self.config.type} posteriors need the features from {type(self).__name__}.encode (use model.encode)")
        mask = subsets.to(torch.bool)
        mask = (mask.unsqueeze(1) if mask.dim() == 2 else mask) & experts.present.unsqueeze(0)  # (S, B, N)
        count = mask.sum(-1)  # (S, B)
        everything = count == len(self.names)
        partial = (~everything & (count > 0)).unsqueeze(0) & mask.permute(2, 0, 1)  # (N, S, B)
        valid = torch.cat([everything.unsqueeze(0), partial, (count == 0).unsqueeze(0)])  # (N + 2, S, B): joint, flows, prior
        used = valid.any(-1).cpu()  # (N + 2, S): which components each row needs (evaluation only: one host read)
        joint_mu, joint_logvar = self.joint(experts.extra["features"], mask)  # (S, B, D): one pass for every row
        zeros = joint_mu.new_zeros(joint_mu.shape[1:])
        flows = [flow_posterior(experts.mu[i], experts.logvar[i], self.flows[i]()) for i in range(len(self.names))]
        rows = []
        for s in range(mask.shape[0]):
            parts = [DiagGaussian(joint_mu[s], joint_logvar[s]), *flows, DiagGaussian(zeros, zeros)]
            keep = [k for k in range(len(parts)) if used[k, s]]
            if len(keep) == 1:  # every sample of the row uses the same component
                rows.append(parts[keep[0]])
            else:
                rows.append(WeightedMixture(Stacked([parts[k] for k in keep]), uniform_log_weights(valid[keep, s], joint_mu.dtype)))
        return Stacked(rows)


@hookimpl
def modkit_register(registry):
    registry.add_fusion("jnf", JNF)
