"""The validator network: how consensus messages travel between nodes.

Owns the `Network` port consensus talks to (`network.py`: send, broadcast, receive, peers,
with peer events on connect and disconnect) and its py-libp2p implementation (`host.py`:
a libp2p host in its own trio thread, Noise and yamux, the node's ed25519 key as its peer
id, an allowlist of genesis validators and configured full nodes, one persistent stream per
peer, reconnection with backoff, bounded queues between the trio and asyncio threads), and
the length-prefixed framing on those streams (`frames.py`).

trio and py-libp2p are imported here and nowhere else; everything outside this package is
asyncio and sees only the port. Messages are opaque bytes at this layer.
"""
