"""Engine mode: the Ego engine in this process, for a desktop without ROS.

Images come with the calls (files or base64). There is no camera: the "latest frame" is the most
recent image a tool was given, so an agent can show a picture once and then ask several things
about it. Model calls run one at a time on a single worker thread, each bounded by the timeout.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from PIL import Image

from ..core.engine import EgoEngine
from ..core.errors import EgoError
from ..core.memory import ConceptMemory, validate_name
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

log = logging.getLogger(__name__)

#: Images kept as "recent frames" (for `latest_frame` and for introducing from recent frames).
FRAME_HISTORY = 8


def memory_summary(memory: ConceptMemory) -> dict[str, Any]:
    return concept_summary(memory.name, memory.unique_keywords(), len(memory.views), memory.num_tokens,
                           list(memory.alpha), memory.notes)


class EngineBackend(Backend):
    mode = "engine"
    recognizes_given_images = True

    def __init__(self, engine: EgoEngine, timeout_s: float = DEFAULT_TIMEOUT_S, allow_paths: bool = True) -> None:
        super().__init__(timeout_s, allow_paths)
        self.engine = engine
        # One worker: the model runs one call at a time, in arrival order, never on the event loop.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ego_mcp_model")
        self._frames: deque[Image.Image] = deque(maxlen=FRAME_HISTORY)

    def describe(self) -> str:
        # The layer choice says whether recognition runs on calibrated, default or all layers: an agent
        # (or its user) reading the instructions learns how far to trust the scores.
        return (f"engine mode: model {self.engine.backend.name}, store {self.engine.store.directory or '(in memory)'}; "
                f"{self.engine.layer_choice.message()}; "
                "no camera: give images as file paths or base64, and the last image given is the latest frame")

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _run(self, what: str, fn, *args: Any, **kwargs: Any) -> Any:
        """`fn(*args, **kwargs)` on the model thread, bounded by the timeout; engine errors become AgentError."""
        try:
            job = self._pool.submit(fn, *args, **kwargs)
        except RuntimeError as exc:
            raise AgentError("the server is shutting down") from exc
        try:
            return await asyncio.wait_for(asyncio.wrap_future(job), self.timeout_s)
        except asyncio.TimeoutError:
            # wait_for cancels a job still queued; one already running is interrupted at its next model step
            # (jobs queued behind it have not entered the engine yet, so the interrupt spares them).
            self.engine.interrupt()
            raise AgentError(f"{what} timed out after {self.timeout_s:g} s and was interrupted; "
                             "nothing was changed") from None
        except (EgoError, ValueError, KeyError) as exc:
            raise AgentError(str(exc)) from None

    def _remember(self, images: list[Image.Image]) -> None:
        self._frames.extend(images)

    def _query_image(self, image: Image.Image | None) -> Image.Image:
        if image is not None:
            self._remember([image])
            return image
        if not self._frames:
            raise AgentError("no frame yet: engine mode has no camera; pass image_path or image_base64")
        return self._frames[-1]

    # ----- concepts -----------------------------------------------------------------------------------
    async def list_concepts(self) -> dict[str, Any]:
        memories = await self._run("list_concepts", self.engine.concepts)
        return {"concepts": [memory_summary(m) for m in sorted(memories, key=lambda m: m.name)]}

    async def introduce(self, name: str, images: list[Image.Image], frames: int, min_interval_s: float,
                        notes: str, replace: bool, progress: ProgressFn) -> dict[str, Any]:
        try:
            name = validate_name(name)
        except EgoError as exc:
            raise AgentError(str(exc)) from None
        if images:
            self._remember(images)
            source = f"{len(images)} given image(s)"
        else:
            wanted = max(1, frames)
            if len(self._frames) < wanted:
                raise AgentError(f"engine mode has no camera: give image_paths or images_base64 (only "
                                 f"{len(self._frames)} earlier image(s) are at hand, {wanted} asked for)")
            images = list(self._frames)[-wanted:]
            source = f"the {wanted} latest image(s) given to this server"
        relay = ProgressRelay(progress, asyncio.get_running_loop())
        total = len(images)

        def on_view(i: int, view) -> None:  # on the model thread
            relay.post(i + 1, total, f"view {i + 1}/{total}: keywords {', '.join(view.keywords)}")

        await progress(0, total, f"introducing {name!r} from {source}")
        try:
            memory = await self._run(f"introducing {name!r}", self.engine.introduce, name, images, notes=notes,
                                     replace_existing=replace, on_view=on_view)
        finally:
            await relay.flush()
        return {"introduced": memory_summary(memory), "source": source, "seconds": round(memory.seconds, 3)}

    async def forget(self, name: str) -> dict[str, Any]:
        memory = await self._run(f"forgetting {name!r}", self.engine.remove, name)
        return {"forgotten": memory.name}

    async def rename(self, old_name: str, new_name: str) -> dict[str, Any]:
        def rename() -> ConceptMemory:
            self.engine.rename(old_name, new_name)
            return self.engine.store.get(new_name)

        memory = await self._run(f"renaming {old_name!r}", rename)
        return {"renamed": {"from": old_name, "to": memory.name}, "concept": memory_summary(memory)}

    # ----- queries ------------------------------------------------------------------------------------
    async def what_do_you_see(self, image: Image.Image | None, concepts: list[str]) -> dict[str, Any]:
        picture = self._query_image(image)
        recs = await self._run("what_do_you_see", self.engine.recognize, picture, list(concepts) or None)
        scored = [r for r in recs if r.considered]
        out = recognitions_result([r.name for r in scored], [r.probability for r in scored],
                                  [r.present for r in scored], self.engine.config.threshold)
        out["filtered_out"] = [r.name for r in recs if not r.considered]
        out["frame"] = {"source": "given image" if image is not None else "latest image given",
                        "width": picture.width, "height": picture.height}
        if not recs:
            out["note"] = "no concepts taught yet: introduce_concept first"
        return out

    async def locate(self, name: str, image: Image.Image | None) -> dict[str, Any]:
        if not name.strip():
            raise AgentError("concept name is empty")
        picture = self._query_image(image)
        rec = await self._run(f"locating {name!r}", self.engine.locate, picture, name)
        loc = rec.location
        out = location_result(rec.name, rec.present, rec.probability, loc.box, loc.point, loc.score,
                              picture.size)
        out["frame"] = {"source": "given image" if image is not None else "latest image given"}
        return out

    async def ask(self, question: str, image: Image.Image | None, concepts: list[str],
                  max_new_tokens: int) -> dict[str, Any]:
        if not question.strip():
            raise AgentError("question is empty")
        picture = self._query_image(image)
        answer = await self._run("ask", self.engine.ask, picture, question.strip(), list(concepts) or None,
                                 max_new_tokens or None)
        return {"question": question.strip(), "answer": answer.text, "concepts": answer.concepts,
                "seconds": round(answer.seconds, 3)}

    async def caption(self, image: Image.Image | None, concepts: list[str], max_new_tokens: int) -> dict[str, Any]:
        picture = self._query_image(image)
        answer = await self._run("caption", self.engine.caption, picture, list(concepts) or None,
                                 max_new_tokens or None)
        return {"caption": answer.text, "concepts": answer.concepts, "seconds": round(answer.seconds, 3)}

    async def latest_frame(self) -> tuple[Image.Image, dict[str, Any]]:
        if not self._frames:
            raise AgentError("no frame yet: engine mode has no camera; the latest frame is the last image "
                             "given to a tool, and none was given")
        picture = self._frames[-1]
        return picture, {"source": "the last image given to a tool (engine mode has no camera)",
                         "width": picture.width, "height": picture.height}
