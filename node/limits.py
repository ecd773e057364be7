"""Every bound Paychain enforces, in one place, units last.

A limit that is not here does not exist. Relationships between limits are
asserted at import so that changing one number cannot silently break another.
"""

# --- encoding and transactions -------------------------------------------------
tx_bytes_max = 24 * 1024
"""Largest encoded signed transaction accepted anywhere (a contract deploy carries its source)."""
payment_tx_bytes_max = 2_048
"""Largest encoded signed transaction of any kind but a contract deploy."""
memo_bytes_max = 128
"""Largest free-text reference (payout reference, recharge reference, void reason)."""
asset_code_chars_max = 8
"""Longest asset code, e.g. "CNY"."""
chain_id_chars_max = 32
"""Longest chain id."""
amount_max = 2**63 - 1
"""Largest amount, fee, or balance in minor units (fits a signed 64-bit integer)."""
nonce_max = 2**63 - 1
"""Largest account nonce."""
nonce_window_max = 64
"""How far ahead of an account's committed nonce the mempool accepts transactions."""

# --- blocks ----------------------------------------------------------------------
block_txs_max = 8_000
"""Most transactions in one block."""
block_bytes_max = 8 * 1024 * 1024
"""Largest encoded block (transactions plus header)."""
pbft_block_txs_max = 2_000
"""Most transactions a PBFT primary puts in one block: every validator executes the block before
voting, so smaller blocks keep finality short when the network is saturated."""
block_interval_ms_min = 20
"""A block producer waits at least this long after a commit before proposing again,
so that transactions arriving together are batched."""
block_interval_ms_max = 1_000
"""A pending transaction waits at most this long before a block is proposed."""
timestamp_skew_ms_max = 5_000
"""How far a proposer's block timestamp may run ahead of a validator's clock."""
certificate_signatures_max = 256
"""Most signatures in one commit certificate (and so most validators)."""
validators_max = certificate_signatures_max

# --- mempool --------------------------------------------------------------------
mempool_txs_max = 50_000
"""Most transactions waiting in the mempool."""
mempool_bytes_max = 64 * 1024 * 1024
"""Most bytes of transactions waiting in the mempool."""
reforward_age_ms_min = 2_000
"""A node forwards a transaction to the validators again once it has waited this long uncommitted
(the first forward may have been lost while a link was down)."""
reforward_txs_max = 2_000
"""Most transactions a node forwards again per status tick."""
recent_rejections_max = 10_000
"""Most rejected transaction hashes remembered so `tx_get` can report why."""
signature_cache_entries_max = 100_000
"""Most verified (tx hash) entries remembered so a transaction is verified once."""

# --- state ------------------------------------------------------------------------
state_tree_bucket_bits = 16
"""The state commitment spreads keys over 2**bits buckets (see node/state.py)."""
assets_max = 32
"""Most assets a genesis may define."""
genesis_accounts_max = 1_000_000
"""Most accounts a genesis file may fund."""

# --- JSON-RPC ---------------------------------------------------------------------
rpc_body_bytes_max = 16 * 1024 * 1024
"""Largest HTTP request body the RPC server reads."""
rpc_batch_requests_max = 100
"""Most calls in one JSON-RPC batch array."""
rpc_send_batch_txs_max = 2_000
"""Most transactions in one tx_sendBatch call."""
rpc_history_items_max = 100
"""Most items one account history page returns."""
rpc_internal_error_logs_per_minute = 10
"""Tracebacks of internal RPC errors logged per minute; the rest are counted and the count logged with the
next one, so a client repeating a failing call cannot fill the disk through the log."""
rpc_index_max = 2**63 - 1
"""Largest height or index a parameter may name: storage keys hold them in 8 bytes, and anything
larger is an invalid parameter, not an internal error."""
rpc_order_scan_max = 1_000
"""Most index entries one `order_list` call reads while filtering (it returns a cursor to go on)."""

