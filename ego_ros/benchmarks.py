"""Latency and memory benchmarks of the engine (numbers for notes and docs, never test assertions).

Measures, on one model: concept introduction per view (keyword generation with attention capture plus
the area question), and per-frame recognition of all stored concepts for several concept counts, with
and without the prefix KV cache. The number of generated keyword tokens is fixed so that randomly
initialised weights give honest timings, and every recognised memory holds K tokens (20 % of the
view's visual tokens) whatever the model's area answer.

Each measurement comes three ways, in the same run:
* timed: median of `repeats` unprofiled calls after a warm-up (the figure to quote);
* profiled: separate calls under `ego_ros.core.profile.Profiler`, giving milliseconds per stage
  (preprocess, vision, prefix, prefill, tails, decode, compose, ... as the engine marks them) and the
  host gaps between stages; on CUDA the profiler synchronises at stage boundaries, so its wall time
  is a little above the timed figure;
* baseline: the same model through its own transformers class and image processor, with SDPA
  attention: (a) `generate` of exactly `keyword_tokens` tokens on the reference image with the
  introduction prompt, against our introduction per view; (b) N raw reference images in context plus
  the query image and one yes/no question, one forward, against our recognition of N concepts. Every
  figure gets its ratio to the baseline (ours / baseline: below 1 is faster than plain transformers).

Results are written as JSON (and returned).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .core import attention
from .core.backends.base import Backend
from .core.compose import ContextEntry, query_sequence, view_sequence
from .core.engine import EgoEngine
from .core.introduce import IntroduceOptions
from .core.memory import ConceptMemory
from .core.profile import Profiler


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def _stats(times: list[float]) -> dict[str, float]:
    return {"median_ms": round(statistics.median(times) * 1000, 2), "min_ms": round(min(times) * 1000, 2),
            "max_ms": round(max(times) * 1000, 2), "n": len(times)}


def _profiled(fn: Callable[[], Any], device: torch.device, runs: int) -> dict[str, Any]:
    """Per-stage milliseconds of `runs` calls of `fn` (already warmed up), rounded for the report."""
    with Profiler(device) as prof:
        for _ in range(runs):
            fn()
    rep = prof.report(runs)
    return {"runs": runs, "wall_ms": round(rep["wall_ms"], 2),
            "stages_ms": {k: round(v, 2) for k, v in rep["stages_ms"].items()},
            "calls_per_run": rep["calls_per_run"], "host_gaps_ms": round(rep["host_gaps_ms"], 2)}


def _ratio(ours: dict[str, float], base: dict[str, Any] | None) -> float | None:
    if not base or "median_ms" not in base or not base["median_ms"]:
        return None
    return round(ours["median_ms"] / base["median_ms"], 3)


def machine_description(device: torch.device) -> dict[str, Any]:
    info = {"python": platform.python_version(), "torch": torch.__version__, "cpu": platform.processor() or
            platform.machine(), "cpus": os.cpu_count(), "threads": torch.get_num_threads()}
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _load() -> list[float]:
    """The 1, 5 and 15 minute load averages (contention on a shared machine)."""
    return [round(x, 2) for x in os.getloadavg()]


def _test_images(n: int, px: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (px, px, 3), dtype=np.uint8)) for _ in range(n)]


def _clone(memory: ConceptMemory, name: str) -> ConceptMemory:
    return ConceptMemory(name=name, views=memory.views, fingerprint=memory.fingerprint, model=memory.model,
                         selection=memory.selection, seconds=memory.seconds)


# ----- the plain-transformers baseline -------------------------------------------------------------------
@contextlib.contextmanager
def plain_attention(backend: Backend) -> Iterator[None]:
    """The model with transformers' own SDPA attention (the engine registers a capturing one)."""
    backend.model.set_attn_implementation({"text_config": "sdpa"})
    try:
        yield
    finally:
        backend.model.set_attn_implementation({"text_config": attention.ATTN_IMPLEMENTATION})


