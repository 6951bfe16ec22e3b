"""Identity, access and link rules of the gateway: plain data and functions, no I/O."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from urllib.parse import urlsplit

from sotto_contracts.common import ParticipantKind, ParticipantRef, StaffRole

TOKEN_BYTES = 32

ROLES_SEEING_EVERY_CLIENT = frozenset(
    {StaffRole.OWNER, StaffRole.PRACTICE_MANAGER, StaffRole.BILLER, StaffRole.SCHEDULER}
)
ROLES_MANAGING_PRACTICE = frozenset({StaffRole.OWNER, StaffRole.PRACTICE_MANAGER})


def new_token() -> str:
    """A bearer secret with 256 bits from the operating system's CSPRNG."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def new_id() -> str:
    return secrets.token_hex(16)


def token_digest(key: bytes, token: str) -> str:
    """What is stored for a link, sign-in or session token: never the token itself."""
    return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()


def id_for_digest(digest: str) -> str:
    """The id of a stored link, sign-in link or session, derived from its token's digest: the
    token is then found by `_id` (the one lookup FerretDB's SQLite backend serves from an
    index), and the stored digest is still compared in full."""
    return digest[:32]


def verification_digest(key: bytes, practice_id: str, person_key: str, value: date) -> str:
    message = f"{practice_id}\x1f{person_key}\x1f{value.isoformat()}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


DEFAULT_PORTS = {"http": 80, "https": 443}
SAME_ORIGIN_FETCH_SITES = frozenset({"same-origin", "none"})


