"""What the node's services and its camera introduction action share: state checks, request images,
the single introduction slot, failure replies and the concept list publisher.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import rclpy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from ego_msgs.msg import ConceptDescription, ConceptList

from ..core.engine import EgoEngine
from ..core.errors import BusyError, EgoError, InvalidImageError
from ..core.memory import ConceptMemory
from .conversions import (
    concept_description,
    copy_header,
    error_message,
    format_traceback,
    frame_to_rgb,
    image_to_rgb,
    is_empty_image,
    is_user_error,
)
from .frames import FrameMsg
from .image_conversion import ImageConversionError, rgb_to_image_fields
from .overlay import draw_memory_view

#: Most views one introduction may use (request images, latest frames or camera frames).
MAX_VIEWS = 64


class NodeStateError(EgoError):
    """A request the node cannot serve in its current lifecycle state (not configured, not active)."""


class RequestHelpersMixin:
    """Helpers of EgoNode's request handlers (services and the introduce_from_camera action)."""

    def _not_configured(self) -> str:
        return f"the node is not configured (state {self._state}); configure it first (lifecycle transition)"

    def _require_engine(self) -> EgoEngine:
        engine = self._engine
        if engine is None:
            raise NodeStateError(self._not_configured())
        return engine

    def _no_frame_message(self) -> str:
        if self._state != "active":
            return (f"no camera frame available: the node is {self._state}; activate it to subscribe to the "
                    "camera, or send an image in the request")
        topic = self._subscription.topic_name if self._subscription is not None else "image"
        return f"no camera frame received yet on {topic}; check the camera, or send an image in the request"

    def _latest_frames(self, count: int) -> list[FrameMsg]:
        frames = self._frames.latest(count) if self._state == "active" else []
        if not frames:
            raise NodeStateError(self._no_frame_message())
        if len(frames) < count:
            raise NodeStateError(f"only {len(frames)} camera frame(s) received so far; {count} requested")
        return frames

    def _request_image(self, image: Image) -> tuple[np.ndarray, Header]:
        """The request's image, or the latest camera frame when the request leaves it empty."""
        max_pixels = self._settings.max_image_pixels
        if is_empty_image(image):
            frame = self._latest_frames(1)[-1]
            return self._convert(frame_to_rgb, frame, max_pixels, what="camera frame"), frame.header
        return self._convert(image_to_rgb, image, max_pixels, what="image"), image.header

    @staticmethod
    def _convert(fn: Callable[..., np.ndarray], msg: Any, max_pixels: int, what: str) -> np.ndarray:
        try:
            return fn(msg, max_pixels)
        except ImageConversionError as exc:
            raise InvalidImageError(f"{what}: {exc}") from exc

    def _check_concepts(self, engine: EgoEngine, names: list[str]) -> list[str] | None:
        for n in names:
            engine.store.get(n)  # UnknownConceptError names the known concepts
        return list(names) or None

    @contextmanager
    def _introduction(self, name: str) -> Iterator[None]:
        """Hold the single introduction slot for `name`, or raise BusyError at once."""
        with self._intro_lock:
            if self._introducing is not None:
                raise BusyError(f"busy: concept {self._introducing!r} is being introduced; introductions run one "
                                "at a time, try again when it finishes")
            self._introducing = name
        try:
            yield
        finally:
            with self._intro_lock:
                self._introducing = None

    def _fail(self, response: Any, exc: BaseException, what: str) -> Any:
        response.success = False
        response.message = error_message(exc)
        if is_user_error(exc) or isinstance(exc, NodeStateError):
            self.get_logger().warning(f"{what}: {response.message}")
        else:
            self.get_logger().error(f"{what} failed: {format_traceback(exc)}")
        return response

    def _log_failure(self, what: str, exc: BaseException) -> None:
        if is_user_error(exc):
            self.get_logger().error(f"{what} failed: {error_message(exc)}")
        else:
            self.get_logger().error(f"{what} failed: {format_traceback(exc)}")

    def _publish_concepts(self) -> None:
        engine = self._engine
        concepts = [] if engine is None else sorted(engine.concepts(), key=lambda m: m.name)
        msg = ConceptList(header=Header(stamp=self.get_clock().now().to_msg()),
                          concepts=[concept_description(m) for m in concepts])
        if rclpy.ok(context=self.context):
            self._concepts_pub.publish(msg)

    def _announce_introduction(self, memory: ConceptMemory, references: list[tuple[np.ndarray, Header]],
                               source: str) -> ConceptDescription:
        """After a stored introduction (service or action): log it, publish the concept list and the debug
        views; the description to answer with."""
        self.get_logger().info(f"introduced {memory.name!r} from {source}: {memory.num_tokens} tokens, "
                               f"keywords {memory.unique_keywords()}")
        self._publish_concepts()
        self._publish_views(memory, references)
        return concept_description(memory)

    def _publish_views(self, memory: ConceptMemory, references: list[tuple[np.ndarray, Header]]) -> None:
        """Debug: each reference view with the patches its memory kept (if someone watches)."""
        debug = self._debug_pub
        if debug is None or self._state != "active" or debug.get_subscription_count() == 0:
            return
        for i, (view, (rgb, header)) in enumerate(zip(memory.views, references)):
            title = f"{memory.name} view {i + 1}/{len(memory.views)}: {view.k_c} tokens"
            overlay = draw_memory_view(rgb, view.token_boxes(), view.image_size, title)
            debug.publish(Image(header=copy_header(header), **rgb_to_image_fields(overlay, "rgb8")))
