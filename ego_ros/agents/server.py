"""The MCP tools over a `Backend`, and the two transports (stdio, streamable HTTP with a bearer token).

Each tool is a typed function (the SDK derives its JSON schema from the type hints and the `Field`
descriptions) with a one-line description an agent can act on. Every call runs under `_guarded`:
an `AgentError` (or any unexpected failure) becomes an MCP tool error carrying a clear message,
never a stack trace, and an outer deadline ensures no call hangs.
"""

# No `from __future__ import annotations`: the SDK reads the tools' annotations at registration.

import json
import logging
from collections.abc import Awaitable
from typing import Annotated, Any, Literal, TypeVar

import anyio
from mcp.server.mcpserver import Context, Image, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import TextContent, ToolAnnotations
from pydantic import Field

from .backend import Backend
from .errors import AgentError
from .images import DEFAULT_MAX_SIDE, gather_images, one_image, to_content_bytes

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Most reference views one introduction takes (the node's own bound).
MAX_VIEWS = 64
#: Slack on top of a backend's own timeout before the server gives up on a call itself.
OUTER_SLACK_S = 15.0

ImagePath = Annotated[str | None, Field(description="an image file on the server's machine (PNG, JPEG, ...)")]
ImageB64 = Annotated[str | None, Field(description="a base64 PNG or JPEG (a data: URL is fine)")]
Concepts = Annotated[list[str] | None, Field(description="restrict to these concept names (default: all known)")]
Paths = Annotated[list[str] | None, Field(description="reference image files on the server's machine")]
Base64s = Annotated[list[str] | None, Field(description="reference images as base64 PNG/JPEG")]
MaxTokens = Annotated[int, Field(ge=0, le=1024, description="most tokens to generate (0: the default)")]

READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)


async def _guarded(what: str, call: Awaitable[T], deadline_s: float) -> T:
    """Await `call`; turn failures into MCP tool errors with a clear message and bound the wait."""
    try:
        with anyio.fail_after(deadline_s):
            return await call
    except AgentError as exc:
        raise ToolError(str(exc)) from None
    except TimeoutError:
        raise ToolError(f"{what} did not finish within {deadline_s:g} s") from None
    except ToolError:
        raise
    except Exception as exc:  # noqa: BLE001 - an agent gets a message, the server log the traceback
        log.exception("%s failed", what)
        raise ToolError(f"{what} failed: {type(exc).__name__}: {exc}") from None


