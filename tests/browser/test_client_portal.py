"""A client reads and answers a secure message in a real browser; portal sign-in; quick exit;
a new message to a chosen team member; a draft survives the session ending; one address
switches between the records it may act as."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect
from pymongo import AsyncMongoClient

from sotto_contracts.common import StaffRole
from sotto_contracts.inbound import ClientUpserted, StaffUpserted
from tests.browser.conftest import (
    CLIENT_BIRTHDAY,
    CLINICIAN,
    CLINICIAN_NAME,
    DESKTOP,
    OUTPUT,
    Practice,
    link_from_mail,
)
from tests.support.amqp import Amqp
from tests.support.mail import MailCatcher
from tests.support.waiting import eventually

pytestmark = pytest.mark.browser

NewPage = Callable[..., Awaitable[Page]]
Screenshot = Callable[[Page, str], Awaitable[Path]]
SECURE_LINK = r"http://127\.0\.0\.1:\d+/l/[A-Za-z0-9_\-]+"
SIGN_IN_LINK = r"http://127\.0\.0\.1:\d+/api/portal/sign-in/[A-Za-z0-9_\-]+"


async def test_client_verifies_reads_and_replies_and_staff_sees_the_reply(
    practice: Practice,
    mail: MailCatcher,
    new_page: NewPage,
    screenshot: Screenshot,
) -> None:
    await practice.send_secure_message("conv-1", "Next session", "See you Tuesday at 10.")
    link = await link_from_mail(mail, practice.client_email, SECURE_LINK)

    client = await new_page()
    await client.goto(link)
    await expect(client.get_by_role("heading", name="Confirm it is you")).to_be_visible()
    await expect(client.get_by_role("heading", name="Calm Waters")).to_be_visible()
    await client.get_by_label("Date of birth").fill("1991-01-01")
    await client.get_by_role("button", name="Continue").click()
    await expect(client.get_by_role("status")).to_have_text(
        "The details did not match. You have 4 attempts left."
    )
    await expect(client.get_by_label("Date of birth")).to_be_focused()
    await screenshot(client, "phone-wrong-answer")

    await client.get_by_label("Date of birth").fill(CLIENT_BIRTHDAY.isoformat())
    await client.get_by_role("button", name="Continue").click()
    await expect(client.get_by_role("heading", name="Next session")).to_be_visible()
    messages = client.get_by_role("list", name="Messages")
    await expect(messages).to_contain_text("See you Tuesday at 10.")
    await expect(client.get_by_text("We reply within two working days.")).to_be_visible()
    await expect(client.get_by_text("Please do not include urgent requests here.")).to_be_visible()
    cookies = {cookie["name"]: cookie for cookie in await client.context.cookies()}
    assert cookies["sotto_session"]["secure"] is True
    assert cookies["sotto_session"]["httpOnly"] is True

    reply = client.get_by_label("Your message")
    await reply.fill("Works for me")
    await expect(client.get_by_text("12 of")).to_be_visible()
    await screenshot(client, "phone-conversation")
    await client.get_by_role("button", name="Send reply").click()
    await expect(client.get_by_role("status")).to_have_text("Your reply was sent.")
    await expect(messages.get_by_role("listitem").last).to_contain_text("Works for me")
    await expect(messages.get_by_role("listitem").last).to_contain_text("You")

    staff = await new_page(DESKTOP)
    await staff.goto(f"{practice.base_url}/staff")
    await staff.get_by_label("Staff token").fill(practice.token("staff-clinician"))
    await staff.get_by_role("button", name="Sign in").click()
    await expect(staff.get_by_text("Signed in as Dr. Jordan Lee")).to_be_visible()
    await staff.get_by_role("button", name="Next session").click()
    thread = staff.get_by_role("list", name="Messages")
    await expect(thread).to_contain_text("Works for me")
    await expect(thread).to_contain_text("Alex Rivera")
    await screenshot(staff, "desktop-staff-thread")


async def test_portal_sign_in_answers_alike_and_its_link_signs_the_client_in(
    practice: Practice,
    mail: MailCatcher,
    new_page: NewPage,
    screenshot: Screenshot,
) -> None:
    await practice.send_secure_message("conv-2", "Forms to fill", "Please bring the forms.")
    page = await new_page()
    await page.goto(f"{practice.base_url}/o/{practice.slug}/messages")
    await expect(page.get_by_role("heading", name="Sign in to your messages")).to_be_focused()
    await page.keyboard.press("Tab")
    await expect(page.get_by_label("Email address")).to_be_focused()
    await page.keyboard.type(f"nobody-{practice.slug}@example.org")
    await page.keyboard.press("Enter")
    status = page.get_by_role("status")
    await expect(status).to_contain_text("If this address belongs to someone at this practice")
    unknown_answer = await status.text_content()

    await page.get_by_label("Email address").fill(practice.client_email)
    await page.get_by_role("button", name="Email me a sign-in link").click()
    await expect(status).to_have_text(unknown_answer or "")
    await screenshot(page, "phone-sign-in-requested")

    sign_in = await link_from_mail(mail, practice.client_email, SIGN_IN_LINK)
    await page.goto(sign_in)
    await page.get_by_role("button", name="Continue to my messages").click()
    await expect(page).to_have_url(f"{practice.base_url}/o/{practice.slug}/messages")
    await expect(page.get_by_role("heading", name="Your conversations")).to_be_visible()
    await page.get_by_role("button", name="Forms to fill").click()
    await expect(page.get_by_role("list", name="Messages")).to_contain_text("Please bring the")
    await screenshot(page, "phone-portal-conversation")
    await page.get_by_role("button", name="Back to conversations").click()
    await expect(page.get_by_role("heading", name="Your conversations")).to_be_visible()
    await page.set_viewport_size(DESKTOP)  # type: ignore[arg-type]
    await screenshot(page, "desktop-portal-list")


async def test_quick_exit_leaves_for_a_neutral_page_and_ends_the_session(
    practice: Practice,
    mail: MailCatcher,
    new_page: NewPage,
    screenshot: Screenshot,
) -> None:
    await practice.configure(
        away_message_enabled=True, away_message="I am away until Monday 3 March."
    )
    await practice.send_secure_message("conv-3", "Check-in", "How are you doing this week?")
    link = await link_from_mail(mail, practice.client_email, SECURE_LINK)
    page = await new_page()
    await page.goto(link)
    await page.get_by_label("Date of birth").fill(CLIENT_BIRTHDAY.isoformat())
    await page.get_by_role("button", name="Continue").click()
    await expect(page.get_by_role("heading", name="Check-in")).to_be_visible()
    await expect(page.get_by_role("note").filter(has_text="away until Monday")).to_be_visible()
    await screenshot(page, "phone-away-banner")
    assert (await page.request.get(f"{practice.base_url}/api/client/session")).status == 200

    await page.get_by_role("button", name="Quick exit").click()
    await expect(page).to_have_url(f"{practice.base_url}/exit")
    await expect(page.get_by_role("heading", name="Local weather")).to_be_visible()
    assert "Check-in" not in await page.content()
    assert (await page.request.get(f"{practice.base_url}/api/client/session")).status == 401
    await screenshot(page, "phone-exit")

    await page.goto(f"{practice.base_url}/o/{practice.slug}/messages")
    await expect(page.get_by_role("heading", name="Sign in to your messages")).to_be_visible()
    assert OUTPUT.exists()


async def test_a_link_locks_after_five_wrong_answers_and_offers_sign_in(
    practice: Practice,
    mail: MailCatcher,
    new_page: NewPage,
    screenshot: Screenshot,
) -> None:
    await practice.send_secure_message("conv-4", "Results", "Your results are in.")
    link = await link_from_mail(mail, practice.client_email, SECURE_LINK)
    page = await new_page()
    await page.goto(link)
    for attempts_left in (4, 3, 2, 1):
        await page.get_by_label("Date of birth").fill("1991-01-01")
        await page.get_by_role("button", name="Continue").click()
        plural = "attempt" if attempts_left == 1 else "attempts"
        await expect(page.get_by_role("status")).to_have_text(
            f"The details did not match. You have {attempts_left} {plural} left."
        )
    await page.get_by_label("Date of birth").fill("1991-01-01")
    await page.get_by_role("button", name="Continue").click()
    await expect(page.get_by_role("heading", name="This link is locked")).to_be_focused()
    sign_in = page.get_by_role("link", name="Sign in from the portal page")
    await expect(sign_in).to_have_attribute(
        "href", f"{practice.base_url}/o/{practice.slug}/messages"
    )
    await screenshot(page, "phone-locked")

    await page.reload()
    await expect(page.get_by_role("heading", name="This link is locked")).to_be_visible()
    await sign_in.click()
    await expect(page.get_by_role("heading", name="Sign in to your messages")).to_be_visible()


async def idle_out(mongo: AsyncMongoClient[Any], practice: Practice) -> None:
    """Let every session of the practice sit idle past the timeout (15 minutes by default)."""
    sessions = mongo[f"{practice.practice_id}_gateway"]["sessions"]
    idle_since = datetime.now(UTC) - timedelta(minutes=30)
    await sessions.update_many({"ended": False}, {"$set": {"last_seen_at": idle_since}})


async def signed_in_to_portal(page: Page, practice: Practice, mail: MailCatcher) -> None:
    await page.goto(f"{practice.base_url}/o/{practice.slug}/messages")
    await page.get_by_label("Email address").fill(practice.client_email)
    await page.get_by_role("button", name="Email me a sign-in link").click()
    await expect(page.get_by_role("status")).to_contain_text("If this address belongs")
    await page.goto(await link_from_mail(mail, practice.client_email, SIGN_IN_LINK))
    await page.get_by_role("button", name="Continue to my messages").click()


async def test_a_client_without_conversations_writes_to_a_team_member_they_choose(
    practice: Practice,
    amqp: Amqp,
    mail: MailCatcher,
    mongo: AsyncMongoClient[Any],
    new_page: NewPage,
    screenshot: Screenshot,
) -> None:
    for staff_id, name, role in (
        ("staff-biller", "Casey Billing", StaffRole.BILLER),
        ("staff-other-clinician", "Dr. Other", StaffRole.CLINICIAN),
    ):
        await amqp.publish(
            StaffUpserted(
                practice_id=practice.practice_id,
                staff_id=staff_id,
                display_name=name,
                email=f"{staff_id}@{practice.slug}.example.org",
                roles=[role],
            )
        )
    async with practice.staff("staff-biller") as biller:

        async def inbox_status() -> int:
            # The gateway lets the biller in and conversations answers: both know them.
            return (await biller.get("/api/staff/inbox")).status_code

        await eventually(inbox_status, until=lambda status: status == 200, what="biller projected")

    page = await new_page()
    await signed_in_to_portal(page, practice, mail)
    await expect(page.get_by_role("heading", name="Your conversations")).to_be_visible()
    await expect(page.get_by_text("You have no conversations yet.")).to_be_visible()
    await page.get_by_role("button", name="New message").click()
    await expect(page.get_by_role("heading", name="New message")).to_be_focused()
    to = page.get_by_label("To", exact=True)
    await expect(to.locator("option")).to_have_text(
        [f"{CLINICIAN_NAME} (your clinician)", "Casey Billing (billing)"]
    )
    await expect(to).to_have_value("staff-clinician")
    await expect(page.get_by_text("We reply within two working days.")).to_be_visible()
    await expect(page.get_by_text("Please do not include urgent requests here.")).to_be_visible()
    await expect(page.get_by_text("0 of 5000 characters")).to_be_visible()
    await screenshot(page, "phone-new-message")

    await to.select_option("staff-biller")
    await page.get_by_label("Subject").fill("My invoice")
    await page.get_by_label("Your message").fill("Is the March session billed twice?")
    await page.get_by_role("button", name="Send message").click()
    await expect(page.get_by_role("heading", name="My invoice")).to_be_visible()
    await expect(page.get_by_role("status")).to_have_text("Your message was sent.")
    messages = page.get_by_role("list", name="Messages")
    await expect(messages).to_contain_text("Is the March session billed twice?")
    async with practice.staff("staff-biller") as biller:
        inbox = (await biller.get("/api/staff/inbox")).json()
        assert [item["subject"] for item in inbox["items"]] == ["My invoice"]

    await page.get_by_role("button", name="Back to conversations").click()
    await page.get_by_role("button", name="New message").click()
    await page.get_by_label("Subject").fill("Next week")
    await page.get_by_label("Your message").fill("Could we move Tuesday to Thursday?")
    await idle_out(mongo, practice)
    await page.get_by_role("button", name="Send message").click()
    await expect(page.get_by_role("heading", name="Please sign in again")).to_be_focused()
    await expect(page.get_by_text("Your session has ended. Sign in again")).to_be_visible()
    await expect(page.get_by_label("Your message")).to_have_value(
        "Could we move Tuesday to Thursday?"
    )
    await expect(page.get_by_label("Subject")).to_have_value("Next week")
    await expect(page.get_by_role("link", name="Sign in from the portal page")).to_have_attribute(
        "href", f"/o/{practice.slug}/messages"
    )
    await screenshot(page, "phone-new-message-session-ended")


async def test_a_reply_written_as_the_session_timed_out_stays_on_the_page(
    practice: Practice,
    mail: MailCatcher,
    mongo: AsyncMongoClient[Any],
    new_page: NewPage,
    screenshot: Screenshot,
) -> None:
    await practice.send_secure_message("conv-5", "Homework", "Try the breathing exercise.")
    link = await link_from_mail(mail, practice.client_email, SECURE_LINK)
    page = await new_page()
    await page.goto(link)
    await page.get_by_label("Date of birth").fill(CLIENT_BIRTHDAY.isoformat())
    await page.get_by_role("button", name="Continue").click()
    await expect(page.get_by_role("heading", name="Homework")).to_be_visible()
    draft = "I tried it twice.\nIt helped on Monday, less on Wednesday."
    await page.get_by_label("Your message").fill(draft)

    await idle_out(mongo, practice)
    await page.get_by_role("button", name="Send reply").click()
    await expect(page.get_by_role("heading", name="Please sign in again")).to_be_focused()
    await expect(page.get_by_label("Your message")).to_have_value(draft)
    await expect(page.get_by_role("button", name="Send reply")).to_have_count(0)
    # the practice's messages go with the session; only the client's own text stays
    await expect(page.get_by_text("Try the breathing exercise.")).to_have_count(0)
    await expect(page.get_by_role("link", name="Sign in from the portal page")).to_be_visible()
    await expect(page.get_by_role("status")).to_have_text(
        "Your message was not sent: your session has ended."
    )
    await screenshot(page, "phone-reply-session-ended")
    await page.get_by_role("button", name="Copy my message").click()
    await expect(page.get_by_role("status")).to_contain_text("Your message is")
    await expect(page.get_by_label("Your message")).to_be_focused()
    sessions = mongo[f"{practice.practice_id}_gateway"]["sessions"]
    ended = await sessions.find_one({"ended": True})
    assert ended is not None
    assert ended["end_reason"] == "idle_timeout"
    storage = await page.evaluate(
        "() => JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)])"
    )
    assert "breathing" not in storage
    assert "tried it twice" not in storage
    assert "tried" not in page.url


async def test_a_parent_with_one_address_for_two_clients_switches_between_them(
    practice: Practice,
    amqp: Amqp,
    mail: MailCatcher,
    new_page: NewPage,
    screenshot: Screenshot,
) -> None:
    """Alex's address is also on file for Jamie, a child client: after one sign-in, the
    portal offers both records and shows each one's conversations alone."""
    await amqp.publish(
        ClientUpserted(
            practice_id=practice.practice_id,
            client_id="client-jamie",
            display_name="Jamie Rivera",
            email=practice.client_email,
            primary_clinician_id=CLINICIAN,
            clinician_ids=[CLINICIAN],
        )
    )
    await practice.send_secure_message("conv-alex", "Alex's forms", "Please bring the forms.")
    async with practice.staff(CLINICIAN) as clinician:

        async def opened() -> int:
            answer = await clinician.post(
                "/api/staff/conversations",
                json={
                    "conversation_id": "conv-jamie",
                    "subject": "Jamie's homework",
                    "client_id": "client-jamie",
                    "first_message": "Draw your week.",
                },
            )
            return answer.status_code

        await eventually(opened, until=lambda status: status == 201, what="Jamie's thread")

    page = await new_page()
    await signed_in_to_portal(page, practice, mail)
    viewing_as = page.get_by_label("Viewing as")
    await expect(viewing_as.locator("option")).to_have_text(["Alex Rivera", "Jamie Rivera"])
    await expect(viewing_as).to_have_value("client:client-alex")
    conversations = page.get_by_role("list").first
    await expect(conversations).to_contain_text("Alex's forms")
    await expect(conversations).not_to_contain_text("Jamie's homework")

    await viewing_as.select_option("client:client-jamie")
    await expect(page.get_by_role("status")).to_have_text(
        "Now showing the conversations of Jamie Rivera."
    )
    await expect(page.get_by_label("Viewing as")).to_have_value("client:client-jamie")
    await expect(page.get_by_role("button", name="Jamie's homework")).to_be_visible()
    await expect(page.get_by_role("button", name="Alex's forms")).to_have_count(0)
    await screenshot(page, "phone-viewing-as")
    await page.get_by_role("button", name="Jamie's homework").click()
    await expect(page.get_by_role("list", name="Messages")).to_contain_text("Draw your week.")
