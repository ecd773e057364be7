"""The merchant API's OpenAPI 3.0 document, served at `/openapi.json` (checked by schemathesis in the tests)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway import payments, webhooks
from gateway.api import (EXPIRES_IN_S_MIN, IDEMPOTENCY_KEY_PATTERN, PAGE_ITEMS_MAX, PRODUCT_ID_CHARS_MAX, QUANTITY_MAX,
                         TEXT_CHARS_MAX)
from gateway.analytics import REPORT_DAYS_MAX

ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["code", "message"],
    "properties": {"code": {"type": "string", "description": "stable machine-readable name of the rule"},
                   "message": {"type": "string", "description": "what went wrong, for people"}}}}}
NULLABLE_TEXT = {"type": "string", "nullable": True}
NULLABLE_INT = {"type": "integer", "nullable": True}
OPTION = {"type": "object", "required": ["product_id", "name", "currency", "unit_price", "quantity", "total"],
          "properties": {"product_id": {"type": "string"}, "name": {"type": "string"},
                         "currency": {"type": "string"}, "unit_price": {"type": "integer"},
                         "decimals": {"type": "integer", "description": "digits after the point of `currency`"},
                         "quantity": {"type": "integer"}, "total": {"type": "integer"}}}
PAYMENT = {
    "type": "object",
    "required": ["id", "merchant", "region", "state", "product_id", "quantity", "options", "currency", "total",
                 "checkout_url", "created_at", "expires_at"],
    "properties": {
        "id": {"type": "string", "description": "also the secret part of the checkout link"},
        "merchant": {"type": "string"}, "region": {"type": "string"}, "chain_id": {"type": "string"},
        "state": {"type": "string", "enum": list(payments.STATES),
                  "description": "; ".join(f"{state}: {text}" for state, text in payments.STATE_DESCRIPTIONS.items())},
        "product_id": {"type": "string"}, "quantity": {"type": "integer"},
        "options": {"type": "array", "items": OPTION, "description": "what the shopper may pay with (one per asset)"},
        "chosen": NULLABLE_TEXT, "currency": {"type": "string"}, "unit_price": {"type": "integer"},
        "total": {"type": "integer", "description": "minor units of `currency`"},
        "buyer": NULLABLE_TEXT, "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
        "created_at": {"type": "number"}, "updated_at": {"type": "number"}, "expires_at": {"type": "number"},
        "tx_hash": NULLABLE_TEXT, "order_id": NULLABLE_TEXT, "height": NULLABLE_INT, "error": NULLABLE_TEXT,
        "history": {"type": "array", "items": {"type": "object"}},
        "checkout_url": {"type": "string", "description": "send the shopper here to pay"}}}
CREATE = {
    "type": "object", "required": ["product_id"], "additionalProperties": False,
    "properties": {
        "product_id": {"type": "string", "minLength": 1, "maxLength": PRODUCT_ID_CHARS_MAX,
                       "description": "a product of your on-chain catalog"},
        "quantity": {"type": "integer", "minimum": 1, "maximum": QUANTITY_MAX, "default": 1},
        "alternatives": {"type": "array", "maxItems": payments.ALTERNATIVES_MAX,
                         "items": {"type": "string", "minLength": 1, "maxLength": PRODUCT_ID_CHARS_MAX},
                         "description": "the same item priced in other assets: the shopper chooses"},
        "buyer": {"type": "string", "description": "only this wallet address may pay"},
        "region": {"type": "string", "description": "the shopper's region: picks the network"},
        "expires_in_s": {"type": "integer", "minimum": EXPIRES_IN_S_MIN, "description": "at most the gateway's checkout_ttl_s"},
        "metadata": {"type": "object", "maxProperties": payments.METADATA_ITEMS_MAX,
                     "additionalProperties": {"type": "string", "maxLength": payments.METADATA_TEXT_MAX}}}}
ACTION = {"type": "object", "required": ["payment", "tx_hash", "action"],
          "properties": {"payment": PAYMENT, "tx_hash": {"type": "string"}, "action": {"type": "string"}}}
DELIVERY = {"type": "object", "required": ["id", "payment_id", "event", "state", "attempts"],
            "properties": {"id": {"type": "string"}, "payment_id": {"type": "string"}, "event": {"type": "string"},
                           "state": {"type": "string", "enum": ["pending", "delivered", "failed"]},
                           "attempts": {"type": "integer"}, "created_at": {"type": "number"},
                           "next_attempt_at": {"type": "number", "nullable": True},
                           "delivered_at": {"type": "number", "nullable": True},
                           "log": {"type": "array", "items": {"type": "object"}}}}
REPORT = {"type": "object", "required": ["daily", "totals", "volume", "cancel_rate", "refund_rate", "top_products"],
          "properties": {"merchant": {"type": "string"}, "days": {"type": "integer"}, "from": {"type": "string"},
                         "to": {"type": "string"}, "daily": {"type": "array", "items": {"type": "object"}},
                         "totals": {"type": "object"}, "volume": {"type": "object"},
                         "refunded_volume": {"type": "object"}, "cancel_rate": {"type": "number"},
                         "decimals": {"type": "object", "description": "digits after the point per asset"},
                         "refund_rate": {"type": "number"}, "top_products": {"type": "array",
                                                                              "items": {"type": "object"}}}}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    texts = {400: "invalid request (the message names the field)", 401: "missing or wrong API key",
             403: "CSRF check failed (session requests)", 404: "no such payment (or not yours)",
             409: "the payment's state does not allow this, or the idempotency key is in use",
             413: "request body too large", 415: "body is not application/json",
             422: "refused: unknown product, over the limit, key reused with another body, chain refused",
             429: "rate limited", 503: "no node of the region answers"}
    return {str(status): _json(ERROR, texts[status]) for status in (401, 429) + statuses}


PAYMENT_ID = {"name": "payment_id", "in": "path", "required": True, "schema": {"type": "string"}}
PAGING = [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": PAGE_ITEMS_MAX}},
          {"name": "cursor", "in": "query", "schema": {"type": "string"},
           "description": "next_cursor of the previous page"}]
DAYS = {"name": "days", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": REPORT_DAYS_MAX}}
REASON_BODY = {"required": False, "content": {"application/json": {"schema": {
    "type": "object", "properties": {"reason": {"type": "string", "minLength": 1, "maxLength": TEXT_CHARS_MAX}}}}}}
TRACKING_BODY = {"required": False, "content": {"application/json": {"schema": {
    "type": "object", "properties": {"tracking": {"type": "string", "minLength": 1, "maxLength": TEXT_CHARS_MAX}}}}}}


PAYMENT_LINKS = {name: {"operationId": operation, "parameters": {"payment_id": "$response.body#/id"}}
                 for name, operation in (("GetPayment", "getPayment"), ("CancelPayment", "cancelPayment"),
                                         ("RefundPayment", "refundPayment"), ("ShipPayment", "shipPayment"))}
"""Where a created payment's id is used next (lets clients and schemathesis follow the flow)."""


