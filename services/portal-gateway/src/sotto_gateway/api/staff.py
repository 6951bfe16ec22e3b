"""The staff API: every Conversations workflow, settings, enablement, exports and audit queries.

The bearer token names the practice; every request goes to conversations on behalf of the
team member, and the gateway adds its own client-access check from the identity projection.
"""

from __future__ import annotations

import asyncio
import base64
from datetime import datetime

from litestar import Controller, MediaType, Response, Router, delete, get, patch, post, put
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency, Provide
from litestar.middleware.base import DefineMiddleware
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody
from pydantic import BaseModel

from sotto_contracts.audit import AuditPage, GetAccessLog, GetDeliveryLog
from sotto_contracts.base import Message
from sotto_contracts.common import ParticipantKind, ParticipantRef, StaffRole
from sotto_contracts.conversations import (
    AddNote,
    AnnouncementResult,
    AssignConversation,
    ConversationKind,
    CopyMessages,
    CreateTask,
    ExportPractice,
    ExportResult,
    GetAnnouncement,
    GetInbox,
    GetThread,
    GetTranscript,
    InboxPage,
    InboxView,
    MarkRead,
    MarkUnread,
    OpenConversation,
    PostMessage,
    PracticeSettings,
    PracticeSettingsPatch,
    RemoveMessage,
    SendAnnouncement,
    SetArchived,
    SetMessagingEnabled,
    TextResult,
    ThreadView,
    UpdateSettings,
    UpdateTask,
)
from sotto_contracts.gateway import (
    ExportMade,
    StaffCopiedMessages,
    StaffViewedConversation,
    StaffViewedTranscript,
)
from sotto_gateway.adapters.archive import protect
from sotto_gateway.api.auth import (
    StaffAuthenticationMiddleware,
    export_guard,
    manager_guard,
    owner_guard,
    provide_staff,
)
from sotto_gateway.api.problems import ApiProblemError
from sotto_gateway.api.schemas import (
    AnnouncementIn,
    AssignIn,
    CommandResult,
    CopyIn,
    EnablementIn,
    ExportIn,
    MessageIn,
    NoteIn,
    OpenConversationIn,
    StaffMe,
    TaskIn,
    TaskPatch,
    TeamMember,
)
from sotto_gateway.api.state import Gateway, provide_gateway
from sotto_gateway.domain import Person, StaffPrincipal, new_id

CONVERSATION = "/conversations/{conversation_id:str}"
ANNOUNCEMENTS = "/api/staff/announcements"


def _not_found() -> ApiProblemError:
    return ApiProblemError(404, "not_found", "Nothing here, or you may not see it.")


async def _require_client_access(
    gateway: Gateway, staff: StaffPrincipal, client_id: str
) -> Person | None:
    """The client, if this team member may see them; 404 otherwise."""
    client = await gateway.portal.person(
        staff.practice_id, ParticipantRef(kind=ParticipantKind.CLIENT, id=client_id)
    )
    if not staff.may_access_client(client):
        raise _not_found()
    return client


async def _require_participants_access(
    gateway: Gateway,
    staff: StaffPrincipal,
    client: Person | None,
    participants: list[ParticipantRef],
) -> None:
    """Team members added to a client's thread must be allowed to see that client: the gateway
    would hide the thread from them, but not a task of it (PATCH /tasks names no thread)."""
    for participant in participants:
        if participant.kind is not ParticipantKind.STAFF:
            continue
        member = await gateway.portal.person(staff.practice_id, participant)
        if member is not None and not StaffPrincipal(staff.practice_id, member).may_access_client(
            client
        ):
            raise ApiProblemError(
                422,
                "participant_without_access",
                f"Team member {participant.id} may not see this client.",
            )


class _ConversationHead(BaseModel):
    kind: ConversationKind
    client_id: str | None
    unread: bool


class _ThreadHead(BaseModel):
    """What the gateway reads of a `ThreadView`; the rest is passed on as conversations wrote
    it (parsing a 50-message thread and serializing it again was a quarter of a GET's CPU)."""

    conversation: _ConversationHead


