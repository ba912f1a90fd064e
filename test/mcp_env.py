"""Helpers for tests that drive `ego-ros mcp` with a real MCP client from the SDK.

`McpClient` spawns the server as a subprocess (`python -m ego_ros.cli mcp ...`) over stdio with the
SDK's `stdio_client` and `ClientSession`, on an asyncio loop in a background thread, so that plain
synchronous tests (and module-scoped fixtures) can call tools one after another on one session.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mcp import ClientSession, StdioServerParameters, stdio_client
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT = 120.0  # importing torch and loading a model on a busy 2-core machine


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for the server process: this one's (PYTHONPATH with the worktree first) plus `extra`.

    The SDK's stdio client starts servers with a minimal environment; the tests pass theirs on.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("OMP_NUM_THREADS", "1")  # the test machine has 2 cores shared with node processes
    env.update(extra or {})
    return env


class McpClient:
    """One MCP session with one `ego-ros mcp` server process; see the module docstring."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.args, self.env, self.log_path = args, env, log_path
        self.session: ClientSession | None = None
        #: the server's instructions from the initialize result
        self.instructions = ""
        self.progress: list[tuple[float, float | None, str | None]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="mcp_client", daemon=True)
        self._thread.start()
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._main = asyncio.run_coroutine_threadsafe(self._serve(), self._loop)
        if not self._started.wait(START_TIMEOUT) or self.session is None:
            self.close()
            raise RuntimeError(f"the MCP server did not start within {START_TIMEOUT} s; its log:\n{self.log()}")

    async def _serve(self) -> None:
        params = StdioServerParameters(command=sys.executable, args=["-m", "ego_ros.cli", "mcp", *self.args],
                                       env=self.env, cwd=str(REPO))
        self._stop = asyncio.Event()
        with open(self.log_path, "w") as errlog:
            try:
                async with stdio_client(params, errlog=errlog) as (read, write):
                    async with ClientSession(read, write) as session:
                        init = await session.initialize()
                        self.instructions = init.instructions or ""
                        self.session = session
                        self._started.set()
                        await self._stop.wait()
            finally:
                self._started.set()

    def _run(self, coro, timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def tools(self) -> dict[str, Any]:
        """Tool name -> Tool (description, input schema)."""
        result = self._run(self.session.list_tools(), 60)
        return {t.name: t for t in result.tools}

    def start(self, tool: str, arguments: dict[str, Any] | None = None, timeout: float = 120.0) -> Future:
        """Send a call without waiting: a future of its CallToolResult (for calls that overlap)."""
        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            self.progress.append((progress, total, message))

        return asyncio.run_coroutine_threadsafe(
            self.session.call_tool(tool, arguments or {}, read_timeout_seconds=timeout, progress_callback=on_progress),
            self._loop)

    def call(self, tool: str, arguments: dict[str, Any] | None = None, timeout: float = 120.0):
        """The CallToolResult of one call; progress notifications are appended to `self.progress`."""
        return self.start(tool, arguments, timeout).result(timeout + 10)

    def ok(self, tool: str, arguments: dict[str, Any] | None = None, timeout: float = 120.0) -> dict[str, Any]:
        """The structured result of a call that must succeed (AssertionError with the message otherwise)."""
        result = self.call(tool, arguments, timeout)
        assert not result.is_error, f"{tool} failed: {text(result)}"
        return result.structured_content if result.structured_content is not None else json.loads(text(result))

    def error(self, tool: str, arguments: dict[str, Any] | None = None, timeout: float = 120.0) -> str:
        """The message of a call that must fail as an MCP tool error."""
        result = self.call(tool, arguments, timeout)
        assert result.is_error, f"{tool} was expected to fail but returned {text(result)}"
        return text(result)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else "(no log)"

    def close(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        try:
            self._main.result(30)
        except Exception:  # noqa: BLE001 - closing after a failed start: the start error was reported
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@contextmanager
def mcp_client(args: list[str], env: dict[str, str], log_path: Path) -> Iterator[McpClient]:
    client = McpClient(args, env, log_path)
    try:
        yield client
    finally:
        client.close()


def text(result) -> str:
    """The text of a CallToolResult's text blocks."""
    return "\n".join(c.text for c in result.content if c.type == "text")


def png_base64(image: Image.Image | Any) -> str:
    """A PIL image (or HxWx3 uint8 array) as base64 PNG."""
    if not isinstance(image, Image.Image):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def image_from_content(result) -> Image.Image:
    """The picture of a CallToolResult's (single) image block."""
    (block,) = [c for c in result.content if c.type == "image"]
    return Image.open(io.BytesIO(base64.b64decode(block.data)))
