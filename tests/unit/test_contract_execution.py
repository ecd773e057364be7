"""Contracts on the ledger (node/contracts/runtime.py, host.py, execution): deploy, call, query, escrow,
attached value, approvals and storage pricing.

Every failure is a committed transaction with a failed receipt naming the rule: the fee is
charged, the nonce used, and nothing the contract did survives (the attached value included).
"""

from __future__ import annotations

import pytest

from node import crypto, encoding, limits
from node.contracts import host, runtime
from node.state import allowance_key, contract_key
from node.transactions import (ApproveSpend, CallContract, DeployContract, InvalidTransaction, Transaction,
                               required_fee)
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

    def deploy(self, name: str = "alice", source: str = SOURCE, args: tuple = (b"",),
               value: tuple[str, int] = ("", 0)):
        if args == (b"",):
            args = (keys("alice").address,)
        address = crypto.contract_address(keys(name).address, self.nonces.get(name, 0))
        return address, self.send(name, DeployContract(source, encoding.encode_value(args), GAS, *value))

    def call(self, name: str, contract: bytes, function: str, *args, gas: int = GAS,
             value: tuple[str, int] = ("", 0)):
        """Call `function` from `name`, attaching `value` (asset, amount)."""
        return self.send(name, CallContract(contract, function, encoding.encode_value(tuple(args)), gas, *value))

    def query(self, contract: bytes, function: str, *args):
        head = self.chain.ledger.head
        return runtime.call(self.chain.ledger.state(), bytes(20), contract, function,
                            encoding.encode_value(tuple(args)), limits.contract_query_gas_max, head.height,
                            head.timestamp_ms, read_only=True).value

    def balance(self, name: str) -> int:
        return self.chain.ledger.state().account(keys(name).address).balance_of("CNY")

    def balance_at(self, address: bytes) -> int:
        return self.chain.ledger.state().account(address).balance_of("CNY")

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
    assert harness.call("alice", address, "hold", "o1", 500, value=("CNY", 500)).success
    assert harness.balance_at(address) == 0  # the attached value went on into escrow
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
    ("hold", ("o1", 1), "insufficient_funds"),  # a contract holds in escrow only its own funds
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
    body = CallContract(bytes(20), "bump", encoding.encode_value((1,)), 200_000, "", 0)
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
                                                   100_000, "", 0), fee=101) for nonce in range(count)]
    chain.submit(*deploys)
    first = chain.commit_pending()
    assert len(first.receipts) == limits.block_contracts_max  # the last deploy waits for the next block
    second = chain.commit_pending()
    assert len(second.receipts) == 1 and all(r.success for r in first.receipts + second.receipts)
    addresses = [crypto.contract_address(keys("alice").address, nonce) for nonce in range(count)]
    chain.submit(*[sign("bob", nonce, CallContract(address, "ping", encoding.encode_value(()), 10_000, "", 0), fee=11)
                   for nonce, address in enumerate(addresses)])
    assert len(chain.commit_pending().receipts) == limits.block_contracts_max
    assert len(chain.commit_pending().receipts) == 1


# --- attached value, approvals ---------------------------------------------------------------------

VAULT = '''
def init():
    storage_put("deployed_with", [attached_value(), attached_asset()])


def get(key):
    return storage_get(key)


def receive():
    storage_put("last", [attached_value(), attached_asset(), balance_of(contract_address(), "CNY")])


def receive_then_fail():
    revert("no thanks")


def pull(owner, amount):
    pull_approved(owner, "CNY", amount)
    storage_put("allowance_left", allowance(owner, "CNY"))
'''
HOSTILE = '''
def drain_by_escrow(thief):
    everything = balance_of(caller(), "CNY")
    escrow_hold("loot", "CNY", everything)
    escrow_release("loot", thief, everything)


def drain_by_pull(thief):
    everything = balance_of(caller(), "CNY")
    pull_approved(caller(), "CNY", everything)
    transfer(thief, "CNY", everything)


def take_what_it_can(thief):
    mine = balance_of(contract_address(), "CNY")
    escrow_hold("loot", "CNY", mine)
    escrow_release("loot", thief, mine)
'''


def test_deploy_and_call_move_the_attached_value_to_the_contract_before_it_runs(harness):
    address, deployed = harness.deploy(source=VAULT, args=(), value=("CNY", 70))
    assert deployed.success and harness.query(address, "get", "deployed_with") == [70, "CNY"]
    assert harness.balance_at(address) == 70
    bob_before = harness.balance("bob")
    receipt = harness.call("bob", address, "receive", value=("CNY", 30))
    assert receipt.success and harness.query(address, "get", "last") == [30, "CNY", 100]
    assert [(e.name, e.fields[:2]) for e in receipt.events] == [("transfer", (keys("bob").address, address))]
    assert harness.balance("bob") == bob_before - 30 - 201 and harness.supply_balanced()


def test_invalid_call_moves_no_attached_value_but_charges_the_fee(harness):
    address, _ = harness.deploy(source=VAULT, args=())
    bob_before = harness.balance("bob")
    receipt = harness.call("bob", address, "receive_then_fail", value=("CNY", 30))
    assert not receipt.success and receipt.message == "no thanks"
    assert harness.balance("bob") == bob_before - 201 and harness.balance_at(address) == 0


