"""Whatever the upstream message said, none of it can be found in the email that goes out."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from sotto_contracts.common import NotificationKind, ParticipantKind, ParticipantRef
from sotto_contracts.notifier import SendNotification
from sotto_notifier.config import NotifierSettings
from sotto_notifier.main import create_app
from tests.integration.notifier.support import PRACTICE_NAME, address
from tests.support.amqp import Amqp
from tests.support.mail import MailCatcher
from tests.support.serving import serve
from tests.support.waiting import eventually


@dataclass(frozen=True)
class UpstreamMessage:
    """What conversations and the gateway know when a notice is due: content and ids."""

    conversation_id: str
    client_id: str
    body: str
    client_name: str
    diagnosis: str


sensitive_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=12, max_size=80
).filter(lambda text: text.strip() == text and len(set(text)) > 4)
diagnosis = st.builds(
    lambda code, name: f"{code} {name}",
    st.from_regex(r"[A-Z][0-9]{2}\.[0-9]", fullmatch=True),
    st.sampled_from(["Major depressive disorder", "Panic disorder", "Bipolar II disorder"]),
)
upstream = st.builds(
    UpstreamMessage,
    conversation_id=st.uuids().map(lambda value: f"conv-{value.hex[:12]}"),
    client_id=st.uuids().map(lambda value: f"c-{value.hex[:12]}"),
    body=sensitive_text,
    client_name=sensitive_text,
    diagnosis=diagnosis,
)


def notice_for(message: UpstreamMessage) -> tuple[SendNotification, list[str]]:
    """Build the command the way the gateway must, then try to smuggle content into it."""
    base = {
        "practice_id": "practice-1",
        "notification_id": f"n-{uuid.uuid4().hex}",
        "kind": NotificationKind.SECURE_MESSAGE_WAITING,
        "recipient": ParticipantRef(kind=ParticipantKind.CLIENT, id=message.client_id),
        "to_address": address("prop"),
        "practice_display_name": PRACTICE_NAME,
        "link_url": f"https://portal.example.org/l/{uuid.uuid4().hex}",
        "conversation_id": message.conversation_id,
    }
    secrets = [message.body, message.client_name, message.diagnosis]
    for field, value in zip(("body", "client_name", "diagnosis"), secrets, strict=True):
        with pytest.raises(ValidationError):
            SendNotification.model_validate({**base, field: value})
    return SendNotification.model_validate(base), secrets


@settings(
    max_examples=3,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(messages=st.lists(upstream, min_size=8, max_size=8))
async def test_no_upstream_content_reaches_any_email(
    messages: list[UpstreamMessage],
    notifier_settings: Callable[..., NotifierSettings],
    amqp: Amqp,
    mail: MailCatcher,
) -> None:
    notices = [notice_for(message) for message in messages]
    async with serve(create_app(notifier_settings())):
        await asyncio.gather(*(amqp.publish(command) for command, _ in notices))
        for command, secrets in notices:
            (caught,) = await eventually(partial(mail.to_address, command.to_address), timeout=60)
            assert caught.envelope_recipients == [command.to_address]
            raw = caught.all_text
            for secret in secrets:
                assert secret not in raw
