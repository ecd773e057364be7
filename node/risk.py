"""Risk control: the rules every outgoing payment is checked against during execution.

A payment is anything that moves an account's own funds out: a transfer, a withdrawal, the
value it attaches to a contract call or deploy (an order's total), or what a contract pulls
under the allowance the account gave it. Four rules, each named in the rejection:

- `blocked`: an account on the blocklist can neither pay nor be paid;
- `per_tx_limit`: one payment above the limit for the payer's role and the asset;
- `daily_limit`: payments of one UTC day (by block time) above the role's daily limit;
- `velocity_limit`: more than N payments within one window of block time (a window opens with the
  first payment after the previous one closed).

The rules live in one state record that only governance changes; checks run before any
write, and `record_payment` updates the payer's counters only once a payment goes through.
"""

from __future__ import annotations

from node.state import (NO_RISK_RULES, RISK_RULES_KEY, Balance, RiskRules, Spending, State, blocked_key,
                        spending_key)

DAY_MS = 86_400_000


class RiskViolation(Exception):
    """A payment that breaks a risk rule; `code` names the rule."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def rules_of(state: State) -> RiskRules:
    return state.get(RISK_RULES_KEY) or NO_RISK_RULES


def check_not_blocked(state: State, address: bytes, who: str) -> None:
    record = state.get(blocked_key(address))
    if record is not None:
        raise RiskViolation("blocked", f"{who} is on the blocklist ({record.reason or 'no reason given'})")


def check_payment(state: State, payer: bytes, recipient: bytes | None, asset: str, amount: int, time_ms: int) -> None:
    """Raise RiskViolation if `payer` may not pay `amount` of `asset` now (to `recipient`, if one is known)."""
    check_not_blocked(state, payer, "the payer")
    if recipient is not None:
        check_not_blocked(state, recipient, "the recipient")
    rules = rules_of(state)
    if rules == NO_RISK_RULES:
        return
    spending = _current(state.get(spending_key(payer)), time_ms, rules)
    role = state.account(payer).role
    for limit in rules.limits:
        if limit.role != role or limit.asset != asset:
            continue
        if limit.per_tx_max and amount > limit.per_tx_max:
            raise RiskViolation("per_tx_limit", f"{amount} {asset} is above the per-payment limit of "
                                                f"{limit.per_tx_max}")
        spent = _spent(spending, asset)
        if limit.daily_max and spent + amount > limit.daily_max:
            raise RiskViolation("daily_limit", f"{spent} {asset} already paid today; {amount} more would pass the "
                                               f"daily limit of {limit.daily_max}")
    if rules.velocity_payments_max and spending.window_payments >= rules.velocity_payments_max:
        raise RiskViolation("velocity_limit", f"at most {rules.velocity_payments_max} payments per "
                                              f"{rules.velocity_window_ms // 1000} s")


def record_payment(state: State, payer: bytes, asset: str, amount: int, time_ms: int) -> None:
    """Count a payment that went through (only when some rule needs the counters)."""
    rules = rules_of(state)
    if rules == NO_RISK_RULES:
        return
    spending = _current(state.get(spending_key(payer)), time_ms, rules)
    spent = {b.asset: b.amount for b in spending.spent}
    spent[asset] = spent.get(asset, 0) + amount
    state.put(spending_key(payer), Spending(spending.day, tuple(Balance(a, spent[a]) for a in sorted(spent)),
                                            spending.window_start_ms, spending.window_payments + 1))


def _current(spending: Spending | None, time_ms: int, rules: RiskRules) -> Spending:
    """The counters as of `time_ms`: a new day starts from zero, an expired window restarts."""
    day = time_ms // DAY_MS
    if spending is None:
        return Spending(day, (), time_ms, 0)
    spent = spending.spent if spending.day == day else ()
    if time_ms - spending.window_start_ms >= rules.velocity_window_ms:
        return Spending(day, spent, time_ms, 0)
    return Spending(day, spent, spending.window_start_ms, spending.window_payments)


def _spent(spending: Spending, asset: str) -> int:
    for balance in spending.spent:
        if balance.asset == asset:
            return balance.amount
    return 0
