"""Importance-sampled log-likelihoods log p(x_i), log p(x_i, x_j), log p(x_i | x_j) (MVAE §5), on their own estimator.

The estimator (:func:`modkit.evaluation.likelihood.likelihood_suite`) draws its own K posterior samples per
item, so this metric encodes the (at most ``iw_items``) items itself rather than reading the shared pass.
"""
from __future__ import annotations

from typing import Any

from modkit.evaluation.judges import iterate
from modkit.evaluation.likelihood import likelihood_suite, no_density_reason
from modkit.evaluation.metric import BaseMetric, Block, EvalContext, Progress, Table, Text


class Likelihood(BaseMetric):
    name = "likelihood"
    group = "likelihood"
    keys = ("likelihood",)
    needs = frozenset({"encoders"})
    description = ("Importance-sampled log-likelihoods (MVAE, Wu & Goodman 2018 §5): log p(x) ≈ logmeanexp of K = iw_samples "
                   "weights p(x, z)/q(z|x) with z from the posterior of the conditioning set, on at most iw_items test items; "
                   "conditionals log p(x_i | x_j) = log p(x_i, x_j) − log p(x_j), the denominator from prior_samples prior "
                   "(or posterior) samples. Nats per item, higher is better; with a standard error and the variance of the "
                   "log weights (the proposal's quality). Needs an unconditional prior and a density over the latent.")

    def compute(self) -> dict[str, Any]:
        context: EvalContext = self.context
        model, settings = context.model, context.settings
        if no_density_reason(model) is not None:  # no prior, or no density over the latent: suite.py says which
            return {}
        context.echo(f"importance-sampled log-likelihoods (K={settings.iw_samples}, {settings.prior_samples} prior samples) …")
        bar = Progress(len(context.iw), "log-likelihoods")
        batches = (b for _, b in iterate(context.iw, max(1, settings.batch_size // 4)))
        with context.clock("likelihoods"):
            cells = likelihood_suite(model, batches, settings.iw_samples, settings.prior_samples, settings.denominator,
                                     progress=bar, scope=settings.likelihoods)
        bar.close()
        for cell in cells.values():
            if cell.get("warning"):
                context.echo(f"warning: {cell['warning']}")
        return {"likelihood": cells}

    def summary(self, result: dict, names: list[str]) -> dict[str, float]:
        out: dict[str, float] = {}
        for key, cell in result.get("likelihood", {}).items():
            if cell["mean"] is not None:
                out[f"likelihood/{key}"] = cell["mean"]
            if cell.get("log_w_var") is not None:  # MVAE's Table 3: how good the proposal is
                out[f"log_w_var/{key}"] = cell["log_w_var"]
        return out

    def report(self, result: dict) -> list[Block]:
        if not result.get("likelihood"):
            return []
        s = result["settings"]
        blocks: list[Block] = [Text(["## Log-likelihoods (importance sampled)", "",
                                     f"K = {s['iw_samples']} samples from the posterior of the conditioning set; conditionals divide by "
                                     f"p(x_given) from {s['prior_samples'] if s['denominator'] == 'prior' else s['iw_samples']} "
                                     f"{'prior' if s['denominator'] == 'prior' else 'posterior'} samples. Nats per item; higher is better.", ""])]
        alt = any("mean_posterior_denominator" in v for v in result["likelihood"].values())
        blocks.append(Table(["quantity", "estimate", "standard error",
                             *(["with posterior-sampled log p(x_given)", "better of the two (smaller log-weight variance)"] if alt else []),
                             "variance of log weights", "items"],
                            [[k, v["mean"], v.get("stderr"), *([v.get("mean_posterior_denominator"), v.get("mean_best")] if alt else []),
                              v["log_w_var"], v["items"]] for k, v in result["likelihood"].items()]))
        warnings = [f"**Warning:** {v['warning']}" for v in result["likelihood"].values() if v.get("warning")]
        if warnings:
            blocks.append(Text(warnings))
        if alt:
            blocks.append(Text(["The two conditional columns share the numerator and differ in log p(x_given): the paper's prior samples "
                                "(accurate for a low-dimensional x_given, poor when p(x_given|z) is sharp, as for images) or the "
                                "posterior-proposal estimate above (better for sharp likelihoods, biased low when q(z|x_given) is a poor "
                                "proposal, which a large variance of log weights shows). Their gap is a measure of estimator error.", ""]))
        return blocks


METRIC = Likelihood
