"""JNF-DCCA (Senellart et al.): JNF whose unimodal posteriors read deep canonical correlation embeddings.

A third stage fits, per modality, a DCCA network (an MLP over the modality's frozen features) so that the
modalities' embeddings are maximally correlated (Andrew et al. 2013's total canonical correlation, summed over
pairs of modalities when there are more than two, as MultiVae's DCCA module computes it). The unimodal Gaussian
encoders then read those embeddings, frozen, instead of the raw features: an embedding that keeps what the
modalities share is what a single modality can infer the joint latent from.

Stages (``model.stage``; :meth:`JNFDCCA.stages` gives the default split): ``joint`` (``warmup`` epochs),
``dcca`` (``nb_epochs_dcca``), ``unimodal`` (the rest). MultiVae trains DCCA first, on networks over the raw
inputs; here the DCCA networks sit on the modalities' encoders, which the joint stage trains, so DCCA comes
second (docs/fusions/jnf.md).
"""
from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import Tensor, nn

from modkit import RecipeError, hookimpl, mlp
from modkit_jnf import JNF, JOINT, UNIMODAL, JNFConfig

DCCA = "dcca"
R1 = R2 = 1e-3  # the covariance regularisers of Andrew et al.'s code, which MultiVae keeps
EPS = 1e-9


def cca_loss(h1: Tensor, h2: Tensor, outdim_size: int, use_all_singular_values: bool = False) -> Tensor:
    """−(total canonical correlation) of two views' embeddings (m, o), as MultiVae's (and Andrew et al.'s) ``cca_loss``.

    Regularised covariances Σ11 + r1 I, Σ22 + r2 I, T = Σ11^{-1/2} Σ12 Σ22^{-1/2} (eigenvalues ≤ 1e-9 dropped
    from the inverse roots). With ``use_all_singular_values`` the correlation is trace(sqrt(TᵀT)) with the square
    root element-wise, as that code computes it (the square roots of the diagonal of TᵀT); otherwise Σ sqrt of the top ``outdim_size`` eigenvalues of
    TᵀT + r1 I (each floored at 1e-9), i.e. the top singular values of T, slightly regularised."""
    H1, H2 = h1.t(), h2.t()
    o1, o2, m = H1.shape[0], H2.shape[0], H1.shape[1]
    H1bar = H1 - H1.mean(dim=1, keepdim=True)
    H2bar = H2 - H2.mean(dim=1, keepdim=True)
    s12 = H1bar @ H2bar.t() / (m - 1)
    s11 = H1bar @ H1bar.t() / (m - 1) + R1 * torch.eye(o1, device=h1.device, dtype=h1.dtype)
    s22 = H2bar @ H2bar.t() / (m - 1) + R2 * torch.eye(o2, device=h1.device, dtype=h1.dtype)

    def root_inverse(s: Tensor) -> Tensor:
        d, v = torch.linalg.eigh(s)
        keep = d > EPS  # the eigenvalues are bounded below by the regulariser, so this keeps all of them in practice
        d, v = d[keep], v[:, keep]
        return v @ torch.diag(d ** -0.5) @ v.t()

    t = root_inverse(s11) @ s12 @ root_inverse(s22)
    if use_all_singular_values:  # that code's trace(sqrt(TᵀT)), the root element-wise: only the diagonal counts, and taking
        # the root of the diagonal alone keeps the gradient finite where negative off-diagonal entries made theirs NaN
        return -torch.sqrt(torch.diagonal(t.t() @ t)).sum()
    tt = t.t() @ t + R1 * torch.eye(t.shape[1], device=h1.device, dtype=h1.dtype)
    u = torch.linalg.eigvalsh(tt)
    u = torch.where(u > EPS, u, EPS)
    return -torch.sqrt(u.topk(min(outdim_size, u.shape[0]))[0]).sum()


def dcca_loss(embeddings: list[Tensor], present: Tensor, outdim_size: int, use_all_singular_values: bool = False) -> Tensor:
    """Σ over pairs i < j of :func:`cca_loss`, each on the samples that have both modalities (MultiVae's ``mcca_loss``
    with unit weights; for two modalities its ``cca_loss``). A pair with no more such samples than the embedding has
    dimensions adds nothing: their covariance is singular (repeated regulariser eigenvalues, whose eigenvectors, and
    so the gradient, are undefined)."""
    with torch.autocast(embeddings[0].device.type, enabled=False):  # eigen-decompositions of 1e-3-regularised covariances: float32
        return _dcca_loss([e.to(torch.promote_types(e.dtype, torch.float32)) for e in embeddings], present, outdim_size,
                          use_all_singular_values)


