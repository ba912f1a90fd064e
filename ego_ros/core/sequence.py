"""Token sequences with visual rows, their positions, and the LLM passes over them.

The engine drives the language model directly (decoder stack + head) with embeddings it assembles:
text embeddings with visual rows overwritten by projector outputs, either of a query image or of a
stored concept memory. This gives one code path for every family and exact control over positions
(Qwen's 3-D M-RoPE needs each stored token at its original grid row/column), over a KV cache of the
static concept-memory prefix shared by every frame, and over batches of tails that share a prefix.

`generate()` of transformers is not used for this: it drops pixel inputs once a cache is passed and
keeps Qwen's `rope_deltas` between calls, and the greedy loop needed here is a few lines.

Framing: a visual slot's block is laid out as the pieces `Backend.frame_visual` returns (see the layout
contract in `backends/base.py`), so one image may occupy several runs of rows with framing tokens or
structural rows between them (Idefics3's per-tile tags, LLaVA-NeXT's newlines). `Sequence.columns`
records exactly which columns hold the slot's tokens, in token-list order: introduction and
localisation capture attention over those and nothing else.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from . import masks
from .attention import Capture
from .backends.base import Backend, TokenRun, VisualRun, VisualTokens
from .layout import Layout
from .profile import stage
from .prompts import Part, Slot

log = logging.getLogger(__name__)


@dataclass
class VisualBlock:
    """Visual rows to place in a sequence: embeddings plus their (row, col) on their token grid.

    `indices` are the tokens' places in the image's token list (ascending) and `layout` that image's
    grids (`core.layout`): what the backend's framing hook needs to frame a full image or a subset memory.
    A block built without them is a single-grid block holding the grid's first tokens in order (or, for
    `rows`/`cols` given, the tokens at row * cols + col)."""

    embeds: torch.Tensor  # (n, D)
    rows: torch.Tensor  # (n,) long, row within the token's grid
    cols: torch.Tensor  # (n,) long, column within the token's grid
    grid: tuple[int, int]  # (rows, cols) of the full grid the tokens come from (the map grid when tiled)
    deepstack: torch.Tensor | None = None  # (layers, n, D) for Qwen3-VL, else None
    indices: torch.Tensor | None = None  # (n,) long, places in the image's token list
    layout: Layout | None = None
    #: structural rows (a framing's StructuralRun): part of the image, not patch tokens
    structural: bool = False

    def __post_init__(self) -> None:
        if self.layout is None:
            box = (0.0, 0.0, float(self.grid[1]), float(self.grid[0]))
            self.layout = Layout.single(self.grid[0], self.grid[1], box)
        if self.indices is None and not self.structural:
            self.indices = self.rows.to(torch.long).cpu() * self.grid[1] + self.cols.to(torch.long).cpu()

    @classmethod
    def full(cls, vt: VisualTokens) -> VisualBlock:
        if vt.layout.is_single:  # the common case, without the layout arithmetic
            idx = torch.arange(vt.count)
            return cls(vt.embeds, idx // vt.cols, idx % vt.cols, (vt.rows, vt.cols), vt.deepstack, idx, vt.layout)
        return cls.subset(vt, torch.arange(vt.count), share=True)

    @classmethod
    def subset(cls, vt: VisualTokens, indices: torch.Tensor, share: bool = False) -> VisualBlock:
        """The tokens at `indices` (ascending) of `vt`; `share`: all of them, reusing vt's tensors."""
        indices = indices.to(torch.long).cpu()
        return cls.of_layout(vt.layout, (vt.rows, vt.cols), indices,
                             vt.embeds if share else vt.embeds[indices.to(vt.embeds.device)],
                             vt.deepstack if share or vt.deepstack is None
                             else vt.deepstack[:, indices.to(vt.deepstack.device)])

    @classmethod
    def of_layout(cls, layout: Layout, grid: tuple[int, int], indices: torch.Tensor, embeds: torch.Tensor,
                  deepstack: torch.Tensor | None = None) -> VisualBlock:
        """A block of the tokens at `indices` of an image laid out as `layout` (embeds already taken)."""
        _, r, c = layout.positions(indices.numpy())
        return cls(embeds, torch.from_numpy(r), torch.from_numpy(c), tuple(grid), deepstack, indices, layout)

    @property
    def size(self) -> int:
        return int(self.embeds.shape[0])

    def part(self, start: int, stop: int) -> VisualBlock:
        """The block's tokens at positions start .. stop (a framing's VisualRun); the block itself for all."""
        if (start, stop) == (0, self.size):
            return self
        deep = self.deepstack[:, start:stop] if self.deepstack is not None else None
        return VisualBlock(self.embeds[start:stop], self.rows[start:stop], self.cols[start:stop], self.grid, deep,
                           self.indices[start:stop], self.layout)


