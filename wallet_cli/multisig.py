"""`paywallet multisig quote | propose | approve | reject | cancel | expire | show | deposit | withdraw | liquidity`.

Cross-border payments through the chain's system cross-border contract
(node/contracts/system/crossborder.contract; its address comes from `chain_getParams`). A gateway
signs a rate quote off-chain (`quote` writes it to a file the gateway hands to the payer); the payer
proposes the payment with it, and it executes once M of (payer, merchant, gateway) approve. State
changes are contract calls signed by `--from`; reads are read-only contract queries. The contract
checks every rule and names it in the failed receipt; the wallet checks the quote file before sending.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from node import crypto, encoding, limits
from node.contracts import system
from node.contracts.values_json import value_from_json, value_json
from node.rpc.views import signing_domain_from_json, signing_domain_json
from wallet_cli.main import (Context, WalletFailure, _emit, default_fee_asset, format_amount, main, parse_amount,
                             pass_ctx, password_file_option, read_password, resolve_address, run_command,
                             send_options)
from wallet_cli.system import call_system, parse_id, query_system

CROSSBORDER_GAS = 40_000
"""Gas limit of a cross-border call: propose uses about 15,800 and an approve that executes about 13,200, most of
it the per-byte price of the proposal record they store (tests/unit/test_crossborder_contract.py checks both stay
under half of this); the fee pays for the limit."""
QUOTE_FORMAT = "paychain-quote/v1"
QUOTE_KEYS = ("pay_asset", "pay_amount", "settle_asset", "settle_amount", "expires_height", "quote_id")
"""The order in which a quote's fields are signed (the contract rebuilds the dict in this order)."""
QUOTE_ID_CHARS_MAX = 64
"""As the contract's QUOTE_ID_CHARS_MAX."""
QUOTE_FILE_BYTES_MAX = 16 * 1024


@dataclass(frozen=True, slots=True)
class SignedQuote:
    domain: crypto.SigningDomain
    """The network (chain id and genesis hash) the signature is for."""
    gateway: bytes
    """Address of the gateway that quoted."""
    public_key: bytes
    """The gateway's account public key."""
    quote: dict[str, Any]
    """The quote's fields, in QUOTE_KEYS order."""
    signature: bytes
    """The gateway's signature of the quote's canonical encoding (tag TAG_CONTRACT_MESSAGE)."""


def make_quote(pay_asset: str, pay_amount: int, settle_asset: str, settle_amount: int, expires_height: int,
               quote_id: str | bytes) -> dict[str, Any]:
    """A quote value with its fields in the signed order."""
    return dict(zip(QUOTE_KEYS, (pay_asset, pay_amount, settle_asset, settle_amount, expires_height, quote_id)))


def sign_quote(keys: crypto.KeyPair, domain: crypto.SigningDomain, quote: dict[str, Any]) -> SignedQuote:
    """The gateway's signature of `quote` on the network `domain`, as the contract's `verify_signed` checks it."""
    signature = crypto.sign(keys, domain, crypto.TAG_CONTRACT_MESSAGE, encoding.encode_value(quote))
    return SignedQuote(domain, keys.address, keys.public_key, quote, signature)


def quote_document(signed: SignedQuote) -> dict[str, Any]:
    """The JSON a quote file holds."""
    return {"format": QUOTE_FORMAT, **signing_domain_json(signed.domain),
            "gateway": crypto.format_address(signed.gateway), "gateway_public_key": "0x" + signed.public_key.hex(),
            "quote": value_json(signed.quote), "signature": "0x" + signed.signature.hex()}


