"""The weighted KL of many subset products of experts, without materialising the subset posteriors.

MoPoE's regulariser is Σ_S w_S · KL(PoE_S ‖ N(0, I)) over all 2^N − 1 subsets: at N = 8 that is
255 × B × D latent coordinates, while the decoders see only B rows. Written with autograd it is
some thirty passes over (S, B, D) tensors; at N = 8 it cost more than half the networks' own step.
This module computes it in about fifteen passes, none of them in the backward:

* it works from the precision sums directly: with T = 1 + Σ_{i∈S} τ_i and M = Σ_{i∈S} τ_i μ_i,
  KL_S = ½ Σ_d (1/T + M²/T² − 1 + log T), so μ_S and log σ²_S are never formed;
* Σ_d log T is taken as log of products of four (a quarter of the logarithms): exact while
  T < 2^31, i.e. expert log-variances above about −21 + ln N (first-party heads bound them to ±8);
* the output is one number per sample, so the gradient with respect to the experts' precisions
  and precision-weighted means is computed in the forward, where T and M are at hand, and the
  backward only scales it by the incoming per-sample gradient;
* on CPU it walks the columns in blocks of a few samples whose (S, block) tensors stay in cache.

Memory is O(S × block + N × B × D), not O(S × B × D).
"""
from __future__ import annotations

import torch
from torch import Tensor

from modkit.core.gaussian import Experts, expert_precisions

#: floats per (S, block) work tensor on CPU: chosen by timing the MoPoE step at N = 8 (1 MiB each, in L3)
CPU_BLOCK_FLOATS = 1 << 18
#: on an accelerator a block is only bounded in memory (64 MiB per work tensor): at N = 12 (4095 subsets)
#: one batch of 256 × 64 would otherwise need three 268 MB tensors
ACCEL_BLOCK_FLOATS = 1 << 24


def weighted_subset_kl(experts: Experts, subsets: Tensor, weights: Tensor, prior: bool = True,
                       complete: bool = False) -> Tensor:
    """Σ_s ``weights[s, b]`` · KL(PoE of the experts in ``subsets[s]`` ‖ N(0, I)) for each sample b: (B,).

    ``subsets`` is (S, N), the same for every sample; ``weights`` is (S, B), or (S, 1) when every sample has
    the same weights (a batch known to be complete), and must be zero where a subset holds a modality the
    sample lacks (absent experts are zeroed, so such a row would be the product of the remaining ones).
    With ``prior`` the N(0, I) prior expert is in every product. ``complete`` says, from the host
    (:attr:`SubsetPlan.complete`), that ``subsets`` is :func:`all_subsets` in its order: each subset's sums
    are then a smaller subset's plus one expert's, one addition per subset instead of a matrix product.
    Equal to ``(weights * kl_standard_normal(*product_of_experts(experts, subsets, prior))).sum(0)``,
    in float32 (float64 inputs stay float64); no gradient flows to ``weights``.
    """
    if subsets.dim() != 2:
        raise ValueError(f"subsets must be (S, N), got shape {tuple(subsets.shape)}")
    with torch.autocast(experts.mu.device.type, enabled=False):
        precision, weighted_mu = expert_precisions(experts)  # float32 under AMP too; float64 stays float64
        dtype = precision.dtype
        return _WeightedSubsetKL.apply(precision, weighted_mu, subsets.to(dtype), weights.to(dtype), prior, complete)