@dataclass
class Sequence:
    """Token ids of one prompt, visual blocks placed in it, and where each tagged visual slot went.

    A slot's block may be placed as several runs (tiles framed one by one, structural rows between):
    `blocks` holds every run; `spans[tag]` is (first, last + 1) of its visual rows (framing tokens
    between runs included), `columns[tag]` exactly the columns of its tokens in token-list order (what
    attention is captured over), and `frames[tag]` (start, end) of everything the slot placed, framing
    tokens included."""

    ids: list[int] = field(default_factory=list)
    blocks: list[tuple[int, VisualBlock]] = field(default_factory=list)
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: index of the first token of the first query image (the end of the static context prefix)
    image_start: int | None = None
    columns: dict[str, torch.Tensor] = field(default_factory=dict)
    frames: dict[str, tuple[int, int]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def copy(self) -> Sequence:
        """A copy that can be extended without touching this one (visual blocks are shared, not copied)."""
        return Sequence(list(self.ids), list(self.blocks), dict(self.spans), self.image_start, dict(self.columns),
                        dict(self.frames))


def build_sequence(backend: Backend, parts: list[Part], resolve: Callable[[Slot], VisualBlock]) -> Sequence:
    """Tokenise text parts and place the visual block of every slot, framed the family's way."""
    return extend_sequence(backend, Sequence(), parts, resolve)


def extend_sequence(backend: Backend, seq: Sequence, parts: list[Part], resolve: Callable[[Slot], VisualBlock]
                    ) -> Sequence:
    """Append parts to `seq` (in place; returned): what `build_sequence` does, after tokens already there.

    Framing: each visual slot's block is laid out as the pieces `backend.frame_visual` gives (token-id
    runs, visual-token runs, structural runs), every visual or structural row holding the backend's
    placeholder id in `ids` (its embedding is overwritten). Under M-RoPE a block must be one visual run
    (its positions advance once per block)."""
    for part in parts:
        if isinstance(part, str):
            seq.ids.extend(backend.tokenize(part))
            continue
        block = resolve(part)
        if part.kind == "image" and seq.image_start is None:
            seq.image_start = len(seq.ids)
        tag = base = f"{part.kind}:{part.key}:{part.index}"
        repeat = 0
        while tag in seq.spans:  # the same slot twice: number the repeats
            repeat += 1
            tag = f"{base}#{repeat}"
        _place(backend, seq, block, tag)
    return seq


def _place(backend: Backend, seq: Sequence, block: VisualBlock, tag: str) -> None:
    """Lay `block` out at the end of `seq` as the backend frames it, recording its span, columns and frame."""
    pieces = backend.frame_visual(block.layout, block.indices.numpy())
    frame_start = len(seq.ids)
    columns = []
    placed = 0
    for piece in pieces:
        if isinstance(piece, TokenRun):
            seq.ids.extend(piece.ids)
            continue
        if isinstance(piece, VisualRun):
            if piece.start != placed or piece.stop <= piece.start:
                raise ValueError("a framing must place the block's tokens once each, in order")
            run = block.part(piece.start, piece.stop)
            placed = piece.stop
            columns.append(torch.arange(len(seq.ids), len(seq.ids) + run.size))
        else:
            n = int(piece.embeds.shape[0])
            run = VisualBlock(piece.embeds, torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long),
                              block.grid, structural=True)
        seq.blocks.append((len(seq.ids), run))
        seq.ids.extend([backend.placeholder_id] * run.size)
    if placed != block.size:
        raise ValueError(f"the framing placed {placed} of the block's {block.size} tokens")
    runs = sum(1 for p in pieces if not isinstance(p, TokenRun))
    if backend.mrope and runs != 1:
        raise ValueError("M-RoPE positions need each visual block framed as one visual run")
    cols = torch.cat(columns)
    seq.columns[tag] = cols
    seq.spans[tag] = (int(cols[0]), int(cols[-1]) + 1)
    seq.frames[tag] = (frame_start, len(seq.ids))


