"""Drives `warden serve`'s /v1/mcp with the official MCP Python SDK: each
tenant's key sees that tenant's tools only, a call runs, no key (or a wrong
one) is refused, and one tenant's session id means nothing to another.

Run by runtime/server/tests/all/mcp.rs:

    python tests/mcp/tenants.py --url http://127.0.0.1:PORT/v1/mcp --acme KEY --bolt KEY
"""

import argparse
import asyncio

import httpx2
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "probe", "version": "0"},
    },
}
ACCEPT = {"Accept": "application/json, text/event-stream"}


async def tools_of(url, key):
    client = create_mcp_http_client(headers={"Authorization": f"Bearer {key}"})
    async with client, streamable_http_client(url, http_client=client) as streams:
        async with ClientSession(streams[0], streams[1]) as session:
            await session.initialize()
            listed = await session.list_tools()
            names = sorted(t.name for t in listed.tools)
            called = None
            if "hello__greet" in names:
                result = await session.call_tool("hello__greet", {"name": "mcp"})
                assert not result.is_error, result
                called = result.content[0].text
            return names, called


async def main(a):
    acme_tools, called = await tools_of(a.url, a.acme)
    assert acme_tools == ["hello__greet"], acme_tools
    assert "Hello, mcp!" in called, called
    bolt_tools, _ = await tools_of(a.url, a.bolt)
    assert "hello__greet" not in bolt_tools and bolt_tools, bolt_tools

    async with httpx2.AsyncClient() as plain:
        # A wrong secret: the last digit changed (to another digit, always).
        wrong = a.acme[:-1] + ("1" if a.acme.endswith("0") else "0")
        for headers in ({}, {"Authorization": f"Bearer {wrong}"}, {"Authorization": a.acme}):
            r = await plain.post(a.url, json=INITIALIZE, headers={**ACCEPT, **headers})
            assert r.status_code == 401, (headers, r.status_code, r.text)
            assert "mcp-session-id" not in r.headers, r.headers
        # acme opens a session; bolt's key cannot use it.
        r = await plain.post(
            a.url, json=INITIALIZE, headers={**ACCEPT, "Authorization": f"Bearer {a.acme}"}
        )
        assert r.status_code == 200, (r.status_code, r.text)
        session = r.headers["mcp-session-id"]
        listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
        r = await plain.post(
            a.url,
            json=listing,
            headers={
                **ACCEPT,
                "Authorization": f"Bearer {a.bolt}",
                "mcp-session-id": session,
                "mcp-protocol-version": "2025-06-18",
            },
        )
        assert r.status_code in (400, 404), (r.status_code, r.text)
        assert "hello__greet" not in r.text, r.text
    print("ok")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--acme", required=True)
    p.add_argument("--bolt", required=True)
    asyncio.run(main(p.parse_args()))
