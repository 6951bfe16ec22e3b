"""The template catalogue: every template renders, and nothing off its allowlist can reach it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from sotto_contracts.common import NotificationKind, ParticipantKind, ParticipantRef
from sotto_contracts.notifier import SendNotification
from sotto_notifier.composing import compose_email
from sotto_notifier.domain import DISCREET_TEMPLATE, TEMPLATE_FIELDS, draft_email
from sotto_notifier.rendering import FORMATS, TemplateCatalogue, TemplateFieldError

CATALOGUE = TemplateCatalogue()
LINK = "https://portal.example.org/l/abc123"


def notification(**overrides: object) -> SendNotification:
    values: dict[str, object] = {
        "practice_id": "p1",
        "notification_id": "n1",
        "kind": NotificationKind.SECURE_MESSAGE_WAITING,
        "recipient": ParticipantRef(kind=ParticipantKind.CLIENT, id="c1"),
        "to_address": "client@example.org",
        "practice_display_name": "Lakeside Counseling",
        "link_url": LINK,
        **overrides,
    }
    return SendNotification.model_validate(values)


def test_there_is_one_template_per_kind_plus_the_discreet_one() -> None:
    assert CATALOGUE.templates == {kind.value for kind in NotificationKind} | {DISCREET_TEMPLATE}


@pytest.mark.parametrize("template", sorted(TEMPLATE_FIELDS))
@pytest.mark.parametrize("file_format", FORMATS)
def test_templates_reference_exactly_their_allowlist(template: str, file_format: str) -> None:
    assert CATALOGUE.referenced_fields(f"{template}.{file_format}.j2") == TEMPLATE_FIELDS[template]


@pytest.mark.parametrize("kind", list(NotificationKind))
def test_every_kind_renders_a_notice_with_the_link(kind: NotificationKind) -> None:
    draft = draft_email(notification(kind=kind), "Secure portal")
    body = CATALOGUE.render(draft.template, draft.fields)
    assert LINK in body.text
    assert f'href="{LINK}"' in body.html
    assert "Lakeside Counseling" in body.text


def test_renderer_refuses_fields_off_the_allowlist() -> None:
    with pytest.raises(TemplateFieldError):
        CATALOGUE.render(
            "secure_message_waiting",
            {"from_name": "A", "link_url": LINK, "body": "I feel worse this week"},
        )
    with pytest.raises(TemplateFieldError):
        CATALOGUE.render("secure_message_waiting", {"link_url": LINK})
    with pytest.raises(TemplateFieldError):
        CATALOGUE.render("no_such_template", {})


def test_a_template_reading_an_unlisted_field_is_refused_at_start() -> None:
    with pytest.raises(TemplateFieldError):
        TemplateCatalogue({**TEMPLATE_FIELDS, "sign_in_link": frozenset({"link_url"})})


def test_html_is_escaped() -> None:
    body = CATALOGUE.render("secure_message_waiting", {"from_name": "<b>x</b>", "link_url": LINK})
    assert "<b>x</b>" not in body.html
    assert "&lt;b&gt;" in body.html


def test_discreet_email_names_neither_practice_nor_kind() -> None:
    command = notification(kind=NotificationKind.BILLING_NOTICE, discreet=True)
    draft = draft_email(command, "Secure portal")
    email = compose_email(
        draft,
        CATALOGUE.render(draft.template, draft.fields),
        from_address="a@b.c",
        notification_id="n1",
    )
    raw = email.as_string()
    assert "Lakeside" not in raw
    assert "billing" not in raw.lower()
    assert email["Subject"] == "You have a new notification"
    assert email["From"].addresses[0].display_name == "Secure portal"


def test_email_has_one_recipient_header_and_no_copies() -> None:
    command = notification()
    draft = draft_email(command, "Secure portal")
    email = compose_email(
        draft,
        CATALOGUE.render(draft.template, draft.fields),
        from_address="a@b.c",
        notification_id="n1",
    )
    assert email.get_all("To") == ["client@example.org"]
    assert email.get_all("Cc") is None
    assert email.get_all("Bcc") is None


CONTENT_FIELDS = ("body", "message", "note", "diagnosis", "amount", "appointment_at", "attachment")

diagnosis_like = st.builds(
    lambda code, text: f"{code}: {text}",
    st.from_regex(r"[A-Z][0-9]{2}\.[0-9]{1,2}", fullmatch=True),
    st.sampled_from(["Major depressive disorder", "Generalized anxiety disorder", "PTSD, chronic"]),
)
body_like = st.builds(
    lambda start, middle, end: f"{start}\n{middle}{end}",
    st.text(min_size=1, max_size=60),
    st.text(min_size=1, max_size=200),
    st.sampled_from(["?", "!", ".", ":"]),
)


@settings(max_examples=200)
@given(field=st.sampled_from(CONTENT_FIELDS), content=st.one_of(diagnosis_like, body_like))
def test_no_content_field_can_be_expressed(field: str, content: str) -> None:
    with pytest.raises(ValidationError):
        notification(**{field: content})


@settings(max_examples=200)
@given(content=st.one_of(diagnosis_like, body_like))
def test_display_name_refuses_message_and_diagnosis_text(content: str) -> None:
    with pytest.raises(ValidationError):
        notification(practice_display_name=content)
