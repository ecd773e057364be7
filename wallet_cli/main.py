"""`paywallet`: keys, balances and payments from the command line.

Every command has `--json`; commands that send a transaction have `--wait` (block
until final). Amounts are decimal in major units ("12.50" CNY), converted with the
asset's decimals from the chain. Exit codes a script can rely on:

    0  success                       4  the node rejected the transaction
    1  other failure                 5  keystore or password problem
    2  usage error                   6  --wait timed out before finality
    3  node unreachable              7  committed, but execution failed (receipt)
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
import unicodedata
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable

import click

from node import crypto, limits
from node.crypto import KeyPair
from node.rpc.views import signing_domain_from_json
from node.transactions import (RechargePost, RechargeRequest, RechargeVoid, Register, SetMerchantStatus, Transaction,
                               Transfer, Withdraw, parse_role, required_fee, sign_transaction)
from wallet_cli.keystore import PASSWORD_CHARS_MIN, Keystore, KeystoreError, WrongPassword
from wallet_cli.rpc_client import RpcCallError, RpcClient, RpcUnavailable

EXIT_FAILURE = 1
EXIT_UNREACHABLE = 3
EXIT_REJECTED = 4
EXIT_KEYSTORE = 5
EXIT_TIMEOUT = 6
EXIT_EXECUTION_FAILED = 7

PASSWORD_ENV = "PAYWALLET_PASSWORD"


class WalletFailure(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILURE, data: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.data = data or {}


class Context:
    def __init__(self, wallet_dir: Path, rpc_url: str, as_json: bool) -> None:
        self.keystore = Keystore(wallet_dir)
        self.rpc = RpcClient(rpc_url)
        self.as_json = as_json
        self._params: dict[str, Any] | None = None
        self._signing_domain: crypto.SigningDomain | None = None

    def params(self) -> dict[str, Any]:
        if self._params is None:
            self._params = self.rpc.call("chain_getParams")
        return self._params

    def signing_domain(self) -> crypto.SigningDomain:
        """The network of the node this wallet talks to (chain id and genesis hash): what it signs for."""
        if self._signing_domain is None:
            try:
                self._signing_domain = signing_domain_from_json(self.params())
            except ValueError as error:
                raise WalletFailure(f"the node's chain_getParams names {error}") from error
        return self._signing_domain

    def asset(self, code: str) -> dict[str, Any]:
        for asset in self.params()["assets"]:
            if asset["code"] == code:
                return asset
        known = ", ".join(a["code"] for a in self.params()["assets"])
        raise WalletFailure(f"unknown asset {code!r}; this chain has {known}")


def _emit(ctx: Context, data: Any, text: str) -> None:
    click.echo(json.dumps(data, indent=2) if ctx.as_json else terminal_safe(text))


def terminal_safe(text: str) -> str:
    """Text for a terminal with every control and format character shown as an escape, new lines and tabs
    apart: chain data (a product name, a memo) is anyone's to write, and an escape sequence in it could
    retitle or rewrite the terminal, a bidi override (U+202E) could make it read backwards.
    JSON output needs none of this: json.dumps escapes them all."""
    return "".join(character if character in "\n\t" or unicodedata.category(character) not in UNSAFE_CATEGORIES
                   else f"\\u{ord(character):04x}" for character in text)


UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
"""Control, format (bidi overrides, zero-width), line and paragraph separators, surrogates, private use,
unassigned."""


def run_command(function: Callable[..., None]) -> Callable[..., None]:
    """Map every expected failure to its message and exit code (JSON on --json)."""
    import functools

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        ctx: Context = click.get_current_context().find_object(Context)
        try:
            function(*args, **kwargs)
            return
        except WalletFailure as failure:
            message, code, data = failure.message, failure.code, failure.data
        except WrongPassword as error:
            message, code, data = str(error), EXIT_KEYSTORE, {}
        except KeystoreError as error:
            message, code, data = str(error), EXIT_KEYSTORE, {}
        except RpcUnavailable as error:
            message, code, data = str(error), EXIT_UNREACHABLE, {}
        except RpcCallError as error:
            code = EXIT_REJECTED if error.code >= 2000 else EXIT_FAILURE
            message, data = error.message, {"rpc_code": error.code, "rule": error.rule}
        if ctx is not None and ctx.as_json:
            click.echo(json.dumps({"error": message, "exit_code": code, **data}))
        else:
            click.echo(f"error: {terminal_safe(message)}", err=True)
        sys.exit(code)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--wallet-dir", type=click.Path(file_okay=False, path_type=Path),
              default=lambda: os.environ.get("PAYWALLET_DIR", str(Path.home() / ".paychain" / "wallet")),
              show_default="$PAYWALLET_DIR or ~/.paychain/wallet", help="Folder of encrypted keystores.")
@click.option("--rpc", "rpc_url", default=lambda: os.environ.get("PAYCHAIN_RPC", "http://127.0.0.1:26657/rpc"),
              show_default="$PAYCHAIN_RPC or http://127.0.0.1:26657/rpc", help="Node JSON-RPC URL.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (also for errors).")
@click.pass_context
def main(click_context: click.Context, wallet_dir: Path, rpc_url: str, as_json: bool) -> None:
    """Paychain wallet: create keys, check balances, send payments."""
    click_context.obj = Context(wallet_dir, rpc_url, as_json)


pass_ctx = click.make_pass_decorator(Context)
password_file_option = click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path),
                                    help=f"Read the password from a file (else ${PASSWORD_ENV}, else a prompt).")


def read_password(password_file: Path | None, confirm: bool = False) -> str:
    if password_file is not None:
        try:
            return password_file.read_text().rstrip("\r\n")
        except OSError as error:
            raise WalletFailure(f"cannot read the password file: {error.strerror}", EXIT_KEYSTORE) from error
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    if not sys.stdin.isatty():
        raise WalletFailure(f"no password: use --password-file or ${PASSWORD_ENV} when not on a terminal",
                            EXIT_KEYSTORE)
    return click.prompt("Password", hide_input=True, confirmation_prompt=confirm)


# --- keys ----------------------------------------------------------------------------------------

def read_new_password(password_file: Path | None) -> str:
    """The password a new keystore is encrypted with (new or imported key): never empty or short."""
    password = read_password(password_file, confirm=True)
    if len(password) < PASSWORD_CHARS_MIN:
        raise WalletFailure(f"password must have at least {PASSWORD_CHARS_MIN} characters", EXIT_KEYSTORE)
    return password


@main.command("new")
@click.argument("name")
@password_file_option
@pass_ctx
@run_command
def new(ctx: Context, name: str, password_file: Path | None) -> None:
    """Create a new key NAME, encrypted with a password."""
    password = read_new_password(password_file)
    keys = KeyPair.generate()
    path = ctx.keystore.save(name, keys, password)
    address = crypto.format_address(keys.address)
    _emit(ctx, {"name": name, "address": address, "path": str(path)}, f"created {name}: {address}\nkeystore {path}")


@main.command("import")
@click.argument("name")
@click.option("--secret-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="File holding the 32-byte secret seed as 64 hex characters.")
@password_file_option
@pass_ctx
@run_command
def import_key(ctx: Context, name: str, secret_file: Path, password_file: Path | None) -> None:
    """Import a secret seed as key NAME."""
    try:
        keys = KeyPair.from_seed(bytes.fromhex(secret_file.read_text().strip().removeprefix("0x")))
    except ValueError as error:
        raise WalletFailure(f"the secret file must hold 64 hex characters: {error}") from error
    password = read_new_password(password_file)
    path = ctx.keystore.save(name, keys, password)
    address = crypto.format_address(keys.address)
    _emit(ctx, {"name": name, "address": address, "path": str(path)}, f"imported {name}: {address}")


@main.command("export")
@click.argument("name")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="File to write the secret seed to (mode 0600). The secret is never printed.")
@password_file_option
@pass_ctx
@run_command
def export(ctx: Context, name: str, out_path: Path, password_file: Path | None) -> None:
    """Export key NAME's secret seed (hex) to a file readable only by you."""
    keys = ctx.keystore.load(name, read_password(password_file))
    if out_path.exists():
        raise WalletFailure(f"{out_path} exists; choose a new file")
    descriptor = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(keys.seed.hex() + "\n")
    _emit(ctx, {"name": name, "path": str(out_path)}, f"wrote the secret of {name} to {out_path} (keep it safe)")


