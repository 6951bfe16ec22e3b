"""Per-client transcripts and the complete practice export (optionally AES-encrypted)."""

from __future__ import annotations

import base64
import io
import json

import pytest
import pyzipper  # type: ignore[import-untyped]

from sotto_contracts.common import StaffRole
from sotto_contracts.conversations import (
    AddNote,
    ExportPractice,
    ExportResult,
    GetTranscript,
    MessageView,
    NoteView,
    OpenConversation,
    PostMessage,
    RemoveMessage,
    TextResult,
    ThreadView,
)
from tests.integration.conversations.conftest import PRACTICE, Harness, Team


async def conversation_with_history(harness: Harness, team: Team) -> None:
    await harness.add_client("c2", display_name="Other Client", primary_clinician_id="dr-other")
    for actor, conversation_id, client_id in (
        (team.primary, "conv-c1", "c1"),
        (team.other_clinician, "conv-c2", "c2"),
    ):
        await harness.ok(
            OpenConversation(
                practice_id=PRACTICE,
                actor=actor,
                conversation_id=conversation_id,
                subject="Plan",
                client_id=client_id,
                first_message=f"Welcome {client_id}",
            ),
            ThreadView,
        )
    await harness.ok(
        PostMessage(
            practice_id=PRACTICE,
            actor=team.primary,
            conversation_id="conv-c1",
            posted_message_id="oops",
            body="Wrong attachment",
        ),
        MessageView,
    )
    await harness.ok(
        RemoveMessage(
            practice_id=PRACTICE,
            actor=team.primary,
            conversation_id="conv-c1",
            posted_message_id="oops",
        ),
        MessageView,
    )
    await harness.ok(
        AddNote(
            practice_id=PRACTICE,
            actor=team.primary,
            conversation_id="conv-c1",
            note_id="n-1",
            body="Discussed in session",
        ),
        NoteView,
    )


async def test_transcript_marks_removed_messages_and_internal_notes(
    harness: Harness, team: Team
) -> None:
    await conversation_with_history(harness, team)
    transcript = await harness.ok(
        GetTranscript(practice_id=PRACTICE, actor=team.primary, client_id="c1"), TextResult
    )
    assert "Transcript for Alex Rivera" in transcript.text
    assert "Welcome c1" in transcript.text
    assert "[REMOVED]: Wrong attachment" in transcript.text
    assert "[INTERNAL NOTE] Staff dr-primary: Discussed in session" in transcript.text
    assert "Welcome c2" not in transcript.text
    for outsider in (team.stranger_clinician, team.client):
        problem = await harness.problem(
            GetTranscript(practice_id=PRACTICE, actor=outsider, client_id="c1")
        )
        assert problem.status in (403, 404)


def unzip(result: ExportResult, password: str | None = None) -> dict[str, str]:
    archive = pyzipper.AESZipFile(io.BytesIO(base64.b64decode(result.archive_base64)))
    if password:
        archive.setpassword(password.encode())
    return {name: archive.read(name).decode() for name in archive.namelist()}


async def test_export_for_owners_with_permission_all_or_one_clinician(
    harness: Harness, team: Team
) -> None:
    await conversation_with_history(harness, team)
    result = await harness.ok(ExportPractice(practice_id=PRACTICE, actor=team.owner), ExportResult)
    assert result.content_type == "application/zip"
    files = unzip(result)
    exported = json.loads(files["export.json"])
    by_id = {c["conversation_id"]: c for c in exported["conversations"]}
    assert set(by_id) == {"conv-c1", "conv-c2"}
    removed = [m for m in by_id["conv-c1"]["messages"] if m["message_id"] == "oops"]
    assert removed[0]["removed"] is True
    assert removed[0]["body"] == "Wrong attachment"
    assert by_id["conv-c1"]["internal_notes"][0]["body"] == "Discussed in session"
    assert "[REMOVED]" in files["transcripts/conv-c1.txt"]

    one_clinician = await harness.ok(
        ExportPractice(practice_id=PRACTICE, actor=team.owner, clinician_id="dr-primary"),
        ExportResult,
    )
    assert set(unzip(one_clinician)) == {"export.json", "transcripts/conv-c1.txt"}

    protected = await harness.ok(
        ExportPractice(practice_id=PRACTICE, actor=team.owner, password="correct horse"),
        ExportResult,
    )
    with pytest.raises(RuntimeError):
        unzip(protected)
    assert "Discussed in session" in unzip(protected, "correct horse")["export.json"]

    for refused in (team.manager, team.primary):
        problem = await harness.problem(ExportPractice(practice_id=PRACTICE, actor=refused))
        assert (problem.code, problem.status) == ("export_not_permitted", 403)
    await harness.add_staff("manager", StaffRole.PRACTICE_MANAGER, can_export=True)
    await harness.ok(ExportPractice(practice_id=PRACTICE, actor=team.manager), ExportResult)
