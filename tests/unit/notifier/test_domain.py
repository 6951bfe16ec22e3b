"""Outcomes, retries and what a delivery record may keep."""

from __future__ import annotations

import pytest

from sotto_notifier.config import NotifierSettings
from sotto_notifier.domain import (
    Ambiguous,
    Deferred,
    Delivered,
    Failed,
    SmtpOutcome,
    judge,
    recipient_fingerprint,
    redact_reply,
    relay_retry_delay,
    smtp_address,
)

DELAYS = [1, 5, 30, 120]


def test_temporary_failures_wait_longer_each_time_then_give_up() -> None:
    temporary = SmtpOutcome(status="temporary", code=451, reply="4.3.0 try later")
    assert [judge(temporary, attempt, DELAYS) for attempt in range(1, 6)] == [
        Deferred(1),
        Deferred(5),
        Deferred(30),
        Deferred(120),
        Failed(),
    ]


def test_accepted_is_delivered_and_permanent_fails_at_once() -> None:
    assert judge(SmtpOutcome("accepted", 250, "OK"), 1, DELAYS) == Delivered()
    assert judge(SmtpOutcome("permanent", 550, "no such user"), 1, DELAYS) == Failed()


def test_a_message_handed_over_without_a_final_reply_is_ambiguous_at_any_attempt() -> None:
    unknown = SmtpOutcome("unknown", None, "SMTPReadTimeoutError")
    assert [judge(unknown, attempt, DELAYS) for attempt in (1, 5)] == [Ambiguous(), Ambiguous()]


def test_replies_lose_anything_address_like() -> None:
    reply = "5.1.1 <jane.doe@example.org>: mailbox unavailable for jane.doe@example.org"
    redacted = redact_reply(reply)
    assert "jane" not in redacted
    assert "mailbox unavailable" in redacted
    assert len(redact_reply("x " * 500)) <= 200


def test_fingerprint_is_keyed_and_absent_without_a_key() -> None:
    assert recipient_fingerprint("Jane@Example.org", None) is None
    first = recipient_fingerprint("Jane@Example.org", b"k1")
    assert first == recipient_fingerprint("jane@example.org ", b"k1")
    assert first != recipient_fingerprint("jane@example.org", b"k2")
    assert first is not None
    assert "jane" not in first


def test_smtp_host_is_read_unprefixed_and_tls_can_be_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SMTP_HOST", "relay.example.org")
    monkeypatch.setenv("SMTP_PORT", "2525")
    settings = NotifierSettings()
    assert (settings.smtp_host, settings.smtp_port) == ("relay.example.org", 2525)
    monkeypatch.setenv("NOTIFIER_SMTP_HOST", "other.example.org")
    assert NotifierSettings().smtp_host == "other.example.org"
    monkeypatch.setenv("NOTIFIER_REQUIRE_TLS", "true")
    monkeypatch.setenv("NOTIFIER_SMTP_TLS", "none")
    with pytest.raises(ValueError, match="require_tls"):
        NotifierSettings()


def test_a_failing_relay_is_tried_less_often_the_longer_it_fails() -> None:
    waits = [relay_retry_delay(failing_for, DELAYS) for failing_for in (0, 1, 3, 29, 31, 9999)]
    assert waits == [1, 1, 5, 30, 120, 120]


@pytest.mark.parametrize(
    ("address", "sent_as"),
    [
        ("client@example.org", "client@example.org"),
        ("user@bücher.de", "user@xn--bcher-kva.de"),
        ("jöhn@example.com", None),
    ],
)
def test_smtp_carries_the_domain_in_ascii_and_no_mailbox_name_that_is_not(
    address: str, sent_as: str | None
) -> None:
    assert smtp_address(address) == sent_as
