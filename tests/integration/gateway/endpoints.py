"""Every endpoint of the gateway's staff and client APIs (docs/openapi/gateway.json), with
what calling it needs, for the happy-path, authentication and authorization tests."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Needs(StrEnum):
    """What a staff caller needs beyond being on the practice's team."""

    NOTHING = "nothing"  # about the caller or the practice only (me, settings, own inbox)
    THREAD = "thread"  # may see the conversation (and its client)
    CLIENT = "client"  # may access the client
    OTHERS = "others"  # may see others' conversations
    MANAGER = "manager"  # owner or practice manager
    OWNER = "owner"  # the practice owner (audit log)
    ANNOUNCER = "announcer"  # sent the announcement, or owner or practice manager
    EXPORT = "export"  # export permission


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    body: dict[str, Any] | None
    needs: Needs

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"


CONVERSATION = "/api/staff/conversations/conv1"
ANNOUNCEMENT_ID = "ann1"  # clin1's, to their own clients

STAFF_ENDPOINTS: list[Endpoint] = [
    Endpoint("GET", "/api/staff/me", None, Needs.NOTHING),
    Endpoint("GET", "/api/staff/settings", None, Needs.NOTHING),
    Endpoint("GET", "/api/staff/team", None, Needs.NOTHING),
    Endpoint("GET", "/api/staff/inbox", None, Needs.NOTHING),
    Endpoint("GET", "/api/staff/inbox?view=others&search=Alex", None, Needs.OTHERS),
    Endpoint("GET", "/api/staff/inbox?view=all&search=Alex", None, Needs.OTHERS),
    Endpoint(
        "POST",
        "/api/staff/conversations",
        {"subject": "Hello", "client_id": "c1", "first_message": "hello there"},
        Needs.CLIENT,
    ),
    Endpoint("GET", CONVERSATION, None, Needs.THREAD),
    Endpoint("POST", f"{CONVERSATION}/messages", {"body": "Hi there"}, Needs.THREAD),
    Endpoint("POST", f"{CONVERSATION}/assign", {"assignee_id": "clin1"}, Needs.THREAD),
    Endpoint("POST", f"{CONVERSATION}/archive", None, Needs.THREAD),
    Endpoint("POST", f"{CONVERSATION}/unarchive", None, Needs.THREAD),
    Endpoint("POST", f"{CONVERSATION}/unread", None, Needs.THREAD),
    Endpoint("POST", f"{CONVERSATION}/notes", {"body": "a note"}, Needs.THREAD),
    Endpoint("POST", f"{CONVERSATION}/tasks", {"title": "a task"}, Needs.THREAD),
    Endpoint("PATCH", "/api/staff/tasks/t1", {"done": True}, Needs.THREAD),
    Endpoint("DELETE", f"{CONVERSATION}/messages/m1", None, Needs.THREAD),
    Endpoint("POST", f"{CONVERSATION}/copy", {"message_ids": ["m1"]}, Needs.THREAD),
    Endpoint("GET", "/api/staff/clients/c1/transcript", None, Needs.CLIENT),
    Endpoint("PATCH", "/api/staff/settings", {"banner": "Closed Friday"}, Needs.MANAGER),
    Endpoint("PUT", "/api/staff/clients/c1/messaging", {"enabled": False}, Needs.MANAGER),
    Endpoint("PUT", "/api/staff/team/clin1/messaging", {"enabled": False}, Needs.MANAGER),
    Endpoint(
        "POST", "/api/staff/announcements", {"subject": "Hi", "body": "All well?"}, Needs.MANAGER
    ),
    Endpoint("GET", f"/api/staff/announcements/{ANNOUNCEMENT_ID}", None, Needs.ANNOUNCER),
    Endpoint("GET", "/api/staff/audit/deliveries", None, Needs.OWNER),
    Endpoint("GET", "/api/staff/audit/access", None, Needs.OWNER),
    Endpoint("POST", "/api/staff/exports", {}, Needs.EXPORT),
]

CLIENT_CONVERSATION = "/api/client/conversations/conv1"

CLIENT_ENDPOINTS: list[Endpoint] = [
    Endpoint("GET", "/api/client/conversations", None, Needs.NOTHING),
    Endpoint("GET", CLIENT_CONVERSATION, None, Needs.THREAD),
    Endpoint("POST", f"{CLIENT_CONVERSATION}/messages", {"body": "let me in"}, Needs.THREAD),
]