def baseline_keywords(backend: Backend, image: Image.Image, tokens: int) -> Callable[[], Any]:
    """Plain `generate` of exactly `tokens` greedy tokens on one image with the introduction prompt; the
    image processor (PIL) runs inside the call, as it does for a transformers user."""
    vt = backend.encode_images([image])[0]
    ids = view_sequence(backend, vt, backend.prompts.keywords).ids
    model = backend.model

    def run() -> Any:
        with torch.inference_mode():
            inputs = backend.native_inputs(ids, [image], method="pil")
            return model.generate(**inputs, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                                  pad_token_id=model.generation_config.pad_token_id)

    return run


def baseline_reference_context(backend: Backend, reference: Image.Image, query: Image.Image,
                               n: int) -> Callable[[], Any]:
    """Plain forward over n raw reference images in context, the query image and one yes/no question
    (the next-token logits only); the image processor (PIL) runs inside the call."""
    ref_vt, query_vt = backend.encode_images([reference, query])
    entries = [ContextEntry(name=f"c{i:03d}", references=[ref_vt]) for i in range(n)]
    question = backend.prompts.recognition.format(name="c000")
    ids = query_sequence(backend, entries, [query_vt], question, mode="reference_images").ids
    images = [reference] * n + [query]
    model = backend.model

    def run() -> Any:
        with torch.inference_mode():
            inputs = backend.native_inputs(ids, images, method="pil")
            return model(**inputs, logits_to_keep=1).logits

    return run


def _measure_baseline(fn_factory: Callable[[], Callable[[], Any]], device: torch.device, repeats: int,
                      backend: Backend) -> dict[str, Any]:
    try:
        with plain_attention(backend):
            fn = fn_factory()
            return _stats(_timed(fn, device, repeats))
    except torch.OutOfMemoryError as exc:
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return {"error": f"out of memory: {str(exc).splitlines()[0]}"}


def preprocess_timings(backend: Backend, device: torch.device, repeats: int,
                       sizes: tuple[tuple[int, int], ...] = ((640, 480), (1920, 1080))) -> dict[str, Any]:
    """Pixel values of one camera-sized frame on the model's device: tensor path against the PIL processor."""
    out: dict[str, Any] = {}
    for w, h in sizes:
        frame = Image.fromarray(np.random.default_rng(1).integers(0, 255, (h, w, 3), dtype=np.uint8))
        out[f"{w}x{h}"] = {m: _stats(_timed(lambda m=m, f=frame: backend.pixel_inputs([f], method=m), device, repeats))
                           for m in ("tensor", "pil")}
    return out