@main.command("list")
@pass_ctx
@run_command
def list_keys(ctx: Context) -> None:
    """List the keys in the wallet folder."""
    rows = []
    for name in ctx.keystore.names():
        try:
            info = ctx.keystore.info(name)
            rows.append({"name": name, "address": info.address})
        except KeystoreError as error:
            rows.append({"name": name, "error": str(error)})
    text = "\n".join(f"{r['name']:<16} {r.get('address') or 'unreadable: ' + r['error']}" for r in rows)
    _emit(ctx, rows, text or f"no keys in {ctx.keystore.folder}")


def resolve_address(ctx: Context, who: str) -> bytes:
    """An address from its text or from the name of a key in the wallet."""
    if who.startswith(crypto.ADDRESS_PREFIX):
        try:
            return crypto.parse_address(who)
        except crypto.InvalidAddress as error:
            raise WalletFailure(f"{who!r}: {error}") from error
    try:
        return crypto.parse_address(ctx.keystore.info(who).address)
    except crypto.InvalidAddress as error:
        raise WalletFailure(f"keystore {who!r} holds a bad address: {error}", EXIT_KEYSTORE) from error


# --- amounts -----------------------------------------------------------------------------------

def parse_amount(ctx: Context, text: str, asset: str) -> int:
    decimals = ctx.asset(asset)["decimals"]
    try:
        value = Decimal(text)
    except InvalidOperation as error:
        raise WalletFailure(f"amount {text!r} is not a number") from error
    minor = value * (10 ** decimals)
    if not value.is_finite() or minor != minor.to_integral_value():
        raise WalletFailure(f"amount {text!r} has more than {decimals} decimals for {asset}")
    if minor <= 0 or minor > limits.amount_max:
        raise WalletFailure(f"amount must be positive and at most {limits.amount_max} minor units")
    return int(minor)


