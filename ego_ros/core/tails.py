"""Many short queries over one shared sequence: the query tails packed into a single row.

Recognition asks one yes/no question per concept about the same frame (and `recognize_frames` the same
question about several frames). Everything the queries share -- the concept-memory prefix, the query
image, the text up to where the questions differ -- is composed, embedded and encoded once, into one KV
cache. The tails (a few tokens each) are then laid one after another in ONE row whose 4-D mask lets
each tail attend to the shared part and, causally, to itself only, with positions continuing from the
shared part for each tail independently. No per-question sequence is built on the host and the cache
is never repeated per question (`batch_repeat_interleave`); the tails' keys are dropped afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .profile import stage
from .sequence import (
    PrefixCache,
    Runner,
    Sequence,
    fork_cache,
    sequence_deepstack,
    sequence_embeds,
    sequence_positions,
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


def packed_tail_mask(past: int, lengths: list[int], device: torch.device) -> torch.Tensor:
    """(1, 1, T, past + T) boolean mask (True: attend) of tails of `lengths` packed in one row after
    `past` cached rows: every tail sees all cached rows and, causally, its own rows only."""
    lens = torch.tensor(lengths, device=device)
    total = int(lens.sum())
    seg = torch.repeat_interleave(torch.arange(len(lengths), device=device), lens)
    idx = torch.arange(total, device=device)
    own = (seg[:, None] == seg[None, :]) & (idx[None, :] <= idx[:, None])
    seen = torch.ones(total, past, dtype=torch.bool, device=device)
    return torch.cat([seen, own], dim=1)[None, None]


def _pack(runner: Runner, tails: list[Sequence], next_pos: int):
    """Embeddings (1, T, D), positions, DeepStack rows and last-row indices of tails packed in one row."""
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
    deep = sequence_deepstack(b, packed)
    last = torch.cumsum(torch.tensor(lengths), 0) - 1
    return emb[None], Runner._batch_positions(pos), deep, lengths, last


def shared_last_logits(runner: Runner, queries: SharedQueries, prefix: PrefixCache | None = None,
                       batch: int | None = None) -> torch.Tensor:
    """Logits of the next token after each query (N, V).

    The cached prefix (if any) is forked once; the rest of the shared part runs in one forward pass over
    that single cache; the tails then run packed, `batch` tails per forward pass (all at once when None),
    each pass starting again from the shared part's keys and values.
    """
    b = runner.backend
    shared = queries.shared
    cache, p0 = runner._start(shared, prefix)
    with stage("prefill"):
        pos, next_pos = sequence_positions(b, shared, begin=p0, start=prefix.next_position if p0 else None)
        if len(shared) > p0:
            deep = sequence_deepstack(b, shared, begin=p0)
            runner._forward(sequence_embeds(b, shared, begin=p0)[None], Runner._batch_positions(pos), cache,
                            deepstack=[deep.rows(0, len(shared) - p0)] if deep else None)
    base = snapshot(cache)
    past = len(shared)
    tails = queries.tails
    step = batch or len(tails)
    out = []
    with stage("tails"):
        for i in range(0, len(tails), step):
            chunk_cache = cache if i == 0 else fork_cache(base)
            emb, pos, deep, lengths, last = _pack(runner, tails[i:i + step], next_pos)
            mask = packed_tail_mask(past, lengths, b.device)
            out.append(runner._forward(emb, pos, chunk_cache, attention_mask=mask,
                                       deepstack=[deep.rows(0, emb.shape[1])] if deep else None, rows=last))
    return torch.cat(out)
