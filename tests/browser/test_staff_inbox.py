"""The reference staff inbox in a real browser: filters, notes, tasks, remove, unread, archive."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import (
    CLIENT_BIRTHDAY,
    CLINICIAN,
    CLINICIAN_NAME,
    DESKTOP,
    OWNER,
    OWNER_NAME,
    Practice,
    link_from_mail,
)
from tests.browser.test_client_portal import SECURE_LINK, SIGN_IN_LINK
from tests.support.mail import MailCatcher

pytestmark = pytest.mark.browser

NewPage = Callable[..., Awaitable[Page]]
Screenshot = Callable[[Page, str], Awaitable[Path]]


async def sign_in(page: Page, practice: Practice, staff_id: str) -> None:
    await page.goto(f"{practice.base_url}/staff")
    await page.get_by_label("Staff token").fill(practice.token(staff_id))
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("button", name="Sign out")).to_be_visible()


async def test_staff_work_a_thread_and_the_client_sees_the_removal(
    practice: Practice,
    mail: MailCatcher,
    new_page: NewPage,
    screenshot: Screenshot,
) -> None:
    await practice.send_secure_message("conv-a", "Forms to fill", "Please bring the forms.")
    await practice.send_secure_message("conv-b", "Invoice", "Sent to the wrong person.")
    client = await new_page()
    await client.goto(f"{practice.base_url}/o/{practice.slug}/messages")
    await client.get_by_label("Email address").fill(practice.client_email)
    await client.get_by_role("button", name="Email me a sign-in link").click()
    await expect(client.get_by_role("status")).to_contain_text("sign-in link is on its way")
    await client.goto(await link_from_mail(mail, practice.client_email, SIGN_IN_LINK))
    await client.get_by_role("button", name="Invoice").click()
    await client.get_by_label("Your message").fill("Which invoice?")
    await client.get_by_role("button", name="Send reply").click()
    await expect(client.get_by_role("status")).to_have_text("Your reply was sent.")

    page = await new_page(DESKTOP)
    await page.goto(f"{practice.base_url}/staff")
    await page.get_by_label("Staff token").fill("not-a-token")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("status")).to_have_text("That token was not accepted.")
    await sign_in(page, practice, CLINICIAN)
    inbox = page.locator("#inbox")
    await expect(inbox.get_by_role("button")).to_have_count(2)

    await page.get_by_label("Search").fill("Forms")
    await page.get_by_role("button", name="Apply filters").click()
    await expect(inbox.get_by_role("button")).to_have_count(1)
    await page.get_by_label("Search").fill("")
    await page.get_by_label("From").fill("2099-01-01")
    await page.get_by_role("button", name="Apply filters").click()
    await expect(page.get_by_role("status")).to_have_text("0 conversations")
    await expect(inbox.get_by_role("button")).to_have_count(0)
    await page.get_by_label("From").fill("")
    await page.get_by_role("button", name="Apply filters").click()
    await expect(inbox.get_by_role("button")).to_have_count(2)

    await inbox.get_by_role("button", name="Invoice").click()
    await expect(page.get_by_role("heading", name="Invoice")).to_be_focused()
    await expect(page.get_by_role("list", name="Messages")).to_contain_text("Which invoice?")
    await page.get_by_role("button", name="Remove message sent").first.click()
    await page.get_by_role("button", name="Confirm removal").click()
    await expect(page.get_by_role("status")).to_have_text("The message was removed.")
    await expect(page.get_by_role("list", name="Messages")).to_contain_text("Message removed.")
    await page.get_by_label("Message to the conversation").fill("Please ignore the last message.")
    await page.get_by_role("button", name="Send reply").click()
    await expect(page.get_by_role("status")).to_have_text("Reply sent.")

    await page.get_by_label("Note", exact=True).fill("Client called about billing")
    await page.get_by_role("button", name="Add note").click()
    await expect(page.locator(".notes")).to_contain_text("Client called about billing")
    await page.get_by_label("Task", exact=True).fill("Resend the invoice")
    await page.get_by_label("Due (optional)").fill("2030-01-31")
    await page.get_by_label("For (optional)").select_option(label=OWNER_NAME)
    await page.get_by_role("button", name="Add task").click()
    task = page.get_by_role("checkbox", name="Resend the invoice")
    await expect(task).to_have_accessible_name(
        f"Resend the invoice (due 2030-01-31), for {OWNER_NAME}"
    )
    await expect(task).not_to_be_checked()
    await task.check()
    await expect(page.get_by_role("status")).to_have_text("Task done.")
    await expect(page.get_by_role("checkbox", name="Resend the invoice")).to_be_checked()

    await page.get_by_role("button", name="Mark unread").click()
    await expect(inbox.get_by_role("button", name="Unread: Invoice")).to_be_visible()
    await page.get_by_label("Unread only").check()
    await page.get_by_role("button", name="Apply filters").click()
    await expect(inbox.get_by_role("button")).to_have_count(1)
    await page.get_by_label("Unread only").uncheck()
    await page.get_by_role("button", name="Apply filters").click()
    await screenshot(page, "desktop-thread")

    await page.get_by_role("button", name="Archive", exact=True).click()
    await expect(page.get_by_role("status")).to_have_text("Conversation archived.")
    await expect(inbox.get_by_role("button")).to_have_count(1)
    await page.get_by_label("Archived").check()
    await page.get_by_role("button", name="Apply filters").click()
    await expect(inbox.get_by_role("button", name="Invoice")).to_be_visible()

    assignee = page.get_by_label("Assigned to")
    await expect(assignee.locator("option:checked")).to_have_text(f"{CLINICIAN_NAME} (you)")
    await assignee.select_option(label=OWNER_NAME)
    await page.get_by_role("button", name="Assign", exact=True).click()
    await expect(page.get_by_role("status")).to_have_text("Conversation assigned.")
    await expect(assignee.locator("option:checked")).to_have_text(OWNER_NAME)

    phone = await new_page()
    await sign_in(phone, practice, CLINICIAN)
    await expect(phone.locator("#inbox").get_by_role("button")).to_have_count(1)
    await screenshot(phone, "phone-inbox")

    owner = await new_page(DESKTOP)
    await sign_in(owner, practice, OWNER)
    await owner.get_by_label("Show").select_option(label="Others' conversations")
    await owner.get_by_role("button", name="Apply filters").click()
    forms = owner.locator("#inbox").get_by_role("button", name="Forms to fill")
    await expect(forms).to_contain_text(f"Assigned to {CLINICIAN_NAME}")

    await client.get_by_role("button", name="Back to conversations").click()
    await client.get_by_role("button", name="Invoice").click()
    messages = client.get_by_role("list", name="Messages")
    await expect(messages).to_contain_text("This message was removed.")
    await expect(messages).to_contain_text("Please ignore the last message.")
    await expect(messages).not_to_contain_text("Sent to the wrong person.")
    await expect(client.get_by_text("Client called about billing")).to_have_count(0)
    await screenshot(client, "phone-client-sees-removal")


async def test_the_owner_sends_an_announcement_and_the_client_opens_it(
    practice: Practice,
    mail: MailCatcher,
    new_page: NewPage,
    screenshot: Screenshot,
) -> None:
    page = await new_page(DESKTOP)
    await sign_in(page, practice, OWNER)
    await expect(page.get_by_text("Goes to every active client of the practice")).to_be_visible()
    await page.get_by_label("Announcement subject").fill("   ")
    await page.get_by_label("Announcement text").fill("   ")
    await page.get_by_role("button", name="Send announcement").click()
    await expect(page.get_by_role("status")).to_have_text(
        "Write a subject and the announcement first."
    )
    await page.get_by_label("Announcement subject").fill("Closed on Friday")
    await page.get_by_label("Announcement text").fill("The office is closed on Friday the 4th.")
    await page.get_by_role("button", name="Send announcement").click()
    await expect(page.get_by_role("status")).to_have_text("Announcement accepted for 1 client.")
    await expect(page.locator("#announcement-progress")).to_have_text(
        "Announcement sent to 1 client."
    )
    await expect(
        page.locator("#inbox").get_by_role("button", name="Closed on Friday")
    ).to_be_visible()
    await screenshot(page, "desktop-staff-announcement")

    link = await link_from_mail(mail, practice.client_email, SECURE_LINK)
    [email] = await mail.to_address(practice.client_email)
    assert "Friday" not in email.all_text
    client = await new_page()
    await client.goto(link)
    await client.get_by_label("Date of birth").fill(CLIENT_BIRTHDAY.isoformat())
    await client.get_by_role("button", name="Continue").click()
    await expect(client.get_by_text("The office is closed on Friday the 4th.")).to_be_visible()
