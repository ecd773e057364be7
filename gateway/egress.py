"""Where the gateway may connect on a merchant's say-so: webhook targets (issue 12, SSRF).

A webhook URL is the merchant's to choose, so without a rule the gateway would POST to whatever it
names: its own admin port, a node's RPC, the cloud metadata address. Webhooks go only to public
addresses: an IP literal in the URL is checked at once, and a name is checked after it resolves,
by the resolver of the webhook session, so a name that resolves to a private address (or is
rebound to one between two attempts) is refused at each connection. Redirects are never followed
(webhooks.py). A local network, where the demo receiver listens on 127.0.0.1, turns the rule off
with the gateway setting `webhooks_to_private_addresses`.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult


def is_public_address(address: str) -> bool:
    """Globally routable unicast: not loopback, private, link-local, shared, reserved or multicast."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def literal_refusal(url: str) -> str | None:
    """Why the URL's host, if it is an IP address, may not be a webhook target (None: fine, or a name)."""
    host = urlsplit(url).hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    return None if is_public_address(host) else f"{host} is not a public address"


class PublicAddressResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver, then keeps only public addresses."""

    def __init__(self) -> None:
        self._inner = aiohttp.DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        addresses = await self._inner.resolve(host, port, family)
        public = [address for address in addresses if is_public_address(address["host"])]
        if not public:
            raise OSError(errno.EACCES, f"{host} resolves to no public address")
        return public

    async def close(self) -> None:
        await self._inner.close()


def webhook_session(connections_max: int, private_allowed: bool) -> aiohttp.ClientSession:
    """The session webhooks are sent with: public addresses only, unless private ones are allowed."""
    resolver = None if private_allowed else PublicAddressResolver()
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections_max, resolver=resolver))
