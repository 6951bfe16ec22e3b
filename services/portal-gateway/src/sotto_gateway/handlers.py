"""Use cases of the gateway: identity projection, notices and links, sign-in, client sessions."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

from pydantic import ValidationError

from sotto_contracts.base import Message, utc_now
from sotto_contracts.common import NotificationKind, ParticipantKind, ParticipantRef
from sotto_contracts.conversations import (
    ClientEmailDue,
    MessageRemoved,
    MessagingEnablementChanged,
    PracticeSettings,
    UnreadReminderDue,
)
from sotto_contracts.gateway import (
    LinkIssued,
    LinkLocked,
    LinkOpened,
    LinkRefusalReason,
    LinkRefused,
    LinkRevoked,
    SessionEnded,
    SessionStarted,
    SignInRequested,
    VerificationFailed,
    VerificationSucceeded,
)
from sotto_contracts.inbound import (
    ClientUpserted,
    InquiryReceived,
    PracticeUpserted,
    StaffUpserted,
)
from sotto_contracts.notifier import SendNotification
from sotto_gateway.adapters.store import IdentityStore, LinkStore, SessionStore
from sotto_gateway.config import GatewaySettings
from sotto_gateway.domain import (
    ClientSession,
    Identity,
    LinkStatus,
    Person,
    Practice,
    SecureLink,
    SessionEndReason,
    SessionPolicy,
    email_display_name,
    id_for_digest,
    new_token,
    normalize_email,
    person_key,
    token_digest,
    verification_digest,
)
from sotto_kit.parking import NotYetKnownError

logger = logging.getLogger(__name__)

PROSPECT_VERSION = datetime(1970, 1, 1, tzinfo=UTC)  # older than any client event

Clock = Callable[[], datetime]


class PracticeSettingsSource(Protocol):
    async def get(self, practice_id: str) -> PracticeSettings: ...


class NotFoundError(Exception):
    """Nothing the caller may see exists under that name."""


class SessionRequiredError(Exception):
    """No live session: missing, unknown, ended or timed out."""


class SignInRequiredError(Exception):
    """A secure-link session (one conversation) asked for what needs a portal sign-in."""


@dataclass(frozen=True)
class LinkView:
    status: LinkStatus
    practice_name: str
    practice_slug: str | None
    failed_attempts: int
    attempts_left: int


@dataclass(frozen=True)
class StartedSession:
    key: str
    csrf_token: str
    session: ClientSession


@dataclass(frozen=True)
class VerificationOutcome:
    view: LinkView
    started: StartedSession | None


class Portal:
    """Everything the gateway does besides forwarding to conversations and audit."""

    def __init__(
        self,
        settings: GatewaySettings,
        identity: IdentityStore,
        links: LinkStore,
        sessions: SessionStore,
        practice_settings: PracticeSettingsSource,
        clock: Clock = utc_now,
    ) -> None:
        self._settings = settings
        self._identity = identity
        self._links = links
        self._sessions = sessions
        self._practice_settings = practice_settings
        self._clock = clock
        self._link_key = settings.link_hash_key.get_secret_value().encode()
        self._verification_key = settings.verification_hash_key.get_secret_value().encode()
        self.session_policy = SessionPolicy(
            idle=timedelta(minutes=settings.session_idle_minutes),
            absolute=timedelta(minutes=settings.session_absolute_minutes),
        )

    # ------------------------------------------------------------------ identity projection

    async def on_practice_upserted(self, event: PracticeUpserted) -> None:
        practice = Practice(event.practice_id, event.slug, event.display_name)
        await self._identity.upsert_practice(practice, event.occurred_at)

    async def on_client_upserted(self, event: ClientUpserted) -> None:
        previous = await self._identity.person(
            event.practice_id, ParticipantRef(kind=ParticipantKind.CLIENT, id=event.client_id)
        )
        if previous and previous.version and previous.version > event.occurred_at:
            return  # a newer event came first
        client = Person(
            practice_id=event.practice_id,
            kind=ParticipantKind.CLIENT,
            id=event.client_id,
            display_name=event.display_name,
            email=event.email,
            active=event.active,
            messaging_enabled=await self._client_messaging_enabled(event, previous),
            discreet=event.discreet,
            client_id=event.client_id,
            verification_hash=self._verification_hash(
                event.practice_id, ParticipantKind.CLIENT, event.client_id, event.date_of_birth
            ),
            clinician_ids=frozenset(event.clinician_ids),
            primary_clinician_id=event.primary_clinician_id,
            contact_ids=frozenset(contact.contact_id for contact in event.contacts),
        )
        current = {contact.contact_id for contact in event.contacts}
        # Before the client is saved: after a crash in between, the redelivered event still
        # finds the contacts it removes on the stored client.
        for former in await self._former_contacts(previous, current):
            if former.active:
                await self._identity.deactivate(event.practice_id, former.ref)
        await self._identity.upsert_person(client, event.occurred_at)
        for contact in event.contacts:
            person = Person(
                practice_id=event.practice_id,
                kind=ParticipantKind.CONTACT,
                id=contact.contact_id,
                display_name=contact.display_name,
                email=contact.email,
                active=event.active,
                messaging_enabled=contact.messaging_enabled,
                discreet=event.discreet,
                client_id=event.client_id,
                verification_hash=self._verification_hash(
                    event.practice_id,
                    ParticipantKind.CONTACT,
                    contact.contact_id,
                    contact.date_of_birth,
                ),
                can_message=contact.can_message,
            )
            await self._identity.upsert_person(person, event.occurred_at)

    async def _client_messaging_enabled(
        self, event: ClientUpserted, previous: Person | None
    ) -> bool:
        """As conversations decides: the event's switch, else the client's current setting,
        else the practice's auto-enable for new clients."""
        if event.messaging_enabled is not None:
            return event.messaging_enabled
        if previous is not None and not previous.prospect:
            return previous.messaging_enabled
        return (await self._practice_settings.get(event.practice_id)).auto_enable_new_clients

    async def _may_use_portal(self, person: Person) -> bool:
        """Whether this person may read and reply now: a contact follows their client's
        switch as well as their own."""
        if not person.may_use_portal:
            return False
        if person.kind is not ParticipantKind.CONTACT or person.client_id is None:
            return True
        client = await self._identity.person(
            person.practice_id, ParticipantRef(kind=ParticipantKind.CLIENT, id=person.client_id)
        )
        return client is not None and client.may_use_portal

    async def _former_contacts(self, previous: Person | None, current: set[str]) -> list[Person]:
        """Contacts the client had before this event and no longer has, looked up by id."""
        if previous is None:
            return []
        if previous.contact_ids is None:  # recorded before contact ids were kept: search
            known = await self._identity.contacts_of(previous.practice_id, previous.id)
            return [contact for contact in known if contact.id not in current]
        formers = []
        for contact_id in sorted(previous.contact_ids - current):
            ref = ParticipantRef(kind=ParticipantKind.CONTACT, id=contact_id)
            if (contact := await self._identity.person(previous.practice_id, ref)) is not None:
                formers.append(contact)
        return formers

    async def on_inquiry_received(self, event: InquiryReceived) -> None:
        """Someone not a client yet: their address, for the practice's inquiry response. Any
        event of theirs as a client replaces it, however old, and only that opens the portal."""
        ref = ParticipantRef(kind=ParticipantKind.CLIENT, id=event.client_id)
        if not event.email or await self._identity.person(event.practice_id, ref) is not None:
            return
        prospect = Person(
            practice_id=event.practice_id,
            kind=ParticipantKind.CLIENT,
            id=event.client_id,
            display_name=event.display_name,
            email=event.email,
            messaging_enabled=False,
            prospect=True,
        )
        await self._identity.upsert_person(prospect, PROSPECT_VERSION)

    async def on_staff_upserted(self, event: StaffUpserted) -> None:
        enabled = event.messaging_enabled
        if enabled is None:  # as switched in the inbox; on for someone new
            ref = ParticipantRef(kind=ParticipantKind.STAFF, id=event.staff_id)
            previous = await self._identity.person(event.practice_id, ref)
            enabled = previous.messaging_enabled if previous else True
        staff = Person(
            practice_id=event.practice_id,
            kind=ParticipantKind.STAFF,
            id=event.staff_id,
            display_name=event.display_name,
            email=event.email,
            active=event.active,
            messaging_enabled=enabled,
            roles=frozenset(event.roles),
            client_ids=frozenset(event.client_ids),
            can_view_others=event.can_view_others_conversations,
            can_export=event.can_export,
            email_notifications=event.email_notifications,
        )
        await self._identity.upsert_person(staff, event.occurred_at)

    async def on_messaging_enablement_changed(self, event: MessagingEnablementChanged) -> None:
        await self._identity.set_messaging_enabled(event.practice_id, event.subject, event.enabled)

    def _verification_hash(
        self, practice_id: str, kind: ParticipantKind, person_id: str, value: date | None
    ) -> str | None:
        if value is None:
            return None
        ref = ParticipantRef(kind=kind, id=person_id)
        return verification_digest(self._verification_key, practice_id, person_key(ref), value)

    # ------------------------------------------------------------------ notices and links

    async def on_unread_reminder(self, event: UnreadReminderDue) -> None:
        person = await self._identity.person(event.practice_id, event.recipient)
        practice = await self._identity.practice(event.practice_id)
        notification_id = f"reminder-{event.message_id.hex}"
        if person is None:
            raise NotYetKnownError(f"unknown recipient {event.recipient.kind.value}")
        if not person.active or not person.email:
            logger.info("no address for reminder", extra={"notification_id": notification_id})
            await self._links.add_notice(str(event.message_id), [])
            return
        if person.kind is ParticipantKind.STAFF:
            events: list[Message] = []
            if person.email_notifications and person.messaging_enabled:
                events = self._notification(
                    notification_id,
                    NotificationKind.STAFF_MESSAGE_WAITING,
                    person,
                    practice,
                    f"{self._base_url}/staff",
                    event.conversation_id,
                )
            await self._links.add_notice(str(event.message_id), events)
            return
        if not await self._may_use_portal(person) or await self._links.was_removed(
            event.practice_id, event.posted_message_id
        ):
            await self._links.add_notice(str(event.message_id), [])
            return
        expiry_hours = (await self._practice_settings.get(event.practice_id)).link_expiry_hours
        token = new_token()
        digest = token_digest(self._link_key, token)
        link_id = id_for_digest(digest)
        now = self._clock()
        expires_at = now + timedelta(hours=expiry_hours)
        command = self._notification(
            notification_id,
            NotificationKind.SECURE_MESSAGE_WAITING,
            person,
            practice,
            f"{self._base_url}/l/{token}",
            event.conversation_id,
        )
        issued = LinkIssued(
            practice_id=event.practice_id,
            link_id=link_id,
            recipient=event.recipient,
            conversation_id=event.conversation_id,
            expires_at=expires_at,
            notification_id=notification_id,
        )
        document = {
            "_id": link_id,
            "token_digest": digest,
            "source_message_id": str(event.message_id),
            "practice_id": event.practice_id,
            "recipient": event.recipient.model_dump(mode="json"),
            "conversation_id": event.conversation_id,
            "posted_message_id": event.posted_message_id,
            "expires_at": expires_at,
            "created_at": now,
            "revoked": False,
            "locked": False,
            "failed_attempts": 0,
        }
        await self._links.add_link(document, [*command, issued] if command else [issued])
        # The message's removal may have been handled meanwhile, before this link existed.
        if await self._links.was_removed(event.practice_id, event.posted_message_id):
            await self._revoke_links_of(event.practice_id, event.posted_message_id)

    async def on_client_email_due(self, event: ClientEmailDue) -> None:
        person = await self._identity.person(event.practice_id, event.recipient)
        if person is None:
            raise NotYetKnownError(f"unknown recipient {event.recipient.kind.value}")
        practice = await self._identity.practice(event.practice_id)
        events: list[Message] = []
        if person.active and person.email:
            portal = f"{self._base_url}/o/{practice.slug}/messages" if practice else self._base_url
            events = self._notification(
                f"email-{event.message_id.hex}",
                NotificationKind(event.workflow.value),
                person,
                practice,
                portal,
                event.conversation_id,
            )
        await self._links.add_notice(str(event.message_id), events)

    async def on_message_removed(self, event: MessageRemoved) -> None:
        await self._links.mark_removed(event.practice_id, event.posted_message_id)
        await self._revoke_links_of(event.practice_id, event.posted_message_id)

    async def _revoke_links_of(self, practice_id: str, posted_message_id: str) -> None:
        for link in await self._links.links_for_message(practice_id, posted_message_id):
            revoked = LinkRevoked(
                practice_id=link.practice_id,
                link_id=link.link_id,
                recipient=link.recipient,
                conversation_id=link.conversation_id,
            )
            await self._links.revoke(link, [revoked])

    def _notification(
        self,
        notification_id: str,
        kind: NotificationKind,
        person: Person,
        practice: Practice | None,
        link_url: str,
        conversation_id: str | None,
    ) -> list[Message]:
        """The one command for one person, or nothing when their address is unusable."""
        try:
            return [
                SendNotification(
                    practice_id=person.practice_id,
                    notification_id=notification_id,
                    kind=kind,
                    recipient=person.ref,
                    to_address=person.email or "",
                    practice_display_name=email_display_name(
                        practice.display_name if practice else None
                    ),
                    link_url=link_url,
                    discreet=person.discreet,
                    conversation_id=conversation_id,
                )
            ]
        except ValidationError:
            logger.warning("unusable address; no email", extra={"notification_id": notification_id})
            return []

    @property
    def _base_url(self) -> str:
        return self._settings.public_base_url.rstrip("/")

    # ------------------------------------------------------------------ opening links

    async def _link(self, token: str) -> SecureLink:
        link = await self._links.link_by_digest(token_digest(self._link_key, token))
        if link is None:
            raise NotFoundError("link")
        return link

    async def _view(self, link: SecureLink, status: LinkStatus) -> LinkView:
        practice = await self._identity.practice(link.practice_id)
        limit = self._settings.max_verification_failures
        return LinkView(
            status=status,
            practice_name=email_display_name(practice.display_name if practice else None),
            practice_slug=practice.slug if practice else None,
            failed_attempts=link.failed_attempts,
            attempts_left=max(limit - link.failed_attempts, 0),
        )

    async def open_link(self, token: str) -> LinkView:
        link = await self._link(token)
        status = link.status(self._clock())
        if status is LinkStatus.NEEDS_VERIFICATION:
            opened = LinkOpened(
                practice_id=link.practice_id,
                link_id=link.link_id,
                recipient=link.recipient,
                conversation_id=link.conversation_id,
            )
            await self._links.record_on_link(
                link.link_id, {"last_opened_at": self._clock()}, [opened]
            )
            if not await self._verifiable(link):
                status = LinkStatus.SIGN_IN_INSTEAD
        else:
            await self._refuse(link, status)
        return await self._view(link, status)

    async def _verifiable(self, link: SecureLink) -> bool:
        person = await self._identity.person(link.practice_id, link.recipient)
        return person is not None and person.verification_hash is not None

    async def _refuse(self, link: SecureLink, status: LinkStatus) -> None:
        refused = LinkRefused(
            practice_id=link.practice_id,
            link_id=link.link_id,
            recipient=link.recipient,
            reason=LinkRefusalReason(status.value),
        )
        await self._links.record_on_link(link.link_id, {}, [refused])

    async def verify_link(self, token: str, date_of_birth: date) -> VerificationOutcome:
        """An attempt counts, and its answer holds, only if nothing else was counted on the
        link, nor the link locked or revoked, since it was read (`LinkStore.count_attempt`);
        otherwise it starts again from a fresh read. So attempts sent at once get no more
        tries than attempts sent one after another. Each new start follows another attempt's
        count; without a success among them, at most the limit of them lock the link."""
        for _ in range(2 * (self._settings.max_verification_failures + 1)):
            link = await self._link(token)
            status = link.status(self._clock())
            if status is not LinkStatus.NEEDS_VERIFICATION:
                await self._refuse(link, status)
                return VerificationOutcome(await self._view(link, status), None)
            person = await self._identity.person(link.practice_id, link.recipient)
            offered = verification_digest(
                self._verification_key, link.practice_id, person_key(link.recipient), date_of_birth
            )
            expected = person.verification_hash if person else None
            if expected is None:  # nothing to compare with: no attempt can succeed or count
                return VerificationOutcome(await self._view(link, LinkStatus.SIGN_IN_INSTEAD), None)
            matches = hmac.compare_digest(offered, expected)
            if matches and person is not None and await self._may_use_portal(person):
                # earlier slips do not count towards a later lock
                if not await self._links.count_attempt(link, {"failed_attempts": 0}, []):
                    continue
                succeeded = VerificationSucceeded(
                    practice_id=link.practice_id, link_id=link.link_id, recipient=link.recipient
                )
                started = await self._start_session(
                    person, link.conversation_id, "secure_link", [succeeded]
                )
                return VerificationOutcome(await self._view(link, status), started)
            failed, events = self._failure(link)
            changes = {"failed_attempts": failed.failed_attempts, "locked": failed.locked}
            if await self._links.count_attempt(link, changes, events):
                return VerificationOutcome(
                    await self._view(failed, failed.status(self._clock())), None
                )
        raise NotFoundError("link")

    def _failure(self, link: SecureLink) -> tuple[SecureLink, list[Message]]:
        """The link after one more failed attempt, and the events that record it."""
        attempts = link.failed_attempts + 1
        failed = replace(
            link,
            failed_attempts=attempts,
            locked=attempts >= self._settings.max_verification_failures,
        )
        events: list[Message] = [
            VerificationFailed(
                practice_id=link.practice_id,
                link_id=link.link_id,
                recipient=link.recipient,
                failed_attempts=attempts,
            )
        ]
        if failed.locked:
            events.append(
                LinkLocked(
                    practice_id=link.practice_id, link_id=link.link_id, recipient=link.recipient
                )
            )
        return failed, events

    # ------------------------------------------------------------------ instant sign-in

    async def sign_in_practice(self, slug: str) -> Practice:
        practice = await self._identity.practice_by_slug(slug)
        if practice is None:
            raise NotFoundError("practice")
        return practice

    async def request_sign_in(self, practice: Practice, email: str) -> str:
        """Same work whether or not the address is known; returns the record id to flush."""
        usable = await self._usable_by_email(practice.practice_id, email)
        person = usable[0] if usable else None
        token = new_token()
        digest = token_digest(self._link_key, token)
        link_id = id_for_digest(digest)
        now = self._clock()
        notification_id = f"sign-in-{link_id}"
        command = (
            self._notification(
                notification_id,
                NotificationKind.SIGN_IN_LINK,
                person,
                practice,
                f"{self._base_url}/api/portal/sign-in/{token}",
                None,
            )
            if person
            else []
        )
        known = person if command else None
        requested = SignInRequested(
            practice_id=practice.practice_id,
            recipient=known.ref if known else None,
            notification_id=notification_id if known else None,
        )
        # An unknown address's newer link replaces its older one too, so a repeated request
        # writes alike whether or not the address is known (no timing difference to probe).
        recipient_key = (
            person_key(known.ref)
            if known
            else f"unknown:{token_digest(self._link_key, normalize_email(email))}"
        )
        document = {
            "_id": link_id,
            "practice_id": practice.practice_id,
            "token_digest": digest,
            "recipient": known.ref.model_dump(mode="json") if known else None,
            "expires_at": now + timedelta(minutes=self._settings.sign_in_link_minutes),
            "created_at": now,
        }
        await self._links.add_sign_in_link(document, recipient_key, [*command, requested])
        return link_id

    async def flush_sign_in(self, link_id: str) -> None:
        """Runs after the answer is sent: a failure is left to the outbox relay, never raised."""
        try:
            await self._links.flush_sign_in_link(link_id)
        except Exception:
            logger.warning("sign-in notice left for the outbox relay", exc_info=True)

    async def sign_in_link_state(self, token: str) -> tuple[bool, Practice | None]:
        """Whether a sign-in link may still be used, and its practice; reads only."""
        document = await self._links.sign_in_link(token_digest(self._link_key, token))
        if document is None:
            return False, None
        usable = (
            not document["used"]
            and document.get("recipient") is not None
            and self._clock() < document["expires_at"]
        )
        return usable, await self._identity.practice(document["practice_id"])

    async def consume_sign_in(self, token: str) -> StartedSession:
        document = await self._links.use_sign_in_link(
            token_digest(self._link_key, token), self._clock()
        )
        if document is None or document.get("recipient") is None:
            raise NotFoundError("sign-in link")
        if self._clock() >= document["expires_at"]:
            raise NotFoundError("sign-in link")
        ref = ParticipantRef.model_validate(document["recipient"])
        person = await self._identity.person(document["practice_id"], ref)
        if person is None or not await self._may_use_portal(person):
            raise NotFoundError("sign-in link")
        return await self._start_session(person, None, "sign_in_link", [])

    # ------------------------------------------------------------------ several identities

    async def _usable_by_email(self, practice_id: str, email: str) -> list[Person]:
        """The clients and contacts with this address who may use the portal now: clients
        first, then by name."""
        candidates = await self._identity.portal_users_by_email(practice_id, normalize_email(email))
        usable = [person for person in candidates if await self._may_use_portal(person)]
        usable.sort(
            key=lambda person: (person.kind is not ParticipantKind.CLIENT, person.display_name)
        )
        return usable

    async def _records_of(self, session: ClientSession) -> list[Person]:
        """Every record the signed-in address may act as, the signed-in one first: a partner
        who is a client too, a parent of two clients. A secure-link session is its one person
        (the link proved no more)."""
        person = await self._identity.person(session.practice_id, session.principal)
        if person is None:
            return []
        if session.conversation_id is not None or person.email is None:
            return [person]
        usable = await self._usable_by_email(session.practice_id, person.email)
        return sorted(usable, key=lambda candidate: candidate.ref != session.principal)

    async def identities(self, session: ClientSession) -> list[Identity]:
        return [await self._identity_of(person) for person in await self._records_of(session)]

    async def _identity_of(self, person: Person) -> Identity:
        if person.kind is not ParticipantKind.CONTACT or person.client_id is None:
            return Identity(ref=person.ref, display_name=person.display_name)
        client = await self._identity.person(
            person.practice_id, ParticipantRef(kind=ParticipantKind.CLIENT, id=person.client_id)
        )
        return Identity(
            ref=person.ref,
            display_name=person.display_name,
            on_behalf_of=client.display_name if client else None,
        )

    async def switch_identity(
        self, session: ClientSession, target: ParticipantRef
    ) -> StartedSession:
        """A new session as another record with the same address; the current one ends."""
        if session.conversation_id is not None:
            raise SignInRequiredError
        records = await self._records_of(session)
        person = next((record for record in records if record.ref == target), None)
        if person is None:
            raise NotFoundError("identity")
        started = await self._start_session(person, None, "identity_switch", [])
        await self.end_session(session, SessionEndReason.SWITCHED_IDENTITY)
        return started

    # ------------------------------------------------------------------ sessions

    async def _start_session(
        self, person: Person, conversation_id: str | None, via: str, events: list[Message]
    ) -> StartedSession:
        key, csrf = new_token(), new_token()
        key_digest = token_digest(self._link_key, key)
        now = self._clock()
        session = ClientSession(
            session_ref=id_for_digest(key_digest),
            practice_id=person.practice_id,
            principal=person.ref,
            client_id=person.client_id or person.id,
            conversation_id=conversation_id,
            started_at=now,
            last_seen_at=now,
            csrf_digest=token_digest(self._link_key, csrf),
        )
        started = SessionStarted(
            practice_id=person.practice_id,
            session_ref=session.session_ref,
            principal=person.ref,
            conversation_id=conversation_id,
            via=via,
        )
        await self._sessions.start(
            {
                "_id": session.session_ref,
                "key_digest": key_digest,
                "csrf_digest": session.csrf_digest,
                "practice_id": session.practice_id,
                "principal": session.principal.model_dump(mode="json"),
                "client_id": session.client_id,
                "conversation_id": conversation_id,
                "via": via,
                "started_at": now,
                "last_seen_at": now,
                "ended": False,
            },
            [*events, started],
        )
        return StartedSession(key=key, csrf_token=csrf, session=session)

    async def session(self, key: str) -> ClientSession:
        """The live session for a cookie value; ends it when it timed out."""
        session = await self._sessions.by_key(token_digest(self._link_key, key))
        if session is None:
            raise SessionRequiredError
        now = self._clock()
        reason = session.expiry(now, self.session_policy)
        if reason is not None:
            await self.end_session(session, reason)
            raise SessionRequiredError
        await self._sessions.touch(session.session_ref, now)
        return session

    async def end_replaced_session(self, key: str | None) -> None:
        """Ends the live session a browser held before it started another."""
        if not key:
            return
        session = await self._sessions.by_key(token_digest(self._link_key, key))
        if session is not None:
            await self.end_session(session, SessionEndReason.REPLACED)

    def csrf_matches(self, session: ClientSession, offered: str | None) -> bool:
        digest = token_digest(self._link_key, offered or "")
        return offered is not None and hmac.compare_digest(digest, session.csrf_digest)

    async def end_session(self, session: ClientSession, reason: SessionEndReason) -> None:
        ended = SessionEnded(
            practice_id=session.practice_id,
            session_ref=session.session_ref,
            principal=session.principal,
            reason=reason.value,
        )
        await self._sessions.end(session.session_ref, reason.value, [ended])

    async def person(self, practice_id: str, ref: ParticipantRef) -> Person | None:
        return await self._identity.person(practice_id, ref)

    async def contact_ids(self, practice_id: str, client_id: str) -> list[str]:
        """Everyone recorded as the client's contact, former ones too (for their access log)."""
        contacts = await self._identity.contacts_of(practice_id, client_id)
        return sorted(contact.id for contact in contacts)

    async def team(self, practice_id: str) -> list[Person]:
        return await self._identity.team(practice_id)

    async def practice(self, practice_id: str) -> Practice | None:
        return await self._identity.practice(practice_id)
