#!/usr/bin/env python3
"""Benchmark the libp2p validator network between two nodes on 127.0.0.1.

Prints one-way throughput (frames/s and MB/s for 2 KB frames, sender paced so that no
frame is dropped) and round-trip latency p50/p99 for small frames (the peer echoes each
frame back). By default both nodes run in this process, so they share one GIL, as the
four validators of a one-machine local network do not; `--two-processes` runs the
receiving node in a child process, the way validators run in production.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from node import limits  # noqa: E402
from node.crypto import KeyPair, hash_bytes  # noqa: E402
from node.p2p.host import LibP2PNetwork  # noqa: E402
from node.p2p.network import Received  # noqa: E402

WAIT_S = 30.0
"""Longest the benchmark waits for any one step (start, a frame) before giving up."""
ECHO = b"echo:"
STOP = b"stop"


def bench_keys(name: str) -> KeyPair:
    return KeyPair.from_seed(hash_bytes(b"paychain-bench-p2p/" + name.encode()))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def make_network(name: str, ports: dict[str, int]) -> LibP2PNetwork:
    peers = [(bench_keys(peer).public_key, f"127.0.0.1:{port}") for peer, port in ports.items()]
    return LibP2PNetwork(bench_keys(name), "127.0.0.1", ports[name], peers)


async def next_frame(net: LibP2PNetwork) -> Received:
    while True:
        item = await asyncio.wait_for(net.receive(), WAIT_S)
        if isinstance(item, Received):
            return item


async def serve_receiver(net: LibP2PNetwork, sender_key: bytes) -> None:
    """Count frames; echo the ones that ask for it; stop on STOP."""
    while (frame := await next_frame(net)).message != STOP:
        if frame.message.startswith(ECHO):
            net.send(sender_key, frame.message)


async def one_way(sender: LibP2PNetwork, receiver_key: bytes, frames: int, frame_bytes: int) -> tuple[float, int]:
    """Send `frames` frames, then an echo request; the echo proves the receiver read them all (in order)."""
    payload = bytes(frame_bytes)
    high_water = limits.p2p_send_queue_frames_max // 2  # pace: never fill the queue, never drop
    started = time.perf_counter()
    for _ in range(frames):
        while sender.stats()["queued_frames"] >= high_water:
            await asyncio.sleep(0.0005)
        sender.send(receiver_key, payload)
    sender.send(receiver_key, ECHO + b"end")
    while (await next_frame(sender)).message != ECHO + b"end":
        pass
    return time.perf_counter() - started, sender.stats()["dropped_frames"]


async def round_trips(sender: LibP2PNetwork, receiver_key: bytes, count: int, frame_bytes: int) -> list[float]:
    samples = []
    for index in range(count):
        message = ECHO + index.to_bytes(8, "big") + bytes(max(0, frame_bytes - len(ECHO) - 8))
        started = time.perf_counter()
        sender.send(receiver_key, message)
        while (await next_frame(sender)).message != message:
            pass
        samples.append(time.perf_counter() - started)
    return samples


async def start(net: LibP2PNetwork) -> asyncio.Task[None]:
    task = asyncio.create_task(net.run())
    await asyncio.wait_for(net.wait_started(), WAIT_S)
    return task


async def wait_linked(net: LibP2PNetwork) -> None:
    deadline = time.monotonic() + WAIT_S
    while not all(peer.connected for peer in net.peers()):
        if time.monotonic() > deadline:
            raise TimeoutError("the two nodes did not connect")
        await asyncio.sleep(0.01)


def run_receiver_process(ports: dict[str, int]) -> None:
    async def main() -> None:
        net = make_network("receiver", ports)
        task = await start(net)
        try:
            await serve_receiver(net, bench_keys("sender").public_key)
        finally:
            await net.close()
            await task

    asyncio.run(main())


async def bench(args: argparse.Namespace) -> None:
    ports = {"sender": free_port(), "receiver": free_port()}
    sender = make_network("sender", ports)
    tasks = [await start(sender)]
    child = None
    if args.two_processes:
        child = multiprocessing.get_context("spawn").Process(target=run_receiver_process, args=(ports,))
        child.start()
    else:
        receiver = make_network("receiver", ports)
        tasks.append(await start(receiver))
        tasks.append(asyncio.create_task(serve_receiver(receiver, bench_keys("sender").public_key)))
    receiver_key = bench_keys("receiver").public_key
    try:
        await wait_linked(sender)
        await one_way(sender, receiver_key, 1_000, args.frame_bytes)  # warm-up
        cpu_started = time.process_time()
        elapsed_s, dropped = await one_way(sender, receiver_key, args.frames, args.frame_bytes)
        cpu_s = time.process_time() - cpu_started
        samples = await round_trips(sender, receiver_key, args.round_trips, args.small_bytes)
    finally:
        sender.send(receiver_key, STOP)
        await asyncio.sleep(0.2)
        if child is not None:
            child.join(WAIT_S)
        await sender.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    report(args, elapsed_s, dropped, cpu_s, samples)


def report(args: argparse.Namespace, elapsed_s: float, dropped: int, cpu_s: float, samples: list[float]) -> None:
    mode = "two processes" if args.two_processes else "one process (shared GIL)"
    rate = args.frames / elapsed_s
    print(f"p2p benchmark, 127.0.0.1, Noise + yamux, {mode}")
    print(f"one-way: {args.frames} frames of {args.frame_bytes} B in {elapsed_s:.2f} s: {rate:,.0f} frames/s, "
          f"{rate * args.frame_bytes / 1e6:.1f} MB/s, dropped {dropped}; "
          f"CPU of {'the sender' if args.two_processes else 'both nodes'} {cpu_s / args.frames * 1e6:.0f} us/frame")
    quantiles = statistics.quantiles(samples, n=100)
    print(f"round trip ({len(samples)} x {args.small_bytes} B): p50 {quantiles[49] * 1e3:.2f} ms, "
          f"p99 {quantiles[98] * 1e3:.2f} ms, max {max(samples) * 1e3:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=20_000, help="frames sent one way")
    parser.add_argument("--frame-bytes", type=int, default=2_048, help="size of a one-way frame")
    parser.add_argument("--round-trips", type=int, default=2_000, help="small frames echoed")
    parser.add_argument("--small-bytes", type=int, default=64, help="size of an echoed frame")
    parser.add_argument("--two-processes", action="store_true", help="run the receiving node in a child process")
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
