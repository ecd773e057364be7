"""JSON-RPC 2.0, transport-independent: parse a request body, dispatch, build responses.

Follows https://www.jsonrpc.org/specification: single calls and batches (bounded),
notifications (no id -> no response), by-position and by-name params, and the
reserved error codes. Application errors carry stable codes from `node.rpc.errors`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from node import limits
from node.rpc.budget import CALL, Bucket, CallCost, units_of_bytes

log = logging.getLogger("paychain.rpc")

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
UNAUTHORIZED = 1004
"""(node.rpc.errors numbering) an admin method called without the admin token."""
RATE_LIMITED = 1005
"""(node.rpc.errors numbering) the client's cost budget cannot pay for the request yet; data.retry_after_ms."""


class RpcError(Exception):
    """An error to return to the caller: stable `code`, human `message`, optional `data`."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


Method = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class MethodSpec:
    """A method and the names of its parameters, in position order; trailing ones may be optional."""

    function: Method
    params: tuple[str, ...]
    required: int
    admin: bool = False
    """Callable only over HTTP with the node's admin token (see `AdminContext`)."""
    cost: Callable[..., CallCost] | None = None
    """The call's price from its bound parameters, before it runs (None: one plain call)."""


@dataclass(frozen=True, slots=True)
class AdminContext:
    """The context of an HTTP call: whether it presented the node's admin token."""

    admin: bool


class RateLimited(Exception):
    """A request its client's budget cannot pay for yet: nothing of it ran."""

    def __init__(self, retry_after_ms: int, response: str) -> None:
        super().__init__(f"rate limited, retry after {retry_after_ms} ms")
        self.retry_after_ms = retry_after_ms
        self.response = response
        """The JSON-RPC error to send back."""


class Dispatcher:
    def __init__(self, batch_max: int = limits.rpc_batch_requests_max) -> None:
        self.methods: dict[str, MethodSpec] = {}
        self.batch_max = batch_max
        self.on_call: Callable[[str, str], None] | None = None
        """Metrics hook: (method, outcome) after each call."""
        self._error_log = _LogBudget(limits.rpc_internal_error_logs_per_minute)

    def register(self, name: str, function: Method, params: tuple[str, ...] = (), required: int | None = None,
                 admin: bool = False, cost: Callable[..., CallCost] | None = None) -> None:
        """`cost(**arguments)` prices a call from its parameters (already bound, not yet checked)."""
        assert name not in self.methods, name
        self.methods[name] = MethodSpec(function, params, len(params) if required is None else required, admin, cost)

    async def handle_body(self, body: bytes | str, context: Any = None, bucket: Bucket | None = None) -> str | None:
        """Response text for a request body, or None when nothing is to be sent (only notifications).
        With a `bucket`, the request's price is taken from it before any call runs (`RateLimited` if it
        cannot pay) and the answer's bytes after."""
        request_units = units_of_bytes(len(body))
        if bucket is not None:
            self._take(bucket, request_units)   # parsing is work too: a body the budget cannot pay is not parsed
        try:
            request = json.loads(body, parse_constant=_reject_constant, parse_float=_finite_float)
        except (ValueError, UnicodeDecodeError, RecursionError):  # Recursion: nested past the parser
            return _dump(_error_response(None, RpcError(PARSE_ERROR, "Parse error: the body is not valid JSON")))
        calls = request if isinstance(request, list) else [request]
        if not calls:
            return _dump(_error_response(None, RpcError(INVALID_REQUEST, "Invalid Request: empty batch")))
        if len(calls) > self.batch_max:
            return _dump(_error_response(None, RpcError(
                INVALID_REQUEST, f"Invalid Request: batch of {len(calls)} calls exceeds the limit of "
                                 f"{self.batch_max}")))
        price = self._price(calls)
        if price.txs > limits.rpc_request_txs_max:
            return _dump(_error_response(None, RpcError(
                INVALID_REQUEST, f"Invalid Request: the calls submit {price.txs} transactions in all; one request "
                                 f"may submit at most {limits.rpc_request_txs_max}")))
        if request_units + price.units > limits.rpc_request_cost_units_max:
            return _dump(_error_response(None, RpcError(
                INVALID_REQUEST, f"Invalid Request: the request costs {request_units + price.units} units (body "
                                 f"bytes, signature checks, rows read; see node/limits.py); one request may cost at "
                                 f"most {limits.rpc_request_cost_units_max}: split it")))
        if bucket is not None:
            self._take(bucket, price.units)
        responses = [await self.handle_call(call, context) for call in calls]
        responses = [r for r in responses if r is not None]
        if not responses:
            return None
        text = _dump(responses if isinstance(request, list) else responses[0])
        if bucket is not None:
            bucket.debit(units_of_bytes(len(text)))
        return text

    def _price(self, calls: list[Any]) -> CallCost:
        """What the calls cost before they run: each method prices itself from its parameters."""
        units = txs = 0
        for call in calls:
            cost = CALL
            method = call.get("method") if isinstance(call, dict) else None
            spec = self.methods.get(method) if isinstance(method, str) else None
            if spec is not None and spec.cost is not None:
                try:
                    cost = spec.cost(**_bind(spec, call.get("params")))
                except RpcError:
                    pass   # the call will fail to bind and be answered with invalid params: a plain call
            units += cost.units
            txs += cost.txs
        return CallCost(units, txs)

    def _take(self, bucket: Bucket, units: int) -> None:
        retry_after_ms = bucket.take(units)
        if retry_after_ms is not None:
            if self.on_call is not None:
                self.on_call("(request)", "rate_limited")
            error = RpcError(RATE_LIMITED, f"rate limited: this client's budget is spent; retry after "
                                           f"{retry_after_ms} ms", {"retry_after_ms": retry_after_ms})
            raise RateLimited(retry_after_ms, _dump(_error_response(None, error)))

    async def handle_call(self, call: Any, context: Any) -> dict[str, Any] | None:
        if not isinstance(call, dict):
            return _error_response(None, RpcError(INVALID_REQUEST, "Invalid Request: a call must be an object"))
        call_id = call.get("id")
        is_notification = "id" not in call
        if call.get("jsonrpc") != "2.0" or not isinstance(call.get("method"), str):
            return _error_response(call_id if _valid_id(call_id) else None, RpcError(
                INVALID_REQUEST, "Invalid Request: needs jsonrpc \"2.0\" and a string method"))
        if not _valid_id(call_id):
            return _error_response(None, RpcError(INVALID_REQUEST, "Invalid Request: id must be a string, number "
                                                                    "or null"))
        method = call["method"]
        try:
            result = await self._invoke(method, call.get("params"), context)
            outcome = "ok"
        except RpcError as error:
            outcome = "error"
            if is_notification:
                return None
            self._count(method, outcome)
            return _error_response(call_id, error)
        except Exception:  # a bug: never crash the server, never leak internals
            self._error_log.exception("internal error in %s", method)
            self._count(method, "internal_error")
            return None if is_notification else _error_response(call_id, RpcError(INTERNAL_ERROR, "Internal error"))
        self._count(method, outcome)
        if is_notification:
            return None
        return {"jsonrpc": "2.0", "result": result, "id": call_id}

    def _count(self, method: str, outcome: str) -> None:
        if self.on_call is not None:
            self.on_call(method if method in self.methods else "unknown", outcome)

    async def _invoke(self, method: str, params: Any, context: Any) -> Any:
        spec = self.methods.get(method)
        if spec is None:
            raise RpcError(METHOD_NOT_FOUND, f"Method not found: {method}")
        if spec.admin and not (isinstance(context, AdminContext) and context.admin):
            raise RpcError(UNAUTHORIZED, f"{method} is an admin method: call it over HTTP with the header "
                                         "'Authorization: Bearer <admin_token from the node's config>'")
        arguments = _bind(spec, params)
        return await spec.function(context, **arguments)


