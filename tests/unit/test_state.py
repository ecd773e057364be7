"""Ledger state (node/state.py): records, the copy-on-write view, the state root and account proofs."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from hypothesis import given, settings, strategies as st

from node import crypto, encoding, limits
from node.state import (EMPTY_ACCOUNT, StaleStateView, EMPTY_SUBTREE, RECHARGE_PENDING, RECHARGE_POSTED, SIBLINGS_PER_PROOF,
                        TREE_DEPTH, VALIDATOR_EPOCHS_KEY, Account, AccountProof, Balance, CommittedState, ProofEntry,
                        RechargeRecord, State, StateTree, Supply, ValidatorEpoch, ValidatorEpochs, ValidatorInfo,
                        account_key, bucket_of, decode_record, encode_record, recharge_key, supply_key,
                        verify_account_proof)
from tests.support import keys, make_genesis
from tests.unit.strategies import instances

ADDRESSES = st.binary(min_size=20, max_size=20)


def tree_of(items: dict[bytes, bytes]) -> StateTree:
    tree = StateTree()
    tree.apply(tree.compute_update(dict(items)))
    return tree


def address_in_bucket(index: int, avoid: set[bytes]) -> bytes:
    """An address whose account key falls into bucket `index` (found by search)."""
    for counter in itertools.count():
        address = crypto.hash_bytes(counter.to_bytes(8, "big"))[:20]
        if bucket_of(account_key(address)) == index and address not in avoid:
            return address
    raise AssertionError("unreachable")


def account(amount: int, nonce: int = 0) -> Account:
    return Account(nonce, 1, b"", bytes(20), (Balance("CNY", amount),))


@pytest.fixture(scope="module")
def crowded():
    """A committed state where alice shares her bucket with two other accounts, and an absent neighbour."""
    state = make_genesis().state()
    alice = keys("alice").address
    index = bucket_of(account_key(alice))
    first = address_in_bucket(index, {alice})
    second = address_in_bucket(index, {alice, first})
    absent = address_in_bucket(index, {alice, first, second})
    encoded = {account_key(first): encode_record(account(10)), account_key(second): encode_record(account(20))}
    state.apply({account_key(first): account(10), account_key(second): account(20)},
                state.tree.compute_update(encoded))
    return state, alice, absent


# --- records --------------------------------------------------------------------------------

def test_with_balance_keeps_balances_sorted_and_drops_zero():
    record = EMPTY_ACCOUNT.with_balance("USD", 5).with_balance("CNY", 7).with_balance("EUR", 1)
    assert [b.asset for b in record.balances] == ["CNY", "EUR", "USD"]
    assert record.with_balance("EUR", 0).balances == (Balance("CNY", 7), Balance("USD", 5))
    assert record.balance_of("JPY") == 0 and record.balance_of("USD") == 5


@settings(max_examples=100)
@given(st.lists(st.tuples(st.sampled_from(["CNY", "USD", "EUR", "JPY"]), st.integers(0, 10**6)), max_size=12),
       st.none() | st.integers(0, 2**63 - 1))
def test_with_balance_matches_a_dictionary_of_balances(updates, nonce):
    record, model = EMPTY_ACCOUNT, {}
    for asset, amount in updates:
        record = record.with_balance(asset, amount)
        model[asset] = amount
    record = record.with_balance("CNY", model.get("CNY", 0), nonce=nonce)
    assert record.balances == tuple(Balance(a, v) for a, v in sorted(model.items()) if v)
    assert record.nonce == (0 if nonce is None else nonce)


@settings(max_examples=100)
@given(instances(Account))
def test_fast_account_encoding_is_the_canonical_encoding(record):
    assert encode_record(record) == encoding.encode(record)
    assert decode_record(account_key(bytes(20)), encode_record(record)) == record


def test_with_nonce_keeps_everything_else():
    record = Account(3, 2, b"k", bytes(20), (Balance("CNY", 7),))
    assert record.with_nonce(4) == dataclasses.replace(record, nonce=4)


def test_invalid_negative_balance_is_a_bug():
    with pytest.raises(AssertionError):
        EMPTY_ACCOUNT.with_balance("CNY", -1)


@pytest.mark.parametrize("key, record", [
    (account_key(bytes(20)), account(5)),
    (recharge_key(bytes(32)), RechargeRecord(bytes(20), bytes(20), "CNY", 5, RECHARGE_PENDING, "ref", "", 3)),
    (supply_key("CNY"), Supply(99)),
])
def test_records_round_trip_by_key_prefix(key, record):
    assert decode_record(key, encode_record(record)) == record


def test_largest_validator_epochs_record_round_trips():
    """Full sets with the longest names and addresses, as many as the state keeps: a restart must load them."""
    validators = tuple(ValidatorInfo(f"{i:064d}", crypto.hash_bytes(bytes([i])), 3, f"{i:0250d}:65535")
                       for i in range(limits.validators_max))
    record = ValidatorEpochs(tuple(ValidatorEpoch(height, validators)
                                   for height in range(limits.validator_epochs_in_state_max)))
    assert decode_record(VALIDATOR_EPOCHS_KEY, encode_record(record)) == record


def test_invalid_record_key_prefix():
    with pytest.raises(encoding.DecodeError, match="unknown state key prefix"):
        decode_record(b"\x7fabc", encode_record(Supply(1)))


def test_invalid_record_of_the_wrong_type_for_its_key():
    with pytest.raises(encoding.DecodeError):
        decode_record(account_key(bytes(20)), encode_record(Supply(1)))


# --- the copy-on-write view --------------------------------------------------------------------

def test_state_view_reads_its_changes_and_never_writes_the_base():
    committed = make_genesis().state()
    alice = keys("alice").address
    before = committed.records[account_key(alice)]
    view = State(committed)
    view.set_account(alice, before.with_balance("CNY", 1))
    assert view.account(alice).balance_of("CNY") == 1
    assert committed.records[account_key(alice)] == before
    assert State(committed).account(alice) == before


def test_state_view_defaults_for_missing_records():
    view = State(make_genesis().state())
    assert view.account(bytes(20)) == EMPTY_ACCOUNT
    assert view.supply("XYZ") == 0
    assert view.supply("CNY") == 200_000 + 10_000 + 1_000


def test_state_view_iterates_merged_records():
    committed = make_genesis().state()
    view = State(committed)
    view.put(supply_key("CNY"), Supply(1))
    view.put(account_key(bytes(20)), account(3))
    merged = dict(view.iter_records())
    assert merged[supply_key("CNY")] == Supply(1)
    assert merged[account_key(bytes(20))] == account(3)
    assert len(merged) == len(committed.records) + 1


def test_invalid_reading_a_view_after_its_base_committed():
    committed = make_genesis().state()
    view = State(committed)
    committed.apply({}, committed.tree.compute_update({}))
    with pytest.raises(StaleStateView, match="changed while this view was read"):
        view.account(keys("alice").address)


# --- the state root --------------------------------------------------------------------------

RECORD_SETS = st.dictionaries(ADDRESSES.map(account_key), instances(Account).map(encode_record), max_size=12)


def test_empty_tree_root_is_the_empty_subtree():
    assert StateTree().root == EMPTY_SUBTREE[TREE_DEPTH]
    assert CommittedState().root == EMPTY_SUBTREE[TREE_DEPTH]


@settings(max_examples=60)
@given(RECORD_SETS, st.data())
def test_root_is_independent_of_insertion_order_and_batching(items, data):
    together = tree_of(items).root
    order = data.draw(st.permutations(list(items)))
    one_by_one = StateTree()
    for key in order:
        one_by_one.apply(one_by_one.compute_update({key: items[key]}))
    assert one_by_one.root == together
    loaded = CommittedState()
    loaded.load(reversed(list(items.items())))
    assert loaded.root == together


@settings(max_examples=60)
@given(RECORD_SETS.filter(bool), st.data())
def test_root_changes_when_any_record_changes(items, data):
    tree = tree_of(items)
    key = data.draw(st.sampled_from(sorted(items)))
    new_value = data.draw(instances(Account).map(encode_record).filter(lambda value: value != items[key]))
    changed = tree.compute_update({key: new_value})
    assert changed.root != tree.root
    assert tree.compute_update({key: None}).root != tree.root
    assert tree.compute_update({key: items[key]}).root == tree.root  # rewriting the same value changes nothing


@settings(max_examples=60)
@given(RECORD_SETS, ADDRESSES, instances(Account))
def test_adding_then_deleting_a_record_restores_the_root(items, address, record):
    key = account_key(address)
    items.pop(key, None)
    tree = tree_of(items)
    before = (tree.root, [list(level) for level in tree.levels], {i: dict(b) for i, b in tree.buckets.items()})
    tree.apply(tree.compute_update({key: encode_record(record)}))
    assert tree.root != before[0]
    tree.apply(tree.compute_update({key: None}))
    assert (tree.root, tree.levels, tree.buckets) == before  # no leftover nodes or buckets


def test_compute_update_does_not_change_the_tree():
    tree = tree_of({account_key(bytes(20)): encode_record(account(1))})
    root = tree.root
    update = tree.compute_update({account_key(bytes(20)): encode_record(account(2))})
    assert tree.root == root and update.root != root


@pytest.mark.parametrize("change", [
    lambda r: r.with_nonce(r.nonce + 1),
    lambda r: r.with_balance("CNY", r.balance_of("CNY") + 1),
    lambda r: r.with_balance("USD", 0),
    lambda r: dataclasses.replace(r, role=3),
    lambda r: dataclasses.replace(r, kyc_hash=b"\x01" * 32),
    lambda r: dataclasses.replace(r, registered_by=b"\x02" * 20),
], ids=["nonce", "balance", "removed-balance", "role", "kyc", "registered_by"])
def test_root_changes_for_every_account_field(change):
    committed = make_genesis().state()
    key = account_key(keys("alice").address)
    changed = change(committed.records[key])
    assert committed.tree.compute_update({key: encode_record(changed)}).root != committed.root


def test_root_changes_for_recharge_and_supply_records():
    committed = make_genesis().state()
    record = RechargeRecord(bytes(20), bytes(20), "CNY", 5, RECHARGE_PENDING, "ref", "", 3)
    with_request = committed.tree.compute_update({recharge_key(bytes(32)): encode_record(record)})
    assert with_request.root != committed.root
    posted = dataclasses.replace(record, status=RECHARGE_POSTED)
    tree = StateTree()
    tree.apply(with_request)  # a tree holding only the request
    assert tree.compute_update({recharge_key(bytes(32)): encode_record(posted)}).root != tree.root
    supply = committed.tree.compute_update({supply_key("CNY"): encode_record(Supply(1))})
    assert supply.root != committed.root


# --- account proofs ---------------------------------------------------------------------------

def test_proof_of_present_account_verifies(crowded):
    state, alice, _ = crowded
    proof = state.prove_account(alice)
    assert len(proof.bucket_entries) == 3
    assert verify_account_proof(state.root, proof) == state.records[account_key(alice)]


def test_proof_of_absent_account_verifies_in_an_occupied_bucket(crowded):
    state, _, absent = crowded
    proof = state.prove_account(absent)
    assert proof.account == b"" and len(proof.bucket_entries) == 3
    assert verify_account_proof(state.root, proof) is None


def test_proof_of_absent_account_in_an_empty_bucket():
    state = make_genesis().state()
    used = {bucket_of(key) for key in state.records}
    address = next(a for a in (crypto.hash_bytes(bytes([i]))[:20] for i in range(256))
                   if bucket_of(account_key(a)) not in used)
    proof = state.prove_account(address)
    assert proof.bucket_entries == ()
    assert verify_account_proof(state.root, proof) is None


def test_proof_survives_encoding(crowded):
    state, alice, _ = crowded
    proof = state.prove_account(alice)
    decoded = encoding.decode(AccountProof, encoding.encode(proof), 1 << 20)
    assert verify_account_proof(state.root, decoded) == state.records[account_key(alice)]


def test_invalid_proof_tampered_account_value(crowded):
    state, alice, _ = crowded
    proof = state.prove_account(alice)
    richer = encode_record(state.records[account_key(alice)].with_balance("CNY", 10**9))
    with pytest.raises(ValueError, match="does not match its bucket entry"):
        verify_account_proof(state.root, dataclasses.replace(proof, account=richer))


def test_invalid_proof_tampered_value_and_matching_entry(crowded):
    state, alice, _ = crowded
    proof = state.prove_account(alice)
    key = account_key(alice)
    richer = encode_record(state.records[key].with_balance("CNY", 10**9))
    entries = tuple(ProofEntry(e.key, crypto.hash_bytes(richer)) if e.key == key else e for e in proof.bucket_entries)
    with pytest.raises(ValueError, match="does not lead to the state root"):
        verify_account_proof(state.root, dataclasses.replace(proof, account=richer, bucket_entries=entries))


@pytest.mark.parametrize("position", [0, SIBLINGS_PER_PROOF // 2, SIBLINGS_PER_PROOF - 1])
def test_invalid_proof_tampered_sibling(crowded, position):
    state, alice, _ = crowded
    proof = state.prove_account(alice)
    siblings = list(proof.siblings)
    siblings[position] = bytes([siblings[position][0] ^ 1]) + siblings[position][1:]
    with pytest.raises(ValueError, match="does not lead to the state root"):
        verify_account_proof(state.root, dataclasses.replace(proof, siblings=tuple(siblings)))


def test_invalid_proof_foreign_bucket_entry(crowded):
    state, alice, _ = crowded
    proof = state.prove_account(alice)
    foreign_key = next(k for k in state.records if bucket_of(k) != bucket_of(account_key(alice)))
    entries = proof.bucket_entries + (ProofEntry(foreign_key, bytes(32)),)
    with pytest.raises(ValueError, match="another bucket or twice"):
        verify_account_proof(state.root, dataclasses.replace(proof, bucket_entries=entries))


def test_invalid_proof_duplicated_entry(crowded):
    state, alice, _ = crowded
    proof = state.prove_account(alice)
    entries = proof.bucket_entries + proof.bucket_entries[:1]
    with pytest.raises(ValueError, match="another bucket or twice"):
        verify_account_proof(state.root, dataclasses.replace(proof, bucket_entries=entries))


def test_invalid_proof_hides_a_bucket_neighbour(crowded):
    state, alice, _ = crowded
    proof = state.prove_account(alice)
    entries = tuple(e for e in proof.bucket_entries if e.key == account_key(alice))
    with pytest.raises(ValueError, match="does not lead to the state root"):
        verify_account_proof(state.root, dataclasses.replace(proof, bucket_entries=entries))


def test_invalid_proof_absence_while_the_bucket_lists_the_account(crowded):
    state, alice, _ = crowded
    proof = state.prove_account(alice)
    with pytest.raises(ValueError, match="claims absence"):
        verify_account_proof(state.root, dataclasses.replace(proof, account=b""))


def test_invalid_proof_absent_account_made_to_look_present(crowded):
    state, _, absent = crowded
    proof = state.prove_account(absent)
    fake = encode_record(account(10**6))
    with pytest.raises(ValueError, match="does not match its bucket entry"):
        verify_account_proof(state.root, dataclasses.replace(proof, account=fake))


def test_invalid_proof_wrong_number_of_siblings(crowded):
    state, alice, _ = crowded
    proof = state.prove_account(alice)
    assert len(proof.siblings) == SIBLINGS_PER_PROOF
    for siblings in (proof.siblings[:-1], proof.siblings + proof.siblings[:1], ()):
        with pytest.raises(ValueError, match="wrong number of sibling hashes"):
            verify_account_proof(state.root, dataclasses.replace(proof, siblings=siblings))


def test_invalid_proof_siblings_in_another_order(crowded):
    state, alice, _ = crowded
    proof = state.prove_account(alice)
    first = next(i for i in range(SIBLINGS_PER_PROOF) if proof.siblings[i] != proof.siblings[0])
    swapped = list(proof.siblings)
    swapped[0], swapped[first] = swapped[first], swapped[0]
    swapped = tuple(swapped)
    with pytest.raises(ValueError, match="does not lead to the state root"):
        verify_account_proof(state.root, dataclasses.replace(proof, siblings=swapped))


def test_invalid_proof_for_another_address(crowded):
    state, alice, absent = crowded
    proof = state.prove_account(alice)
    with pytest.raises(ValueError):
        verify_account_proof(state.root, dataclasses.replace(proof, address=absent))


def test_invalid_proof_against_a_stale_root(crowded):
    state, alice, _ = crowded
    old_root = state.root
    key = account_key(alice)
    newer = state.records[key].with_nonce(state.records[key].nonce + 1)
    moved = CommittedState(state.params)
    moved.load((k, encode_record(newer if k == key else record)) for k, record in state.records.items())
    assert moved.root != old_root
    assert verify_account_proof(moved.root, moved.prove_account(alice)) == newer
    with pytest.raises(ValueError, match="does not lead to the state root"):
        verify_account_proof(old_root, moved.prove_account(alice))


@settings(max_examples=30)
@given(st.dictionaries(ADDRESSES, instances(Account), min_size=1, max_size=15), ADDRESSES)
def test_every_proof_verifies_for_any_state(accounts, stranger):
    state = CommittedState()
    state.load((account_key(a), encode_record(r)) for a, r in accounts.items())
    for address, record in accounts.items():
        assert verify_account_proof(state.root, state.prove_account(address)) == record
    if stranger not in accounts:
        assert verify_account_proof(state.root, state.prove_account(stranger)) is None