def sequence_positions(backend: Backend, seq: Sequence, begin: int = 0, start: int | None = None
                       ) -> tuple[torch.Tensor, int]:
    """Position ids (L,) or, for M-RoPE, (3, L) of seq[begin:]; and the position of the next token.

    M-RoPE (as in Qwen's get_rope_index): a text token at running index p gets (p, p, p); a visual token
    on grid row r, column c gets (s, s + r, s + c) with s the running index at the block, and the running
    index then advances by max(grid rows, grid cols). Stored subsets keep their original (r, c), which
    reproduces the positions the full image would have had.

    `start` is the running index at `begin` (default: `begin`, right for 1-D positions and for a
    sequence with no visual block before `begin`): a cached prefix or a shared part supplies its own
    next position so that the rows after it are placed without walking it again.
    """
    n = len(seq.ids)
    cur = begin if start is None else start
    if not backend.mrope:
        return torch.arange(cur, cur + n - begin), cur + n - begin
    pos = torch.empty(3, n - begin, dtype=torch.long)
    i = begin
    for bstart, block in sorted(seq.blocks, key=lambda b: b[0]):
        k = block.embeds.shape[0]
        if bstart < begin:
            if bstart + k > begin:
                raise ValueError("a visual block straddles the start of the positions asked for")
            if start is None:
                raise ValueError("M-RoPE positions after a visual block need the running index at `begin`")
            continue
        if bstart > i:
            pos[:, i - begin:bstart - begin] = torch.arange(cur, cur + bstart - i)
            cur += bstart - i
        pos[0, bstart - begin:bstart - begin + k] = cur
        pos[1, bstart - begin:bstart - begin + k] = cur + block.rows
        pos[2, bstart - begin:bstart - begin + k] = cur + block.cols
        cur += max(block.grid)
        i = bstart + k
    if i < n:
        pos[:, i - begin:] = torch.arange(cur, cur + n - i)
        cur += n - i
    return pos, cur


