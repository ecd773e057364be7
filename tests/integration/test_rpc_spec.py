"""JSON-RPC 2.0 compliance of the HTTP transport, checked with the specification's own examples.

The requests and expected responses of https://www.jsonrpc.org/specification section 7 are sent
byte for byte to a real RpcServer (POST /rpc) whose dispatcher serves the specification's example
methods. Where the specification's example message is a generic phrase ("Method not found"), the
server's message must begin with it; code, id and result must match exactly.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from node import limits
from node.rpc.jsonrpc import Dispatcher, RpcError
from tests.support import make_chain, run_async, serve_rpc

# --- the specification's example methods ------------------------------------------------

SUM_PARAMS_MAX = 8


class ExampleMethods:
    """subtract, sum, update, get_data, notify_hello, notify_sum; `calls` records every invocation."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def dispatcher(self) -> Dispatcher:
        dispatcher = Dispatcher()
        dispatcher.register("subtract", self.subtract, ("minuend", "subtrahend"))
        dispatcher.register("sum", self.sum, tuple(f"term{i}" for i in range(SUM_PARAMS_MAX)), required=0)
        dispatcher.register("update", self.update, ("a", "b", "c", "d", "e"), required=0)
        dispatcher.register("get_data", self.get_data)
        dispatcher.register("notify_hello", self.notify_hello, ("value",))
        dispatcher.register("notify_sum", self.notify_sum, tuple(f"term{i}" for i in range(SUM_PARAMS_MAX)),
                            required=0)
        dispatcher.register("explode", self.explode)
        dispatcher.register("refuse", self.refuse)
        return dispatcher

    async def subtract(self, context: Any, minuend: int, subtrahend: int) -> int:
        self.calls.append(("subtract", (minuend, subtrahend)))
        return minuend - subtrahend

    async def sum(self, context: Any, **terms: int) -> int:
        self.calls.append(("sum", tuple(terms.values())))
        return sum(terms.values())

    async def update(self, context: Any, **values: int) -> None:
        self.calls.append(("update", tuple(values.values())))

    async def get_data(self, context: Any) -> list[Any]:
        return ["hello", 5]

    async def notify_hello(self, context: Any, value: int) -> None:
        self.calls.append(("notify_hello", value))

    async def notify_sum(self, context: Any, **terms: int) -> int:
        self.calls.append(("notify_sum", tuple(terms.values())))
        return sum(terms.values())

    async def explode(self, context: Any) -> None:
        raise RuntimeError("secret internal detail /etc/paychain/key")

    async def refuse(self, context: Any) -> None:
        raise RpcError(4242, "refused by rule example_rule", {"rule": "example_rule"})


def spec_server():
    methods = ExampleMethods()
    return methods, serve_rpc(make_chain().ledger, methods.dispatcher())


def assert_matches_spec(actual: Any, expected: Any) -> None:
    """`actual` equals `expected`, except that an error message need only begin with the spec's phrase."""
    if isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), (actual, expected)
        # "The Response objects being returned from a batch call MAY be returned in any order."
        remaining = list(actual)
        for item in expected:
            match = next((a for a in remaining if _matches(a, item)), None)
            assert match is not None, f"no response matches {item} in {actual}"
            remaining.remove(match)
        return
    assert _matches(actual, expected), (actual, expected)


def _matches(actual: Any, expected: dict[str, Any]) -> bool:
    if not isinstance(actual, dict) or set(actual) != set(expected):
        return False
    for key, value in expected.items():
        if key == "error":
            error = actual["error"]
            if not (isinstance(error, dict) and error.get("code") == value["code"]
                    and isinstance(error.get("message"), str) and error["message"].startswith(value["message"])):
                return False
        elif actual[key] != value or type(actual[key]) is not type(value):
            return False
    return True


# --- section 7 examples ----------------------------------------------------------------------

