"""The Ego lifecycle node: teach a robot personal concepts from a few frames, then find them in its camera.

Interface (names relative to the node; remap `image` to the camera):

  Subscribes   image (sensor_msgs/Image) or image/compressed (sensor_msgs/CompressedImage), by the
               image_transport parameter; sensor-data QoS, overridable through qos_overrides.
  Publishes    ~/recognitions (ego_msgs/Recognitions), ~/answers (ego_msgs/Answer, standing questions),
               ~/concepts (ego_msgs/ConceptList, transient local, on every change),
               ~/debug/image (sensor_msgs/Image, only while subscribed), /diagnostics.
  Services     ~/introduce_concept, ~/remove_concept, ~/rename_concept, ~/list_concepts, ~/ask, ~/caption
  Action       ~/introduce_from_camera (ego_msgs/action/IntroduceFromCamera)

Lifecycle: configure loads the model and the concept store (and introduces the concepts_file),
activate subscribes and starts the recognition worker, deactivate stops it, cleanup frees the model.

Threads. All model work runs on one dedicated model thread, in arrival order, never on an executor
thread: the streaming worker hands it one frame at a time (at most max_rate per second, only the
latest frame is kept), and service and action callbacks are coroutines that await its results, so an
executor thread is never blocked by the model. Consequences, by design:
  * Calls queue: ask, caption, remove and rename wait for the model step in progress (a whole
    service introduction, or one view of a camera introduction) and then run; list_concepts never waits.
  * Introductions are exclusive: while one runs (service or action), another introduce request fails
    at once with "busy" (nothing is queued, nothing changes).
  * The store is only changed by complete operations (the engine writes it atomically), so no call
    order can corrupt it; a cancelled or failed camera introduction stores nothing.
"""

from __future__ import annotations

import gc
import math
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future as ConcurrentFuture
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from typing import Any

import numpy as np
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy._rclpy_pybind11 import RCLError
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.action.server import ServerGoalHandle
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.exceptions import ParameterUninitializedException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.qos_overriding_options import QoSOverridingOptions
from rclpy.task import Future
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from ego_msgs.action import IntroduceFromCamera
from ego_msgs.msg import Answer, ConceptList, Recognitions
from ego_msgs.srv import Ask, Caption, IntroduceConcept, ListConcepts, RemoveConcept, RenameConcept

from ..core.engine import EgoEngine
from ..core.errors import BusyError, DuplicateConceptError, EgoError, InvalidImageError
from ..core.introduce import IntroduceOptions
from ..core.memory import ConceptMemory, MemoryView, validate_name
from .concepts_file import load_concepts_file
from .conversions import (
    answer_msg,
    concept_description,
    copy_header,
    error_message,
    format_traceback,
    frame_to_rgb,
    image_to_rgb,
    is_empty_image,
    is_user_error,
    recognitions_msg,
    stamp_seconds,
)
from .frames import FrameBuffer, FrameMsg, Stats
from .image_conversion import ImageConversionError, compressed_to_rgb, rgb_to_image_fields
from .overlay import draw_memory_view, draw_recognitions
from .params import SPECS, STRING_ARRAY, ParameterValueError, Settings, validate

NODE_NAME = "ego_node"
#: Most views one introduction may use (request images, latest frames or camera frames).
MAX_VIEWS = 64
#: How often diagnostics are published; also the longest a waiting camera introduction goes without
#: re-checking for cancellation when no frame arrives.
TICK_S = 1.0
WORKER_JOIN_S = 60.0


class NodeStateError(EgoError):
    """A request the node cannot serve in its current lifecycle state (not configured, not active)."""