def web_origin(url: str) -> str | None:
    """`scheme://host:port` of a URL, None for "null" or anything without a host."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port or DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        return None
    if not parts.hostname or port is None:
        return None
    return f"{parts.scheme.lower()}://{parts.hostname}:{port}"


def comes_from(
    public_base_url: str, origin: str | None, referer: str | None, fetch_site: str | None
) -> bool:
    """Whether a state-changing request was sent by a page of the portal itself.

    Browsers send Origin with every POST, "null" when a referrer policy hides it; then only
    their Sec-Fetch-Site (which no page can set) vouches for it. A request with none of the
    three headers comes from no browser, so it cannot be one forged by another site.
    """
    if fetch_site is not None and fetch_site not in SAME_ORIGIN_FETCH_SITES:
        return False
    source = origin if origin is not None and origin != "null" else referer
    if source is not None:
        return web_origin(source) == web_origin(public_base_url)
    return origin is None or fetch_site is not None


def normalize_email(address: str) -> str:
    return address.strip().lower()


def person_key(ref: ParticipantRef) -> str:
    return f"{ref.kind.value}:{ref.id}"


@dataclass(frozen=True)
class Practice:
    practice_id: str
    slug: str
    display_name: str


@dataclass(frozen=True)
class Person:
    """A client, contact or team member as the identity projection knows them."""

    practice_id: str
    kind: ParticipantKind
    id: str
    display_name: str
    email: str | None = None
    active: bool = True
    messaging_enabled: bool = True
    discreet: bool = False
    client_id: str | None = None
    verification_hash: str | None = None
    can_message: bool = True
    roles: frozenset[StaffRole] = frozenset()
    client_ids: frozenset[str] = frozenset()
    clinician_ids: frozenset[str] = frozenset()
    primary_clinician_id: str | None = None
    can_view_others: bool = False
    can_export: bool = False
    email_notifications: bool = True
    # Someone who sent an inquiry and is not a client yet: an address, no portal access.
    prospect: bool = False
    # A client's contacts as of its last event; None for records written before it was kept.
    contact_ids: frozenset[str] | None = None
    # When the stored record's event happened (None: not stored yet)
    version: datetime | None = None

    @property
    def ref(self) -> ParticipantRef:
        return ParticipantRef(kind=self.kind, id=self.id)

    @property
    def may_use_portal(self) -> bool:
        return (
            self.kind in (ParticipantKind.CLIENT, ParticipantKind.CONTACT)
            and self.active
            and self.messaging_enabled
            and self.can_message
        )


@dataclass(frozen=True)
class StaffPrincipal:
    practice_id: str
    staff: Person

    @property
    def ref(self) -> ParticipantRef:
        return self.staff.ref

    def has_role(self, *roles: StaffRole) -> bool:
        return bool(self.staff.roles & set(roles))

    @property
    def manages_practice(self) -> bool:
        return bool(self.staff.roles & ROLES_MANAGING_PRACTICE)

    @property
    def may_export(self) -> bool:
        """Complete exports are for owners and practice managers holding export permission."""
        return self.manages_practice and self.staff.can_export

    @property
    def may_view_others(self) -> bool:
        return self.manages_practice or self.staff.can_view_others

    def may_access_client(self, client: Person | None) -> bool:
        if client is None or client.practice_id != self.practice_id:
            return False
        if self.staff.roles & ROLES_SEEING_EVERY_CLIENT:
            return True
        return (
            client.id in self.staff.client_ids
            or self.staff.id in client.clinician_ids
            or client.primary_clinician_id == self.staff.id
        )


class LinkStatus(StrEnum):
    NEEDS_VERIFICATION = "needs_verification"
    EXPIRED = "expired"
    REVOKED = "revoked"
    LOCKED = "locked"
    # No verification data on file for the recipient: signing in with their email proves them
    SIGN_IN_INSTEAD = "sign_in_instead"


@dataclass(frozen=True)
class SecureLink:
    link_id: str
    practice_id: str
    recipient: ParticipantRef
    conversation_id: str
    posted_message_id: str
    expires_at: datetime
    revoked: bool = False
    failed_attempts: int = 0
    locked: bool = False

    def status(self, now: datetime) -> LinkStatus:
        if self.revoked:
            return LinkStatus.REVOKED
        if self.locked:
            return LinkStatus.LOCKED
        if now >= self.expires_at:
            return LinkStatus.EXPIRED
        return LinkStatus.NEEDS_VERIFICATION


class SessionEndReason(StrEnum):
    SIGN_OUT = "sign_out"
    IDLE_TIMEOUT = "idle_timeout"
    ABSOLUTE_TIMEOUT = "absolute_timeout"
    SWITCHED_IDENTITY = "switched_identity"
    REPLACED = "replaced"


@dataclass(frozen=True)
class SessionPolicy:
    idle: timedelta
    absolute: timedelta


@dataclass(frozen=True)
class Identity:
    """A client or contact record that whoever holds its email address may act as."""

    ref: ParticipantRef
    display_name: str
    # For a contact: the name of the client whose conversations they share
    on_behalf_of: str | None = None


@dataclass(frozen=True)
class ClientSession:
    session_ref: str
    practice_id: str
    principal: ParticipantRef
    client_id: str
    conversation_id: str | None
    started_at: datetime
    last_seen_at: datetime
    csrf_digest: str
    ended: bool = False

    def expiry(self, now: datetime, policy: SessionPolicy) -> SessionEndReason | None:
        if now - self.started_at >= policy.absolute:
            return SessionEndReason.ABSOLUTE_TIMEOUT
        if now - self.last_seen_at >= policy.idle:
            return SessionEndReason.IDLE_TIMEOUT
        return None

    def may_see(self, conversation_id: str) -> bool:
        return self.conversation_id is None or self.conversation_id == conversation_id


DISPLAY_NAME_DISALLOWED = re.compile(r"[^\w .,&'()-]+")
FALLBACK_PRACTICE_NAME = "Your care team"


def email_display_name(name: str | None) -> str:
    """A practice name that fits the notifier's restricted sender-name alphabet."""
    cleaned = " ".join(DISPLAY_NAME_DISALLOWED.sub(" ", name or "").split())[:80].strip()
    return cleaned or FALLBACK_PRACTICE_NAME