SPEC_EXAMPLES = {
    "positional parameters (1)": (
        '{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}',
        '{"jsonrpc": "2.0", "result": 19, "id": 1}'),
    "positional parameters (2)": (
        '{"jsonrpc": "2.0", "method": "subtract", "params": [23, 42], "id": 2}',
        '{"jsonrpc": "2.0", "result": -19, "id": 2}'),
    "named parameters (1)": (
        '{"jsonrpc": "2.0", "method": "subtract", "params": {"subtrahend": 23, "minuend": 42}, "id": 3}',
        '{"jsonrpc": "2.0", "result": 19, "id": 3}'),
    "named parameters (2)": (
        '{"jsonrpc": "2.0", "method": "subtract", "params": {"minuend": 42, "subtrahend": 23}, "id": 4}',
        '{"jsonrpc": "2.0", "result": 19, "id": 4}'),
    "non-existent method": (
        '{"jsonrpc": "2.0", "method": "foobar", "id": "1"}',
        '{"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": "1"}'),
    "invalid JSON": (
        '{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]',
        '{"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": null}'),
    "invalid Request object": (
        '{"jsonrpc": "2.0", "method": 1, "params": "bar"}',
        '{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null}'),
    "batch, invalid JSON": (
        '[\n  {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},\n'
        '  {"jsonrpc": "2.0", "method"\n]',
        '{"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": null}'),
    "empty Array": (
        '[]',
        '{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null}'),
    "invalid batch (but not empty)": (
        '[1]',
        '[\n  {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null}\n]'),
    "invalid batch": (
        '[1,2,3]',
        '[\n  {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null},\n'
        '  {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null},\n'
        '  {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null}\n]'),
    "batch": (
        '[\n'
        '        {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},\n'
        '        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},\n'
        '        {"jsonrpc": "2.0", "method": "subtract", "params": [42,23], "id": "2"},\n'
        '        {"foo": "boo"},\n'
        '        {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},\n'
        '        {"jsonrpc": "2.0", "method": "get_data", "id": "9"} \n'
        '    ]',
        '[\n'
        '        {"jsonrpc": "2.0", "result": 7, "id": "1"},\n'
        '        {"jsonrpc": "2.0", "result": 19, "id": "2"},\n'
        '        {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null},\n'
        '        {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": "5"},\n'
        '        {"jsonrpc": "2.0", "result": ["hello", 5], "id": "9"}\n'
        '    ]'),
}


@pytest.mark.parametrize("name", list(SPEC_EXAMPLES))
@run_async
async def test_specification_example(name: str) -> None:
    request, expected = SPEC_EXAMPLES[name]
    methods, server = spec_server()
    async with server as rpc:
        status, response = await rpc.post(request)
    assert status == 200
    assert_matches_spec(response, json.loads(expected))


@run_async
async def test_batch_executes_its_notification() -> None:
    """In the spec's mixed batch, the notify_hello notification runs even though it gets no response."""
    request, _ = SPEC_EXAMPLES["batch"]
    methods, server = spec_server()
    async with server as rpc:
        await rpc.post(request)
    assert ("notify_hello", 7) in methods.calls


@pytest.mark.parametrize("request_text, expected_call", [
    ('{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}', ("update", (1, 2, 3, 4, 5))),
    ('{"jsonrpc": "2.0", "method": "foobar"}', None),
    ('[\n  {"jsonrpc": "2.0", "method": "notify_sum", "params": [1,2,4]},\n'
     '  {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}\n]', ("notify_sum", (1, 2, 4))),
], ids=["notification", "notification of a missing method", "batch of notifications"])
@run_async
async def test_notifications_get_no_response(request_text: str, expected_call: Any) -> None:
    """Spec: "The Server MUST NOT reply to a Notification"; over HTTP that is 204 with an empty body."""
    methods, server = spec_server()
    async with server as rpc:
        status, response = await rpc.post(request_text)
        assert (status, response) == (204, None)
        # The server still answers the next call on the same session.
        assert await rpc.result("subtract", [1, 1]) == 0
    if expected_call is not None:
        assert expected_call in methods.calls


@run_async
async def test_error_in_a_notification_gets_no_response() -> None:
    methods, server = spec_server()
    async with server as rpc:
        assert await rpc.post('{"jsonrpc": "2.0", "method": "subtract", "params": [1, 2, 3]}') == (204, None)
        assert await rpc.post('{"jsonrpc": "2.0", "method": "explode"}') == (204, None)


# --- params --------------------------------------------------------------------------------------

@pytest.mark.parametrize("params, rule", [
    ([42, 23, 1], "at most 2 parameters"),
    ([42], "missing subtrahend"),
    ([], "missing minuend, subtrahend"),
    ({"minuend": 42, "subtrahend": 23, "extra": 1}, "unknown parameter(s) extra"),
    ({"minuend": 42}, "missing subtrahend"),
    ({"minuend": 42, "subtract": 23}, "unknown parameter(s) subtract"),
    ("42, 23", "params must be an array or an object"),
    (42, "params must be an array or an object"),
])
@run_async
async def test_invalid_params(params: Any, rule: str) -> None:
    methods, server = spec_server()
    async with server as rpc:
        error = await rpc.error("subtract", params)
    assert error["code"] == -32602
    assert error["message"].startswith("Invalid params") and rule in error["message"]
    assert not [call for call in methods.calls if call[0] == "subtract"], "the method must not run"