@dataclass
class Deepstack:
    """Which rows of a sequence are visual and their DeepStack features (Qwen3-VL), for slicing."""

    mask: torch.Tensor  # (L,) bool
    feats: torch.Tensor  # (layers, n_visual, D) in row order

    def rows(self, start: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
        before = int(self.mask[:start].sum())
        inside = int(self.mask[start:end].sum())
        return self.mask[start:end], self.feats[:, before:before + inside]


def sequence_deepstack(backend: Backend, seq: Sequence, begin: int = 0) -> Deepstack | None:
    """The DeepStack rows of seq[begin:], or None for families without DeepStack (or no visual row there)."""
    if not getattr(backend, "deepstack", False):
        return None
    mask = torch.zeros(len(seq.ids) - begin, dtype=torch.bool)
    feats = []
    for start, block in sorted(seq.blocks, key=lambda b: b[0]):
        if start < begin:
            continue
        if block.deepstack is None:
            raise ValueError("a visual block lacks the DeepStack features this model needs")
        mask[start - begin:start - begin + block.embeds.shape[0]] = True
        feats.append(block.deepstack.to(backend.device, backend.dtype))
    if not feats:
        return None
    return Deepstack(mask, torch.cat(feats, dim=1))


def sequence_visual(backend: Backend, seq: Sequence, begin: int = 0, end: int | None = None
                    ) -> torch.Tensor | None:
    """For each row of seq[begin:end] the id of the visual block it belongs to (the block's first row,
    counted from `begin`), -1 for text; None for families whose visual rows are causal like text (only
    Gemma 3's are not: `Backend.bidirectional_visual`) or when no block lies there."""
    if not backend.bidirectional_visual:
        return None
    end = len(seq.ids) if end is None else end
    ids = torch.full((end - begin,), -1, dtype=torch.long)
    found = False
    for start, block in seq.blocks:
        stop = start + block.embeds.shape[0]
        if stop <= begin or start >= end:
            continue
        if start < begin or stop > end:
            raise ValueError("a visual block straddles the rows asked for")
        ids[start - begin:stop - begin] = start - begin
        found = True
    return ids if found else None


def sequence_embeds(backend: Backend, seq: Sequence, begin: int = 0) -> torch.Tensor:
    """(L - begin, D) input embeddings of seq[begin:]: token embeddings with every visual block's rows
    overwritten (rows before `begin`, e.g. a cached prefix, are not embedded at all).

    Uses out-of-place index_put so gradients flow into the visual embeddings when training.
    """
    ids = torch.tensor(seq.ids[begin:], dtype=torch.long, device=backend.device)
    emb = backend.embed_ids(ids)
    blocks = [(s - begin, b) for s, b in seq.blocks if s >= begin]
    if any(s < begin < s + b.embeds.shape[0] for s, b in seq.blocks):
        raise ValueError("a visual block straddles the start of the embeddings asked for")
    if not blocks:
        return emb
    idx = torch.cat([torch.arange(s, s + b.embeds.shape[0]) for s, b in blocks]).to(emb.device)
    vals = torch.cat([b.embeds.to(emb.device, emb.dtype) for _, b in blocks], dim=0)
    return emb.index_put((idx,), vals)


@dataclass
class PrefixCache:
    """Keys and values of a static prompt prefix (the concept memories), reusable for every frame."""

    key: tuple
    ids: tuple[int, ...]
    layers: list[tuple[torch.Tensor, torch.Tensor]]
    #: running position index after the prefix (differs from its length under M-RoPE)
    next_position: int = 0

    @property
    def length(self) -> int:
        return len(self.ids)

    def fork(self, batch: int = 1) -> DynamicCache:
        """A fresh cache holding the prefix (expanded to `batch` rows); the snapshot stays untouched."""
        return fork_cache(self.layers, batch)

    def nbytes(self) -> int:
        return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in self.layers)


def fork_cache(layers: list[tuple[torch.Tensor, torch.Tensor]], batch: int = 1) -> DynamicCache:
    """A fresh cache starting from snapshot `layers` (expanded to `batch` rows); the snapshot stays untouched
    (a DynamicCache update concatenates into new tensors)."""
    cache = DynamicCache()
    for i, (k, v) in enumerate(layers):
        if batch != 1:
            k, v = k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)
        cache.update(k.contiguous(), v.contiguous(), i)
    return cache