class _LogBudget:
    """Logs at most `per_minute` tracebacks a minute; counts the rest and reports them with the next one."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self.window_started = time.monotonic()
        self.logged = 0
        self.suppressed = 0

    def exception(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self.window_started >= 60:
            self.window_started, self.logged = now, 0
        if self.logged >= self.per_minute:
            self.suppressed += 1
            return
        self.logged += 1
        if self.suppressed:
            log.error("%d more internal errors were not logged (at most %d a minute)", self.suppressed,
                      self.per_minute)
            self.suppressed = 0
        log.exception(message, *args)


def _bind(spec: MethodSpec, params: Any) -> dict[str, Any]:
    if params is None:
        params = []
    if isinstance(params, list):
        if len(params) > len(spec.params):
            raise RpcError(INVALID_PARAMS, f"Invalid params: at most {len(spec.params)} parameters "
                                           f"({', '.join(spec.params) or 'none'})")
        arguments = dict(zip(spec.params, params))
    elif isinstance(params, dict):
        unknown = set(params) - set(spec.params)
        if unknown:
            raise RpcError(INVALID_PARAMS, f"Invalid params: unknown parameter(s) {', '.join(sorted(unknown))}")
        arguments = dict(params)
    else:
        raise RpcError(INVALID_PARAMS, "Invalid params: params must be an array or an object")
    missing = [name for name in spec.params[:spec.required] if name not in arguments]
    if missing:
        raise RpcError(INVALID_PARAMS, f"Invalid params: missing {', '.join(missing)}")
    return arguments


def _reject_constant(name: str) -> float:
    """NaN, Infinity and -Infinity are not JSON (RFC 8259), though Python's parser takes them."""
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    """A JSON number with a fraction or exponent; one too large for a double (1e999) is refused, not inf."""
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text} is out of range")
    return value


def _valid_id(value: Any) -> bool:
    return value is None or isinstance(value, str) or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _error_response(call_id: Any, error: RpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": error.to_json(), "id": call_id}


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)   # standard JSON out, whatever came in