def document() -> dict[str, Any]:
    change = {"200": _json(PAYMENT, "done at once (the payment was not paid yet)"),
              "202": _json(ACTION, "the transaction was sent; the payment changes when its block commits"),
              **_errors(400, 404, 409, 415, 422, 503)}
    return {
        "openapi": "3.0.3",
        "info": {"title": "Paychain gateway merchant API", "version": "1.0.0",
                 "description": "Payments are orders of the chain's orders contract. Authenticate with "
                                "`Authorization: Bearer <API key>`. Amounts are integers in minor units. "
                                "Webhooks: POST JSON {id, type: payment.<state>, created_at, data} with header "
                                f"`{webhooks.SIGNATURE_HEADER}: t=<unix>,v1=<hex HMAC-SHA256(secret, \"<t>.<body>\")>`"
                                f" and `{webhooks.EVENT_ID_HEADER}`; retried with exponential backoff up to "
                                f"{webhooks.ATTEMPTS_MAX} attempts."},
        "components": {"securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}}},
        "security": [{"apiKey": []}],
        "paths": {
            "/v1/payments": {
                "post": {"operationId": "createPayment", "summary": "Create a payment (a checkout link)",
                         "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                                         "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN.pattern},
                                         "description": "same key and body: the first result again; same key, "
                                                        "another body: 422"}],
                         "requestBody": {"required": True, "content": {"application/json": {"schema": CREATE}}},
                         "responses": {"201": {**_json(PAYMENT, "created"), "links": PAYMENT_LINKS},
                                       "200": _json(PAYMENT, "replayed: the payment this key created earlier"),
                                       **_errors(400, 409, 413, 415, 422, 503)}},
                "get": {"operationId": "listPayments", "summary": "List your payments, newest first",
                        "parameters": PAGING + [{"name": "state", "in": "query",
                                                 "schema": {"type": "string", "enum": list(payments.STATES)}}],
                        "responses": {"200": _json({"type": "object", "required": ["items", "next_cursor"],
                                                    "properties": {"items": {"type": "array", "items": PAYMENT},
                                                                   "next_cursor": NULLABLE_TEXT}}, "a page"),
                                      **_errors(400)}}},
            "/v1/payments/{payment_id}": {
                "get": {"operationId": "getPayment", "summary": "Retrieve a payment", "parameters": [PAYMENT_ID],
                        "responses": {"200": _json(PAYMENT, "the payment"), **_errors(404)}}},
            "/v1/payments/{payment_id}/cancel": {
                "post": {"operationId": "cancelPayment", "summary": "Cancel (unpaid: at once; paid: on chain)",
                         "parameters": [PAYMENT_ID], "responses": change}},
            "/v1/payments/{payment_id}/refund": {
                "post": {"operationId": "refundPayment",
                         "summary": "Refund a paid (cancel), shipped or refund-requested payment on chain",
                         "parameters": [PAYMENT_ID], "requestBody": REASON_BODY, "responses": change}},
            "/v1/payments/{payment_id}/ship": {
                "post": {"operationId": "shipPayment", "summary": "Mark a paid payment shipped on chain",
                         "parameters": [PAYMENT_ID], "requestBody": TRACKING_BODY, "responses": change}},
            "/v1/webhooks/deliveries": {
                "get": {"operationId": "listDeliveries", "summary": "Your webhook delivery log, newest first",
                        "parameters": PAGING + [{"name": "payment_id", "in": "query", "schema": {"type": "string"}}],
                        "responses": {"200": _json({"type": "object", "required": ["items", "next_cursor"],
                                                    "properties": {"items": {"type": "array", "items": DELIVERY},
                                                                   "next_cursor": NULLABLE_TEXT}}, "a page"),
                                      **_errors(400)}}},
            "/v1/analytics": {
                "get": {"operationId": "getAnalytics", "summary": "Sales per day, volume per asset, rates, top "
                                                                  "products", "parameters": [DAYS],
                        "responses": {"200": _json(REPORT, "the report"), **_errors(400)}}},
            "/v1/analytics.csv": {
                "get": {"operationId": "getAnalyticsCsv", "summary": "The daily figures as CSV", "parameters": [DAYS],
                        "responses": {"200": {"description": "CSV, one row per day",
                                              "content": {"text/csv": {"schema": {"type": "string"}}}},
                                      **_errors(400)}}},
        },
    }


async def handle_openapi(request: web.Request) -> web.Response:
    return web.json_response(document())
