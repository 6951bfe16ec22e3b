"""The practice export: one JSON document plus a text transcript per conversation, zipped."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pyzipper  # type: ignore[import-untyped]

from sotto_contracts.conversations import ExportResult
from sotto_conversations import domain
from sotto_conversations.domain import Thread, key_of


def _thread_record(thread: Thread) -> dict[str, Any]:
    return {
        "conversation_id": thread.conversation_id,
        "kind": thread.kind.value,
        "subject": thread.subject,
        "client_id": thread.client_id,
        "client_name": thread.client_name,
        "participants": thread.participant_keys,
        "assignee_id": thread.assignee_id,
        "archived": thread.archived,
        "created_at": thread.created_at.isoformat(),
        "last_activity_at": thread.last_activity_at.isoformat(),
        "request_details": thread.request_details,
        "messages": [
            {
                "message_id": m.posted_message_id,
                "sender": key_of(m.sender) if m.sender else None,
                "body": m.body,
                "sent_at": m.sent_at.isoformat(),
                "removed": m.removed,
                "automatic": m.automatic,
            }
            for m in thread.ordered_messages()
        ],
        "internal_notes": [
            {
                "note_id": n.note_id,
                "author_id": n.author_id,
                "body": n.body,
                "created_at": n.created_at.isoformat(),
            }
            for n in sorted(thread.notes.values(), key=lambda n: n.created_at)
        ],
        "tasks": [
            domain.task_view(thread, t).model_dump(mode="json")
            for t in sorted(thread.tasks.values(), key=lambda t: t.created_at)
        ],
    }


def build_archive(
    practice_id: str,
    threads: Sequence[Thread],
    names: dict[str, str],
    password: str | None,
    now: datetime,
) -> ExportResult:
    document = {
        "practice_id": practice_id,
        "exported_at": now.isoformat(),
        "conversations": [_thread_record(thread) for thread in threads],
    }
    buffer = io.BytesIO()
    encryption = pyzipper.WZ_AES if password else None
    with pyzipper.AESZipFile(
        buffer, "w", compression=pyzipper.ZIP_DEFLATED, encryption=encryption
    ) as archive:
        if password:
            archive.setpassword(password.encode())
        archive.writestr("export.json", json.dumps(document, indent=2))
        for thread in threads:
            archive.writestr(
                f"transcripts/{thread.conversation_id}.txt", domain.transcript_text(thread, names)
            )
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    return ExportResult(
        filename=f"sotto-export-{practice_id}-{stamp}.zip",
        content_type="application/zip",
        archive_base64=base64.b64encode(buffer.getvalue()).decode(),
    )
