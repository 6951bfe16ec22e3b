"""Who is calling: staff by bearer token (middleware + role guards), clients by session cookie."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

from sotto_contracts.common import ParticipantKind, ParticipantRef, StaffRole
from sotto_gateway.adapters.tokens import InvalidStaffTokenError
from sotto_gateway.api.problems import ApiProblemError
from sotto_gateway.api.state import Gateway, gateway_of
from sotto_gateway.domain import ClientSession, StaffPrincipal, comes_from
from sotto_gateway.handlers import SessionRequiredError

SESSION_COOKIE = "sotto_session"
CSRF_COOKIE = "sotto_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class StaffAuthenticationMiddleware(AbstractAuthenticationMiddleware):
    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        gateway = gateway_of(connection)
        scheme, _, token = connection.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise InvalidStaffTokenError("missing bearer token")
        claims = await gateway.verifier.verify(token.strip())
        staff = await gateway.portal.person(
            claims.practice_id, ParticipantRef(kind=ParticipantKind.STAFF, id=claims.staff_id)
        )
        if staff is None or not staff.active:
            raise InvalidStaffTokenError("unknown team member")
        return AuthenticationResult(user=StaffPrincipal(claims.practice_id, staff), auth=claims)


def _principal(connection: ASGIConnection[Any, Any, Any, Any]) -> StaffPrincipal:
    principal = connection.user
    if not isinstance(principal, StaffPrincipal):
        raise InvalidStaffTokenError("not a staff request")
    return principal


def _forbidden(what: str) -> ApiProblemError:
    return ApiProblemError(403, "forbidden", f"Your role does not allow {what}.")


def manager_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    if not _principal(connection).manages_practice:
        raise _forbidden("managing the practice")


def owner_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    if not _principal(connection).has_role(StaffRole.OWNER):
        raise _forbidden("reading the audit log")


def export_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    if not _principal(connection).may_export:
        raise _forbidden("exporting practice data")


def same_origin_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """For unauthenticated POSTs that start a session: another site must not sign a visitor
    in to an account of its choosing (login CSRF)."""
    headers = connection.headers
    if not comes_from(
        gateway_of(connection).settings.public_base_url,
        headers.get("origin"),
        headers.get("referer"),
        headers.get("sec-fetch-site"),
    ):
        raise ApiProblemError(
            403, "cross_origin", "This request must come from the practice's portal page."
        )


async def provide_staff(request: Request[Any, Any, Any]) -> StaffPrincipal:
    return _principal(request)


async def provide_session(
    request: Request[Any, Any, Any], gateway: NamedDependency[Gateway]
) -> ClientSession:
    """The caller's live client session; state-changing calls must echo the CSRF token."""
    key = request.cookies.get(SESSION_COOKIE)
    if not key:
        raise SessionRequiredError
    session = await gateway.portal.session(key)
    if request.method not in SAFE_METHODS and not gateway.portal.csrf_matches(
        session, request.headers.get(CSRF_HEADER)
    ):
        raise ApiProblemError(
            403, "csrf_failed", f"Send the {CSRF_HEADER} header given when the session started."
        )
    return session
