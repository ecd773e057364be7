"""Every LevelDB key Paychain writes, and nothing else makes keys.

Heights and indexes are fixed-width big-endian so that keys sort in chain order.

| key                                        | value                              |
|--------------------------------------------|------------------------------------|
| meta/format                                | store format version (u64)         |
| meta/genesis                               | genesis hash                       |
| meta/chain_id                              | chain id (utf-8)                   |
| meta/head                                  | ChainHead                          |
| block/<height:8>                           | encoded Block                      |
| cert/<height:8>                            | encoded CommitCertificate          |
| receipts/<height:8>                        | encoded Receipts                   |
| blockhash/<hash:32>                        | height (u64)                       |
| tx/<hash:32>                               | TxLocation                         |
| history/<address:20><height:8><index:4>    | tx hash                            |
| orders/<party:20><height:8><index:4>       | order id (buyer's and merchant's)  |
| validators/<from height:8>                 | ValidatorEpoch (genesis' set at 0) |
| state/<state key>                          | encoded state record               |

Format 2 added `validators/` (format 1 stores lack it and are refused). Format 3: contract transactions
carry an attached value and `ApproveSpend` exists (state key prefix 0x10, allowances), so blocks of format 2
stores no longer decode; they are refused, and a local network is re-created.
"""

from __future__ import annotations

from node.encoding import decode_uint_be, encode_uint_be

FORMAT_VERSION = 3

META_FORMAT = b"meta/format"
META_GENESIS = b"meta/genesis"
META_CHAIN_ID = b"meta/chain_id"
META_HEAD = b"meta/head"

BLOCK_PREFIX = b"block/"
CERTIFICATE_PREFIX = b"cert/"
RECEIPTS_PREFIX = b"receipts/"
BLOCK_HASH_PREFIX = b"blockhash/"
TX_PREFIX = b"tx/"
HISTORY_PREFIX = b"history/"
ORDERS_PREFIX = b"orders/"
VALIDATORS_PREFIX = b"validators/"
STATE_PREFIX = b"state/"


def _height(height: int) -> bytes:
    return encode_uint_be(height, 8)


def block_key(height: int) -> bytes:
    return BLOCK_PREFIX + _height(height)


def certificate_key(height: int) -> bytes:
    return CERTIFICATE_PREFIX + _height(height)


def receipts_key(height: int) -> bytes:
    return RECEIPTS_PREFIX + _height(height)


def block_hash_key(block_hash: bytes) -> bytes:
    assert len(block_hash) == 32
    return BLOCK_HASH_PREFIX + block_hash


def tx_key(tx_hash: bytes) -> bytes:
    assert len(tx_hash) == 32
    return TX_PREFIX + tx_hash


def history_prefix(address: bytes) -> bytes:
    assert len(address) == 20
    return HISTORY_PREFIX + address


def history_key(address: bytes, height: int, index: int) -> bytes:
    return history_prefix(address) + _height(height) + encode_uint_be(index, 4)


def history_position(key: bytes) -> tuple[int, int]:
    """(height, index) from a history key."""
    tail = key[len(HISTORY_PREFIX) + 20:]
    return decode_uint_be(tail[:8]), decode_uint_be(tail[8:])


def orders_prefix(party: bytes) -> bytes:
    assert len(party) == 20
    return ORDERS_PREFIX + party


def order_index_key(party: bytes, height: int, index: int) -> bytes:
    return orders_prefix(party) + _height(height) + encode_uint_be(index, 4)


def order_index_position(key: bytes) -> tuple[int, int]:
    """(height, tx index) from an order-index key."""
    tail = key[len(ORDERS_PREFIX) + 20:]
    return decode_uint_be(tail[:8]), decode_uint_be(tail[8:])


def validator_epoch_key(from_height: int) -> bytes:
    return VALIDATORS_PREFIX + _height(from_height)


def validator_epoch_height(key: bytes) -> int:
    """The from height of a validator-epoch key."""
    return decode_uint_be(key[len(VALIDATORS_PREFIX):])


def state_key(key: bytes) -> bytes:
    return STATE_PREFIX + key


def state_key_from_store(store_key: bytes) -> bytes:
    assert store_key.startswith(STATE_PREFIX)
    return store_key[len(STATE_PREFIX):]
