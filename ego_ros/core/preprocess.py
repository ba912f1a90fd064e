"""Image preprocessing as tensor ops on the model's device: the transformers image processors' steps
(resize, centre crop, rescale, normalise, Qwen's patchify) on a uint8 frame uploaded once.

Why not the processors themselves: the PIL processors resize on the host (about 33 ms for a 448 px
image on the build machine) and the torchvision ones need torchvision, which the project does not
depend on. These functions read every setting from the processor object, so a model's own
preprocessor config still decides sizes, means and pixel budgets; only the arithmetic moves.

Resampling follows PIL's as closely as tensor ops allow: `interpolate` with `antialias=True` uses
PIL's kernels (bicubic with a = -0.5, triangle for bilinear, support widened when downscaling), the
two axes are resized separately in Pillow's order, and each pass is rounded and clipped to 0..255 as
PIL's uint8 passes are. PIL computes in fixed point, so values still differ by about one grey level
at some pixels; test/test_preprocess.py states and checks the measured bound.

What is covered: SigLIP-, CLIP-, GotOcr2- (InternVL: one tile, and the tiles + thumbnail of its
crop_to_patches through `tiled_pixels`, which the InternVL backend calls with its own tile budget) and
Qwen2-VL-style processors with bicubic, bilinear or nearest resampling. Anything else (other processor
classes, a processor object set to crop_to_patches itself, padding, other filters) returns a reason
from `unsupported()` and the backend uses the PIL processor instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image

try:
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize
except ImportError:  # transformers releases without the PIL module keep it next to the processor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize
try:
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import get_optimal_tiled_canvas
except ImportError:  # transformers releases without the PIL module keep it next to the processor
    from transformers.models.got_ocr2.image_processing_got_ocr2 import get_optimal_tiled_canvas
from transformers.image_transforms import get_resize_output_image_size
from transformers.image_utils import ChannelDimension

#: PIL resampling filter number -> interpolate mode ("nearest-exact" samples pixel centres as PIL does)
_MODES = {0: "nearest-exact", 2: "bilinear", 3: "bicubic"}
#: processor classes whose steps these functions reproduce (name without the Pil/Fast suffix)
SQUARE_PROCESSORS = ("SiglipImageProcessor", "CLIPImageProcessor", "GotOcr2ImageProcessor")
PATCH_PROCESSORS = ("Qwen2VLImageProcessor",)


def _field(obj: Any, key: str) -> Any:
    """A key of a processor's size dict (a plain dict or transformers' SizeDict)."""
    if obj is None:
        return None
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)


def processor_kind(processor: Any) -> str:
    name = type(processor).__name__
    for suffix in ("Pil", "Fast"):
        name = name.removesuffix(suffix)
    return name


def resample_mode(resample: Any) -> str | None:
    """The interpolate mode matching a processor's `resample` (a PIL filter number or a torchvision
    InterpolationMode), or None when there is no close tensor equivalent."""
    value = getattr(resample, "value", resample)
    if isinstance(value, str):
        value = {"nearest": 0, "bilinear": 2, "bicubic": 3}.get(value.lower(), -1)
    return _MODES.get(int(value)) if value is not None else _MODES[2]


def unsupported(processor: Any) -> str | None:
    """Why the tensor path cannot reproduce this processor (None: it can)."""
    kind = processor_kind(processor)
    if kind not in SQUARE_PROCESSORS + PATCH_PROCESSORS:
        return f"processor {type(processor).__name__} is not covered"
    if getattr(processor, "do_resize", True) and resample_mode(getattr(processor, "resample", None)) is None:
        return f"resampling filter {getattr(processor, 'resample', None)!r} has no tensor equivalent"
    if getattr(processor, "do_pad", False):
        return "padding is not covered"
    if getattr(processor, "crop_to_patches", False):
        return "multi-tile cropping is not covered"
    size = getattr(processor, "size", None)
    if kind in PATCH_PROCESSORS:
        if not _field(size, "shortest_edge") or not _field(size, "longest_edge"):
            return "a Qwen2-VL processor needs size.shortest_edge and size.longest_edge"
    elif not (_field(size, "height") and _field(size, "width")) and not _field(size, "shortest_edge"):
        return f"size {size!r} is not a fixed size or a shortest edge"
    if kind == "CLIPImageProcessor" and getattr(processor, "do_center_crop", False):
        crop = getattr(processor, "crop_size", None)
        if not (_field(crop, "height") and _field(crop, "width")):
            return "centre crop without a crop height and width"
        if _field(size, "shortest_edge") and max(_field(crop, "height"), _field(crop, "width")) > _field(
                size, "shortest_edge"):
            return "a centre crop larger than the resized image (padding) is not covered"
    return None


def upload(image: Image.Image | np.ndarray, device: torch.device) -> torch.Tensor:
    """(3, H, W) uint8 on `device` from an RGB PIL image or an (H, W, 3) uint8 array: one copy over."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {arr.dtype} {arr.shape}")
    if not arr.flags.writeable:  # np.asarray of a PIL image is read-only; torch wants a writable buffer
        arr = arr.copy()
    return torch.from_numpy(np.ascontiguousarray(arr)).to(device).permute(2, 0, 1)


