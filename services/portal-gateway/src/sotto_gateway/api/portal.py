"""Public client entry points: secure links, verification and instant sign-in."""

from __future__ import annotations

import logging
from typing import Any, cast

from limits import RateLimitItemPerSecond
from litestar import Controller, MediaType, Request, Response, get, post
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import Cookie, State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody
from litestar.response import Redirect

from sotto_gateway.adapters.sign_in_sends import SignInSends
from sotto_gateway.api.auth import CSRF_COOKIE, SESSION_COOKIE, same_origin_guard
from sotto_gateway.api.problems import ApiProblemError
from sotto_gateway.api.schemas import LinkAnswer, SessionAnswer, SignInAnswer, SignInIn, VerifyIn
from sotto_gateway.api.state import Gateway, admit, provide_gateway
from sotto_gateway.domain import LinkStatus, Practice
from sotto_gateway.handlers import LinkView, NotFoundError, Portal, StartedSession
from sotto_gateway.pages import sign_in_link_unusable_page, sign_in_page

SIGN_IN_ANSWER = (
    "If this address belongs to someone at this practice, a sign-in link is on its way. "
    "It works once, for 15 minutes."
)
TOKEN_PARAMETER = "token"  # noqa: S105  (a path parameter's name, not a secret)
TOKEN_PATH = f"{{{TOKEN_PARAMETER}:str}}"

logger = logging.getLogger(__name__)


def session_cookies(gateway: Gateway, started: StartedSession) -> list[Cookie]:
    settings = gateway.settings
    lifetime = int(settings.session_absolute_minutes * 60)
    common: dict[str, Any] = {
        "secure": settings.cookie_secure,
        "samesite": "strict",
        "path": "/",
        "max_age": lifetime,
    }
    return [
        Cookie(key=SESSION_COOKIE, value=started.key, httponly=True, **common),
        Cookie(key=CSRF_COOKIE, value=started.csrf_token, httponly=False, **common),
    ]


def session_answer(gateway: Gateway, started: StartedSession) -> Response[SessionAnswer]:
    answer = SessionAnswer(
        csrf_token=started.csrf_token,
        conversation_id=started.session.conversation_id,
        idle_timeout_minutes=gateway.settings.session_idle_minutes,
        absolute_timeout_minutes=gateway.settings.session_absolute_minutes,
    )
    return Response(answer, status_code=200, cookies=session_cookies(gateway, started))


def _sign_in_url(gateway: Gateway, view: LinkView) -> str | None:
    if view.practice_slug is None:
        return None
    return f"{gateway.settings.public_base_url.rstrip('/')}/o/{view.practice_slug}/messages"


def _unusable(gateway: Gateway, view: LinkView) -> ApiProblemError:
    details = {
        LinkStatus.EXPIRED: "This link has expired.",
        LinkStatus.REVOKED: "This link is no longer valid.",
        LinkStatus.LOCKED: "This link is locked after too many failed verification attempts.",
        LinkStatus.SIGN_IN_INSTEAD: "There are no details on file to confirm it is you, so this "
        "message opens once you sign in with your email address.",
    }
    return ApiProblemError(
        410,
        f"link_{view.status.value}",
        details.get(view.status, "This link cannot be used.") + " Sign in from the portal page.",
        extra={"link_status": view.status.value, "sign_in_url": _sign_in_url(gateway, view)},
    )


class SecureLinkController(Controller):
    path = "/api/client/links"
    tags = ["client: secure links"]
    dependencies = {"gateway": Provide(provide_gateway)}

    @post(f"/{TOKEN_PATH}/open", status_code=200, summary="Open a secure message link")
    async def open_link(
        self, token: FromPath[str], gateway: NamedDependency[Gateway]
    ) -> LinkAnswer:
        """Checks the link; a usable one asks for verification (410 when it is not usable)."""
        view = await gateway.portal.open_link(token)
        if view.status is not LinkStatus.NEEDS_VERIFICATION:
            raise _unusable(gateway, view)
        return LinkAnswer(
            status=view.status.value,
            practice_name=view.practice_name,
            attempts_left=view.attempts_left,
            sign_in_url=_sign_in_url(gateway, view),
        )

    @post(
        f"/{TOKEN_PATH}/verify",
        guards=[same_origin_guard],
        summary="Verify and start a session for the conversation",
    )
    async def verify(
        self,
        token: FromPath[str],
        data: JSONBody[VerifyIn],
        request: Request[Any, Any, Any],
        gateway: NamedDependency[Gateway],
    ) -> Response[SessionAnswer]:
        """Starts a session scoped to the link's conversation, ending the one the browser had;
        the link locks after 5 failures. From the portal's own pages only (403 otherwise)."""
        outcome = await gateway.portal.verify_link(token, data.date_of_birth)
        if outcome.started is not None:
            await gateway.portal.end_replaced_session(request.cookies.get(SESSION_COOKIE))
            return session_answer(gateway, outcome.started)
        if outcome.view.status is not LinkStatus.NEEDS_VERIFICATION:
            raise _unusable(gateway, outcome.view)
        raise ApiProblemError(
            422,
            "verification_failed",
            "The details did not match.",
            extra={"attempts_left": outcome.view.attempts_left},
        )