def _dcca_loss(embeddings: list[Tensor], present: Tensor, outdim_size: int, use_all_singular_values: bool) -> Tensor:
    total = embeddings[0][:0].sum()  # zero, but of the graph: a batch with nothing to correlate steps nowhere, without error
    for i in range(len(embeddings)):
        for j in range(i + 1, len(embeddings)):
            both = present[:, i] & present[:, j]
            if int(both.sum()) <= embeddings[i].shape[-1]:
                continue
            total = total + cca_loss(embeddings[i][both], embeddings[j][both], outdim_size, use_all_singular_values)
    return total


class JNFDCCAConfig(JNFConfig):
    nb_epochs_dcca: int = Field(30, ge=1, description="epochs of the DCCA stage when the recipe gives no train.stages "
                                                     "(MultiVae's nb_epochs_dcca)")
    embedding_dcca_dim: int = Field(20, ge=1, description="width of each modality's DCCA embedding (MultiVae's embedding_dcca_dim)")
    use_all_singular_values: bool = Field(False, description="the correlation from all singular values (MultiVae's "
                                                            "use_all_singular_values; its docs call it unstable)")
    dcca_hidden: list[int] = Field([512], description="hidden sizes of each modality's DCCA network over its features")


class JNFDCCA(JNF):
    """JNF whose unimodal posteriors read DCCA embeddings, trained in a stage of their own."""

    Config = JNFDCCAConfig
    objectives = (JOINT, DCCA, UNIMODAL)

    def __init__(self, modalities, latent_dim: int, config: JNFDCCAConfig):
        self._dcca_dim = config.embedding_dcca_dim  # read by unimodal_input_dims during JNF's construction
        super().__init__(modalities, latent_dim, config)
        self.dcca = nn.ModuleList(mlp([m.feature_dim, *config.dcca_hidden, config.embedding_dcca_dim]) for m in modalities.values())

    @classmethod
    def stages(cls, config: JNFDCCAConfig, epochs: int) -> list[dict[str, Any]]:
        """``warmup`` joint epochs, ``nb_epochs_dcca`` DCCA epochs, then the unimodal stage; each freezes what came before."""
        if epochs <= config.warmup + config.nb_epochs_dcca:
            raise RecipeError("model.fusion.nb_epochs_dcca", f"warmup {config.warmup} + nb_epochs_dcca {config.nb_epochs_dcca} "
                                                             f"leave none of the {epochs} epochs for the unimodal stage")
        frozen = ["fusion.joint", "modalities"]
        return [{"name": JOINT, "epochs": config.warmup, "freeze": []},
                {"name": DCCA, "epochs": config.nb_epochs_dcca, "freeze": frozen},
                {"name": UNIMODAL, "epochs": epochs - config.warmup - config.nb_epochs_dcca, "freeze": [*frozen, "fusion.dcca"]}]

    @classmethod
    def example(cls) -> dict[str, Any]:
        return {**super().example(), "dcca_hidden": [8], "embedding_dcca_dim": 1, "nb_epochs_dcca": 2}

    def unimodal_input_dims(self, feature_dims: list[int]) -> list[int]:
        return [self._dcca_dim] * len(feature_dims)

    def unimodal_inputs(self, features: list[Tensor]) -> list[Tensor]:
        return [net(f) for net, f in zip(self.dcca, features)]

    def stage_loss(self, stage, features, z, present, n, terms) -> Tensor:
        loss = features[0].new_zeros(())
        if stage in (None, DCCA):
            loss = dcca_loss(self.unimodal_inputs(features), present, self.config.embedding_dcca_dim,
                             self.config.use_all_singular_values)
            terms["dcca"] = loss.detach()
        return loss + super().stage_loss(stage, features, z, present, n, terms)


@hookimpl
def modkit_register(registry):
    registry.add_fusion("jnf_dcca", JNFDCCA)
