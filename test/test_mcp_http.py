"""`ego-ros mcp --http`: streamable HTTP on loopback, refused without the bearer token.

The server runs in engine mode on the toy model; requests go to 127.0.0.1 only, each with a timeout.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from mcp_env import REPO, server_env

from ego_ros.agents.auth import MIN_TOKEN_LENGTH, load_token
from ego_ros.agents.cli import is_loopback, parse_http
from ego_ros.agents.errors import AgentError

TOKEN = "test-token-0123456789abcdef"
INITIALIZE = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}).encode()
START_TIMEOUT = 120.0


@dataclass
class HttpServer:
    url: str
    proc: subprocess.Popen


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, token: str | None) -> int:
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=INITIALIZE, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        assert exc.status != 401 or "Bearer" in exc.headers.get("WWW-Authenticate", "")
        return exc.status


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[HttpServer]:
    tmp = tmp_path_factory.mktemp("mcp_http")
    port = _free_port()
    log = open(tmp / "server.log", "wb")  # noqa: SIM115 - closed below
    command = [sys.executable, "-m", "ego_ros.cli", "mcp", "--model", "toy", "--store", str(tmp / "store"),
               "--http", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(command, env=server_env({"EGO_ROS_MCP_TOKEN": TOKEN}), cwd=REPO, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the HTTP server did not start; its log:\n{(tmp / 'server.log').read_text()}")
                time.sleep(0.2)
        yield HttpServer(f"http://127.0.0.1:{port}/mcp", proc)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


@pytest.mark.slow
def test_a_request_without_the_token_gets_401(server):
    assert _post(server.url, None) == 401


@pytest.mark.slow
def test_a_request_with_a_wrong_token_gets_401(server):
    assert _post(server.url, TOKEN[:-1] + "X") == 401


@pytest.mark.slow
def test_an_mcp_client_with_the_token_lists_and_calls_tools(server):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    async def session() -> tuple[set[str], str]:
        async with create_mcp_http_client(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            async with streamable_http_client(server.url, http_client=http) as (read, write):
                async with ClientSession(read, write) as client:
                    await client.initialize()
                    tools = {t.name for t in (await client.list_tools()).tools}
                    refused = await client.call_tool("caption", {"image_path": "/etc/hostname"},
                                                     read_timeout_seconds=60)
                    return tools, refused.content[0].text

    tools, refused = asyncio.run(asyncio.wait_for(session(), 120))
    assert {"list_concepts", "what_do_you_see", "latest_frame"} <= tools
    assert "does not read files" in refused, "over HTTP, image paths are refused unless --allow-image-paths"


def test_http_refuses_to_start_without_a_token(tmp_path):
    env = server_env()
    env.pop("EGO_ROS_MCP_TOKEN", None)
    done = subprocess.run([sys.executable, "-m", "ego_ros.cli", "mcp", "--model", "toy", "--http", "127.0.0.1:1"],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "needs a bearer token" in done.stderr


@pytest.mark.parametrize(("text", "address"), [("8765", ("127.0.0.1", 8765)), (":9000", ("127.0.0.1", 9000)),
                                               ("0.0.0.0:80", ("0.0.0.0", 80)), ("[::1]:81", ("::1", 81))])
def test_http_address_defaults_to_loopback(text, address):
    assert parse_http(text) == address


def test_only_loopback_addresses_count_as_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")


def test_the_token_comes_from_a_file_before_the_environment(tmp_path):
    path = tmp_path / "token"
    path.write_text("from-the-file-0123456789\n")
    path.chmod(0o600)
    assert load_token(str(path), {"EGO_ROS_MCP_TOKEN": TOKEN}) == "from-the-file-0123456789"
    assert load_token(None, {"EGO_ROS_MCP_TOKEN": TOKEN}) == TOKEN


def test_a_short_or_missing_token_is_refused(tmp_path):
    with pytest.raises(AgentError, match="needs a bearer token"):
        load_token(None, {})
    with pytest.raises(AgentError, match=f"at least {MIN_TOKEN_LENGTH}"):
        load_token(None, {"EGO_ROS_MCP_TOKEN": "short"})
    with pytest.raises(AgentError, match="cannot read the token file"):
        load_token(str(tmp_path / "missing"), {})
