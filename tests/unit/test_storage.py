"""Storage (node/storage/kv.py, schema.py, chain.py): both key-value adapters and the chain store on them."""

from __future__ import annotations

import tempfile

import pytest
from hypothesis import given, settings, strategies as st

from node import blocks, encoding, limits
from node.state import ValidatorInfo, account_key
from node.storage import schema
from node.storage.chain import ChainStore
from node.storage.kv import LevelDbStore, MemoryStore, StoreError
from node.transactions import AddValidator, GovernancePropose, Register, Role, Transfer
from tests.support import certify, keys, make_chain, make_genesis, sign, signer_for

ALICE, BOB = keys("alice").address, keys("bob").address


@pytest.fixture(params=["memory", "leveldb"])
def kv(request, tmp_path):
    store = MemoryStore() if request.param == "memory" else LevelDbStore(tmp_path / "db")
    yield store
    store.close()


class Interrupted(Exception):
    pass


def interrupted_after(items, count):
    """Yield `count` items, then fail: a write that dies half way."""
    for index, item in enumerate(items):
        if index == count:
            raise Interrupted
        yield item


# --- key-value adapters -----------------------------------------------------------------------------

def test_get_put_overwrite_delete(kv):
    assert kv.get(b"k") is None
    kv.write([(b"k", b"1"), (b"j", b"")])
    assert kv.get(b"k") == b"1" and kv.get(b"j") == b""
    kv.write([(b"k", b"2")], [b"j", b"never-written"])
    assert kv.get(b"k") == b"2" and kv.get(b"j") is None


def test_write_batch_is_atomic(kv):
    kv.write([(b"a/1", b"old")])
    with pytest.raises(Interrupted):
        kv.write(interrupted_after([(b"a/1", b"new"), (b"a/2", b"x"), (b"a/3", b"y")], 2), [b"a/1"])
    assert kv.get(b"a/1") == b"old" and kv.get(b"a/2") is None
    assert list(kv.iterate(b"a/")) == [(b"a/1", b"old")]


def test_write_accepts_lazy_iterables(kv):
    kv.write(((bytes([i]), b"v") for i in range(3)), (key for key in [b"\x01"]))
    assert list(kv.iterate(b"")) == [(b"\x00", b"v"), (b"\x02", b"v")]


def test_puts_and_deletes_in_one_batch(kv):
    kv.write([(b"x", b"1"), (b"y", b"2")])
    kv.write([(b"z", b"3")], [b"x"])
    assert list(kv.iterate(b"")) == [(b"y", b"2"), (b"z", b"3")]


@pytest.fixture
def filled(kv):
    kv.write([(b"a", b"0"), (b"ab", b"1"), (b"ab\x00", b"2"), (b"ab\x01", b"3"), (b"ab\xff", b"4"), (b"ac", b"5"),
              (b"b", b"6")])
    return kv


def test_prefix_iterate_in_key_order(filled):
    assert [k for k, _ in filled.iterate(b"ab")] == [b"ab", b"ab\x00", b"ab\x01", b"ab\xff"]
    assert [v for _, v in filled.iterate(b"a")] == [b"0", b"1", b"2", b"3", b"4", b"5"]
    assert list(filled.iterate(b"zz")) == []


def test_prefix_iterate_reverse(filled):
    assert [k for k, _ in filled.iterate(b"ab", reverse=True)] == [b"ab\xff", b"ab\x01", b"ab\x00", b"ab"]


@pytest.mark.parametrize("keys", [[b"ab"], [b"aa", b"ab", b"b"], [b"ab", b"ab\x00"], [b"\xff"], [b""]])
def test_reverse_iterate_includes_a_key_equal_to_the_prefix(kv, keys):
    kv.write([(key, b"v") for key in keys])
    prefix = keys[0] if len(keys) == 1 else b"ab"
    expected = sorted((key for key in keys if key.startswith(prefix)), reverse=True)
    assert [key for key, _ in kv.iterate(prefix, reverse=True)] == expected
    assert [key for key, _ in kv.iterate(prefix, reverse=True, stop=prefix + b"\x00")] == [prefix]


