"""The contract-test kit (modkit.testing) over every first-party modality, fusion, sampler, dataset and metric.

Parametrised from the registry: a plugin added to plugins/ (or a metric module added to
modkit/evaluation/metrics/) is checked here without editing this file (its ``example()`` supplies small
options and values).
"""
from __future__ import annotations

from modkit.testing import dataset_contract, fusion_contract, metric_contract, modality_contract, sampler_contract


@modality_contract()
def test_modality_contract(case, check):
    check(case)


@fusion_contract()
def test_fusion_contract(case, check):
    check(case)


@sampler_contract(options={"mvae": {"k": 2}, "random": {"k": 3}})
def test_sampler_contract(case, check):
    check(case)


@dataset_contract(names=["digits", "shapes"])  # the others read files that are not in a checkout
def test_dataset_contract(case, check):
    check(case)


@metric_contract()
def test_metric_contract(case, check):
    check(case)
