"""modkit: multimodal variational autoencoders from plugins.

Everything in ``__all__`` is the public API: what a plugin (first-party or third-party) and a
notebook may import, from ``modkit`` itself. The modules behind it live in folders by role
(``core``, ``data``, ``plugins``, ``config``, ``training``, ``runs``, ``evaluation``,
``reporting``, ``cli``, ``scaffold``, ``experiments``) and may move between releases; an old flat
import (``modkit.gaussian``) still works for now, with a DeprecationWarning naming the new one.
"""
from modkit import _compat
from modkit._meta import DISTRIBUTION, VERSION
from modkit.core.batch import Batch, Data
from modkit.core.distributions import (DiagLaplace, Family, LatentDistribution, UniformMixture, WeightedMixture, family_log_prob,
                                       from_expert, laplace_log_prob, uniform_log_weights)
from modkit.core.engine import MultimodalVAE
from modkit.core.fusion import Fusion, FusionConfig, LossOutput, SubsetPlan, subset_gaussian_elbo
from modkit.core.gaussian import (DiagGaussian, Experts, cross_log_prob, expert_precisions, gaussian_log_prob, kl_gaussians,
                                  kl_standard_normal, product_of_experts, reparameterize)
from modkit.core.likelihoods import Bernoulli, Categorical, Gaussian, Laplace, Likelihood, make_likelihood
from modkit.core.modality import Modality, ModalityConfig, existing_file
from modkit.core.nn import GaussianHead, bounded_logvar, mlp, over_leading
from modkit.core.records import Column, Records
from modkit.core.subset_kl import weighted_subset_kl
from modkit.core.subsets import SamplerConfig, SubsetSampler, all_subsets, full, singles, subset_names, subset_validity
from modkit.data.dataset import (ArrayRecords, ColumnRecords, DatasetConfig, DatasetSource, DerivedDataset, DerivedDatasetConfig,
                                 EpochBatchSampler, ModalityView, make_loader)
from modkit.errors import DataError, ModkitError, PluginError, RecipeError
from modkit.evaluation.task_metrics import Collect, Mean
from modkit.plugins.hookspecs import hookimpl
from modkit.plugins.registry import Registry
from modkit.storage.files import atomic_write_bytes, atomic_write_text
from modkit.training.events import Callback

__version__ = VERSION

_compat.install()

def __getattr__(name: str):
    """``train``, ``load`` and ``load_weights`` come from :mod:`modkit.api` on first use: importing the
    trainer at ``import modkit`` would make every plugin import slow (and import the trainer's modules
    from the plugins they load)."""
    if name in ("train", "load", "load_weights", "Run"):
        from modkit import api

        return getattr(api, name)
    raise AttributeError(f"module 'modkit' has no attribute {name!r}")

__all__ = [
    # contracts a plugin implements
    "Modality", "ModalityConfig", "Fusion", "FusionConfig", "LossOutput", "SubsetPlan", "SubsetSampler", "SamplerConfig",
    "DatasetSource", "DatasetConfig", "DerivedDataset", "DerivedDatasetConfig", "Registry", "hookimpl",
    # what a plugin puts on the training loop (the modkit_train_callbacks hook)
    "Callback",
    # data
    "Batch", "Data", "Records", "Column", "ArrayRecords", "ColumnRecords", "ModalityView", "EpochBatchSampler", "make_loader",
    # the engine and its math
    "MultimodalVAE", "DiagGaussian", "Experts", "product_of_experts", "expert_precisions", "gaussian_log_prob",
    "kl_standard_normal", "kl_gaussians", "reparameterize", "cross_log_prob", "subset_gaussian_elbo", "weighted_subset_kl",
    "DiagLaplace", "Family", "LatentDistribution", "UniformMixture", "WeightedMixture", "family_log_prob", "from_expert", "laplace_log_prob",
    "uniform_log_weights", "all_subsets", "full", "singles", "subset_names", "subset_validity",
    # building blocks for modalities
    "GaussianHead", "mlp", "bounded_logvar", "over_leading", "Likelihood", "Bernoulli", "Categorical", "Gaussian", "Laplace",
    "make_likelihood", "existing_file",
    # files a plugin writes into a run directory (a fitted tokenizer), never half-written
    "atomic_write_bytes", "atomic_write_text",
    # task metrics
    "Collect", "Mean",
    # the distribution on the package index (the import name is modkit)
    "DISTRIBUTION",
    # errors
    "ModkitError", "DataError", "PluginError", "RecipeError",
    # the Python API over a run's life (docs/python-api.md): train, load a run or an export, read a run's weights
    "train", "load", "load_weights", "Run",
]