def test_prefix_iterate_stops_before_stop(filled):
    assert [k for k, _ in filled.iterate(b"ab", stop=b"ab\x01")] == [b"ab", b"ab\x00"]
    assert [k for k, _ in filled.iterate(b"ab", reverse=True, stop=b"ab\x01")] == [b"ab\x00", b"ab"]
    assert list(filled.iterate(b"ab", stop=b"ab")) == []


KEYS = st.lists(st.sampled_from([0x00, 0x01, 0x70, 0xFF]), max_size=3).map(bytes)
"""Short keys over edge bytes, so keys equal to a prefix, to a stop key, or full of 0xff are common."""


@settings(max_examples=60)
@given(st.lists(st.tuples(st.lists(st.tuples(KEYS, st.binary(max_size=4)), max_size=6), st.lists(KEYS, max_size=3)),
                max_size=5),
       st.lists(st.sampled_from([0x00, 0x70, 0xFF]), max_size=2).map(bytes), st.booleans(), st.none() | KEYS)
def test_memory_and_leveldb_agree_on_every_iteration(batches, prefix, reverse, stop):
    with tempfile.TemporaryDirectory() as folder:
        memory, leveldb = MemoryStore(), LevelDbStore(folder)
        try:
            model: dict[bytes, bytes] = {}
            for puts, deletes in batches:
                for store in (memory, leveldb):
                    store.write(puts, deletes)
                for key, value in puts:
                    model[key] = value
                for key in deletes:
                    model.pop(key, None)
            if stop is not None and not stop.startswith(prefix):
                stop = prefix + stop
            expected = sorted((k, v) for k, v in model.items() if k.startswith(prefix) and (stop is None or k < stop))
            if reverse:
                expected.reverse()
            assert list(memory.iterate(prefix, reverse, stop)) == expected
            assert list(leveldb.iterate(prefix, reverse, stop)) == expected
        finally:
            leveldb.close()


def test_leveldb_is_durable_across_reopen(tmp_path):
    store = LevelDbStore(tmp_path / "db")
    store.write([(b"k", b"v")])
    store.close()
    reopened = LevelDbStore(tmp_path / "db")
    assert reopened.get(b"k") == b"v"
    reopened.close()


def test_invalid_leveldb_opened_twice_names_the_likely_cause(tmp_path):
    store = LevelDbStore(tmp_path / "db")
    try:
        with pytest.raises(StoreError, match="another node using it"):
            LevelDbStore(tmp_path / "db")
    finally:
        store.close()


# --- schema --------------------------------------------------------------------------------------

def test_block_keys_sort_in_height_order():
    assert schema.block_key(2) < schema.block_key(10) < schema.block_key(256)


def test_history_key_round_trips_position():
    key = schema.history_key(ALICE, 70_000, 9)
    assert key.startswith(schema.history_prefix(ALICE))
    assert schema.history_position(key) == (70_000, 9)


def test_state_keys_round_trip():
    assert schema.state_key_from_store(schema.state_key(account_key(ALICE))) == account_key(ALICE)


# --- the chain store ---------------------------------------------------------------------------------

def test_new_store_starts_at_genesis(kv):
    genesis = make_genesis()
    store = ChainStore(kv, genesis)
    assert (store.head.height, store.head.block_hash) == (0, genesis.hash)
    assert store.head.state_root == genesis.state().root == store.load_state().root
    assert store.head_header is None and store.get_block(1) is None and store.get_certificate(1) is None
    assert store.height_of_block(bytes(32)) is None and store.get_tx(bytes(32)) is None
    assert store.get_receipts(1) == []


def test_invalid_store_of_another_genesis(kv):
    ChainStore(kv, make_genesis())
    other = make_genesis(chain_id="paychain-other")
    with pytest.raises(StoreError, match="store belongs to another chain .'paychain-test'.*not 'paychain-other'"):
        ChainStore(kv, other)