# Per-client cost budgets (node/rpc/budget.py). A cost unit is about one ed25519 signature check, ~70 µs of
# node CPU; a request's price is known before it runs and taken from its client's token bucket first.
rpc_client_cost_units_per_s = 2_000
"""What one client address (an IPv6 /64) may spend per second: about 15% of one core."""
rpc_client_cost_units_burst = 12_000
"""What a client may spend at once after being quiet; also the most debt an answer's bytes can leave."""
rpc_request_cost_units_max = 6_000
"""Most one HTTP request or WebSocket message may cost, whoever sends it (a bigger batch is refused whole)."""
rpc_request_txs_max = 2_000
"""Most transactions one request may submit across all its calls (a batch of tx_sendBatch calls included)."""
rpc_connections_max = 512
"""Most open HTTP connections (WebSockets included) the RPC server holds; beyond it new ones are closed."""
rpc_connections_per_client_max = 64
"""Most open HTTP connections (WebSockets included) from one client address (an IPv6 /64)."""
rpc_request_header_s = 10.0
"""From a request's first byte to its complete headers (slowloris: a header byte every few seconds)."""
rpc_connection_idle_s = 30.0
"""An open connection with no request in it is closed after this (longer than aiohttp clients' 15 s
keep-alive, so a client closes an idle connection before the server does)."""
rpc_request_body_s = 30.0
"""From a request's headers to the last byte of its body."""
rpc_clients_tracked_max = 10_000
"""Most client budgets kept; the least recently seen is forgotten first."""
rpc_cost_units_per_call = 1
rpc_cost_units_per_signature = 1
"""tx_send and tx_sendBatch: each transaction's signature is checked before anything else."""
rpc_cost_units_per_history_item = 2
"""account_getHistory and order_list: each item read from the store and shaped (measured ~150 µs)."""
rpc_cost_units_per_order_scan = 20
"""order_list: what reading up to `rpc_order_scan_max` index entries while filtering may cost."""
rpc_cost_bytes_per_unit = 4_096
"""Request bodies (parsing) and answers (building, sending): one unit per this many bytes."""
rpc_cost_gas_per_unit = 1_000
"""contract_query: one unit per this much of the gas limit (the VM runs ~58 ns per gas)."""
ws_connections_max = 256
"""Most concurrent WebSocket connections."""
ws_connections_per_client_max = 16
"""Most concurrent WebSocket connections from one client address (IP): one client cannot take every slot."""
ws_connections_reserved_for_gateways = 32
"""Of `ws_connections_max`, slots only clients presenting a configured gateway token may take, so that
nobody holding every public slot locks the payment gateways out of the chain's feeds."""
gateway_tokens_max = 16
"""Most gateway tokens a node's config lists."""
ws_subscriptions_per_connection_max = 16
"""Most subscriptions one WebSocket connection holds (one per topic and filter)."""
ws_subscriptions_per_client_max = 64
"""Most subscriptions all the connections of one client address hold: every subscription costs a message
per block in the fan-out, so this bounds what one client adds to each block's fan-out."""
ws_public_subscriptions_max = 1_024
"""Most subscriptions all public clients hold together (gateways presenting a token are not counted):
bounds each block's fan-out whatever the number of client addresses."""
ws_subscriber_buffer_messages_max = 1_000
"""Most undelivered notifications queued for one connection before it is dropped."""
ws_subscriber_buffer_bytes_max = 8 * 1024 * 1024
"""Most bytes of undelivered notifications queued for one connection before it is dropped."""
ws_queued_bytes_total_max = 64 * 1024 * 1024
"""Most bytes of undelivered notifications all connections together may hold: past it, the connection with the
most queued is closed (a client that reads keeps its queue near empty). Without it, slow clients could hold
`ws_connections_max` × `ws_subscriber_buffer_bytes_max` (2 GiB)."""
ws_fanout_backlog_blocks_max = 64
"""Most committed blocks waiting for the WebSocket fan-out task; beyond it every subscriber is dropped
(they reconnect and catch up) rather than the commit path waiting or memory growing."""
ws_fanout_connections_per_yield = 16
"""The fan-out task gives the event loop back after serving this many connections."""
ws_socket_send_buffer_bytes = 256 * 1024
"""The kernel send buffer of a WebSocket connection, set rather than autotuned (Linux grows it to 4 MiB):
bounds the kernel memory a client that does not read can hold, and lets the node see sooner that it does not."""
ws_message_bytes_max = 64 * 1024
"""Largest message a client may send over the WebSocket."""
rpc_wait_ms_max = 60_000
"""Longest a client-side wait for finality may run."""
dashboard_stats_points_max = 600
"""Most recent commits whose figures (time, transactions, finality) a node keeps in memory for its
dashboard's charts and `chain_getStats`."""

