"""Evaluation: test-set numbers per epoch, and the ``modkit eval`` suite (likelihoods, coherence, probes, relatedness)."""
from modkit._compat import forwarder

__getattr__ = forwarder(__name__, "modkit.evaluation.suite")
