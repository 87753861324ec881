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
    drop = torch.rand(inputs.shape, device=inputs.device, **({} if generator is None else {"generator": generator})) < rate  # None: traceable by dynamo
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

    # incremental decoding: O(1) work per generated token
    def start(self, cond: Tensor) -> dict[str, Tensor]:
        states = cond.view(-1, self.layers, self.hidden)
        return {"h": torch.tanh(states).transpose(0, 1).contiguous(), "top": states[:, -1]}

    def step(self, state: dict[str, Tensor], token: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Feed one token per row (M,) → next-token logits (M, V) and the new state."""
        x = torch.cat([self.embed(token), state["top"]], dim=-1).unsqueeze(1)
        out, h = self.gru(x, state["h"])
        return self.out(out[:, 0]), {"h": h, "top": state["top"]}

    @staticmethod
    def reorder(state: dict[str, Tensor], index: Tensor) -> dict[str, Tensor]:
        return {"h": state["h"].index_select(1, index), "top": state["top"].index_select(0, index)}


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

    # incremental decoding: the prefix is re-read each step (no key/value cache; sequences are short)
    def start(self, cond: Tensor) -> dict[str, Tensor]:
        return {"cond": cond, "prefix": cond.new_zeros((cond.shape[0], 0), dtype=torch.long)}

    def step(self, state: dict[str, Tensor], token: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        prefix = torch.cat([state["prefix"], token.unsqueeze(1)], dim=1)
        return self(state["cond"], prefix)[:, -1], {"cond": state["cond"], "prefix": prefix}

    @staticmethod
    def reorder(state: dict[str, Tensor], index: Tensor) -> dict[str, Tensor]:
        return {k: v.index_select(0, index) for k, v in state.items()}


def allowed_log_probs(logits: Tensor) -> Tensor:
    """log p(next token) over the vocabulary; padding and bos can never be generated."""
    logits = logits.float().clone()
    logits[..., PAD] = float("-inf")
    logits[..., BOS] = float("-inf")
    return torch.log_softmax(logits, dim=-1)


def _finish(tokens: Tensor) -> tuple[Tensor, Tensor]:
    """Pad after the first eos; lengths include the eos (or are the full length without one)."""
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
    state = decoder.start(cond)
    token = torch.full((cond.shape[0],), BOS, dtype=torch.long, device=cond.device)
    out = []
    for _ in range(max_length):
        logits, state = decoder.step(state, token)
        token = allowed_log_probs(logits).argmax(-1)
        out.append(token)
    return _finish(torch.stack(out, dim=1))


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
    state = decoder.start(cond.repeat_interleave(k, dim=0))
    token = torch.full((m * k,), BOS, dtype=torch.long, device=device)
    history = torch.zeros((m * k, 0), dtype=torch.long, device=device)
    scores = torch.full((m, k), float("-inf"), device=device)
    scores[:, 0] = 0.0
    finished = torch.zeros(m * k, dtype=torch.bool, device=device)
    lengths = torch.zeros(m * k, dtype=torch.long, device=device)
    offsets = torch.arange(m, device=device).unsqueeze(1) * k
    for _ in range(max_length):
        logits, state = decoder.step(state, token)
        logp = allowed_log_probs(logits)  # (M·k, V)
        vocab = logp.shape[-1]
        frozen = torch.full_like(logp, float("-inf"))
        frozen[:, EOS] = 0.0
        logp = torch.where(finished.unsqueeze(-1), frozen, logp)
        scores, index = (scores.view(-1, 1) + logp).view(m, k * vocab).topk(k, dim=1)
        source = (index // vocab + offsets).view(-1)
        token = (index % vocab).view(-1)
        state = decoder.reorder(state, source)
        history = torch.cat([history[source], token.unsqueeze(1)], dim=1)
        was_finished = finished[source]
        lengths = lengths[source] + (~was_finished).long()
        finished = was_finished | (token == EOS)
    ranked = scores / length_penalty(lengths.view(m, k), alpha)
    best = ranked.argmax(1) + offsets.squeeze(1)
    return _finish(history[best])


def sequence_log_prob(decoder: nn.Module, cond: Tensor, tokens: Tensor, lengths: Tensor) -> Tensor:
    """Σ_t log p(y_t | y_<t, z) over real tokens, under the same rules as the search (no pad/bos)."""
    logits = decoder(cond, shift_right(tokens)).float()
    logits[..., PAD] = float("-inf")
    logits[..., BOS] = float("-inf")
    logp = torch.log_softmax(logits, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    mask = length_mask(lengths, tokens.shape[1])
    return torch.where(mask, logp, torch.zeros_like(logp)).sum(-1)

