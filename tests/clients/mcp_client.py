#!/usr/bin/env python3
"""Drives an MCP server over Streamable HTTP with the official `mcp` package.

    mcp_client.py URL API_KEY list
    mcp_client.py URL API_KEY call TOOL JSON_ARGS [--expect-error]

Every HTTP request carries `Authorization: Bearer API_KEY`. The session is
opened with the initialize handshake (`ClientSession.initialize`) and
ended with DELETE when the client closes. Modes:

  list   prints the tool names as a JSON array
  call   calls TOOL with the JSON object JSON_ARGS and prints
         {"isError": ..., "content": [<text of each text item>]}
         --expect-error: expects the call to fail with a JSON-RPC/MCP error
         (an HTTP refusal reaches the client as one too) and prints
         {"error": {"code": ..., "message": ...}}; exits 0 only if it came

Output is one JSON line on stdout. Anything unexpected exits non-zero with
the reason on stderr: 1 for a wrong outcome, 2 for a failure to talk to
the server at all.
"""

import argparse
import json
import sys

import anyio
import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError


class Unexpected(Exception):
    """A wrong outcome; the message says which."""


def leaves(error: BaseException):
    """The exceptions inside (nested) exception groups, or the error itself."""
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from leaves(inner)
    else:
        yield error


def texts(result) -> list:
    return [item.text if getattr(item, "type", None) == "text" else item.model_dump() for item in result.content]


async def run(args) -> dict | list:
    headers = {"Authorization": f"Bearer {args.api_key}"}
    timeout = httpx2.Timeout(args.timeout, read=args.timeout)
    async with httpx2.AsyncClient(headers=headers, timeout=timeout) as http:
        async with streamable_http_client(args.url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                if args.mode == "list":
                    listed = await session.list_tools()
                    return [tool.name for tool in listed.tools]
                if args.expect_error:
                    try:
                        result = await session.call_tool(args.tool, args.arguments)
                    except MCPError as e:
                        return {"error": {"code": e.code, "message": e.message}}
                    raise Unexpected(
                        f"expected tools/call {args.tool} to fail with an MCP error, "
                        f"but it returned {result.model_dump_json()}"
                    )
                try:
                    result = await session.call_tool(args.tool, args.arguments)
                except MCPError as e:
                    raise Unexpected(f"tools/call {args.tool} failed: MCP error {e.code}: {e.message}") from e
                return {"isError": bool(result.is_error), "content": texts(result)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("api_key")
    parser.add_argument("mode", choices=["list", "call"])
    parser.add_argument("tool", nargs="?")
    parser.add_argument("json_args", nargs="?", default="{}")
    parser.add_argument("--expect-error", action="store_true")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per HTTP request")
    args = parser.parse_args()
    if args.mode == "call":
        if not args.tool:
            parser.error("call needs TOOL (and JSON_ARGS)")
        try:
            args.arguments = json.loads(args.json_args)
        except json.JSONDecodeError as e:
            parser.error(f"JSON_ARGS is not JSON: {e}")
        if not isinstance(args.arguments, dict):
            parser.error("JSON_ARGS must be a JSON object")
    elif args.tool is not None or args.expect_error:
        parser.error("list takes no TOOL, JSON_ARGS or --expect-error")

    try:
        output = anyio.run(run, args)
    except Exception as e:  # noqa: BLE001 - sorted below, re-raised when unknown
        # anyio's task groups wrap what failed inside them in exception groups.
        for leaf in leaves(e):
            if isinstance(leaf, Unexpected):
                print(f"mcp_client.py: {leaf}", file=sys.stderr)
                sys.exit(1)
            if isinstance(leaf, MCPError):
                print(f"mcp_client.py: MCP error {leaf.code} from {args.url}: {leaf.message}", file=sys.stderr)
                sys.exit(1)
            if isinstance(leaf, (httpx2.HTTPError, OSError)):
                print(f"mcp_client.py: cannot talk to {args.url}: {leaf!r}", file=sys.stderr)
                sys.exit(2)
        raise
    print(json.dumps(output))


if __name__ == "__main__":
    main()
