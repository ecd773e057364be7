"""Contracts on the ledger (node/contracts/runtime.py, host.py, execution): deploy, call, query, escrow.

Every failure is a committed transaction with a failed receipt naming the rule: the fee is
charged, the nonce used, and nothing the contract did survives.
"""

from __future__ import annotations

import pytest

from node import crypto, encoding, limits
from node.contracts import runtime
from node.state import contract_key
from node.transactions import CallContract, DeployContract, InvalidTransaction, Transaction, required_fee
from tests.support import keys, make_chain, make_genesis, signer_for

GENESIS = make_genesis(deployers=("alice",))
sign = signer_for(GENESIS)
SOURCE = '''
OWNER = "owner"


def init(owner):
    storage_put(OWNER, owner)
    storage_put("count", 0)


def bump(n):
    if n <= 0:
        revert("n must be positive")
    total = storage_get("count") + n
    storage_put("count", total)
    emit("bumped", {"by": n, "count": total})
    return total


def count():
    return storage_get("count")


def hold(escrow_id, amount):
    escrow_hold(escrow_id, "CNY", amount)


def release(escrow_id, to, amount):
    if caller() != storage_get(OWNER):
        revert("only the owner releases")
    escrow_release(escrow_id, to, amount)


def refund(escrow_id):
    return escrow_refund(escrow_id)


def spin():
    while True:
        pass


def write_then_fail():
    storage_put("count", 999)
    revert("changed my mind")
'''
GAS = 200_000