def format_amount(ctx: Context, minor: int, asset: str) -> str:
    decimals = ctx.asset(asset)["decimals"]
    return f"{Decimal(minor).scaleb(-decimals):.{decimals}f} {asset}"


# --- reading the chain ---------------------------------------------------------------------------

@main.command("balance")
@click.argument("who")
@pass_ctx
@run_command
def balance(ctx: Context, who: str) -> None:
    """Balances, nonce and role of WHO (an address or a key name)."""
    account = ctx.rpc.call("account_get", crypto.format_address(resolve_address(ctx, who)))
    lines = [f"address {account['address']}", f"role    {account['role'] or 'unregistered'}",
             f"nonce   {account['nonce']}"]
    lines += [f"  {format_amount(ctx, amount, asset)}" for asset, amount in sorted(account["balances"].items())]
    if not account["balances"]:
        lines.append("  (no funds)")
    _emit(ctx, account, "\n".join(lines))


@main.command("history")
@click.argument("who")
@click.option("--limit", type=click.IntRange(1, limits.rpc_history_items_max), default=20, show_default=True)
@click.option("--before", help="Cursor HEIGHT:INDEX from a previous page.")
@pass_ctx
@run_command
def history(ctx: Context, who: str, limit: int, before: str | None) -> None:
    """Transactions that touched WHO, newest first."""
    cursor = None
    if before:
        try:
            height, index = before.split(":")
            cursor = [int(height), int(index)]
        except ValueError as error:
            raise WalletFailure("--before is HEIGHT:INDEX") from error
    page = ctx.rpc.call("account_getHistory", crypto.format_address(resolve_address(ctx, who)), limit, cursor)
    lines = []
    for item in page["items"]:
        tx = item["transaction"]
        outcome = "ok" if item["receipt"]["success"] else f"FAILED {item['receipt']['code']}"
        lines.append(f"{item['height']:>8}:{item['index']:<5} {tx['kind']:<17} {_describe_body(ctx, tx)}  [{outcome}]  "
                     f"{item['hash'][:18]}…")
    if page["next"]:
        lines.append(f"more: --before {page['next'][0]}:{page['next'][1]}")
    _emit(ctx, page, "\n".join(lines) or "no transactions")


