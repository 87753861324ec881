"""Importance-sampled log-likelihoods, as in the MVAE paper (Wu & Goodman 2018, §5).

    log p(X_T)        ≈ log (1/K) Σ_k p(X_T | z_k) p(z_k) / q(z_k | X_S),   z_k ~ q(z | X_S)
    log p(X_T | X_G)  ≈ log p(X_T, X_G) [proposal q(z | X_G)] − log E_{p(z)}[p(X_G | z)]

The proposal is any subset's posterior (``model.fusion.posterior``) or the prior. All K samples
of a batch are drawn and scored at once ((k, B) tensors), in chunks of k that bound memory; the
running log-sum-exp and the moments of the log weights (the paper's inference-quality measure,
Table 3) are accumulated on the device, so nothing is read back until the end.
"""
from __future__ import annotations

import contextlib
import math
import zlib
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import torch
from torch import Tensor

from modkit.core.batch import Batch
from modkit.core.engine import MultimodalVAE
from modkit.errors import ModkitError

#: default budget: decoder outputs of at most this many numbers live at once (~64 MB of float32)
CHUNK_ELEMENTS = 2**24
#: the CPU's budget: chunks of 2^24 outputs made every chunk's intermediates fresh pages from the
#: kernel (on the shapes recipe 28 of 68 s were page faults, with a 4 GB peak); 2^19 ran faster at a 1.2 GB peak
CPU_CHUNK_ELEMENTS = 2**19


def chunk_budget(device: torch.device) -> int:
    """Decoder outputs one chunk may hold on ``device`` (:data:`CHUNK_ELEMENTS`, smaller on the CPU)."""
    return CPU_CHUNK_ELEMENTS if device.type == "cpu" else CHUNK_ELEMENTS
PRIOR = "prior"


@dataclass
class ISEstimate:
    """Per-sample estimates for one batch: ``log_p`` (B,), the variance of the log weights (B,), and
    ``valid`` (B,), the samples where every modality involved is present."""

    log_p: Tensor
    log_w_var: Tensor
    valid: Tensor


def prior_of(model: MultimodalVAE):
    """p(z): the fusion's own prior (:meth:`modkit.Fusion.prior`; N(0, I) unless the fusion says otherwise).

    None when the fusion defines no unconditional prior: see :func:`no_prior_reason`.
    """
    return model.fusion.prior()


def no_prior_reason(model: MultimodalVAE) -> str:
    """Why a quantity that needs p(z) is not reported for this model."""
    return f"not applicable: the {type(model.fusion).__name__} fusion {model.fusion.no_prior_reason}"


def no_density_reason(model: MultimodalVAE) -> str | None:
    """Why the importance-sampled likelihoods (and the test ELBO) are not reported for this model, or None when they
    are: no unconditional prior (:func:`no_prior_reason`), or no tractable density over the latent the model carries
    (:attr:`modkit.Fusion.no_likelihood_reason`, e.g. a hierarchical model that decodes through a function of its top latent)."""
    if prior_of(model) is None:
        return no_prior_reason(model)
    reason = getattr(model.fusion, "no_likelihood_reason", None)
    return f"not applicable: the {type(model.fusion).__name__} fusion {reason}" if reason else None

def output_elements(model: MultimodalVAE, names: Sequence[str]) -> int:
    """Numbers one latent decodes to over ``names``: sizes the chunks of k."""
    z = torch.zeros(1, model.latent_dim, device=model.device)
    return sum(model.modalities[n].decode(z).numel() for n in names)


def _log_lik(model: MultimodalVAE, z: Tensor, batch: Batch, names: Sequence[str], shared: bool) -> Tensor:
    """Σ_{t ∈ names} log p(x_t | z), unweighted (λ is a training device, not part of p(x)).

    ``z`` is (k, B, D), or (k, D) when ``shared`` (prior samples common to the batch: decoded once).
    """
    total = None
    b = len(batch)
    for name in names:
        modality = model.modalities[name]
        out = modality.decode(z)
        if shared:
            out = out.unsqueeze(1).expand(out.shape[0], b, *out.shape[1:])
        ll = modality.log_likelihood(out, batch.data[name]).float()
        total = ll if total is None else total + ll
    return total