async def provide_sign_in_sends(state: State) -> SignInSends:
    return cast(SignInSends, state.sign_in_sends)


async def _admit_client_ip(gateway: Gateway, request: Request[Any, Any, Any]) -> None:
    settings = gateway.settings
    limit = RateLimitItemPerSecond(
        settings.sign_in_requests_per_ip, settings.sign_in_ip_period_seconds
    )
    client_ip = request.client.host if request.client else "unknown"
    await admit(
        gateway,
        limit,
        "sign-in",
        client_ip,
        "Many sign-in requests came from your network in a short time. Please wait before "
        "asking again.",
    )


async def _send_sign_in_link(
    portal: Portal, sign_in_sends: SignInSends, practice: Practice, email: str
) -> None:
    """After the answer: how long this takes would tell whether the address is known."""
    try:
        if not await sign_in_sends.claim(email):
            return
        record_id = await portal.request_sign_in(practice, email)
    except Exception:
        logger.exception("sign-in request failed after its answer; nothing was sent")
        return
    await portal.flush_sign_in(record_id)


class SignInController(Controller):
    path = "/api/portal"
    tags = ["client: sign-in"]
    dependencies = {
        "gateway": Provide(provide_gateway),
        "sign_in_sends": Provide(provide_sign_in_sends),
    }

    @post("/{practice_slug:str}/sign-in", status_code=202, summary="Request a sign-in link")
    async def request_sign_in(
        self,
        practice_slug: FromPath[str],
        data: JSONBody[SignInIn],
        request: Request[Any, Any, Any],
        gateway: NamedDependency[Gateway],
        sign_in_sends: NamedDependency[SignInSends],
    ) -> Response[SignInAnswer]:
        """The same answer whether or not the address is known, and whether or not it had its
        share of sign-in emails lately (then nothing is sent and its last link stays valid),
        given before the address is looked up. Too many requests from one IP address get 429."""
        await _admit_client_ip(gateway, request)
        practice = await gateway.portal.sign_in_practice(practice_slug)
        send = BackgroundTask(
            _send_sign_in_link, gateway.portal, sign_in_sends, practice, data.email
        )
        return Response(SignInAnswer(detail=SIGN_IN_ANSWER), status_code=202, background=send)

    @post(
        f"/sign-in/{TOKEN_PATH}",
        guards=[same_origin_guard],
        summary="Use a sign-in link (single use)",
    )
    async def use_sign_in_link(
        self,
        token: FromPath[str],
        request: Request[Any, Any, Any],
        gateway: NamedDependency[Gateway],
    ) -> Response[SessionAnswer]:
        """Starts a session, ending the one the browser had. From the portal's own pages only
        (403 otherwise)."""
        started = await gateway.portal.consume_sign_in(token)
        await gateway.portal.end_replaced_session(request.cookies.get(SESSION_COOKIE))
        return session_answer(gateway, started)

    @get(
        f"/sign-in/{TOKEN_PATH}",
        summary="The page a sign-in email links to (opening it uses nothing)",
        media_type=MediaType.HTML,
    )
    async def sign_in_link_page(
        self, token: FromPath[str], gateway: NamedDependency[Gateway]
    ) -> Response[bytes]:
        """A button that uses the link, or, for a link used, replaced or expired, a way to ask
        for a new one. Mail scanners that open links before people do use up nothing."""
        usable, practice = await gateway.portal.sign_in_link_state(token)
        if not usable:
            return sign_in_link_unusable_page(practice.slug if practice else None)
        return sign_in_page(token, practice.display_name if practice else None)

    @post(
        f"/sign-in/{TOKEN_PATH}/continue",
        guards=[same_origin_guard],
        summary="Use a sign-in link from its page (single use); redirects to the portal",
        description="From the sign-in link's own page only (403 otherwise); a session the "
        "browser had ends.",
        status_code=303,
    )
    async def continue_sign_in(
        self,
        token: FromPath[str],
        request: Request[Any, Any, Any],
        gateway: NamedDependency[Gateway],
    ) -> Response[Any]:
        try:
            started = await gateway.portal.consume_sign_in(token)
        except NotFoundError:
            _, practice = await gateway.portal.sign_in_link_state(token)
            return sign_in_link_unusable_page(practice.slug if practice else None)
        await gateway.portal.end_replaced_session(request.cookies.get(SESSION_COOKIE))
        practice = await gateway.portal.practice(started.session.practice_id)
        slug = practice.slug if practice else ""
        return Redirect(
            f"/o/{slug}/messages", status_code=303, cookies=session_cookies(gateway, started)
        )
