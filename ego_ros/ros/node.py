"""The Ego lifecycle node: teach a robot personal concepts from a few frames, then find them in its camera.

Interface (names relative to the node; remap `image` to the camera):

  Subscribes   image (sensor_msgs/Image) or image/compressed (sensor_msgs/CompressedImage), by the
               image_transport parameter; sensor-data QoS, overridable through qos_overrides.
  Publishes    ~/recognitions (ego_msgs/Recognitions, with the located concepts' boxes and points),
               ~/answers (ego_msgs/Answer, standing questions),
               ~/concepts (ego_msgs/ConceptList, transient local, on every change),
               ~/positions (ego_msgs/ConceptPositions: the located concepts' 3-D points, with use_depth),
               ~/debug/image (sensor_msgs/Image, only while subscribed), /diagnostics.
  With use_depth also subscribes depth (sensor_msgs/Image, registered to the colour camera) and
               camera_info (sensor_msgs/CameraInfo), sensor-data QoS (positions.py).
  Services     ~/introduce_concept, ~/remove_concept, ~/rename_concept, ~/list_concepts, ~/ask, ~/caption,
               ~/locate (where is NAME: box and point in the image, 3-D point with depth, whether it was found)
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
  * Requests over the engine's bounds (ego_ros.core.limits) are refused before they queue.
  * Stopping never waits for a model call to finish: deactivate, cleanup, shutdown, SIGINT and SIGTERM
    interrupt the call in progress (EgoEngine.interrupt), which ends at its next forward pass or decode
    step and is answered "interrupted"; every call also has a deadline (request_timeout).
  * The node is the concept store's one writer (a lock on memory_dir): a second node or CLI writer on
    the same directory fails to configure, naming the holder.

Code layout: this module holds the lifecycle, the parameters and the streaming worker; the services
are in services.py, the camera introduction action in introduce_action.py, the model thread in
model_thread.py, diagnostics in diagnostics.py, the 3-D part (depth matching, ~/positions) in
positions.py and what the request handlers share in
request_helpers.py (each a mixin of EgoNode).
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
import warnings
from concurrent.futures import CancelledError, ThreadPoolExecutor
from typing import Any

import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy._rclpy_pybind11 import RCLError
from rclpy.action import ActionServer, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.exceptions import ParameterException, ParameterUninitializedException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.qos_overriding_options import QoSOverridingOptions
from rclpy.task import Future
from sensor_msgs.msg import CompressedImage, Image

from ego_msgs.action import IntroduceFromCamera
from ego_msgs.msg import Answer, ConceptList, ConceptPositions, Recognitions
from ego_msgs.srv import Ask, Caption, IntroduceConcept, ListConcepts, Locate, RemoveConcept, RenameConcept

from ..core.engine import EgoEngine
from ..core.errors import EgoError, RequestCancelledError
from ..core.introduce import IntroduceOptions
from .concepts_file import load_concepts_file
from .conversions import (
    answer_msg,
    copy_header,
    error_message,
    format_traceback,
    frame_to_rgb,
    is_user_error,
    recognitions_msg,
)
from .diagnostics import DiagnosticsMixin, RateWindow
from .frames import FrameBuffer, FrameMsg, Stats
from .image_conversion import ImageConversionError, rgb_to_image_fields
from .introduce_action import IntroduceActionMixin
from .model_thread import ModelThreadMixin, PoolClosedError
from .overlay import draw_recognitions
from .params import SPECS, STRING_ARRAY, ParameterValueError, Settings, validate
from .positions import PositionsMixin
from .request_helpers import RequestHelpersMixin
from .services import ServicesMixin

NODE_NAME = "ego_node"
#: How often diagnostics are published; also the longest a waiting camera introduction goes without
#: re-checking for cancellation when no frame arrives.
TICK_S = 1.0
#: Longest wait for the streaming worker to stop. Stopping interrupts the running model call, which
#: ends at its next forward pass or decode step, so this is only reached if one step hangs.
WORKER_JOIN_S = 10.0


class EgoNode(ServicesMixin, IntroduceActionMixin, DiagnosticsMixin, ModelThreadMixin, RequestHelpersMixin,
              PositionsMixin, LifecycleNode):
    """Lifecycle node around an EgoEngine. See the module docstring for the interface and threads."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        # A bad start-up value raises here (rclpy's range check, or ParameterValueError): main() reports it
        # in one line and exits, since read-only parameters cannot be fixed while the node runs.
        self._declare_parameters()
        self._settings = Settings.from_values(self._parameter_values())
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.add_post_set_parameters_callback(self._after_set_parameters)

        self._frames_group = MutuallyExclusiveCallbackGroup()
        self._requests_group = ReentrantCallbackGroup()
        self._timer_group = MutuallyExclusiveCallbackGroup()
        self._depth_group = MutuallyExclusiveCallbackGroup()

        self._engine: EgoEngine | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._frames = FrameBuffer(self._settings.frame_history)
        self._stats = Stats()
        self._state = "unconfigured"
        self._problems: list[str] = []  # concepts_file problems found at configure
        self._configure_error = ""  # why the last configure failed (diagnostics report ERROR while unconfigured)
        self._rates = RateWindow()
        self._active_since = time.monotonic()
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
        self._init_positions()

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
        self.create_service(Locate, "~/locate", self._srv_locate, callback_group=group)
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
        self._apply_depth_settings({p.name for p in params})

    def _apply_engine_settings(self, engine: EgoEngine) -> None:
        s = self._settings
        engine.config.threshold = float(s.threshold)
        engine.config.max_context_concepts = int(s.max_context_concepts)
        engine.config.max_new_tokens = int(s.max_new_tokens)
        engine.config.request_timeout_s = float(s.request_timeout)
        engine.config.introduce = self._introduce_options()

    def _introduce_options(self) -> IntroduceOptions:
        return IntroduceOptions(**self._settings.introduce_fields())

    # ===== lifecycle ====================================================================================
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        log = self.get_logger()
        engine = None
        try:
            self._settings = Settings.from_values(self._parameter_values())
            s = self._settings
            device = s.torch_device(torch.cuda.is_available())
            store_dir = s.store_directory()
            log.info(f"loading model {s.model!r} on {device} (dtype {s.dtype}); concept store {store_dir}")
            # The store is opened as its one writer: another live node or CLI on memory_dir makes this fail
            # with StoreLockedError (naming the holder), an unwritable memory_dir with StoreNotWritableError.
            engine = EgoEngine.load(s.model, device=device, dtype=s.dtype, store_dir=store_dir,
                                    calibration=s.calibration_file or None, strict_store=False,
                                    request_timeout_s=float(s.request_timeout),
                                    max_tiles=int(s.max_tiles) or None)
            log.info(engine.layer_choice.message())
            self._apply_engine_settings(engine)
            for name, why in sorted(engine.store.unavailable().items()):
                log.error(f"concept {name!r} is unavailable (kept in the store, not recognised): {why}")
            problems = self._introduce_concepts_file(engine, s.concepts_file) if s.concepts_file else []
        except Exception as exc:  # noqa: BLE001 - every failure must end the transition with a reason
            if engine is not None:
                engine.close()  # releases the store's lock: a later configure must be able to take it
            self._configure_error = error_message(exc)
            self._log_failure("configure", exc)
            return TransitionCallbackReturn.FAILURE
        self._configure_error = ""
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
        self._positions_pub = self.create_lifecycle_publisher(
            ConceptPositions, "~/positions", outputs, qos_overriding_options=overridable)
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
            self._active_since = time.monotonic()
            self._rates.reset()
            self._subscription = self.create_subscription(
                msg_type, topic, self._on_frame, QoSProfile(**_qos_fields(qos_profile_sensor_data)),
                callback_group=self._frames_group, qos_overriding_options=QoSOverridingOptions.with_default_policies())
            self._start_depth()
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
        engine = self._engine
        if worker is not None and engine is not None:
            # The model call in progress (a frame, or a request the worker's frame waits behind) ends at
            # its next step with RequestCancelledError instead of running to its end (issue: a 4096-token
            # generation blocked deactivate for minutes).
            engine.interrupt()
        if worker is not None and worker is not threading.current_thread():
            worker.join(WORKER_JOIN_S)
            if worker.is_alive():
                self.get_logger().warning(f"the stream worker did not stop within {WORKER_JOIN_S} s")
        if self._subscription is not None:
            self.destroy_subscription(self._subscription)
            self._subscription = None
        self._stop_depth()
        self._frames.clear()
        if self._state == "active":
            self._state = "inactive"
        self._wake_waiters()  # camera introductions notice the node is no longer active

    def _release(self) -> None:
        pool, self._pool = self._pool, None
        engine = self._engine
        if pool is not None:
            # Queued requests are answered "node cleaned up" (cancelled before they start); then the call
            # in progress is interrupted, and ends at its next forward pass or decode step.
            pool.shutdown(wait=False, cancel_futures=True)
            if engine is not None:
                engine.interrupt()
            pool.shutdown(wait=True)
        self._engine = None
        if engine is not None:
            engine.close()  # releases memory_dir's writer lock for the next configure or process
        for name in ("_recognitions_pub", "_answers_pub", "_debug_pub", "_positions_pub"):
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
            except (PoolClosedError, CancelledError):
                return
            except RequestCancelledError:
                if self._stop.is_set():
                    return  # deactivate or shutdown interrupted this frame: not a failure
                continue  # interrupted by a cleanup racing with this frame; nothing to report
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
            raise PoolClosedError()
        questions = list(settings.standing_questions)

        def job() -> tuple[list, float, list]:
            if self._stop.is_set():
                raise PoolClosedError()  # deactivated while this frame waited behind another model call
            names = self._stream_concepts(engine)  # here, so no rename or removal can come in between
            threshold = engine.config.threshold
            recs = engine.recognize(rgb, names, locate=None if settings.locate == "off" else settings.locate)
            answers = [(q, engine.ask(rgb, q, names, settings.max_new_tokens)) for q in questions]
            return recs, threshold, answers

        header = msg.header
        claim = self._claim_depth(header)  # depth frames arriving while the model runs still match
        try:
            try:
                future = pool.submit(self._job, job)
            except RuntimeError as exc:  # the pool was shut down by cleanup
                raise PoolClosedError() from exc
            recs, threshold, answers = future.result()
        finally:
            colour_size = (rgb.shape[1], rgb.shape[0])
            depth = self._settle_depth(claim, colour_size)
        if not rclpy.ok(context=self.context) or self._stop.is_set():
            return
        positions = self._frame_positions(depth, [r.location for r in recs if r.considered and r.location],
                                          colour_size)
        latency = time.perf_counter() - t0
        self._stats.processed += 1
        self._stats.last_latency_s = latency
        self._stats.latencies.append(latency)
        pub = self._recognitions_pub
        if pub is not None:
            pub.publish(recognitions_msg(header, recs, threshold, latency, positions))
        self._publish_positions(header, positions)
        if self._answers_pub is not None:
            for question, answer in answers:
                self._answers_pub.publish(answer_msg(header, question, answer))
        debug = self._debug_pub
        if debug is not None and debug.get_subscription_count() > 0:
            overlay = draw_recognitions(rgb, recs, positions)
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