@run_async
async def test_missing_params_member_means_no_params() -> None:
    methods, server = spec_server()
    async with server as rpc:
        assert await rpc.result("get_data") == ["hello", 5]
        assert await rpc.result("sum") == 0
        assert (await rpc.error("subtract"))["code"] == -32602


# --- requests -------------------------------------------------------------------------------------

@pytest.mark.parametrize("request_text, expected_id", [
    ('{"method": "subtract", "params": [1, 1], "id": 7}', 7),
    ('{"jsonrpc": "1.0", "method": "subtract", "params": [1, 1], "id": 7}', 7),
    ('{"jsonrpc": "2.0", "params": [1, 1], "id": "a"}', "a"),
    ('{"jsonrpc": "2.0", "method": "subtract", "params": [1, 1], "id": [1]}', None),
    ('{"jsonrpc": "2.0", "method": "subtract", "params": [1, 1], "id": {"a": 1}}', None),
    ('{"jsonrpc": "2.0", "method": "subtract", "params": [1, 1], "id": true}', None),
    ('"subtract"', None),
    ('42', None),
    ('null', None),
])
@run_async
async def test_invalid_request(request_text: str, expected_id: Any) -> None:
    """Not a Request object: -32600, echoing the id only when it is a valid one."""
    methods, server = spec_server()
    async with server as rpc:
        status, response = await rpc.post(request_text)
    assert status == 200
    assert response["jsonrpc"] == "2.0" and response["id"] == expected_id
    assert response["error"]["code"] == -32600
    assert not methods.calls


@pytest.mark.parametrize("body", [b"", b"   ", b"\xff\xfe\x00garbage", b"{'jsonrpc': '2.0'}"])
@run_async
async def test_invalid_json_is_a_parse_error(body: bytes) -> None:
    methods, server = spec_server()
    async with server as rpc:
        status, response = await rpc.post(body)
    assert status == 200
    assert response == {"jsonrpc": "2.0", "error": {"code": -32700, "message": response["error"]["message"]},
                        "id": None}
    assert response["error"]["message"].startswith("Parse error")


@pytest.mark.parametrize("depth", [10_000, 200_000])
@run_async
async def test_deeply_nested_json_is_a_parse_error_and_the_server_keeps_serving(depth: int) -> None:
    """JSON nested deeper than the parser can follow is a parse error, not an HTTP 500."""
    methods, server = spec_server()
    async with server as rpc:
        status, response = await rpc.post("[" * depth + "]" * depth)
        assert status == 200
        assert response["error"]["code"] == -32700 and response["id"] is None
        assert await rpc.result("subtract", [5, 3]) == 2


@run_async
async def test_string_and_null_ids_are_echoed() -> None:
    methods, server = spec_server()
    async with server as rpc:
        assert (await rpc.call("subtract", [3, 1], call_id="req-1"))["result"] == 2
        assert (await rpc.call("subtract", [3, 1], call_id=None)) == {"jsonrpc": "2.0", "result": 2, "id": None}
        assert (await rpc.call("subtract", [3, 1], call_id=0))["result"] == 2


@run_async
async def test_application_error_keeps_code_message_and_data() -> None:
    methods, server = spec_server()
    async with server as rpc:
        response = await rpc.call("refuse", call_id=11)
    assert response == {"jsonrpc": "2.0", "id": 11, "error": {
        "code": 4242, "message": "refused by rule example_rule", "data": {"rule": "example_rule"}}}


# --- failures inside methods ------------------------------------------------------------------

@run_async
async def test_exception_in_a_method_is_an_internal_error_and_the_server_keeps_serving() -> None:
    methods, server = spec_server()
    async with server as rpc:
        status, response = await rpc.post('{"jsonrpc": "2.0", "method": "explode", "id": 5}')
        assert status == 200
        assert response["id"] == 5 and response["error"]["code"] == -32603
        assert "secret" not in json.dumps(response), "internal details must not leak to the client"
        # In a batch, the failing call does not take the others down.
        status, batch = await rpc.post('[{"jsonrpc": "2.0", "method": "explode", "id": 1},'
                                       ' {"jsonrpc": "2.0", "method": "subtract", "params": [9, 4], "id": 2}]')
        assert status == 200
        assert_matches_spec(batch, [
            {"jsonrpc": "2.0", "error": {"code": -32603, "message": "Internal error"}, "id": 1},
            {"jsonrpc": "2.0", "result": 5, "id": 2}])
        assert await rpc.result("subtract", [42, 23]) == 19


