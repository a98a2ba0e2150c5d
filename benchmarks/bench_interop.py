"""Interop (issue 13): the MCP server and the OpenAPI exports.

MCP, with the SDK's own client against ``willo-connector mcp --dry-run`` run as a
subprocess (stdio and streamable HTTP): the tool count, the time from spawning the
server to an initialized session, and ``tools/list`` as a ratio to ``ping`` on the
same session (the transport's round trip), medians of many calls.

OpenAPI: the size of each export (bytes, as the CLI writes it), the time to build it,
and whether openapi-spec-validator accepts it.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
import warnings
from typing import Any

import anyio
from common import cli

REPEAT = 30
# ping is a handshake-era method (the sessions below use that era, as desktop clients do)
warnings.filterwarnings("ignore", message="ping is removed")


async def _timings(client: Any) -> dict[str, float]:
    pings, lists = [], []
    count = 0
    for _ in range(REPEAT):
        t0 = time.perf_counter()
        await client.send_ping()
        pings.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        count = len((await client.list_tools()).tools)
        lists.append(time.perf_counter() - t0)
    ping, listing = statistics.median(pings), statistics.median(lists)
    return {
        "tools": count,
        "ping (ms)": ping * 1e3,
        "tools/list (ms)": listing * 1e3,
        "tools/list / ping": listing / ping,
    }


def stdio() -> dict[str, float]:
    from mcp import Client, StdioServerParameters
    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(
        command=cli()[0], args=[*cli()[1:], "mcp", "--dry-run"], env=dict(os.environ)
    )

    async def run() -> dict[str, float]:
        t0 = time.perf_counter()
        with open(os.devnull, "w") as err:
            async with Client(stdio_client(params, errlog=err), mode="legacy") as client:
                ready = time.perf_counter() - t0
                return {"spawn to initialized (s)": ready, **await _timings(client)}

    return anyio.run(run)


def http() -> dict[str, float]:
    from mcp import Client

    proc = subprocess.Popen(
        [*cli(), "mcp", "--dry-run", "--http", "127.0.0.1:0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        url = re.search(r"(http://\S+/mcp)", line)
        assert url, line

        async def run() -> dict[str, float]:
            async with Client(url.group(1), mode="legacy") as client:
                return await _timings(client)

        return anyio.run(run)
    finally:
        proc.terminate()
        proc.wait(10)


def exports() -> dict[str, Any]:
    from openapi_spec_validator import validate

    from connector.catalog.index import get_catalog
    from connector.http.client import Settings
    from connector.interop import openapi

    catalog, settings = get_catalog(), Settings.from_env()
    out: dict[str, Any] = {}
    for label, build in (("3.1", openapi.document), ("swagger 2.0", openapi.swagger2)):
        t0 = time.perf_counter()
        doc = build(catalog, settings)
        built = time.perf_counter() - t0
        t0 = time.perf_counter()
        try:
            validate(doc)
            verdict = "valid"
        except Exception as exc:  # report, do not hide
            verdict = f"INVALID: {exc}"
        checked = time.perf_counter() - t0
        for fmt in ("json", "yaml"):
            text = subprocess.run(
                [*cli(), "export", "openapi", "--format", fmt, *(["--swagger2"] if label != "3.1" else [])],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            out[f"{label} {fmt} (bytes)"] = len(text.encode())
        paths = doc["paths"].values()
        out[f"{label} operations"] = sum(
            1 for item in paths for k in item if k in ("get", "post", "put", "patch", "delete")
        )
        out[f"{label} build (ms)"] = built * 1e3
        out[f"{label} validation"] = f"{verdict} ({checked * 1e3:.0f} ms)"
    out["not expressible (3.1)"] = [
        i["id"] for i in openapi.document(catalog, settings)["x-willo-not-expressible"]
    ]
    return out


def main() -> dict[str, Any]:
    os.environ.setdefault("WILLO_RATE_LIMIT", "0")
    figures: dict[str, Any] = {}
    figures.update({f"stdio {k}": v for k, v in stdio().items()})
    figures.update({f"http {k}": v for k, v in http().items()})
    figures.update(exports())
    for k, v in figures.items():
        print(f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}")
    return figures


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
