"""Idefics3 / SmolVLM tiling: tiles and visual tokens per camera frame for each `max_tiles`, and the cost of
the two preprocessing paths (the PIL processor, the exact tensor resampler), with the published image
settings (SmolVLM: 512 px tiles of 64 tokens, longest edge 2048; Idefics3-8B: 364 px tiles of 169
tokens, longest edge 1456) on a randomly initialised tower of that tile size (the LLM is tiny: only the
image side is measured).

Usage: python bench/idefics3_tiles.py [--device cpu] [--repeats 5] [--threads 1]
                                      [--out bench/results/idefics3_tiles_<device>.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np
import torch
from PIL import Image

from ego_ros.core.backends.idefics3 import Idefics3Backend, SmolVLMBackend
from ego_ros.core.random_models import build_random_model

#: (family, tile px, processor longest edge): the published preprocessor_config values
SETTINGS = [("smolvlm", 512, 2048), ("idefics3", 364, 1456)]
FRAMES = [(640, 480), (1920, 1080)]
MAX_TILES = [1, 6, 16]


def _frame(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """A camera-like frame: smooth colour fields with pixel noise."""
    rng = np.random.default_rng(seed)
    w, h = size
    base = Image.fromarray(rng.integers(0, 255, (h // 16, w // 16, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
    arr = np.asarray(base).astype(np.int16) + rng.integers(-20, 20, (h, w, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _preprocess_ms(backend, img: Image.Image, method: str, repeats: int) -> float:
    """Median milliseconds of one frame's pixel inputs by `method`, after a warm-up."""
    device = backend.device
    backend.pixel_inputs([img], method=method)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        backend.pixel_inputs([img], method=method)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t) * 1000.0)
    return round(statistics.median(times), 2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = []
    for family, tile, longest in SETTINGS:
        rm = build_random_model(family, image_px=tile, device=str(device))
        rm.image_processor.size = {"longest_edge": longest}
        cls = SmolVLMBackend if family == "smolvlm" else Idefics3Backend
        backend = cls(rm.model, rm.tokenizer, rm.image_processor)
        for size in FRAMES:
            img = _frame(size)
            for max_tiles in MAX_TILES:
                backend.set_max_tiles(max_tiles)
                with torch.inference_mode():
                    vt = backend.encode_images([img])[0]
                    pil = backend.pixel_inputs([img], method="pil")["pixel_values"]
                    tensor = backend.pixel_inputs([img], method="tensor")["pixel_values"]
                    row = {
                        "family": family, "tile_px": tile, "frame": f"{size[0]}x{size[1]}", "max_tiles": max_tiles,
                        "tiles": len(vt.layout.tiles()), "grids": len(vt.layout.grids), "visual_tokens": vt.count,
                        "pixels_max_abs_diff": float((pil.float() - tensor.float()).abs().max()),
                        "preprocess_pil_ms": _preprocess_ms(backend, img, "pil", args.repeats),
                        "preprocess_tensor_ms": _preprocess_ms(backend, img, "tensor", args.repeats),
                    }
                print(json.dumps(row))
                rows.append(row)
    name = torch.cuda.get_device_name(device).replace(" ", "_") if device.type == "cuda" else "cpu"
    out = args.out or f"bench/results/idefics3_tiles_{name}.json"
    result = {"machine": platform.node(), "device": name, "threads": args.threads, "repeats": args.repeats,
              "torch": torch.__version__, "rows": rows}
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
