"""On-chain governance: validator operators propose and approve changes; 2f+1 approvals enact them.

A validator operator is the account of a genesis validator's key (its address is derived
from the validator's public key). A proposal is open for a number of blocks; the proposer's
own transaction counts as the first approval, and the approval that reaches 2f+1 (f from
the number of validators) applies the action in that same transaction, so every node
enacts it at the same height. What governance can change:

- `set_risk_rules`: per-transaction and daily limits per role and asset, velocity limits;
- `set_blocked`: the blocklist;
- `set_deployer`: who may deploy contracts;
- `set_min_fee`: an asset's minimum transaction fee;
- `add_validator` / `remove_validator`: the validator set, from height h + validator_change_delay_blocks
  where h is the enacting block, so every node (also one that syncs the blocks later) switches at the
  same height. The operators and the 2f+1 threshold are always those of the set certifying the block.
  Removing never leaves fewer than `validators_min` (4 = 3f+1 with f = 1); adding is always allowed, so a
  single-validator dev chain can grow. The state keeps only the sets execution still asks about (see
  `state.ValidatorEpochs`); the chain store keeps every set for verifying old certificates.
"""

from __future__ import annotations

import dataclasses

from node import blocks, encoding, limits
from node.blocks import Event
from node.state import (PROPOSAL_INDEX_KEY, RISK_RULES_KEY, VALIDATOR_EPOCHS_KEY, Blocked, DeployerGrant, MinFee,
                        ProposalIndex, ProposalRecord, State, ValidatorEpoch, ValidatorEpochs, blocked_key,
                        deployer_key, epoch_at, min_fee_key, proposal_key)
from node.transactions import (ACTION_NAMES, Action, AddValidator, GovernanceApprove, GovernancePropose,
                               RemoveValidator, SetBlocked, SetDeployer, SetMinFee, SetRiskRules)

OPEN, EXECUTED, EXPIRED = 1, 2, 3
STATUS_NAMES = {OPEN: "open", EXECUTED: "executed", EXPIRED: "expired"}


