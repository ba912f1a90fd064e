"""Images in and out of the MCP tools: file paths and base64 strings to RGB pictures, with size
checks, and pictures back to (downscaled) PNG/JPEG bytes for MCP image content.

PIL does the decoding and encoding; this module only enforces what an agent may send (PNG or JPEG,
bounded bytes and pixels, paths only where allowed) and turns every failure into an `AgentError`
with a message an agent can act on.
"""

from __future__ import annotations

import base64
import binascii
import io
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from .errors import AgentError

#: Largest encoded image accepted (bytes, after base64 decoding or on disk).
MAX_IMAGE_BYTES = 20 * 1024 * 1024
#: Largest decoded image accepted (pixels): 24 MP covers every camera a robot carries.
MAX_IMAGE_PIXELS = 24_000_000
#: Formats an agent may send inline; files may be anything PIL opens.
INLINE_FORMATS = ("PNG", "JPEG")
#: Default longest side of the image content `latest_frame` returns.
DEFAULT_MAX_SIDE = 512


def _decode(data: bytes, what: str, formats: tuple[str, ...] | None) -> Image.Image:
    if len(data) > MAX_IMAGE_BYTES:
        raise AgentError(f"{what}: {len(data)} bytes; the limit is {MAX_IMAGE_BYTES} bytes")
    try:
        image = Image.open(io.BytesIO(data), formats=formats)
        width, height = image.size  # header only: refuse a huge image before decoding its pixels
        if width * height > MAX_IMAGE_PIXELS:
            raise AgentError(f"{what}: {width}x{height} pixels; the limit is {MAX_IMAGE_PIXELS} pixels")
        image.load()
    except AgentError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        accepted = " or ".join(formats) if formats else "an image format PIL reads"
        raise AgentError(f"{what}: not a decodable image ({accepted} expected): {exc}") from exc
    return image.convert("RGB")


def decode_base64(text: str, what: str = "image_base64") -> Image.Image:
    """A base64 PNG or JPEG (optionally a data URL, ``data:image/png;base64,...``) as an RGB image."""
    if not isinstance(text, str) or not text.strip():
        raise AgentError(f"{what}: empty")
    payload = text.strip()
    if payload.startswith("data:"):
        header, _, payload = payload.partition(",")
        if ";base64" not in header:
            raise AgentError(f"{what}: a data URL must be base64-encoded (data:image/png;base64,...)")
    if len(payload) > MAX_IMAGE_BYTES * 4 // 3 + 4:
        raise AgentError(f"{what}: more than {MAX_IMAGE_BYTES} bytes once decoded")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise AgentError(f"{what}: not valid base64: {exc}") from exc
    return _decode(data, what, INLINE_FORMATS)


def read_image_file(path: str, what: str = "image_path") -> Image.Image:
    """An image file on the server's machine as an RGB image."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise AgentError(f"{what}: no such file on the server: {path}")
    size = p.stat().st_size
    if size > MAX_IMAGE_BYTES:
        raise AgentError(f"{what}: {path} has {size} bytes; the limit is {MAX_IMAGE_BYTES} bytes")
    return _decode(p.read_bytes(), f"{what} {path}", None)


def gather_images(paths: list[str] | None, encoded: list[str] | None, allow_paths: bool, max_count: int,
                  path_arg: str = "image_paths", base64_arg: str = "images_base64") -> list[Image.Image]:
    """The images named by file paths and given as base64, in that order (empty lists: none)."""
    paths, encoded = list(paths or []), list(encoded or [])
    if len(paths) + len(encoded) > max_count:
        raise AgentError(f"{len(paths) + len(encoded)} images; at most {max_count} are accepted")
    if paths and not allow_paths:
        raise AgentError(f"{path_arg}: this server does not read files (started for remote clients); "
                         f"send the images inline in {base64_arg}")
    out = [read_image_file(p, f"{path_arg}[{i}]") for i, p in enumerate(paths)]
    out += [decode_base64(t, f"{base64_arg}[{i}]") for i, t in enumerate(encoded)]
    return out


def one_image(path: str | None, encoded: str | None, allow_paths: bool) -> Image.Image | None:
    """The single image of a query tool (`image_path` or `image_base64`), or None when neither is given."""
    if path and encoded:
        raise AgentError("give image_path or image_base64, not both")
    if path:
        if not allow_paths:
            raise AgentError("image_path: this server does not read files (started for remote clients); "
                             "send the image inline in image_base64")
        return read_image_file(path, "image_path")
    return decode_base64(encoded, "image_base64") if encoded else None


def to_content_bytes(image: Image.Image, max_side: int = DEFAULT_MAX_SIDE, fmt: str = "jpeg"
                     ) -> tuple[bytes, tuple[int, int]]:
    """`image` downscaled so its longest side is at most `max_side`, encoded as JPEG or PNG; and its size."""
    if max_side < 16:
        raise AgentError(f"max_side must be at least 16 pixels, got {max_side}")
    fmt = fmt.lower()
    if fmt not in ("jpeg", "png"):
        raise AgentError(f"format must be 'jpeg' or 'png', got {fmt!r}")
    out = image.convert("RGB")
    if max(out.size) > max_side:
        out = out.copy()
        out.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    out.save(buffer, format="JPEG" if fmt == "jpeg" else "PNG", **({"quality": 85} if fmt == "jpeg" else {}))
    return buffer.getvalue(), out.size