def test_invalid_attached_value_the_caller_no_longer_holds_moves_nothing(harness):
    address, _ = harness.deploy(source=VAULT, args=())
    state = harness.chain.ledger.state()
    head = harness.chain.ledger.head
    bob = keys("bob").address
    args = encoding.encode_value(())
    with pytest.raises(runtime.ContractFailed) as caught:
        runtime.call(state, bob, address, "receive", args, GAS, head.height + 1, head.timestamp_ms,
                     value=host.AttachedValue("CNY", state.account(bob).balance_of("CNY") + 1))
    fixed = runtime.CALL_GAS_BASE + runtime.ARGS_GAS_PER_BYTE * len(args) + runtime.ATTACHED_VALUE_GAS
    assert caught.value.code == "insufficient_funds" and caught.value.gas_used == fixed
    assert state.changes == {}


def test_invalid_attached_value_in_an_asset_genesis_does_not_define():
    chain = make_chain(GENESIS)
    body = CallContract(bytes(20), "receive", encoding.encode_value(()), 1_000, "XAU", 5)
    with pytest.raises(InvalidTransaction) as caught:
        chain.submit(sign("bob", 0, body, fee=2))
    assert caught.value.code == "unknown_asset" and "'XAU'" in caught.value.message


def test_a_hostile_contract_takes_nothing_but_what_was_attached(harness):
    address, _ = harness.deploy("alice", HOSTILE, ())
    thief = keys("carol").address
    bob_before, thief_before = harness.balance("bob"), harness.balance("carol")
    by_escrow = harness.call("bob", address, "drain_by_escrow", thief, value=("CNY", 10))
    assert not by_escrow.success and by_escrow.code == "insufficient_funds"
    by_pull = harness.call("bob", address, "drain_by_pull", thief)
    assert not by_pull.success and by_pull.code == "allowance_exceeded"
    assert harness.balance("bob") == bob_before - 2 * 201 and harness.balance("carol") == thief_before
    assert harness.call("bob", address, "take_what_it_can", thief, value=("CNY", 10)).success
    assert harness.balance("bob") == bob_before - 3 * 201 - 10 and harness.balance("carol") == thief_before + 10
    assert harness.supply_balanced()


def test_pull_approved_takes_at_most_the_allowance_and_lowers_it(harness):
    vault, _ = harness.deploy(source=VAULT, args=())
    alice = keys("alice").address
    approved = harness.send("alice", ApproveSpend(vault, "CNY", 100))
    assert approved.success and [e.name for e in approved.events] == ["allowance_set"]
    alice_before = harness.balance("alice")
    assert harness.call("bob", vault, "pull", alice, 60).success
    assert harness.query(vault, "get", "allowance_left") == 40 and harness.balance_at(vault) == 60
    assert harness.balance("alice") == alice_before - 60
    beyond = harness.call("bob", vault, "pull", alice, 41)
    assert not beyond.success and beyond.code == "allowance_exceeded"
    assert "allows this contract 40 CNY" in beyond.message
    assert harness.balance("alice") == alice_before - 60 and harness.balance_at(vault) == 60
    assert harness.send("alice", ApproveSpend(vault, "CNY", 0)).success  # 0 revokes: the record is gone
    assert harness.chain.ledger.state().get(allowance_key(alice, vault, "CNY")) is None
    revoked = harness.call("bob", vault, "pull", alice, 1)
    assert not revoked.success and revoked.code == "allowance_exceeded" and harness.supply_balanced()


def test_invalid_approval_of_an_address_without_a_contract(harness):
    receipt = harness.send("alice", ApproveSpend(keys("bob").address, "CNY", 100))
    assert not receipt.success and receipt.code == "unknown_contract"
    assert harness.chain.ledger.state().get(allowance_key(keys("alice").address, keys("bob").address, "CNY")) is None


# --- storage pricing -------------------------------------------------------------------------------

PRICED = '''
def stored():
    return storage_get("k")


def put(size):
    storage_put("k", "x" * size)


def say(size):
    emit("said", "x" * size)


def burn_then_put(rounds, size):
    for i in range(rounds):
        pass
    storage_put("k", "x" * size)
'''


def test_storage_and_events_are_charged_per_byte(harness):
    address, _ = harness.deploy(source=PRICED, args=())
    small, large = harness.call("bob", address, "put", 0), harness.call("bob", address, "put", 1_000)
    stored = large.gas_used - small.gas_used
    assert host.STORAGE_GAS_PER_BYTE * 1_000 <= stored < host.STORAGE_GAS_PER_BYTE * 1_000 + 200, stored
    quiet, loud = harness.call("bob", address, "say", 0), harness.call("bob", address, "say", 1_000)
    emitted = loud.gas_used - quiet.gas_used
    assert host.EVENT_GAS_PER_BYTE * 1_000 <= emitted < host.EVENT_GAS_PER_BYTE * 1_000 + 200, emitted


@pytest.mark.parametrize("rounds", [0, 4_000])
def test_invalid_storage_write_the_gas_limit_cannot_pay(harness, rounds):
    """Out of gas on the write alone (no loop), or on the VM's gas and the write's together (a loop, each part below
    the limit): the whole limit is used and nothing is stored."""
    address, _ = harness.deploy(source=PRICED, args=())
    limit = 20_000
    loop_gas = harness.call("bob", address, "burn_then_put", rounds, 0).gas_used
    size = (limit - loop_gas) // host.STORAGE_GAS_PER_BYTE + 50  # the write costs more than what the loop left
    if rounds:  # each part alone fits the limit (the fixed part is about 500): only their sum does not
        assert loop_gas < limit and host.STORAGE_GAS_PER_BYTE * size < limit - 1_000
    receipt = harness.call("bob", address, "burn_then_put", rounds, size, gas=limit)
    assert not receipt.success and receipt.code == "out_of_gas" and receipt.gas_used == limit
    assert harness.query(address, "stored") == ""  # what the gas-paying call above stored, nothing more
