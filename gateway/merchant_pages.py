"""The merchant's browser pages: log in with the API key (a session cookie), sales analytics, log out.

The analytics page's script reads `/v1/analytics`, `/v1/payments` and `/v1/analytics.csv` with the
session cookie; forms post with a CSRF token (the login form with the CSRF cookie's double
submit, later requests with the session's own token from the page's meta tag).
"""

from __future__ import annotations

from aiohttp import web

from gateway.api import services_of
from gateway.checkout import page_with_csrf_cookie, render
from gateway.payments import PaymentError
from gateway.security import CSRF_COOKIE, SESSION_COOKIE, SESSION_TTL_S, client_address, is_secure, same_token, set_cookie

routes = web.RouteTableDef()


def _login_page(request: web.Request, message: str = "", status: int = 200) -> web.Response:
    return page_with_csrf_cookie(request, "merchant_login.html", {"message": message}, status)


@routes.get("/merchant")
async def merchant_page(request: web.Request) -> web.Response:
    services = services_of(request)
    session = services.guard.session_of(request)
    if session is None:
        return _login_page(request)
    return web.Response(text=render("merchant.html", {"csrf_token": session.csrf_token,
                                                      "merchant_name": session.merchant.name,
                                                      "merchant_address": session.merchant.address_text}),
                        content_type="text/html")


@routes.post("/merchant/login")
async def merchant_login(request: web.Request) -> web.Response:
    services = services_of(request)
    if not services.guard.public_rate.allow(client_address(request)):
        raise PaymentError(429, "rate_limited", "too many requests from this address; slow down")
    form = await request.post()
    if not same_token(form.get("csrf_token"), request.cookies.get(CSRF_COOKIE)):
        raise PaymentError(403, "csrf_failed", "the form's CSRF token is missing or stale; reload the page")
    try:
        session_id, _ = services.guard.login(str(form.get("api_key", "")).strip())
    except PaymentError as error:
        return _login_page(request, f"Sign-in failed: {error.message}.", error.status)
    response = web.HTTPSeeOther("/merchant")
    set_cookie(response, SESSION_COOKIE, session_id, is_secure(request), int(SESSION_TTL_S))
    raise response


@routes.post("/merchant/logout")
async def merchant_logout(request: web.Request) -> web.Response:
    services = services_of(request)
    session = services.guard.session_of(request)
    form = await request.post()
    if session is None or not same_token(form.get("csrf_token"), session.csrf_token):
        raise PaymentError(403, "csrf_failed", "the form's CSRF token is missing or stale; reload the page")
    services.guard.logout(request)
    response = web.HTTPSeeOther("/merchant")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response