@torch.no_grad()
def importance_log_likelihood(model: MultimodalVAE, batch: Batch, targets: Sequence[str],
                              proposal: Sequence[str] | str = (), k: int = 1000,
                              chunk_elements: int | None = None) -> ISEstimate:
    """log p(x_targets) for each sample of ``batch`` from ``k`` importance samples.

    ``proposal`` names the modalities whose posterior q(z | x_proposal) proposes z (default: the
    targets themselves), or is ``"prior"`` to sample p(z), which then cancels from the weights.
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    refused = no_density_reason(model)
    if refused is not None:
        raise ModkitError(f"importance-sampled likelihoods are {refused}")
    names = list(targets)
    use_prior = isinstance(proposal, str) and proposal == PRIOR
    given = [] if use_prior else (list(proposal) or names)
    involved = [model.names.index(n) for n in dict.fromkeys([*names, *given])]
    valid = batch.present[:, involved].all(1)
    b = len(batch)
    prior = prior_of(model)
    if use_prior:
        q = None
    else:
        q = model.fusion.posterior(model.encode(batch), model.subset_mask(given))
    per_latent = output_elements(model, names) * b
    step = max(1, min(k, (chunk_elements or chunk_budget(model.device)) // max(per_latent, 1)))
    running = None
    ref = s1 = s2 = None
    done = 0
    while done < k:
        kc = min(step, k - done)
        if use_prior:
            z = prior.rsample(kc)  # (kc, D): the same draws serve every sample, decoded once
            log_w = _log_lik(model, z, batch, names, shared=True)
        else:
            z = q.rsample(kc).reshape(kc, b, -1)
            log_q = q.log_prob(z.unsqueeze(1)).reshape(kc, b)
            log_w = _log_lik(model, z, batch, names, shared=False) + prior.log_prob(z) - log_q
        chunk_lse = torch.logsumexp(log_w, 0)
        running = chunk_lse if running is None else torch.logaddexp(running, chunk_lse)
        w = log_w.double()
        if ref is None:
            ref = w.mean(0)  # shift before squaring: the variance of numbers near −1000 stays exact
            s1 = torch.zeros_like(ref)
            s2 = torch.zeros_like(ref)
        s1 = s1 + (w - ref).sum(0)
        s2 = s2 + ((w - ref) ** 2).sum(0)
        done += kc
    log_p = running - math.log(k)
    mean = s1 / k
    var = (s2 / k - mean**2).clamp_min(0.0) * (k / (k - 1) if k > 1 else 1.0)
    return ISEstimate(log_p, var.float(), valid)


@torch.no_grad()
def conditional_log_likelihood(model: MultimodalVAE, batch: Batch, targets: Sequence[str], given: Sequence[str],
                               k: int = 1000, denominator: str = PRIOR, k_denominator: int = 5000,
                               chunk_elements: int | None = None, den: ISEstimate | None = None) -> tuple[ISEstimate, ISEstimate]:
    """log p(x_targets | x_given) as the paper writes it: the joint under proposal q(z | x_given) minus
    log p(x_given), the latter from ``k_denominator`` prior samples (``denominator="prior"``, the paper)
    or from the posterior q(z | x_given) (``"posterior"``: lower variance). Returns (conditional, denominator).
    ``den``: an estimate of log p(x_given) already made for this batch (reused, not estimated again)."""
    joint = importance_log_likelihood(model, batch, [*targets, *given], given, k, chunk_elements)
    if den is None:
        den_proposal = PRIOR if denominator == PRIOR else list(given)
        den = importance_log_likelihood(model, batch, list(given), den_proposal, k_denominator, chunk_elements)
    return ISEstimate(joint.log_p - den.log_p, joint.log_w_var, joint.valid & den.valid), den


#: which estimates :func:`quantities` lists: ``default`` grows with N, ``all`` with N²
SCOPES = ("default", "all")


def quantities(names: Sequence[str], scope: str = "all") -> list[tuple[str, list[str], list[str]]]:
    """The estimates eval reports. ``default``: every log p(x_i) and the full joint (N + 1 estimates);
    ``all``: also every pair's log p(x_i, x_j) and every log p(x_i | x_j) (N² more, each conditional with its
    own denominator). Each is (key, targets, given); ``given`` empty means unconditional."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
    names = list(names)
    out = [(f"log p({n})", [n], []) for n in names]
    if scope == "default":
        return out + ([(f"log p({','.join(names)})", names, [])] if len(names) > 1 else [])
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    out += [(f"log p({a},{b})", [a, b], []) for a, b in pairs]
    if len(names) > 2:
        out.append((f"log p({','.join(names)})", names, []))
    out += [(f"log p({a}|{b})", [a], [b]) for a in names for b in names if a != b]
    return out


def mass_only(model: MultimodalVAE, names: Sequence[str]) -> bool:
    """Every modality in ``names`` scores a probability (:attr:`modkit.Likelihood.mass`): their log p is never positive."""
    return all(getattr(getattr(model.modalities[n], "likelihood", None), "mass", False) for n in names)


def _mean_and_stderr(total: Tensor, squares: Tensor, count: int) -> tuple[float | None, float | None]:
    """The mean over items and its standard error (sample standard deviation / √n) from running sums."""
    if not count:
        return None, None
    mean = total.item() / count
    if count < 2:
        return mean, None
    var = max(squares.item() / count - mean**2, 0.0) * count / (count - 1)
    return mean, math.sqrt(var / count)