class Harness:
    def __init__(self) -> None:
        self.chain = make_chain(GENESIS)
        self.nonces: dict[str, int] = {}

    def send(self, name: str, body, fee: int | None = None):
        """Sign, admit and commit one transaction; returns its receipt."""
        nonce = self.nonces.get(name, 0)
        raw = sign(name, nonce, body, fee=fee if fee is not None else 1 + -(-getattr(body, "gas_limit", 0) // 1000))
        self.chain.submit(raw)
        self.nonces[name] = nonce + 1
        committed = self.chain.commit_pending()
        assert len(committed.receipts) == 1
        return committed.receipts[0]

    def deploy(self, name: str = "alice", source: str = SOURCE, args: tuple = (b"",)):
        if args == (b"",):
            args = (keys("alice").address,)
        address = crypto.contract_address(keys(name).address, self.nonces.get(name, 0))
        return address, self.send(name, DeployContract(source, encoding.encode_value(args), GAS))

    def call(self, name: str, contract: bytes, function: str, *args, gas: int = GAS):
        return self.send(name, CallContract(contract, function, encoding.encode_value(tuple(args)), gas))

    def query(self, contract: bytes, function: str, *args):
        head = self.chain.ledger.head
        return runtime.call(self.chain.ledger.state(), bytes(20), contract, function,
                            encoding.encode_value(tuple(args)), limits.contract_query_gas_max, head.height,
                            head.timestamp_ms, read_only=True).value

    def balance(self, name: str) -> int:
        return self.chain.ledger.state().account(keys(name).address).balance_of("CNY")

    def supply_balanced(self) -> bool:
        state = self.chain.ledger.state()
        held = sum(r.balance_of("CNY") for k, r in state.iter_records() if k[:1] == b"\x01")
        return held + state.escrowed().get("CNY", 0) == state.supply("CNY")


@pytest.fixture
def harness() -> Harness:
    return Harness()


def test_deploy_runs_init_and_the_contract_is_readable(harness):
    address, receipt = harness.deploy()
    assert receipt.success and receipt.gas_used > runtime.DEPLOY_GAS_BASE
    assert receipt.events[0].name == "contract_deployed" and receipt.events[0].fields[0] == address
    record = harness.chain.ledger.state().get(contract_key(address))
    assert record.source == SOURCE and record.deployer == keys("alice").address
    assert harness.query(address, "count") == 0


def test_invalid_deploy_without_the_deployer_permission(harness):
    address, receipt = harness.deploy("bob")
    assert not receipt.success and receipt.code == "not_deployer"
    assert harness.chain.ledger.state().get(contract_key(address)) is None
    assert harness.nonces["bob"] == harness.chain.ledger.state().account(keys("bob").address).nonce  # fee paid


def test_invalid_deploy_of_a_forbidden_contract(harness):
    address, receipt = harness.deploy(source="import os\n\ndef f():\n    return 1\n", args=())
    assert not receipt.success and receipt.code == "invalid_contract"
    assert harness.chain.ledger.state().get(contract_key(address)) is None


def test_call_changes_storage_and_emits_events(harness):
    address, _ = harness.deploy()
    receipt = harness.call("bob", address, "bump", 2)
    assert receipt.success and receipt.gas_used > runtime.CALL_GAS_BASE
    assert [e.name for e in receipt.events] == ["bumped"]
    assert encoding.decode_value(receipt.events[0].fields[1], 1024) == {"by": 2, "count": 2}
    assert harness.query(address, "count") == 2


def test_invalid_call_reverts_and_leaves_nothing_behind(harness):
    address, _ = harness.deploy()
    fee_before = harness.balance("bob")
    receipt = harness.call("bob", address, "write_then_fail")
    assert not receipt.success and receipt.code == "reverted" and "changed my mind" in receipt.message
    assert receipt.gas_used > 0 and harness.query(address, "count") == 0
    assert harness.balance("bob") < fee_before  # the fee was charged


def test_invalid_call_runs_out_of_gas(harness):
    address, _ = harness.deploy()
    receipt = harness.call("bob", address, "spin", gas=50_000)
    assert not receipt.success and receipt.code == "out_of_gas" and receipt.gas_used == 50_000


@pytest.mark.parametrize("function, code", [("missing", "unknown_function"), ("init", "init_only_at_deploy")])
def test_invalid_call_of_a_function_that_cannot_be_called(harness, function, code):
    address, _ = harness.deploy()
    receipt = harness.call("bob", address, function, keys("bob").address)
    assert not receipt.success and receipt.code == code


def test_invalid_call_of_an_unknown_contract(harness):
    receipt = harness.call("bob", bytes(20), "bump", 1)
    assert not receipt.success and receipt.code == "unknown_contract"


def test_escrow_holds_releases_and_refunds_and_money_is_conserved(harness):
    address, _ = harness.deploy()
    alice_before, bob_before = harness.balance("alice"), harness.balance("bob")
    assert harness.call("alice", address, "hold", "o1", 500).success
    assert harness.chain.ledger.state().escrowed() == {"CNY": 500} and harness.supply_balanced()
    denied = harness.call("bob", address, "release", "o1", keys("bob").address, 200)
    assert not denied.success and denied.code == "reverted"
    assert harness.call("alice", address, "release", "o1", keys("bob").address, 200).success
    assert harness.call("bob", address, "refund", "o1").success
    assert harness.chain.ledger.state().escrowed() == {} and harness.supply_balanced()
    fees_alice, fees_bob = 2 * 201, 2 * 201  # two contract calls each: minimum fee + one unit per 1,000 gas
    assert harness.balance("alice") == alice_before - 500 + 300 - fees_alice
    assert harness.balance("bob") == bob_before + 200 - fees_bob


@pytest.mark.parametrize("function, args, code", [
    ("hold", ("o1", 10**15), "insufficient_funds"),
    ("refund", ("nope",), "unknown_escrow"),
])
def test_invalid_escrow_operation_moves_no_money(harness, function, args, code):
    address, _ = harness.deploy()
    before = harness.balance("alice")
    receipt = harness.call("alice", address, function, *args)
    assert not receipt.success and receipt.code == code
    assert harness.balance("alice") == before - 201 and harness.supply_balanced()


def test_invalid_fee_below_what_the_gas_limit_needs():
    chain = make_chain(GENESIS)
    body = CallContract(bytes(20), "bump", encoding.encode_value((1,)), 200_000)
    with pytest.raises(InvalidTransaction) as caught:
        chain.submit(sign("alice", 0, body, fee=100))
    assert caught.value.code == "fee_too_low"
    assert required_fee(Transaction("x", bytes(32), 0, "CNY", 0, body), 1) == 201


def test_query_is_read_only(harness):
    address, _ = harness.deploy()
    with pytest.raises(runtime.ContractFailed) as caught:
        harness.query(address, "bump", 1)
    assert caught.value.code == "read_only"
    assert harness.query(address, "count") == 0


def test_a_block_touches_at_most_block_contracts_max_contracts():
    chain = make_chain(GENESIS)
    count = limits.block_contracts_max + 1
    source = "def ping():\n    return 1\n"
    deploys = [sign("alice", nonce, DeployContract(source + "#" + str(nonce) + "\n", encoding.encode_value(()),
                                                   100_000), fee=101) for nonce in range(count)]
    chain.submit(*deploys)
    first = chain.commit_pending()
    assert len(first.receipts) == limits.block_contracts_max  # the last deploy waits for the next block
    second = chain.commit_pending()
    assert len(second.receipts) == 1 and all(r.success for r in first.receipts + second.receipts)
    addresses = [crypto.contract_address(keys("alice").address, nonce) for nonce in range(count)]
    chain.submit(*[sign("bob", nonce, CallContract(address, "ping", encoding.encode_value(()), 10_000), fee=11)
                   for nonce, address in enumerate(addresses)])
    assert len(chain.commit_pending().receipts) == limits.block_contracts_max
    assert len(chain.commit_pending().receipts) == 1
