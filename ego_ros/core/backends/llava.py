"""The LLaVA backend (CLIP or SigLIP tower, the toy model's family)."""

from __future__ import annotations

import torch
from PIL import Image

from .. import preprocess
from .base import Backend, VisualTokens
from .common import square_grid_tokens, square_pixels

#: Vision towers this backend models -> the feature select strategy that leaves exactly a square grid
#: (CLIP prepends a CLS token that "default" drops; SigLIP has none, so "default" would drop a patch).
TOWERS = {"clip_vision_model": "default", "siglip_vision_model": "full"}
#: Why other towers seen in LLaVA-type checkpoints are not modelled (the message names the reason).
OTHER_TOWERS = {
    "pixtral": "its Pixtral tower keeps the image's aspect ratio (a rows x cols grid that changes with the image, "
               "not a fixed square) and its processor inserts [IMG_BREAK] after each row and [IMG_END] after the "
               "image",
    "siglip2_vision_model": "its SigLIP2 tower takes a variable number of patches per image (NaFlex)",
}
#: Image processors whose output is one fixed-size square (with or without a centre crop).
PROCESSORS = ("CLIPImageProcessor", "SiglipImageProcessor")


class LlavaBackend(Backend):
    """LLaVA (`LlavaForConditionalGeneration`) with a CLIP or SigLIP tower; no framing tokens.

    The image processor either resizes to a fixed size (SigLIP) or resizes the shortest edge and takes a
    centre crop (CLIP); the token grid covers the full image or that crop accordingly.
    """

    family = "llava"

    def unsupported_reason(self) -> str | None:
        """What LLaVA checkpoints this backend runs exactly: a CLIP tower with the "default" feature
        selection or a SigLIP tower with "full" (so the kept features are exactly the square patch grid),
        and a CLIP or SigLIP image processor whose output is a square of the tower's input size (a fixed
        resize, or a shortest-edge resize no smaller than a square centre crop)."""
        return tower_reason(self.model.config) or _processor_reason(self.image_processor,
                                                                    self.model.config.vision_config.image_size)

    @property
    def placeholder_id(self) -> int:
        return int(self.model.config.image_token_index)

    def _crop_box(self, size: tuple[int, int]) -> tuple[float, float, float, float]:
        """The region of the image the token grid covers: the whole image (fixed resize) or the centre
        crop, each shrunk to the whole patches the tower cuts from its top-left corner (a 384 px input of
        14 px patches is covered up to 378 px)."""
        w, h = size
        proc = self.image_processor
        side = int(self.model.config.vision_config.image_size)
        kept = covered(side, int(self.model.config.vision_config.patch_size)) / side
        shortest = field(getattr(proc, "size", None), "shortest_edge")
        crop = getattr(proc, "crop_size", None)
        ch, cw = field(crop, "height"), field(crop, "width")
        if not getattr(proc, "do_center_crop", False) or not shortest or not ch or not cw:
            return (0.0, 0.0, w * kept, h * kept)
        scale = shortest / min(w, h)
        x0, y0 = (w * scale - cw) / 2 / scale, (h * scale - ch) / 2 / scale
        return (max(0.0, x0), max(0.0, y0), min(float(w), x0 + cw * kept / scale),
                min(float(h), y0 + ch * kept / scale))

    def pixel_inputs(self, images: list[Image.Image], method: str | None = None) -> dict[str, torch.Tensor]:
        return {"pixel_values": square_pixels(self, images, method)}

    def encode_images(self, images: list[Image.Image], max_pixels: int | None = None) -> list[VisualTokens]:
        return square_grid_tokens(self, images, self._crop_box)

    def native_inputs(self, text_ids: list[int], images: list[Image.Image],
                      method: str | None = None) -> dict[str, torch.Tensor]:
        return {"input_ids": torch.tensor([text_ids], device=self.device), **self.pixel_inputs(images, method)}


def tower_reason(cfg) -> str | None:
    """Why a LLaVA-type config's tower and feature selection give no square patch grid per image or crop
    (None: a CLIP tower with "default" selection or SigLIP with "full", on a square input)."""
    tower = getattr(cfg.vision_config, "model_type", None)
    if tower in OTHER_TOWERS:
        return OTHER_TOWERS[tower]
    if tower not in TOWERS:
        return f"its vision tower {tower!r} is not one of the modelled {sorted(TOWERS)}"
    strategy = cfg.vision_feature_select_strategy
    if strategy != TOWERS[tower]:
        return (f"vision_feature_select_strategy {strategy!r} with a {tower} tower does not leave a square "
                f"patch grid (expected {TOWERS[tower]!r})")
    if not isinstance(cfg.vision_config.image_size, int):
        return f"the tower's image_size {cfg.vision_config.image_size!r} is not one square side"
    return None


def covered(side: int, patch: int) -> int:
    """Pixels of a `side` px input that a tower of `patch` px patches covers (its convolution drops the
    remainder)."""
    return side // patch * patch


def field(size, key: str):
    """A key of a processor's size dict (a plain dict or transformers' SizeDict)."""
    if size is None:
        return None
    return size.get(key) if isinstance(size, dict) else getattr(size, key, None)


def _processor_reason(proc, side: int) -> str | None:
    """Why `proc` does not turn every image into one `side` x `side` square (None: it does)."""
    kind = preprocess.processor_kind(proc)
    if kind not in PROCESSORS:
        return f"its image processor {type(proc).__name__} is not one of the modelled {list(PROCESSORS)}"
    if getattr(proc, "do_pad", False):
        return f"its image processor {type(proc).__name__} pads the image"
    if not getattr(proc, "do_resize", True):
        return f"its image processor {type(proc).__name__} does not resize, so image sizes reach the tower as they are"
    size = getattr(proc, "size", None)
    if getattr(proc, "do_center_crop", False):
        crop = getattr(proc, "crop_size", None)
        out = (field(crop, "height"), field(crop, "width"))
        shortest = field(size, "shortest_edge")
        if shortest is not None and shortest < max(out[0] or 0, out[1] or 0):
            return f"its image processor resizes the shortest edge to {shortest} px, smaller than its {out} crop"
    elif field(size, "height") and field(size, "width"):
        out = (field(size, "height"), field(size, "width"))
    else:
        return (f"its image processor resizes by aspect ratio (size {size!r}, no centre crop), so the tower "
                "would not see a fixed square")
    if out != (side, side):
        return f"its image processor makes {out[1]}x{out[0]} px images but the tower takes {side}x{side}"
    return None