def snapshot(cache: DynamicCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The keys and values a cache holds now, per layer (views, not copies)."""
    return [(layer.keys, layer.values) for layer in cache.layers]


def _cache_keyword(module: torch.nn.Module) -> str:
    """The name the decoder's forward takes its KV cache by: `cache` since transformers 5.24 (the old
    `past_key_values` still works there but warns it goes away in 5.40), `past_key_values` before."""
    params = inspect.signature(module.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


DECODERS = ("eager", "static", "auto")


class Runner:
    """Forward passes of the language model over assembled sequences.

    `decoder` chooses greedy decoding's cache: "eager" (a DynamicCache grown each step), "static" (a
    preallocated cache, `static_decode`, with CUDA graphs on CUDA when `cuda_graphs`) or "auto" (static
    on CUDA, eager elsewhere).

    `check`, when given, is called before every forward pass (each decode step, each batch of tails): it
    raises to abandon the call (the engine's deadline and interrupt), so no loop here can run unbounded.
    CUDA-graph replays do not pass through `_forward`: the static decoder calls `check_call` itself."""

    def __init__(self, backend: Backend, decoder: str = "eager", cuda_graphs: bool = True,
                 check: Callable[[], None] | None = None) -> None:
        if decoder not in DECODERS:
            raise ValueError(f"unknown decoder {decoder!r}; expected one of {DECODERS}")
        self.backend = backend
        self.decoder = decoder
        self.cuda_graphs = cuda_graphs
        self.check = check
        self._cache_kw = _cache_keyword(backend.language_model)
        self._static = None

    def check_call(self) -> None:
        """Raise if the running call was interrupted or passed its deadline (see `check`)."""
        if self.check is not None:
            self.check()

    @property
    def static_decoding(self) -> bool:
        return self.decoder == "static" or (self.decoder == "auto" and self.backend.device.type == "cuda")

    def static_decoder(self):
        """The static-cache decoder of this runner (built on first use; it keeps its buffers and graphs)."""
        if self._static is None:
            from .static_decode import StaticDecoder  # builds on this module, hence imported here

            self._static = StaticDecoder(self, graphs=self.cuda_graphs)
        return self._static

    def _forward(self, embeds: torch.Tensor, positions: torch.Tensor, cache: DynamicCache,
                 attention_mask: torch.Tensor | None = None,
                 deepstack: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
                 rows: torch.Tensor | None = None, visual: torch.Tensor | None = None) -> torch.Tensor:
        """Run embeds (B, q, D) at positions (B, q) or (3, B, q); return the last position's logits (B, V),
        or with `rows` (r,) the logits of those positions of the first batch row (r, V).

        `deepstack` gives, per batch row, the visual-row mask (q,) and features (layers, n, D) of the rows
        being fed (Qwen3-VL only). `attention_mask` is 2-D padding (B, kv) or a ready 4-D boolean mask
        (B, 1, q, kv) that transformers passes through to the attention unchanged. `visual` (q,) or (B, q)
        gives the visual block of each row (`sequence_visual`; families with bidirectional image blocks only):
        for families with such blocks or sliding-window layers the masks are built here (`masks`)."""
        self.check_call()
        b = self.backend
        if masks.needed(b) and (attention_mask is not None or visual is not None):
            attention_mask = masks.layer_masks(b, embeds.shape[0], embeds.shape[1], attention_mask, positions,
                                               cache, visual)
        extra = {}
        if deepstack is not None:
            mask = torch.stack([m for m, _ in deepstack]).to(b.device)
            if bool(mask.any()):
                feats = torch.cat([f for _, f in deepstack], dim=1)
                extra = {"visual_pos_masks": mask, "deepstack_visual_embeds": list(feats.unbind(0))}
        out = b.language_model(inputs_embeds=embeds, position_ids=positions.to(b.device),
                               attention_mask=attention_mask, use_cache=True, **{self._cache_kw: cache}, **extra)
        hidden = out.last_hidden_state[:, -1, :] if rows is None else out.last_hidden_state[0, rows.to(b.device)]
        return b.lm_head(hidden).float()

    @staticmethod
    def _batch_positions(pos: torch.Tensor) -> torch.Tensor:
        return pos[:, None, :] if pos.dim() == 2 else pos[None, :]

    def encode_prefix(self, seq: Sequence, length: int, key: tuple) -> PrefixCache:
        """Encode seq[:length] into a reusable prefix cache."""
        cache = DynamicCache()
        head = Sequence(ids=seq.ids[:length], blocks=[(s, blk) for s, blk in seq.blocks if s < length])
        pos, next_pos = sequence_positions(self.backend, head)
        if length > 0:
            emb = sequence_embeds(self.backend, head)
            deep = sequence_deepstack(self.backend, head)
            vis = sequence_visual(self.backend, head)
            self._forward(emb[None], self._batch_positions(pos), cache,
                          deepstack=[deep.rows(0, length)] if deep else None,
                          visual=vis)
        layers = snapshot(cache) if length > 0 else []
        return PrefixCache(key=key, ids=tuple(seq.ids[:length]), layers=layers, next_position=next_pos)

    @staticmethod
    def prefix_length(seq: Sequence, prefix: PrefixCache | None) -> int:
        """How many leading tokens of `seq` the prefix cache holds (0 without one); refuses a wrong prefix."""
        if prefix is None or prefix.length == 0:
            return 0
        if tuple(seq.ids[:prefix.length]) != prefix.ids:
            raise RuntimeError("sequence does not start with the cached prefix")
        return prefix.length

    def _start(self, seq: Sequence, prefix: PrefixCache | None, batch: int = 1) -> tuple[DynamicCache, int]:
        if self.prefix_length(seq, prefix):
            return prefix.fork(batch), prefix.length
        return DynamicCache(), 0

    def last_logits(self, seqs: list[Sequence], prefix: PrefixCache | None = None) -> torch.Tensor:
        """Logits of the next token after each sequence (N, V), sharing all the work the sequences share.

        The cached prefix is forked once; the longest common prefix of the sequences beyond it is run
        once; the remaining tails run as one batch, left-padded between the shared part and the tail
        (the cache repeated once per row). The engine uses `tails.shared_last_logits` instead, which
        needs no full sequence per question; this stays as the general path over arbitrary sequences.
        """
        b = self.backend
        cache, p0 = self._start(seqs[0], prefix)
        built = [(sequence_embeds(b, s), sequence_positions(b, s)[0]) for s in seqs]
        deeps = [sequence_deepstack(b, s) for s in seqs]
        lcp = common_prefix_length([s.ids for s in seqs])
        lcp = min(lcp, min(len(s) for s in seqs) - 1)  # every row needs at least one own token for its logits
        if lcp < p0:
            raise RuntimeError("sequences diverge inside the cached prefix")
        if len(seqs) > 1 and any(not _same_blocks_before(seqs[0], s, lcp) for s in seqs[1:]):
            lcp = p0  # visual rows differ inside the common ids: share only the cached prefix
        if lcp > p0:
            emb0, pos0 = built[0]
            vis = sequence_visual(b, seqs[0], p0, lcp)
            self._forward(emb0[None, p0:lcp], self._batch_positions(pos0[..., p0:lcp]), cache,
                          deepstack=[deeps[0].rows(p0, lcp)] if deeps[0] else None,
                          visual=vis)
        n = len(seqs)
        tails = [len(s) - lcp for s in seqs]
        t_max = max(tails)
        d = built[0][0].shape[-1]
        emb = built[0][0].new_zeros(n, t_max, d)
        mrope = b.mrope
        pos = torch.zeros((3, n, t_max) if mrope else (n, t_max), dtype=torch.long)
        mask = torch.ones(n, lcp + t_max, dtype=torch.long, device=b.device)
        for i, (e, p) in enumerate(built):
            pad = t_max - tails[i]
            emb[i, pad:] = e[lcp:]
            if mrope:
                pos[:, i, pad:] = p[:, lcp:]
            else:
                pos[i, pad:] = p[lcp:]
            mask[i, lcp:lcp + pad] = 0
        if n > 1:
            for layer in cache.layers:
                if layer.get_seq_length() > 0:
                    layer.batch_repeat_interleave(n)
        needs_mask = any(t != t_max for t in tails)
        deep_rows = None
        if deeps[0] is not None:
            deep_rows = []
            for i, d in enumerate(deeps):
                m, f = d.rows(lcp, len(seqs[i]))
                deep_rows.append((torch.cat([torch.zeros(t_max - tails[i], dtype=torch.bool), m]), f))
        visual = None
        if b.bidirectional_visual:
            # each row: its padding, then its tail's visual blocks
            visual = torch.stack([torch.cat([masks.shifted(None, 0, t_max - tails[i]),
                                             masks.shifted(sequence_visual(b, s, lcp), t_max - tails[i], tails[i])])
                                  for i, s in enumerate(seqs)])
        return self._forward(emb, pos, cache, mask if needs_mask else None, deepstack=deep_rows, visual=visual)

    def generate(self, seq: Sequence, max_new_tokens: int, prefix: PrefixCache | None = None,
                 capture: Capture | None = None, min_new_tokens: int = 0) -> list[int]:
        """Greedy decoding after `seq`. With a capture, each generated token's row is recorded when it is
        fed back (one extra step is taken for the last token when decoding stops at the length limit)."""
        if self.static_decoding:
            self.prefix_length(seq, prefix)  # a wrong prefix is the caller's error, not the decoder's
            try:
                return self.static_decoder().generate(seq, max_new_tokens, prefix=prefix, capture=capture,
                                                      min_new_tokens=min_new_tokens)
            except (torch.OutOfMemoryError, ValueError):
                raise
            except RuntimeError as exc:
                # The static path is young on GPUs (see static_decode): rather than failing every
                # introduction, log once and decode eagerly from here on.
                log.warning("static decoding failed (%s); this runner decodes eagerly from now on", exc)
                self.decoder = "eager"
                if capture is not None:
                    capture.records.clear()
        b = self.backend
        suppressed = torch.tensor(b.suppressed_ids, device=b.device)
        eos = b.eos_ids
        with stage("prefill"):
            cache, p0 = self._start(seq, prefix)
            # Only the rows after the cached prefix are embedded and placed; the prefix gives its next position.
            pos, next_pos = sequence_positions(b, seq, begin=p0, start=prefix.next_position if p0 else None)
            emb = sequence_embeds(b, seq, begin=p0)
            deep = sequence_deepstack(b, seq, begin=p0)
            vis = sequence_visual(b, seq, begin=p0)
            if capture is not None:
                capture.rows = capture.prefill_rows
            logits = self._forward(emb[None], self._batch_positions(pos), cache,
                                   deepstack=[deep.rows(0, len(seq) - p0)] if deep else None,
                                   visual=vis)
        with stage("decode"):
            out: list[int] = []
            while True:
                token = greedy_token(logits, len(out), suppressed, eos, min_new_tokens)
                if token is None:
                    break
                out.append(token)
                if len(out) >= max_new_tokens and capture is None:
                    break
                if capture is not None:
                    capture.rows = torch.zeros(1, dtype=torch.long)
                step_emb = b.embed_ids(torch.tensor([[token]], device=b.device))
                step_pos = torch.full((3, 1, 1) if b.mrope else (1, 1), next_pos, dtype=torch.long)
                next_pos += 1
                logits = self._forward(step_emb, step_pos, cache)
                if len(out) >= max_new_tokens:
                    break
        if capture is not None:
            capture.rows = None
        return out


def greedy_token(logits: torch.Tensor, produced: int, suppressed: torch.Tensor, eos: set[int],
                 min_new_tokens: int) -> int | None:
    """The greedy next token from logits (1, V), edited in place, after `produced` generated tokens; None
    when decoding ends. Suppressed ids never win, and end-of-sequence ids cannot until `min_new_tokens`."""
    logits[:, suppressed] = float("-inf")
    if produced < min_new_tokens:
        logits[:, sorted(eos)] = float("-inf")
    token = int(logits[0].argmax())
    return None if token in eos else token


def common_prefix_length(id_lists: list[list[int]]) -> int:
    first = id_lists[0]
    n = min(len(x) for x in id_lists)
    for i in range(n):
        t = first[i]
        if any(x[i] != t for x in id_lists[1:]):
            return i
    return n


def _same_blocks_before(a: Sequence, b: Sequence, end: int) -> bool:
    """True when both sequences place the very same visual embeddings before `end`."""
    ba = [(s, blk) for s, blk in a.blocks if s < end]
    bb = [(s, blk) for s, blk in b.blocks if s < end]
    if len(ba) != len(bb):
        return False
    return all(sa == sb and (xa.embeds is xb.embeds or torch.equal(xa.embeds, xb.embeds))
               for (sa, xa), (sb, xb) in zip(ba, bb))