def _describe_body(ctx: Context, tx: dict[str, Any]) -> str:
    body = tx["body"]
    if "function" in body:
        attached = f" with {format_amount(ctx, body['value'], body['value_asset'])}" if body.get("value") else ""
        return f"{body['function']}() on {body['contract']}{attached}"
    if "amount" in body:  # an ApproveSpend names the contract allowed to pull the amount
        target = body.get("recipient") or body.get("gateway") or body.get("contract")
        return f"{format_amount(ctx, body['amount'], body['asset'])} -> {target}"
    if "account" in body:
        return f"{body['account']} as {body['role']}"
    return body.get("request_id", "")


@main.command("tx")
@click.argument("tx_hash")
@pass_ctx
@run_command
def tx(ctx: Context, tx_hash: str) -> None:
    """Status, receipt and contents of the transaction TX_HASH."""
    result = ctx.rpc.call("tx_get", tx_hash)
    text = f"{result['hash']}\nstatus  {result['status']}"
    if result["status"] == "committed":
        receipt = result["receipt"]
        text += (f"\nheight  {result['height']} (index {result['index']})\nkind    {result['transaction']['kind']}"
                 f"\nsender  {result['transaction']['sender']}\nresult  "
                 + ("success" if receipt["success"] else f"failed: {receipt['code']}: {receipt['message']}")
                 + f"\nfee     {format_amount(ctx, receipt['fee_paid'], receipt['fee_asset'])}")
    elif result["status"] == "rejected":
        text += f"\nrule    {result['rule']}: {result['message']}"
    _emit(ctx, result, text)
    if result["status"] == "committed" and not result["receipt"]["success"]:
        sys.exit(EXIT_EXECUTION_FAILED)


# --- sending -------------------------------------------------------------------------------------

def send_options(function: Callable[..., None]) -> Callable[..., None]:
    function = click.option("--wait/--no-wait", default=False, help="Block until the transaction is final.")(function)
    function = click.option("--timeout", type=click.FloatRange(0.1, limits.rpc_wait_ms_max / 1000), default=30.0,
                            show_default=True, help="Seconds --wait waits.")(function)
    function = click.option("--fee", help="Fee in major units (default: the chain's minimum).")(function)
    function = click.option("--fee-asset", help="Asset to pay the fee in (default: the payment's asset).")(function)
    function = click.option("--from", "sender", required=True, help="Key name in the wallet that signs.")(function)
    return password_file_option(function)


def send(ctx: Context, sender: str, body: Any, fee_asset: str, fee: str | None, wait: bool, timeout: float,
         password_file: Path | None, summary: str,
         describe: Callable[[bytes, int, dict[str, Any]], dict[str, Any]] | None = None) -> None:
    """Sign and submit `body` from key `sender`. `describe(sender address, nonce, result)` adds facts known only
    once the nonce or the receipt is (a deployed contract's address, a new order's id) to the output."""
    keys = ctx.keystore.load(sender, read_password(password_file))
    asset = ctx.asset(fee_asset)
    account = ctx.rpc.call("account_get", crypto.format_address(keys.address))
    domain = ctx.signing_domain()
    transaction = Transaction(domain.chain_id, keys.public_key, account["pending_nonce"], fee_asset, 0, body)
    # The least fee the chain takes: the asset's minimum, plus the gas limit's share for a contract transaction.
    fee_minor = required_fee(transaction, asset["min_fee"]) if fee is None else parse_amount(ctx, fee, fee_asset)
    transaction = dataclasses.replace(transaction, fee=fee_minor)
    raw = sign_transaction(keys, domain, transaction)
    tx_hash = ctx.rpc.call("tx_send", "0x" + raw.hex())["hash"]
    result: dict[str, Any] = {"hash": tx_hash, "status": "pending", "nonce": transaction.nonce}
    if wait:
        result = wait_final(ctx, tx_hash, timeout)
    facts = describe(keys.address, transaction.nonce, result) if describe else {}
    result.update(facts)
    text = "\n".join([summary] + [f"{key} {value}" for key, value in facts.items()]
                     + [f"tx {tx_hash}", f"status {result['status']}"])
    if result["status"] == "committed":
        receipt = result["receipt"]
        text += f" at height {result['height']}" + ("" if receipt["success"] else
                                                    f"\nFAILED {receipt['code']}: {receipt['message']}")
    _emit(ctx, result, text)
    if result["status"] == "committed" and not result["receipt"]["success"]:
        sys.exit(EXIT_EXECUTION_FAILED)
    if result["status"] == "rejected":
        sys.exit(EXIT_REJECTED)


