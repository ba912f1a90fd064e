"""`ego-ros mcp`: start the MCP server, in ROS mode (a client of a running ego_node, the default) or
in engine mode (`--model`: the engine in-process), over stdio (default) or streamable HTTP.

Importing this module needs neither the `mcp` SDK nor rclpy: the command imports them when it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import sys
from collections.abc import Iterator
from typing import Any

DEFAULT_NODE = "/ego_node"
DEFAULT_PORT = 8765


def register(subparsers: Any) -> None:
    """Add ``mcp`` to the `ego-ros` subcommands."""
    p = subparsers.add_parser(
        "mcp", help="MCP server: the robot's personal concepts as tools for language-model agents",
        description="Serve the robot's personal memory (list, introduce, forget, rename concepts; what do you "
                    "see, ask, caption, latest frame) as Model Context Protocol tools. ROS mode (default) is a "
                    "client of a running ego_node; engine mode (--model) runs the engine in this process.")
    p.add_argument("--node", default=None,
                   help=f"ROS mode: the ego_node to serve, fully qualified (default: {DEFAULT_NODE})")
    p.add_argument("--image-topic", default=None,
                   help="ROS mode: camera topic for latest_frame (default: 'image' in the node's namespace; "
                        "a name ending in /compressed is read as CompressedImage)")
    p.add_argument("--model", default=None,
                   help="engine mode: model directory, Hub id, 'toy' or 'random:<family>' (selects engine mode)")
    p.add_argument("--store", default=None, help="engine mode: concept store directory (default: per model)")
    p.add_argument("--device", default="cpu", help="engine mode: cpu or cuda:N (default: cpu)")
    p.add_argument("--dtype", default="auto", help="engine mode: auto, float32, bfloat16 or float16")
    p.add_argument("--calibration", default=None, help="engine mode: layer calibration file")
    p.add_argument("--http", default=None, metavar="[HOST:]PORT",
                   help="serve streamable HTTP at http://HOST:PORT/mcp instead of stdio (host default 127.0.0.1); "
                        "needs a bearer token")
    p.add_argument("--token-file", default=None,
                   help="HTTP: file whose first line is the bearer token (default: $EGO_ROS_MCP_TOKEN)")
    p.add_argument("--allow-image-paths", action="store_true",
                   help="HTTP: let clients name image files on this machine (always allowed over stdio)")
    p.add_argument("--read-only", action="store_true",
                   help="leave out introduce_concept, forget_concept and rename_concept")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds one tool call may take (default: 120)")
    p.add_argument("--connect-timeout", type=float, default=5.0,
                   help="ROS mode: seconds to wait for the node's services to appear (default: 5)")
    p.set_defaults(func=cmd_mcp)


def parse_http(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` or ``PORT`` -> (host, port); the host defaults to loopback."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "", text
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"--http {text!r}: the port must be a number, e.g. 127.0.0.1:{DEFAULT_PORT}") from None
    if not 0 < port < 65536:
        raise ValueError(f"--http {text!r}: port {port} is out of range")
    return host, port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send everything written to stdout (by Python or by C libraries: DDS, OpenMP) to stderr meanwhile.

    Over stdio, stdout is the protocol stream: a stray line there breaks the client. The SDK diverts it
    while it serves; this covers loading the model and starting ROS before that.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _backend(args: argparse.Namespace, allow_paths: bool):
    if args.model is not None:
        if args.node is not None or args.image_topic is not None:
            raise ValueError("--model selects engine mode; --node and --image-topic are for ROS mode")
        from ..cli import default_store
        from ..core.engine import EgoEngine
        from .engine_backend import EngineBackend

        store = args.store if args.store is not None else default_store(args.model)
        # A read-only server takes no writer lock, so it runs beside a node or another server on the store;
        # the engine's own deadline matches the tool timeout, so a timed-out call stops its model work.
        engine = EgoEngine.load(args.model, device=args.device, dtype=args.dtype, store_dir=store,
                                calibration=args.calibration, strict_store=False, read_only_store=args.read_only,
                                request_timeout_s=args.timeout)
        return EngineBackend(engine, timeout_s=args.timeout, allow_paths=allow_paths)
    if args.store is not None or args.calibration is not None:
        raise ValueError("--store and --calibration are for engine mode (--model); in ROS mode the node owns them")
    try:
        from .ros_backend import RosBackend
    except ImportError as exc:
        raise ValueError(f"ROS mode needs rclpy and ego_msgs ({exc}); install the ros extra, or use engine mode "
                         "with --model toy") from exc
    return RosBackend(args.node or DEFAULT_NODE, image_topic=args.image_topic, timeout_s=args.timeout,
                      connect_timeout_s=args.connect_timeout, allow_paths=allow_paths)


def cmd_mcp(args: argparse.Namespace) -> int:
    try:
        import anyio

        from .server import build_server
    except ImportError as exc:
        raise ValueError(f"`ego-ros mcp` needs the MCP SDK ({exc}): pip install -e '.[agents]'") from exc
    from .errors import AgentError

    http = parse_http(args.http) if args.http else None
    token = None
    if http is not None:
        from .auth import load_token

        try:
            token = load_token(args.token_file)
        except AgentError as exc:
            raise ValueError(str(exc)) from None
    elif args.token_file or args.allow_image_paths:
        raise ValueError("--token-file and --allow-image-paths are for the HTTP transport (--http)")
    try:
        with stdout_to_stderr():
            backend = _backend(args, allow_paths=http is None or args.allow_image_paths)
    except AgentError as exc:
        raise ValueError(str(exc)) from None
    server = build_server(backend, read_only=args.read_only)

    async def serve() -> None:
        try:
            if http is None:
                await server.run_stdio_async()
            else:
                await _serve_http(server, http, token)
        finally:
            await backend.close()

    try:
        anyio.run(serve)
    except KeyboardInterrupt:
        pass
    return 0


async def _serve_http(server, address: tuple[str, int], token: str) -> None:
    import uvicorn

    from .auth import BearerTokenMiddleware

    host, port = address
    if not is_loopback(host):
        print(f"ego-ros mcp: warning: serving on {host}, reachable from other machines; only the bearer token "
              "protects it (use TLS in front of it on an untrusted network)", file=sys.stderr)
    app = BearerTokenMiddleware(server.streamable_http_app(host=host), token)
    print(f"ego-ros mcp: streamable HTTP on http://{host}:{port}/mcp (bearer token required)", file=sys.stderr)
    await uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning")).serve()
