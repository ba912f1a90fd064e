"""The ~/introduce_from_camera action: a concept introduced from the next camera frames, with feedback
per view and cancel; nothing is stored unless every view was built.
"""

from __future__ import annotations

import math

import numpy as np
from rclpy.action import CancelResponse
from rclpy.action.server import ServerGoalHandle
from rclpy.task import Future
from std_msgs.msg import Header

from ego_msgs.action import IntroduceFromCamera

from ..core.engine import EgoEngine
from ..core.errors import DuplicateConceptError
from ..core.introduce import IntroduceOptions
from ..core.limits import MAX_NOTES_CHARS, check_text
from ..core.memory import ConceptMemory, MemoryView, validate_name
from .conversions import (
    frame_to_rgb,
    stamp_seconds,
)
from .image_conversion import ImageConversionError
from .request_helpers import MAX_VIEWS, NodeStateError


class IntroduceActionMixin:
    """EgoNode's introduce_from_camera action and the waiters it sleeps on."""

    def _on_cancel(self, goal_handle: ServerGoalHandle) -> CancelResponse:
        self._wake_waiters()
        return CancelResponse.ACCEPT

    def _wake_waiters(self) -> None:
        with self._waiters_lock:
            waiters, self._waiters = self._waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    def _wakeup(self) -> Future:
        """A future done at the next new frame, cancel request, lifecycle change or diagnostics tick.

        Take it before checking what to wait for, so that an event in between is not missed.
        """
        future = self._new_future()
        with self._waiters_lock:
            self._waiters.append(future)
        return future

    async def _execute_introduce_from_camera(self, goal_handle: ServerGoalHandle) -> IntroduceFromCamera.Result:
        goal = goal_handle.request
        result = IntroduceFromCamera.Result()
        wanted = max(1, goal.num_frames)
        views: list[MemoryView] = []
        references: list[tuple[np.ndarray, Header]] = []
        try:
            engine = self._require_engine()
            name = validate_name(goal.name)
            notes = check_text(goal.notes, "notes", MAX_NOTES_CHARS)
            if name in engine.store and not goal.replace:
                raise DuplicateConceptError(f"concept {name!r} already exists; set replace=true to overwrite it")
            if wanted > MAX_VIEWS:
                raise ValueError(f"num_frames={wanted}; at most {MAX_VIEWS} views are accepted")
            interval = float(goal.min_interval_s)
            if not math.isfinite(interval) or interval < 0:
                raise ValueError(f"min_interval_s must be a finite number >= 0, got {goal.min_interval_s}")
            if self._state != "active":
                raise NodeStateError(self._no_frame_message())
            options = self._introduce_options()
            with self._introduction(name):
                seen = self._frames.last_seq  # only frames that arrive after the goal count
                last_stamp: float | None = None
                seconds = 0.0
                while len(views) < wanted:
                    wakeup = self._wakeup()
                    if goal_handle.is_cancel_requested:
                        break
                    if self._state != "active":
                        raise NodeStateError(f"the node was {self._state} before {wanted} frames were captured")
                    item = self._frames.newest()
                    if item is None or item[0] <= seen or (
                            last_stamp is not None and stamp_seconds(item[1].header) - last_stamp < interval):
                        await wakeup
                        continue
                    seen, frame = item
                    try:
                        rgb = frame_to_rgb(frame, self._settings.max_image_pixels)
                    except ImageConversionError as exc:
                        self.get_logger().warning(f"introduce_from_camera: frame skipped: {exc}",
                                                  throttle_duration_sec=5.0)
                        continue
                    view, took = await self._on_model_thread(_introduce_view, engine, rgb, options)
                    views.append(view)
                    references.append((rgb, frame.header))
                    seconds += took
                    last_stamp = stamp_seconds(frame.header)
                    goal_handle.publish_feedback(IntroduceFromCamera.Feedback(
                        frames_captured=len(views), current_keywords=_unique_keywords(views)))
                if goal_handle.is_cancel_requested:
                    goal_handle.canceled()
                    result.message = f"cancelled after {len(views)} of {wanted} frames; nothing was stored"
                    self.get_logger().info(f"introduce_from_camera {name!r}: {result.message}")
                    return result
                memory = ConceptMemory(name=name, views=views, fingerprint=engine.backend.fingerprint(),
                                       model=engine.backend.name, selection=options.selection, notes=notes,
                                       seconds=seconds)
                await self._on_model_thread(engine.add_memory, memory, goal.replace)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a result
            self._fail(result, exc, "introduce_from_camera")
            if goal_handle.is_cancel_requested:
                goal_handle.canceled()
            else:
                goal_handle.abort()
            return result
        goal_handle.succeed()
        result.success = True
        result.concept = self._announce_introduction(memory, references, f"{len(views)} camera frame(s)")
        return result


def _introduce_view(engine: EgoEngine, rgb: np.ndarray, options: IntroduceOptions) -> tuple[MemoryView, float]:
    """One camera view's memory (keywords, area estimate, selected tokens), built on the model thread.

    Camera introductions build views one at a time, as frames arrive, so that feedback can report
    each view's keywords; the memory is stored only once all views exist (and never if cancelled).
    """
    return engine.build_view(rgb, options)


def _unique_keywords(views: list[MemoryView]) -> list[str]:
    return ConceptMemory(name="views", views=views, fingerprint="", model="").unique_keywords()