@contextlib.contextmanager
def _own_stream(device: torch.device, base_seed: int, key: str, index: int) -> Iterator[None]:
    """Seed the draws of one estimate on one batch from (base, key, batch): an estimate's numbers do not depend
    on which other estimates were asked for (``scope``), and the caller's random stream is restored after."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed((base_seed ^ zlib.crc32(key.encode())) + index)
        yield


def _estimate(model: MultimodalVAE, batch: Batch, targets: list[str], given: list[str], k: int, k_denominator: int,
              denominator: str, chunk_elements: int | None, dens: dict[str, ISEstimate],
              marginals: dict[str, ISEstimate]) -> tuple[ISEstimate, Tensor | None]:
    """One quantity of :func:`quantities` on one batch, reusing this batch's denominators and marginals;
    returns the estimate and, for a conditional, its value over the posterior-proposal denominator (or None)."""
    alt = None
    if given:
        g = given[0]
        est, dens[g] = conditional_log_likelihood(model, batch, targets, given, k, denominator, k_denominator,
                                                  chunk_elements, den=dens.get(g))
        if denominator == PRIOR and g in marginals:  # free: log p(x_g) under q(z|x_g) is already estimated
            alt = est.log_p + dens[g].log_p - marginals[g].log_p  # the joint over the posterior marginal
    else:
        est = importance_log_likelihood(model, batch, targets, targets, k, chunk_elements)
        if len(targets) == 1:
            marginals[targets[0]] = est
    return est, alt


@torch.no_grad()
def likelihood_suite(model: MultimodalVAE, batches: Iterable[Batch], k: int = 1000, k_denominator: int = 5000,
                     denominator: str = PRIOR, chunk_elements: int | None = None,
                     progress=None, scope: str = "all") -> dict[str, dict[str, float]]:
    """Means over the test set of every quantity in :func:`quantities` (``scope``; nats per sample), with their standard
    error over items, the mean variance of the log importance weights and the number of samples averaged over.

    With the prior-sampled denominator each conditional also reports ``mean_posterior_denominator`` and
    ``mean_best`` (with ``stderr_best`` and ``best_denominator``): the estimate whose log p(x_given) had the
    smaller mean variance of log importance weights, the paper's own measure of a proposal's quality. Prior
    draws that miss the sharp region of p(x_given | z) leave that variance large and log p(x_given) far too
    low, which is what makes a conditional come out too high. A mean above 0 for targets that are all
    discrete (:func:`mass_only`) is impossible for a log-probability and carries a ``warning``.
    """
    model.eval()
    sums: dict[str, list[Tensor]] = {}
    todo = quantities(model.names, scope)
    base_seed = int(torch.randint(2**62, ()))  # one draw from the caller's stream; each estimate then has its own
    for index, batch in enumerate(batches):
        batch = batch.to(model.device)
        if len(batch) == 0:
            continue
        dens: dict[str, ISEstimate] = {}
        marginals: dict[str, ISEstimate] = {}
        for key, targets, given in todo:
            with _own_stream(model.device, base_seed, key, index):
                est, alt = _estimate(model, batch, targets, given, k, k_denominator, denominator, chunk_elements, dens, marginals)
            m = est.valid.double()
            acc = sums.setdefault(key, [torch.zeros((), dtype=torch.float64, device=model.device) for _ in range(8)])
            lp = torch.nan_to_num(est.log_p.double(), neginf=0.0) * m
            acc[0] += lp.sum()
            acc[1] += (torch.nan_to_num(est.log_w_var.double()) * m).sum()
            acc[2] += m.sum()
            acc[4] += (lp**2).sum()
            if alt is not None:
                g = given[0]
                lp_alt = torch.nan_to_num(alt.double(), neginf=0.0) * m
                acc[3] += lp_alt.sum()
                acc[5] += (lp_alt**2).sum()
                acc[6] += (torch.nan_to_num(dens[g].log_w_var.double()) * m).sum()  # the two denominators' weight spread
                acc[7] += (torch.nan_to_num(marginals[g].log_w_var.double()) * m).sum()
        if progress is not None:
            progress(len(batch))
    out = {}
    conditional = {key for key, _, given in todo if given}
    targets_of = {key: targets for key, targets, _ in todo}
    for key, (lp, var, n, alt, squares, alt_squares, var_prior, var_posterior) in sums.items():
        count = int(n.item())
        mean, stderr = _mean_and_stderr(lp, squares, count)
        cell = out[key] = {"mean": mean, "stderr": stderr, "log_w_var": var.item() / count if count else None, "items": count}
        if key in conditional and denominator == PRIOR:
            # the same numerator over the posterior-proposal estimate of log p(x_given): consistent with log p(x_given)
            cell["mean_posterior_denominator"], stderr_alt = _mean_and_stderr(alt, alt_squares, count)
            posterior_better = bool(var_posterior < var_prior)
            cell["best_denominator"] = "posterior" if posterior_better else PRIOR
            cell["mean_best"], cell["stderr_best"] = (cell["mean_posterior_denominator"], stderr_alt) if posterior_better else (mean, stderr)
        if mean is not None and mean > 0 and mass_only(model, targets_of[key]):
            better = f"; the better denominator gives {cell['mean_best']:.4g}" if cell.get("mean_best") is not None else ""
            cell["warning"] = (f"{key} = {mean:+.4g} > 0 is impossible for a discrete variable: the estimate is "
                               f"unreliable (more --prior-samples, or --denominator posterior){better}")
    return out
