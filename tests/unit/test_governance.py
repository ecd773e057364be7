"""Governance (node/governance.py) and the risk rules it sets (node/risk.py), on a real ledger.

Four validators, so 2f+1 = 3 operator approvals enact a proposal; every rule that refuses a
proposal, an approval or a payment names itself in the receipt.
"""

from __future__ import annotations

import pytest

from node import encoding, governance, limits
from node.contracts import system
from node.state import VALIDATOR_EPOCHS_KEY, RiskLimit, RiskRules, ValidatorInfo, deployer_key, proposal_key
from node.storage.chain import ChainStore
from node.transactions import (AddValidator, CallContract, DeployContract, GovernanceApprove, GovernancePropose,
                               InvalidTransaction, RemoveValidator, Role, SetBlocked, SetDeployer, SetMinFee,
                               SetRiskRules, Transfer, transaction_hash)
from node import blocks
from node.blocks import InvalidBlock
from tests.support import certify, keys, make_chain, make_genesis, signer_for

OPERATORS = [f"validator-{i}" for i in range(4)]
USERS = {name: {"CNY": 1_000_000} for name in ["alice", "bob", "carol"] + OPERATORS}


class Chain:
    def __init__(self, validators: int = 4) -> None:
        genesis = make_genesis(users=USERS, validators=validators, orders=(100, 3, 5))
        self.chain = make_chain(genesis)
        self.sign = signer_for(genesis)
        self.nonces: dict[str, int] = {}

    def signed(self, name: str, body, fee: int = 1) -> bytes:
        """`body` signed by `name` with its next nonce."""
        nonce = self.nonces.get(name, 0)
        self.nonces[name] = nonce + 1
        return self.sign(name, nonce, body, fee=fee)

    def send(self, name: str, body, fee: int = 1):
        self.chain.submit(self.signed(name, body, fee))
        committed = self.chain.commit_pending()
        return committed.receipts[0], committed.envelopes[0].hash

    def enact(self, action, voting_blocks: int = 10) -> bytes:
        """Propose with operator 0 and approve with 1, 2, … until the approvals reach 2f+1 and enact it."""
        receipt, proposal_id = self.send("validator-0", GovernancePropose(action, voting_blocks))
        assert receipt.success, receipt.message
        for operator in range(1, limits.validators_max):
            if receipt.events[-1].name == "proposal_executed":
                return proposal_id
            receipt, _ = self.send(f"validator-{operator}", GovernanceApprove(proposal_id))
            assert receipt.success, receipt.message
        raise AssertionError("the proposal was never enacted")

    def enact_in_one_block(self, action) -> None:
        """Propose and approve in one block, with just the 2f+1 operators of the set certifying it."""
        needed = blocks.quorum_size(len(self.chain.ledger.validator_keys))
        proposal = self.signed("validator-0", GovernancePropose(action, 10))
        approvals = [self.signed(f"validator-{i}", GovernanceApprove(transaction_hash(proposal)))
                     for i in range(1, needed)]
        self.chain.submit(proposal, *approvals)
        receipts = self.chain.commit_pending().receipts
        assert all(r.success for r in receipts) and receipts[-1].events[-1].name == "proposal_executed", receipts

    def pay(self, name: str, amount: int, to: str = "bob"):
        return self.send(name, Transfer(keys(to).address, "CNY", amount))[0]

    def record(self, proposal_id: bytes):
        return self.chain.ledger.state().get(proposal_key(proposal_id))


@pytest.fixture
def chain() -> Chain:
    return Chain()


def test_two_thirds_plus_one_operators_enact_a_proposal(chain):
    rules = RiskRules((RiskLimit(int(Role.USER), "CNY", 1_000, 0),), 0, 0)
    receipt, proposal_id = chain.send("validator-0", GovernancePropose(SetRiskRules(rules), 10))
    assert receipt.success and chain.record(proposal_id).status == governance.OPEN
    chain.send("validator-3", GovernanceApprove(proposal_id))
    assert chain.record(proposal_id).status == governance.OPEN  # two of four: not yet
    assert chain.pay("alice", 1_500).success
    receipt, _ = chain.send("validator-1", GovernanceApprove(proposal_id))
    assert receipt.success and chain.record(proposal_id).status == governance.EXECUTED
    refused = chain.pay("alice", 1_500)
    assert not refused.success and refused.code == "per_tx_limit"


@pytest.mark.parametrize("who, code", [("alice", "not_operator")])
def test_invalid_proposal_from_a_non_operator(chain, who, code):
    receipt, _ = chain.send(who, GovernancePropose(SetDeployer(keys("carol").address, True), 10))
    assert not receipt.success and receipt.code == code


