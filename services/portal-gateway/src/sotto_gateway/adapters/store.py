"""MongoDB stores of the gateway: identity projection, links, sign-in links, sessions, notices.

Every write that must publish events carries them in the same document (kit outbox).
Only the FerretDB-compatible subset is used: equality/range filters, `$set`, `$inc`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cachetools import TTLCache
from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from sotto_contracts.base import Message
from sotto_contracts.common import ParticipantKind, ParticipantRef, StaffRole
from sotto_contracts.topology import Topology
from sotto_gateway.domain import ClientSession, Person, Practice, SecureLink, id_for_digest
from sotto_kit.batching import FindBatcher, InsertBatcher, UpdateBatcher
from sotto_kit.locks import KeyedLocks
from sotto_kit.messaging import Publisher
from sotto_kit.mongo import SCAN_TIME_LIMIT_MS, Document, ensure_collections, insert_new
from sotto_kit.outbox import flush, new_document_outbox, outbox_update, written_entries

PRACTICES_CACHED = 10_000  # per in-memory cache of practice details, oldest evicted first


def _person_id(practice_id: str, kind: ParticipantKind, person_id: str) -> str:
    return f"{practice_id}|{kind.value}|{person_id}"


def _person(document: Document) -> Person:
    return Person(
        practice_id=document["practice_id"],
        kind=ParticipantKind(document["kind"]),
        id=document["person_id"],
        display_name=document["display_name"],
        email=document.get("email"),
        active=document.get("active", True),
        messaging_enabled=document.get("messaging_enabled", True),
        discreet=document.get("discreet", False),
        client_id=document.get("client_id"),
        verification_hash=document.get("verification_hash"),
        can_message=document.get("can_message", True),
        roles=frozenset(StaffRole(role) for role in document.get("roles", [])),
        client_ids=frozenset(document.get("client_ids", [])),
        clinician_ids=frozenset(document.get("clinician_ids", [])),
        primary_clinician_id=document.get("primary_clinician_id"),
        can_view_others=document.get("can_view_others", False),
        can_export=document.get("can_export", False),
        email_notifications=document.get("email_notifications", True),
        prospect=document.get("prospect", False),
        contact_ids=(
            frozenset(document["contact_ids"]) if document.get("contact_ids") is not None else None
        ),
        version=document.get("version"),
    )


def _link(document: Document) -> SecureLink:
    return SecureLink(
        link_id=document["_id"],
        practice_id=document["practice_id"],
        recipient=ParticipantRef.model_validate(document["recipient"]),
        conversation_id=document["conversation_id"],
        posted_message_id=document["posted_message_id"],
        expires_at=document["expires_at"],
        revoked=document.get("revoked", False),
        failed_attempts=document.get("failed_attempts", 0),
        locked=document.get("locked", False),
    )


def _session(document: Document) -> ClientSession:
    return ClientSession(
        session_ref=document["_id"],
        practice_id=document["practice_id"],
        principal=ParticipantRef.model_validate(document["principal"]),
        client_id=document["client_id"],
        conversation_id=document.get("conversation_id"),
        started_at=document["started_at"],
        last_seen_at=document["last_seen_at"],
        csrf_digest=document["csrf_digest"],
        ended=document.get("ended", False),
    )


class OutboxWriter:
    """Writes documents together with the events they must publish, then publishes them.

    Inserts and sole-writer outbox clears of concurrently handled messages share commands
    (`sotto_kit.batching`); one batcher per collection. Updates and flushes of one document
    take its lock (`sotto_kit.locks`): a flush clears the outbox right after its events (a
    link's email among them) went out, when the link may already be in use."""

    def __init__(self, topology: Topology, publisher: Publisher) -> None:
        self.topology = topology
        self.publisher = publisher
        self._inserts: dict[str, InsertBatcher] = {}
        self._updates: dict[str, UpdateBatcher] = {}
        self._document_locks = KeyedLocks()

    def exclusive(self, collection: AsyncCollection[Document], document_id: Any) -> asyncio.Lock:
        """The lock this process holds while it writes the document."""
        return self._document_locks((collection.full_name, document_id))

    async def insert(
        self, collection: AsyncCollection[Document], document: Document, events: Sequence[Message]
    ) -> dict[str, Document]:
        """Insert with the events; returns the outbox entries written (for `flush`).
        DuplicateKeyError if a document with its `_id` or another unique key exists."""
        outbox = new_document_outbox(self.topology, events)
        inserts = self._inserts.get(collection.full_name)
        if inserts is None:
            inserts = self._inserts[collection.full_name] = InsertBatcher(collection)
        if not await inserts.insert({**document, **outbox}):
            raise DuplicateKeyError(f"{collection.name} {document['_id']} exists")
        return written_entries(outbox)

    async def update(
        self,
        collection: AsyncCollection[Document],
        selector: Document,
        changes: Document,
        events: Sequence[Message],
    ) -> dict[str, Document] | None:
        """Update with the events; the entries written, or None if the selector matched nothing."""
        outbox = outbox_update(self.topology, events)
        async with self.exclusive(collection, selector["_id"]):
            result = await collection.update_one(selector, {"$set": {**changes, **outbox}})
        return written_entries(outbox) if result.matched_count == 1 else None

    async def flush(
        self,
        collection: AsyncCollection[Document],
        document_id: Any,
        written: dict[str, Document] | None = None,
        *,
        sole_writer: bool = False,
    ) -> None:
        """Publish the document's pending events (only `written`, without a read, if given;
        `sole_writer`: see `sotto_kit.outbox.flush`)."""
        updates = self._updates.get(collection.full_name)
        if updates is None:
            updates = self._updates[collection.full_name] = UpdateBatcher(collection)
        async with self.exclusive(collection, document_id):
            await flush(
                collection,
                document_id,
                self.publisher,
                written=written,
                sole_writer=sole_writer,
                updates=updates,
            )


class IdentityStore:
    def __init__(
        self, database: AsyncDatabase[Document], *, practice_cache_seconds: float = 0.0
    ) -> None:
        self.practices = database["practices"]
        self.people = database["people"]
        # Every email names its practice: read it once per `practice_cache_seconds`, not per
        # email. A change arriving at another instance shows here that much later.
        self._practice_cache: TTLCache[str, Practice] = TTLCache(
            maxsize=PRACTICES_CACHED, ttl=practice_cache_seconds
        )
        # a request reads the signed-in person and often the client they act on; concurrent
        # requests' reads go out as one `find` (a team member's or client's own requests, and
        # a fan-out's emails, read the same and neighbouring people)
        self._person_reads = FindBatcher(self.people)

    @property
    def collections(self) -> list[AsyncCollection[Document]]:
        return [self.practices, self.people]

    async def ensure_indexes(self) -> None:
        await ensure_collections(self.collections)
        await self.practices.create_index("slug")
        await self.people.create_index([("practice_id", 1), ("email_normalized", 1)])
        await self.people.create_index([("practice_id", 1), ("client_id", 1)])
        await self.people.create_index([("practice_id", 1), ("kind", 1)])

    async def upsert_practice(self, practice: Practice, version: datetime) -> None:
        await self._replace_if_newer(
            self.practices,
            practice.practice_id,
            {"slug": practice.slug, "display_name": practice.display_name},
            version,
        )
        self._practice_cache.pop(practice.practice_id, None)

    async def practice(self, practice_id: str) -> Practice | None:
        cached = self._practice_cache.get(practice_id)
        if cached is not None:
            return cached
        document = await self.practices.find_one({"_id": practice_id})
        if document is None:
            return None
        practice = _practice(document)
        self._practice_cache[practice_id] = practice
        return practice

    async def practice_by_slug(self, slug: str) -> Practice | None:
        document = await self.practices.find_one({"slug": slug}, max_time_ms=SCAN_TIME_LIMIT_MS)
        return None if document is None else _practice(document)

    async def upsert_person(self, person: Person, version: datetime) -> None:
        fields: Document = {
            "practice_id": person.practice_id,
            "kind": person.kind.value,
            "person_id": person.id,
            "display_name": person.display_name,
            "email": person.email,
            "email_normalized": person.email.strip().lower() if person.email else None,
            "active": person.active,
            "messaging_enabled": person.messaging_enabled,
            "discreet": person.discreet,
            "client_id": person.client_id,
            "verification_hash": person.verification_hash,
            "can_message": person.can_message,
            "roles": sorted(role.value for role in person.roles),
            "client_ids": sorted(person.client_ids),
            "clinician_ids": sorted(person.clinician_ids),
            "primary_clinician_id": person.primary_clinician_id,
            "can_view_others": person.can_view_others,
            "can_export": person.can_export,
            "email_notifications": person.email_notifications,
            "prospect": person.prospect,
            "contact_ids": None if person.contact_ids is None else sorted(person.contact_ids),
        }
        await self._replace_if_newer(
            self.people, _person_id(person.practice_id, person.kind, person.id), fields, version
        )

    async def set_messaging_enabled(self, practice_id: str, ref: ParticipantRef, on: bool) -> None:
        await self.people.update_one(
            {"_id": _person_id(practice_id, ref.kind, ref.id)}, {"$set": {"messaging_enabled": on}}
        )

    async def deactivate(self, practice_id: str, ref: ParticipantRef) -> None:
        await self.people.update_one(
            {"_id": _person_id(practice_id, ref.kind, ref.id)}, {"$set": {"active": False}}
        )

    async def person(self, practice_id: str, ref: ParticipantRef) -> Person | None:
        document = await self._person_reads.find(_person_id(practice_id, ref.kind, ref.id))
        return None if document is None else _person(document)

    async def team(self, practice_id: str) -> list[Person]:
        """The practice's active team members, by name."""
        cursor = self.people.find(
            {"practice_id": practice_id, "kind": "staff", "active": True},
            {"email": 0, "email_normalized": 0},
            max_time_ms=SCAN_TIME_LIMIT_MS,
        ).sort([("display_name", ASCENDING), ("person_id", ASCENDING)])
        return [_person(document) async for document in cursor]

    async def contacts_of(self, practice_id: str, client_id: str) -> list[Person]:
        cursor = self.people.find(
            {"practice_id": practice_id, "client_id": client_id, "kind": "contact"},
            max_time_ms=SCAN_TIME_LIMIT_MS,
        )
        return [_person(document) async for document in cursor]

    async def portal_users_by_email(self, practice_id: str, email: str) -> list[Person]:
        cursor = self.people.find(
            {
                "practice_id": practice_id,
                "email_normalized": email,
                "kind": {"$in": ["client", "contact"]},
            },
            max_time_ms=SCAN_TIME_LIMIT_MS,
        )
        return [_person(document) async for document in cursor]

    @staticmethod
    async def _replace_if_newer(
        collection: AsyncCollection[Document], key: str, fields: Document, version: datetime
    ) -> None:
        current = await collection.find_one({"_id": key}, {"version": 1})
        if current is not None and current["version"] > version:
            return
        try:
            await collection.update_one(
                {"_id": key}, {"$set": {**fields, "version": version}}, upsert=True
            )
        except DuplicateKeyError:
            await collection.update_one({"_id": key}, {"$set": {**fields, "version": version}})


def _practice(document: Document) -> Practice:
    return Practice(
        practice_id=document["_id"], slug=document["slug"], display_name=document["display_name"]
    )


class LinkStore:
    def __init__(self, database: AsyncDatabase[Document], writer: OutboxWriter) -> None:
        self.links = database["links"]
        self.sign_in_links = database["sign_in_links"]
        self.sign_in_link_uses = database["sign_in_link_uses"]
        self.notices = database["notices"]
        self.removed_messages = database["removed_messages"]
        self._removed_reads = FindBatcher(self.removed_messages, projection={"_id": 1})
        self._writer = writer

    @property
    def outbox_collections(self) -> list[AsyncCollection[Document]]:
        return [self.links, self.sign_in_links, self.notices]

    @property
    def collections(self) -> list[AsyncCollection[Document]]:
        return [*self.outbox_collections, self.sign_in_link_uses, self.removed_messages]

    async def ensure_indexes(self) -> None:
        await ensure_collections(self.collections)
        await self.links.create_index("token_digest", unique=True)
        await self.links.create_index("source_message_id", unique=True)
        await self.links.create_index([("practice_id", 1), ("posted_message_id", 1)])
        await self.sign_in_links.create_index("token_digest", unique=True)
        await self.sign_in_links.create_index([("practice_id", 1), ("recipient_key", 1)])

    async def add_notice(self, source_message_id: str, events: Sequence[Message]) -> None:
        """Record that a source message was turned into notices; once per message id."""
        try:
            written = await self._writer.insert(self.notices, {"_id": source_message_id}, events)
        except DuplicateKeyError:  # a redelivery: publish what the first attempt may have left
            await self._writer.flush(self.notices, source_message_id)
            return
        await self._writer.flush(self.notices, source_message_id, written, sole_writer=True)

    async def add_link(self, document: Document, events: Sequence[Message]) -> None:
        try:
            written = await self._writer.insert(self.links, document, events)
        except DuplicateKeyError:
            existing = await self.links.find_one(
                {"source_message_id": document["source_message_id"]},
                {"_id": 1},
                max_time_ms=SCAN_TIME_LIMIT_MS,
            )
            if existing is None:
                raise
            await self._writer.flush(self.links, existing["_id"])
            return
        # nobody can touch the link before its email, which this flush sends
        await self._writer.flush(self.links, document["_id"], written, sole_writer=True)

    async def link_by_digest(self, digest: str) -> SecureLink | None:
        document = await self.links.find_one({"_id": id_for_digest(digest), "token_digest": digest})
        return None if document is None else _link(document)

    async def record_on_link(
        self, link_id: str, changes: Document, events: Sequence[Message]
    ) -> None:
        """Apply `changes` with the events, whatever else was written to the link meanwhile."""
        written = await self._writer.update(self.links, {"_id": link_id}, changes, events)
        await self._writer.flush(self.links, link_id, written)

    async def count_attempt(
        self, link: SecureLink, changes: Document, events: Sequence[Message]
    ) -> bool:
        """Apply a verification attempt's outcome to the link as `link` shows it: only if no
        other attempt was counted, nor the link locked or revoked, since it was read. One
        conditional update, applied whole by MongoDB and by the FerretDB the infra builds."""
        written = await self._writer.update(
            self.links,
            {
                "_id": link.link_id,
                "failed_attempts": link.failed_attempts,
                "locked": False,
                "revoked": False,
            },
            changes,
            events,
        )
        if written is None:
            return False
        await self._writer.flush(self.links, link.link_id, written)
        return True

    async def mark_removed(self, practice_id: str, posted_message_id: str) -> None:
        await insert_new(self.removed_messages, [{"_id": f"{practice_id}|{posted_message_id}"}])

    async def was_removed(self, practice_id: str, posted_message_id: str) -> bool:
        return await self._removed_reads.find(f"{practice_id}|{posted_message_id}") is not None

    async def links_for_message(self, practice_id: str, posted_message_id: str) -> list[SecureLink]:
        cursor = self.links.find(
            {"practice_id": practice_id, "posted_message_id": posted_message_id, "revoked": False},
            max_time_ms=SCAN_TIME_LIMIT_MS,
        )
        return [_link(document) async for document in cursor]

    async def revoke(self, link: SecureLink, events: Sequence[Message]) -> None:
        written = await self._writer.update(
            self.links, {"_id": link.link_id, "revoked": False}, {"revoked": True}, events
        )
        await self._writer.flush(self.links, link.link_id, written)

    async def add_sign_in_link(
        self, document: Document, recipient_key: str, events: Sequence[Message]
    ) -> None:
        """Store a sign-in link with its events; of its recipient's links only the newest (by
        `created_at`, then `_id`) stays usable. Each request replaces the others after its own
        insert, so of two requests at once the later to insert sees both links."""
        await self._writer.insert(
            self.sign_in_links, {**document, "recipient_key": recipient_key, "used": False}, events
        )
        cursor = self.sign_in_links.find(
            {
                "practice_id": document["practice_id"],
                "recipient_key": recipient_key,
                "$or": [{"used": False}, {"created_at": {"$gte": document["created_at"]}}],
            },
            {"_id": 1, "created_at": 1, "used": 1},
            max_time_ms=SCAN_TIME_LIMIT_MS,
        )
        links = [link async for link in cursor]
        newest = max((link["created_at"], link["_id"]) for link in links)
        replaced = [
            link["_id"]
            for link in links
            if not link["used"] and (link["created_at"], link["_id"]) != newest
        ]
        if replaced:
            await self.sign_in_links.update_many(
                {"_id": {"$in": replaced}, "used": False},
                {"$set": {"used": True, "replaced": True}},
            )
            # Their uses claimed too, which a write-back of `used: False` cannot undo.
            await insert_new(
                self.sign_in_link_uses,
                [{"_id": link_id, "used_at": document["created_at"]} for link_id in replaced],
            )

    async def flush_sign_in_link(self, link_id: str) -> None:
        await self._writer.flush(self.sign_in_links, link_id)

    async def sign_in_link(self, digest: str) -> Document | None:
        return await self.sign_in_links.find_one(
            {"_id": id_for_digest(digest), "token_digest": digest}
        )

    async def use_sign_in_link(self, digest: str, now: datetime) -> Document | None:
        """Mark a sign-in link used; only the first caller gets it back.

        The use is also claimed by inserting the link's id: on FerretDB another instance's
        write to the link (its outbox flush, when the emailed link is followed at once) can put
        `used: False` back (`sotto_kit.locks`). A unique `_id` holds on every server.
        """
        link_id = id_for_digest(digest)
        async with self._writer.exclusive(self.sign_in_links, link_id):
            document = await self.sign_in_links.find_one_and_update(
                {"_id": link_id, "token_digest": digest, "used": False},
                {"$set": {"used": True}},
                return_document=ReturnDocument.BEFORE,
            )
        if document is None:
            return None
        try:
            await self.sign_in_link_uses.insert_one({"_id": document["_id"], "used_at": now})
        except DuplicateKeyError:
            return None
        return document


class SessionStore:
    def __init__(self, database: AsyncDatabase[Document], writer: OutboxWriter) -> None:
        self.sessions = database["sessions"]
        self._writer = writer

    @property
    def collections(self) -> list[AsyncCollection[Document]]:
        return [self.sessions]

    async def ensure_indexes(self) -> None:
        await ensure_collections(self.collections)
        await self.sessions.create_index("key_digest", unique=True)

    async def start(self, document: Document, events: Sequence[Message]) -> None:
        written = await self._writer.insert(self.sessions, document, events)
        # the session's key has not reached the browser yet
        await self._writer.flush(self.sessions, document["_id"], written, sole_writer=True)

    async def by_key(self, digest: str) -> ClientSession | None:
        document = await self.sessions.find_one(
            {"_id": id_for_digest(digest), "key_digest": digest, "ended": False}
        )
        return None if document is None else _session(document)

    async def touch(self, session_ref: str, now: datetime) -> None:
        async with self._writer.exclusive(self.sessions, session_ref):
            await self.sessions.update_one({"_id": session_ref}, {"$set": {"last_seen_at": now}})

    async def end(self, session_ref: str, reason: str, events: Sequence[Message]) -> None:
        written = await self._writer.update(
            self.sessions,
            {"_id": session_ref, "ended": False},
            {"ended": True, "end_reason": reason},
            events,
        )
        await self._writer.flush(self.sessions, session_ref, written)
