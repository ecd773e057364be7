"""Per-client cost budgets of the RPC server: a token bucket per client address, charged before a request
runs (STYLE #15), so that one client cannot take the node's CPU from block production or other clients.

A request's price is in *cost units* of roughly one signature check (~70 µs of node CPU), summed over its
calls by the method's own price (signature checks, history rows, contract gas; `node/limits.py` lists the
weights) plus its body bytes. The price is taken from the client's bucket before any call runs; if the
bucket cannot pay, the whole request is refused with "rate limited, retry after N ms". What cannot be known
before the work — the bytes of the answer, e.g. a large block — is charged afterwards and may leave the
bucket in debt, which the client's next requests wait out.

Clients are told apart by IP address (IPv6 by /64 network, the block one host usually owns). Clients that
present the node's admin token or a gateway token are not limited here: the operator named them.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from node import limits


@dataclass(frozen=True, slots=True)
class CallCost:
    """What one call costs before it runs."""

    units: int
    """Cost units (about one signature check each)."""
    txs: int = 0
    """Transactions the call asks the node to check (counted across a batch against `rpc_request_txs_max`)."""


CALL = CallCost(limits.rpc_cost_units_per_call)
"""The price of a call with no weight of its own (and of a call that fails to bind its parameters)."""


def units_of_bytes(size_bytes: int) -> int:
    return size_bytes // limits.rpc_cost_bytes_per_unit


class Bucket:
    """One client's token bucket: refills at `rate_per_s` up to `burst`; may go into debt down to -burst."""

    __slots__ = ("rate_per_s", "burst", "tokens", "updated_s", "clock")

    def __init__(self, rate_per_s: float, burst: float, clock: Callable[[], float]) -> None:
        assert rate_per_s > 0 and burst > 0
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.clock = clock
        self.tokens = burst
        self.updated_s = clock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated_s) * self.rate_per_s)
        self.updated_s = now

    def take(self, units: int) -> int | None:
        """Take `units` if the bucket holds them: None; otherwise take nothing and return the milliseconds
        after which it will (a price above the burst never fits: callers cap a request's price first)."""
        assert 0 <= units <= self.burst, units
        self._refill()
        if self.tokens >= units:
            self.tokens -= units
            return None
        return max(1, math.ceil((units - self.tokens) / self.rate_per_s * 1000))

    def debit(self, units: int) -> None:
        """Charge work already done (the bytes of an answer): the bucket may go into debt, at most one burst."""
        self._refill()
        self.tokens = max(-self.burst, self.tokens - units)


class ClientBudgets:
    """The buckets of the clients seen recently, at most `clients_max` (the least recently seen is forgotten:
    a client that comes back starts with a full bucket, so the bound must exceed the clients one expects)."""

    def __init__(self, rate_per_s: float = limits.rpc_client_cost_units_per_s,
                 burst: float = limits.rpc_client_cost_units_burst,
                 clients_max: int = limits.rpc_clients_tracked_max,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.clients_max = clients_max
        self.clock = clock
        self.buckets: OrderedDict[str, Bucket] = OrderedDict()
        self.refused = 0
        """Requests refused for lack of budget (exported as a metric)."""

    def of(self, remote: str) -> Bucket:
        key = client_key(remote)
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = Bucket(self.rate_per_s, self.burst, self.clock)
            if len(self.buckets) > self.clients_max:
                self.buckets.popitem(last=False)
        else:
            self.buckets.move_to_end(key)
        return bucket


def client_key(remote: str) -> str:
    """The address a budget belongs to: an IPv4 address, or the /64 network of an IPv6 one (a host is
    usually given a whole /64, so one address per request would otherwise buy a fresh bucket each time)."""
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return remote
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
