"""Per-client cost budgets (node/rpc/budget.py): the token bucket and how clients are told apart."""

from __future__ import annotations

import pytest

from node.rpc.budget import Bucket, ClientBudgets, client_key


class Clock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def test_a_bucket_pays_up_to_its_burst_then_says_when_it_can_pay_again() -> None:
    clock = Clock()
    bucket = Bucket(rate_per_s=100, burst=500, clock=clock)
    assert bucket.take(300) is None and bucket.take(200) is None
    assert bucket.take(50) == 500            # 50 units at 100 a second: half a second
    assert bucket.tokens == 0                # a refused take takes nothing
    clock.now_s += 0.5
    assert bucket.take(50) is None


def test_a_bucket_refills_no_further_than_its_burst() -> None:
    clock = Clock()
    bucket = Bucket(rate_per_s=100, burst=500, clock=clock)
    clock.now_s += 3600
    assert bucket.take(500) is None and bucket.take(1) is not None


def test_debt_for_work_done_delays_the_next_request_but_is_bounded() -> None:
    clock = Clock()
    bucket = Bucket(rate_per_s=100, burst=500, clock=clock)
    bucket.debit(10_000)                     # an answer far bigger than the burst
    assert bucket.tokens == -500
    assert bucket.take(1) == 5_010           # the debt and the unit, at 100 a second
    clock.now_s += 5.01
    assert bucket.take(1) is None


def test_invalid_price_above_the_burst_is_a_programming_error() -> None:
    """Requests are capped below the burst before they are priced (limits asserts it)."""
    with pytest.raises(AssertionError):
        Bucket(rate_per_s=1, burst=10, clock=Clock()).take(11)


@pytest.mark.parametrize("one, other, same", [
    ("127.0.0.1", "127.0.0.1", True),
    ("127.0.0.1", "127.0.0.2", False),
    ("2001:db8:1:2::1", "2001:db8:1:2:ffff::9", True),      # one /64: one host's addresses
    ("2001:db8:1:2::1", "2001:db8:1:3::1", False),
    ("::ffff:10.0.0.1", "10.0.0.1", True),                  # IPv4 seen through a dual-stack socket
])
def test_clients_are_told_apart_by_address_and_ipv6_network(one: str, other: str, same: bool) -> None:
    assert (client_key(one) == client_key(other)) is same


def test_the_budgets_kept_are_bounded_and_the_least_recent_goes_first() -> None:
    budgets = ClientBudgets(rate_per_s=1, burst=10, clients_max=2, clock=Clock())
    first = budgets.of("10.0.0.1")
    first.take(10)
    budgets.of("10.0.0.2")
    assert budgets.of("10.0.0.1") is first          # seen again: now the most recent
    budgets.of("10.0.0.3")
    assert set(budgets.buckets) == {"10.0.0.1", "10.0.0.3"}
    assert budgets.of("10.0.0.1").take(1) is not None   # still the same, spent bucket
