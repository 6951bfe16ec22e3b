"""A client reads and answers a secure message in a real browser; portal sign-in; quick exit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import CLIENT_BIRTHDAY, DESKTOP, OUTPUT, Practice, link_from_mail
from tests.support.mail import MailCatcher

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
