"""Contracts: envelope rules, routing-key naming, and schema snapshots."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

import pytest
from pydantic import ValidationError

from sotto_contracts.audit import GetAccessLog
from sotto_contracts.base import Message
from sotto_contracts.common import NotificationKind, ParticipantKind, ParticipantRef
from sotto_contracts.notifier import SendNotification
from sotto_contracts.registry import MESSAGES
from sotto_contracts.topology import Topology
from tests.contracts.snapshots import SNAPSHOTS, current_schema, incompatibilities, snapshot_path

ROUTING_KEY = re.compile(r"^(practice|conversations|gateway|notifier|audit)\.[a-z_]+\.v\d+$")
ALL = sorted(MESSAGES)


@pytest.mark.parametrize("routing_key", ALL)
def test_routing_keys_follow_owner_name_version(routing_key: str) -> None:
    assert ROUTING_KEY.match(routing_key)
    kind = MESSAGES[routing_key].KIND
    assert (kind == "inbound") == routing_key.startswith("practice.")


@pytest.mark.parametrize("routing_key", ALL)
def test_every_message_has_the_envelope_and_is_frozen(routing_key: str) -> None:
    model = MESSAGES[routing_key]
    assert {"message_id", "occurred_at", "practice_id"} <= set(model.model_fields)
    assert model.model_config.get("frozen") is True
    assert model.model_config.get("extra") == "forbid"


@pytest.mark.parametrize("routing_key", ALL)
def test_schema_is_compatible_with_its_snapshot(routing_key: str) -> None:
    path = snapshot_path(routing_key)
    assert path.exists(), f"no snapshot for {routing_key}: python -m tests.contracts.snapshots"
    problems = incompatibilities(json.loads(path.read_text()), current_schema(routing_key))
    assert not problems, f"incompatible change to {routing_key}: {problems}; add a v2 instead"


def test_no_snapshot_lost_its_contract() -> None:
    orphaned = {p.stem for p in SNAPSHOTS.glob("*.json")} - set(MESSAGES)
    assert not orphaned, f"contracts removed (breaking): {orphaned}"


def test_the_compatibility_rule_catches_breaking_changes() -> None:
    old: dict[str, Any] = {
        "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
        "required": ["a"],
    }
    assert incompatibilities(old, old) == []
    added_optional = {**old, "properties": {**old["properties"], "c": {"type": "string"}}}
    assert incompatibilities(old, added_optional) == []
    assert incompatibilities(old, {"properties": {"a": {"type": "string"}}, "required": ["a"]})
    retyped = {"properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}
    assert incompatibilities(old, {**retyped, "required": ["a"]})
    assert incompatibilities(old, {**old, "required": ["a", "b"]})


def test_timestamps_must_be_timezone_aware() -> None:
    with pytest.raises(ValidationError):
        SendNotification(
            practice_id="p",
            occurred_at=datetime(2026, 1, 1),
            notification_id="n",
            kind=NotificationKind.SIGN_IN_LINK,
            recipient=ParticipantRef(kind=ParticipantKind.CLIENT, id="c"),
            to_address="a@example.org",
            practice_display_name="Calm Waters",
            link_url="https://portal.example.org/l/abc",
        )


def test_a_timestamp_that_leaves_the_calendar_in_utc_is_refused_as_invalid() -> None:
    with pytest.raises(ValidationError, match="out of range"):
        GetAccessLog(practice_id="p", until=datetime.fromisoformat("0001-01-01T01:02:03+23:08"))
    with pytest.raises(ValidationError, match="out of range"):
        GetAccessLog(practice_id="p", since=datetime.fromisoformat("9999-12-31T23:00:00-05:00"))


def test_notification_command_has_no_free_text_field() -> None:
    free_text = {"body", "message", "text", "content", "subject", "details", "note"}
    assert not free_text & set(SendNotification.model_fields)
    with pytest.raises(ValidationError):
        SendNotification.model_validate(
            {
                "practice_id": "p",
                "notification_id": "n",
                "kind": "sign_in_link",
                "recipient": {"kind": "client", "id": "c"},
                "to_address": "a@example.org",
                "practice_display_name": "Calm Waters",
                "link_url": "https://portal.example.org/l/abc",
                "body": "Your diagnosis is ...",
            }
        )


def test_topology_gives_every_work_queue_a_dead_letter_route_and_delivery_limit() -> None:
    topology = Topology(namespace="ns", delivery_limit=7)
    for routing_key, model in MESSAGES.items():
        queue = topology.queue_for("svc", model)
        assert queue.arguments["x-queue-type"] == "quorum"
        assert queue.arguments["x-dead-letter-exchange"] == "ns.dlx"
        assert queue.arguments["x-delivery-limit"] == 7
        assert queue.name == f"ns.svc.{routing_key}"
    notification = MESSAGES["notifier.send_notification.v1"].model_validate(_example_notification())
    assert isinstance(notification, Message)


def _example_notification() -> dict[str, object]:
    return {
        "practice_id": "p",
        "notification_id": "n",
        "kind": "sign_in_link",
        "recipient": {"kind": "client", "id": "c"},
        "to_address": "a@example.org",
        "practice_display_name": "Calm Waters",
        "link_url": "https://portal.example.org/l/abc",
    }
