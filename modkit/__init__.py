"""modkit: multimodal variational autoencoders from plugins.

The public API for plugin authors: :class:`Modality`, :class:`Fusion`, :class:`SubsetSampler`,
:class:`DatasetSource`, the ``hookimpl`` marker, and the math in :mod:`modkit.gaussian`.
"""
from modkit.batch import Batch
from modkit.data import ArrayRecords, ColumnRecords, DatasetConfig, DatasetSource, Records
from modkit.engine import MultimodalVAE
from modkit.errors import DataError, ModkitError, PluginError, RecipeError
from modkit.fusion import Fusion, FusionConfig, LossOutput, SubsetPlan
from modkit.gaussian import DiagGaussian, Experts, product_of_experts
from modkit.hookspecs import hookimpl
from modkit.modality import Modality, ModalityConfig
from modkit.subsets import SamplerConfig, SubsetSampler

__version__ = "0.1.0"

__all__ = [
    "ArrayRecords", "Batch", "ColumnRecords", "DataError", "DatasetConfig", "DatasetSource", "DiagGaussian", "Experts", "Fusion",
    "FusionConfig", "LossOutput", "Modality", "ModalityConfig", "ModkitError", "MultimodalVAE", "PluginError",
    "RecipeError", "Records", "SamplerConfig", "SubsetPlan", "SubsetSampler", "hookimpl", "product_of_experts",
]
