"""Sequence encoders and latent-conditioned decoders (GRU or a small transformer), word dropout, greedy and beam search.

Batches are fixed-length (B, L) token ids padded with id 0 plus (B,) lengths; nothing here
moves data to the host, so encoders gather the last real position instead of packing sequences.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from modkit_caption.tokenizer import BOS, EOS, PAD, UNK


def length_mask(lengths: Tensor, max_length: int) -> Tensor:
    """(B,) lengths → (B, L) bool, True on real tokens."""
    return torch.arange(max_length, device=lengths.device) < lengths.unsqueeze(-1)


def shift_right(tokens: Tensor) -> Tensor:
    """Decoder inputs for teacher forcing: bos, then the targets without their last position."""
    bos = torch.full_like(tokens[..., :1], BOS)
    return torch.cat([bos, tokens[..., :-1]], dim=-1)


def word_dropout(inputs: Tensor, rate: float, generator: torch.Generator | None = None) -> Tensor:
    """Replace decoder-input words by <unk> with probability ``rate`` (Bowman et al., 2016): bos and padding stay."""
    if rate <= 0:
        return inputs
    drop = torch.rand(inputs.shape, device=inputs.device, generator=generator) < rate
    drop &= (inputs != BOS) & (inputs != PAD)
    return inputs.masked_fill(drop, UNK)


class GRUEncoder(nn.Module):
    """Embedding → GRU; the feature is the top layer's output at the last real token."""

    def __init__(self, vocab: int, embedding_dim: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        self.embed = nn.Embedding(vocab, embedding_dim, padding_idx=PAD)
        self.gru = nn.GRU(embedding_dim, hidden, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.out_features = hidden

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        out, _ = self.gru(self.embed(tokens))
        last = (lengths - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, out.shape[-1])
        return out.gather(1, last).squeeze(1)


class TransformerEncoder(nn.Module):
    """Embedding + learned positions → pre-norm transformer with a padding mask; masked mean pooling."""

    def __init__(self, vocab: int, max_length: int, hidden: int, layers: int, heads: int, dropout: float):
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden, padding_idx=PAD)
        self.position = nn.Parameter(torch.randn(max_length, hidden) * 0.02)
        layer = nn.TransformerEncoderLayer(hidden, heads, 4 * hidden, dropout, batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out_features = hidden

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        mask = length_mask(lengths.clamp(min=1), tokens.shape[1])
        h = self.layers(self.embed(tokens) + self.position[: tokens.shape[1]], src_key_padding_mask=~mask)
        weights = mask.unsqueeze(-1).to(h.dtype)
        return (h * weights).sum(1) / weights.sum(1)


class GRUDecoder(nn.Module):
    """A GRU whose initial state and every input carry the latent's projection (``cond``)."""

    def __init__(self, vocab: int, embedding_dim: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        self.layers, self.hidden = layers, hidden
        self.cond_dim = layers * hidden
        self.embed = nn.Embedding(vocab, embedding_dim, padding_idx=PAD)
        self.gru = nn.GRU(embedding_dim + hidden, hidden, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, cond: Tensor, inputs: Tensor) -> Tensor:
        """cond (M, cond_dim), inputs (M, T) → logits (M, T, V)."""
        states = cond.view(-1, self.layers, self.hidden)
        h0 = torch.tanh(states).transpose(0, 1).contiguous()
        top = states[:, -1:, :].expand(-1, inputs.shape[1], -1)
        out, _ = self.gru(torch.cat([self.embed(inputs), top], dim=-1), h0)
        return self.out(out)


class TransformerDecoder(nn.Module):
    """A causal pre-norm transformer decoder that cross-attends to the latent's projection (one memory token)."""

    def __init__(self, vocab: int, max_length: int, hidden: int, layers: int, heads: int, dropout: float):
        super().__init__()
        self.cond_dim = hidden
        self.embed = nn.Embedding(vocab, hidden, padding_idx=PAD)
        self.position = nn.Parameter(torch.randn(max_length, hidden) * 0.02)
        layer = nn.TransformerDecoderLayer(hidden, heads, 4 * hidden, dropout, batch_first=True, norm_first=True)
        self.layers = nn.TransformerDecoder(layer, layers)
        self.norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, cond: Tensor, inputs: Tensor) -> Tensor:
        t = inputs.shape[1]
        causal = torch.triu(torch.full((t, t), float("-inf"), device=inputs.device), diagonal=1)
        h = self.embed(inputs) + self.position[:t] + cond.unsqueeze(1)
        h = self.layers(h, cond.unsqueeze(1), tgt_mask=causal)
        return self.out(self.norm(h))


def next_log_probs(decoder: nn.Module, cond: Tensor, prefix: Tensor) -> Tensor:
    """log p(next token | prefix, z) over the vocabulary; padding and bos can never be generated."""
    logits = decoder(cond, prefix)[:, -1].float()
    logits[:, PAD] = float("-inf")
    logits[:, BOS] = float("-inf")
    return torch.log_softmax(logits, dim=-1)


def _finish(prefix: Tensor, max_length: int) -> tuple[Tensor, Tensor]:
    """Strip bos; pad after the first eos; lengths include the eos (or are max_length without one)."""
    tokens = prefix[:, 1 : max_length + 1]
    is_eos = tokens == EOS
    seen = torch.cumsum(is_eos.int(), dim=1)
    after = (seen - is_eos.int()) > 0
    tokens = tokens.masked_fill(after, PAD)
    has = is_eos.any(1)
    first = is_eos.int().argmax(1)
    lengths = torch.where(has, first + 1, torch.full_like(first, tokens.shape[1]))
    return tokens, lengths


@torch.no_grad()
def greedy(decoder: nn.Module, cond: Tensor, max_length: int) -> tuple[Tensor, Tensor]:
    """Most likely token at each step: (M, cond_dim) → tokens (M, L), lengths (M,)."""
    m = cond.shape[0]
    prefix = torch.full((m, 1), BOS, dtype=torch.long, device=cond.device)
    for _ in range(max_length):
        token = next_log_probs(decoder, cond, prefix).argmax(-1, keepdim=True)
        prefix = torch.cat([prefix, token], dim=1)
    tokens, lengths = _finish(prefix, max_length)
    return tokens, lengths


def length_penalty(length: Tensor, alpha: float) -> Tensor:
    """GNMT's ((5 + |y|) / 6)^α; α = 0 ranks hypotheses by their total log-probability."""
    return ((5.0 + length.float()) / 6.0) ** alpha


@torch.no_grad()
def beam_search(decoder: nn.Module, cond: Tensor, max_length: int, beam_size: int, alpha: float = 0.6) -> tuple[Tensor, Tensor]:
    """Beam search over all rows at once: (M, cond_dim) → best tokens (M, L) and lengths (M,).

    A finished hypothesis (it emitted eos) only extends with a free eos, so it keeps its score while
    competing with open ones; the winner maximises log p / length_penalty.
    """
    m, k = cond.shape[0], beam_size
    device = cond.device
    cond_k = cond.repeat_interleave(k, dim=0)
    prefix = torch.full((m * k, 1), BOS, dtype=torch.long, device=device)
    scores = torch.full((m, k), float("-inf"), device=device)
    scores[:, 0] = 0.0
    finished = torch.zeros(m * k, dtype=torch.bool, device=device)
    lengths = torch.zeros(m * k, dtype=torch.long, device=device)
    for _ in range(max_length):
        logp = next_log_probs(decoder, cond_k, prefix)  # (M·k, V)
        vocab = logp.shape[-1]
        frozen = torch.full_like(logp, float("-inf"))
        frozen[:, EOS] = 0.0
        logp = torch.where(finished.unsqueeze(-1), frozen, logp)
        total = (scores.view(-1, 1) + logp).view(m, k * vocab)
        scores, index = total.topk(k, dim=1)
        beam = index // vocab
        token = index % vocab
        source = (beam + torch.arange(m, device=device).unsqueeze(1) * k).view(-1)
        prefix = torch.cat([prefix[source], token.view(-1, 1)], dim=1)
        was_finished = finished[source]
        lengths = lengths[source] + (~was_finished).long()
        finished = was_finished | (token.view(-1) == EOS)
    ranked = scores / length_penalty(lengths.view(m, k), alpha)
    best = ranked.argmax(1) + torch.arange(m, device=device) * k
    return _finish(prefix[best], max_length)


def sequence_log_prob(decoder: nn.Module, cond: Tensor, tokens: Tensor, lengths: Tensor) -> Tensor:
    """Σ_t log p(y_t | y_<t, z) over real tokens, under the same rules as the search (no pad/bos)."""
    logits = decoder(cond, shift_right(tokens)).float()
    logits[..., PAD] = float("-inf")
    logits[..., BOS] = float("-inf")
    logp = torch.log_softmax(logits, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    mask = length_mask(lengths, tokens.shape[1])
    return torch.where(mask, logp, torch.zeros_like(logp)).sum(-1)