def test_invalid_approvals(chain):
    _, proposal_id = chain.send("validator-0", GovernancePropose(SetDeployer(keys("carol").address, True), 3))
    twice, _ = chain.send("validator-0", GovernanceApprove(proposal_id))
    assert not twice.success and twice.code == "already_approved"
    stranger, _ = chain.send("alice", GovernanceApprove(proposal_id))
    assert not stranger.success and stranger.code == "not_operator"
    unknown, _ = chain.send("validator-1", GovernanceApprove(b"\x01" * 32))
    assert not unknown.success and unknown.code == "unknown_proposal"
    late, _ = chain.send("validator-1", GovernanceApprove(proposal_id))  # voting closed 3 blocks after it opened
    assert not late.success and late.code == "proposal_expired"
    record = chain.record(proposal_id)
    assert governance.status_of(record, chain.chain.ledger.head.height) == "expired"
    assert chain.chain.ledger.state().get(deployer_key(keys("carol").address)) is None


def test_approving_an_executed_proposal_is_refused(chain):
    proposal_id = chain.enact(SetDeployer(keys("carol").address, True))
    again, _ = chain.send("validator-3", GovernanceApprove(proposal_id))
    assert not again.success and again.code == "proposal_closed"


def test_deployer_permission_granted_by_governance(chain):
    source = "def hello():\n    return 1\n"
    denied, _ = chain.send("carol", DeployContract(source, encoding.encode_value(()), 100_000, "", 0), fee=101)
    assert not denied.success and denied.code == "not_deployer"
    chain.enact(SetDeployer(keys("carol").address, True))
    deployed, _ = chain.send("carol", DeployContract(source, encoding.encode_value(()), 100_000, "", 0), fee=101)
    assert deployed.success


def test_blocklist_stops_paying_and_being_paid(chain):
    chain.enact(SetBlocked(keys("bob").address, True, "sanctions screening"))
    paid_to = chain.pay("alice", 10, to="bob")
    assert not paid_to.success and paid_to.code == "blocked" and "recipient" in paid_to.message
    paid_by = chain.pay("bob", 10, to="alice")
    assert not paid_by.success and paid_by.code == "blocked" and "sanctions screening" in paid_by.message
    chain.enact(SetBlocked(keys("bob").address, False, ""))
    assert chain.pay("alice", 10, to="bob").success


def test_daily_and_velocity_limits(chain):
    chain.enact(SetRiskRules(RiskRules((RiskLimit(int(Role.USER), "CNY", 0, 2_000),), 3, 5_000)))
    assert chain.pay("alice", 900).success and chain.pay("alice", 900).success
    daily = chain.pay("alice", 900)
    assert not daily.success and daily.code == "daily_limit"
    assert chain.pay("carol", 1).success and chain.pay("carol", 1).success and chain.pay("carol", 1).success
    fast = chain.pay("carol", 1)
    assert not fast.success and fast.code == "velocity_limit"
    for _ in range(5):  # each test block is one second later: the 5-second window closes
        chain.pay("bob", 1, to="alice")
    assert chain.pay("carol", 1).success


def test_risk_limits_apply_to_order_payments(chain):
    chain.enact(SetRiskRules(RiskRules((RiskLimit(int(Role.USER), "CNY", 1_000, 0),), 0, 0)))
    contract = chain.chain.ledger.params.contract(system.ORDERS)
    chain.send("merchant", CallContract(contract, "catalog_add", encoding.encode_value(
        ("tv", "Television", 5_000, "CNY", 5, 1)), 50_000, "", 0), fee=51)
    order = CallContract(contract, "create_order", encoding.encode_value(
        (keys("merchant").address, "tv", 1, 5_000, "CNY")), 50_000, "CNY", 5_000)
    receipt, _ = chain.send("alice", order, fee=51)
    assert not receipt.success and receipt.code == "per_tx_limit"
    assert chain.chain.ledger.state().escrowed() == {}


def test_min_fee_set_by_governance(chain):
    chain.enact(SetMinFee("CNY", 5))
    with pytest.raises(InvalidTransaction) as caught:
        chain.chain.submit(chain.sign("alice", chain.nonces.get("alice", 0), Transfer(keys("bob").address, "CNY", 1),
                                      fee=1))
    assert caught.value.code == "fee_too_low"
    assert chain.send("alice", Transfer(keys("bob").address, "CNY", 1), fee=5)[0].success