def _qos_fields(profile: QoSProfile) -> dict[str, Any]:
    """The fields of a profile, to build a copy: rclpy applies qos_overrides by mutating the profile
    it is given, which must not be the shared qos_profile_sensor_data."""
    return {"history": profile.history, "depth": profile.depth, "reliability": profile.reliability,
            "durability": profile.durability}


def main(args: list[str] | None = None, fast_exit: bool = True) -> int:
    """Run the node until SIGINT/SIGTERM: `ego_node --ros-args -p model:=toy -p autostart:=true`.

    Exit status 0 after a signal, 2 for an invalid start-up parameter (one line on stderr, no traceback).
    With `fast_exit` (the executable) the process ends right after the orderly shutdown instead of
    returning: see `_exit_now`.
    """
    rclpy.init(args=sys.argv if args is None else args)
    try:
        node = EgoNode()
    except (ParameterException, ParameterValueError) as exc:
        print(f"{NODE_NAME}: invalid start-up parameter: {exc}", file=sys.stderr, flush=True)
        rclpy.try_shutdown()
        return 2
    _log_library_warnings_at_debug(node)
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
        node.release()  # interrupts the model call in progress: the process ends within one model step
        executor.shutdown(timeout_sec=5.0)
        node.destroy_node()
        rclpy.try_shutdown()
    if fast_exit:
        # Fast DDS unlinks the participant's /dev/shm segments (32 MiB with the large-image profile) when the
        # context's last handle goes, and the node and executor hold theirs in reference cycles that only the
        # collector frees: without this every stop leaked them (22 GB of RAM on the build machine).
        del node, executor
        gc.collect()
        _exit_now(0)
    return 0


def _exit_now(code: int) -> None:
    """End the process now that the node is shut down in order (model call interrupted, model released,
    store closed and unlocked, rclpy and its logging shut down).

    Python's own finalization would tear down torch, transformers and Fast DDS module by module, which
    took another 1-2.5 s on the 2-core machine and does nothing the node needs; a robot's launch system
    waits for that after SIGTERM. Only the standard streams still need flushing.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _log_library_warnings_at_debug(node: EgoNode) -> None:
    """Send Python warnings (transformers' and torch's FutureWarnings and the like) to the node's log at
    debug level instead of stderr: they are for developers, not for the robot's operator."""
    logger = node.get_logger()

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001 - warnings' API
        logger.debug(f"{category.__name__}: {message} ({filename}:{lineno})")

    warnings.showwarning = show


if __name__ == "__main__":
    sys.exit(main())
