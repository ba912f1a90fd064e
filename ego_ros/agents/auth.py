"""Bearer-token protection of the HTTP transport.

The SDK's own auth support is an OAuth 2.1 resource server (issuer URLs, token verification,
protected-resource metadata); a robot on a bench needs one shared secret, so this is a small ASGI
wrapper: every HTTP request must carry ``Authorization: Bearer <token>``, compared in constant time,
or it gets 401 before it reaches the MCP app.
"""

from __future__ import annotations

import hmac
import os
import stat
import sys
from pathlib import Path
from typing import Any

from starlette.responses import JSONResponse

from .errors import AgentError

TOKEN_ENV = "EGO_ROS_MCP_TOKEN"
#: Shortest token accepted: a guessable secret is no protection.
MIN_TOKEN_LENGTH = 16


def load_token(token_file: str | None, environ: dict[str, str] | None = None) -> str:
    """The bearer token from `token_file` (first line) or the EGO_ROS_MCP_TOKEN variable; AgentError if none."""
    environ = os.environ if environ is None else environ
    if token_file:
        path = Path(token_file).expanduser()
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise AgentError(f"cannot read the token file {path}: {exc.strerror or exc}") from exc
        token = lines[0].strip() if lines else ""
        if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            print(f"ego-ros mcp: warning: token file {path} is readable by other users (chmod 600 it)",
                  file=sys.stderr)
        source = f"token file {path}"
    else:
        token = environ.get(TOKEN_ENV, "").strip()
        source = f"${TOKEN_ENV}"
        if not token:
            raise AgentError(f"the HTTP transport needs a bearer token: --token-file PATH or ${TOKEN_ENV}")
    if len(token) < MIN_TOKEN_LENGTH:
        raise AgentError(f"the bearer token from {source} has {len(token)} characters; at least {MIN_TOKEN_LENGTH} "
                         "are needed (make one: python -c 'import secrets; print(secrets.token_urlsafe())')")
    return token


class BearerTokenMiddleware:
    """ASGI middleware: 401 for an HTTP request without the right bearer token."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self._token = token.encode("utf-8")

    def _authorized(self, scope: dict[str, Any]) -> bool:
        for key, value in scope.get("headers", ()):
            if key.lower() == b"authorization":
                scheme, _, credentials = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), self._token)
        return False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not self._authorized(scope):
            response = JSONResponse({"error": "unauthorized", "error_description": "a valid bearer token is required"},
                                    status_code=401, headers={"WWW-Authenticate": 'Bearer realm="ego_ros"'})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