@pytest.mark.parametrize("action, code", [
    (SetMinFee("XAU", 5), "unknown_asset"),
    (SetRiskRules(RiskRules((RiskLimit(int(Role.USER), "XAU", 1, 1),), 0, 0)), "unknown_asset"),
])
def test_invalid_action_against_the_chain(chain, action, code):
    receipt, _ = chain.send("validator-0", GovernancePropose(action, 10))
    assert not receipt.success and receipt.code == code


@pytest.mark.parametrize("body, code", [
    (GovernancePropose(SetDeployer(bytes(20), True), 0), "zero_voting_blocks"),
    (GovernancePropose(SetRiskRules(RiskRules((RiskLimit(0, "CNY", 1, 1),), 0, 0)), 5), "unknown_role"),
    (GovernancePropose(SetRiskRules(RiskRules((RiskLimit(1, "CNY", 1, 1), RiskLimit(1, "CNY", 2, 2)), 0, 0)), 5),
     "duplicate_limit"),
    (GovernancePropose(SetRiskRules(RiskRules((), 5, 0)), 5), "zero_window"),
])
def test_invalid_proposal_shape(chain, body, code):
    with pytest.raises(InvalidTransaction) as caught:
        chain.chain.submit(chain.sign("validator-0", 0, body))
    assert caught.value.code == code


def test_validator_set_changes_at_a_defined_height(chain):
    newcomer = keys("validator-4")
    info = ValidatorInfo("v4", newcomer.public_key, int(Role.USER), "127.0.0.1:1")
    ledger = chain.chain.ledger
    assert len(ledger.validator_keys) == 4
    chain.enact(AddValidator(info))
    enacted_at = ledger.head.height
    state = ledger.state()
    assert len(state.validators_at(enacted_at + 1)) == 4  # the next block is still certified by four
    assert state.validators_at(enacted_at + limits.validator_change_delay_blocks)[-1] == info
    assert newcomer.public_key in [v.public_key for v in ledger.known_validators]
    chain.pay("alice", 1)  # block enacted_at + 1, certified by the four
    assert len(ledger.validator_keys) == 5  # the next one needs the five: 2f+1 = 4 signatures
    assert len(ledger.store.get_certificate(ledger.head.height).signatures) == 3
    assert chain.pay("alice", 1).success
    assert len(ledger.store.get_certificate(ledger.head.height).signatures) == 4
    assert governance.approvals_needed(ledger.state(), ledger.head.height + 1) == 4
    with pytest.raises(InvalidBlock, match="needs 4"):  # three signatures no longer make a block final
        block = ledger.store.get_block(ledger.head.height)
        blocks.verify_certificate(certify(block, [keys(f"validator-{i}") for i in range(3)], ledger.signing_domain),
                                  block.header, ledger.signing_domain, ledger.validator_keys)


def test_invalid_validator_changes(chain):
    existing = ValidatorInfo("again", keys("validator-1").public_key, int(Role.USER), "127.0.0.1:1")
    receipt, _ = chain.send("validator-0", GovernancePropose(AddValidator(existing), 10))
    assert not receipt.success and receipt.code == "already_validator"
    receipt, _ = chain.send("validator-0", GovernancePropose(RemoveValidator(keys("stranger").public_key), 10))
    assert not receipt.success and receipt.code == "not_validator"
    with pytest.raises(InvalidTransaction) as caught:
        chain.chain.submit(chain.sign("validator-0", chain.nonces["validator-0"], GovernancePropose(
            AddValidator(ValidatorInfo("", keys("x").public_key, int(Role.USER), "")), 10)))
    assert caught.value.code == "incomplete_validator"


def newcomer(number: int) -> ValidatorInfo:
    """Validator `validator-<number>`, with an address of a realistic length."""
    return ValidatorInfo(f"v{number}", keys(f"validator-{number}").public_key, int(Role.USER),
                         f"validator-{number}.payments.example.com:26656")


def test_removed_validator_is_no_longer_an_operator(chain):
    chain.enact(AddValidator(newcomer(4)))
    chain.enact(RemoveValidator(keys("validator-3").public_key))  # approved by four of the five
    chain.pay("alice", 1)
    chain.pay("alice", 1)  # now validators 0, 1, 2 and 4 certify
    assert chain.chain.ledger.validator_keys == tuple(keys(f"validator-{i}").public_key for i in (0, 1, 2, 4))
    receipt, _ = chain.send("validator-3", GovernancePropose(SetDeployer(keys("carol").address, True), 10))
    assert not receipt.success and receipt.code == "not_operator"