# ----- the benchmark -------------------------------------------------------------------------------------
def run_engine_benchmark(model: str = "toy", device: str = "cpu", dtype: str = "auto",
                         concept_counts: list[int] | None = None, repeats: int = 5, image_px: int | None = None,
                         keyword_tokens: int = 16, out: str | Path | None = None,
                         cache_modes: tuple[bool, ...] = (True, False), profile_runs: int = 3,
                         baseline: bool = True) -> dict[str, Any]:
    """Run the benchmark; write JSON to `out` when given and return the result.

    Every concept count is recognised with all its concepts in context (`max_context_concepts` raised
    to the count), so the figures measure the engine, not the similarity filter."""
    concept_counts = concept_counts or [1, 16, 100]
    t0 = time.perf_counter()
    load_before = _load()
    engine = EgoEngine.load(model, device=device, dtype=dtype)
    load_s = time.perf_counter() - t0
    backend = engine.backend
    dev = backend.device
    px = image_px or 64
    images = _test_images(2, px)
    opts = IntroduceOptions(max_new_tokens=keyword_tokens, min_new_tokens=keyword_tokens, area_max_new_tokens=4)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    counter = iter(range(10**9))

    def introduce_one() -> None:
        engine.introduce(f"bench{next(counter)}", [images[0]], options=opts)

    intro = _stats(_timed(introduce_one, dev, repeats))
    intro_profile = _profiled(introduce_one, dev, profile_runs) if profile_runs else None
    engine.clear()
    # The recognised memories hold K tokens whatever the model's area answer (a trained model's K_c
    # depends on the image), so the workload is the same for every model and run.
    base = engine.introduce("base", [images[0]], options=dataclasses.replace(opts, dynamic_k=False))
    engine.clear()
    with torch.inference_mode():
        vt = backend.encode_images([images[1]])[0]
    result: dict[str, Any] = {
        "model": model, "device": str(dev), "dtype": str(backend.dtype).replace("torch.", ""),
        "machine": machine_description(dev), "load_average_before": load_before, "date": time.strftime(
            "%Y-%m-%d %H:%M:%S"), "model_load_s": round(load_s, 2), "image_px": px,
        "preprocess": backend.preprocessing_method(), "visual_tokens_per_image": vt.count,
        "keyword_tokens": keyword_tokens, "memory_tokens_per_concept": base.num_tokens, "repeats": repeats,
        "introduction_per_view": {**intro, "profile": intro_profile}, "recognition": [],
    }
    result["preprocess_per_frame"] = preprocess_timings(backend, dev, repeats)
    if baseline:
        keywords = _measure_baseline(lambda: baseline_keywords(backend, images[0], keyword_tokens), dev, repeats,
                                     backend)
        result["baseline_generate_keywords"] = keywords
        result["introduction_per_view"]["ratio_to_baseline"] = _ratio(intro, keywords)
    for n in concept_counts:
        engine.clear()
        for i in range(n):
            engine.add_memory(_clone(base, f"c{i:03d}"))
        engine.config.max_context_concepts = n
        reference_context = None
        if baseline:
            reference_context = _measure_baseline(
                lambda n=n: baseline_reference_context(backend, images[0], images[1], n), dev, repeats, backend)
        for cached in cache_modes:
            engine.config.prefix_cache = cached
            engine._prefixes.clear()
            times = _stats(_timed(lambda: engine.recognize(images[1]), dev, repeats))
            entry: dict[str, Any] = {"concepts": n, "prefix_cache": cached, **times}
            if reference_context is not None:
                entry["baseline_reference_images"] = reference_context
                entry["ratio_to_baseline"] = _ratio(times, reference_context)
            if cached and profile_runs:
                entry["profile"] = _profiled(lambda: engine.recognize(images[1]), dev, profile_runs)
            result["recognition"].append(entry)
    engine.config.prefix_cache = True
    result["ratios_to_one_concept"] = _ratios_to_one(result["recognition"])
    if dev.type == "cuda":
        result["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
    result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result["load_average_after"] = _load()
    result["total_s"] = round(time.perf_counter() - t0, 1)
    if out is not None:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return result


def _ratios_to_one(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Recognition time with N concepts over the time with 1 (prefix cache on), for the issue's targets."""
    cached = {r["concepts"]: r["median_ms"] for r in rows if r["prefix_cache"]}
    if 1 not in cached:
        return {}
    return {str(n): round(ms / cached[1], 2) for n, ms in sorted(cached.items()) if n != 1}


def summary_table(result: dict[str, Any]) -> str:
    """A Markdown table of one result: medians, baseline ratios and the largest stages."""
    lines = ["| measurement | median | baseline | ours / baseline | largest stages (profiled ms) |",
             "| --- | --- | --- | --- | --- |"]

    def stages(profile: dict[str, Any] | None) -> str:
        if not profile:
            return ""
        top = sorted(((v, k) for k, v in profile["stages_ms"].items() if "/" not in k), reverse=True)[:4]
        parts = [f"{k} {v:.1f}" for v, k in top] + [f"host gaps {profile['host_gaps_ms']:.1f}"]
        return ", ".join(parts)

    intro = result["introduction_per_view"]
    kb = result.get("baseline_generate_keywords", {})
    lines.append(f"| introduction per view | {intro['median_ms']} ms | {kb.get('median_ms', '-')} ms "
                 f"| {intro.get('ratio_to_baseline', '-')} | {stages(intro.get('profile'))} |")
    for r in result["recognition"]:
        b = r.get("baseline_reference_images", {})
        cache = "cache on" if r["prefix_cache"] else "cache off"
        lines.append(f"| recognition, {r['concepts']} concepts, {cache} | {r['median_ms']} ms "
                     f"| {b.get('median_ms', b.get('error', '-'))} ms | {r.get('ratio_to_baseline', '-')} "
                     f"| {stages(r.get('profile'))} |")
    return "\n".join(lines)