def parse_quote_document(document: Any) -> SignedQuote:
    """A signed quote from its JSON; WalletFailure if it is malformed or its signature does not verify."""
    try:
        if document["format"] != QUOTE_FORMAT:
            raise WalletFailure(f"the quote file is not in format {QUOTE_FORMAT}")
        public_key = encoding.parse_hex(document["gateway_public_key"], "gateway_public_key", 32)
        signature = encoding.parse_hex(document["signature"], "signature", 64)
        quote = value_from_json(document["quote"], "quote")
        signed = SignedQuote(signing_domain_from_json(document), crypto.parse_address(document["gateway"]), public_key,
                             quote, signature)
    except (KeyError, TypeError, ValueError) as error:  # DecodeError, InvalidAddress, InvalidValue are ValueErrors
        raise WalletFailure(f"the quote file is malformed: {error}") from error
    if not isinstance(quote, dict) or tuple(quote) != QUOTE_KEYS:
        raise WalletFailure(f"the quote must have exactly the fields {', '.join(QUOTE_KEYS)}, in that order")
    if type(quote["pay_asset"]) is not str or type(quote["pay_amount"]) is not int \
            or not 0 < quote["pay_amount"] <= limits.amount_max:
        raise WalletFailure("the quote's pay_asset must be an asset code and its pay_amount a positive amount in "
                            "minor units (the payer attaches it to propose)")
    if crypto.address_from_public_key(public_key) != signed.gateway:
        raise WalletFailure("the quote's public key is not the gateway's")
    if not crypto.verify(public_key, signed.domain, crypto.TAG_CONTRACT_MESSAGE, encoding.encode_value(quote),
                         signature):
        raise WalletFailure("the quote's signature does not verify: the file was changed after signing")
    return signed


def read_quote(path: Path) -> SignedQuote:
    try:
        if path.stat().st_size > QUOTE_FILE_BYTES_MAX:
            raise WalletFailure(f"{path} is larger than {QUOTE_FILE_BYTES_MAX} bytes: not a quote file")
        document = json.loads(path.read_text())
    except OSError as error:
        raise WalletFailure(f"cannot read the quote file: {error.strerror}") from error
    except (ValueError, UnicodeDecodeError) as error:
        raise WalletFailure(f"{path} is not JSON") from error
    return parse_quote_document(document)


def proposal_id_of(gateway: bytes, quote_id: str | bytes) -> bytes:
    """The id the contract gives the payment proposed with a quote: hash_value(("crossborder", gateway, quote_id))."""
    return crypto.hash_bytes(encoding.encode_value(("crossborder", gateway, quote_id)))


# --- talking to the contract --------------------------------------------------------------------

def proposal_id_bytes(text: str) -> bytes:
    return parse_id(text, "a proposal id")


def call_crossborder(ctx: Context, sender: str, function: str, args: tuple, fee: str | None, fee_asset: str,
                     wait: bool, timeout: float, password_file: Path | None, summary: str, describe=None,
                     value: tuple[str, int] = ("", 0)) -> None:
    call_system(ctx, system.CROSSBORDER, CROSSBORDER_GAS, sender, function, args, fee, fee_asset, wait, timeout,
                password_file, summary, describe, value)


def query_crossborder(ctx: Context, function: str, *args: Any) -> Any:
    return value_from_json(query_system(ctx, system.CROSSBORDER, function, *args))


def proposal_view(proposal_id: bytes, proposal: dict[str, Any]) -> dict[str, Any]:
    """A proposal as the wallet shows it: addresses as text, amounts in minor units."""
    view = {"proposal_id": "0x" + proposal_id.hex()}
    for key, value in proposal.items():
        if key in ("payer", "merchant", "gateway"):
            value = crypto.format_address(value)
        elif key == "approvals":
            value = [crypto.format_address(address) for address in value]
        elif isinstance(value, bytes):
            value = "0x" + value.hex()
        view[key] = value
    return view


@main.group("multisig")
def multisig() -> None:
    """Cross-border payments at a gateway's quoted rate, executed when M of payer, merchant and gateway approve."""


# --- gateway ------------------------------------------------------------------------------------

@multisig.command("quote")
@click.option("--from", "sender", required=True, help="The gateway's key name in the wallet (it signs).")
@click.option("--pay", required=True, help="What the payer pays, in major units of --pay-asset.")
@click.option("--pay-asset", required=True)
@click.option("--settle", required=True, help="What the merchant receives, in major units of --settle-asset.")
@click.option("--settle-asset", required=True)
@click.option("--valid-blocks", type=click.IntRange(1, 10_000_000), default=20, show_default=True,
              help="Blocks from the current height until the quote expires (the contract caps this).")
