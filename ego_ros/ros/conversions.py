"""Conversions between ROS messages and the engine's inputs and results, and error messages.

Everything here is a pure function of its arguments (no node, no executor), so the node stays a thin
adapter and these rules are tested without a running ROS graph.
"""

from __future__ import annotations

import math
import traceback

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from ego_msgs.msg import Answer, ConceptDescription, ConceptLocation, Recognitions

from ..core.engine import Answer as EngineAnswer
from ..core.engine import Recognition
from ..core.errors import EgoError
from ..core.localise import Location
from ..core.memory import ConceptMemory
from .depth import Position
from .image_conversion import ImageConversionError, compressed_to_rgb, image_fields_to_rgb


def is_empty_image(msg: Image) -> bool:
    """True for the all-empty Image that requests use to mean "the latest camera frame"."""
    return msg.height == 0 and msg.width == 0 and len(msg.data) == 0 and not msg.encoding


def image_to_rgb(msg: Image, max_pixels: int) -> np.ndarray:
    """An HxWx3 uint8 RGB array from a sensor_msgs/Image (ImageConversionError if it is unusable).

    The pixel limit is checked on the header fields before any byte is touched, so a corrupt
    header cannot make the node allocate gigabytes.
    """
    return image_fields_to_rgb(msg.encoding, msg.height, msg.width, msg.step, msg.data, msg.is_bigendian,
                               max_pixels=max_pixels)


def compressed_to_rgb_array(msg: CompressedImage, max_pixels: int) -> np.ndarray:
    return compressed_to_rgb(msg.format, msg.data, max_pixels=max_pixels)


def frame_to_rgb(msg: Image | CompressedImage, max_pixels: int) -> np.ndarray:
    """Either kind of camera frame as RGB."""
    if isinstance(msg, CompressedImage):
        return compressed_to_rgb_array(msg, max_pixels)
    return image_to_rgb(msg, max_pixels)


def copy_header(header: Header) -> Header:
    """A copy of an input header (stamp and frame_id), for outputs about that input."""
    return Header(stamp=Time(sec=header.stamp.sec, nanosec=header.stamp.nanosec), frame_id=header.frame_id)


def stamp_seconds(header: Header) -> float:
    return header.stamp.sec + header.stamp.nanosec * 1e-9


def time_from_seconds(seconds: float) -> Time:
    if not math.isfinite(seconds) or seconds < 0:
        return Time()
    sec = int(seconds)
    nanosec = min(int(round((seconds - sec) * 1e9)), 999_999_999)
    return Time(sec=sec, nanosec=nanosec)


def concept_description(memory: ConceptMemory) -> ConceptDescription:
    """What a ConceptDescription says about a stored memory (never the embeddings).

    area_percent is NaN for a view whose area answer held no usable number (K_c = K then).
    """
    return ConceptDescription(
        name=memory.name,
        keywords=list(memory.unique_keywords()),
        views=len(memory.views),
        tokens=memory.num_tokens,
        area_percent=[float("nan") if a is None else float(a) for a in memory.alpha],
        model=f"{memory.model}@{memory.fingerprint}",
        created=time_from_seconds(memory.created),
        notes=memory.notes,
    )


def recognitions_msg(header: Header, results: list[Recognition], threshold: float, latency_s: float,
                     positions: dict[str, Position] | None = None) -> Recognitions:
    """A Recognitions message; concepts the similarity filter left out are omitted, as the message specifies.

    `positions` (name -> Position, when the node uses depth) gives the located concepts their
    3-D points or the reason they have none.

    `present` is decided here on the float32 values the message carries, so that present[i] is
    exactly probabilities[i] >= threshold for any reader, whatever the threshold was changed to.
    """
    scored = [r for r in results if r.considered]
    probabilities = np.asarray([r.probability for r in scored], dtype=np.float32)
    return Recognitions(
        header=copy_header(header),
        names=[r.name for r in scored],
        probabilities=probabilities.tolist(),
        present=(probabilities >= np.float32(threshold)).tolist(),
        threshold=float(threshold),
        latency_s=float(latency_s),
        locations=[location_msg(r.location, (positions or {}).get(r.name)) for r in scored if r.location is not None],
    )


def location_msg(location: Location, position: Position | None = None) -> ConceptLocation:
    """A concept's location in the input image's pixels, with its 3-D point (or why none) when `position`
    is given."""
    x0, y0, x1, y1 = location.box
    msg = ConceptLocation(name=location.name, x_min=float(x0), y_min=float(y0), x_max=float(x1),
                          y_max=float(y1), x=float(location.point[0]), y=float(location.point[1]),
                          score=float(location.score))
    if position is not None:
        if position.point is not None:
            msg.has_position = True
            msg.position = Point(x=position.point[0], y=position.point[1], z=position.point[2])
        else:
            msg.position_status = position.status
    return msg


def answer_msg(header: Header, question: str, answer: EngineAnswer, latency_s: float | None = None) -> Answer:
    return Answer(
        header=copy_header(header),
        question=question,
        answer=answer.text,
        concepts=list(answer.concepts),
        latency_s=float(answer.seconds if latency_s is None else latency_s),
    )


def error_message(exc: BaseException) -> str:
    """The message a service or action reply carries for a failure.

    Engine errors (EgoError) and image conversion errors are the caller's to fix and are passed on as
    they are written; anything else is a fault of the node, reported with its type so it can be
    looked up in the log (where the node writes the traceback).
    """
    if isinstance(exc, ImageConversionError):
        return f"invalid image: {exc}"
    if isinstance(exc, EgoError):
        return str(exc)
    if isinstance(exc, ValueError):
        return f"invalid request: {exc}"
    return f"internal error ({type(exc).__name__}: {exc}); see the node's log"


def is_user_error(exc: BaseException) -> bool:
    """Whether a failure was caused by the request (logged as a warning, not an error)."""
    return isinstance(exc, (EgoError, ImageConversionError, ValueError)) and not isinstance(exc, MemoryError)


def format_traceback(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


__all__ = ["is_empty_image", "image_to_rgb", "compressed_to_rgb_array", "frame_to_rgb", "copy_header",
           "stamp_seconds", "time_from_seconds", "concept_description", "recognitions_msg", "answer_msg",
           "error_message", "is_user_error", "format_traceback"]