def test_invalid_store_of_another_genesis_with_the_same_chain_id(kv):
    ChainStore(kv, make_genesis())
    with pytest.raises(StoreError, match="belongs to another chain"):
        ChainStore(kv, make_genesis(users={"carol": {"CNY": 5}}))


def test_invalid_store_of_a_newer_format(kv):
    ChainStore(kv, make_genesis())
    kv.write([(schema.META_FORMAT, encoding.encode_uint_be(schema.FORMAT_VERSION + 1, 8))])
    with pytest.raises(StoreError, match=f"store format {schema.FORMAT_VERSION + 1} is newer than this node "
                                         "understands .*upgrade the node"):
        ChainStore(kv, make_genesis())


def test_invalid_store_of_an_older_format(kv):
    ChainStore(kv, make_genesis())
    kv.write([(schema.META_FORMAT, encoding.encode_uint_be(schema.FORMAT_VERSION - 1, 8))])
    with pytest.raises(StoreError, match="is older than .* cannot be migrated"):
        ChainStore(kv, make_genesis())


def test_invalid_store_missing_its_head(kv):
    ChainStore(kv, make_genesis())
    kv.write([], [schema.META_HEAD])
    with pytest.raises(StoreError, match="store is missing meta/head"):
        ChainStore(kv, make_genesis())


def test_half_initialised_store_is_initialised_again(kv):
    genesis = make_genesis()
    kv.write([(schema.META_GENESIS, b"left over from a crash")])  # the format marker is written last
    assert ChainStore(kv, genesis).head.block_hash == genesis.hash


def test_invalid_store_with_tampered_state(kv):
    genesis = make_genesis()
    store = ChainStore(kv, genesis)
    key = schema.state_key(account_key(ALICE))
    record = store.load_state().records[account_key(ALICE)]
    kv.write([(key, encoding.encode(record.with_balance("CNY", 10**12)))])
    with pytest.raises(StoreError, match="does not match the state root of block 0"):
        ChainStore(kv, genesis).load_state()


def commit_some_blocks(chain):
    chain.submit(sign("alice", 0, Transfer(BOB, "CNY", 5)), sign("bob", 0, Transfer(ALICE, "USD", 3), fee=2,
                                                                      fee_asset="USD"))
    chain.commit_pending()
    chain.commit_pending()
    chain.submit(sign("alice", 1, Transfer(BOB, "CNY", 7)), sign("gateway", 0, Register(keys("carol").address,
                                                                                        int(Role.USER), bytes(32))))
    chain.commit_pending()


def test_reopened_leveldb_store_resumes_at_the_same_head_and_state_root(tmp_path):
    genesis = make_genesis()
    chain = make_chain(genesis, LevelDbStore(tmp_path / "db"))
    commit_some_blocks(chain)
    head, root, records = chain.ledger.head, chain.ledger.committed.root, dict(chain.ledger.committed.records)
    chain.ledger.store.kv.close()

    resumed = make_chain(genesis, LevelDbStore(tmp_path / "db"))
    try:
        assert resumed.ledger.head == head and resumed.ledger.head.height == 3
        assert resumed.ledger.committed.root == root == head.state_root
        assert resumed.ledger.committed.records == records
        store = resumed.ledger.store
        assert store.head_header == store.get_block(3).header
        for height in (1, 2, 3):
            block = store.get_block(height)
            blocks.verify_certificate(store.get_certificate(height), block.header, genesis.signing_domain,
                                      genesis.params.validator_keys)
            assert store.height_of_block(blocks.header_hash(block.header)) == height
        resumed.now_ms += 10_000
        resumed.submit(sign("alice", 2, Transfer(BOB, "CNY", 1)))
        assert resumed.commit_pending().receipts[0].success and resumed.ledger.head.height == 4
    finally:
        resumed.ledger.store.kv.close()