class GovernanceRejected(Exception):
    """A proposal or approval that breaks a rule; `code` names it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def operators(state: State, height: int) -> tuple[bytes, ...]:
    """Account addresses of the operators of the validators certifying block `height`."""
    return tuple(v.address for v in state.validators_at(height))


def approvals_needed(state: State, height: int) -> int:
    return blocks.quorum_size(len(state.validators_at(height)))


def propose(state: State, proposal_id: bytes, proposer: bytes, body: GovernancePropose, height: int) -> list[Event]:
    _require_operator(state, proposer, height)
    _check_action(state, body.action, height)
    record = ProposalRecord(encoding.encode(body), proposer, (proposer,), OPEN, height, height + body.voting_blocks)
    events = [Event("proposal_created", (proposal_id, proposer, ACTION_NAMES[type(body.action)].encode()))]
    state.put(proposal_key(proposal_id), record)
    index = state.get(PROPOSAL_INDEX_KEY)
    ids = (index.ids if index else ()) + (proposal_id,)
    state.put(PROPOSAL_INDEX_KEY, ProposalIndex(ids[-limits.governance_proposals_listed_max:]))
    return events + _enact_if_approved(state, proposal_id, record, body.action, height)


def approve(state: State, approver: bytes, body: GovernanceApprove, height: int) -> list[Event]:
    _require_operator(state, approver, height)
    record = state.get(proposal_key(body.proposal_id))
    if record is None:
        raise GovernanceRejected("unknown_proposal", "no governance proposal with this id")
    if record.status != OPEN:
        raise GovernanceRejected("proposal_closed", f"the proposal is {STATUS_NAMES[record.status]}")
    if height >= record.expires_height:  # (its status reads "expired" from then on: see status_of)
        raise GovernanceRejected("proposal_expired", f"voting closed at height {record.expires_height}")
    if approver in record.approvals:
        raise GovernanceRejected("already_approved", "this operator already approved the proposal")
    action = decode_proposal(record).action
    _check_action(state, action, height)
    record = dataclasses.replace(record, approvals=record.approvals + (approver,))
    state.put(proposal_key(body.proposal_id), record)
    events = [Event("proposal_approved", (body.proposal_id, approver))]
    return events + _enact_if_approved(state, body.proposal_id, record, action, height)


def decode_proposal(record: ProposalRecord) -> GovernancePropose:
    return encoding.decode(GovernancePropose, record.action, limits.governance_action_bytes_max)


def _enact_if_approved(state: State, proposal_id: bytes, record: ProposalRecord, action: Action,
                       height: int) -> list[Event]:
    current = operators(state, height)
    if sum(1 for approver in record.approvals if approver in current) < approvals_needed(state, height):
        return []
    _apply(state, action, height)
    state.put(proposal_key(proposal_id), dataclasses.replace(record, status=EXECUTED))
    return [Event("proposal_executed", (proposal_id, ACTION_NAMES[type(action)].encode()))]


def _apply(state: State, action: Action, height: int) -> None:
    if isinstance(action, SetRiskRules):
        state.put(RISK_RULES_KEY, action.rules)
    elif isinstance(action, SetBlocked):
        state.put(blocked_key(action.account), Blocked(action.reason, height) if action.blocked else None)
    elif isinstance(action, SetDeployer):
        state.put(deployer_key(action.account), DeployerGrant(height) if action.granted else None)
    elif isinstance(action, SetMinFee):
        state.put(min_fee_key(action.asset), MinFee(action.min_fee))
    elif isinstance(action, (AddValidator, RemoveValidator)):
        _change_validators(state, action, height)
    else:
        raise AssertionError(f"unhandled governance action {type(action).__name__}")


def _change_validators(state: State, action: AddValidator | RemoveValidator, height: int) -> None:
    from_height = height + limits.validator_change_delay_blocks
    current = state.validators_at(from_height)  # a change already scheduled counts
    if isinstance(action, AddValidator):
        validators = current + (action.validator,)
    else:
        validators = tuple(v for v in current if v.public_key != action.public_key)
    record = state.get(VALIDATOR_EPOCHS_KEY)
    epochs = record.epochs if record else (ValidatorEpoch(0, state.base.params.validators),)
    # Execution asks only about this height and later ones: keep the set in force now and those scheduled
    # (a second change in this block replaces this block's epoch). Older sets live on in the chain store.
    scheduled = tuple(e for e in epochs if height < e.from_height < from_height)
    epochs = (epoch_at(epochs, height),) + scheduled + (ValidatorEpoch(from_height, validators),)
    assert len(epochs) <= limits.validator_epochs_in_state_max, [e.from_height for e in epochs]
    state.put(VALIDATOR_EPOCHS_KEY, ValidatorEpochs(epochs))


def _check_action(state: State, action: Action, height: int) -> None:
    """Rules an action must meet against the current state (checked at proposal and at each approval)."""
    if isinstance(action, (AddValidator, RemoveValidator)):
        _check_validator_change(state, action, height)
    assets = [limit.asset for limit in action.rules.limits] if isinstance(action, SetRiskRules) else (
        [action.asset] if isinstance(action, SetMinFee) else [])
    for asset in assets:
        if state.base.params.asset(asset) is None:
            raise GovernanceRejected("unknown_asset", f"asset {asset!r} is not defined in genesis")


def _check_validator_change(state: State, action: AddValidator | RemoveValidator, height: int) -> None:
    keys = [v.public_key for v in state.validators_at(height + limits.validator_change_delay_blocks)]
    if isinstance(action, AddValidator):
        if action.validator.public_key in keys:
            raise GovernanceRejected("already_validator", "this key is already a validator")
        if len(keys) >= limits.validators_max:
            raise GovernanceRejected("too_many_validators", f"at most {limits.validators_max} validators")
    else:
        if action.public_key not in keys:
            raise GovernanceRejected("not_validator", "no validator has this key")
        if len(keys) - 1 < limits.validators_min:
            raise GovernanceRejected("too_few_validators", f"at least {limits.validators_min} validators (3f+1 with "
                                                           f"f = 1) must remain; this would leave {len(keys) - 1}")


def _require_operator(state: State, address: bytes, height: int) -> None:
    if address not in operators(state, height):
        raise GovernanceRejected("not_operator", "only a validator operator (a validator's key) may do this")


def status_of(record: ProposalRecord, height: int) -> str:
    """open, executed, or expired (an open proposal whose voting window has passed)."""
    if record.status == OPEN and height >= record.expires_height:
        return STATUS_NAMES[EXPIRED]
    return STATUS_NAMES[record.status]