class EgoNode(LifecycleNode):
    """Lifecycle node around an EgoEngine. See the module docstring for the interface and threads."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self._declare_parameters()
        try:
            self._settings = Settings.from_values(self._parameter_values())
        except ParameterValueError as exc:
            self.get_logger().error(f"invalid parameter: {exc}; configure will fail until it is fixed")
            self._settings = Settings()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.add_post_set_parameters_callback(self._after_set_parameters)

        self._frames_group = MutuallyExclusiveCallbackGroup()
        self._requests_group = ReentrantCallbackGroup()
        self._timer_group = MutuallyExclusiveCallbackGroup()

        self._engine: EgoEngine | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._frames = FrameBuffer(self._settings.frame_history)
        self._stats = Stats()
        self._state = "unconfigured"
        self._problems: list[str] = []  # store and concepts_file problems found at configure
        self._memory_report: dict[str, float] = {}
        self._introducing: str | None = None
        self._intro_lock = threading.Lock()
        self._waiters: list[Future] = []
        self._waiters_lock = threading.Lock()
        self._warned_unknown: frozenset[str] = frozenset()
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._subscription = None
        self._recognitions_pub = None
        self._answers_pub = None
        self._debug_pub = None

        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._concepts_pub = self.create_publisher(ConceptList, "~/concepts", latched)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        group = self._requests_group
        self.create_service(IntroduceConcept, "~/introduce_concept", self._srv_introduce, callback_group=group)
        self.create_service(RemoveConcept, "~/remove_concept", self._srv_remove, callback_group=group)
        self.create_service(RenameConcept, "~/rename_concept", self._srv_rename, callback_group=group)
        self.create_service(ListConcepts, "~/list_concepts", self._srv_list, callback_group=group)
        self.create_service(Ask, "~/ask", self._srv_ask, callback_group=group)
        self.create_service(Caption, "~/caption", self._srv_caption, callback_group=group)
        self._action = ActionServer(
            self, IntroduceFromCamera, "~/introduce_from_camera", execute_callback=self._execute_introduce_from_camera,
            goal_callback=lambda _goal: GoalResponse.ACCEPT, cancel_callback=self._on_cancel, callback_group=group)
        self.create_timer(TICK_S, self._on_tick, callback_group=self._timer_group)

    # ===== parameters ===================================================================================
    def _declare_parameters(self) -> None:
        for spec in SPECS:
            descriptor = ParameterDescriptor(description=spec.description, read_only=spec.read_only,
                                             additional_constraints=spec.constraints)
            if spec.float_range is not None:
                descriptor.floating_point_range = [FloatingPointRange(from_value=float(spec.float_range[0]),
                                                                      to_value=float(spec.float_range[1]))]
            if spec.int_range is not None:
                descriptor.integer_range = [IntegerRange(from_value=spec.int_range[0], to_value=spec.int_range[1])]
            # rclpy infers the type of an empty list as a byte array: declare string arrays by type.
            default = Parameter.Type.STRING_ARRAY if spec.default == STRING_ARRAY else spec.default
            self.declare_parameter(spec.name, default, descriptor)

    def _parameter_values(self) -> dict[str, Any]:
        values = {}
        for spec in SPECS:
            try:
                values[spec.name] = self.get_parameter(spec.name).value
            except ParameterUninitializedException:
                values[spec.name] = None  # a typed array left unset: empty
        return values

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        for p in params:
            value = p.value
            if p.name in ("concepts", "standing_questions") and value is None:
                value = []
            try:
                validate(p.name, value)
            except ParameterValueError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _after_set_parameters(self, params: list[Parameter]) -> None:
        for p in params:
            if hasattr(self._settings, p.name):
                value = p.value
                if p.name in ("concepts", "standing_questions"):
                    value = [str(v) for v in (value or [])]
                setattr(self._settings, p.name, value)
        engine = self._engine
        if engine is not None:
            self._apply_engine_settings(engine)

    def _apply_engine_settings(self, engine: EgoEngine) -> None:
        s = self._settings
        engine.config.threshold = float(s.threshold)
        engine.config.max_context_concepts = int(s.max_context_concepts)
        engine.config.max_new_tokens = int(s.max_new_tokens)
        engine.config.introduce = self._introduce_options()

    def _introduce_options(self) -> IntroduceOptions:
        return IntroduceOptions(**self._settings.introduce_fields())

    # ===== lifecycle ====================================================================================
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        log = self.get_logger()
        try:
            self._settings = Settings.from_values(self._parameter_values())
            s = self._settings
            device = s.torch_device(torch.cuda.is_available())
            store_dir = s.store_directory()
            log.info(f"loading model {s.model!r} on {device} (dtype {s.dtype}); concept store {store_dir}")
            engine = EgoEngine.load(s.model, device=device, dtype=s.dtype, store_dir=store_dir,
                                    calibration=s.calibration_file or None, strict_store=False)
            self._apply_engine_settings(engine)
            problems = [f"concept {n!r} could not be loaded from the store: {why}"
                        for n, why in sorted(engine.store.problems.items())]
            for p in problems:
                log.error(p)
            if s.concepts_file:
                problems += self._introduce_concepts_file(engine, s.concepts_file)
        except Exception as exc:  # noqa: BLE001 - every failure must end the transition with a reason
            self._log_failure("configure", exc)
            return TransitionCallbackReturn.FAILURE
        self._problems = problems
        self._frames = FrameBuffer(s.frame_history)
        self._stats = Stats()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ego_model")
        self._engine = engine
        self._refresh_memory_report()
        outputs = QoSProfile(depth=10)
        overridable = QoSOverridingOptions.with_default_policies()
        self._recognitions_pub = self.create_lifecycle_publisher(
            Recognitions, "~/recognitions", outputs, qos_overriding_options=overridable)
        self._answers_pub = self.create_lifecycle_publisher(
            Answer, "~/answers", outputs, qos_overriding_options=overridable)
        self._debug_pub = self.create_lifecycle_publisher(Image, "~/debug/image", QoSProfile(depth=1))
        self._state = "inactive"
        self._publish_concepts()
        log.info(f"configured: {len(engine.store)} concepts ({', '.join(engine.store.names()) or 'none'}); "
                 f"model fingerprint {engine.backend.fingerprint()}")
        return TransitionCallbackReturn.SUCCESS

    def _introduce_concepts_file(self, engine: EgoEngine, path: str) -> list[str]:
        """Introduce the file's concepts that the store lacks; returns problems (bad concepts are skipped)."""
        log = self.get_logger()
        problems = []
        specs = load_concepts_file(path)  # an unreadable or malformed file fails the configure transition
        for spec in specs:
            if spec.name in engine.store:
                log.info(f"concepts_file: {spec.name!r} is already in the store; skipped")
                continue
            try:
                memory = engine.introduce(spec.name, [str(p) for p in spec.images], options=self._introduce_options(),
                                          notes=spec.notes)
            except EgoError as exc:
                problems.append(f"concepts_file {spec.source}: concept {spec.name!r} skipped: {exc}")
                log.error(problems[-1])
                continue
            log.info(f"concepts_file: introduced {spec.name!r} from {len(spec.images)} image(s), "
                     f"{memory.num_tokens} tokens, keywords {memory.unique_keywords()}")
        return problems

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            msg_type, topic = (CompressedImage, "image/compressed") if self._settings.image_transport == "compressed" \
                else (Image, "image")
            self._frames.clear()
            self._subscription = self.create_subscription(
                msg_type, topic, self._on_frame, QoSProfile(**_qos_fields(qos_profile_sensor_data)),
                callback_group=self._frames_group, qos_overriding_options=QoSOverridingOptions.with_default_policies())
            self._stop.clear()
            self._worker = threading.Thread(target=self._worker_loop, name="ego_stream", daemon=True)
            self._worker.start()
        except Exception as exc:  # noqa: BLE001
            self._log_failure("activate", exc)
            return TransitionCallbackReturn.FAILURE
        self._state = "active"
        self.get_logger().info(f"active: reading {self._subscription.topic_name} ({msg_type.__name__}), "
                               f"at most {self._settings.max_rate} Hz")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_streaming()
        self._state = "inactive"
        self.get_logger().info("inactive: camera unsubscribed, recognition stopped")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self._state = "unconfigured"
        self._publish_concepts()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.release()
        self._state = "finalized"
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f"error while in state {state.label!r}; releasing the model")
        self.release()
        self._state = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    def release(self) -> None:
        """Stop streaming and free the model (safe in any state, also after rclpy shut down)."""
        self._stop_streaming()
        self._release()

    def _stop_streaming(self) -> None:
        self._stop.set()
        self._frames.wake()
        worker, self._worker = self._worker, None
        if worker is not None and worker is not threading.current_thread():
            worker.join(WORKER_JOIN_S)
            if worker.is_alive():
                self.get_logger().warning(f"the stream worker did not stop within {WORKER_JOIN_S} s")
        if self._subscription is not None:
            self.destroy_subscription(self._subscription)
            self._subscription = None
        self._frames.clear()
        if self._state == "active":
            self._state = "inactive"
        self._wake_waiters()  # camera introductions notice the node is no longer active

    def _release(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            # Queued requests are answered "node cleaned up"; the step in progress finishes first.
            pool.shutdown(wait=True, cancel_futures=True)
        engine, self._engine = self._engine, None
        for name in ("_recognitions_pub", "_answers_pub", "_debug_pub"):
            pub = getattr(self, name)
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
                setattr(self, name, None)
        if engine is not None:
            cuda = engine.backend.device.type == "cuda"
            del engine
            gc.collect()
            if cuda:
                torch.cuda.empty_cache()
            if rclpy.ok(context=self.context):  # after SIGTERM the log can no longer reach /rosout
                self.get_logger().info("model released")
        self._memory_report = {}

    # ===== camera frames and the streaming worker =======================================================
    def _on_frame(self, msg: FrameMsg) -> None:
        self._frames.put(msg)
        self._wake_waiters()

    def _worker_loop(self) -> None:
        """Process the newest frame, at most max_rate times per second, until told to stop.

        The rate is paced on a monotonic clock: it bounds compute, it is not a statement about the
        camera's (possibly simulated) time, which only ever travels in the copied headers.
        """
        next_start = 0.0
        while not self._stop.is_set():
            wait = next_start - time.monotonic()
            if wait > 0:
                self._stop.wait(wait)
                continue
            msg = self._frames.take_newest(self._stop, timeout=0.5)
            if msg is None:
                continue
            next_start = time.monotonic() + 1.0 / max(1e-3, float(self._settings.max_rate))
            try:
                self._process_frame(msg)
            except _PoolClosedError:
                return
            except Exception as exc:  # noqa: BLE001 - the worker must survive any single bad frame
                self._stats.failed += 1
                self._stats.last_error = error_message(exc)
                if is_user_error(exc):
                    self.get_logger().warning(f"frame skipped: {error_message(exc)}", throttle_duration_sec=5.0)
                else:
                    self.get_logger().error(f"frame processing failed: {format_traceback(exc)}",
                                            throttle_duration_sec=5.0)

    def _process_frame(self, msg: FrameMsg) -> None:
        t0 = time.perf_counter()
        settings = self._settings
        try:
            rgb = frame_to_rgb(msg, settings.max_image_pixels)
        except ImageConversionError:
            self._stats.rejected += 1
            raise
        engine = self._engine
        pool = self._pool
        if engine is None or pool is None:
            raise _PoolClosedError()
        questions = list(settings.standing_questions)

        def job() -> tuple[list, float, list]:
            names = self._stream_concepts(engine)  # here, so no rename or removal can come in between
            threshold = engine.config.threshold
            recs = engine.recognize(rgb, names)
            answers = [(q, engine.ask(rgb, q, names, settings.max_new_tokens)) for q in questions]
            return recs, threshold, answers

        try:
            future = pool.submit(self._job, job)
        except RuntimeError as exc:  # the pool was shut down by cleanup
            raise _PoolClosedError() from exc
        recs, threshold, answers = future.result()
        header = msg.header
        if not rclpy.ok(context=self.context) or self._stop.is_set():
            return
        latency = time.perf_counter() - t0
        self._stats.processed += 1
        self._stats.last_latency_s = latency
        self._stats.latencies.append(latency)
        pub = self._recognitions_pub
        if pub is not None:
            pub.publish(recognitions_msg(header, recs, threshold, latency))
        if self._answers_pub is not None:
            for question, answer in answers:
                self._answers_pub.publish(answer_msg(header, question, answer))
        debug = self._debug_pub
        if debug is not None and debug.get_subscription_count() > 0:
            overlay = draw_recognitions(rgb, recs)
            debug.publish(Image(header=copy_header(header), **rgb_to_image_fields(overlay, "rgb8")))

    def _stream_concepts(self, engine: EgoEngine) -> list[str] | None:
        """The concepts parameter restricted to stored concepts (None: all); warns once per unknown set."""
        wanted = list(self._settings.concepts)
        if not wanted:
            return None
        known = [n for n in wanted if n in engine.store]
        unknown = frozenset(wanted) - frozenset(known)
        if unknown and unknown != self._warned_unknown:
            self.get_logger().warning(f"concepts parameter names unknown concepts {sorted(unknown)}; ignoring them")
        self._warned_unknown = unknown
        return known

    # ===== the model thread =============================================================================
    def _job(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one model call on the model thread; keeps the memory report for diagnostics current."""
        try:
            return fn(*args, **kwargs)
        finally:
            self._refresh_memory_report()

    def _refresh_memory_report(self) -> None:
        engine = self._engine
        if engine is not None:
            try:
                self._memory_report = engine.memory_report()
            except RuntimeError:
                pass  # a concurrent store change; the next job refreshes it

    def _new_future(self) -> Future:
        """An rclpy future whose completion from any thread wakes the executor.

        rclpy resumes a coroutine awaiting a future only when the executor wakes up; a done callback
        makes set_result schedule a task, which triggers the executor's guard condition.
        """
        future: Future = Future(executor=self.executor)
        future.add_done_callback(lambda _f: None)
        return future

    async def _on_model_thread(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Await `fn(*args, **kwargs)` run on the model thread, behind the calls queued before it."""
        pool = self._pool
        if pool is None:
            raise NodeStateError(self._not_configured())
        result = self._new_future()
        try:
            job = pool.submit(self._job, fn, *args, **kwargs)
        except RuntimeError as exc:
            raise NodeStateError("the node is cleaning up; the request was not run") from exc
        job.add_done_callback(partial(_settle, result))
        return await result

    # ===== helpers for requests =========================================================================
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

    def _publish_views(self, memory: ConceptMemory, references: list[tuple[np.ndarray, Header]]) -> None:
        """Debug: each reference view with the patches its memory kept (if someone watches)."""
        debug = self._debug_pub
        if debug is None or self._state != "active" or debug.get_subscription_count() == 0:
            return
        for i, (view, (rgb, header)) in enumerate(zip(memory.views, references)):
            title = f"{memory.name} view {i + 1}/{len(memory.views)}: {view.k_c} tokens"
            overlay = draw_memory_view(rgb, view.token_boxes(), view.image_size, title)
            debug.publish(Image(header=copy_header(header), **rgb_to_image_fields(overlay, "rgb8")))

    # ===== services =====================================================================================
    async def _srv_introduce(self, request: IntroduceConcept.Request,
                             response: IntroduceConcept.Response) -> IntroduceConcept.Response:
        try:
            engine = self._require_engine()
            name = validate_name(request.name)
            if name in engine.store and not request.replace:
                raise DuplicateConceptError(f"concept {name!r} already exists; set replace=true to overwrite it")
            references = self._introduce_references(request)
            with self._introduction(name):
                memory = await self._on_model_thread(
                    engine.introduce, name, [rgb for rgb, _ in references], options=self._introduce_options(),
                    notes=request.notes, replace_existing=request.replace)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a response
            return self._fail(response, exc, "introduce_concept")
        self.get_logger().info(f"introduced {memory.name!r}: {len(memory.views)} view(s), {memory.num_tokens} tokens, "
                               f"keywords {memory.unique_keywords()}")
        response.success = True
        response.concept = concept_description(memory)
        self._publish_concepts()
        self._publish_views(memory, references)
        return response

    def _introduce_references(self, request: IntroduceConcept.Request) -> list[tuple[np.ndarray, Header]]:
        max_pixels = self._settings.max_image_pixels
        count = len(request.images) + len(request.compressed_images)
        if count > MAX_VIEWS:
            raise InvalidImageError(f"{count} reference images; at most {MAX_VIEWS} are accepted")
        if count == 0:
            wanted = max(1, request.latest_frames)
            if wanted > min(MAX_VIEWS, self._settings.frame_history):
                raise InvalidImageError(f"latest_frames={wanted} exceeds the {self._settings.frame_history} frames "
                                        "the node keeps (frame_history parameter)")
            frames = self._latest_frames(wanted)
            return [(self._convert(frame_to_rgb, f, max_pixels, f"camera frame {i}"), f.header)
                    for i, f in enumerate(frames)]
        refs = [(self._convert(image_to_rgb, im, max_pixels, f"images[{i}]"), im.header)
                for i, im in enumerate(request.images)]
        for i, im in enumerate(request.compressed_images):
            try:
                rgb = compressed_to_rgb(im.format, im.data, max_pixels=max_pixels)
            except ImageConversionError as exc:
                raise InvalidImageError(f"compressed_images[{i}]: {exc}") from exc
            refs.append((rgb, im.header))
        return refs

    async def _srv_remove(self, request: RemoveConcept.Request,
                          response: RemoveConcept.Response) -> RemoveConcept.Response:
        try:
            engine = self._require_engine()
            engine.store.get(request.name)  # fail at once for an unknown name, without queueing
            await self._on_model_thread(engine.remove, request.name)
        except Exception as exc:  # noqa: BLE001
            return self._fail(response, exc, "remove_concept")
        self.get_logger().info(f"removed concept {request.name!r}")
        response.success = True
        self._publish_concepts()
        return response

    async def _srv_rename(self, request: RenameConcept.Request,
                          response: RenameConcept.Response) -> RenameConcept.Response:
        try:
            engine = self._require_engine()
            engine.store.get(request.old_name)
            new = validate_name(request.new_name)
            await self._on_model_thread(engine.rename, request.old_name, new)
            response.concept = concept_description(engine.store.get(new))
        except Exception as exc:  # noqa: BLE001
            return self._fail(response, exc, "rename_concept")
        self.get_logger().info(f"renamed concept {request.old_name!r} to {new!r}")
        response.success = True
        self._publish_concepts()
        return response

    def _srv_list(self, request: ListConcepts.Request, response: ListConcepts.Response) -> ListConcepts.Response:
        try:
            engine = self._require_engine()
        except NodeStateError as exc:
            return self._fail(response, exc, "list_concepts")
        response.concepts = [concept_description(m) for m in sorted(engine.concepts(), key=lambda m: m.name)]
        response.success = True
        response.message = "; ".join(self._problems)
        return response

    async def _srv_ask(self, request: Ask.Request, response: Ask.Response) -> Ask.Response:
        try:
            engine = self._require_engine()
            question = request.question.strip()
            if not question:
                raise ValueError("question is empty")
            names = self._check_concepts(engine, list(request.concepts))
            rgb, header = self._request_image(request.image)
            answer = await self._on_model_thread(engine.ask, rgb, question, names,
                                                 request.max_new_tokens or self._settings.max_new_tokens)
        except Exception as exc:  # noqa: BLE001
            return self._fail(response, exc, "ask")
        response.success = True
        response.answer = answer_msg(header, question, answer)
        return response

    async def _srv_caption(self, request: Caption.Request, response: Caption.Response) -> Caption.Response:
        try:
            engine = self._require_engine()
            names = self._check_concepts(engine, list(request.concepts))
            rgb, header = self._request_image(request.image)
            answer = await self._on_model_thread(engine.caption, rgb, names,
                                                 request.max_new_tokens or self._settings.max_new_tokens)
        except Exception as exc:  # noqa: BLE001
            return self._fail(response, exc, "caption")
        response.success = True
        response.answer = answer_msg(header, "", answer)
        return response

    # ===== the camera introduction action ===============================================================
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
                                       model=engine.backend.name, selection=options.selection, notes=goal.notes,
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
        self.get_logger().info(f"introduced {name!r} from {len(views)} camera frame(s): {memory.num_tokens} tokens, "
                               f"keywords {memory.unique_keywords()}")
        result.success = True
        result.concept = concept_description(memory)
        self._publish_concepts()
        self._publish_views(memory, references)
        return result

    # ===== diagnostics ==================================================================================
    def _on_tick(self) -> None:
        self._wake_waiters()
        if rclpy.ok(context=self.context):
            self._diagnostics_pub.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()),
                                                          status=[self._diagnostic_status()]))

    def _diagnostic_status(self) -> DiagnosticStatus:
        s, st, engine = self._settings, self._stats, self._engine
        latencies = list(st.latencies)
        values = {
            "state": self._state,
            "model": s.model,
            "device": str(engine.backend.device) if engine is not None else s.device,
            "concepts": len(engine.store) if engine is not None else 0,
            "processed_rate_hz": f"{st.rate():.2f}",
            "max_rate_hz": f"{s.max_rate:g}",
            "latency_ms": f"{st.last_latency_s * 1e3:.1f}",
            "mean_latency_ms": f"{(sum(latencies) / len(latencies) * 1e3) if latencies else math.nan:.1f}",
            "frames_received": self._frames.received,
            "frames_processed": st.processed,
            "frames_dropped": self._frames.dropped,
            "frames_rejected": st.rejected,
            "frames_failed": st.failed,
            "introducing": self._introducing or "",
            "store_problems": len(self._problems),
        }
        for key, mib in sorted(self._memory_report.items()):
            values[f"memory_{key}"] = f"{mib:.2f}"
        if self._problems:
            level, message = DiagnosticStatus.WARN, "; ".join(self._problems)
        elif st.last_error and self._state == "active":
            level, message = DiagnosticStatus.WARN, f"last frame error: {st.last_error}"
        else:
            level, message = DiagnosticStatus.OK, self._state
        return DiagnosticStatus(level=level, name=f"{self.get_fully_qualified_name()}: ego", message=message,
                                hardware_id=values["device"],
                                values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])


