"""Many short queries over one shared sequence: the query tails packed into a single row.

Recognition asks one yes/no question per concept about the same frame (and `recognize_frames` the same
question about several frames). Everything the queries share -- the concept-memory prefix, the query
image, the text up to where the questions differ -- is composed, embedded and encoded once, into one KV
cache. The tails (a few tokens each) are laid one after another in ONE row, right after the shared rows
still to run (one pass of the decoder stack for image and questions), whose 4-D mask lets each tail
attend to the shared part and, causally, to itself only, with positions continuing from the shared part
for each tail independently. No per-question sequence is built on the host and the cache
is never repeated per question (`batch_repeat_interleave`); the tails' keys are dropped afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import masks
from .attention import Capture
from .profile import stage
from .sequence import (
    Deepstack,
    PrefixCache,
    Runner,
    Sequence,
    fork_cache,
    sequence_deepstack,
    sequence_embeds,
    sequence_positions,
    sequence_visual,
    snapshot,
)


@dataclass
class SharedQueries:
    """Queries that share their beginning: the shared part composed once, and each query's own tail.

    A tail's visual blocks (a frame of `recognize_frames`) start relative to the tail. `context_end` is
    where the static context (concept memories) ends in `shared`: the part a prefix cache may hold.
    """

    shared: Sequence
    tails: list[Sequence]
    context_end: int | None = None

    def __post_init__(self) -> None:
        if not self.tails or any(len(t) == 0 for t in self.tails):
            raise ValueError("every query needs at least one token of its own after the shared part")


def packed_tail_mask(past: int, lengths: list[int], device: torch.device, shared: int = 0) -> torch.Tensor:
    """(1, 1, S + T, past + S + T) boolean mask (True: attend) of a row holding `shared` rows and then
    tails of `lengths` (T in all), after `past` cached rows: the shared rows are causal over the cache and
    themselves; every tail sees the cache, all shared rows and, causally, its own rows only."""
    total = shared + sum(lengths)
    # Segment -1 is the shared part. Built on the host and copied: sizing a repeat_interleave on the device
    # would synchronise it.
    seg = torch.cat([torch.full((shared,), -1, dtype=torch.long),
                     torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))]).to(device)
    idx = torch.arange(total, device=device)
    visible = (seg[None, :] == -1) | (seg[:, None] == seg[None, :])
    own = visible & (idx[None, :] <= idx[:, None])
    seen = torch.ones(total, past, dtype=torch.bool, device=device)
    return torch.cat([seen, own], dim=1)[None, None]


def _pack(runner: Runner, tails: list[Sequence], next_pos: int):
    """Embeddings (T, D), positions (T,) or (3, T), DeepStack rows, visual block ids (`sequence_visual`) and
    lengths of tails packed in one row."""
    b = runner.backend
    packed = Sequence()
    for t in tails:
        packed.blocks.extend((len(packed.ids) + s, blk) for s, blk in t.blocks)
        packed.ids.extend(t.ids)
    emb = sequence_embeds(b, packed)
    lengths = [len(t) for t in tails]
    if not packed.blocks:
        # Text-only tails: each continues from the shared part's next position, one step per token.
        local = torch.cat([torch.arange(n) for n in lengths])
        pos = next_pos + local
        pos = pos.expand(3, -1) if b.mrope else pos
    else:
        pos = torch.cat([sequence_positions(b, t, start=next_pos)[0] for t in tails], dim=-1)
    return emb, pos, sequence_deepstack(b, packed), sequence_visual(b, packed), lengths


def _deepstack_rows(parts: list[tuple[Deepstack | None, int]]) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
    """The DeepStack rows of a row made of consecutive parts (each: its DeepStack or None, and its length)."""
    feats = [d.feats for d, _ in parts if d is not None]
    if not feats:
        return None
    mask = torch.cat([d.mask if d is not None else torch.zeros(n, dtype=torch.bool) for d, n in parts])
    return [(mask, torch.cat(feats, dim=1))]


def shared_last_logits(runner: Runner, queries: SharedQueries, prefix: PrefixCache | None = None,
                       batch: int | None = None, capture: Capture | None = None) -> torch.Tensor:
    """Logits of the next token after each query (N, V).

    With an active `capture` (attention.capturing), the attention of each tail's last row (the row whose
    logits are returned) is recorded on the capture's layers and columns, in the same passes: the
    localisation signal costs no second forward pass.

    The cached prefix (if any) is forked once. The first forward pass runs the rest of the shared part
    (query image, shared text) together with the first `batch` tails (all when None) packed after it,
    over that single cache; further passes run the next tails from the shared part's keys and values.
    """
    b = runner.backend
    shared = queries.shared
    cache, p0 = runner._start(shared, prefix)
    pos, next_pos = sequence_positions(b, shared, begin=p0, start=prefix.next_position if p0 else None)
    emb = sequence_embeds(b, shared, begin=p0)
    deep = sequence_deepstack(b, shared, begin=p0)
    vis = sequence_visual(b, shared, begin=p0)
    n_shared = len(shared) - p0
    tails = queries.tails
    step = batch or len(tails)
    out = []
    base = None
    for i in range(0, len(tails), step):
        # The first pass also runs the query image and shared text: its stage says so.
        with stage("prefill+tails" if i == 0 else "tails"):
            t_emb, t_pos, t_deep, t_vis, lengths = _pack(runner, tails[i:i + step], next_pos)
            if i == 0:
                # One pass for the shared rows and the first tails (one launch of the whole stack fewer).
                rows_emb, rows_pos = torch.cat([emb, t_emb]), torch.cat([pos, t_pos], dim=-1)
                mask = packed_tail_mask(p0, lengths, b.device, shared=n_shared)
                deep_rows = _deepstack_rows([(deep, n_shared), (t_deep, t_emb.shape[0])])
                rows_vis = None if vis is None and t_vis is None else torch.cat(
                    [masks.shifted(vis, 0, n_shared), masks.shifted(t_vis, n_shared, t_emb.shape[0])])
                first_row, pass_cache = n_shared, cache
            else:
                if base is None:
                    base = [(k[..., :len(shared), :], v[..., :len(shared), :]) for k, v in snapshot(cache)]
                rows_emb, rows_pos = t_emb, t_pos
                mask = packed_tail_mask(len(shared), lengths, b.device)
                deep_rows = _deepstack_rows([(t_deep, t_emb.shape[0])])
                rows_vis = t_vis
                first_row, pass_cache = 0, fork_cache(base)
            last = first_row + torch.cumsum(torch.tensor(lengths), 0) - 1
            if capture is not None:
                capture.rows = last
            out.append(runner._forward(rows_emb[None], Runner._batch_positions(rows_pos), pass_cache,
                                       attention_mask=mask, deepstack=deep_rows, rows=last,
                                       visual=rows_vis))
    if capture is not None:
        capture.rows = None
    return torch.cat(out)
