"""Replies written as JSON once (`ok_json`) are the same `Reply` contract, and reading only a
reply's envelope (`result_json_of`) hands back the result untouched or the refusal."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sotto_contracts.base import Reply
from sotto_contracts.common import ParticipantKind, ParticipantRef
from sotto_contracts.conversations import ConversationKind, ConversationSummary
from sotto_kit.messaging import ProblemError, ok_json, refused, result_json_of

SUMMARY = ConversationSummary(
    conversation_id="c1",
    kind=ConversationKind.CLIENT,
    subject="Follow-up",
    client_id="client-1",
    participants=[ParticipantRef(kind=ParticipantKind.CLIENT, id="client-1")],
    assignee_id=None,
    archived=False,
    unread=True,
    last_activity_at=datetime(2026, 11, 23, 9, 30, tzinfo=UTC),
)


@pytest.mark.parametrize(
    ("result", "as_reply"),
    [
        (SUMMARY, SUMMARY.model_dump(mode="json")),
        ([SUMMARY, SUMMARY], [SUMMARY.model_dump(mode="json")] * 2),
        ([], []),
        (None, None),
    ],
)
def test_a_reply_written_once_reads_as_the_same_reply(
    result: ConversationSummary | list[ConversationSummary] | None,
    as_reply: dict[str, object] | list[object] | None,
) -> None:
    assert Reply.model_validate_json(ok_json(result)) == Reply(ok=True, result=as_reply)


def test_the_result_is_handed_back_as_the_service_wrote_it() -> None:
    written = ok_json(SUMMARY)
    result = result_json_of(written, "conversations.get_thread.v1")
    assert ConversationSummary.model_validate_json(result) == SUMMARY
    assert result == SUMMARY.model_dump_json().encode()


def test_a_refusal_raises_its_problem() -> None:
    reply = refused("not_found", "No such conversation.", 404).model_dump_json().encode()
    with pytest.raises(ProblemError) as raised:
        result_json_of(reply, "conversations.get_thread.v1")
    assert (raised.value.problem.code, raised.value.problem.status) == ("not_found", 404)


def test_a_reply_without_a_result_is_a_problem_not_null() -> None:
    with pytest.raises(ProblemError) as raised:
        result_json_of(ok_json(None), "conversations.get_thread.v1")
    assert raised.value.problem.code == "no_result"
    assert "conversations.get_thread.v1" in raised.value.problem.detail