def _round_clip(x: torch.Tensor) -> torch.Tensor:
    # PIL's uint8 passes round half up and clip to 0..255
    return torch.floor(x + 0.5).clamp_(0.0, 255.0)


def resize(image: torch.Tensor, height: int, width: int, mode: str) -> torch.Tensor:
    """(3, h, w) float32 in 0..255: `image` (3, H, W) resized PIL-style (see the module docstring)."""
    _, h0, w0 = image.shape
    kwargs: dict[str, Any] = {} if mode.startswith("nearest") else {"antialias": True, "align_corners": False}
    # On the CPU, torch resizes uint8 channels-last images with its own PIL-compatible kernels (ten
    # times faster than in float32 there, and rounded as PIL rounds); elsewhere uint8 is unsupported.
    native_uint8 = image.dtype == torch.uint8 and image.device.type == "cpu" and "antialias" in kwargs
    x = image[None].contiguous(memory_format=torch.channels_last) if native_uint8 else image.float()[None]
    # Pillow (13.0, measured) runs the horizontal pass first, except when the width grows while the
    # height shrinks; the order matters because each pass rounds to uint8.
    passes = [(h0, width), (height, width)]
    if width > w0 and height < h0:
        passes = [(height, w0), (height, width)]
    for size in passes:
        if size != tuple(x.shape[2:]):
            x = torch.nn.functional.interpolate(x, size=size, mode=mode, **kwargs)
            if not native_uint8:
                x = _round_clip(x)
    return x[0].float()


def rescale_normalize(image: torch.Tensor, processor: Any) -> torch.Tensor:
    """The processor's rescale (x * factor) and normalisation ((x - mean) / std) on (3, h, w) floats."""
    x = image.float()
    if getattr(processor, "do_rescale", True):
        x = x * float(getattr(processor, "rescale_factor", 1 / 255))
    if getattr(processor, "do_normalize", True):
        mean = torch.as_tensor(processor.image_mean, dtype=torch.float32, device=x.device).reshape(-1, 1, 1)
        std = torch.as_tensor(processor.image_std, dtype=torch.float32, device=x.device).reshape(-1, 1, 1)
        x = (x - mean) / std
    return x


def _square_size(processor: Any, height: int, width: int) -> tuple[int, int]:
    size = processor.size
    if _field(size, "height") and _field(size, "width"):
        return int(_field(size, "height")), int(_field(size, "width"))
    # shortest edge to the given length, aspect kept (transformers' own rule, applied to a stand-in array)
    stand_in = np.broadcast_to(np.zeros((), np.uint8), (1, height, width))
    h, w = get_resize_output_image_size(stand_in, size=int(_field(size, "shortest_edge")), default_to_square=False,
                                        input_data_format=ChannelDimension.FIRST)
    return int(h), int(w)


def square_pixels(images: list[Image.Image | np.ndarray], processor: Any, device: torch.device,
                  dtype: torch.dtype) -> torch.Tensor:
    """(B, 3, h, w) pixel values of a SigLIP, CLIP or GotOcr2 (single tile) processor."""
    mode = resample_mode(getattr(processor, "resample", None)) or "bilinear"
    out = []
    for image in images:
        x = upload(image, device)
        h0, w0 = x.shape[1:]
        if getattr(processor, "do_resize", True):
            h, w = _square_size(processor, h0, w0)
            x = resize(x, h, w, mode)
        if processor_kind(processor) == "CLIPImageProcessor" and getattr(processor, "do_center_crop", False):
            ch, cw = int(_field(processor.crop_size, "height")), int(_field(processor.crop_size, "width"))
            top, left = (x.shape[1] - ch) // 2, (x.shape[2] - cw) // 2
            x = x[:, top:top + ch, left:left + cw]
        out.append(rescale_normalize(x, processor))
    return torch.stack(out).to(dtype)


