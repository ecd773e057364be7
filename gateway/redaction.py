"""Payment ids in logs: a payment id is the secret part of a checkout link, so logs keep only its start."""

from __future__ import annotations

import re

PAYMENT_ID_IN_PATH = re.compile(r"(pm_[A-Za-z0-9_-]{4})[A-Za-z0-9_-]+")


def redacted_path(path: str) -> str:
    """The path with payment ids cut to their first characters."""
    return PAYMENT_ID_IN_PATH.sub(r"\1…", path)


def redacted_id(payment_id: str) -> str:
    """A payment id cut to its first characters ("pm_" and four more)."""
    return payment_id[:7] + "…"