# --- wallet -----------------------------------------------------------------------
keystore_bytes_max = 64 * 1024
"""Largest keystore file the wallet reads."""

assert block_txs_max * payment_tx_bytes_max <= 2 * block_bytes_max, "a full block of payments must roughly fit"
assert block_bytes_max >= 64 * tx_bytes_max, "a block holds many deploys (proposals stop at block_bytes_max)"
assert rpc_send_batch_txs_max * payment_tx_bytes_max * 2 + 4096 <= rpc_body_bytes_max, \
    "a full batch of payments (hex) fits in a body"
assert mempool_txs_max >= block_txs_max, "the mempool must be able to fill a block"
assert mempool_bytes_max >= block_bytes_max
assert block_interval_ms_min < block_interval_ms_max
assert 0 < pbft_block_txs_max <= block_txs_max
assert memo_bytes_max < payment_tx_bytes_max <= tx_bytes_max
assert validators_max <= certificate_signatures_max

# --- p2p ----------------------------------------------------------------------------------
p2p_frame_bytes_max = 16 * 1024 * 1024
"""Largest frame on a peer stream (a block with its certificate, for block sync)."""
p2p_send_queue_frames_max = 4_096
"""Frames queued for one peer before the oldest is dropped (consensus retransmits)."""
p2p_receive_queue_frames_max = 16_384
"""Frames received from all peers and not yet taken by consensus; beyond it the reader waits."""
sync_blocks_per_response_max = 16
"""Most blocks one block-sync response carries (each up to block_bytes_max)."""
p2p_reconnect_backoff_ms_max = 5_000
"""Longest wait between attempts to reach a peer."""

assert p2p_frame_bytes_max >= block_bytes_max + 1024 * 1024, "block sync frames carry whole blocks"
# A sync response is bounded by its frame: blocks are usually far below block_bytes_max, and the
# responder stops adding blocks once the frame would overflow.

# --- consensus (node/consensus/) -----------------------------------------------------------
pbft_future_views_max = 1_000
"""How far beyond its current view a replica accepts messages at its height; within that window it keeps
at most one message per sender and kind (the highest view), so one Byzantine validator cannot fill memory."""
pbft_past_views_kept = 4
"""Commits of this many views before the current one are still counted (a quorum there decides the block)."""
pbft_outbox_resend_max = 8
"""Most own messages re-sent on each resend tick (all of them go to a peer that reconnects)."""
wal_compact_bytes_min = 4 * 1024 * 1024
"""The write-ahead log is rewritten without records it no longer needs (committed heights, views left) once it
is at least this big and twice what the last rewrite kept: bounded, and no extra fsyncs per block."""
sync_request_timeout_ms = 2_000
"""A block-sync request not answered within this is given up, and the peer loses trust."""
sync_hedge_ms = 500
"""While block-sync requests go unanswered, one more peer (not yet asked) is asked every this often: a
silent or lying peer delays a node that is behind by this much, not by a whole request timeout."""
assert 0 < sync_hedge_ms < sync_request_timeout_ms, "a hedge goes out before the request it backs up times out"
sync_distrust_ms_min = 1_000
"""First time a peer that did not serve the heights it claimed is passed over; doubles per failure."""
sync_distrust_ms_max = 60_000
"""Longest a peer is passed over for block sync."""
sync_answers_per_peer_per_s_max = 50
"""Most block-sync requests answered per peer and second, and the burst allowed (each reads up to
sync_blocks_per_response_max blocks; an honest follower asks about once per commit)."""