def tile_arrangement(processor: Any, height: int, width: int, max_tiles: int) -> tuple[int, int]:
    """(rows, cols) of the tiles GotOcr2's crop_to_patches cuts an image into, at most `max_tiles` (and at
    least the processor's min_patches): transformers' own rule, the tile arrangement whose aspect ratio
    is closest to the image's."""
    if max_tiles <= 1:
        return 1, 1
    tile = (int(_field(processor.size, "height")), int(_field(processor.size, "width")))
    min_tiles = min(int(getattr(processor, "min_patches", 1) or 1), max_tiles)
    cols, rows = get_optimal_tiled_canvas((int(height), int(width)), tile, min_tiles, int(max_tiles))
    return int(rows), int(cols)


def tiled_pixels(images: list[Image.Image | np.ndarray], processor: Any, device: torch.device,
                 dtype: torch.dtype, max_tiles: int) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """(T, 3, h, w) pixel values of GotOcr2's crop_to_patches (InternVL) for all images, and each image's
    tile (rows, cols). Per image: the image resized onto a rows x cols canvas of tiles, the tiles
    row-major, then (when there is more than one tile) a thumbnail of the whole image, the processor's
    order."""
    mode = resample_mode(getattr(processor, "resample", None)) or "bilinear"
    th, tw = int(_field(processor.size, "height")), int(_field(processor.size, "width"))
    out, arrangements = [], []
    for image in images:
        x = upload(image, device)
        rows, cols = tile_arrangement(processor, x.shape[1], x.shape[2], max_tiles)
        canvas = resize(x, rows * th, cols * tw, mode)
        tiles = [canvas[:, r * th:(r + 1) * th, c * tw:(c + 1) * tw] for r in range(rows) for c in range(cols)]
        if len(tiles) > 1:
            tiles.append(resize(x, th, tw, mode))
        out += [rescale_normalize(t, processor) for t in tiles]
        arrangements.append((rows, cols))
    return torch.stack(out).to(dtype), arrangements


def pixel_budget(processor: Any, max_pixels: int | None = None) -> tuple[int, int]:
    """(min, max) pixels of a Qwen2-VL processor's smart resize, the maximum tightened to `max_pixels`
    when given (never below the processor's own minimum)."""
    lo = int(_field(processor.size, "shortest_edge"))
    hi = int(_field(processor.size, "longest_edge"))
    if max_pixels is not None:
        hi = max(lo, min(hi, int(max_pixels)))
    return lo, hi


def patch_grid(processor: Any, height: int, width: int, max_pixels: int | None = None) -> tuple[int, int]:
    """(resized height, width) of a Qwen2-VL processor for an image (see `pixel_budget`)."""
    lo, hi = pixel_budget(processor, max_pixels)
    factor = int(processor.patch_size) * int(processor.merge_size)
    return smart_resize(height, width, factor=factor, min_pixels=lo, max_pixels=hi)


def patch_pixels(images: list[Image.Image | np.ndarray], processor: Any, device: torch.device,
                 dtype: torch.dtype, max_pixels: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Qwen2-VL-style flat patches (sum of h*w/p^2, C * T * p * p) and image_grid_thw (B, 3).

    Patches are ordered as the processor orders them: merge windows row-major, the merge x merge
    patches of each window row-major inside it, each patch duplicated over the temporal axis."""
    mode = resample_mode(getattr(processor, "resample", None)) or "bilinear"
    p, m, t = int(processor.patch_size), int(processor.merge_size), int(processor.temporal_patch_size)
    patches, grids = [], []
    for image in images:
        x = upload(image, device)
        h, w = x.shape[1:]
        if getattr(processor, "do_resize", True):
            h, w = patch_grid(processor, h, w, max_pixels)
            x = resize(x, h, w, mode)
        x = rescale_normalize(x, processor)
        c, gh, gw = x.shape[0], h // p, w // p
        x = x.reshape(c, gh // m, m, p, gw // m, m, p).permute(1, 4, 2, 5, 0, 3, 6)
        x = x[:, :, :, :, :, None].expand(*x.shape[:5], t, p, p)
        patches.append(x.reshape(gh * gw, c * t * p * p))
        grids.append([1, gh, gw])
    return torch.cat(patches).to(dtype), torch.tensor(grids, dtype=torch.long, device=device)


__all__ = ["unsupported", "upload", "resize", "rescale_normalize", "square_pixels", "patch_pixels", "patch_grid",
           "tile_arrangement", "tiled_pixels",
           "pixel_budget", "resample_mode", "processor_kind"]