def test_account_history_is_newest_first_and_pages(kv):
    chain = make_chain(make_genesis(), kv)
    hashes = []
    for nonce in range(4):
        hashes += chain.submit(sign("alice", nonce, Transfer(BOB, "CNY", 1)))
        chain.commit_pending()
    store = chain.ledger.store
    newest = list(store.account_history(BOB, None, 100))
    assert [tx_hash for _, _, tx_hash in newest] == list(reversed(hashes))
    assert [height for height, _, _ in newest] == [4, 3, 2, 1]
    page = list(store.account_history(ALICE, None, 2))
    assert [h for h, _, _ in page] == [4, 3]
    rest = list(store.account_history(ALICE, page[-1][:2], 2))
    assert [h for h, _, _ in rest] == [2, 1]
    assert list(store.account_history(keys("nobody").address, None, 10)) == []


class FailingWrites:
    """A store whose writes fail (a crash at the moment of commit)."""

    def __init__(self, inner):
        self.inner = inner

    def get(self, key):
        return self.inner.get(key)

    def iterate(self, *args, **kwargs):
        return self.inner.iterate(*args, **kwargs)

    def write(self, puts, deletes=()):
        self.inner.write(interrupted_after(list(puts), 3), deletes)


def test_a_commit_that_fails_half_way_leaves_the_previous_block(kv):
    genesis = make_genesis()
    chain = make_chain(genesis, kv)
    chain.submit(sign("alice", 0, Transfer(BOB, "CNY", 5)))
    chain.commit_pending()
    chain.submit(sign("alice", 1, Transfer(BOB, "CNY", 5)))
    block = chain.ledger.prepare_proposal(2, 0, keys("validator-0").address, chain.now_ms + 1000)
    chain.ledger.store.kv = FailingWrites(kv)
    with pytest.raises(Interrupted):
        chain.ledger.commit(block, certify(block, keys("validator-0"), genesis.signing_domain))
    assert chain.ledger.head.height == 1
    reopened = ChainStore(kv, genesis)
    assert reopened.head.height == 1 and reopened.get_block(2) is None
    assert reopened.load_state().root == reopened.head.state_root


def epoch_heights(kv) -> list[int]:
    """From heights of the validator sets in the store's history."""
    return [schema.validator_epoch_height(key) for key, _ in kv.iterate(schema.VALIDATORS_PREFIX)]


def test_validator_set_history_is_written_with_the_block_that_schedules_it(kv):
    """The enacting block's batch carries the new set: a crash before it leaves none, after it every height is
    answered (also after a restart)."""
    genesis = make_genesis(users={"validator-0": {"CNY": 1_000}}, validators=1)
    sign = signer_for(genesis)
    chain = make_chain(genesis, kv)
    newcomer = ValidatorInfo("v1", keys("validator-1").public_key, int(Role.USER), "validator-1.example.com:26656")
    chain.submit(sign("validator-0", 0, GovernancePropose(AddValidator(newcomer), 10)))  # 2f+1 of one: enacted
    block = chain.ledger.prepare_proposal(1, 0, keys("validator-0").address, chain.now_ms + 1000)
    certificate = certify(block, keys("validator-0"), genesis.signing_domain)
    chain.ledger.store.kv = FailingWrites(kv)
    with pytest.raises(Interrupted):
        chain.ledger.commit(block, certificate)
    assert ChainStore(kv, genesis).head.height == 0 and epoch_heights(kv) == [0]  # genesis' set only

    chain = make_chain(genesis, kv)
    chain.ledger.commit(block, certificate)
    from_height = 1 + limits.validator_change_delay_blocks
    assert epoch_heights(kv) == [0, from_height]
    for nonce in range(1, from_height):
        chain.submit(sign("validator-0", nonce, Transfer(BOB, "CNY", 1)))
        chain.commit_pending()
    grown = genesis.params.validators + (newcomer,)
    for store in (chain.ledger.store, ChainStore(kv, genesis)):
        assert [store.validators_at(height) for height in range(from_height + 2)] == (
            [genesis.params.validators] * from_height + [grown] * 2)