assert pbft_past_views_kept < pbft_future_views_max
assert sync_distrust_ms_min <= sync_distrust_ms_max

# --- p2p transport (node/p2p/host.py) ------------------------------------------------------
full_nodes_max = 64
"""Most non-voting full nodes one node's config may allowlist (each costs a link and a send queue)."""
p2p_reconnect_backoff_ms_min = 100
"""First wait after a failed attempt to reach a peer; it doubles up to p2p_reconnect_backoff_ms_max."""
p2p_connect_timeout_ms_max = 5_000
"""Longest one attempt to reach a peer (TCP, Noise, yamux, protocol negotiation) may take."""
p2p_write_batch_bytes_max = 256 * 1024
"""Most bytes of queued frames written to a peer stream in one write (one larger frame goes alone)."""
p2p_read_chunk_bytes_max = 64 * 1024
"""Most bytes taken from a peer stream in one read (the yamux frame payload size)."""
p2p_stop_timeout_ms_max = 10_000
"""Longest closing the network may wait for the libp2p thread to finish."""
p2p_stream_close_timeout_ms_max = 1_000
"""Longest resetting a stream or politely closing a connection may take: a peer that stopped
reading cannot hold us longer (a connection's socket is then closed under it)."""

assert p2p_reconnect_backoff_ms_min < p2p_reconnect_backoff_ms_max
assert p2p_stream_close_timeout_ms_max < p2p_stop_timeout_ms_max
assert p2p_read_chunk_bytes_max <= p2p_write_batch_bytes_max <= p2p_frame_bytes_max

# --- risk control (node/risk.py) ------------------------------------------------------------
risk_limits_max = 64
"""Most (role, asset) limit entries in the risk rules."""
velocity_payments_max = 1_000_000
"""Largest velocity limit (payments per window) the rules may set."""

# --- governance (node/governance.py) --------------------------------------------------------
governance_action_bytes_max = 8 * 1024
"""Largest encoded governance action (risk rules are the biggest)."""
governance_voting_blocks_max = 100_000
"""Longest a proposal may stay open for approvals, in blocks."""
validators_min = 4
"""Fewest validators governance may leave: 3f+1 with f = 1, the smallest set that survives a fault. Only
removals are refused: a genesis may have fewer (the single-validator dev chain), and adding is always allowed."""
validator_change_delay_blocks = 2
"""A validator-set change approved in block h takes effect from block h + this (so every node, including
one that learns of it by block sync, switches at the same height)."""
validator_epochs_in_state_max = validator_change_delay_blocks + 1
"""Most validator sets (epochs) the state keeps: the one in force at the last block that changed the set, and
those scheduled after it (at most one per height up to the delay). Execution needs no older one; the whole
history is in the chain store (`ChainStore.validators_at`)."""
governance_proposals_listed_max = 256
"""Most recent proposals `governance_list` can show."""

assert validator_change_delay_blocks >= 1, "the next block's validator set is fixed once the head commits"
assert 1 <= validators_min <= validators_max

