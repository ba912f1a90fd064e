"""Greedy decoding over a preallocated KV cache: fixed shapes per step, CUDA graphs on CUDA.

The eager decoder (`Runner.generate` with a DynamicCache) concatenates the cache at every step and
launches every kernel from Python: on a GPU the host, not the device, sets the pace of introduction's
keyword generation. This decoder preallocates keys and values for prompt + max_new_tokens, rounded up
to a bucket of `BUCKET` tokens so that one allocation serves every prompt length of that bucket. The
prefill writes the prompt rows after the (copied-in) concept prefix; each greedy step then runs with
the very same shapes and addresses: one token, one position, one write slot, a mask over the whole
buffer. On CUDA that step is captured once per bucket (and per capture layout) as a CUDA graph and
replayed; elsewhere the same step function runs eagerly, which is how its logic is tested on CPU.

The greedy choice (placeholder suppression, min_new_tokens, EOS) stays on the host exactly as in the
eager decoder, so both produce the same tokens; keyword attention capture writes each step's row into
preallocated buffers (`Capture.sink`) instead of appending tensors.

The CUDA graph code path has not been run on a GPU by its author (no GPU was lent): it is guarded --
the first replay of every captured graph is checked against the same step run without the graph, and
any failure or mismatch turns graphs off for this decoder, which then keeps the static cache.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from .attention import Capture
from .profile import stage
from .sequence import (
    PrefixCache,
    Runner,
    Sequence,
    greedy_token,
    sequence_deepstack,
    sequence_embeds,
    sequence_positions,
    sequence_visual,
)

log = logging.getLogger(__name__)

#: buffer lengths are rounded up to a multiple of this many tokens (one allocation and graph per bucket)
BUCKET = 128


def bucket_length(tokens: int) -> int:
    return -(-tokens // BUCKET) * BUCKET


class StaticKV:
    """A KV cache of fixed length for the decoder stack: (1, H_kv, length, d) per layer, written in place.

    transformers' `StaticCache` is not used: its update protocol changed across 5.x (cache_position
    kwargs in 5.17, an internal cumulative-length tensor in 5.2x), while the engine needs rows written at
    slots it chooses (a cached prefix copied in, then the prompt after it) under its own 4-D masks. The
    decoder stack only calls `update(key, value, layer_idx, ...)` on the cache object it is given when
    positions and a 4-D mask are passed, which is what this class implements.
    """

    def __init__(self, length: int, device: torch.device) -> None:
        self.length = length
        self.layers: list[tuple[torch.Tensor, torch.Tensor]] = []
        #: the slot a decode step writes: one tensor for the life of the cache (captured graphs read it)
        self.step_slot = torch.zeros(1, dtype=torch.long, device=device)
        #: positions written by the current forward call (the prompt's slots, or `step_slot`)
        self.slots = self.step_slot
        self.filled = 0  # host-side count, for get_seq_length only

    def layer(self, idx: int, like: torch.Tensor, like_v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer `idx`'s buffers, allocated on first use with the head count, width and dtype of `like`."""
        while len(self.layers) <= idx:
            shape_k = (1, like.shape[1], self.length, like.shape[-1])
            shape_v = (1, like_v.shape[1], self.length, like_v.shape[-1])
            self.layers.append((torch.zeros(shape_k, dtype=like.dtype, device=like.device),
                                torch.zeros(shape_v, dtype=like_v.dtype, device=like_v.device)))
        return self.layers[idx]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.layer(layer_idx, key_states, value_states)
        k.index_copy_(2, self.slots, key_states)
        v.index_copy_(2, self.slots, value_states)
        return k, v

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.filled


