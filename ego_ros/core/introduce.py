"""Concept introduction (paper 3.1-3.3): keywords, keyword->visual attention, K_c, token selection.

For each reference view the model describes the main subject in keywords (greedy decoding) while the
capturing attention records, on the chosen layers, each generated token's attention over the view's
visual tokens. Keyword rows (not template, punctuation, special tokens or stop words) are averaged over
heads, keyword tokens and layers (eq. 3; the paper's text says "maximizing" but the equation averages:
we implement the mean). The model's own answer to an area question gives alpha and
K_c = min(K, ceil(alpha * N_r / 100)) (at least `min_tokens`); when the answer holds no number K_c = K.
The top-K_c tokens are kept in their original order.
"""

from __future__ import annotations

import math
import string
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from .attention import capturing
from .backends.base import Backend, VisualTokens
from .compose import view_sequence
from .limits import check_new_tokens
from .memory import MemoryView
from .prompts import parse_area_percent, split_keywords
from .sequence import PrefixCache, Runner, Sequence

SELECTIONS = ("attention", "uniform", "random", "all", "mask")


@dataclass
class IntroduceOptions:
    """How a concept memory is built.

    selection: "attention" (Ego), "uniform" (evenly spaced tokens), "random", "all" (full visual) or
        "mask" (tokens most covered by a given object mask: an oracle for analysis).
    dynamic_k: K_c from the model's area estimate (paper 3.3); otherwise K_c = K.
    max_tokens / max_fraction: K, absolute or as a fraction of the view's visual tokens (default 20%,
        the paper's ablation budget).
    reference_max_pixels: pixel budget of a reference view for families that resize to a pixel budget
        (Qwen's smart resize) or tile (InternVL: at most this many pixels of tiles, so the default is
        one 448 px tile, the paper's setting, and memories stay as small as before tiling); fixed-size
        families ignore it. The default, 448 x 448 (the benchmarks' working resolution, InternVL's
        tile), bounds a view to 256 visual tokens on Qwen2.5-VL and its memory to K = 52 tokens; with
        Qwen2.5-VL's own limit a 1080p reference gives 2,691 visual tokens and a 539-token memory.
        None: the processor's own budget (InternVL: the backend's max_tiles).
    """

    selection: str = "attention"
    dynamic_k: bool = True
    max_tokens: int | None = None
    max_fraction: float = 0.2
    min_tokens: int = 1
    keep_reference: bool = False
    masks: list[np.ndarray] | None = None
    seed: int = 0
    max_new_tokens: int = 24
    min_new_tokens: int = 0
    area_max_new_tokens: int = 8
    reference_max_pixels: int | None = 448 * 448

    def validate(self) -> None:
        if self.selection not in SELECTIONS:
            raise ValueError(f"unknown selection {self.selection!r}; expected one of {SELECTIONS}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        if not 0.0 < self.max_fraction <= 1.0:
            raise ValueError("max_fraction must lie in (0, 1]")
        if self.min_tokens < 1:
            raise ValueError("min_tokens must be at least 1")
        check_new_tokens(self.max_new_tokens, "IntroduceOptions.max_new_tokens")
        check_new_tokens(self.area_max_new_tokens, "IntroduceOptions.area_max_new_tokens")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise ValueError("min_new_tokens must lie in 0..max_new_tokens")
        if self.reference_max_pixels is not None and self.reference_max_pixels < 1:
            raise ValueError("reference_max_pixels must be at least 1 (or None for the processor's budget)")
        if self.selection == "mask" and not self.masks:
            raise ValueError("selection 'mask' needs one mask per view")


@dataclass
class KeywordAttention:
    """Result of describing one view with attention capture."""

    token_ids: list[int]
    keyword_rows: list[int]  # indices into token_ids that count as keyword tokens
    #: layer -> (heads or 1, generated rows, visual tokens) attention of each generated token's row
    per_layer: dict[int, torch.Tensor] = field(default_factory=dict)
    #: layer -> (heads or 1, visual tokens) attention of the last prompt token (fallback)
    prompt_row: dict[int, torch.Tensor] = field(default_factory=dict)
    text: str = ""

    def importance(self, layers: list[int] | None = None) -> torch.Tensor:
        """Eq. 3: mean over layers, heads and keyword rows (all generated rows, then the prompt row, as
        fallbacks when the model produced no keyword token)."""
        layers = sorted(self.per_layer) if layers is None else layers
        per = []
        for layer in layers:
            rows = self.per_layer[layer]
            if self.keyword_rows:
                sel = rows[:, self.keyword_rows]
            elif rows.shape[1] > 0:
                sel = rows
            else:
                sel = self.prompt_row[layer][:, None]
            per.append(sel.mean(dim=(0, 1)))
        return torch.stack(per).mean(dim=0)


def keyword_token_rows(backend: Backend, token_ids: list[int]) -> list[int]:
    """Which generated tokens belong to keywords: not special, not punctuation/space only, and part of a
    word that is not a stop word. Words are rebuilt from the decoded pieces (byte-level BPE aware)."""
    special = backend.special_ids
    stop = {w.lower() for w in backend.prompts.stopwords}
    pieces, prev = [], ""
    for j in range(len(token_ids)):
        cur = backend.tokenizer.decode(token_ids[:j + 1], skip_special_tokens=False)
        pieces.append(cur[len(prev):] if cur.startswith(prev) else backend.token_text(token_ids[j]))
        prev = cur
    seps = set(string.whitespace) | set(string.punctuation) | {backend.prompts.keyword_separator}
    word_of: list[int] = []
    words: list[str] = []
    boundary = True
    for tid, piece in zip(token_ids, pieces):
        if tid in special or not piece.strip() or all(ch in seps for ch in piece.strip()):
            word_of.append(-1)
            boundary = True
            continue
        if boundary or piece[:1] in seps:
            words.append("")
        words[-1] += piece.strip().strip(string.punctuation)
        word_of.append(len(words) - 1)
        boundary = piece[-1:] in seps
    return [j for j, w in enumerate(word_of) if w >= 0 and words[w].lower() not in stop and words[w]]


def describe_with_attention(backend: Backend, runner: Runner, vt: VisualTokens, layers: list[int] | None,
                            max_new_tokens: int, min_new_tokens: int = 0, keep_heads: bool = False,
                            prefix: PrefixCache | None = None) -> tuple[KeywordAttention, Sequence]:
    """Generate the keyword description of one view, capturing keyword->visual attention."""
    seq = view_sequence(backend, vt, backend.prompts.keywords)
    columns = seq.columns["image::0"]  # the view's tokens only, not its framing or structural rows
    with capturing(layers, columns, keep_heads=keep_heads) as cap:
        cap.prefill_rows = torch.tensor([len(seq) - 1 - (prefix.length if prefix else 0)])
        ids = runner.generate(seq, max_new_tokens, prefix=prefix, capture=cap, min_new_tokens=min_new_tokens)
    ka = KeywordAttention(token_ids=ids, keyword_rows=keyword_token_rows(backend, ids),
                          text=backend.decode(ids))
    for layer, recs in cap.records.items():
        ka.prompt_row[layer] = recs[0][0, :, 0]
        gen = recs[1:1 + len(ids)]
        ka.per_layer[layer] = (torch.cat(gen, dim=2)[0] if gen
                               else recs[0].new_zeros(recs[0].shape[1], 0, recs[0].shape[-1]))
    return ka, seq


def ask_area(backend: Backend, runner: Runner, vt: VisualTokens, max_new_tokens: int,
             prefix: PrefixCache | None = None) -> tuple[float | None, str]:
    seq = view_sequence(backend, vt, backend.prompts.area)
    ids = runner.generate(seq, max_new_tokens, prefix=prefix)
    text = backend.decode(ids)
    return parse_area_percent(text), text


def budget(n_tokens: int, options: IntroduceOptions) -> int:
    """K: the most tokens one view may keep."""
    k = options.max_tokens if options.max_tokens is not None else math.ceil(options.max_fraction * n_tokens)
    return int(max(1, min(k, n_tokens)))


def memory_size(n_tokens: int, alpha: float | None, options: IntroduceOptions) -> int:
    """K_c = min(K, ceil(alpha * N_r / 100)), at least min_tokens; K when alpha is unknown (paper 3.3).

    Rounding up keeps at least one token for any visible subject; a zero estimate falls back to
    min_tokens rather than an empty memory."""
    k = budget(n_tokens, options)
    if not options.dynamic_k or alpha is None:
        return k
    return int(max(min(options.min_tokens, k), min(k, math.ceil(alpha * n_tokens / 100.0))))


def select_tokens(importance: torch.Tensor, k_c: int, selection: str, seed: int = 0,
                  mask_fraction: np.ndarray | None = None) -> torch.Tensor:
    """Indices of the k_c kept tokens, ascending (original order restored)."""
    n = importance.shape[0]
    k_c = min(k_c, n)
    if selection == "attention":
        idx = torch.topk(importance.float(), k_c).indices
    elif selection == "uniform":
        idx = torch.unique(torch.linspace(0, n - 1, k_c).round().long())
    elif selection == "random":
        gen = torch.Generator().manual_seed(seed)
        idx = torch.randperm(n, generator=gen)[:k_c]
    elif selection == "all":
        idx = torch.arange(n)
    elif selection == "mask":
        if mask_fraction is None:
            raise ValueError("mask selection needs the mask fraction of each token")
        idx = torch.topk(torch.from_numpy(mask_fraction).float(), k_c).indices
    else:
        raise ValueError(f"unknown selection {selection!r}")
    return torch.sort(idx.cpu()).values


def introduce_views(backend: Backend, runner: Runner, images: list[Image.Image], layers: list[int] | None,
                    options: IntroduceOptions,
                    on_view: Callable[[int, MemoryView], None] | None = None) -> list[MemoryView]:
    """Build one MemoryView per reference image; `on_view(i, view)` is called as each view is done."""
    options.validate()
    if options.masks is not None and len(options.masks) != len(images):
        raise ValueError(f"{len(options.masks)} masks for {len(images)} views")
    views = []
    vts = backend.encode_images(images, max_pixels=options.reference_max_pixels)
    for i, (img, vt) in enumerate(zip(images, vts)):
        # The keyword and the area prompts share everything up to the end of the image: encode it once.
        probe = view_sequence(backend, vt, backend.prompts.keywords)
        img_end = probe.frames["image::0"][1]
        prefix = runner.encode_prefix(probe, img_end, key=("view", i))
        ka, _ = describe_with_attention(backend, runner, vt, layers, options.max_new_tokens,
                                        options.min_new_tokens, prefix=prefix)
        alpha, area_text = (None, "")
        if options.dynamic_k:
            alpha, area_text = ask_area(backend, runner, vt, options.area_max_new_tokens, prefix=prefix)
        importance = ka.importance()
        n = vt.count
        k_c = n if options.selection == "all" else memory_size(n, alpha, options)
        frac = vt.mask_fraction(options.masks[i]) if options.selection == "mask" else None
        idx = select_tokens(importance, k_c, options.selection, seed=options.seed * 1009 + i, mask_fraction=frac)
        views.append(MemoryView(
            embeds=vt.embeds[idx.to(vt.embeds.device)].detach().clone(), indices=idx, grid=(vt.rows, vt.cols),
            box=vt.box, image_size=vt.image_size, layout=vt.layout,
            keywords=split_keywords(ka.text, backend.prompts.keyword_separator), description=ka.text,
            alpha=alpha, k_c=int(idx.shape[0]), importance=importance.detach().cpu(), area_answer=area_text,
            reference=np.asarray(img, dtype=np.uint8).copy() if options.keep_reference else None,
            deepstack=(vt.deepstack[:, idx.to(vt.deepstack.device)].detach().clone()
                       if vt.deepstack is not None else None),
        ))
        if on_view is not None:
            on_view(i, views[-1])
    return views


def timed_introduce(backend: Backend, runner: Runner, images: list[Image.Image], layers: list[int] | None,
                    options: IntroduceOptions, on_view: Callable[[int, MemoryView], None] | None = None
                    ) -> tuple[list[MemoryView], float]:
    t0 = time.perf_counter()
    with torch.inference_mode():
        views = introduce_views(backend, runner, images, layers, options, on_view)
    if backend.device.type == "cuda":
        torch.cuda.synchronize(backend.device)
    return views, time.perf_counter() - t0
