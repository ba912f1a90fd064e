"""ROS mode: the MCP tools as a client of a running `ego_node`.

An rclpy node of its own (own context, executor in a background thread) calls the node's services
(`~/list_concepts`, `~/introduce_concept`, ...) and its `~/introduce_from_camera` action (feedback
becomes MCP progress), keeps the latest message of `~/recognitions`, and, only once `latest_frame` is
first asked for, subscribes to the camera topic. Every wait is bounded: a node that is down gives
"node ... not available" within the connect timeout, a node that does not answer a timeout error.
The node's own failure messages (unknown concept, busy, no camera frame yet, not configured) are
passed to the agent unchanged.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

import numpy as np
import rclpy
from lifecycle_msgs.srv import GetState
from PIL import Image
from rclpy.action import ActionClient
from rclpy.context import Context
from rclpy.executors import MultiThreadedExecutor
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CompressedImage
from sensor_msgs.msg import Image as ImageMsg

from ego_msgs.action import IntroduceFromCamera
from ego_msgs.msg import Recognitions
from ego_msgs.srv import Ask, Caption, IntroduceConcept, ListConcepts, Locate, RemoveConcept, RenameConcept

from ..ros.child_processes import find_profile
from ..ros.image_conversion import ImageConversionError, compressed_to_rgb, image_fields_to_rgb, rgb_to_compressed
from ..ros.image_conversion import rgb_to_image_fields as rgb_fields
from .backend import (
    DEFAULT_TIMEOUT_S,
    Backend,
    ProgressFn,
    ProgressRelay,
    concept_summary,
    location_result,
    recognitions_result,
)
from .errors import AgentError

#: Recognitions older than this (seconds since they arrived) are reported with a warning.
STALE_AFTER_S = 5.0


def _stamp(header) -> dict[str, Any]:
    return {"stamp": round(header.stamp.sec + header.stamp.nanosec * 1e-9, 6), "frame_id": header.frame_id}


def _concept(desc) -> dict[str, Any]:
    return concept_summary(desc.name, list(desc.keywords), desc.views, desc.tokens, list(desc.area_percent),
                           desc.notes)


def _fully_qualified(node: str) -> str:
    name = node.strip()
    if not name or name.endswith("/"):
        raise AgentError(f"--node {node!r}: give the node's full name, e.g. /robot/ego_node")
    return name if name.startswith("/") else "/" + name


class RosBackend(Backend):
    mode = "ros"
    recognizes_given_images = False  # the node recognises its camera stream; ask/caption take images

    def __init__(self, node: str, image_topic: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                 connect_timeout_s: float = 5.0, allow_paths: bool = True) -> None:
        super().__init__(timeout_s, allow_paths)
        self.node_name = _fully_qualified(node)
        namespace = self.node_name.rsplit("/", 1)[0]
        self.image_topic = image_topic or f"{namespace}/image"
        if not connect_timeout_s > 0:
            raise ValueError(f"the connect timeout must be a positive number of seconds, got {connect_timeout_s}")
        self.connect_timeout_s = connect_timeout_s
        if "FASTDDS_DEFAULT_PROFILES_FILE" not in os.environ and (profile := find_profile()) is not None:
            # Raw camera frames over best-effort QoS are dropped without the large shared-memory segment
            # (config/fastdds_large_images.xml); Fast DDS reads the variable when the context starts.
            os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)
        self._context = Context()
        rclpy.init(context=self._context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node(f"ego_mcp_{os.getpid()}", context=self._context)
        n = self.node_name
        self._clients = {
            "list": self.node.create_client(ListConcepts, f"{n}/list_concepts"),
            "introduce": self.node.create_client(IntroduceConcept, f"{n}/introduce_concept"),
            "remove": self.node.create_client(RemoveConcept, f"{n}/remove_concept"),
            "rename": self.node.create_client(RenameConcept, f"{n}/rename_concept"),
            "ask": self.node.create_client(Ask, f"{n}/ask"),
            "caption": self.node.create_client(Caption, f"{n}/caption"),
            "locate": self.node.create_client(Locate, f"{n}/locate"),
            "state": self.node.create_client(GetState, f"{n}/get_state"),
        }
        self._action = ActionClient(self.node, IntroduceFromCamera, f"{n}/introduce_from_camera")
        self._lock = threading.Lock()
        self._recognitions: tuple[Recognitions, float] | None = None  # (message, monotonic arrival)
        self._frame: tuple[Any, float] | None = None
        self._frame_sub = None
        self.node.create_subscription(Recognitions, f"{n}/recognitions", self._on_recognitions, QoSProfile(depth=1))
        self._executor = MultiThreadedExecutor(num_threads=2, context=self._context)
        self._executor.add_node(self.node)
        self._spinner = threading.Thread(target=self._spin, name="ego_mcp_ros", daemon=True)
        self._spinner.start()

    def describe(self) -> str:
        return (f"ROS mode: ego_node {self.node_name} (camera {self.image_topic}); ask and caption use the "
                "latest camera frame unless given an image")

    def _spin(self) -> None:
        try:
            self._executor.spin()
        except Exception:  # noqa: BLE001 - the context was shut down under the executor at close
            pass

    async def close(self) -> None:
        self._executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        if self._context.ok():
            self._context.shutdown()
        self._spinner.join(timeout=2.0)

    # ----- callbacks (executor threads) ---------------------------------------------------------------
    def _on_recognitions(self, msg: Recognitions) -> None:
        with self._lock:
            self._recognitions = (msg, time.monotonic())

    def _on_frame(self, msg) -> None:
        with self._lock:
            self._frame = (msg, time.monotonic())

    # ----- plumbing -----------------------------------------------------------------------------------
    def _unavailable(self) -> str:
        domain = os.environ.get("ROS_DOMAIN_ID", "0")
        return (f"node {self.node_name} not available: its services did not appear within "
                f"{self.connect_timeout_s:g} s (is ego_node running under that name, on ROS_DOMAIN_ID {domain}?)")

    @staticmethod
    async def _await(future, timeout: float) -> Any:
        """Await an rclpy future (completed on an executor thread) on this event loop, with a timeout."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future = loop.create_future()

        def transfer(f) -> None:
            if done.done():
                return
            exc = f.exception()
            if exc is not None:
                done.set_exception(exc)
            else:
                done.set_result(f.result())

        future.add_done_callback(lambda f: loop.call_soon_threadsafe(transfer, f))
        return await asyncio.wait_for(done, timeout)

    async def _ensure_service(self, key: str) -> Any:
        client = self._clients[key]
        if not client.service_is_ready():
            ready = await asyncio.to_thread(client.wait_for_service, timeout_sec=self.connect_timeout_s)
            if not ready:
                raise AgentError(self._unavailable())
        return client

    async def _call(self, key: str, request: Any, what: str) -> Any:
        """Call one of the node's services; AgentError on no node, no answer, or `success` false."""
        client = await self._ensure_service(key)
        future = client.call_async(request)
        try:
            response = await self._await(future, self.timeout_s)
        except asyncio.TimeoutError:
            client.remove_pending_request(future)
            raise AgentError(f"{what}: node {self.node_name} did not answer within {self.timeout_s:g} s") from None
        if hasattr(response, "success") and not response.success:
            raise AgentError(response.message or f"{what} failed (the node gave no reason)")
        return response

    async def _state(self) -> str:
        """The node's lifecycle state label ('active', 'inactive', 'unconfigured', ...)."""
        response = await self._call("state", GetState.Request(), "get_state")
        return response.current_state.label

    def _camera_hint(self) -> str:
        count = self.node.count_publishers(self.image_topic)
        return (f"nothing publishes on {self.image_topic}" if count == 0
                else f"{count} publisher(s) on {self.image_topic}")

    # ----- concepts -----------------------------------------------------------------------------------
    async def list_concepts(self) -> dict[str, Any]:
        response = await self._call("list", ListConcepts.Request(), "list_concepts")
        out: dict[str, Any] = {"concepts": [_concept(c) for c in response.concepts]}
        if response.message:
            out["problems"] = response.message
        return out

    async def introduce(self, name: str, images: list[Image.Image], frames: int, min_interval_s: float,
                        notes: str, replace: bool, progress: ProgressFn) -> dict[str, Any]:
        if not images:
            return await self._introduce_from_camera(name, frames, min_interval_s, notes, replace, progress)
        compressed = [CompressedImage(**rgb_to_compressed(np.asarray(im.convert("RGB")), "png")) for im in images]
        request = IntroduceConcept.Request(name=name, compressed_images=compressed, notes=notes, replace=replace)
        await progress(0, 1, f"introducing {name!r} from {len(images)} given image(s)")
        t0 = time.perf_counter()
        response = await self._call("introduce", request, f"introducing {name!r}")
        await progress(1, 1, f"introduced {name!r}")
        return {"introduced": _concept(response.concept), "source": f"{len(images)} given image(s)",
                "seconds": round(time.perf_counter() - t0, 3)}

    async def _introduce_from_camera(self, name: str, frames: int, min_interval_s: float, notes: str,
                                     replace: bool, progress: ProgressFn) -> dict[str, Any]:
        if not self._action.server_is_ready():
            ready = await asyncio.to_thread(self._action.wait_for_server, timeout_sec=self.connect_timeout_s)
            if not ready:
                raise AgentError(self._unavailable())
        relay = ProgressRelay(progress, asyncio.get_running_loop())

        def on_feedback(msg) -> None:  # executor thread
            fb = msg.feedback
            text = f"{fb.frames_captured}/{frames} camera frames; keywords {', '.join(fb.current_keywords) or '-'}"
            relay.post(fb.frames_captured, frames, text)

        goal = IntroduceFromCamera.Goal(name=name, num_frames=frames, min_interval_s=float(min_interval_s),
                                        notes=notes, replace=replace)
        t0 = time.perf_counter()
        relay.post(0, frames, f"collecting {frames} camera frame(s) for {name!r}")
        try:
            handle = await self._await(self._action.send_goal_async(goal, feedback_callback=on_feedback),
                                       self.connect_timeout_s + 5.0)
        except asyncio.TimeoutError:
            raise AgentError(f"introducing {name!r}: node {self.node_name} did not accept the goal in time") from None
        if not handle.accepted:
            raise AgentError(f"introducing {name!r}: node {self.node_name} refused the goal")
        budget = self.timeout_s + frames * min_interval_s
        try:
            answer = await self._await(handle.get_result_async(), budget)
        except (asyncio.TimeoutError, asyncio.CancelledError) as exc:
            handle.cancel_goal_async()  # nothing is stored for a cancelled goal
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise AgentError(f"introducing {name!r} from the camera did not finish within {budget:g} s "
                             f"({self._camera_hint()}); the goal was cancelled and nothing was stored") from None
        result = answer.result
        if result.success:  # feedback and result travel apart: the last frame's report may be still on its way
            relay.post(frames, frames, f"introduced {name!r} from {frames} camera frame(s)")
        await relay.flush()
        if not result.success:
            raise AgentError(result.message or f"introducing {name!r} failed (the node gave no reason)")
        return {"introduced": _concept(result.concept), "source": f"{frames} camera frame(s)",
                "seconds": round(time.perf_counter() - t0, 3)}

    async def forget(self, name: str) -> dict[str, Any]:
        await self._call("remove", RemoveConcept.Request(name=name), f"forgetting {name!r}")
        return {"forgotten": name}

    async def rename(self, old_name: str, new_name: str) -> dict[str, Any]:
        response = await self._call("rename", RenameConcept.Request(old_name=old_name, new_name=new_name),
                                    f"renaming {old_name!r}")
        return {"renamed": {"from": old_name, "to": response.concept.name}, "concept": _concept(response.concept)}

    # ----- queries ------------------------------------------------------------------------------------
    async def _latest_recognitions(self) -> tuple[Recognitions, float]:
        with self._lock:
            latest = self._recognitions
        if latest is None:  # just started, or the node is silent: wait a little for one
            end = time.monotonic() + min(self.connect_timeout_s, self.timeout_s)
            while latest is None and time.monotonic() < end:
                await asyncio.sleep(0.05)
                with self._lock:
                    latest = self._recognitions
        if latest is None:
            state = await self._state()  # "not available" when the node is down
            if state != "active":
                raise AgentError(f"node {self.node_name} is {state}: it recognises nothing until it is activated "
                                 "(lifecycle transition activate)")
            raise AgentError(f"no recognitions from {self.node_name} yet: no camera frame has been processed "
                             f"({self._camera_hint()})")
        return latest

    async def what_do_you_see(self, image: Image.Image | None, concepts: list[str]) -> dict[str, Any]:
        if image is not None:
            raise AgentError("in ROS mode what_do_you_see reports the node's camera stream; "
                             "use ask about a given image")
        msg, arrived = await self._latest_recognitions()
        names, probs, present = list(msg.names), [float(p) for p in msg.probabilities], list(msg.present)
        if concepts:
            unknown = [c for c in concepts if c not in names]
            if unknown:
                known = [c["name"] for c in (await self.list_concepts())["concepts"]]
                missing = [c for c in unknown if c not in known]
                if missing:
                    raise AgentError(f"unknown concept(s) {', '.join(map(repr, missing))} "
                                     f"(known: {', '.join(known) or 'none'})")
            keep = [i for i, n in enumerate(names) if n in concepts]
            names, probs, present = [names[i] for i in keep], [probs[i] for i in keep], [present[i] for i in keep]
        out = recognitions_result(names, probs, present, msg.threshold)
        age = time.monotonic() - arrived
        out["frame"] = {**_stamp(msg.header), "age_s": round(age, 3), "latency_s": round(float(msg.latency_s), 4)}
        if concepts:
            out["not_scored"] = [c for c in concepts if c not in names]
        if age > STALE_AFTER_S:
            state = await self._state()
            if state != "active":
                raise AgentError(f"node {self.node_name} is {state}: its last recognitions are {age:.0f} s old")
            out["warning"] = (f"these recognitions are {age:.0f} s old: the camera may have stopped "
                              f"({self._camera_hint()})")
        if not msg.names:
            out["note"] = "the node scored no concepts: none taught yet (introduce_concept), or all filtered out"
        return out

    @staticmethod
    def _image_msg(image: Image.Image | None) -> ImageMsg:
        return ImageMsg() if image is None else ImageMsg(**rgb_fields(np.asarray(image.convert("RGB")), "rgb8"))

    async def locate(self, name: str, image: Image.Image | None) -> dict[str, Any]:
        if not name.strip():
            raise AgentError("concept name is empty")
        response = await self._call("locate", Locate.Request(name=name, image=self._image_msg(image)), "locate")
        loc = response.location
        # The node's answer does not carry the camera frame's size: only a given image's is known here.
        out = location_result(loc.name or name, response.found, response.probability,
                              (loc.x_min, loc.y_min, loc.x_max, loc.y_max), (loc.x, loc.y), loc.score,
                              image.size if image is not None else None)
        out["frame"] = {**_stamp(response.header), "source": "given image" if image is not None else "camera"}
        return out

    async def ask(self, question: str, image: Image.Image | None, concepts: list[str],
                  max_new_tokens: int) -> dict[str, Any]:
        request = Ask.Request(question=question, image=self._image_msg(image), concepts=list(concepts),
                              max_new_tokens=max_new_tokens)
        answer = (await self._call("ask", request, "ask")).answer
        return {"question": answer.question, "answer": answer.answer, "concepts": list(answer.concepts),
                "seconds": round(float(answer.latency_s), 3),
                "frame": {**_stamp(answer.header), "source": "given image" if image is not None else "camera"}}

    async def caption(self, image: Image.Image | None, concepts: list[str], max_new_tokens: int) -> dict[str, Any]:
        request = Caption.Request(image=self._image_msg(image), concepts=list(concepts), max_new_tokens=max_new_tokens)
        answer = (await self._call("caption", request, "caption")).answer
        return {"caption": answer.answer, "concepts": list(answer.concepts),
                "seconds": round(float(answer.latency_s), 3),
                "frame": {**_stamp(answer.header), "source": "given image" if image is not None else "camera"}}

    async def latest_frame(self) -> tuple[Image.Image, dict[str, Any]]:
        if self._frame_sub is None:  # subscribe on first use: decoding every camera frame costs CPU
            compressed = self.image_topic.endswith("/compressed")
            self._frame_sub = self.node.create_subscription(CompressedImage if compressed else ImageMsg,
                                                            self.image_topic, self._on_frame, qos_profile_sensor_data)
        end = time.monotonic() + self.connect_timeout_s
        with self._lock:
            latest = self._frame
        while latest is None and time.monotonic() < end:
            await asyncio.sleep(0.05)
            with self._lock:
                latest = self._frame
        if latest is None:
            raise AgentError(f"no camera frame on {self.image_topic} within {self.connect_timeout_s:g} s "
                             f"({self._camera_hint()}); pass --image-topic if the camera publishes elsewhere")
        msg, arrived = latest
        try:
            if isinstance(msg, CompressedImage):
                rgb = compressed_to_rgb(msg.format, msg.data)
            else:
                rgb = image_fields_to_rgb(msg.encoding, msg.height, msg.width, msg.step, msg.data, msg.is_bigendian)
        except ImageConversionError as exc:
            raise AgentError(f"camera frame on {self.image_topic}: {exc}") from None
        picture = Image.fromarray(rgb)
        return picture, {"topic": self.image_topic, **_stamp(msg.header), "width": picture.width,
                         "height": picture.height, "age_s": round(time.monotonic() - arrived, 3)}
