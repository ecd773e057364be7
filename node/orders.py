"""Orders of the system orders contract, as the node serves them: read, list by party, follow.

The contract (node/contracts/system/orders.contract) keeps each order in its storage under
("order", order_id) and emits an event at every transition. The node reads orders straight
from that storage, indexes new orders by buyer and by merchant at commit time (so
`order_list` pages without scanning the chain), and turns the events into notifications.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from node import encoding, limits
from node.blocks import Receipt
from node.state import State, contract_storage_key

ORDER_EVENTS = frozenset({"order_created", "order_shipped", "order_completed", "order_canceled", "order_expired",
                          "refund_requested", "order_refunded", "refund_rejected"})
ORDER_STATES = ("created", "shipped", "completed", "canceled", "refund_requested", "refunded", "refund_rejected")


@dataclass(frozen=True, slots=True)
class OrderEvent:
    tx_index: int
    name: str
    order_id: bytes
    buyer: bytes
    merchant: bytes
    data: dict[str, Any]


def order_events(receipts: Sequence[Receipt], orders_contract: bytes | None) -> list[OrderEvent]:
    """The order transitions in a block's receipts, in order."""
    if orders_contract is None:
        return []
    found = []
    for index, receipt in enumerate(receipts):
        for event in receipt.events:
            if event.name in ORDER_EVENTS and len(event.fields) == 2 and event.fields[0] == orders_contract:
                data = encoding.decode_value(event.fields[1], limits.event_field_bytes_max)
                found.append(OrderEvent(index, event.name, data["order_id"], data["buyer"], data["merchant"], data))
    return found


def read_order(state: State, orders_contract: bytes, order_id: bytes) -> dict[str, Any] | None:
    """The contract's record of an order (None if there is no such order)."""
    record = state.get(contract_storage_key(orders_contract, encoding.encode_value(("order", order_id))))
    return None if record is None else encoding.decode_value(record.data, limits.contract_value_bytes_max)
