"""Image preprocessing as tensor ops on the model's device: the transformers image processors' steps
(resize, centre crop, rescale, normalise, Qwen's patchify) on a uint8 frame uploaded once.

Why not the processors themselves: the PIL processors resize on the host (about 33 ms for a 448 px
image on the build machine) and the torchvision ones need torchvision, which the project does not
depend on. These functions read every setting from the processor object, so a model's own
preprocessor config still decides sizes, means and pixel budgets; only the arithmetic moves.

Resampling follows PIL's as closely as tensor ops allow: `interpolate` with `antialias=True` uses
PIL's kernels (bicubic with a = -0.5, triangle for bilinear, support widened when downscaling), the
two axes are resized separately in Pillow's order (asked of Pillow once per geometry:
`resample.vertical_first`), and each pass is rounded and clipped to 0..255 as
PIL's uint8 passes are. PIL computes in fixed point, so values still differ by about one grey level
at some pixels; test/test_preprocess.py states and checks the measured bound. Nearest picks exactly
Pillow's pixels (a gather, see `_nearest_indices`).

What is covered: SigLIP-, CLIP-, GotOcr2- (InternVL: one tile, and the tiles + thumbnail of its
crop_to_patches through `tiled_pixels`, which the InternVL backend calls with its own tile budget) and
Gemma 3- (no pan-and-scan) and Qwen2-VL-style processors with bicubic, bilinear or nearest resampling.
Anything else (other processor classes, a processor object set to crop_to_patches itself, Gemma 3's
pan-and-scan, padding, other filters) returns a reason from `unsupported()` and the backend uses the PIL
processor instead.
"""

from __future__ import annotations

import functools
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

from ego_ros.core.resample import vertical_first

#: PIL resampling filter number -> interpolate mode (nearest is a gather of Pillow's pixels instead)
_MODES = {0: "nearest-exact", 2: "bilinear", 3: "bicubic"}
_FILTERS = {mode: number for number, mode in _MODES.items()}
#: processor classes whose steps these functions reproduce (name without the Pil/Fast suffix)
SQUARE_PROCESSORS = ("SiglipImageProcessor", "CLIPImageProcessor", "GotOcr2ImageProcessor", "Gemma3ImageProcessor")
PATCH_PROCESSORS = ("Qwen2VLImageProcessor",)
#: anyres processors (LLaVA-NeXT, LLaVA-OneVision): a squashed base crop plus the crops of a pinpoint canvas
ANYRES_PROCESSORS = ("LlavaNextImageProcessor", "LlavaOnevisionImageProcessor")


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
    if kind not in SQUARE_PROCESSORS + PATCH_PROCESSORS + ANYRES_PROCESSORS:
        return f"processor {type(processor).__name__} is not covered"
    if getattr(processor, "do_resize", True) and resample_mode(getattr(processor, "resample", None)) is None:
        return f"resampling filter {getattr(processor, 'resample', None)!r} has no tensor equivalent"
    if kind in ANYRES_PROCESSORS:  # their do_pad pads the crop count of a batch, which anyres_pixels does
        return None if getattr(processor, "do_resize", True) else "an anyres processor without resizing"
    if getattr(processor, "do_pad", False):
        return "padding is not covered"
    if getattr(processor, "crop_to_patches", False):
        return "multi-tile cropping is not covered"
    if getattr(processor, "do_pan_and_scan", False):
        return "pan-and-scan crops are not covered"
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


@functools.lru_cache(maxsize=64)
def _nearest_indices(in_size: int, out_size: int) -> torch.Tensor:
    """Source index of each output pixel of Pillow's nearest resize along one axis.

    Hand-written because torch's "nearest-exact" computes the coordinates in float32 and picks another
    pixel than Pillow for about 5 % of the outputs (measured, 640x480 -> 448x448); Pillow's nearest scale
    starts at half a step and adds the step (in / out, a double) once per output pixel, as done here."""
    step, coord, out = in_size / out_size, in_size / out_size * 0.5, []
    for _ in range(out_size):
        out.append(min(int(coord), in_size - 1))
        coord += step
    return torch.tensor(out, dtype=torch.long)


def resize(image: torch.Tensor, height: int, width: int, mode: str) -> torch.Tensor:
    """(3, h, w) float32 in 0..255: `image` (3, H, W) resized PIL-style (see the module docstring)."""
    _, h0, w0 = image.shape
    if mode.startswith("nearest"):  # equal to Pillow's: a gather of the pixels it picks
        rows = _nearest_indices(int(h0), height).to(image.device)
        cols = _nearest_indices(int(w0), width).to(image.device)
        return image.index_select(1, rows).index_select(2, cols).float()
    # On the CPU, torch resizes uint8 channels-last images with its own PIL-compatible kernels (ten
    # times faster than in float32 there, and rounded as PIL rounds); elsewhere uint8 is unsupported.
    native_uint8 = image.dtype == torch.uint8 and image.device.type == "cpu"
    x = image[None].contiguous(memory_format=torch.channels_last) if native_uint8 else image.float()[None]
    # Pillow's order of the two passes matters because each rounds to uint8
    passes = [(h0, width), (height, width)]
    if (width != w0 and height != h0
            and vertical_first(int(w0), int(h0), width, height, _FILTERS[mode])):
        passes = [(height, w0), (height, width)]
    for size in passes:
        if size != tuple(x.shape[2:]):
            x = torch.nn.functional.interpolate(x, size=size, mode=mode, antialias=True, align_corners=False)
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
    """(B, 3, h, w) pixel values of a SigLIP, CLIP, GotOcr2 (single tile) or Gemma 3 processor."""
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
           "pixel_budget", "resample_mode", "processor_kind", "anyres_pixels"]


def anyres_pixels(images: list[Image.Image | np.ndarray], processor: Any, device: torch.device, dtype: torch.dtype,
                  pinpoints: list[list[int]], side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, crops, 3, side, side) pixel values and (B, 2) image sizes (height, width) of a LLaVA-NeXT /
    LLaVA-OneVision processor choosing among `pinpoints`: per image, the image squashed to one crop, then
    the crops (row-major) of the image resized onto the best pinpoint keeping its aspect ratio and centred
    on black padding; images with fewer crops are padded with zero crops, as the processor pads a batch.
    The pinpoint and resized size come from transformers' own functions."""
    from transformers.image_processing_utils import get_patch_output_size, select_best_resolution

    mode = resample_mode(getattr(processor, "resample", None)) or "bilinear"
    per_image, sizes = [], []
    for image in images:
        x = upload(image, device)
        h0, w0 = int(x.shape[1]), int(x.shape[2])
        th, tw = select_best_resolution((h0, w0), pinpoints)
        stand_in = np.broadcast_to(np.zeros((), np.uint8), (1, h0, w0))
        nh, nw = get_patch_output_size(stand_in, (th, tw), ChannelDimension.FIRST)
        canvas = torch.zeros((3, th, tw), device=device)
        top, left = (th - nh) // 2, (tw - nw) // 2
        canvas[:, top:top + nh, left:left + nw] = resize(x, nh, nw, mode)
        crops = [resize(x, side, side, mode)]
        crops += [canvas[:, r:r + side, c:c + side] for r in range(0, th, side) for c in range(0, tw, side)]
        per_image.append(torch.stack([rescale_normalize(c, processor) for c in crops]))
        sizes.append((h0, w0))
    most = max(p.shape[0] for p in per_image)
    out = torch.zeros((len(per_image), most, 3, side, side), device=device)
    for i, p in enumerate(per_image):
        out[i, :p.shape[0]] = p
    return out.to(dtype), torch.tensor(sizes, dtype=torch.long, device=device)
