"""Attention masks for families whose decoder is not plain causal: bidirectional image blocks, sliding windows.

Gemma 3 lets the soft tokens of one image attend to each other in both directions (its forward derives
the blocks from `token_type_ids`; text stays causal), and most of its layers attend only to the last
`sliding_window` keys. The engine drives the decoder stack itself, with embeddings it assembled and often
with its own 4-D masks (packed question tails, the static decoder), so the model cannot see which rows are
an image nor apply its window to a mask handed to it ready-made (transformers returns a 4-D mask as is, for
every layer type). For such families `layer_masks` builds the masks the model's own forward would build:

- full-attention layers: OR(the engine's mask, same visual block);
- sliding-window layers: AND(that, key within the window of the query);

where the engine's mask is the 4-D mask given (packing, static slots), a 2-D padding mask made causal, or
plain causal. Every visual block (a query image or an injected memory view) is one bidirectional block.
The window is measured in sequence positions, not key slots: a packed tail or a left-padded row sits at
other slots than its tokens would in their own sequence, and the model's rule (key index > query index
- window) holds for the sequence the engine stands for. Families with neither (`needed` is False) never
come here: their masks are exactly what they were.
"""

from __future__ import annotations

from typing import Any

import torch


def needed(backend: Any) -> bool:
    """True when the engine must build this family's masks itself (see the module docstring)."""
    return bool(backend.bidirectional_visual) or backend.sliding_window is not None


def query_slots(cache: Any, q: int, device: torch.device) -> torch.Tensor:
    """(q,) key slots the rows of this forward call are written to: after the cached rows, or the slots a
    static cache (`static_decode.StaticKV`) was told to write."""
    slots = getattr(cache, "slots", None)
    if slots is not None:
        return slots.to(device)
    past = cache.get_seq_length()
    return torch.arange(past, past + q, device=device)


def layer_masks(backend: Any, batch: int, q: int, attention_mask: torch.Tensor | None, positions: torch.Tensor,
                cache: Any, visual: torch.Tensor | None) -> torch.Tensor | dict[str, torch.Tensor]:
    """Boolean masks (B, 1, q, kv) (True: attend) for `q` rows fed over `cache`.

    `attention_mask` is what the engine would have passed (None, 2-D padding (B, kv) or 4-D boolean);
    `positions` (B, q) the rows' positions; `visual` (q,) or (B, q) for each row the id of its visual
    block (-1: text), or None. Returns one mask, or per layer type a dict {"full_attention", "sliding_attention"}
    (the form Gemma 3's decoder takes) when the model has sliding-window layers.
    """
    dev = backend.device
    slots = query_slots(cache, q, dev)
    if attention_mask is not None and attention_mask.dim() == 4:
        allowed = attention_mask.to(dev, torch.bool)
        kv = allowed.shape[-1]
    else:
        kv = int(cache.get_seq_length()) + q
        allowed = (torch.arange(kv, device=dev)[None, :] <= slots[:, None])[None, None]
        if attention_mask is not None:
            allowed = allowed & attention_mask.to(dev, torch.bool)[:, None, None, :]
    allowed = allowed.expand(batch, 1, q, kv).clone()
    # Every row sees its own key: a padding row with nothing else to see would otherwise turn to NaN, and
    # its NaN values would reach real rows through the masked-out (zero-weight) products.
    allowed[:, :, torch.arange(q, device=dev), slots] = True
    if visual is not None:
        vis = visual.to(dev).expand(batch, q)
        kv_vis = torch.full((batch, kv), -1, dtype=torch.long, device=dev).index_copy(1, slots, vis)
        same = (vis[:, :, None] == kv_vis[:, None, :]) & (vis[:, :, None] >= 0)
        allowed = allowed | same[:, None]
    window = backend.sliding_window
    if window is None:
        return allowed
    if positions.dim() != 2:
        raise ValueError("sliding-window layers with 3-D (M-RoPE) positions are not supported")
    pos = positions.to(dev).expand(batch, q)
    kv_pos = torch.arange(kv, device=dev).expand(batch, kv).index_copy(1, slots, pos)
    near = kv_pos[:, None, :] > pos[:, :, None] - window
    return {"full_attention": allowed, "sliding_attention": allowed & near[:, None]}


def shifted(visual: torch.Tensor | None, offset: int, length: int) -> torch.Tensor:
    """Visual block ids of `length` rows placed `offset` rows later in a forward call (-1 stays -1); all -1
    when `visual` is None. Used to lay block ids of several parts side by side without collisions."""
    if visual is None:
        return torch.full((length,), -1, dtype=torch.long)
    return torch.where(visual >= 0, visual + offset, visual)
