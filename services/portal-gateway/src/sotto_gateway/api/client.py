"""The client portal API: a client's or contact's own conversations, within their session."""

from __future__ import annotations

import asyncio
from typing import cast

from limits import RateLimitItemPerSecond
from litestar import Controller, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody

from sotto_contracts.common import CLIENT_REACHABLE_ROLES, ParticipantKind, ParticipantRef
from sotto_contracts.conversations import (
    ConversationSummary,
    GetThread,
    ListClientConversations,
    MarkRead,
    OpenConversation,
    PostMessage,
    ThreadView,
)
from sotto_contracts.gateway import ClientViewedConversation
from sotto_gateway.api.auth import CSRF_COOKIE, SESSION_COOKIE, provide_session
from sotto_gateway.api.portal import session_answer
from sotto_gateway.api.problems import ApiProblemError
from sotto_gateway.api.schemas import (
    Banners,
    ClientConversation,
    ClientConversationIn,
    ClientIdentity,
    ClientRecipient,
    ClientRecipientRole,
    ClientSessionView,
    ClientThread,
    CommandResult,
    IdentitySwitchIn,
    MessageIn,
    SessionAnswer,
)
from sotto_gateway.api.state import Gateway, admit, provide_gateway
from sotto_gateway.domain import (
    ClientSession,
    Person,
    SessionEndReason,
    email_display_name,
    new_id,
)
from sotto_gateway.handlers import SignInRequiredError


def _conversation(summary: ConversationSummary) -> ClientConversation:
    return ClientConversation(
        conversation_id=summary.conversation_id,
        subject=summary.subject,
        unread=summary.unread,
        archived=summary.archived,
        last_activity_at=summary.last_activity_at,
    )


def _may_start(session: ClientSession) -> None:
    if session.conversation_id is not None:
        raise SignInRequiredError


def _visible(session: ClientSession, conversation_id: str) -> None:
    if not session.may_see(conversation_id):
        raise ApiProblemError(404, "not_found", "Nothing here, or you may not see it.")


async def _within_limits(gateway: Gateway, session: ClientSession, body: str) -> None:
    settings = await gateway.services.get(session.practice_id)
    if len(body.strip()) > settings.max_message_length:
        raise ApiProblemError(
            422,
            "message_too_long",
            f"A message holds at most {settings.max_message_length} characters.",
            extra={"max_message_length": settings.max_message_length},
        )
    limit = RateLimitItemPerSecond(
        settings.client_rate_limit_count, settings.client_rate_limit_period_seconds
    )
    key = f"{session.practice_id}|{session.principal.kind.value}|{session.principal.id}"
    await admit(
        gateway,
        limit,
        "client-messages",
        key,
        "You have sent many messages in a short time. Please wait before sending more.",
    )