class _PoolClosedError(Exception):
    """The model thread was shut down (cleanup) while the worker wanted it."""


def _settle(target: Future, job: ConcurrentFuture) -> None:
    """Copy a model-thread job's outcome onto the rclpy future a coroutine awaits."""
    if job.cancelled():
        target.set_exception(NodeStateError("the request was dropped: the node was cleaned up before it ran"))
    elif job.exception() is not None:
        target.set_exception(job.exception())
    else:
        target.set_result(job.result())


def _introduce_view(engine: EgoEngine, rgb: np.ndarray, options: IntroduceOptions) -> tuple[MemoryView, float]:
    """One camera view's memory (keywords, area estimate, selected tokens), built on the model thread.

    Camera introductions build views one at a time, as frames arrive, so that feedback can report
    each view's keywords; the memory is stored only once all views exist (and never if cancelled).
    """
    return engine.build_view(rgb, options)


def _unique_keywords(views: list[MemoryView]) -> list[str]:
    return ConceptMemory(name="views", views=views, fingerprint="", model="").unique_keywords()


def _qos_fields(profile: QoSProfile) -> dict[str, Any]:
    """The fields of a profile, to build a copy: rclpy applies qos_overrides by mutating the profile
    it is given, which must not be the shared qos_profile_sensor_data."""
    return {"history": profile.history, "depth": profile.depth, "reliability": profile.reliability,
            "durability": profile.durability}


def main(args: list[str] | None = None) -> int:
    """Run the node until SIGINT/SIGTERM: `ego_node --ros-args -p model:=toy -p autostart:=true`."""
    rclpy.init(args=sys.argv if args is None else args)
    node = EgoNode()
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    try:
        if node.get_parameter("autostart").value:
            if node.trigger_configure() == TransitionCallbackReturn.SUCCESS:
                node.trigger_activate()
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RCLError:
        # SIGTERM shuts the context down from the signal handler; if that lands while the executor builds
        # its wait set, rcl reports an invalid context instead of rclpy raising ExternalShutdownException.
        if rclpy.ok():
            raise
    finally:
        node.release()
        executor.shutdown(timeout_sec=5.0)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
