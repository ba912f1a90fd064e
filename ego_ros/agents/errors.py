"""The one error type the MCP tools raise on purpose."""

from __future__ import annotations


class AgentError(Exception):
    """A failure the agent can act on (unknown concept, busy, no frame yet, node not active, timeout).

    The server turns it into an MCP tool error whose text is exactly this message: never a stack trace.
    """
