"""The node's services: introduce, remove, rename and list concepts; ask, caption and locate.

Each is a coroutine on the requests callback group that awaits the model thread (list_concepts
never waits); every failure becomes success=false with a message (see request_helpers._fail).
Request bounds (ego_ros.core.limits: generated tokens, question and notes length) are checked here
before the request queues for the model thread, so an oversized request is answered at once.
"""

from __future__ import annotations

import numpy as np
from std_msgs.msg import Header

from ego_msgs.srv import Ask, Caption, IntroduceConcept, ListConcepts, Locate, RemoveConcept, RenameConcept

from ..core.errors import DuplicateConceptError, InvalidImageError
from ..core.limits import MAX_NOTES_CHARS, MAX_QUESTION_CHARS, check_new_tokens, check_text
from ..core.memory import validate_name
from .conversions import (
    answer_msg,
    concept_description,
    frame_to_rgb,
    image_to_rgb,
    is_empty_image,
    location_msg,
)
from .depth import Position
from .image_conversion import ImageConversionError, compressed_to_rgb
from .request_helpers import MAX_VIEWS, NodeStateError


class ServicesMixin:
    """EgoNode's service callbacks."""

    async def _srv_introduce(self, request: IntroduceConcept.Request,
                             response: IntroduceConcept.Response) -> IntroduceConcept.Response:
        try:
            engine = self._require_engine()
            name = validate_name(request.name)
            notes = check_text(request.notes, "notes", MAX_NOTES_CHARS)
            if name in engine.store and not request.replace:
                raise DuplicateConceptError(f"concept {name!r} already exists; set replace=true to overwrite it")
            references = self._introduce_references(request)
            with self._introduction(name):
                memory = await self._on_model_thread(
                    engine.introduce, name, [rgb for rgb, _ in references], options=self._introduce_options(),
                    notes=notes, replace_existing=request.replace)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a response
            return self._fail(response, exc, "introduce_concept")
        response.success = True
        response.concept = self._announce_introduction(memory, references, f"{len(memory.views)} view(s)")
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
            if not engine.store.has_entry(request.name):  # an unavailable concept can be removed too
                engine.store.get(request.name)  # UnknownConceptError at once, without queueing
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
        # ConceptDescription has no availability field (ego_msgs is shared and stays as it is): concepts
        # whose files are missing or damaged are named here, in diagnostics and in the log.
        unavailable = [f"concept {name!r} is unavailable: {why}"
                       for name, why in sorted(self._unavailable(engine).items())]
        response.message = "; ".join(unavailable + self._problems)
        return response

    def _max_new_tokens(self, requested: int) -> int:
        """The request's token limit (0: the max_new_tokens parameter), refused at once outside 1..4096 so
        that an absurd request neither queues behind other calls nor blocks the model thread."""
        return check_new_tokens(requested) if requested else int(self._settings.max_new_tokens)

    async def _srv_ask(self, request: Ask.Request, response: Ask.Response) -> Ask.Response:
        try:
            engine = self._require_engine()
            question = check_text(request.question, "question", MAX_QUESTION_CHARS).strip()
            if not question:
                raise ValueError("question is empty")
            max_new_tokens = self._max_new_tokens(request.max_new_tokens)
            names = self._check_concepts(engine, list(request.concepts))
            rgb, header = self._request_image(request.image)
            answer = await self._on_model_thread(engine.ask, rgb, question, names, max_new_tokens)
        except Exception as exc:  # noqa: BLE001
            return self._fail(response, exc, "ask")
        response.success = True
        response.answer = answer_msg(header, question, answer)
        return response

    async def _srv_caption(self, request: Caption.Request, response: Caption.Response) -> Caption.Response:
        try:
            engine = self._require_engine()
            max_new_tokens = self._max_new_tokens(request.max_new_tokens)
            names = self._check_concepts(engine, list(request.concepts))
            rgb, header = self._request_image(request.image)
            answer = await self._on_model_thread(engine.caption, rgb, names, max_new_tokens)
        except Exception as exc:  # noqa: BLE001
            return self._fail(response, exc, "caption")
        response.success = True
        response.answer = answer_msg(header, "", answer)
        return response

    async def _srv_locate(self, request: Locate.Request, response: Locate.Response) -> Locate.Response:
        """Where is NAME: located whether or not it is judged present (found says which); on the latest camera
        frame with its 3-D point when the node uses depth (a request image has no depth frame)."""
        try:
            engine = self._require_engine()
            name = engine.store.get(validate_name(request.name)).name  # unknown: refused before queueing
            rgb, header = self._request_image(request.image)
            size = (rgb.shape[1], rgb.shape[0])
            claim = self._claim_depth(header) if is_empty_image(request.image) else None
            try:
                rec = await self._on_model_thread(engine.locate, rgb, name)
            finally:
                depth = self._settle_depth(claim, size)  # a claim is always settled, also on failure
        except Exception as exc:  # noqa: BLE001
            return self._fail(response, exc, "locate")
        response.success = True
        response.found = bool(rec.present)
        response.probability = float(rec.probability)
        if depth is not None:
            position = depth.locate(rec.location, size)
        elif self._uses_depth():
            position = Position(None, "an image given in the request has no depth frame")
        else:
            position = None
        response.location = location_msg(rec.location, position)
        response.header = header
        return response
