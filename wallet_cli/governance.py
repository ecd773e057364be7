"""`paywallet governance propose … | approve | list | show`: validator operators change chain rules.

An operator signs with its validator's key (import it into the wallet). A proposal's id is
its transaction's hash; it takes effect when 2f+1 operators approved it, in the approving
transaction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from node import crypto
from node.state import RiskLimit, RiskRules
from node.state import ValidatorInfo
from node.transactions import (Action, AddValidator, GovernanceApprove, GovernancePropose, RemoveValidator, SetBlocked,
                               SetDeployer, SetMinFee, SetRiskRules, parse_role)
from wallet_cli.main import (Context, WalletFailure, _emit, _memo, default_fee_asset, main, parse_amount, pass_ctx,
                             resolve_address, run_command, send, send_options)
from wallet_cli.system import parse_id

voting_option = click.option("--voting-blocks", type=click.IntRange(1, 100_000), default=1_000, show_default=True,
                             help="Approvals are taken for this many blocks.")


@main.group("governance")
def governance() -> None:
    """Propose and approve changes to risk rules, the blocklist, deployers and fees (validator operators)."""


@governance.group("propose")
def propose() -> None:
    """Propose a change (your approval counts as the first)."""


def _propose(ctx: Context, action: Action, voting_blocks: int, sender: str, fee: str | None, fee_asset: str | None,
             wait: bool, timeout: float, password_file: Path | None, summary: str) -> None:
    send(ctx, sender, GovernancePropose(action, voting_blocks), default_fee_asset(ctx, fee_asset), fee, wait,
         timeout, password_file, summary, describe=lambda _sender, _nonce, result: {"proposal_id": result["hash"]})


def parse_limit(ctx: Context, text: str) -> RiskLimit:
    """ROLE:ASSET:PER_TX:DAILY, amounts in major units, 0 for none (e.g. user:CNY:5000:20000)."""
    try:
        role, asset, per_tx, daily = text.split(":")
        role_value = int(parse_role(role))
    except ValueError as error:
        raise WalletFailure(f"--limit {text!r}: expected ROLE:ASSET:PER_TX:DAILY ({error})") from error
    return RiskLimit(role_value, asset, parse_amount(ctx, per_tx, asset) if per_tx != "0" else 0,
                     parse_amount(ctx, daily, asset) if daily != "0" else 0)


@propose.command("risk-rules")
@click.option("--limit", "limits_text", multiple=True,
              help="ROLE:ASSET:PER_TX:DAILY in major units, 0 = none; repeat for each role and asset.")
@click.option("--velocity", help="N/SECONDS: at most N payments per account within SECONDS (default: none).")
@voting_option
@send_options
@pass_ctx
@run_command
def propose_risk_rules(ctx: Context, limits_text: tuple[str, ...], velocity: str | None, voting_blocks: int,
                       sender: str, fee: str | None, fee_asset: str | None, wait: bool, timeout: float,
                       password_file: Path | None) -> None:
    """Replace the risk rules with these limits (the whole set: list every limit you want to keep)."""
    rule_limits = tuple(parse_limit(ctx, text) for text in limits_text)
    count, window_ms = 0, 0
    if velocity is not None:
        try:
            count_text, seconds_text = velocity.split("/")
            count, window_ms = int(count_text), int(seconds_text) * 1000
        except ValueError as error:
            raise WalletFailure("--velocity is N/SECONDS, e.g. 10/60") from error
    _propose(ctx, SetRiskRules(RiskRules(rule_limits, count, window_ms)), voting_blocks, sender, fee, fee_asset,
             wait, timeout, password_file, f"propose risk rules: {len(rule_limits)} limit(s), velocity "
                                           f"{velocity or 'none'}")


@propose.command("block")
@click.argument("account")
@click.option("--unblock", is_flag=True, help="Take the account off the blocklist instead.")
@click.option("--reason", default="", help="Why (kept on chain).")
@voting_option
@send_options
@pass_ctx
@run_command
def propose_block(ctx: Context, account: str, unblock: bool, reason: str, voting_blocks: int, sender: str,
                  fee: str | None, fee_asset: str | None, wait: bool, timeout: float,
                  password_file: Path | None) -> None:
    """Put ACCOUNT on the blocklist (it can neither pay nor be paid), or take it off."""
    address = resolve_address(ctx, account)
    _propose(ctx, SetBlocked(address, not unblock, _memo(reason)), voting_blocks, sender, fee, fee_asset, wait,
             timeout, password_file, f"propose to {'unblock' if unblock else 'block'} {crypto.format_address(address)}")


@propose.command("deployer")
@click.argument("account")
@click.option("--revoke", is_flag=True, help="Revoke the permission instead of granting it.")
@voting_option
@send_options
@pass_ctx
@run_command
def propose_deployer(ctx: Context, account: str, revoke: bool, voting_blocks: int, sender: str, fee: str | None,
                     fee_asset: str | None, wait: bool, timeout: float, password_file: Path | None) -> None:
    """Grant ACCOUNT the permission to deploy contracts (or revoke it)."""
    address = resolve_address(ctx, account)
    _propose(ctx, SetDeployer(address, not revoke), voting_blocks, sender, fee, fee_asset, wait, timeout,
             password_file, f"propose to {'revoke' if revoke else 'grant'} deployment for "
                            f"{crypto.format_address(address)}")


@propose.command("min-fee")
@click.option("--asset", required=True)
@click.option("--min-fee", "amount", required=True, help="New minimum fee in major units, e.g. 0.05.")
@voting_option
@send_options
@pass_ctx
@run_command
def propose_min_fee(ctx: Context, asset: str, amount: str, voting_blocks: int, sender: str, fee: str | None,
                    fee_asset: str | None, wait: bool, timeout: float, password_file: Path | None) -> None:
    """Change ASSET's minimum transaction fee."""
    minor = parse_amount(ctx, amount, asset)
    _propose(ctx, SetMinFee(asset, minor), voting_blocks, sender, fee, fee_asset, wait, timeout, password_file,
             f"propose a minimum fee of {amount} {asset}")


