"""MongoDB persistence: threads (with their outbox), the people projection, settings, reminders,
announcements.

Each thread is one document, so a state change and its events are one atomic write. Dict keys
that come from ids are escaped because ids may contain dots. Each message is stored as one JSON
string under its key (`messages.<id>`): FerretDB's SQLite backend decodes and re-encodes every
value of a document on each read and update, so a 50-message thread with its messages as
sub-documents cost ~8 ms of database CPU per read, and ~2.3 ms as strings. Threads written
before keep sub-documents; both read the same.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from sotto_contracts.base import Message
from sotto_contracts.common import ContactRelation, StaffRole
from sotto_contracts.conversations import AnnouncementState, ConversationKind, PracticeSettings
from sotto_contracts.topology import Topology
from sotto_conversations.domain import (
    Announcement,
    ClientRecord,
    ContactRecord,
    StaffMember,
    StoredMessage,
    StoredNote,
    StoredTask,
    Thread,
    key_of,
    ref_of,
)
from sotto_kit.batching import FindBatcher
from sotto_kit.messaging import Publisher
from sotto_kit.mongo import SCAN_TIME_LIMIT_MS, Document, ensure_collections, insert_new
from sotto_kit.outbox import (
    OUTBOX,
    OUTBOX_PENDING,
    flush,
    new_document_outbox,
    outbox_update,
    publish_entries,
    retry_later,
)


class VersionConflictError(Exception):
    """Someone else changed the thread since it was loaded; reload and retry."""


def escape(key: str) -> str:
    return key.replace(".", "%2E")


def unescape(key: str) -> str:
    return key.replace("%2E", ".")


def thread_id(practice_id: str, conversation_id: str) -> str:
    return f"{practice_id}:{conversation_id}"


def person_id(practice_id: str, kind: str, identifier: str) -> str:
    return f"{practice_id}:{kind}:{identifier}"


def reminder_id(practice_id: str, conversation_id: str, recipient_key: str) -> str:
    return f"{practice_id}:{conversation_id}:{recipient_key}"


def announcement_key(practice_id: str, announcement_id: str) -> str:
    return f"{practice_id}:{announcement_id}"


# ----------------------------------------------------------------------------- thread codec


def _message_json(message: StoredMessage) -> str:
    return json.dumps(
        {
            "posted_message_id": message.posted_message_id,
            "sender": key_of(message.sender) if message.sender else None,
            "body": message.body,
            "sent_at": message.sent_at.isoformat(),
            "seq": message.seq,
            "removed": message.removed,
            "automatic": message.automatic,
            "recipients": list(message.recipients),
        },
        separators=(",", ":"),
    )


def _message_from(stored: Document | str) -> StoredMessage:
    """A message as stored now (a JSON string) or before (a sub-document)."""
    fields: Document = json.loads(stored) if isinstance(stored, str) else stored
    sent_at = fields["sent_at"]
    return StoredMessage(
        posted_message_id=fields["posted_message_id"],
        sender=ref_of(fields["sender"]) if fields.get("sender") else None,
        body=fields["body"],
        sent_at=datetime.fromisoformat(sent_at) if isinstance(sent_at, str) else sent_at,
        seq=fields["seq"],
        removed=bool(fields.get("removed")),
        automatic=bool(fields.get("automatic")),
        recipients=tuple(fields.get("recipients") or ()),
    )


def thread_fields(thread: Thread) -> Document:
    return {
        "practice_id": thread.practice_id,
        "conversation_id": thread.conversation_id,
        "kind": thread.kind.value,
        "subject": thread.subject,
        "client_id": thread.client_id,
        "client_name": thread.client_name,
        "participant_keys": list(thread.participant_keys),
        "assignee_id": thread.assignee_id,
        "inbox_owner_ids": thread.inbox_owner_ids,
        "unread_by_staff": any(key.startswith("staff:") for key in thread.unread_by),
        "archived": thread.archived,
        "created_at": thread.created_at,
        "last_activity_at": thread.last_activity_at,
        "messages": {escape(k): _message_json(m) for k, m in thread.messages.items()},
        "bodies": [m.body for m in thread.ordered_messages() if not m.removed],
        "notes": {
            escape(k): {
                "note_id": n.note_id,
                "author_id": n.author_id,
                "body": n.body,
                "created_at": n.created_at,
            }
            for k, n in thread.notes.items()
        },
        "tasks": {
            escape(k): {
                "task_id": t.task_id,
                "title": t.title,
                "assignee_id": t.assignee_id,
                "due": t.due.isoformat() if hasattr(t.due, "isoformat") else None,
                "done": t.done,
                "created_at": t.created_at,
            }
            for k, t in thread.tasks.items()
        },
        "task_ids": list(thread.tasks),
        "reads": {escape(k): seq for k, seq in thread.reads.items()},
        "unread_by": list(thread.unread_by),
        "request_details": thread.request_details,
    }


KEYED_FIELDS = ("messages", "notes", "tasks", "reads")


def flat_fields(thread: Thread) -> Document:
    """Thread fields with per-key paths for the keyed maps, so a save sets only what changed."""
    fields = thread_fields(thread)
    flat: Document = {}
    for name, value in fields.items():
        if name in KEYED_FIELDS:
            flat.update({f"{name}.{key}": item for key, item in value.items()})
        else:
            flat[name] = value
    return flat


def thread_from(document: Document, *, for_update: bool = True) -> Thread:
    """The thread; `for_update` also keeps what was stored, so a save writes only changes
    (a read-only load skips that: it costs as much as decoding the thread)."""
    thread = _thread_from(document)
    if for_update:
        thread.stored_fields = flat_fields(thread)
        thread.stored_fields[_OUTBOX_WAS_PENDING] = bool(document.get(OUTBOX_PENDING))
    return thread


# Kept with the stored fields (not a thread field): whether the loaded document still held
# events, i.e. whether a save may clear the outbox whole after publishing its own.
_OUTBOX_WAS_PENDING = "\x00outbox_was_pending"


def _thread_from(document: Document) -> Thread:
    return Thread(
        practice_id=document["practice_id"],
        conversation_id=document["conversation_id"],
        kind=ConversationKind(document["kind"]),
        subject=document["subject"],
        client_id=document.get("client_id"),
        client_name=document.get("client_name"),
        participant_keys=list(document.get("participant_keys") or []),
        assignee_id=document.get("assignee_id"),
        archived=bool(document.get("archived")),
        created_at=document["created_at"],
        last_activity_at=document["last_activity_at"],
        messages={
            unescape(k): _message_from(m) for k, m in (document.get("messages") or {}).items()
        },
        notes={
            unescape(k): StoredNote(
                note_id=n["note_id"],
                author_id=n["author_id"],
                body=n["body"],
                created_at=n["created_at"],
            )
            for k, n in (document.get("notes") or {}).items()
        },
        tasks={
            unescape(k): StoredTask(
                task_id=t["task_id"],
                title=t["title"],
                assignee_id=t.get("assignee_id"),
                due=t.get("due"),
                done=bool(t.get("done")),
                created_at=t["created_at"],
            )
            for k, t in (document.get("tasks") or {}).items()
        },
        reads={unescape(k): int(v) for k, v in (document.get("reads") or {}).items()},
        unread_by=list(document.get("unread_by") or []),
        request_details=document.get("request_details"),
        version=int(document.get("version") or 0),
    )


# ----------------------------------------------------------------------------- people codec


def staff_from(document: Document) -> StaffMember:
    return StaffMember(
        staff_id=document["id"],
        display_name=document["display_name"],
        roles=frozenset(StaffRole(role) for role in document.get("roles") or []),
        client_ids=frozenset(document.get("client_ids") or []),
        can_view_others=bool(document.get("can_view_others")),
        can_export=bool(document.get("can_export")),
        messaging_enabled=bool(document.get("messaging_enabled", True)),
        email_notifications=bool(document.get("email_notifications", True)),
        active=bool(document.get("active", True)),
    )


def client_from(document: Document) -> ClientRecord:
    return ClientRecord(
        client_id=document["id"],
        display_name=document["display_name"],
        primary_clinician_id=document.get("primary_clinician_id"),
        clinician_id_list=tuple(document.get("clinician_ids") or ()),
        messaging_enabled=bool(document.get("messaging_enabled", True)),
        active=bool(document.get("active", True)),
        contacts=tuple(
            ContactRecord(
                contact_id=c["contact_id"],
                relation=ContactRelation(c["relation"]),
                display_name=c["display_name"],
                messaging_enabled=bool(c.get("messaging_enabled", True)),
                can_message=bool(c.get("can_message", True)),
            )
            for c in document.get("contacts") or []
        ),
    )


# ----------------------------------------------------------------------------- announcement codec


def announcement_document(announcement: Announcement) -> Document:
    return {
        "_id": announcement_key(announcement.practice_id, announcement.announcement_id),
        "practice_id": announcement.practice_id,
        "announcement_id": announcement.announcement_id,
        "sender_id": announcement.sender_id,
        "subject": announcement.subject,
        "body": announcement.body,
        "clinician_id": announcement.clinician_id,
        "recipient_ids": list(announcement.recipient_ids),
        "clients": announcement.clients,
        "accepted_at": announcement.accepted_at,
        "processed": announcement.processed,
        "conversations": announcement.conversations,
        "state": announcement.state.value,
        "finished_at": announcement.finished_at,
        "lease_epoch": 0,
        "lease_holder": None,
        "lease_until": None,
    }


def announcement_from(document: Document) -> Announcement:
    """A finished announcement no longer holds its recipients and body (see `finish`)."""
    return Announcement(
        practice_id=document["practice_id"],
        announcement_id=document["announcement_id"],
        sender_id=document["sender_id"],
        subject=document["subject"],
        body=document.get("body") or "",
        clinician_id=document.get("clinician_id"),
        recipient_ids=tuple(document.get("recipient_ids") or ()),
        clients=int(document["clients"]),
        accepted_at=document["accepted_at"],
        processed=int(document.get("processed") or 0),
        conversations=int(document.get("conversations") or 0),
        state=AnnouncementState(document["state"]),
        finished_at=document.get("finished_at"),
    )


@dataclass(frozen=True)
class ClientSend:
    """One recorded send of a client's (rate limit): when, and the token of the request."""

    sent_at: datetime
    token: str

    @property
    def stored(self) -> Document | datetime:
        return {"at": self.sent_at, "token": self.token} if self.token else self.sent_at


