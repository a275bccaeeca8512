"""A plugin built with the Python or JavaScript kit, served by `warden mcp`
over stdio, through the official MCP client: run by
runtime/cli/tests/all/kits.rs.

    python tests/kits/mcp_kit.py --warden W --plugin P.wasm --data-dir D
"""

import argparse
import asyncio

from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client


def text(result):
    return result.content[0].text if result.content else ""


async def main(a):
    params = StdioServerParameters(
        command=a.warden,
        args=["mcp", "--plugin", a.plugin],
        env={"WARDEN_DATA_DIR": a.data_dir},
    )
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = {t.name: t for t in (await session.list_tools()).tools}
            greet = tools.get(f"{a.name}__greet")
            assert greet is not None, sorted(tools)
            assert greet.input_schema["required"] == ["name"], greet.input_schema
            assert greet.description.startswith("Greets someone by name"), greet.description

            ok = await session.call_tool(f"{a.name}__greet", {"name": "Ada", "excited": True})
            assert not ok.is_error, ok
            assert '"Hello, Ada!"' in text(ok), text(ok)

            bad = await session.call_tool(f"{a.name}__greet", {"name": 7})
            assert bad.is_error, bad
            assert "name: expected a string, got an integer" in text(bad), text(bad)

            crash = await session.call_tool(f"{a.name}__crash", {"how": "zero"})
            assert crash.is_error, crash
            assert text(crash).startswith("failed: crash: "), text(crash)

            # The server survives all of it.
            again = await session.call_tool(f"{a.name}__greet", {"name": "Bo"})
            assert '"Hello, Bo."' in text(again), text(again)
    print("mcp kit: ok")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--warden", required=True)
    p.add_argument("--plugin", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--data-dir", required=True)
    asyncio.run(main(p.parse_args()))
