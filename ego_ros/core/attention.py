"""Capture of keyword -> visual-token attention without materialising full attention maps.

Eager attention with `output_attentions=True` stores every layer's full map (tens of GB for a 14B model
with a large image). Instead the engine registers its own attention function with transformers'
`AttentionInterface`: on the layers asked for, and only while a `Capture` is active, it recomputes the
softmax for the few query rows of interest (keyword tokens) over all keys, keeps the visual columns,
and then delegates to the normal SDPA kernel. The mask function is registered too, otherwise padding
masks would silently not be built for the custom implementation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

ATTN_IMPLEMENTATION = "ego_capture"

_ACTIVE: ContextVar[Capture | None] = ContextVar("ego_attention_capture", default=None)


@dataclass
class Capture:
    """Collects attention rows of selected query positions onto a range of key columns.

    Attributes:
        layers: decoder layer indices to capture (None: every layer).
        columns: absolute key positions to keep (the visual tokens), a 1-D LongTensor.
        keep_heads: keep one row per head (tests, analysis) instead of the mean over heads.
        rows: query rows of the current forward call to capture (indices into the call's query block);
            None captures none. The caller sets it before each forward call.
    """

    layers: set[int] | None
    columns: torch.Tensor
    keep_heads: bool = False
    rows: torch.Tensor | None = None
    #: rows of the prompt to capture during the prefill pass of a generation (None: no prompt rows)
    prefill_rows: torch.Tensor | None = None
    #: layer -> list of tensors, one per forward call that captured rows, each (B, H or 1, r, C) float32
    records: dict[int, list[torch.Tensor]] = field(default_factory=dict)
    #: preallocated rows (steps, H or 1, C) per layer that a one-row forward writes at `sink_slot` instead of
    #: appending to `records` (the static decoder's decode steps: no allocation, graph-capturable)
    sink: dict[int, torch.Tensor] | None = None
    sink_slot: torch.Tensor | None = None

    def wants(self, layer_idx: int) -> bool:
        return self.rows is not None and (self.layers is None or layer_idx in self.layers)

    def record(self, layer_idx: int, query: torch.Tensor, key: torch.Tensor,
               attention_mask: torch.Tensor | None, scaling: float) -> None:
        rows = self.rows.to(query.device)
        q = query.index_select(2, rows).float()  # (B, H, r, d)
        k = key.float()
        groups = q.shape[1] // k.shape[1]
        if groups > 1:
            k = k.repeat_interleave(groups, dim=1)
        scores = torch.matmul(q, k.transpose(-1, -2)) * scaling  # (B, H, r, kv)
        kv_len = k.shape[2]
        if attention_mask is not None:
            mask = attention_mask.index_select(2, rows) if attention_mask.shape[2] > 1 else attention_mask
            mask = mask[..., :kv_len]
            if mask.dtype == torch.bool:
                scores = scores.masked_fill(~mask, float("-inf"))
            else:
                scores = scores + mask.float()
        else:
            # No mask means plain causal attention with the query block at the end of the keys.
            q_len = query.shape[2]
            q_pos = (kv_len - q_len) + rows
            allowed = torch.arange(kv_len, device=q.device)[None, :] <= q_pos[:, None]
            scores = scores.masked_fill(~allowed[None, None], float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        cols = self.columns.to(probs.device)
        picked = probs.index_select(3, cols)
        if not self.keep_heads:
            picked = picked.mean(dim=1, keepdim=True)
        if self.sink is not None:
            self.sink[layer_idx].index_copy_(0, self.sink_slot, picked[:, :, 0, :])
            return
        self.records.setdefault(layer_idx, []).append(picked)

    def stacked(self, layer_idx: int) -> torch.Tensor:
        """All captured rows of one layer, concatenated over forward calls: (B, H or 1, rows, C)."""
        return torch.cat(self.records[layer_idx], dim=2)


def _capture_attention_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                               value: torch.Tensor, attention_mask: torch.Tensor | None,
                               scaling: float | None = None, dropout: float = 0.0, **kwargs):
    cap = _ACTIVE.get()
    layer_idx = getattr(module, "layer_idx", None)
    if cap is not None and layer_idx is not None and cap.wants(layer_idx):
        scale = scaling if scaling is not None else getattr(module, "scaling", query.shape[-1] ** -0.5)
        cap.record(layer_idx, query, key, attention_mask, scale)
    return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                  **kwargs)


def register() -> str:
    """Register the capturing attention and its mask function with transformers (idempotent)."""
    AttentionInterface.register(ATTN_IMPLEMENTATION, _capture_attention_forward)
    AttentionMaskInterface.register(ATTN_IMPLEMENTATION, sdpa_mask)
    return ATTN_IMPLEMENTATION


@contextlib.contextmanager
def capturing(layers: Sequence[int] | None, columns: torch.Tensor, keep_heads: bool = False) -> Iterator[Capture]:
    """Activate a capture for the current thread/context; forward calls inside record rows set in `rows`."""
    cap = Capture(layers=set(layers) if layers is not None else None, columns=columns, keep_heads=keep_heads)
    token = _ACTIVE.set(cap)
    try:
        yield cap
    finally:
        _ACTIVE.reset(token)