# --- contract VM (node/contracts/) ----------------------------------------------------------
contract_source_bytes_max = 16 * 1024
"""Largest contract source (UTF-8) a deploy may carry."""
contract_ast_nodes_max = 20_000
"""Most syntax-tree nodes in one contract (checked at deploy)."""
contract_nesting_depth_max = 32
"""Deepest nesting of expressions and statements in a contract (checked at deploy), so that the
interpreter's own recursion stays bounded."""
contract_call_depth_max = 16
"""Deepest chain of contract-function calls at run time."""
contract_int_bits_max = 256
"""Largest integer magnitude a contract may produce, in bits."""
contract_container_items_max = 4_096
"""Most items in one list, tuple or dict a contract builds."""
contract_text_bytes_max = 16 * 1024
"""Longest str (UTF-8 bytes) or bytes value a contract builds."""
contract_value_bytes_max = 16 * 1024
"""Largest encoded value a contract stores, returns or emits."""
contract_args_bytes_max = 1_536
"""Largest encoded argument list of a call or deploy (so a call stays a payment-size transaction)."""
contract_storage_key_bytes_max = 128
"""Longest encoded storage key."""
contract_events_max = 16
"""Most events one call may emit."""
receipt_events_max = 32
"""Most events in one receipt (a contract call's own events plus the transfers it made)."""
event_field_bytes_max = 1_024
"""Largest field of an event; a contract event's data (encoded) must fit one."""
contract_python_frames_max = 4_000
"""Python frames a contract run may use above its VM thread's start (node/contracts/sandbox.py); the
deepest legal contract (call depth x nesting depth) uses 936 on Python 3.11 (tests/unit/test_vm_limits.py)."""
contract_queries_running_max = 2
"""Read-only contract queries running at once (each on its own VM thread); as many more may wait, and
beyond that a query is refused with "busy, retry"."""
programs_cached_bytes_max = 64 * 1024 * 1024
"""Memory the loaded-contract cache may hold (by each program's estimate; node/contracts/runtime.py)."""
contract_constants_gas_max = 100_000
"""Gas all the constants and defaults of one contract may use to build (at load; the deploy pays it)."""
contract_gas_max = 2_000_000
"""Most gas one deploy, call or read-only query may use."""
contract_query_gas_max = 500_000
"""Most gas a read-only query over RPC may use (it runs on a VM query thread, beside the event loop)."""
contract_query_ms_max = 1_000
"""Wall-clock time a read-only query may run before it fails with query_timeout."""
contract_query_attempts_max = 3
"""Times a query that overlapped a commit (it read a moving state) is run again before "busy, retry"."""
block_gas_max = 20_000_000
"""Most contract gas one block may use. A transaction goes in only if its gas limit fits what the block's
earlier transactions left, so executing any block costs at most this much gas (about 1-2 s of VM time at
the measured 10-20 Mgas/s); an order-contract call uses about 13,000 (with the per-byte price of what it stores)."""
block_contracts_max = 16
"""Most distinct contracts one block may deploy or call. Parsing a contract that is not in memory costs
up to ~50 ms and is not metered by gas (gas must not depend on a node's cache), so this bounds it per block."""
rpc_contract_loads_per_s_max = 20
"""Most contracts RPC queries may parse per second (those not in memory); beyond it they are refused."""
gas_per_fee_unit = 1_000
"""A contract transaction's fee must cover the asset's minimum fee plus one minor unit per this much
gas of its gas limit."""

assert contract_text_bytes_max <= contract_value_bytes_max
assert contract_source_bytes_max + contract_args_bytes_max + 2_048 <= tx_bytes_max, "a deploy fits a transaction"
assert contract_args_bytes_max + 400 <= payment_tx_bytes_max, "a call fits a payment-size transaction"
assert contract_call_depth_max * contract_nesting_depth_max * 4 < 5_000, "interpreter recursion stays bounded"
assert contract_gas_max <= block_gas_max

assert ws_connections_per_client_max < ws_connections_max - ws_connections_reserved_for_gateways
assert rpc_request_cost_units_max <= rpc_client_cost_units_burst, "a request at the cap must fit a full bucket"
assert rpc_request_txs_max >= rpc_send_batch_txs_max, "one full tx_sendBatch fits a request"
assert rpc_request_cost_units_max >= rpc_cost_units_per_call + rpc_request_txs_max * rpc_cost_units_per_signature \
    + (rpc_send_batch_txs_max * payment_tx_bytes_max * 2 + 4096) // rpc_cost_bytes_per_unit, \
    "a full tx_sendBatch of the largest payments fits the price cap"
assert ws_connections_per_client_max < rpc_connections_per_client_max < rpc_connections_max
assert ws_connections_max < rpc_connections_max, "WebSockets hold HTTP connections"
assert ws_subscriptions_per_connection_max <= ws_subscriptions_per_client_max < ws_public_subscriptions_max
assert ws_subscriber_buffer_bytes_max < ws_queued_bytes_total_max < ws_connections_max * ws_subscriber_buffer_bytes_max