@pytest.mark.parametrize("address", ["not-a-multiaddr", "/ip4/1.2.3.4/tcp/1", "host:99999", ":1", "a b:1"])
def test_invalid_validator_address(chain, address):
    info = ValidatorInfo("v4", keys("validator-4").public_key, int(Role.USER), address)
    with pytest.raises(InvalidTransaction) as caught:
        chain.chain.submit(chain.sign("validator-0", 0, GovernancePropose(AddValidator(info), 10)))
    assert caught.value.code == "bad_p2p_address"


def test_invalid_removal_below_four_validators(chain):
    receipt, _ = chain.send("validator-0", GovernancePropose(RemoveValidator(keys("validator-3").public_key), 10))
    assert not receipt.success and receipt.code == "too_few_validators" and "at least 4" in receipt.message
    assert len(chain.chain.ledger.validator_keys) == 4


def test_invalid_second_removal_once_the_first_leaves_four(chain):
    """Each approval checks the set as already scheduled: two removals proposed from five cannot both pass."""
    chain.enact(AddValidator(newcomer(4)))
    chain.pay("alice", 1)
    _, first = chain.send("validator-0", GovernancePropose(RemoveValidator(keys("validator-4").public_key), 10))
    _, second = chain.send("validator-0", GovernancePropose(RemoveValidator(keys("validator-3").public_key), 10))
    for operator in ("validator-1", "validator-2", "validator-3"):
        receipt, _ = chain.send(operator, GovernanceApprove(first))
    assert receipt.events[-1].name == "proposal_executed"
    refused, _ = chain.send("validator-1", GovernanceApprove(second))
    assert not refused.success and refused.code == "too_few_validators"
    chain.pay("alice", 1)
    assert len(chain.chain.ledger.validator_keys) == 4


def test_invalid_removal_from_a_single_validator_chain_that_grew():
    """The single-validator dev chain may add validators, but governance never removes any below four."""
    chain = Chain(validators=1)
    chain.enact(AddValidator(newcomer(1)))  # one operator is 2f+1 of one: enacted at once
    chain.pay("alice", 1)
    chain.pay("alice", 1)
    assert len(chain.chain.ledger.validator_keys) == 2
    receipt, _ = chain.send("validator-0", GovernancePropose(RemoveValidator(keys("validator-1").public_key), 10))
    assert not receipt.success and receipt.code == "too_few_validators"


VALIDATOR_CHANGES = 70
"""More validator-set changes than the 64 the state once kept."""


def test_validator_set_of_every_height_survives_many_changes(chain):
    """After many changes the set that certified each block is still known: every stored certificate
    verifies against it, a fresh node syncing from genesis accepts every block, and a restart keeps it all."""
    ledger = chain.chain.ledger
    certified_by: dict[int, tuple[bytes, ...]] = {}
    for change in range(VALIDATOR_CHANGES):  # add validator-4, remove it, add validator-5, remove it, …
        number = 4 + change // 2
        certified_by[ledger.head.height + 1] = ledger.validator_keys
        chain.enact_in_one_block(AddValidator(newcomer(number)) if change % 2 == 0
                                 else RemoveValidator(keys(f"validator-{number}").public_key))
    for _ in range(limits.validator_change_delay_blocks):  # until the last change is in force
        certified_by[ledger.head.height + 1] = ledger.validator_keys
        chain.pay("alice", 1)
    assert sorted(certified_by) == list(range(1, ledger.head.height + 1))
    assert len(set(certified_by.values())) == VALIDATOR_CHANGES // 2 + 1  # genesis' four, and each newcomer's five
    assert len(ledger.state().get(VALIDATOR_EPOCHS_KEY).epochs) <= limits.validator_epochs_in_state_max

    store = ledger.store
    fresh = make_chain(store.genesis)
    for height, validator_keys in certified_by.items():
        assert tuple(v.public_key for v in store.validators_at(height)) == validator_keys, height
        block, certificate = ledger.certified_block(height)
        blocks.verify_certificate(certificate, block.header, ledger.signing_domain, validator_keys)
        fresh.ledger.commit(block, certificate)  # checks the certificate against the set of its height
    assert fresh.ledger.head == ledger.head

    reopened = ChainStore(store.kv, store.genesis)  # a restart
    assert reopened.load_state().root == ledger.committed.root
    for height, validator_keys in certified_by.items():
        for answering in (reopened, fresh.ledger.store):
            assert tuple(v.public_key for v in answering.validators_at(height)) == validator_keys, height
    assert store.validators_at(0) == store.genesis.params.validators
