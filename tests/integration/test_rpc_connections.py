"""Slow and greedy clients of the node's RPC server (issue 12 #3): connections that dribble their headers or
body, idle ones, and one client opening many. Real server on 127.0.0.1, raw sockets, deadlines shortened."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from node.rpc.connections import ConnectionLimits
from tests.support import make_chain, run_async, serve_rpc

HEADER_S = 0.5
IDLE_S = 1.0
BODY_S = 0.5
PER_CLIENT = 4
STATUS = b'{"jsonrpc": "2.0", "method": "node_status", "id": 1}'


def shorten(rpc: Any, connections_max: int = 64) -> None:
    rpc.server.guard.limits = ConnectionLimits(connections_max, PER_CLIENT, HEADER_S, IDLE_S, BODY_S)


async def connect(rpc: Any, source: str = "127.0.0.1") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(rpc.server.host, rpc.server.port, local_addr=(source, 0))


async def closed_after(reader: asyncio.StreamReader, wait_s: float) -> float | None:
    """Seconds until the server closed the connection (reading what it sent), None if still open."""
    started = time.monotonic()
    try:
        while await asyncio.wait_for(reader.read(65536), wait_s):
            pass
    except asyncio.TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return time.monotonic() - started


def request_head(length: int) -> bytes:
    return (b"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % length)


async def call_on(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
    writer.write(request_head(len(STATUS)) + STATUS)
    await writer.drain()
    status = int((await asyncio.wait_for(reader.readline(), 5)).split()[1])
    length = 0
    while (line := await asyncio.wait_for(reader.readline(), 5)) != b"\r\n":
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    await reader.readexactly(length)
    return status


@run_async
async def test_invalid_slow_headers_are_cut_off() -> None:
    async with serve_rpc(make_chain().ledger) as rpc:
        shorten(rpc)
        reader, writer = await connect(rpc)
        writer.write(b"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\n")   # and never the rest
        elapsed = await closed_after(reader, 5)
        writer.close()
        assert elapsed is not None and elapsed < HEADER_S + 2
        assert rpc.server.guard.timed_out == 1


@run_async
async def test_invalid_slow_body_is_answered_408_and_closed() -> None:
    async with serve_rpc(make_chain().ledger) as rpc:
        shorten(rpc)
        reader, writer = await connect(rpc)
        writer.write(request_head(len(STATUS)) + STATUS[:10])
        status_line = await asyncio.wait_for(reader.readline(), 5)
        assert status_line.split()[1] == b"408"
        assert await closed_after(reader, 5) is not None
        writer.close()


@run_async
async def test_idle_connections_are_closed_and_busy_ones_are_not() -> None:
    async with serve_rpc(make_chain().ledger) as rpc:
        shorten(rpc)
        reader, writer = await connect(rpc)
        for _ in range(3):                    # keep-alive requests with gaps shorter than the idle limit
            assert await call_on(reader, writer) == 200
            await asyncio.sleep(IDLE_S / 2)
        elapsed = await closed_after(reader, 5)
        writer.close()
        assert elapsed is not None and elapsed < IDLE_S + 2
        socket = await rpc.websocket()        # a WebSocket is a request being handled: no idle limit
        await asyncio.sleep(IDLE_S * 2)
        await socket.send_str(STATUS.decode())
        assert "result" in json.loads((await socket.receive()).data)
        await socket.close()


@run_async
async def test_invalid_connections_beyond_the_per_client_limit_are_closed_at_once() -> None:
    async with serve_rpc(make_chain().ledger) as rpc:
        shorten(rpc)
        held = [await connect(rpc) for _ in range(PER_CLIENT)]
        extra_reader, extra_writer = await connect(rpc)
        assert await closed_after(extra_reader, 2) is not None
        other_reader, other_writer = await connect(rpc, "127.0.0.2")   # another client is still served
        assert await call_on(other_reader, other_writer) == 200
        assert rpc.server.guard.refused == 1 and rpc.server.guard.per_client["127.0.0.1"] == PER_CLIENT
        for _, writer in [*held, (extra_reader, extra_writer), (other_reader, other_writer)]:
            writer.close()


@run_async
async def test_invalid_connections_beyond_the_total_are_closed_and_slots_come_back() -> None:
    async with serve_rpc(make_chain().ledger) as rpc:
        shorten(rpc, connections_max=PER_CLIENT + 1)
        held = [await connect(rpc) for _ in range(PER_CLIENT)] + [await connect(rpc, "127.0.0.2")]
        late_reader, late_writer = await connect(rpc, "127.0.0.3")
        assert await closed_after(late_reader, 2) is not None
        late_writer.close()
        for _, writer in held:
            writer.close()
        await asyncio.sleep(0.2)
        assert not rpc.server.guard.watches and not rpc.server.guard.per_client
        reader, writer = await connect(rpc, "127.0.0.3")
        assert await call_on(reader, writer) == 200
        writer.close()