def wait_final(ctx: Context, tx_hash: str, timeout_s: float) -> dict[str, Any]:
    """Poll tx_get until committed or rejected, with a spinner on a terminal."""
    spinner = "|/-\\"
    show = sys.stderr.isatty() and not ctx.as_json
    deadline = time.monotonic() + timeout_s
    step = 0
    while True:
        result = ctx.rpc.call("tx_get", tx_hash)
        if result["status"] in ("committed", "rejected"):
            if show:
                click.echo("\r" + " " * 40 + "\r", nl=False, err=True)
            return result
        if time.monotonic() >= deadline:
            raise WalletFailure(f"not final after {timeout_s:.0f} s (status {result['status']}); check later with "
                                f"`paywallet tx {tx_hash}`", EXIT_TIMEOUT, {"hash": tx_hash})
        if show:
            click.echo(f"\r{spinner[step % 4]} waiting for finality ({result['status']})", nl=False, err=True)
        step += 1
        time.sleep(0.1)


def default_fee_asset(ctx: Context, fee_asset: str | None, payment_asset: str | None = None) -> str:
    return fee_asset or payment_asset or ctx.params()["assets"][0]["code"]


@main.command("transfer")
@click.option("--to", "recipient", required=True, help="Recipient address or key name.")
@click.option("--amount", required=True, help="Amount in major units, e.g. 12.50.")
@click.option("--asset", required=True, help="Asset code, e.g. CNY.")
@send_options
@pass_ctx
@run_command
def transfer(ctx: Context, recipient: str, amount: str, asset: str, sender: str, fee: str | None,
             fee_asset: str | None, wait: bool, timeout: float, password_file: Path | None) -> None:
    """Send AMOUNT of ASSET to another registered account."""
    minor = parse_amount(ctx, amount, asset)
    to = resolve_address(ctx, recipient)
    send(ctx, sender, Transfer(to, asset, minor), default_fee_asset(ctx, fee_asset, asset), fee, wait, timeout,
         password_file, f"transfer {format_amount(ctx, minor, asset)} to {crypto.format_address(to)}")


@main.command("recharge")
@click.option("--gateway", required=True, help="Gateway address or key name that receives the off-chain funds.")
@click.option("--amount", required=True, help="Amount in major units.")
@click.option("--asset", required=True)
@click.option("--reference", default="", help="Your reference for the gateway (e.g. bank transfer memo).")
@send_options
@pass_ctx
@run_command
def recharge(ctx: Context, gateway: str, amount: str, asset: str, reference: str, sender: str, fee: str | None,
             fee_asset: str | None, wait: bool, timeout: float, password_file: Path | None) -> None:
    """Ask a gateway to top up your balance; it is credited when the gateway posts it."""
    minor = parse_amount(ctx, amount, asset)
    body = RechargeRequest(resolve_address(ctx, gateway), asset, minor, _memo(reference))
    send(ctx, sender, body, default_fee_asset(ctx, fee_asset, asset), fee, wait, timeout, password_file,
         f"recharge request for {format_amount(ctx, minor, asset)} (its request id is the tx hash)")


@main.command("withdraw")
@click.option("--gateway", required=True, help="Gateway address or key name that pays out.")
@click.option("--amount", required=True)
@click.option("--asset", required=True)
@click.option("--payout-reference", required=True, help="Where the gateway pays out (e.g. a bank account ref).")
@send_options
@pass_ctx
@run_command
def withdraw(ctx: Context, gateway: str, amount: str, asset: str, payout_reference: str, sender: str,
             fee: str | None, fee_asset: str | None, wait: bool, timeout: float, password_file: Path | None) -> None:
    """Burn AMOUNT of ASSET; the gateway pays it out off-chain."""
    minor = parse_amount(ctx, amount, asset)
    body = Withdraw(resolve_address(ctx, gateway), asset, minor, _memo(payout_reference))
    send(ctx, sender, body, default_fee_asset(ctx, fee_asset, asset), fee, wait, timeout, password_file,
         f"withdraw {format_amount(ctx, minor, asset)}")


def _memo(text: str) -> str:
    if len(text.encode()) > limits.memo_bytes_max:
        raise WalletFailure(f"reference is longer than {limits.memo_bytes_max} bytes")
    return text


