"""The public API's two modules (the contracts in ``modkit``, the math in ``modkit.distributions``), the old
spelling of the math still working, and the lower layers importing only downward."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from test_layout import PACKAGE, graph

ROOT = Path(__file__).resolve().parents[2]
ARCHITECTURE = ROOT / "docs" / "architecture.md"


def test_both_public_modules_resolve_and_no_name_has_two_homes():
    import modkit
    import modkit.distributions

    for module in (modkit, modkit.distributions):
        missing = [name for name in module.__all__ if not hasattr(module, name)]
        assert missing == []
        assert len(set(module.__all__)) == len(module.__all__)
    assert not set(modkit.__all__) & set(modkit.distributions.__all__), "a public name has one home"


@pytest.mark.slow
def test_modkit_distributions_is_a_module_of_its_own_not_a_forwarded_name():
    """``import modkit.distributions`` gives the public module (no warning), and what the old flat name
    exported (it forwarded to ``modkit.core.distributions``) still imports from it."""
    code = ("import warnings; warnings.simplefilter('error'); import modkit.distributions as d, modkit.core.distributions as c; "
            "print(d.__name__); print(all(getattr(d, n) is getattr(c, n) for n in ['DiagLaplace', 'laplace_log_prob', 'LOG_2', "
            "'Family', 'Component', 'LatentDistribution', 'from_expert', 'family_log_prob', 'uniform_log_weights', "
            "'WeightedMixture', 'UniformMixture', 'DiagGaussian', 'gaussian_log_prob']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["modkit.distributions", "True"]
    assert "DeprecationWarning" not in out.stderr


@pytest.mark.parametrize("name", ["DiagGaussian", "Experts", "product_of_experts", "kl_standard_normal", "WeightedMixture",
                                  "weighted_subset_kl", "make_likelihood", "Categorical"])
def test_old_math_name_from_modkit_warns_and_is_the_same_object(name):
    import modkit
    import modkit.distributions

    assert name not in modkit.__all__ and name in modkit.distributions.__all__
    with pytest.warns(DeprecationWarning, match=rf"use from modkit\.distributions import {name}$"):
        old = getattr(modkit, name)
    assert old is getattr(modkit.distributions, name)
    namespace: dict = {}
    with pytest.warns(DeprecationWarning, match="modkit.distributions"):
        exec(f"from modkit import {name} as imported", namespace)
    assert namespace["imported"] is old


def test_every_name_modkit_exported_before_still_imports_from_it():
    """What ``modkit.__all__`` held before the math had its own module is still importable from ``modkit``."""
    import modkit

    before = ["DiagGaussian", "Experts", "product_of_experts", "expert_precisions", "gaussian_log_prob", "kl_standard_normal",
              "kl_gaussians", "reparameterize", "cross_log_prob", "subset_gaussian_elbo", "weighted_subset_kl", "DiagLaplace",
              "Family", "LatentDistribution", "UniformMixture", "WeightedMixture", "family_log_prob", "from_expert",
              "laplace_log_prob", "uniform_log_weights", "Likelihood", "Bernoulli", "Categorical", "Gaussian", "Laplace",
              "make_likelihood", "MultimodalVAE", "GaussianHead", "mlp", "bounded_logvar", "over_leading", "existing_file"]
    with pytest.warns(DeprecationWarning):
        missing = [name for name in before if not hasattr(modkit, name)]
    assert missing == []


@pytest.mark.slow
def test_modkit_math_name_in_a_fresh_interpreter_warns_and_computes():
    """The old spelling keeps working end to end: a product of experts through ``from modkit import ...``."""
    code = ("import warnings; warnings.simplefilter('always'); import torch; "
            "from modkit import Experts, product_of_experts; "
            "e = Experts(torch.zeros(2, 1, 3), torch.zeros(2, 1, 3), torch.ones(1, 2, dtype=torch.bool)); "
            "mu, logvar = product_of_experts(e, torch.ones(1, 2, dtype=torch.bool)); print(round(float(logvar.exp()[0, 0, 0]), 6))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0.333333"  # precisions 1 (prior) + 1 + 1, so variance 1/3
    warned = set(re.findall(r"DeprecationWarning: modkit\.(\w+) moved to modkit\.distributions: use from modkit\.distributions "
                            r"import (\w+)", out.stderr))
    assert warned == {("Experts", "Experts"), ("product_of_experts", "product_of_experts")}, out.stderr


# -- layering -------------------------------------------------------------------------------------
def layers() -> list[list[str]]:
    """docs/architecture.md's table, bottom layer first: the names in each row's first column."""
    text = ARCHITECTURE.read_text()
    table = text[text.index("<!-- layers:"):].split("\n\n")[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    return [re.findall(r"`([\w/]+)`", row.split("|")[1]) for row in rows]


#: the layers whose imports this test holds to the table; the layers above them are checked as they are moved
CHECKED = {"errors", "_meta", "_compat", "core", "distributions", "config", "plugins", "data", "scaffold", "cli"}


def test_the_table_has_the_bottom_row_and_core_rows_this_test_reads():
    rows = layers()
    assert rows[0] == ["errors", "_meta", "_compat"]
    assert rows[1] == ["core", "distributions"] and rows[-1] == ["cli"]


def test_the_lower_layers_and_the_command_line_import_only_downward():
    rank = {name: i for i, row in enumerate(layers()) for name in row}
    upward = []
    for module, deps in sorted(graph().items()):
        parts = module.split(".")
        if len(parts) < 2 or parts[1] not in CHECKED:
            continue
        for dep in sorted(deps):
            dep_layer = dep.split(".")[1] if "." in dep else None
            if dep_layer in rank and rank[dep_layer] > rank[parts[1]]:
                upward.append(f"{module} -> {dep}")
    assert upward == [], "imports that run upwards in docs/architecture.md's table"
    assert (PACKAGE / "scaffold" / "generator.py").read_text().count("modkit.cli") == 0


def test_the_command_line_registers_its_commands_with_ordinary_imports():
    source = (PACKAGE / "cli" / "main.py").read_text()
    assert "__import__(" not in source and "import_module(" not in source
    from modkit.cli.main import main

    assert {"train", "plugins", "convert", "new", "eval", "generate", "sample", "report", "sweep"} <= set(main.commands)
    assert "reproduce" not in main.commands  # the claims run from a checkout: python -m reproductions