async def _thread(
    gateway: Gateway, staff: StaffPrincipal, conversation_id: str
) -> tuple[_ThreadHead, bytes]:
    """The thread's JSON, if conversations shows it to this team member and they may see its
    client."""
    thread = await gateway.services.ask_json(
        GetThread(practice_id=staff.practice_id, actor=staff.ref, conversation_id=conversation_id)
    )
    head = _ThreadHead.model_validate_json(thread)
    conversation = head.conversation
    if conversation.client_id is not None and not await _from_a_prospect(
        gateway, staff, conversation
    ):
        await _require_client_access(gateway, staff, conversation.client_id)
    return head, thread


async def _from_a_prospect(
    gateway: Gateway, staff: StaffPrincipal, conversation: _ConversationHead
) -> bool:
    """An inquiry from someone who is no client yet: no team member has access to them, so
    conversations' assignment and view rules alone decide who sees it."""
    if conversation.kind is not ConversationKind.INQUIRY or conversation.client_id is None:
        return False
    person = await gateway.portal.person(
        staff.practice_id, ParticipantRef(kind=ParticipantKind.CLIENT, id=conversation.client_id)
    )
    return person is None or person.prospect


async def _command_on(
    gateway: Gateway, staff: StaffPrincipal, conversation_id: str, request: Message
) -> CommandResult:
    await _thread(gateway, staff, conversation_id)
    return CommandResult(result=await gateway.services.command(request))


async def _set_archived(
    gateway: Gateway, staff: StaffPrincipal, conversation_id: str, *, archived: bool
) -> CommandResult:
    request = SetArchived(
        practice_id=staff.practice_id,
        actor=staff.ref,
        conversation_id=conversation_id,
        archived=archived,
    )
    return await _command_on(gateway, staff, conversation_id, request)