def _client_send(stored: Document | datetime) -> ClientSend:
    if isinstance(stored, datetime):
        return ClientSend(stored, "")
    return ClientSend(stored["at"], stored["token"])


@dataclass(frozen=True)
class AnnouncementClaim:
    """What trying to take an unfinished announcement on gave: the announcement and the lease
    epoch when this holder has it now, or when another holder's lease runs out."""

    announcement: Announcement | None = None
    epoch: int = 0
    held_until: datetime | None = None


class ConversationStore:
    def __init__(
        self,
        database: AsyncDatabase[Document],
        topology: Topology,
        publisher: Publisher,
        *,
        crash_after_write: bool = False,
    ) -> None:
        self.threads: AsyncCollection[Document] = database["threads"]
        self.people: AsyncCollection[Document] = database["people"]
        self.settings: AsyncCollection[Document] = database["settings"]
        self.reminders: AsyncCollection[Document] = database["reminders"]
        self.reminder_claims: AsyncCollection[Document] = database["reminder_claims"]
        self.client_sends: AsyncCollection[Document] = database["client_sends"]
        self.handled: AsyncCollection[Document] = database["handled_requests"]
        self.announcements: AsyncCollection[Document] = database["announcements"]
        self.announcement_claims: AsyncCollection[Document] = database["announcement_claims"]
        # concurrent requests mostly read the same few documents (the practice's settings,
        # the team member asking, the thread): one `find` serves all that are waiting
        self._thread_reads = FindBatcher(self.threads)
        self._person_reads = FindBatcher(self.people)
        self._settings_reads = FindBatcher(self.settings)
        self._topology = topology
        self._publisher = publisher
        self._crash_after_write = crash_after_write
        self.on_reminder_scheduled: Callable[[datetime], None] | None = None
        self.on_announcement_accepted: Callable[[str], None] | None = None

    @property
    def outbox_collections(self) -> list[AsyncCollection[Document]]:
        return [self.threads, self.people, self.settings, self.reminders, self.reminder_claims]

    @property
    def collections(self) -> list[AsyncCollection[Document]]:
        return [
            *self.outbox_collections,
            self.client_sends,
            self.handled,
            self.announcements,
            self.announcement_claims,
        ]

    async def ensure_indexes(self) -> None:
        await ensure_collections(self.collections)
        await self.threads.create_index(
            [("practice_id", ASCENDING), ("last_activity_at", DESCENDING)]
        )
        await self.threads.create_index(
            [("practice_id", ASCENDING), ("inbox_owner_ids", ASCENDING)]
        )
        await self.threads.create_index([("practice_id", ASCENDING), ("client_id", ASCENDING)])
        await self.threads.create_index(
            [("practice_id", ASCENDING), ("participant_keys", ASCENDING)]
        )
        await self.threads.create_index([("practice_id", ASCENDING), ("task_ids", ASCENDING)])
        await self.people.create_index([("practice_id", ASCENDING), ("kind", ASCENDING)])
        await self.people.create_index([("practice_id", ASCENDING), ("contact_ids", ASCENDING)])
        await self.reminders.create_index([("state", ASCENDING), ("due_at", ASCENDING)])
        await self.reminders.create_index(
            [("practice_id", ASCENDING), ("conversation_id", ASCENDING)]
        )

    def _written(self) -> None:
        if self._crash_after_write:
            os._exit(137)

    # ------------------------------------------------------------------------- threads

    async def load_thread(
        self, practice_id: str, conversation_id: str, *, for_update: bool = True
    ) -> Thread | None:
        document = await self._thread_reads.find(thread_id(practice_id, conversation_id))
        return thread_from(document, for_update=for_update) if document else None

    async def threads_with_task(self, practice_id: str, task_id: str) -> list[Thread]:
        found = self.threads.find(
            {"practice_id": practice_id, "task_ids": task_id}, max_time_ms=SCAN_TIME_LIMIT_MS
        )
        return [thread_from(document, for_update=False) async for document in found]

    async def rename_client(self, practice_id: str, client_id: str, name: str) -> None:
        await self.threads.update_many(
            {"practice_id": practice_id, "client_id": client_id}, {"$set": {"client_name": name}}
        )

    async def insert_thread(self, thread: Thread, events: Sequence[Message]) -> bool:
        """False when a thread with this id already exists."""
        document = {
            "_id": thread_id(thread.practice_id, thread.conversation_id),
            **thread_fields(thread),
            "version": 1,
            **new_document_outbox(self._topology, events),
        }
        try:
            await self.threads.insert_one(document)
        except DuplicateKeyError:
            return False
        self._written()
        await self._publish_own(document["_id"], list(document[OUTBOX].items()), 1)
        return True

    async def _publish_own(
        self, identifier: str, entries: list[tuple[str, Document]], only_these_at: int | None
    ) -> bool:
        """Publish the events this process just wrote to a thread, then take them out of its
        outbox; returns whether the outbox may still hold others.

        Without reading the document back (each read of a long thread is costly on FerretDB):
        when the thread is still at version `only_these_at`, its outbox holds exactly these
        events, so one update empties it; otherwise only these are removed.
        """
        if not entries:
            return only_these_at is None
        try:
            await publish_entries(self._publisher, entries)
        except Exception:
            retry_later(self.threads, identifier)
            raise
        if only_these_at is not None:
            cleared = await self.threads.update_one(
                {"_id": identifier, "version": only_these_at},
                {"$set": {OUTBOX: {}, OUTBOX_PENDING: False}},
            )
            if cleared.matched_count:
                return False
        await self.threads.update_one(
            {"_id": identifier},
            {"$unset": {f"{OUTBOX}.{event_id}": "" for event_id, _ in entries}},
        )
        await self.threads.update_one(
            {"_id": identifier, OUTBOX: {}}, {"$set": {OUTBOX_PENDING: False}}
        )
        return True

    async def save_thread(self, thread: Thread, events: Sequence[Message]) -> None:
        """Write what changed and the events, if nobody changed the thread since it was loaded.

        Only changed paths are set: FerretDB does not make the version check atomic, so
        concurrent writers must not overwrite each other's messages, notes or read marks.
        """
        identifier = thread_id(thread.practice_id, thread.conversation_id)
        current = flat_fields(thread)
        changed = {
            path: value
            for path, value in current.items()
            if thread.stored_fields.get(path) != value
        }
        outbox = outbox_update(self._topology, events)
        result = await self.threads.update_one(
            {"_id": identifier, "version": thread.version},
            {"$set": {**changed, **outbox, "version": thread.version + 1}},
        )
        if result.matched_count == 0:
            raise VersionConflictError(identifier)
        thread.version += 1
        was_pending = thread.stored_fields.get(_OUTBOX_WAS_PENDING, True)
        thread.stored_fields = {**current, _OUTBOX_WAS_PENDING: bool(events) or was_pending}
        self._written()
        if events:
            entries = [
                (path.removeprefix(f"{OUTBOX}."), entry)
                for path, entry in outbox.items()
                if path.startswith(f"{OUTBOX}.")
            ]
            pending = await self._publish_own(
                identifier, entries, None if was_pending else thread.version
            )
            thread.stored_fields[_OUTBOX_WAS_PENDING] = pending

    async def insert_threads(
        self, threads: Sequence[tuple[Thread, Sequence[Message]]]
    ) -> list[str]:
        """Bulk insert (announcements); returns the ids actually inserted, then publishes."""
        documents = [
            {
                "_id": thread_id(thread.practice_id, thread.conversation_id),
                **thread_fields(thread),
                "version": 1,
                **new_document_outbox(self._topology, events),
            }
            for thread, events in threads
        ]
        inserted = await insert_new(self.threads, documents)
        self._written()
        await self.publish_inserted(documents, inserted)
        return [document["_id"] for document in documents if document["_id"] in inserted]

    async def publish_inserted(self, documents: Sequence[Document], inserted: set[str]) -> None:
        await _publish_inserted(self.threads, self._publisher, documents, inserted)

    async def find_threads(self, query: Document, *, skip: int = 0, limit: int = 0) -> list[Thread]:
        """Threads matching `query`, most recent activity first."""
        cursor = (
            self.threads.find(query, max_time_ms=SCAN_TIME_LIMIT_MS)
            .sort("last_activity_at", DESCENDING)
            .skip(skip)
        )
        if limit:
            cursor = cursor.limit(limit)
        return [thread_from(document, for_update=False) async for document in cursor]

    async def page_of_threads(
        self, query: Document, *, skip: int, limit: int
    ) -> tuple[list[Thread], int]:
        """One page of `find_threads` and how many threads match in all.

        Counting is a second read of the whole collection on FerretDB, so it is left out where
        the page itself tells: a first page shorter than `limit` is everything there is.
        """
        if not skip:
            threads = await self.find_threads(query, limit=limit)
            if len(threads) < limit:
                return threads, len(threads)
            return threads, await self._count_threads(query)
        total = await self._count_threads(query)
        if skip >= total:  # also keeps absurd page numbers away from the 64-bit skip
            return [], total
        return await self.find_threads(query, skip=skip, limit=limit), total

    async def thread_client_ids(self, query: Document) -> set[str]:
        """The client ids of the threads matching `query`."""
        found = self.threads.find(query, {"client_id": 1}, max_time_ms=SCAN_TIME_LIMIT_MS)
        return {document["client_id"] async for document in found if document.get("client_id")}

    async def _count_threads(self, query: Document) -> int:
        return await self.threads.count_documents(query, maxTimeMS=SCAN_TIME_LIMIT_MS)

    # ------------------------------------------------------------------------- people

    async def staff(self, practice_id: str, staff_id: str) -> StaffMember | None:
        document = await self._person_reads.find(person_id(practice_id, "staff", staff_id))
        return staff_from(document) if document else None

    async def client(self, practice_id: str, client_id: str) -> ClientRecord | None:
        document = await self._person_reads.find(person_id(practice_id, "client", client_id))
        return client_from(document) if document else None

    async def clients_by_id(
        self, practice_id: str, client_ids: Sequence[str]
    ) -> list[ClientRecord | None]:
        """By `_id` (a filter on anything else reads the whole collection on FerretDB), all
        at once: the concurrent lookups go out as one `$in`."""
        return list(await asyncio.gather(*(self.client(practice_id, c) for c in client_ids)))

    async def client_of_contact(self, practice_id: str, contact_id: str) -> ClientRecord | None:
        document = await self.people.find_one(
            {"practice_id": practice_id, "kind": "client", "contact_ids": contact_id},
            max_time_ms=SCAN_TIME_LIMIT_MS,
        )
        return client_from(document) if document else None

    async def clients(
        self, practice_id: str, *, clinician_id: str | None = None, active_only: bool = False
    ) -> list[ClientRecord]:
        query: Document = {"practice_id": practice_id, "kind": "client"}
        if active_only:
            query["active"] = True
        if clinician_id:
            query["all_clinician_ids"] = clinician_id
        return [
            client_from(document)
            async for document in self.people.find(query, max_time_ms=SCAN_TIME_LIMIT_MS)
        ]

    async def practice_leads(self, practice_id: str) -> list[StaffMember]:
        """Active practice managers, then owners, each in staff id order."""
        query: Document = {
            "practice_id": practice_id,
            "kind": "staff",
            "active": True,
            "roles": {"$in": [StaffRole.PRACTICE_MANAGER.value, StaffRole.OWNER.value]},
        }
        leads = [
            staff_from(document)
            async for document in self.people.find(query, max_time_ms=SCAN_TIME_LIMIT_MS)
        ]
        return sorted(
            leads,
            key=lambda lead: (StaffRole.PRACTICE_MANAGER not in lead.roles, lead.staff_id),
        )

    async def names(self, practice_id: str, keys: Iterable[str]) -> dict[str, str]:
        """Display names for participant keys (clients, contacts, staff)."""
        wanted = set(keys)
        names: dict[str, str] = {}
        ids = [
            person_id(practice_id, ref_of(key).kind.value, ref_of(key).id)
            for key in wanted
            if not key.startswith("contact:")
        ]
        async for document in self.people.find({"_id": {"$in": ids}}):
            names[f"{document['kind']}:{document['id']}"] = document["display_name"]
            for contact in document.get("contacts") or []:
                names[f"contact:{contact['contact_id']}"] = contact["display_name"]
        contact_ids = [ref_of(key).id for key in wanted if key.startswith("contact:")]
        if contact_ids:
            query = {
                "practice_id": practice_id,
                "kind": "client",
                "contact_ids": {"$in": contact_ids},
            }
            async for document in self.people.find(query, max_time_ms=SCAN_TIME_LIMIT_MS):
                for contact in document.get("contacts") or []:
                    names[f"contact:{contact['contact_id']}"] = contact["display_name"]
        return names

    async def upsert_person(
        self, practice_id: str, kind: str, identifier: str, fields: Document, occurred_at: datetime
    ) -> Document | None:
        """Apply a projection update unless a newer one was applied; returns the previous doc."""
        key = person_id(practice_id, kind, identifier)
        previous = await self.people.find_one({"_id": key})
        if (
            previous is not None
            and previous.get("occurred_at")
            and previous["occurred_at"] > occurred_at
        ):
            return previous
        document = {
            "practice_id": practice_id,
            "kind": kind,
            "id": identifier,
            "occurred_at": occurred_at,
            **fields,
        }
        await self.people.update_one({"_id": key}, {"$set": document}, upsert=True)
        return previous

    async def set_person_enabled(
        self, practice_id: str, kind: str, identifier: str, enabled: bool, events: Sequence[Message]
    ) -> None:
        key = person_id(practice_id, kind, identifier)
        await self.people.update_one(
            {"_id": key},
            {"$set": {"messaging_enabled": enabled, **outbox_update(self._topology, events)}},
        )
        self._written()
        await flush(self.people, key, self._publisher)

    # ------------------------------------------------------------------------- settings

    async def practice_known(self, practice_id: str) -> bool:
        return await self.settings.count_documents({"_id": practice_id}, limit=1) > 0

    async def ensure_practice(self, practice_id: str, time_zone: str | None = None) -> None:
        # $setOnInsert of "values" and $set of "values.time_zone" together conflict
        update: Document = (
            {"$set": {"values.time_zone": time_zone}}
            if time_zone
            else {"$setOnInsert": {"values": {}}}
        )
        await self.settings.update_one({"_id": practice_id}, update, upsert=True)

    async def practice_settings(self, practice_id: str) -> PracticeSettings | None:
        document = await self._settings_reads.find(practice_id)
        if document is None:
            return None
        values: Document = document.get("values") or {}
        if values.get("office_hours"):
            # stored before hours had to open before they close: such hours never matched
            values = {
                **values,
                "office_hours": [
                    hours
                    for hours in values["office_hours"]
                    if time.fromisoformat(hours["opens"]) < time.fromisoformat(hours["closes"])
                ],
            }
        return PracticeSettings.model_validate(values)

    async def save_settings(
        self, practice_id: str, values: PracticeSettings, events: Sequence[Message]
    ) -> None:
        await self.settings.update_one(
            {"_id": practice_id},
            {
                "$set": {
                    "values": values.model_dump(mode="json"),
                    **outbox_update(self._topology, events),
                }
            },
        )
        self._written()
        await flush(self.settings, practice_id, self._publisher)

    # ------------------------------------------------------------------------- rate limit
    #
    # One document per client: `sent` lists their sends in the order they were recorded, each
    # {at, token} (plain times before tokens). Entries are only appended ($push) and removed by
    # their exact value ($pullAll): FerretDB ignores $push's $slice and $pull's conditions.

    async def record_client_send(
        self, practice_id: str, client_id: str, sent_at: datetime, token: str
    ) -> list[ClientSend]:
        """Append a send (atomically) and return all the client's recorded sends, in order."""
        key = f"{practice_id}:{client_id}"
        await self.client_sends.update_one(
            {"_id": key}, {"$push": {"sent": {"at": sent_at, "token": token}}}, upsert=True
        )
        document = await self.client_sends.find_one({"_id": key})
        return [_client_send(entry) for entry in (document or {}).get("sent") or []]

    async def forget_client_sends(
        self, practice_id: str, client_id: str, sends: Sequence[ClientSend]
    ) -> None:
        await self.client_sends.update_one(
            {"_id": f"{practice_id}:{client_id}"},
            {"$pullAll": {"sent": [send.stored for send in sends]}},
        )

    # ------------------------------------------------------------------------- reminders

    async def schedule_reminders(self, reminders: Sequence[Document]) -> None:
        """Insert pending reminders; one already stored for the same thread and recipient wins."""
        if not reminders:
            return
        await insert_new(
            self.reminders,
            [{**reminder, "generation": uuid.uuid4().hex} for reminder in reminders],
        )
        if self.on_reminder_scheduled is not None:
            self.on_reminder_scheduled(min(reminder["due_at"] for reminder in reminders))

    async def emit_reminders(
        self, reminders: Sequence[Document], event_for: Callable[[Document], Message]
    ) -> int:
        """Reminders due now: stored as sent with their event in the same document, published at
        once (no wait for the scheduler). One already stored for the same thread and recipient
        (pending, or sent and not read since) wins. Returns how many were emitted."""
        documents = []
        for reminder in reminders:
            document = {
                **reminder,
                "state": "sent",
                "sent_at": reminder["due_at"],
                "generation": uuid.uuid4().hex,
            }
            documents.append(
                {**document, **new_document_outbox(self._topology, [event_for(document)])}
            )
        inserted = await insert_new(self.reminders, documents)
        self._written()
        await _publish_inserted(self.reminders, self._publisher, documents, inserted)
        return len(inserted)

    async def insert_sent_reminders(self, reminders: Sequence[tuple[Document, Message]]) -> None:
        """Reminders emitted at once with the given events (see `emit_reminders`)."""
        events = {reminder["_id"]: event for reminder, event in reminders}
        await self.emit_reminders(
            [reminder for reminder, _ in reminders], lambda document: events[document["_id"]]
        )

    async def drop_pending_reminders(self, practice_id: str) -> None:
        """The practice switched messaging off: no reminder it scheduled is sent."""
        await self.reminders.delete_many({"practice_id": practice_id, "state": "pending"})

    async def cancel_reminders(
        self,
        practice_id: str,
        conversation_id: str,
        recipient_key: str,
        *,
        naming: str | None = None,
    ) -> None:
        """Drop the recipient's reminder of the thread (only if it names `naming`, when given)."""
        query: Document = {"_id": reminder_id(practice_id, conversation_id, recipient_key)}
        if naming is not None:
            query["posted_message_id"] = naming
        await self.reminders.delete_one(query)

    async def claim_due_reminders(
        self, now: datetime, event_for: Callable[[Document], Message], limit: int
    ) -> tuple[int, int, datetime | None]:
        """Claim and emit up to `limit` due reminders with one query.

        Returns (reminders found due, reminders this instance emitted, due time of the next
        pending reminder not due yet, if the query saw one). The query reads the whole
        collection on FerretDB (no secondary indexes), so one query serves a whole batch and
        tells when to look again. A claim is a unique insert (atomic on every backend, unlike
        find-and-modify on FerretDB) carrying the event in its own outbox, so one instance
        emits it; the event id derives from the reminder's generation, so a claim repeated
        after its clean-up is the same event, which consumers drop.
        """
        candidates = [
            document
            async for document in self.reminders.find(
                {"state": "pending"}, max_time_ms=SCAN_TIME_LIMIT_MS
            )
            .sort("due_at", ASCENDING)
            .limit(limit)
        ]
        due = [document for document in candidates if document["due_at"] <= now]
        later = next((d["due_at"] for d in candidates if d["due_at"] > now), None)
        if not due:
            return 0, 0, later
        claims = [
            {
                "_id": f"{candidate['_id']}:{candidate['generation']}",
                "claimed_at": now,
                **new_document_outbox(self._topology, [event_for(candidate)]),
            }
            for candidate in due
        ]
        inserted = await insert_new(self.reminder_claims, claims)
        await asyncio.gather(
            *(
                self.reminders.update_one(
                    {"_id": candidate["_id"], "generation": candidate["generation"]},
                    {"$set": {"state": "sent", "sent_at": now}},
                )
                for candidate in due
            )
        )
        self._written()
        entries = [
            (event_id, entry)
            for claim in claims
            if claim["_id"] in inserted
            for event_id, entry in claim[OUTBOX].items()
        ]
        await publish_entries(self._publisher, entries)
        # published: the claims are done (keeps the collection the relay scans small)
        await asyncio.gather(
            *(self.reminder_claims.delete_one({"_id": claim_id}) for claim_id in inserted)
        )
        return len(due), len(inserted), later

    # ------------------------------------------------------------------------- idempotent replies

    async def handled_reply(self, message_id: str) -> str | None:
        document = await self.handled.find_one({"_id": message_id})
        return None if document is None else str(document["reply"])

    async def remember_reply(self, message_id: str, reply: str) -> None:
        try:
            await self.handled.insert_one({"_id": message_id, "reply": reply})
        except DuplicateKeyError:
            return

    # ------------------------------------------------------------------------- announcements
    #
    # One document per accepted announcement, keyed by practice and announcement id. An
    # instance works on one only while it holds its lease: a claim is a unique insert of
    # (announcement, epoch) into `announcement_claims` (atomic on every backend), so of the
    # instances that saw the same epoch one wins; the lease then names the holder and expires
    # unless progress renews it. Progress and the finish are written only by the holder of the
    # current epoch. On FerretDB that check is not atomic, so two instances could still run the
    # same batch at a lease's edge: a batch is idempotent (derived thread ids), not exclusive.
    # Finished announcements drop their recipients and body: the periodic query for unfinished
    # ones reads every document on FerretDB.

    async def insert_announcement(self, announcement: Announcement) -> Announcement:
        """Store a newly accepted announcement; one already stored under its id wins and is
        returned instead."""
        document = announcement_document(announcement)
        try:
            await self.announcements.insert_one(document)
        except DuplicateKeyError:
            existing = await self.announcements.find_one({"_id": document["_id"]})
            if existing is None:  # deleted between the insert and the read
                raise
            return announcement_from(existing)
        if self.on_announcement_accepted is not None and not announcement.finished:
            self.on_announcement_accepted(document["_id"])
        return announcement

    async def announcement(self, practice_id: str, announcement_id: str) -> Announcement | None:
        document = await self.announcements.find_one(
            {"_id": announcement_key(practice_id, announcement_id)}
        )
        return announcement_from(document) if document else None

    async def unfinished_announcements(self) -> list[str]:
        query = {"state": AnnouncementState.SENDING.value}
        found = self.announcements.find(query, {"_id": 1}, max_time_ms=SCAN_TIME_LIMIT_MS)
        return [document["_id"] async for document in found]

    async def claim_announcement(
        self, key: str, holder: str, now: datetime, lease: timedelta
    ) -> AnnouncementClaim:
        """Take an unfinished announcement on for `lease`, unless another holder's lease runs."""
        document = await self.announcements.find_one({"_id": key})
        if document is None or document["state"] != AnnouncementState.SENDING.value:
            return AnnouncementClaim()
        held_until: datetime | None = document.get("lease_until")
        if held_until is not None and held_until > now and document.get("lease_holder") != holder:
            return AnnouncementClaim(held_until=held_until)
        epoch = int(document.get("lease_epoch") or 0) + 1
        try:
            await self.announcement_claims.insert_one(
                {"_id": f"{key}:{epoch}", "holder": holder, "claimed_at": now}
            )
        except DuplicateKeyError:  # another instance claimed this epoch first
            return AnnouncementClaim(held_until=now + lease)
        taken = await self.announcements.update_one(
            {"_id": key, "lease_epoch": epoch - 1, "state": AnnouncementState.SENDING.value},
            {"$set": {"lease_epoch": epoch, "lease_holder": holder, "lease_until": now + lease}},
        )
        if not taken.matched_count:
            return AnnouncementClaim()
        return AnnouncementClaim(announcement_from(document), epoch)

    async def record_announcement_progress(
        self, announcement: Announcement, epoch: int, lease_until: datetime
    ) -> bool:
        """Record the batches done and renew the lease; False when the lease was lost."""
        key = announcement_key(announcement.practice_id, announcement.announcement_id)
        recorded = await self.announcements.update_one(
            {"_id": key, "lease_epoch": epoch},
            {
                "$set": {
                    "processed": announcement.processed,
                    "conversations": announcement.conversations,
                    "lease_until": lease_until,
                }
            },
        )
        return recorded.matched_count == 1

    async def finish_announcement(self, announcement: Announcement, epoch: int) -> bool:
        """Mark it sent (if this epoch still holds it) and drop what only the work needed."""
        key = announcement_key(announcement.practice_id, announcement.announcement_id)
        finished = await self.announcements.update_one(
            {"_id": key, "lease_epoch": epoch},
            {
                "$set": {
                    "state": announcement.state.value,
                    "finished_at": announcement.finished_at,
                    "processed": announcement.processed,
                    "conversations": announcement.conversations,
                    "lease_holder": None,
                    "lease_until": None,
                },
                "$unset": {"recipient_ids": "", "body": ""},
            },
        )
        if not finished.matched_count:
            return False
        await asyncio.gather(
            *(
                self.announcement_claims.delete_one({"_id": f"{key}:{claimed}"})
                for claimed in range(1, epoch + 1)
            )
        )
        return True

    async def release_announcement(self, key: str, epoch: int) -> None:
        """Give the lease up (a clean shutdown): any instance may go on at once."""
        await self.announcements.update_one(
            {"_id": key, "lease_epoch": epoch}, {"$set": {"lease_until": None}}
        )


async def _publish_inserted(
    collection: AsyncCollection[Document],
    publisher: Publisher,
    documents: Sequence[Document],
    inserted: set[str],
) -> None:
    """Publish the outbox of freshly inserted documents, then mark them published."""
    entries = [
        (event_id, entry)
        for document in documents
        if document["_id"] in inserted
        for event_id, entry in document[OUTBOX].items()
    ]
    if not entries:
        return
    await publish_entries(publisher, entries)
    published = sorted(inserted)
    clear = {"$set": {OUTBOX: {}, OUTBOX_PENDING: False}}
    if len(published) > 50:  # one pass over the collection beats many round trips
        await collection.update_many({"_id": {"$in": published}}, clear)
    else:
        await asyncio.gather(
            *(collection.update_one({"_id": identifier}, clear) for identifier in published)
        )


def search_pattern(text: str) -> Document:
    return {"$regex": re.escape(text), "$options": "i"}