def _request_id(text: str) -> bytes:
    try:
        request_id = bytes.fromhex(text.removeprefix("0x"))
    except ValueError as error:
        raise WalletFailure("request id must be 64 hex characters (the recharge tx hash)") from error
    if len(request_id) != 32:
        raise WalletFailure("request id must be 64 hex characters (the recharge tx hash)")
    return request_id


@main.command("recharge-post")
@click.argument("request_id")
@click.option("--reference", required=True, help="The gateway's reference for the funds received.")
@send_options
@pass_ctx
@run_command
def recharge_post(ctx: Context, request_id: str, reference: str, sender: str, fee: str | None,
                  fee_asset: str | None, wait: bool, timeout: float, password_file: Path | None) -> None:
    """Gateway: confirm the funds of REQUEST_ID arrived; the user is credited."""
    send(ctx, sender, RechargePost(_request_id(request_id), _memo(reference)), default_fee_asset(ctx, fee_asset),
         fee, wait, timeout, password_file, f"post recharge {request_id}")


@main.command("recharge-void")
@click.argument("request_id")
@click.option("--reason", required=True)
@send_options
@pass_ctx
@run_command
def recharge_void(ctx: Context, request_id: str, reason: str, sender: str, fee: str | None, fee_asset: str | None,
                  wait: bool, timeout: float, password_file: Path | None) -> None:
    """Gateway: decline REQUEST_ID; nothing is credited."""
    send(ctx, sender, RechargeVoid(_request_id(request_id), _memo(reason)), default_fee_asset(ctx, fee_asset),
         fee, wait, timeout, password_file, f"void recharge {request_id}")


@main.command("register")
@click.argument("account")
@click.option("--role", type=click.Choice(["user", "merchant", "gateway"]), required=True)
@click.option("--kyc-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="The identity document checked; only its hash goes on chain.")
@send_options
@pass_ctx
@run_command
def register(ctx: Context, account: str, role: str, kyc_file: Path, sender: str, fee: str | None,
             fee_asset: str | None, wait: bool, timeout: float, password_file: Path | None) -> None:
    """Gateway: attest that ACCOUNT passed KYC, with a role."""
    kyc_hash = crypto.hash_bytes(kyc_file.read_bytes())
    address = resolve_address(ctx, account)
    body = Register(address, int(parse_role(role)), kyc_hash)
    send(ctx, sender, body, default_fee_asset(ctx, fee_asset), fee, wait, timeout, password_file,
         f"register {crypto.format_address(address)} as {role} (kyc hash {kyc_hash.hex()[:16]}…)")



@main.command("merchant-status")
@click.argument("merchant")
@click.option("--suspend/--activate", "suspend", required=True, help="Suspend the merchant, or reactivate it.")
@click.option("--reason", default="", help="Why (kept on chain, up to 128 bytes).")
@send_options
@pass_ctx
@run_command
def merchant_status(ctx: Context, merchant: str, suspend: bool, reason: str, sender: str, fee: str | None,
                    fee_asset: str | None, wait: bool, timeout: float, password_file: Path | None) -> None:
    """Gateway: suspend MERCHANT (no new orders to it) or reactivate it."""
    address = resolve_address(ctx, merchant)
    body = SetMerchantStatus(address, not suspend, _memo(reason))
    send(ctx, sender, body, default_fee_asset(ctx, fee_asset), fee, wait, timeout, password_file,
         f"{'suspend' if suspend else 'reactivate'} merchant {crypto.format_address(address)}")


def _set_json(click_context: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        click_context.find_object(Context).as_json = True


from wallet_cli import contracts, governance, multisig, orders  # noqa: E402,F401  (they register their commands on `main`)


def _leaf_commands(group: click.Group) -> list[click.Command]:
    commands: list[click.Command] = []
    for command in group.commands.values():
        commands += _leaf_commands(command) if isinstance(command, click.Group) else [command]
    return commands


# `--json` works before or after the command name: `paywallet --json balance x` or `paywallet balance x --json`.
for _command in _leaf_commands(main):
    _command.params.append(click.Option(["--json"], is_flag=True, expose_value=False, is_eager=True,
                                        callback=_set_json, help="Machine-readable output (also for errors)."))