class ClientController(Controller):
    path = "/api/client"
    tags = ["client: portal"]
    dependencies = {
        "gateway": Provide(provide_gateway),
        "session": Provide(provide_session),
    }
    security = [{"SessionCookie": []}]

    @get("/session", summary="Who is signed in")
    async def current(
        self, session: NamedDependency[ClientSession], gateway: NamedDependency[Gateway]
    ) -> ClientSessionView:
        practice, identities = await asyncio.gather(
            gateway.portal.practice(session.practice_id), gateway.portal.identities(session)
        )
        return ClientSessionView(
            principal=session.principal,
            practice_name=email_display_name(practice.display_name if practice else None),
            practice_slug=practice.slug if practice else None,
            conversation_id=session.conversation_id,
            identities=[
                ClientIdentity(
                    principal=identity.ref,
                    display_name=identity.display_name,
                    on_behalf_of=identity.on_behalf_of,
                )
                for identity in identities
            ],
        )

    @post(
        "/session/identity",
        status_code=200,
        summary="Act as another record with the same email address (a new session)",
    )
    async def switch_identity(
        self,
        data: JSONBody[IdentitySwitchIn],
        session: NamedDependency[ClientSession],
        gateway: NamedDependency[Gateway],
    ) -> Response[SessionAnswer]:
        """Ends this session and starts one as the chosen record, which must be among the
        session's identities; new cookies and CSRF token. Not from a secure-link session."""
        started = await gateway.portal.switch_identity(session, data.principal)
        return session_answer(gateway, started)

    @post("/sign-out", status_code=204, summary="End the session")
    async def sign_out(
        self, session: NamedDependency[ClientSession], gateway: NamedDependency[Gateway]
    ) -> Response[None]:
        await gateway.portal.end_session(session, SessionEndReason.SIGN_OUT)
        response: Response[None] = Response(None, status_code=204)
        response.delete_cookie(SESSION_COOKIE, path="/")
        response.delete_cookie(CSRF_COOKIE, path="/")
        return response

    @get("/conversations", summary="My conversations")
    async def conversations(
        self, session: NamedDependency[ClientSession], gateway: NamedDependency[Gateway]
    ) -> list[ClientConversation]:
        items = await gateway.services.ask_many(
            ListClientConversations(practice_id=session.practice_id, actor=session.principal),
            ConversationSummary,
        )
        return [_conversation(item) for item in items if session.may_see(item.conversation_id)]

    @get("/recipients", summary="Whom I may start a conversation with")
    async def recipients(
        self, session: NamedDependency[ClientSession], gateway: NamedDependency[Gateway]
    ) -> list[ClientRecipient]:
        """The primary clinician first, then active practice managers, billers and schedulers
        with messaging on, by name. Contacts may reply but not start: nobody for them."""
        _may_start(session)
        if session.principal.kind != ParticipantKind.CLIENT:
            return []
        client, team = await asyncio.gather(
            gateway.portal.person(session.practice_id, session.principal),
            gateway.portal.team(session.practice_id),
        )
        primary_id = client.primary_clinician_id if client is not None else None

        def role_of(member: Person) -> ClientRecipientRole | None:
            if member.id == primary_id:
                return "primary_clinician"
            held = next((role for role in CLIENT_REACHABLE_ROLES if role in member.roles), None)
            return None if held is None else cast(ClientRecipientRole, held.value)

        # Conversations refuses anyone else: this list only offers the choice.
        chosen = [
            ClientRecipient(staff_id=member.id, display_name=member.display_name, role=role)
            for member in team
            if member.active and member.messaging_enabled and (role := role_of(member))
        ]
        chosen.sort(key=lambda recipient: recipient.role != "primary_clinician")  # stable
        return chosen

    @post(
        "/conversations",
        status_code=201,
        summary="Start a conversation with my clinician or another team member I may write to",
    )
    async def start(
        self,
        data: JSONBody[ClientConversationIn],
        session: NamedDependency[ClientSession],
        gateway: NamedDependency[Gateway],
    ) -> CommandResult:
        _may_start(session)
        await _within_limits(gateway, session, data.body)
        recipient_id = data.recipient_id
        if recipient_id is None:
            client = await gateway.portal.person(
                session.practice_id,
                ParticipantRef(kind=ParticipantKind.CLIENT, id=session.client_id),
            )
            if client is None or client.primary_clinician_id is None:
                raise ApiProblemError(
                    409,
                    "no_primary_clinician",
                    "Your practice has not assigned you a clinician yet.",
                )
            recipient_id = client.primary_clinician_id
        # conversations decides whether this client may write to them, and refuses otherwise
        recipient = ParticipantRef(kind=ParticipantKind.STAFF, id=recipient_id)
        result = await gateway.services.command(
            OpenConversation(
                practice_id=session.practice_id,
                actor=session.principal,
                conversation_id=data.conversation_id or new_id(),
                subject=data.subject,
                client_id=session.client_id,
                participants=[recipient],
                first_message=data.body,
            )
        )
        return CommandResult(result=result)

    @get("/conversations/{conversation_id:str}", summary="Read a conversation (marks it read)")
    async def thread(
        self,
        conversation_id: FromPath[str],
        session: NamedDependency[ClientSession],
        gateway: NamedDependency[Gateway],
    ) -> ClientThread:
        _visible(session, conversation_id)
        thread = await gateway.services.ask(
            GetThread(
                practice_id=session.practice_id,
                actor=session.principal,
                conversation_id=conversation_id,
            ),
            ThreadView,
        )
        await gateway.services.command(
            MarkRead(
                practice_id=session.practice_id,
                actor=session.principal,
                conversation_id=conversation_id,
            )
        )
        await gateway.publisher.publish(
            ClientViewedConversation(
                practice_id=session.practice_id,
                principal=session.principal,
                conversation_id=conversation_id,
            )
        )
        return ClientThread(
            conversation=_conversation(thread.conversation),
            messages=[
                message.model_copy(update={"body": ""}) if message.removed else message
                for message in thread.messages
            ],
            away_message=thread.away_message,
            banner=thread.banner,
            edit_note=thread.edit_note,
            max_message_length=thread.max_message_length,
        )

    @post("/conversations/{conversation_id:str}/messages", status_code=201, summary="Reply")
    async def reply(
        self,
        conversation_id: FromPath[str],
        data: JSONBody[MessageIn],
        session: NamedDependency[ClientSession],
        gateway: NamedDependency[Gateway],
    ) -> CommandResult:
        _visible(session, conversation_id)
        await _within_limits(gateway, session, data.body)
        result = await gateway.services.command(
            PostMessage(
                practice_id=session.practice_id,
                actor=session.principal,
                conversation_id=conversation_id,
                posted_message_id=data.message_id or new_id(),
                body=data.body,
            )
        )
        return CommandResult(result=result)

    @get("/banners", summary="Away message, practice banner and edit note")
    async def banners(
        self, session: NamedDependency[ClientSession], gateway: NamedDependency[Gateway]
    ) -> Banners:
        settings = await gateway.services.get(session.practice_id)
        return Banners(
            away_message=settings.away_message if settings.away_message_enabled else None,
            banner=settings.banner or None,
            edit_note=settings.edit_note or None,
            max_message_length=settings.max_message_length,
        )
