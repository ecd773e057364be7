"""Hostile HTTP clients of the node's RPC (issue 12): requests a web page of another site could make
(DNS rebinding, cross-origin posts and WebSockets), and bytes no honest client sends. None of them is
served, and none of them is a 5xx."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from tests.support import make_chain, run_async, serve_rpc

STATUS = '{"jsonrpc": "2.0", "method": "node_status", "id": 1}'


async def raw_request(rpc: Any, head: bytes, body: bytes = b"") -> int:
    """Send bytes as they are (no client library to clean them up); the HTTP status of the answer."""
    reader, writer = await asyncio.open_connection(rpc.server.host, rpc.server.port)
    try:
        writer.write(head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()
    return int(status_line.split()[1])


@pytest.mark.parametrize("headers, status", [
    ({"Content-Type": "text/plain"}, 415),
    ({"Content-Type": "application/x-www-form-urlencoded"}, 415),
    ({"Content-Type": "application/json", "Origin": "http://evil.example"}, 403),
    ({"Content-Type": "text/plain", "Origin": "null"}, 403),
    ({"Content-Type": "application/json", "Origin": "https://evil.example"}, 403),
    ({"Content-Type": "application/json", "Host": "evil.example:26657"}, 421),
    ({"Content-Type": "application/json", "Host": "rebound.example"}, 421),
])
@run_async
async def test_invalid_cross_site_calls_are_refused(headers: dict[str, str], status: int) -> None:
    async with serve_rpc(make_chain().ledger) as rpc:
        answer, body = await rpc.post(STATUS, headers=headers)
    assert answer == status and body["error"]["code"] == -32600, body


@run_async
async def test_same_origin_and_configured_names_are_served() -> None:
    async with serve_rpc(make_chain().ledger, hostnames=("node.example",)) as rpc:
        own = f"http://127.0.0.1:{rpc.server.port}"
        for headers in ({"Content-Type": "application/json", "Origin": own},
                        {"Content-Type": "application/json; charset=utf-8"},
                        {"Content-Type": "application/json", "Host": f"localhost:{rpc.server.port}"},
                        {"Content-Type": "application/json", "Host": "NODE.example"},
                        # a browser page served through a TLS proxy for the same host
                        {"Content-Type": "application/json", "Host": "node.example", "Origin": "https://node.example"}):
            status, body = await rpc.post(STATUS, headers=headers)
            assert status == 200 and body["result"]["height"] == 0, (headers, body)


@run_async
async def test_invalid_cross_origin_websocket_is_refused() -> None:
    async with serve_rpc(make_chain().ledger) as rpc:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await rpc.websocket(headers={"Origin": "http://evil.example"})
        assert refused.value.status == 403
        socket = await rpc.websocket(headers={"Origin": f"http://127.0.0.1:{rpc.server.port}"})
        await socket.close()


@pytest.mark.parametrize("extra", [
    b"Authorization: Bearer \xff\xfe\xc3\r\n",
    b"Authorization: Bearer \xc3\xa9\xc3\xa9\r\n",
    b"Content-Type: application/json; charset=bogus\r\n",
    b"Content-Encoding: gzip\r\n",
    b"Content-Encoding: deflate\r\n",
])
@run_async
async def test_invalid_header_bytes_are_never_a_server_error(extra: bytes) -> None:
    async with serve_rpc(make_chain().ledger) as rpc:
        head = (b"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra
                + (b"Content-Type: application/json\r\n" if b"Content-Type" not in extra else b""))
        status = await raw_request(rpc, head, STATUS.encode())
        assert status < 500, status
        answer, body = await rpc.post(STATUS)   # and it keeps serving
        assert answer == 200 and body["result"]["height"] == 0