@propose.command("add-validator")
@click.option("--name", "validator_name", required=True, help="The validator's name (ASCII, up to 64 characters).")
@click.option("--public-key", required=True, help="Its ed25519 public key, 64 hex digits (`paychain keys show`).")
@click.option("--role", type=click.Choice(["merchant", "gateway", "user"]), required=True,
              help="Who runs it.")
@click.option("--p2p-address", required=True, help="host:port (or a libp2p multiaddress) other validators dial.")
@voting_option
@send_options
@pass_ctx
@run_command
def propose_add_validator(ctx: Context, validator_name: str, public_key: str, role: str, p2p_address: str,
                          voting_blocks: int, sender: str, fee: str | None, fee_asset: str | None, wait: bool,
                          timeout: float, password_file: Path | None) -> None:
    """Add a validator; from 2 blocks after enactment it votes and 2f+1 counts it."""
    key = _public_key(public_key)
    info = ValidatorInfo(validator_name, key, int(parse_role(role)), p2p_address)
    _propose(ctx, AddValidator(info), voting_blocks, sender, fee, fee_asset, wait, timeout, password_file,
             f"propose adding validator {validator_name} ({crypto.format_address(crypto.address_from_public_key(key))})")


@propose.command("remove-validator")
@click.option("--public-key", required=True, help="The validator's public key, 64 hex digits.")
@voting_option
@send_options
@pass_ctx
@run_command
def propose_remove_validator(ctx: Context, public_key: str, voting_blocks: int, sender: str, fee: str | None,
                             fee_asset: str | None, wait: bool, timeout: float, password_file: Path | None) -> None:
    """Remove a validator (at least 4 must remain); from 2 blocks after enactment it no longer votes."""
    _propose(ctx, RemoveValidator(_public_key(public_key)), voting_blocks, sender, fee, fee_asset, wait, timeout,
             password_file, f"propose removing validator {public_key}")


def _public_key(text: str) -> bytes:
    return parse_id(text, "a public key")


def _proposal_id(text: str) -> bytes:
    return parse_id(text, "a proposal id")


@governance.command("approve")
@click.argument("proposal_id")
@send_options
@pass_ctx
@run_command
def approve(ctx: Context, proposal_id: str, sender: str, fee: str | None, fee_asset: str | None, wait: bool,
            timeout: float, password_file: Path | None) -> None:
    """Approve PROPOSAL_ID; the approval that reaches 2f+1 enacts it."""
    send(ctx, sender, GovernanceApprove(_proposal_id(proposal_id)), default_fee_asset(ctx, fee_asset), fee, wait,
         timeout, password_file, f"approve proposal {proposal_id}")


def _proposal_line(proposal: dict[str, Any]) -> str:
    return (f"{proposal['proposal_id']}  {proposal['status']:<9} {proposal['action']['kind']:<15} "
            f"{len(proposal['approvals'])}/{proposal['approvals_needed']} approvals, "
            f"open until height {proposal['expires_height']}")


@governance.command("list")
@pass_ctx
@run_command
def list_proposals(ctx: Context) -> None:
    """The most recent proposals, newest first."""
    proposals = ctx.rpc.call("governance_list")
    _emit(ctx, proposals, "\n".join(_proposal_line(p) for p in proposals) or "no proposals")


@governance.command("show")
@click.argument("proposal_id")
@pass_ctx
@run_command
def show(ctx: Context, proposal_id: str) -> None:
    """One proposal: its action, approvals and status."""
    import json
    proposal = ctx.rpc.call("governance_get", "0x" + _proposal_id(proposal_id).hex())
    _emit(ctx, proposal, _proposal_line(proposal) + "\n" + json.dumps(proposal["action"], indent=2))

