"""Pure messaging rules: who may start with whom, automatic replies, rate limits, texts."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from pydantic import ValidationError

from sotto_contracts.common import ParticipantKind, ParticipantRef, StaffRole
from sotto_contracts.conversations import ConversationKind, OfficeHours, PracticeSettings
from sotto_conversations import domain
from sotto_conversations.domain import (
    ClientRecord,
    RefusalError,
    StaffMember,
    StoredMessage,
    StoredNote,
    Thread,
)
from sotto_conversations.handlers import derived_id

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)  # a Monday
CLIENT = ClientRecord(
    client_id="c1", display_name="Alex", primary_clinician_id="dr-a", clinician_id_list=("dr-b",)
)


def member(staff_id: str, *roles: StaffRole, **fields: object) -> StaffMember:
    return StaffMember(staff_id=staff_id, display_name=staff_id, roles=frozenset(roles), **fields)  # type: ignore[arg-type]


def thread_with(*messages: StoredMessage) -> Thread:
    return Thread(
        practice_id="p",
        conversation_id="conv",
        kind=ConversationKind.CLIENT,
        subject="Plan",
        client_id="c1",
        client_name="Alex",
        participant_keys=["client:c1", "staff:dr-a"],
        assignee_id="dr-a",
        archived=False,
        created_at=NOW,
        last_activity_at=NOW,
        messages={m.posted_message_id: m for m in messages},
    )


def message(
    message_id: str, seq: int, sender: str | None, body: str, **fields: object
) -> StoredMessage:
    return StoredMessage(
        posted_message_id=message_id,
        sender=domain.ref_of(sender) if sender else None,
        body=body,
        sent_at=NOW + timedelta(minutes=seq),
        seq=seq,
        **fields,  # type: ignore[arg-type]
    )


def test_client_starts_with_primary_or_managers_billers_schedulers_only() -> None:
    for allowed in (
        member("dr-a", StaffRole.CLINICIAN),
        member("m", StaffRole.PRACTICE_MANAGER),
        member("b", StaffRole.BILLER),
        member("s", StaffRole.SCHEDULER),
    ):
        domain.check_client_opens_with(CLIENT, allowed)
    for refused in (member("dr-b", StaffRole.CLINICIAN), member("sup", StaffRole.SUPERVISOR)):
        with pytest.raises(RefusalError) as caught:
            domain.check_client_opens_with(CLIENT, refused)
        assert caught.value.status == 403


def test_staff_reach_by_role_and_access() -> None:
    domain.check_staff_opens_with_client(member("dr-b", StaffRole.CLINICIAN), CLIENT)
    domain.check_staff_opens_with_client(member("b", StaffRole.BILLER), CLIENT)
    with pytest.raises(RefusalError, match="no_client_access"):
        domain.check_staff_opens_with_client(member("dr-x", StaffRole.CLINICIAN), CLIENT)
    with pytest.raises(RefusalError, match="supervisor_without_access"):
        domain.check_staff_opens_with_client(member("sup", StaffRole.SUPERVISOR), CLIENT)
    domain.check_staff_opens_with_client(
        member("sup", StaffRole.SUPERVISOR, client_ids=frozenset({"c1"})), CLIENT
    )
    with pytest.raises(RefusalError, match="staff_messaging_disabled"):
        domain.check_staff_opens_with_client(
            member("b", StaffRole.BILLER, messaging_enabled=False), CLIENT
        )


def test_away_message_wins_then_after_hours_reply() -> None:
    closed = [OfficeHours(weekday=0, opens=time(9), closes=time(12))]
    settings = PracticeSettings(office_hours=closed, after_hours_reply_enabled=True)
    reply = domain.automatic_reply(settings, NOW)
    assert reply is not None
    assert "988" in reply
    open_now = PracticeSettings(
        office_hours=[OfficeHours(weekday=0, opens=time(9), closes=time(17))],
        after_hours_reply_enabled=True,
    )
    assert domain.automatic_reply(open_now, NOW) is None
    away = settings.model_copy(update={"away_message_enabled": True, "away_message": "Away"})
    assert domain.automatic_reply(away, NOW) == "Away"


def test_rate_limit_counts_only_the_current_period_and_the_sends_before_ones_own() -> None:
    settings = PracticeSettings(client_rate_limit_count=2, client_rate_limit_period_seconds=60)
    old, recent = NOW - timedelta(minutes=5), NOW - timedelta(seconds=10)
    domain.check_send_allowed([(old, "a"), (recent, "b"), (NOW, "mine")], "mine", settings, NOW)
    # sends recorded after one's own (concurrent ones that came later) do not count against it
    domain.check_send_allowed([(recent, "b"), (NOW, "mine"), (NOW, "later")], "mine", settings, NOW)
    with pytest.raises(RefusalError) as caught:
        domain.check_send_allowed(
            [(recent, "b"), (NOW, "earlier"), (NOW, "mine")], "mine", settings, NOW
        )
    assert caught.value.status == 429
    with pytest.raises(RefusalError, match="rate_limited"):  # one's own send went missing
        domain.check_send_allowed([(recent, "b")], "mine", settings, NOW)


def test_office_hours_must_open_before_they_close() -> None:
    OfficeHours(weekday=0, opens=time(9), closes=time(17))
    for opens, closes in ((time(17), time(9)), (time(0), time(0))):
        with pytest.raises(ValidationError, match="opens must be before closes"):
            OfficeHours(weekday=0, opens=opens, closes=closes)


def test_the_ids_the_service_derives_for_its_own_threads_are_not_for_callers() -> None:
    for derived in (
        derived_id("notices", "c2"),
        derived_id("appointment-request", "req-1"),
        derived_id("inquiry", "inq-1"),
        derived_id("announcement", "a-1", "c2"),
    ):
        with pytest.raises(RefusalError) as caught:
            domain.check_chosen_conversation_id(derived)
        assert (caught.value.code, caught.value.status) == ("reserved_conversation_id", 422)
    for chosen in ("conv-1", "notices", "notices-c2", "0123456789abcdef0123456789abcdef"):
        domain.check_chosen_conversation_id(chosen)


def test_one_automatic_reply_until_a_team_member_writes_again() -> None:
    thread = thread_with(
        message("m1", 1, "client:c1", "Hello"),
        message("auto-1", 2, None, "Away", automatic=True, recipients=("client:c1",)),
        message("m2", 3, "client:c1", "Anyone?"),
    )
    assert thread.answered_automatically("client:c1", "Away")
    assert not thread.answered_automatically("client:c1", "Closed: call 988")  # another reply
    assert not thread.answered_automatically("contact:p1", "Away")  # the reply was not theirs
    thread.messages["m3"] = message("m3", 4, "staff:dr-a", "Back now")
    assert not thread.answered_automatically("client:c1", "Away")


def test_emoji_and_length() -> None:
    assert domain.render_body(":smile:") == "😄"
    with pytest.raises(RefusalError, match="message_too_long"):
        domain.check_length("x" * 11, PracticeSettings(max_message_length=10))


def test_removed_messages_hidden_in_views_kept_in_transcript_with_internal_notes() -> None:
    thread = thread_with(
        message("m1", 1, "staff:dr-a", "Hello"),
        message("m2", 2, "staff:dr-a", "Wrong client", removed=True),
    )
    thread.notes["n1"] = StoredNote(note_id="n1", author_id="dr-a", body="Internal", created_at=NOW)
    client = ParticipantRef(kind=ParticipantKind.CLIENT, id="c1")
    view = domain.thread_view(thread, client, PracticeSettings())
    assert [m.body for m in view.messages] == ["Hello", ""]
    assert view.notes == []
    text = domain.transcript_text(thread, {"staff:dr-a": "Dr A"})
    assert "Dr A [REMOVED]: Wrong client" in text
    assert "[INTERNAL NOTE] Dr A: Internal" in text
    copied = domain.copy_text(thread, ["m2", "m1"], {"staff:dr-a": "Dr A"})
    assert copied.splitlines()[1].endswith("Dr A: [message removed]")


def test_incoming_message_needed_to_mark_unread() -> None:
    thread = thread_with(message("m1", 1, "staff:dr-a", "Hello"))
    assert not thread.has_incoming_for("staff:dr-a")
    assert thread.has_incoming_for("client:c1")
    notices = thread_with(message("n1", 1, None, "Your statement is ready"))
    assert notices.has_incoming_for("client:c1")
    assert not notices.has_incoming_for("staff:dr-a")  # the practice's own notice


def test_a_handover_is_unread_for_the_new_assignee_only_where_it_is_news() -> None:
    unread = thread_with(message("m1", 1, "client:c1", "Question"))
    unread.unread_by = ["staff:dr-a"]
    assert unread.hand_over("b") == ["staff:dr-a"]  # it leaves dr-a, who took part
    assert (unread.assignee_id, unread.unread_by) == ("b", ["staff:b"])
    assert unread.participant_keys == ["client:c1"]
    assert unread.inbox_owner_ids == ["b"]
    assert unread.newest_incoming_for("staff:b") == unread.messages["m1"]

    read = thread_with(message("m1", 1, "client:c1", "Question"))
    read.hand_over("b")
    assert read.unread_by == []

    answered = thread_with(
        message("m1", 1, "client:c1", "Question"), message("m2", 2, "staff:b", "Answer")
    )
    answered.assignee_id = None
    answered.reads = {"staff:b": 1}
    answered.hand_over("b")
    assert answered.unread_by == []  # nothing after what b read is from someone else
    answered.messages["m3"] = message("m3", 3, "client:c1", "Thanks")
    answered.assignee_id = None
    answered.hand_over("b")
    assert answered.unread_by == ["staff:b"]

    request = thread_with()
    request.participant_keys = ["client:c1"]
    request.assignee_id, request.request_details = None, "Tuesdays"
    assert request.hand_over("s") == []
    assert request.unread_by == ["staff:s"]
    assert request.hand_over("b") == ["staff:s"]
    assert request.unread_by == ["staff:b"]


def test_a_staff_conversation_handed_over_keeps_everyone_in_it() -> None:
    chat = thread_with(message("m1", 1, "staff:b", "Invoice?"))
    chat.kind, chat.client_id, chat.client_name = ConversationKind.STAFF, None, None
    chat.participant_keys = ["staff:dr-a", "staff:b"]
    chat.unread_by = ["staff:dr-a"]
    assert chat.hand_over("b") == []
    assert chat.assignee_id == "b"
    assert chat.participant_keys == ["staff:dr-a", "staff:b"]
    assert chat.unread_by == ["staff:dr-a"]  # still theirs to read
    assert domain.staff_may_view(member("dr-a", StaffRole.CLINICIAN), chat, None)


def test_mine_holds_the_assignee_and_the_team_members_taking_part() -> None:
    thread = thread_with()
    thread.participant_keys.append("staff:biller")
    assert thread.inbox_owner_ids == ["dr-a", "biller"]


def test_others_threads_need_access_or_permission_even_for_billers() -> None:
    thread = thread_with()
    assert domain.staff_may_view(member("dr-a", StaffRole.CLINICIAN), thread, CLIENT)
    assert domain.staff_may_view(member("dr-b", StaffRole.CLINICIAN), thread, CLIENT)
    assert not domain.staff_may_view(member("b", StaffRole.BILLER), thread, CLIENT)
    assert not domain.staff_may_view(member("s", StaffRole.SCHEDULER), thread, CLIENT)
    assert domain.staff_may_view(
        member("b", StaffRole.BILLER, can_view_others=True), thread, CLIENT
    )
    assert domain.staff_may_view(member("o", StaffRole.OWNER), thread, CLIENT)
    # The permission to see others' conversations does not reach clients one has no access to.
    supervisor = member("sup", StaffRole.SUPERVISOR, can_view_others=True)
    assert not domain.staff_may_view(supervisor, thread, CLIENT)
    assert domain.staff_may_view(
        member("sup", StaffRole.SUPERVISOR, can_view_others=True, client_ids=frozenset({"c1"})),
        thread,
        CLIENT,
    )


def test_in_a_notices_thread_shared_before_each_person_on_the_client_side_is_apart() -> None:
    """Before each person had their own, a client's notices thread held their contacts too:
    what one of them writes there goes to the team alone, and the team answers the client."""
    shared = thread_with(
        message("n-client", 1, None, "Statement", recipients=("client:c1",)),
        message("n-partner", 2, None, "Statement", recipients=("contact:p1",)),
        message("from-client", 3, "client:c1", "Can I pay later?", recipients=("staff:dr-a",)),
        # stored before: addressed to everyone in the thread
        message("old-client", 4, "client:c1", "Hello", recipients=("staff:dr-a", "contact:p1")),
        message("to-client", 5, "staff:dr-a", "Yes", recipients=("client:c1",)),
    )
    shared.conversation_id = derived_id("notices", "c1")
    shared.participant_keys = ["client:c1", "contact:p1", "staff:dr-a"]
    assert shared.is_notices

    assert domain.recipients_of(shared, "client:c1") == ["staff:dr-a"]
    assert domain.recipients_of(shared, "contact:p1") == ["staff:dr-a"]
    assert domain.recipients_of(shared, "staff:dr-a") == ["client:c1"]
    settings = PracticeSettings()
    partner = domain.ref_of("contact:p1")
    partner_view = domain.thread_view(shared, partner, settings)
    assert [m.message_id for m in partner_view.messages] == ["n-partner"]
    assert partner_view.conversation.participants == [partner, domain.staff_ref("dr-a")]
    client_view = domain.thread_view(shared, domain.client_ref("c1"), settings)
    assert [m.message_id for m in client_view.messages] == [
        "n-client",
        "from-client",
        "old-client",
        "to-client",
    ]
    assert shared.newest_incoming_for("contact:p1") == shared.messages["n-partner"]
    staff_view = domain.thread_view(shared, domain.staff_ref("dr-a"), settings)
    assert len(staff_view.messages) == 5

    ordinary = thread_with(message("m", 1, "client:c1", "Hi", recipients=("staff:dr-a",)))
    ordinary.participant_keys = ["client:c1", "contact:p1", "staff:dr-a"]
    assert not ordinary.is_notices
    assert domain.recipients_of(ordinary, "client:c1") == ["contact:p1", "staff:dr-a"]
    assert len(domain.thread_view(ordinary, partner, settings).messages) == 1


def test_a_transcript_needs_the_client_on_the_readers_care() -> None:
    viewing = member("sup", StaffRole.SUPERVISOR, can_view_others=True)
    assert not domain.staff_may_view_transcript(viewing, CLIENT)
    assert domain.staff_may_view_transcript(
        member("sup", StaffRole.SUPERVISOR, can_view_others=True, client_ids=frozenset({"c1"})),
        CLIENT,
    )
    assert domain.staff_may_view_transcript(member("dr-b", StaffRole.CLINICIAN), CLIENT)
    assert domain.staff_may_view_transcript(member("m", StaffRole.PRACTICE_MANAGER), CLIENT)
    assert not domain.staff_may_view_transcript(member("b", StaffRole.BILLER), CLIENT)