# --- bounds ---------------------------------------------------------------------------------------

def _subtract_batch(count: int) -> str:
    return json.dumps([{"jsonrpc": "2.0", "method": "subtract", "params": [i, 1], "id": i} for i in range(count)])


@run_async
async def test_batch_at_the_limit_is_served() -> None:
    count = limits.rpc_batch_requests_max
    methods, server = spec_server()
    async with server as rpc:
        status, response = await rpc.post(_subtract_batch(count))
    assert status == 200
    assert sorted((r["id"], r["result"]) for r in response) == [(i, i - 1) for i in range(count)]


@run_async
async def test_batch_over_the_limit_is_an_invalid_request() -> None:
    count = limits.rpc_batch_requests_max + 1
    methods, server = spec_server()
    async with server as rpc:
        status, response = await rpc.post(_subtract_batch(count))
    assert status == 200
    assert isinstance(response, dict) and response["id"] is None
    assert response["error"]["code"] == -32600
    assert str(limits.rpc_batch_requests_max) in response["error"]["message"]
    assert not methods.calls, "no call of an oversized batch may run"


BODY_LIMIT_BYTES = 4_096


def _request_of_size(size: int) -> bytes:
    """A valid subtract call padded with whitespace to exactly `size` bytes."""
    core = b'{"jsonrpc": "2.0", "method": "subtract", "params": [2, 1], "id": 1}'
    assert len(core) <= size
    return core + b" " * (size - len(core))


@run_async
async def test_body_at_the_limit_is_served(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "rpc_body_bytes_max", BODY_LIMIT_BYTES)
    methods, server = spec_server()
    async with server as rpc:
        assert await rpc.post(_request_of_size(BODY_LIMIT_BYTES)) == (200, {"jsonrpc": "2.0", "result": 1, "id": 1})


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@run_async
async def test_body_over_the_limit_is_refused_with_413(monkeypatch: pytest.MonkeyPatch, chunked: bool) -> None:
    monkeypatch.setattr(limits, "rpc_body_bytes_max", BODY_LIMIT_BYTES)
    body = _request_of_size(BODY_LIMIT_BYTES + 1)

    async def in_pieces():
        for start in range(0, len(body), 1_000):
            yield body[start:start + 1_000]

    methods, server = spec_server()
    async with server as rpc:
        async with rpc.session.post(rpc.url(), data=in_pieces() if chunked else body,
                                    headers={"Content-Type": "application/json"}) as response:
            assert response.status == 413
            assert response.content_type == "application/json"
            payload = await response.json()
        assert payload["jsonrpc"] == "2.0" and payload["id"] is None
        assert payload["error"]["code"] == -32600 and str(BODY_LIMIT_BYTES) in payload["error"]["message"]
        assert not methods.calls
        # A fresh request is served normally afterwards.
        assert await rpc.result("subtract", [2, 1]) == 1


@pytest.mark.parametrize("body", [b'{"jsonrpc": "2.0", "method": "m", "id": NaN}',
                                  b'{"jsonrpc": "2.0", "method": "m", "id": Infinity}',
                                  b'{"jsonrpc": "2.0", "method": "m", "id": -Infinity}',
                                  b'{"jsonrpc": "2.0", "method": "m", "id": 1e999}',
                                  b'{"jsonrpc": "2.0", "method": "m", "id": 1, "params": [NaN]}'])
@run_async
async def test_invalid_non_standard_json_numbers_are_a_parse_error_and_never_echoed(body: bytes) -> None:
    methods, server = spec_server()
    async with server as rpc:
        async with rpc.session.post(rpc.url(), data=body, headers={"Content-Type": "application/json"}) as answer:
            text = await answer.text()
    assert answer.status == 200
    assert "NaN" not in text and "Infinity" not in text
    response = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in the response"))
    assert response["error"]["code"] == -32700 and response["id"] is None
    assert not methods.calls


@run_async
async def test_internal_error_tracebacks_are_logged_at_a_bounded_rate(caplog) -> None:
    methods, server = spec_server()
    calls = 3 * limits.rpc_batch_requests_max
    async with server as rpc:
        for _ in range(3):
            batch = [{"jsonrpc": "2.0", "method": "explode", "id": i} for i in range(limits.rpc_batch_requests_max)]
            status, responses = await rpc.post(json.dumps(batch))
            assert status == 200 and all(r["error"]["code"] == -32603 for r in responses)
    tracebacks = [record for record in caplog.records if record.exc_info]
    assert len(tracebacks) == limits.rpc_internal_error_logs_per_minute < calls
