"""Latency and memory benchmarks of the engine (numbers for notes and docs, never test assertions).

Measures, on one model: concept introduction per view (keyword generation with attention capture plus
the area question), and per-frame recognition of all stored concepts for several concept counts, with
and without the prefix KV cache. The number of generated keyword tokens is fixed so that randomly
initialised weights give honest timings. Results are written as JSON (and returned).
"""

from __future__ import annotations

import json
import platform
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .core.engine import EgoEngine
from .core.introduce import IntroduceOptions
from .core.memory import ConceptMemory


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device, repeats: int, warmup: int = 1) -> list[float]:
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


def machine_description(device: torch.device) -> dict[str, Any]:
    info = {"python": platform.python_version(), "torch": torch.__version__, "cpu": platform.processor() or
            platform.machine(), "threads": torch.get_num_threads()}
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _test_images(n: int, px: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (px, px, 3), dtype=np.uint8)) for _ in range(n)]


def _clone(memory: ConceptMemory, name: str) -> ConceptMemory:
    return ConceptMemory(name=name, views=memory.views, fingerprint=memory.fingerprint, model=memory.model,
                         selection=memory.selection, seconds=memory.seconds)


def run_engine_benchmark(model: str = "toy", device: str = "cpu", dtype: str = "auto",
                         concept_counts: list[int] | None = None, repeats: int = 5, image_px: int | None = None,
                         keyword_tokens: int = 16, out: str | Path | None = None,
                         cache_modes: tuple[bool, ...] = (True, False)) -> dict[str, Any]:
    """Run the benchmark; write JSON to `out` when given and return the result."""
    concept_counts = concept_counts or [1, 10, 50]
    t0 = time.perf_counter()
    engine = EgoEngine.load(model, device=device, dtype=dtype)
    load_s = time.perf_counter() - t0
    dev = engine.backend.device
    px = image_px or 64
    images = _test_images(2, px)
    opts = IntroduceOptions(max_new_tokens=keyword_tokens, min_new_tokens=keyword_tokens, area_max_new_tokens=4)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    counter = iter(range(10**9))

    def introduce_one() -> None:
        engine.introduce(f"bench{next(counter)}", [images[0]], options=opts)

    intro = _timed(introduce_one, dev, repeats)
    base = engine.store.get(engine.store.names()[0])
    engine.clear()
    vt = engine.backend.encode_images([images[1]])[0]
    result: dict[str, Any] = {
        "model": model, "device": str(dev), "dtype": str(engine.backend.dtype).replace("torch.", ""),
        "machine": machine_description(dev), "model_load_s": round(load_s, 2), "image_px": px,
        "visual_tokens_per_image": vt.count, "keyword_tokens": keyword_tokens,
        "memory_tokens_per_concept": base.num_tokens,
        "introduction_per_view": _stats(intro), "recognition": [],
    }
    for n in concept_counts:
        engine.clear()
        for i in range(n):
            engine.add_memory(_clone(base, f"c{i:03d}"))
        engine.config.max_context_concepts = max(n, engine.config.max_context_concepts)
        for cached in cache_modes:
            engine.config.prefix_cache = cached
            engine._prefixes.clear()
            times = _timed(lambda: engine.recognize(images[1]), dev, repeats)
            result["recognition"].append({"concepts": n, "prefix_cache": cached, **_stats(times)})
    engine.config.prefix_cache = True
    if dev.type == "cuda":
        result["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
    result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result["total_s"] = round(time.perf_counter() - t0, 1)
    if out is not None:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return result
