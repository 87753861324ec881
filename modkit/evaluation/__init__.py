"""Evaluation: test-set numbers per epoch, and the ``modkit eval`` suite: :class:`~modkit.evaluation.metric.Metric`
families (likelihoods, coherence, probes, relatedness, reconstruction, active units, task metrics), one module
each under ``metrics/``, fed by one shared posterior pass (``posterior_pass``)."""
from modkit._compat import forwarder

__getattr__ = forwarder(__name__, "modkit.evaluation.suite")