def sample_blocks(s: int, b: int, d: int, device: torch.device) -> list[tuple[int, int]]:
    """Sample ranges [b0, b1) whose (S, rows·D) tensors fit the CPU's cache; on an accelerator, blocks as
    large as ``ACCEL_BLOCK_FLOATS`` allows (usually the whole batch: fewer, larger kernels)."""
    limit = CPU_BLOCK_FLOATS if device.type == "cpu" else ACCEL_BLOCK_FLOATS
    rows = max(1, limit // (s * d))
    return [(start, min(start + rows, b)) for start in range(0, b, rows)]


def sum_log(x: Tensor, halves: list[tuple[Tensor, Tensor, Tensor]]) -> Tensor:
    """Σ over the last dim of log x, as log of products of 2^len(halves) entries (fewer logarithms); x is kept.
    ``halves`` holds, per level, the two halves of that level's input and the buffer their product goes to."""
    if not halves:
        return x.log().sum(-1)
    for low, high, out in halves:
        x = torch.mul(low, high, out=out)
    return x.log_().sum(-1)


class _Layout:
    """The views of the work buffers for one block size, made once per forward (the blocks but the last share
    one): fewer operator calls per block."""

    def __init__(self, sums_buffer: Tensor, work: Tensor, buffers: list[Tensor], s: int, rows: int, d: int, n: int,
                 complete: bool):
        c = rows * d
        self.sums = sums_buffer[: (s + 1) * 2 * c].view(s + 1, 2, c)  # row 0: the empty subset; [:, 0] T, [:, 1] M
        self.flat = self.sums[1:].view(s, 2 * c)
        self.r, self.a = self.sums[1:, 0].view(s, rows, d), self.sums[1:, 1].view(s, rows, d)
        self.e = work[: s * c].view(s, rows, d)
        self.halves, x = [], self.r
        for level, buffer in enumerate(buffers):
            half = x.shape[-1] // 2
            out = buffer[: s * rows * (d >> (level + 1))].view(s, rows, -1)
            self.halves.append((x[..., :half], x[..., half:], out))
            x = out
        # doubling: the subsets holding expert k (rows 2^k … 2^(k+1) − 1) are rows 0 … 2^k − 1 plus expert k
        self.pairs = [(self.sums[: 1 << k], self.sums[1 << k: 2 << k]) for k in range(n)] if complete else []
        self.empty = self.sums[0]

    def fill(self, mask: Tensor, source: Tensor, prior: bool) -> None:
        """Each subset's precision sum T (with the prior's 1) and precision-weighted mean sum M from ``source``
        (N, 2, C): by doubling over a complete mask (N additions, a loop over experts, not subsets), else one
        matrix product."""
        if self.pairs:
            self.empty[0].fill_(1.0 if prior else 0.0)
            self.empty[1].zero_()
            for (lower, upper), expert in zip(self.pairs, source.unbind(0)):
                torch.add(lower, expert, out=upper)
            return
        n, _, c = source.shape
        bias = torch.zeros(2, c, dtype=source.dtype, device=source.device)
        if prior:
            bias[0] = 1.0
        torch.addmm(bias.view(1, 2 * c), mask, source.reshape(n, 2 * c), out=self.flat)


class _WeightedSubsetKL(torch.autograd.Function):
    @staticmethod
    def forward(ctx, precision: Tensor, weighted_mu: Tensor, mask: Tensor, weights: Tensor, prior: bool,
                complete: bool) -> Tensor:
        n, b, d = precision.shape
        s = mask.shape[0]
        want_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        blocks = sample_blocks(s, b, d, precision.device)
        rows_max = max(r1 - r0 for r0, r1 in blocks)
        # reused by every block: the subsets' sums (T and M side by side, so one product gives both gradients), and
        # one work tensor
        sums_buffer, work = precision.new_empty((s + 1) * 2 * rows_max * d), precision.new_empty(s * rows_max * d)
        pairings = 2 if d % 4 == 0 else (1 if d % 2 == 0 else 0)
        buffers = [precision.new_empty(s * rows_max * (d >> (level + 1))) for level in range(pairings)]
        layouts: dict[int, _Layout] = {}
        source = torch.stack([precision.reshape(n, b * d), weighted_mu.reshape(n, b * d)], 1)  # (N, 2, B·D)
        shared = weights.shape[1] == 1  # the same weights for every sample: they ride on the (tiny) mask
        if want_grad:  # ∂/∂τ and ∂/∂(τμ), (N, 2, B·D), filled block by block
            grads = precision.new_empty(n, 2, b * d)
            weighted_mask_t = (mask * weights).T.contiguous() if shared else mask.T.contiguous()  # (N, S)
        squares, logs = [], []
        for r0, r1 in blocks:
            rows = r1 - r0
            if rows not in layouts:
                layouts[rows] = _Layout(sums_buffer, work, buffers, s, rows, d, n, complete)
            block = layouts[rows]
            block.fill(mask, source[:, :, r0 * d: r1 * d], prior)
            r, a, e = block.r, block.a, block.e
            if not prior:
                r.masked_fill_(r == 0, 1.0)  # a subset of absent experts only: weight 0, keep it finite
            r.reciprocal_()  # r = 1/T, the subset variance
            a.mul_(r)  # a = M/T, the subset mean
            squares.append(torch.addcmul(r, a, a, out=e).sum(-1))  # Σ_d r + a²
            logs.append(sum_log(r, block.halves))
            if want_grad:  # ∂KL/∂T = ½ r (1 − r − 2a²), ∂KL/∂M = a r; ∂T/∂τ_i = ∂M/∂(τμ)_i = mask[s, i]
                e.addcmul_(a, a)  # u = r + 2a²
                a.mul_(r)
                r.addcmul_(r, e, value=-1.0)  # r (1 − u); the ½ comes at the end
                if not shared:
                    block.flat.view(s, 2, rows, d).mul_(weights[:, r0:r1].view(s, 1, rows, 1))
                grads[:, :, r0 * d: r1 * d] = torch.mm(weighted_mask_t, block.flat).view(n, 2, rows * d)
        # KL_s = ½ Σ_d (r + a² − 1 + log T), with log T = −log r
        kl = (torch.cat(squares, 1) - torch.cat(logs, 1)).sub_(d).mul_(0.5)
        if want_grad:
            grads[:, 0].mul_(0.5)
            ctx.save_for_backward(grads)
            ctx.shape = (n, b, d)
        return (weights * kl).sum(0)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (grads,) = ctx.saved_tensors  # (N, 2, B·D)
        n, b, d = ctx.shape
        g = grad.view(1, b, 1)
        return grads[:, 0].view(n, b, d) * g, grads[:, 1].view(n, b, d) * g, None, None, None, None
