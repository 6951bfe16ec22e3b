"""The template catalogue: every template renders, and nothing off its allowlist can reach it."""

from __future__ import annotations

import dataclasses
import email
import email.policy
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from sotto_contracts.common import NotificationKind, ParticipantKind, ParticipantRef
from sotto_contracts.notifier import SendNotification
from sotto_notifier.composing import HeaderInjectionError, compose_email
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


def _composed(
    command: SendNotification, header_changes: dict[str, str] | None = None
) -> tuple[bytes, EmailMessage]:
    """The bytes handed to SMTP, and how a mail client reads them."""
    draft = draft_email(command, "Secure portal")
    if header_changes:
        draft = dataclasses.replace(
            draft,
            subject=header_changes.get("subject", draft.subject),
            sender_name=header_changes.get("sender_name", draft.sender_name),
            to_address=header_changes.get("to_address", draft.to_address),
        )
    raw = compose_email(
        draft,
        CATALOGUE.render(draft.template, draft.fields),
        from_address="no-reply@sotto.example",
        notification_id=command.notification_id,
    )
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return raw, parsed


def test_discreet_email_names_neither_practice_nor_kind() -> None:
    raw, parsed = _composed(notification(kind=NotificationKind.BILLING_NOTICE, discreet=True))
    assert b"Lakeside" not in raw
    assert b"billing" not in raw.lower()
    assert parsed["Subject"] == "You have a new notification"
    assert parsed["From"].addresses[0].display_name == "Secure portal"


def test_email_has_one_recipient_header_and_no_copies() -> None:
    _, parsed = _composed(notification())
    assert parsed.get_all("To") == ["client@example.org"]
    assert parsed.get_all("Cc") is None
    assert parsed.get_all("Bcc") is None


def test_email_reads_back_as_sent_with_non_ascii_names() -> None:
    _, parsed = _composed(notification(practice_display_name="Clínica Zoë (Nord)"))
    assert parsed["From"].addresses[0].display_name == "Clínica Zoë (Nord)"
    assert parsed["From"].addresses[0].addr_spec == "no-reply@sotto.example"
    assert parsed["Subject"].endswith("from Clínica Zoë (Nord)")
    assert parsed["Message-ID"] == _composed(notification())[1]["Message-ID"]
    plain, html = parsed.get_body(("plain",)), parsed.get_body(("html",))
    assert plain is not None
    assert html is not None
    assert LINK in plain.get_content()
    assert "Clínica Zoë" in plain.get_content()
    assert LINK in html.get_content()


@pytest.mark.parametrize("field", ["subject", "sender_name", "to_address"])
def test_a_line_break_in_a_header_value_is_refused(field: str) -> None:
    with pytest.raises(HeaderInjectionError):
        _composed(notification(), {field: "Hello\r\nBcc: someone@example.org"})


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
