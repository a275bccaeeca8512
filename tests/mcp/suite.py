"""Drives `warden mcp` with the official MCP Python SDK, over stdio or
streamable HTTP, and asserts on what a real client sees.

Run by runtime/cli/tests/all/mcp.rs; by hand:

    python tests/mcp/suite.py --transport stdio --warden target/debug/warden \
        --hello H.wasm --fs FS.wasm --hostile X.wasm --data DIR --canary FILE
"""

import argparse
import asyncio
import os
import re
import subprocess
import sys
import threading
import time

import httpx2
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


def server_args(a):
    return [
        "mcp",
        "--plugin", a.hello,
        "--plugin", a.fs,
        "--plugin", a.hostile,
        "--dir", f"{a.data}::/data",
        "--timeout", "2000",
        "--memory", "64",
        "--max-concurrent", "8",
    ]


def text(result):
    return result.content[0].text if result.content else ""


async def scenario(session):
    init = await session.initialize()
    assert init.server_info.name == "warden", init.server_info

    # Every tool of every plugin, qualified by plugin, and nothing else: no
    # tool that could change a grant.
    listed = (await session.list_tools()).tools
    names = {t.name for t in listed}
    expected = {
        "hello__greet",
        "fs__read_file", "fs__write_file", "fs__list_dir", "fs__stat", "fs__search",
    }
    assert expected <= names, names
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{1,64}", n) for n in names), names
    assert all(n.split("__")[0] in ("hello", "fs", "hostile") for n in names), names
    for tool in listed:
        assert tool.description, tool
        assert tool.input_schema.get("type") == "object", tool
    greet = next(t for t in listed if t.name == "hello__greet")
    assert greet.input_schema["required"] == ["name"], greet.input_schema

    # A result, with structured content.
    r = await session.call_tool("hello__greet", {"name": "mcp"})
    assert not r.is_error, r
    assert r.structured_content == {"message": "Hello, mcp!"}, r

    # A tool error is a tool result with isError and the message.
    r = await session.call_tool("hello__greet", {"name": ""})
    assert r.is_error, r
    assert text(r).startswith("invalid-arguments: "), text(r)

    # Files: the granted dir works, anything else is denied, the canary
    # outside every grant is never read.
    r = await session.call_tool("fs__read_file", {"path": "/data/ok.txt"})
    assert not r.is_error and r.structured_content["content"] == "inside", r
    r = await session.call_tool("fs__read_file", {"path": "/etc/passwd"})
    assert r.is_error and text(r).startswith("denied: "), r
    r = await session.call_tool("hostile__read", {"path": CANARY_PATH})
    assert r.is_error, r
    assert CANARY not in text(r), text(r)
    r = await session.call_tool("fs__write_file", {"path": "/data/x.txt", "content": "no"})
    assert r.is_error and text(r).startswith("denied: "), r

    # Limits come back as tool errors that name the limit.
    r = await session.call_tool("hostile__alloc", {"mib": 100})
    assert r.is_error and text(r).startswith("limit exceeded: memory"), text(r)
    r = await session.call_tool("hostile__spin", {})
    assert r.is_error and text(r).startswith("limit exceeded: deadline"), text(r)

    # The server stays up after a guest traps.
    r = await session.call_tool("hostile__panic", {})
    assert r.is_error and "trapped" in text(r), text(r)
    r = await session.call_tool("hello__greet", {"name": "still here"})
    assert not r.is_error, r

    # An unknown tool is a protocol error, not a tool result.
    try:
        await session.call_tool("nope__nothing", {})
    except Exception as e:  # the SDK raises its protocol error type
        assert "unknown tool" in str(e), e
    else:
        raise AssertionError("unknown tool did not raise")
    # A tool called by its bare name or as plugin.tool is pointed to its
    # qualified name.
    for spelled in ("greet", "hello.greet"):
        try:
            await session.call_tool(spelled, {"name": "x"})
        except Exception as e:
            assert 'did you mean "hello__greet"?' in str(e), e
        else:
            raise AssertionError(f"{spelled} did not raise")

    # Concurrent calls each get a sandbox: a quick call started after a slow
    # one finishes first.
    done = []

    async def run(name, args, label):
        r = await session.call_tool(name, args)
        done.append((label, r))

    slow = asyncio.create_task(run("hostile__sleep", {"ms": 1500}, "slow"))
    await asyncio.sleep(0.2)
    quick = [asyncio.create_task(run("hello__greet", {"name": str(i)}, f"quick{i}")) for i in range(4)]
    await asyncio.gather(slow, *quick)
    order = [label for label, _ in done]
    assert order[-1] == "slow", order
    assert all(not r.is_error for _, r in done), done


async def main(a):
    if a.transport == "stdio":
        params = StdioServerParameters(
            command=a.warden, args=server_args(a), env={"WARDEN_DATA_DIR": a.data_dir}
        )
        async with stdio_client(params) as streams:
            async with ClientSession(streams[0], streams[1]) as session:
                await scenario(session)
    else:
        env = dict(os.environ, WARDEN_DATA_DIR=a.data_dir)
        proc = subprocess.Popen(
            [a.warden, *server_args(a), "--http", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        try:
            url, token = await asyncio.to_thread(read_url, proc)
            # Keep draining the server's log so it never blocks on a full pipe.
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            await refused_without_the_token(url, token)
            client = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
            async with client, streamable_http_client(url, http_client=client) as streams:
                async with ClientSession(streams[0], streams[1]) as session:
                    await scenario(session)
            # Nothing but protocol on stdout in any mode; here, nothing at all.
            proc.terminate()
            out, _ = proc.communicate(timeout=10)
            assert out == "", out
            assert proc.returncode == 0, proc.returncode
        finally:
            if proc.poll() is None:
                proc.kill()


async def refused_without_the_token(url, token):
    """No session without the bearer token: not with none, not with a wrong
    one, not with a forged loopback Host header."""
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "intruder", "version": "0"},
        },
    }
    accept = {"Accept": "application/json, text/event-stream"}
    async with httpx2.AsyncClient() as plain:
        for headers in (
            {},
            {"Authorization": f"Bearer {token[:-1]}x"},
            {"Authorization": token},
            {"Host": "localhost"},
        ):
            r = await plain.post(url, json=initialize, headers={**accept, **headers})
            assert r.status_code == 401, (headers, r.status_code, r.text)
            assert "mcp-session-id" not in r.headers, r.headers


def read_url(proc):
    """The URL and the bearer token warden prints at start."""
    deadline = time.time() + 60
    url = None
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            raise AssertionError(f"warden exited early ({proc.poll()})")
        m = re.search(r"(http://\S+/mcp)", line)
        if m:
            url = m.group(1)
        m = re.search(r"Authorization: Bearer ([0-9a-f]{64})", line)
        if m and url:
            return url, m.group(1)
    raise AssertionError("warden did not print its URL and token")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--transport", choices=["stdio", "http"], required=True)
    p.add_argument("--warden", required=True)
    p.add_argument("--hello", required=True)
    p.add_argument("--fs", required=True)
    p.add_argument("--hostile", required=True)
    p.add_argument("--data", required=True, help="a directory holding ok.txt (\"inside\")")
    p.add_argument("--canary", required=True, help="a file outside --data that must never be read")
    p.add_argument("--data-dir", required=True, help="warden's data dir")
    args = p.parse_args()
    CANARY_PATH = args.canary
    with open(args.canary) as f:
        CANARY = f.read()
    asyncio.run(main(args))
    print(f"mcp suite ({args.transport}): ok")