@click.option("--quote-id", help="Your reference for this quote (default: random); each id is usable once.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="File to write the signed quote to (a new file); hand it to the payer.")
@password_file_option
@pass_ctx
@run_command
def quote(ctx: Context, sender: str, pay: str, pay_asset: str, settle: str, settle_asset: str, valid_blocks: int,
          quote_id: str | None, out_path: Path, password_file: Path | None) -> None:
    """Gateway: sign a rate quote off-chain (nothing is sent to the chain)."""
    pay_minor, settle_minor = parse_amount(ctx, pay, pay_asset), parse_amount(ctx, settle, settle_asset)
    if pay_asset == settle_asset:
        raise WalletFailure("a cross-border quote converts between two different assets")
    if quote_id is not None and not 0 < len(quote_id) <= QUOTE_ID_CHARS_MAX:
        raise WalletFailure(f"--quote-id must be 1 to {QUOTE_ID_CHARS_MAX} characters")
    if out_path.exists():
        raise WalletFailure(f"{out_path} exists; choose a new file")
    keys = ctx.keystore.load(sender, read_password(password_file))
    if ctx.rpc.call("account_get", crypto.format_address(keys.address))["role"] != "gateway":
        raise WalletFailure(f"{sender} is not a registered gateway: the contract would refuse its quotes")
    expires_height = ctx.rpc.call("node_status")["height"] + valid_blocks
    value = make_quote(pay_asset, pay_minor, settle_asset, settle_minor, expires_height,
                       quote_id or "q-" + secrets.token_hex(8))
    document = quote_document(sign_quote(keys, ctx.signing_domain(), value))
    descriptor = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(document, handle, indent=2)
    _emit(ctx, {**document, "path": str(out_path)},
          f"quote {value['quote_id']}: pay {format_amount(ctx, pay_minor, pay_asset)}, settle "
          f"{format_amount(ctx, settle_minor, settle_asset)}, valid until height {expires_height}\nwrote {out_path}")


LIQUIDITY_ACTIONS = (
    ("deposit", "deposit", "Gateway: hold funds in the contract to settle payments from (your liquidity)."),
    ("withdraw", "withdraw_liquidity", "Gateway: take back (part of) your liquidity."),
)
"""(command, contract function, help) of the commands that move a gateway's liquidity."""


def _liquidity_command(name: str, function: str, help_text: str) -> None:
    @multisig.command(name, help=help_text)
    @click.option("--asset", required=True)
    @click.option("--amount", required=True, help="Amount in major units.")
    @send_options
    @pass_ctx
    @run_command
    def command(ctx: Context, asset: str, amount: str, sender: str, fee: str | None, fee_asset: str | None,
                wait: bool, timeout: float, password_file: Path | None) -> None:
        minor = parse_amount(ctx, amount, asset)
        value = (asset, minor) if function == "deposit" else ("", 0)  # a deposit attaches what it holds
        call_crossborder(ctx, sender, function, (asset, minor), fee, default_fee_asset(ctx, fee_asset, asset), wait,
                         timeout, password_file, f"{name} {format_amount(ctx, minor, asset)} of liquidity",
                         value=value)


for _name, _function, _help in LIQUIDITY_ACTIONS:
    _liquidity_command(_name, _function, _help)


@multisig.command("liquidity")
@click.argument("gateway")
@click.option("--asset", required=True)
@pass_ctx
@run_command
def liquidity(ctx: Context, gateway: str, asset: str) -> None:
    """The liquidity GATEWAY (address or key name) holds in ASSET."""
    ctx.asset(asset)
    address = resolve_address(ctx, gateway)
    minor = query_crossborder(ctx, "liquidity_of", address, asset)
    _emit(ctx, {"gateway": crypto.format_address(address), "asset": asset, "amount": minor},
          f"{format_amount(ctx, minor, asset)} held by {crypto.format_address(address)}")


# --- payer --------------------------------------------------------------------------------------

@multisig.command("propose")
@click.option("--merchant", required=True, help="The merchant's address or key name.")
@click.option("--quote", "quote_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The signed quote file from the gateway (`paywallet multisig quote`).")
@send_options
@pass_ctx
@run_command
def propose(ctx: Context, merchant: str, quote_path: Path, sender: str, fee: str | None, fee_asset: str | None,
            wait: bool, timeout: float, password_file: Path | None) -> None:
    """Payer: pay with a gateway's quote; your payment waits in escrow until enough parties approve."""
    signed = read_quote(quote_path)
    domain = ctx.signing_domain()
    if signed.domain != domain:
        raise WalletFailure(f"the quote is for another network (chain {signed.domain.chain_id!r}, genesis "
                            f"0x{signed.domain.genesis_hash.hex()[:16]}…) than this node's ({domain.chain_id!r}, "
                            f"0x{domain.genesis_hash.hex()[:16]}…)")
    terms = signed.quote
    merchant_address = resolve_address(ctx, merchant)
    proposal_id = "0x" + proposal_id_of(signed.gateway, terms["quote_id"]).hex()

    def describe(_sender: bytes, _nonce: int, result: dict[str, Any]) -> dict[str, Any]:
        failed = result.get("status") == "committed" and not result["receipt"]["success"]
        return {} if failed else {"proposal_id": proposal_id}

    call_crossborder(ctx, sender, "propose",
                     (merchant_address, signed.gateway, signed.public_key, terms, signed.signature), fee,
                     default_fee_asset(ctx, fee_asset, terms["pay_asset"]), wait, timeout, password_file,
                     f"pay {format_amount(ctx, terms['pay_amount'], terms['pay_asset'])} into escrow for "
                     f"{format_amount(ctx, terms['settle_amount'], terms['settle_asset'])} to "
                     f"{crypto.format_address(merchant_address)} (quote {terms['quote_id']}, expires at height "
                     f"{terms['expires_height']})", describe, value=(terms["pay_asset"], terms["pay_amount"]))


# --- every party --------------------------------------------------------------------------------

PROPOSAL_ACTIONS = (
    ("approve", "approve", "Payer, merchant or gateway: approve; the payment executes when approvals reach M."),
    ("reject", "reject", "Merchant or gateway: reject a proposed payment; the payer is refunded."),
    ("cancel", "cancel", "Payer: cancel a proposed payment; you are refunded."),
    ("expire", "expire", "Anyone: close a payment whose quote expired; the payer is refunded."),
)
"""(command, contract function, help) of the commands that take only a proposal id."""


def _proposal_command(name: str, function: str, help_text: str) -> None:
    @multisig.command(name, help=help_text)
    @click.argument("proposal_id")
    @send_options
    @pass_ctx
    @run_command
    def command(ctx: Context, proposal_id: str, sender: str, fee: str | None, fee_asset: str | None, wait: bool,
                timeout: float, password_file: Path | None) -> None:
        call_crossborder(ctx, sender, function, (proposal_id_bytes(proposal_id),), fee,
                         default_fee_asset(ctx, fee_asset), wait, timeout, password_file,
                         f"{name} cross-border payment {proposal_id}")


for _name, _function, _help in PROPOSAL_ACTIONS:
    _proposal_command(_name, _function, _help)


@multisig.command("show")
@click.argument("proposal_id")
@pass_ctx
@run_command
def show(ctx: Context, proposal_id: str) -> None:
    """One proposed payment: its state, parties, amounts, approvals and expiry."""
    key = proposal_id_bytes(proposal_id)
    proposal = query_crossborder(ctx, "get_proposal", key)
    if proposal is None:
        raise WalletFailure(f"no cross-border payment {proposal_id}")
    view = proposal_view(key, proposal)
    lines = [f"payment   {view['proposal_id']}", f"state     {view['state']}",
             f"pays      {format_amount(ctx, view['pay_amount'], view['pay_asset'])}  payer    {view['payer']}",
             f"settles   {format_amount(ctx, view['settle_amount'], view['settle_asset'])}  merchant "
             f"{view['merchant']}",
             f"gateway   {view['gateway']}  quote {view['quote_id']}",
             f"approvals {len(view['approvals'])} of {view['approvals_required']}: {', '.join(view['approvals'])}",
             f"expires   at height {view['expires_height']}"]
    _emit(ctx, view, "\n".join(lines))