class StaffController(Controller):
    path = "/"
    tags = ["staff"]

    @get("/me", summary="The signed-in team member")
    async def me(self, staff: NamedDependency[StaffPrincipal]) -> StaffMe:
        return StaffMe(
            staff_id=staff.staff.id,
            practice_id=staff.practice_id,
            display_name=staff.staff.display_name,
            roles=sorted(role.value for role in staff.staff.roles),
            can_view_others_conversations=staff.may_view_others,
            can_export=staff.may_export,
        )

    @get("/team", summary="The practice's team (names and roles, to assign and to name senders)")
    async def team(
        self, gateway: NamedDependency[Gateway], staff: NamedDependency[StaffPrincipal]
    ) -> list[TeamMember]:
        return [
            TeamMember(
                staff_id=member.id,
                display_name=member.display_name,
                roles=sorted(role.value for role in member.roles),
                messaging_enabled=member.messaging_enabled,
            )
            for member in await gateway.portal.team(staff.practice_id)
        ]

    @get("/inbox", summary="Inbox with filters")
    async def inbox(
        self,
        staff: NamedDependency[StaffPrincipal],
        gateway: NamedDependency[Gateway],
        view: FromQuery[InboxView] = InboxView.MINE,
        assignee_id: FromQuery[str | None] = None,
        unread_only: FromQuery[bool] = False,
        archived: FromQuery[bool] = False,
        since: FromQuery[datetime | None] = None,
        until: FromQuery[datetime | None] = None,
        search: FromQuery[str | None] = None,
        page: FromQuery[int] = 1,
        page_size: FromQuery[int] = 25,
    ) -> InboxPage:
        if view is not InboxView.MINE and not staff.may_view_others:
            raise ApiProblemError(403, "forbidden", "You may not see others' conversations.")
        query = GetInbox.model_validate(
            {
                "practice_id": staff.practice_id,
                "actor": staff.ref,
                "view": view,
                "assignee_id": assignee_id,
                "unread_only": unread_only,
                "archived": archived,
                "since": since,
                "until": until,
                "search": search,
                "page": page,
                "page_size": page_size,
            }
        )
        return await gateway.services.ask(query, InboxPage)

    @post("/conversations", status_code=201, summary="Open a conversation")
    async def open_conversation(
        self,
        data: JSONBody[OpenConversationIn],
        staff: NamedDependency[StaffPrincipal],
        gateway: NamedDependency[Gateway],
    ) -> CommandResult:
        if data.client_id is not None:
            client = await _require_client_access(gateway, staff, data.client_id)
            await _require_participants_access(gateway, staff, client, data.participants)
        request = OpenConversation.model_validate(
            {
                "practice_id": staff.practice_id,
                "actor": staff.ref,
                "conversation_id": data.conversation_id or new_id(),
                "subject": data.subject,
                "client_id": data.client_id,
                "participants": data.participants,
                "first_message": data.first_message,
            }
        )
        return CommandResult(result=await gateway.services.command(request))

    @get(
        CONVERSATION,
        summary="Open a thread (recorded as a staff view)",
        responses={
            200: ResponseSpec(ThreadView, description="The thread", generate_examples=False)
        },
    )
    async def thread(
        self,
        conversation_id: FromPath[str],
        staff: NamedDependency[StaffPrincipal],
        gateway: NamedDependency[Gateway],
    ) -> Response[bytes]:
        head, thread = await _thread(gateway, staff, conversation_id)
        await gateway.publisher.publish(
            StaffViewedConversation(
                practice_id=staff.practice_id,
                staff_id=staff.staff.id,
                conversation_id=conversation_id,
                client_id=head.conversation.client_id,
            )
        )
        if head.conversation.unread:  # a view of a read thread writes nothing
            await gateway.services.command(
                MarkRead(
                    practice_id=staff.practice_id, actor=staff.ref, conversation_id=conversation_id
                )
            )
        return Response(thread, media_type=MediaType.JSON)

    @post(f"{CONVERSATION}/messages", status_code=201, summary="Reply or send")
    async def reply(
        self,
        conversation_id: FromPath[str],
        data: JSONBody[MessageIn],
        staff: NamedDependency[StaffPrincipal],
        gateway: NamedDependency[Gateway],
    ) -> CommandResult:
        request = PostMessage.model_validate(
            {
                "practice_id": staff.practice_id,
                "actor": staff.ref,
                "conversation_id": conversation_id,
                "posted_message_id": data.message_id or new_id(),
                "body": data.body,
            }
        )
        return await _command_on(gateway, staff, conversation_id, request)

    @post(f"{CONVERSATION}/assign", status_code=200, summary="Assign or reassign")
    async def assign(
        self,
        conversation_id: FromPath[str],
        data: JSONBody[AssignIn],
        staff: NamedDependency[StaffPrincipal],
        gateway: NamedDependency[Gateway],
    ) -> CommandResult:
        request = AssignConversation(
            practice_id=staff.practice_id,
            actor=staff.ref,
            conversation_id=conversation_id,
            assignee_id=data.assignee_id,
        )
        return await _command_on(gateway, staff, conversation_id, request)

    @post(f"{CONVERSATION}/archive", status_code=200, summary="Archive")
    async def archive(
        self,
        conversation_id: FromPath[str],
        staff: NamedDependency[StaffPrincipal],
        gateway: NamedDependency[Gateway],
    ) -> CommandResult:
        return await _set_archived(gateway, staff, conversation_id, archived=True)

    @post(f"{CONVERSATION}/unarchive", status_code=200, summary="Unarchive")
    async def unarchive(
        self,
        conversation_id: FromPath[str],
        staff: NamedDependency[StaffPrincipal],
        gateway: NamedDependency[Gateway],
    ) -> CommandResult:
        return await _set_archived(gateway, staff, conversation_id, archived=False)

    @post(f"{CONVERSATION}/unread", status_code=200, summary="Mark unread")
    async def mark_unread(
        self,
        conversation_id: FromPath[str],
        staff: NamedDependency[StaffPrincipal],
        gateway: NamedDependency[Gateway],
    ) -> CommandResult:
        request = MarkUnread(
            practice_id=staff.practice_id, actor=staff.ref, conversation_id=conversation_id
        )
        return await _command_on(gateway, staff, conversation_id, request)

    @post(f"{CONVERSATION}/notes", status_code=201, summary="Add an internal note")
    async def add_note(
        self,
        conversation_id: FromPath[str],
        data: JSONBody[NoteIn],
        staff: NamedDependency[StaffPrincipal],
        gateway: NamedDependency[Gateway],
    ) -> CommandResult:
        request = AddNote.model_validate(
            {
                "practice_id": staff.practice_id,
                "actor": staff.ref,
                "conversation_id": conversation_id,
                "note_id": data.note_id or new_id(),
                "body": data.body,
            }
        )
        return await _command_on(gateway, staff, conversation_id, request)

    @post(f"{CONVERSATION}/tasks", status_code=201, summary="Create a task")
    async def create_task(
        self,
        conversation_id: FromPath[str],
        data: JSONBody[TaskIn],
        staff: NamedDependency[StaffPrincipal],
        gateway: NamedDependency[Gateway],
    ) -> CommandResult:
        request = CreateTask(
            practice_id=staff.practice_id,
            actor=staff.ref,
            conversation_id=conversation_id,
            task_id=data.task_id or new_id(),
            title=data.title,
            assignee_id=data.assignee_id,
            due=data.due,
        )
        return await _command_on(gateway, staff, conversation_id, request)

    @patch("/tasks/{task_id:str}", summary="Update a task")
    async def update_task(
        self,
        task_id: FromPath[str],
        data: JSONBody[TaskPatch],
        staff: NamedDependency[StaffPrincipal],
        gateway: NamedDependency[Gateway],
    ) -> CommandResult:
        request = UpdateTask(
            practice_id=staff.practice_id,
            actor=staff.ref,
            task_id=task_id,
            done=data.done,
            title=data.title,
            assignee_id=data.assignee_id,
            due=data.due,
        )
        return CommandResult(result=await gateway.services.command(request))

    @delete(
        f"{CONVERSATION}/messages/{{message_id:str}}", status_code=200, summary="Remove a message"
    )
    async def remove_message(
        self,
        conversation_id: FromPath[str],
        message_id: FromPath[str],
        staff: NamedDependency[StaffPrincipal],
        gateway: NamedDependency[Gateway],
    ) -> CommandResult:
        request = RemoveMessage(
            practice_id=staff.practice_id,
            actor=staff.ref,
            conversation_id=conversation_id,
            posted_message_id=message_id,
        )
        return await _command_on(gateway, staff, conversation_id, request)

    @post(
        f"{CONVERSATION}/copy",
        status_code=200,
        summary="Copy messages as text (recorded as an access)",
    )
    async def copy_messages(
        self,
        conversation_id: FromPath[str],
        data: JSONBody[CopyIn],
        staff: NamedDependency[StaffPrincipal],
        gateway: NamedDependency[Gateway],
    ) -> TextResult:
        head, _ = await _thread(gateway, staff, conversation_id)
        query = CopyMessages(
            practice_id=staff.practice_id,
            actor=staff.ref,
            conversation_id=conversation_id,
            posted_message_ids=data.message_ids,
        )
        copied = await gateway.services.ask(query, TextResult)
        await gateway.publisher.publish(
            StaffCopiedMessages(
                practice_id=staff.practice_id,
                staff_id=staff.staff.id,
                conversation_id=conversation_id,
                client_id=head.conversation.client_id,
                posted_message_ids=data.message_ids,
            )
        )
        return copied

    @post(
        "/announcements",
        status_code=202,
        summary="Send an announcement",
        description=(
            "Accepted at once: the recipients are fixed now and their conversations are "
            "created in the background. The Location header names the announcement's progress; "
            "repeating the request with the same announcement_id sends nothing twice."
        ),
        response_headers=[
            ResponseHeader(
                name="Location",
                description="The announcement's progress: GET it until state is sent.",
                documentation_only=True,
            )
        ],
    )
    async def announce(
        self,
        data: JSONBody[AnnouncementIn],
        staff: NamedDependency[StaffPrincipal],
        gateway: NamedDependency[Gateway],
    ) -> Response[CommandResult]:
        if not staff.manages_practice and not (
            staff.has_role(StaffRole.CLINICIAN) and data.clinician_id == staff.staff.id
        ):
            raise ApiProblemError(
                403, "forbidden", "Clinicians announce to their own clients only."
            )
        request = SendAnnouncement.model_validate(
            {
                "practice_id": staff.practice_id,
                "actor": staff.ref,
                "announcement_id": data.announcement_id or new_id(),
                "subject": data.subject,
                "body": data.body,
                "clinician_id": data.clinician_id,
            }
        )
        result = await gateway.services.command(request)
        return Response(
            CommandResult(result=result),
            status_code=202,
            headers={"Location": f"{ANNOUNCEMENTS}/{request.announcement_id}"},
        )

    @get(
        "/announcements/{announcement_id:str}",
        summary="An announcement's progress",
        description="For owners and managers, and for the team member who sent it.",
    )
    async def announcement(
        self,
        announcement_id: FromPath[str],
        staff: NamedDependency[StaffPrincipal],
        gateway: NamedDependency[Gateway],
    ) -> AnnouncementResult:
        query = GetAnnouncement.model_validate(
            {
                "practice_id": staff.practice_id,
                "actor": staff.ref,
                "announcement_id": announcement_id,
            }
        )
        return await gateway.services.ask(query, AnnouncementResult)

    @get(
        "/clients/{client_id:str}/transcript",
        summary="A client's transcript (recorded as an access)",
    )
    async def transcript(
        self,
        client_id: FromPath[str],
        staff: NamedDependency[StaffPrincipal],
        gateway: NamedDependency[Gateway],
    ) -> TextResult:
        await _require_client_access(gateway, staff, client_id)
        query = GetTranscript(practice_id=staff.practice_id, actor=staff.ref, client_id=client_id)
        transcript = await gateway.services.ask(query, TextResult)
        await gateway.publisher.publish(
            StaffViewedTranscript(
                practice_id=staff.practice_id, staff_id=staff.staff.id, client_id=client_id
            )
        )
        return transcript

    @post("/exports", status_code=200, guards=[export_guard], summary="Download a data export")
    async def export(
        self,
        data: JSONBody[ExportIn],
        staff: NamedDependency[StaffPrincipal],
        gateway: NamedDependency[Gateway],
    ) -> Response[bytes]:
        query = ExportPractice(
            practice_id=staff.practice_id, actor=staff.ref, clinician_id=data.clinician_id
        )
        archive = await gateway.services.ask(query, ExportResult)
        content = base64.b64decode(archive.archive_base64)
        if data.password is not None:
            content = await asyncio.to_thread(protect, content, data.password)
        await gateway.publisher.publish(
            ExportMade(
                practice_id=staff.practice_id,
                staff_id=staff.staff.id,
                scope=f"clinician:{data.clinician_id}" if data.clinician_id else "practice",
                password_protected=data.password is not None,
            )
        )
        filename = archive.filename.replace('"', "")
        return Response(
            content,
            media_type=archive.content_type,
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    @get("/settings", summary="Practice messaging settings")
    async def get_settings(
        self, staff: NamedDependency[StaffPrincipal], gateway: NamedDependency[Gateway]
    ) -> PracticeSettings:
        gateway.services.forget(staff.practice_id)
        return await gateway.services.get(staff.practice_id)

    @patch("/settings", guards=[manager_guard], summary="Change practice messaging settings")
    async def patch_settings(
        self,
        data: JSONBody[PracticeSettingsPatch],
        staff: NamedDependency[StaffPrincipal],
        gateway: NamedDependency[Gateway],
    ) -> CommandResult:
        request = UpdateSettings(practice_id=staff.practice_id, actor=staff.ref, changes=data)
        result = await gateway.services.command(request)
        gateway.services.forget(staff.practice_id)
        return CommandResult(result=result)

    @put(
        "/clients/{client_id:str}/messaging",
        guards=[manager_guard],
        summary="Enable or disable messaging for a client",
    )
    async def client_enablement(
        self,
        client_id: FromPath[str],
        data: JSONBody[EnablementIn],
        staff: NamedDependency[StaffPrincipal],
        gateway: NamedDependency[Gateway],
    ) -> CommandResult:
        await _require_client_access(gateway, staff, client_id)
        return await self._enable(
            staff, gateway, ParticipantRef(kind=ParticipantKind.CLIENT, id=client_id), data
        )

    @put(
        "/team/{staff_id:str}/messaging",
        guards=[manager_guard],
        summary="Enable or disable messaging for a team member",
    )
    async def team_enablement(
        self,
        staff_id: FromPath[str],
        data: JSONBody[EnablementIn],
        staff: NamedDependency[StaffPrincipal],
        gateway: NamedDependency[Gateway],
    ) -> CommandResult:
        member = ParticipantRef(kind=ParticipantKind.STAFF, id=staff_id)
        if await gateway.portal.person(staff.practice_id, member) is None:
            raise _not_found()
        return await self._enable(staff, gateway, member, data)

    @staticmethod
    async def _enable(
        staff: StaffPrincipal,
        gateway: Gateway,
        subject: ParticipantRef,
        data: JSONBody[EnablementIn],
    ) -> CommandResult:
        request = SetMessagingEnabled(
            practice_id=staff.practice_id, actor=staff.ref, subject=subject, enabled=data.enabled
        )
        return CommandResult(result=await gateway.services.command(request))

    @get("/audit/deliveries", guards=[owner_guard], summary="Delivery log (owner)")
    async def delivery_log(
        self,
        staff: NamedDependency[StaffPrincipal],
        gateway: NamedDependency[Gateway],
        recipient_id: FromQuery[str | None] = None,
        conversation_id: FromQuery[str | None] = None,
        since: FromQuery[datetime | None] = None,
        until: FromQuery[datetime | None] = None,
        page: FromQuery[int] = 1,
        page_size: FromQuery[int] = 50,
    ) -> AuditPage:
        query = GetDeliveryLog.model_validate(
            {
                "practice_id": staff.practice_id,
                "recipient_id": recipient_id,
                "conversation_id": conversation_id,
                "since": since,
                "until": until,
                "page": page,
                "page_size": page_size,
            }
        )
        return await gateway.services.ask(query, AuditPage)

    @get(
        "/audit/access",
        guards=[owner_guard],
        summary="Access log (owner); a client's includes their contacts' link opens and sessions",
    )
    async def access_log(
        self,
        staff: NamedDependency[StaffPrincipal],
        gateway: NamedDependency[Gateway],
        client_id: FromQuery[str | None] = None,
        staff_id: FromQuery[str | None] = None,
        since: FromQuery[datetime | None] = None,
        until: FromQuery[datetime | None] = None,
        page: FromQuery[int] = 1,
        page_size: FromQuery[int] = 50,
    ) -> AuditPage:
        contact_ids = (
            await gateway.portal.contact_ids(staff.practice_id, client_id) if client_id else []
        )
        query = GetAccessLog.model_validate(
            {
                "practice_id": staff.practice_id,
                "client_id": client_id,
                "contact_ids": contact_ids,
                "staff_id": staff_id,
                "since": since,
                "until": until,
                "page": page,
                "page_size": page_size,
            }
        )
        return await gateway.services.ask(query, AuditPage)


staff_router = Router(
    path="/api/staff",
    route_handlers=[StaffController],
    middleware=[DefineMiddleware(StaffAuthenticationMiddleware)],
    dependencies={"gateway": Provide(provide_gateway), "staff": Provide(provide_staff)},
    security=[{"BearerToken": []}],
)
