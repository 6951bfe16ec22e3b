"""Gateway rules without I/O: access, link states, session timeouts, hashing, display names."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sotto_contracts.common import ParticipantKind, ParticipantRef, StaffRole
from sotto_gateway.domain import (
    ClientSession,
    LinkStatus,
    Person,
    SecureLink,
    SessionEndReason,
    SessionPolicy,
    StaffPrincipal,
    email_display_name,
    new_token,
    token_digest,
    verification_digest,
)

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
CLIENT = Person(
    practice_id="p1",
    kind=ParticipantKind.CLIENT,
    id="c1",
    display_name="Alex",
    clinician_ids=frozenset({"clin1"}),
    primary_clinician_id="clin1",
)


def staff(
    *roles: StaffRole, clients: frozenset[str] = frozenset(), practice: str = "p1"
) -> StaffPrincipal:
    person = Person(
        practice_id=practice,
        kind=ParticipantKind.STAFF,
        id="s1",
        display_name="S",
        roles=frozenset(roles),
        client_ids=clients,
    )
    return StaffPrincipal(practice, person)


def test_client_access_follows_roles_and_assignments() -> None:
    for role in (
        StaffRole.OWNER,
        StaffRole.PRACTICE_MANAGER,
        StaffRole.BILLER,
        StaffRole.SCHEDULER,
    ):
        assert staff(role).may_access_client(CLIENT)
    assert not staff(StaffRole.CLINICIAN).may_access_client(CLIENT)
    assert not staff(StaffRole.SUPERVISOR).may_access_client(CLIENT)
    assert staff(StaffRole.SUPERVISOR, clients=frozenset({"c1"})).may_access_client(CLIENT)
    assert not staff(StaffRole.OWNER, practice="p2").may_access_client(CLIENT)
    assert not staff(StaffRole.OWNER).may_access_client(None)


def test_link_status_order_revoked_locked_expired() -> None:
    link = SecureLink(
        link_id="l1",
        practice_id="p1",
        recipient=ParticipantRef(kind=ParticipantKind.CLIENT, id="c1"),
        conversation_id="conv1",
        posted_message_id="m1",
        expires_at=NOW + timedelta(hours=1),
    )
    assert link.status(NOW) is LinkStatus.NEEDS_VERIFICATION
    assert link.status(NOW + timedelta(hours=1)) is LinkStatus.EXPIRED
    locked = SecureLink(**{**link.__dict__, "locked": True})
    assert locked.status(NOW) is LinkStatus.LOCKED
    revoked = SecureLink(**{**link.__dict__, "locked": True, "revoked": True})
    assert revoked.status(NOW) is LinkStatus.REVOKED


def test_session_times_out_when_idle_or_too_old() -> None:
    policy = SessionPolicy(idle=timedelta(minutes=15), absolute=timedelta(minutes=60))
    session = ClientSession(
        session_ref="s",
        practice_id="p1",
        principal=ParticipantRef(kind=ParticipantKind.CLIENT, id="c1"),
        client_id="c1",
        conversation_id=None,
        started_at=NOW,
        last_seen_at=NOW + timedelta(minutes=50),
        csrf_digest="x",
    )
    assert session.expiry(NOW + timedelta(minutes=55), policy) is None
    assert session.expiry(NOW + timedelta(minutes=65, seconds=1), policy) is (
        SessionEndReason.ABSOLUTE_TIMEOUT
    )
    assert session.expiry(NOW + timedelta(minutes=59), policy) is None
    idle = ClientSession(**{**session.__dict__, "last_seen_at": NOW})
    assert idle.expiry(NOW + timedelta(minutes=15), policy) is SessionEndReason.IDLE_TIMEOUT


def test_tokens_are_long_random_and_stored_only_as_keyed_digests() -> None:
    token = new_token()
    assert len(token) >= 43
    assert new_token() != token
    digest = token_digest(b"key", token)
    assert token not in digest
    assert digest != token_digest(b"other key", token)
    birthday = date(1990, 4, 12)
    hashed = verification_digest(b"key", "p1", "client:c1", birthday)
    assert "1990" not in hashed
    assert hashed != verification_digest(b"key", "p1", "client:c2", birthday)


def test_practice_names_fit_the_notifier_alphabet() -> None:
    assert email_display_name("Calm Waters / Counseling <LLC>") == "Calm Waters Counseling LLC"
    assert email_display_name(None) == "Your care team"
    assert email_display_name("***") == "Your care team"