@dataclass
class _Step:
    """Static inputs and outputs of one greedy step over a StaticKV, and its CUDA graph once captured."""

    kv: StaticKV
    token: torch.Tensor  # (1, 1) long
    position: torch.Tensor  # (1, 1) or (3, 1, 1) long
    columns: torch.Tensor  # (length,) long: key slots, for the mask
    logits: torch.Tensor | None = None  # (1, V) float32, written by each run
    capture_rows: torch.Tensor | None = None  # (1,) long zeros: the captured row of a one-token call
    sink: dict[int, torch.Tensor] | None = None
    sink_slot: torch.Tensor | None = None
    capture_columns: torch.Tensor | None = None
    graph: Any = None  # torch.cuda.CUDAGraph once captured


class StaticDecoder:
    """Greedy decoding with a static KV cache (see the module docstring). One per Runner; not thread-safe
    (the engine serialises its calls)."""

    def __init__(self, runner: Runner, graphs: bool = True) -> None:
        self.runner = runner
        self.backend = runner.backend
        self.graphs = graphs and self.backend.device.type == "cuda"
        self._caches: dict[int, StaticKV] = {}
        self._steps: dict[tuple, _Step] = {}

    # ----- buffers ---------------------------------------------------------------------------------------
    def cache(self, length: int) -> StaticKV:
        """The (reused) buffers of the bucket holding `length` tokens."""
        size = bucket_length(length)
        kv = self._caches.get(size)
        if kv is None:
            kv = self._caches[size] = StaticKV(size, self.backend.device)
        return kv

    def _step_for(self, kv: StaticKV, capture: Capture | None) -> _Step:
        dev = self.backend.device
        layout = None
        if capture is not None:
            layout = (None if capture.layers is None else tuple(sorted(capture.layers)), capture.keep_heads,
                      int(capture.columns.numel()))
        key = (kv.length, layout)
        step = self._steps.get(key)
        if step is None:
            step = _Step(kv=kv, token=torch.zeros(1, 1, dtype=torch.long, device=dev),
                         position=torch.zeros((3, 1, 1) if self.backend.mrope else (1, 1), dtype=torch.long,
                                              device=dev),
                         columns=torch.arange(kv.length, device=dev))
            if capture is not None:
                layers = range(self.backend.num_layers) if capture.layers is None else sorted(capture.layers)
                heads = self.backend.model.config.get_text_config().num_attention_heads if capture.keep_heads else 1
                n_cols = int(capture.columns.numel())
                step.capture_rows = torch.zeros(1, dtype=torch.long, device=dev)
                step.sink = {i: torch.zeros(kv.length, heads, n_cols, device=dev) for i in layers}
                step.sink_slot = torch.zeros(1, dtype=torch.long, device=dev)
                step.capture_columns = torch.zeros(n_cols, dtype=torch.long, device=dev)
            self._steps[key] = step
        return step

    # ----- decoding --------------------------------------------------------------------------------------
    def generate(self, seq: Sequence, max_new_tokens: int, prefix: PrefixCache | None = None,
                 capture: Capture | None = None, min_new_tokens: int = 0) -> list[int]:
        """`Runner.generate`'s greedy tokens (and capture records), over a static cache."""
        with torch.inference_mode():
            return self._generate(seq, max_new_tokens, prefix, capture, min_new_tokens)

    def _generate(self, seq: Sequence, max_new_tokens: int, prefix: PrefixCache | None, capture: Capture | None,
                  min_new_tokens: int) -> list[int]:
        b = self.backend
        dev = b.device
        p0 = Runner.prefix_length(seq, prefix)
        kv = self.cache(len(seq) + max_new_tokens + 1)
        if p0:
            for i, (k, v) in enumerate(prefix.layers):
                bk, bv = kv.layer(i, k, v)
                bk[:, :, :p0].copy_(k)
                bv[:, :, :p0].copy_(v)
        step = self._step_for(kv, capture)

        with stage("prefill"):
            # Prefill: the prompt rows after the prefix, written at their slots, causal over everything before.
            pos, next_pos = sequence_positions(b, seq, begin=p0, start=prefix.next_position if p0 else None)
            emb = sequence_embeds(b, seq, begin=p0)
            deep = sequence_deepstack(b, seq, begin=p0)
            vis = sequence_visual(b, seq, begin=p0)
            q = len(seq) - p0
            kv.slots = torch.arange(p0, p0 + q, device=dev)
            kv.filled = p0
            rows = torch.arange(p0, p0 + q, device=dev)
            mask = (step.columns[None, :] <= rows[:, None])[None, None]
            if capture is not None:
                capture.rows = capture.prefill_rows
            logits = self.runner._forward(emb[None], Runner._batch_positions(pos), kv, attention_mask=mask,
                                          deepstack=[deep.rows(0, q)] if deep else None,
                                          visual=vis)
            kv.filled = len(seq)
            kv.slots = kv.step_slot
            if capture is not None:
                # Decode steps write their captured rows into the step's preallocated sink.
                step.capture_columns.copy_(capture.columns.to(dev))
                capture.columns, capture.rows = step.capture_columns, step.capture_rows
                capture.sink, capture.sink_slot = step.sink, step.sink_slot

        suppressed = torch.tensor(b.suppressed_ids, device=dev)
        eos = b.eos_ids
        with stage("decode"):
            out: list[int] = []
            fed = 0
            try:
                while True:
                    token = greedy_token(logits, len(out), suppressed, eos, min_new_tokens)
                    if token is None:
                        break
                    out.append(token)
                    if len(out) >= max_new_tokens and capture is None:
                        break
                    # graph replays bypass Runner._forward, so the per-step deadline/interrupt check is here
                    self.runner.check_call()
                    logits = self._run_step(step, token, next_pos + fed, len(seq) + fed, fed)
                    fed += 1
                    if len(out) >= max_new_tokens:
                        break
            finally:
                if capture is not None:
                    capture.sink = capture.sink_slot = None
                    capture.rows = None
        if capture is not None:
            for layer, buf in step.sink.items():
                steps = buf[:fed].clone()
                capture.records.setdefault(layer, []).extend(steps[i][None, :, None, :] for i in range(fed))
        return out

    def _run_step(self, step: _Step, token: int, position: int, slot: int, index: int) -> torch.Tensor:
        """Feed one token at `position` into cache slot `slot` (capture row `index`); the next logits (1, V)."""
        step.token.fill_(token)
        step.position.fill_(position)
        step.kv.step_slot.fill_(slot)
        step.kv.filled = slot + 1
        if step.sink_slot is not None:
            step.sink_slot.fill_(index)
        if self.graphs:
            try:
                return self._replay(step)
            except Exception as exc:  # noqa: BLE001 - any graph failure falls back to the same step without graphs
                log.warning("CUDA graph decoding disabled after an error: %s", exc)
                self.graphs = False
                step.graph = None
        self._step_once(step)
        return step.logits.clone()

    def _step_once(self, step: _Step) -> None:
        """The step function: reads only the step's static inputs, writes only its static outputs."""
        b = self.backend
        emb = b.embed_ids(step.token)
        mask = (step.columns <= step.kv.step_slot)[None, None, None, :]
        logits = self.runner._forward(emb, step.position, step.kv, attention_mask=mask)
        if step.logits is None:
            step.logits = torch.empty_like(logits)
        step.logits.copy_(logits)

    def _replay(self, step: _Step) -> torch.Tensor:
        if step.graph is None:
            # Warm up on a side stream (the step runs for real: its writes are this step's own), then capture.
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                self._step_once(step)
            torch.cuda.current_stream().wait_stream(stream)
            expected = step.logits.clone()
            graph = torch.cuda.CUDAGraph()
            # thread_local: CUDA work of other threads (a ROS callback uploading a frame) is no error here
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                self._step_once(step)
            graph.replay()
            if not torch.allclose(step.logits, expected, atol=1e-3, rtol=1e-3):
                raise RuntimeError("a replayed CUDA graph step disagrees with the same step run eagerly")
            step.graph = graph
            return step.logits.clone()
        step.graph.replay()
        return step.logits.clone()