def build_server(backend: Backend, read_only: bool = False, name: str = "ego_ros") -> MCPServer:
    """An MCP server whose tools reach `backend`; with `read_only` the tools that change memory are left out."""
    instructions = (
        "The robot's personal memory (Ego): concepts a person taught it (their mug, their dog, a "
        "friend's face) that it recognises, captions and answers about in camera images. "
        f"Connected to: {backend.describe()}. Start with list_concepts; what_do_you_see says which "
        "concepts are in the latest frame; locate says where one is; ask and caption answer in words; "
        "latest_frame shows the frame."
        + ("" if not read_only else " This server is read-only: concepts cannot be taught, renamed or forgotten."))
    mcp = MCPServer(name, instructions=instructions)
    deadline = backend.timeout_s + OUTER_SLACK_S

    @mcp.tool(annotations=READ)
    async def list_concepts() -> dict[str, Any]:
        """List the personal concepts the robot knows (name, keywords, number of views and memory tokens)."""
        return await _guarded("list_concepts", backend.list_concepts(), deadline)

    if not read_only:
        @mcp.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False))
        async def introduce_concept(
            name: Annotated[str, Field(description="the concept's name, e.g. 'kona' or \"Anna's mug\"")],
            ctx: Context,
            image_paths: Paths = None,
            images_base64: Base64s = None,
            frames: Annotated[int, Field(ge=1, le=MAX_VIEWS, description="with no images given: how many camera "
                                         "frames to teach from")] = 3,
            min_interval_s: Annotated[float, Field(ge=0, le=60, description="with camera frames: seconds between "
                                                   "two frames (move the object between views)")] = 0.5,
            notes: Annotated[str, Field(description="free-form notes stored with the concept")] = "",
            replace: Annotated[bool, Field(description="overwrite an existing concept of that name")] = False,
        ) -> dict[str, Any]:
            """Teach a personal concept from reference images, or from the next camera frames if none are given."""
            async def progress(done: float, total: float | None, message: str | None) -> None:
                await ctx.report_progress(done, total, message)

            async def run() -> dict[str, Any]:
                images = gather_images(image_paths, images_base64, backend.allow_paths, MAX_VIEWS)
                return await backend.introduce(name, images, frames, min_interval_s, notes, replace, progress)

            # Collecting camera frames takes their spacing on top of the model time.
            return await _guarded("introduce_concept", run(), deadline + frames * min_interval_s)

        @mcp.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True,
                                              open_world_hint=False))
        async def forget_concept(
            name: Annotated[str, Field(description="the concept to forget")],
        ) -> dict[str, Any]:
            """Forget a personal concept: remove it from the robot's memory and from disk."""
            return await _guarded("forget_concept", backend.forget(name), deadline)

        @mcp.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False))
        async def rename_concept(
            old_name: Annotated[str, Field(description="the concept's current name")],
            new_name: Annotated[str, Field(description="its new name (not in use yet)")],
        ) -> dict[str, Any]:
            """Rename a personal concept, keeping what the robot learnt about it."""
            return await _guarded("rename_concept", backend.rename(old_name, new_name), deadline)

    if backend.recognizes_given_images:
        @mcp.tool(annotations=READ)
        async def what_do_you_see(image_path: ImagePath = None, image_base64: ImageB64 = None,
                                  concepts: Concepts = None) -> dict[str, Any]:
            """Which known concepts are in the image (default: the latest frame), with their probabilities."""
            async def run() -> dict[str, Any]:
                return await backend.what_do_you_see(one_image(image_path, image_base64, backend.allow_paths),
                                                     concepts or [])

            return await _guarded("what_do_you_see", run(), deadline)
    else:
        @mcp.tool(annotations=READ)
        async def what_do_you_see(concepts: Concepts = None) -> dict[str, Any]:
            """Which known concepts the robot sees in its latest camera frame, with their probabilities."""
            return await _guarded("what_do_you_see", backend.what_do_you_see(None, concepts or []), deadline)

    @mcp.tool(annotations=READ)
    async def locate(name: Annotated[str, Field(description="the concept to find, e.g. 'kona'")],
                     image_path: ImagePath = None, image_base64: ImageB64 = None) -> dict[str, Any]:
        """Where a known concept is in the latest frame (or a given image): found or not, box and point in pixels."""
        async def run() -> dict[str, Any]:
            return await backend.locate(name, one_image(image_path, image_base64, backend.allow_paths))

        return await _guarded("locate", run(), deadline)

    @mcp.tool(annotations=READ)
    async def ask(question: Annotated[str, Field(description="the question, e.g. 'Where is kona?'")],
                  image_path: ImagePath = None, image_base64: ImageB64 = None, concepts: Concepts = None,
                  max_new_tokens: MaxTokens = 0) -> dict[str, Any]:
        """Ask a question about the latest frame (or a given image), with the known concepts in context."""
        async def run() -> dict[str, Any]:
            image = one_image(image_path, image_base64, backend.allow_paths)
            return await backend.ask(question, image, concepts or [], max_new_tokens)

        return await _guarded("ask", run(), deadline)

    @mcp.tool(annotations=READ)
    async def caption(image_path: ImagePath = None, image_base64: ImageB64 = None, concepts: Concepts = None,
                      max_new_tokens: MaxTokens = 0) -> dict[str, Any]:
        """Describe the latest frame (or a given image) in words, naming the known concepts it shows."""
        async def run() -> dict[str, Any]:
            image = one_image(image_path, image_base64, backend.allow_paths)
            return await backend.caption(image, concepts or [], max_new_tokens)

        return await _guarded("caption", run(), deadline)

    @mcp.tool(annotations=READ, structured_output=False)
    async def latest_frame(
        max_side: Annotated[int, Field(ge=16, le=4096, description="longest side of the returned image")]
        = DEFAULT_MAX_SIDE,
        format: Annotated[Literal["jpeg", "png"], Field(description="image encoding")] = "jpeg",  # noqa: A002
    ) -> list[TextContent | Image]:
        """The robot's latest camera frame as an image (downscaled), so a multimodal agent can look too."""
        async def run() -> list[TextContent | Image]:
            picture, info = await backend.latest_frame()
            data, (width, height) = to_content_bytes(picture, max_side, format)
            info = {**info, "returned_width": width, "returned_height": height}
            return [TextContent(type="text", text=json.dumps(info)), Image(data=data, format=format)]

        return await _guarded("latest_frame", run(), deadline)

    return mcp
