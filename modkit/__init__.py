"""modkit: multimodal variational autoencoders from plugins.

Everything in ``__all__`` is the public API: the contracts a plugin (first-party or third-party) and a
notebook import from ``modkit`` itself. The distribution math a fusion or modality computes with (Gaussian
experts, products, KL, mixtures, likelihoods) is public too, in :mod:`modkit.distributions`. The modules
behind both live in folders by layer (docs/architecture.md) and may move between releases; an old flat
import (``modkit.gaussian``) still works for now, with a DeprecationWarning naming the new one, and so does
``from modkit import DiagGaussian``, naming :mod:`modkit.distributions`.
"""
from modkit import _compat
from modkit._meta import DISTRIBUTION, VERSION
from modkit.core.batch import Batch, Data
from modkit.core.engine import MultimodalVAE
from modkit.core.latent_sampler import LatentSampler, LatentSamplerConfig
from modkit.core.fusion import Engine, Fusion, FusionConfig, LossOutput, SubsetPlan, subset_gaussian_elbo
from modkit.core.modality import Modality, ModalityConfig, existing_file
from modkit.core.joint import JointEncoder
from modkit.core.private import PrivateLayout, TopDown, TopDownPrior
from modkit.core.nn import GaussianHead, bounded_logvar, mlp, over_leading
from modkit.core.records import Column, Records
from modkit.core.subsets import SamplerConfig, SubsetSampler, all_subsets, full, singles, subset_names, subset_validity
from modkit.data.text_files import read_text_file
from modkit.data.dataset import (ArrayRecords, ColumnRecords, DatasetConfig, DatasetSource, DerivedDataset, DerivedDatasetConfig,
                                 EpochBatchSampler, ModalityView, make_loader)
from modkit.errors import DataError, ModkitError, PluginError, RecipeError
from modkit.evaluation.task_metrics import Collect, Mean
from modkit.plugins.hookspecs import hookimpl
from modkit.plugins.registry import Registry
from modkit.storage.files import atomic_write_bytes, atomic_write_text
from modkit.training.events import Callback
# evaluation metrics (docs/evaluation.md) and optional modality capabilities (docs/plugin-api.md)
from modkit.core.capabilities import Classifiable, ClusteredPrior, DeclaresAttributes, Judgeable, Renderable, TaskHeaded, VectorEntry
from modkit.evaluation.metric import BaseMetric, Decoded, EvalContext, Figure, Metric, PosteriorBatch, Table, Text

__version__ = VERSION

_compat.install()

#: the Python API over a run's life, imported from :mod:`modkit.api` on first use
_API = ("train", "load", "load_weights", "Run")
#: the math that ``modkit`` itself exported until it had :mod:`modkit.distributions`: still importable from
#: here, with a DeprecationWarning naming its public module
_MOVED_TO_DISTRIBUTIONS = frozenset({
    "DiagGaussian", "Experts", "product_of_experts", "expert_precisions", "gaussian_log_prob", "kl_standard_normal",
    "kl_gaussians", "reparameterize", "cross_log_prob", "weighted_subset_kl", "DiagLaplace", "Family", "LatentDistribution",
    "UniformMixture", "WeightedMixture", "family_log_prob", "from_expert", "laplace_log_prob", "uniform_log_weights",
    "Likelihood", "Bernoulli", "Categorical", "Gaussian", "Laplace", "make_likelihood",
})


def __getattr__(name: str):
    """Names looked up on first use: ``train``, ``load``, ``load_weights`` and ``Run`` from :mod:`modkit.api`
    (importing the trainer at ``import modkit`` would make every plugin import slow, and import the trainer's
    modules from the plugins they load), and the math now in :mod:`modkit.distributions`, with a warning."""
    if name in _API:
        from modkit import api

        return getattr(api, name)
    if name in _MOVED_TO_DISTRIBUTIONS:
        import warnings

        from modkit import distributions

        warnings.warn(f"modkit.{name} moved to modkit.distributions: use from modkit.distributions import {name}",
                      DeprecationWarning, stacklevel=2)
        return getattr(distributions, name)
    raise AttributeError(f"module 'modkit' has no attribute {name!r}")


__all__ = [
    # contracts a plugin implements, and the engine a fusion is handed
    "Modality", "ModalityConfig", "Fusion", "FusionConfig", "LossOutput", "SubsetPlan", "SubsetSampler", "SamplerConfig",
    "DatasetSource", "DatasetConfig", "DerivedDataset", "DerivedDatasetConfig", "Registry", "hookimpl", "Engine", "MultimodalVAE",
    "subset_gaussian_elbo",
    # post-hoc latent samplers (docs/samplers.md): a density fitted to the embeddings, drawn from instead of the prior
    "LatentSampler", "LatentSamplerConfig",
    # what a plugin puts on the training loop (the modkit_train_callbacks hook)
    "Callback",
    # data
    "Batch", "Data", "Records", "Column", "ArrayRecords", "ColumnRecords", "ModalityView", "EpochBatchSampler", "make_loader",
    # subset masks: the (S, N) rows samplers return
    "all_subsets", "full", "singles", "subset_names", "subset_validity",
    # building blocks for modalities' networks
    "GaussianHead", "mlp", "bounded_logvar", "over_leading", "existing_file",
    # a fusion's own encoder over several modalities' features (JMVAE's joint encoder), and where modality-private
    # latents sit beside the shared one (MMVAE+, DMVAE) or under it, with the posterior and prior drawn top-down (Nexus)
    "JointEncoder", "PrivateLayout", "TopDown", "TopDownPrior",
    # files a plugin writes into a run directory (a fitted tokenizer), never half-written
    "atomic_write_bytes", "atomic_write_text",
    # text files a dataset reads (lists, captions, manifests): UTF-8 with or without a byte-order mark, else one line
    "read_text_file",
    # task metrics
    "Collect", "Mean",
    # the distribution on the package index (the import name is modkit)
    "DISTRIBUTION",
    # errors
    "ModkitError", "DataError", "PluginError", "RecipeError",
    # the Python API over a run's life (docs/python-api.md): train, load a run or an export, read a run's weights
    "train", "load", "load_weights", "Run",
    # evaluation metrics (docs/evaluation.md): one file each, fed by one shared posterior pass
    "Metric", "BaseMetric", "PosteriorBatch", "Decoded", "EvalContext", "Text", "Table", "Figure",
    # what a modality can optionally do, checked with isinstance (docs/plugin-api.md)
    "Judgeable", "Classifiable", "VectorEntry", "Renderable", "TaskHeaded", "DeclaresAttributes",
    # what a fusion can optionally do: read a cluster out of a latent (a mixture prior's, CMVAE)
    "ClusteredPrior",
]
