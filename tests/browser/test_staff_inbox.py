"""The reference staff inbox in a real browser: filters, paging, notes, tasks, copy as text,
remove, unread, archive, and a busy gateway waited out."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from playwright.async_api import Page, Route, expect

from tests.browser.conftest import (
    CLIENT,
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
    await client.get_by_role("button", name="Continue to my messages").click()
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
    messages = page.get_by_role("list", name="Messages")
    await expect(messages).to_contain_text("Which invoice?")
    # only the signed-in team member's own message may be removed: not the client's
    from_client = messages.get_by_role("listitem").filter(has_text="Which invoice?")
    await expect(from_client.get_by_role("button")).to_have_count(0)
    remove = page.get_by_role("button", name=re.compile("^(Remove message|Confirm removal)"))
    await expect(remove).to_have_count(1)
    mine = messages.get_by_role("listitem").filter(has_text="Sent to the wrong person.")
    await mine.get_by_role("button", name="Remove message sent").click()
    await page.get_by_role("button", name="Confirm removal").click()
    await expect(page.get_by_role("status")).to_have_text("The message was removed.")
    await expect(messages).to_contain_text("Message removed.")
    await expect(remove).to_have_count(0)  # a removed message is not offered for removal again
    await page.get_by_label("Message to the conversation").fill("Please ignore the last message.")
    await page.get_by_role("button", name="Send reply").click()
    await expect(page.get_by_role("status")).to_have_text("Reply sent.")
    reply = messages.get_by_role("listitem").filter(has_text="Please ignore the last message.")
    await expect(reply.get_by_role("button", name="Remove message sent")).to_have_count(1)
    await expect(remove).to_have_count(1)

    await page.get_by_role("button", name="Copy as text").click()
    await expect(page.get_by_role("status")).to_have_text("Tick the messages to copy first.")
    await page.get_by_role("checkbox", name="Select the message from Alex Rivera").check()
    await reply.get_by_role("checkbox", name="Select the message from You").check()
    await page.get_by_role("button", name="Copy as text").click()
    await expect(page.get_by_role("status")).to_contain_text("2 messages")
    copied = page.get_by_label("Copied text")
    await expect(copied).to_be_focused()
    await expect(copied).not_to_be_editable()
    stamp = r"\[\d{4}-\d\d-\d\d \d\d:\d\d UTC\]"
    await expect(copied).to_have_value(
        re.compile(
            rf"^{stamp} Alex Rivera: Which invoice\?\n"
            rf"{stamp} {re.escape(CLINICIAN_NAME)}: Please ignore the last message\.$"
        )
    )

    await page.get_by_label("Note", exact=True).fill("Client called about billing")
    await page.get_by_role("button", name="Add note").click()
    note = page.locator(".notes .note")
    await expect(note).to_contain_text("Client called about billing")
    await expect(note).to_contain_text(re.compile(r"^You, "))
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
    await owner.get_by_label("Show").select_option(label="My conversations")
    await owner.get_by_label("Archived").check()
    await owner.get_by_role("button", name="Apply filters").click()
    await owner.locator("#inbox").get_by_role("button", name="Invoice").click()
    await expect(owner.get_by_role("heading", name="Invoice")).to_be_focused()
    owner_note = owner.locator(".notes .note")
    await expect(owner_note).to_contain_text(f"{CLINICIAN_NAME}, ")
    await expect(owner_note).not_to_contain_text(CLINICIAN)  # the name, never the raw id
    # a colleague's, the client's and a removed message: none is the owner's to remove
    await expect(owner.get_by_role("list", name="Messages")).to_contain_text("Please ignore")
    await expect(owner.get_by_role("button", name=re.compile("^Remove"))).to_have_count(0)

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


async def test_the_inbox_pages_through_more_conversations_than_one_page_holds(
    practice: Practice,
    new_page: NewPage,
    screenshot: Screenshot,
) -> None:
    total = 27  # the page shows 25 a page
    await practice.send_secure_message("paged-00", "Paged 00", "The oldest one.")
    async with practice.staff(CLINICIAN) as clinician:
        for number in range(1, total):
            answer = await clinician.post(
                "/api/staff/conversations",
                json={
                    "conversation_id": f"paged-{number:02}",
                    "subject": f"Paged {number:02}",
                    "client_id": CLIENT,
                    "first_message": "Hello.",
                },
            )
            assert answer.status_code == 201

    page = await new_page(DESKTOP)
    await sign_in(page, practice, CLINICIAN)
    inbox = page.locator("#inbox").get_by_role("button")
    pager = page.get_by_role("navigation", name="Inbox pages")
    newer = pager.get_by_role("button", name="Newer")
    older = pager.get_by_role("button", name="Older")
    await expect(page.locator("#inbox-count")).to_have_text(f"{total} conversations")
    await expect(inbox).to_have_count(25)
    await expect(pager).to_contain_text("Page 1 of 2")
    await expect(newer).to_be_disabled()
    await expect(inbox.filter(has_text="Paged 26")).to_have_count(1)
    await expect(inbox.filter(has_text="Paged 00")).to_have_count(0)

    # paging keeps the filters as applied, not as half-typed
    await page.get_by_label("Search").fill("Paged 26")
    await older.click()
    await expect(page.get_by_role("status")).to_have_text(
        f"Page 2 of 2: 2 of {total} conversations"
    )
    await expect(inbox).to_have_count(2)
    await expect(inbox.nth(0)).to_contain_text("Paged 01")
    await expect(inbox.nth(1)).to_contain_text("Paged 00")
    await expect(older).to_be_disabled()
    await expect(newer).to_be_focused()
    await screenshot(page, "desktop-inbox-last-page")
    await page.get_by_label("Search").fill("")
    await page.get_by_role("button", name="Apply filters").click()  # starts from the newest
    await expect(pager).to_contain_text("Page 1 of 2")
    await expect(inbox).to_have_count(25)
    await older.click()
    await expect(inbox).to_have_count(2)

    # opening a thread keeps the page; archiving the last page away falls back to the one before
    await inbox.filter(has_text="Paged 00").click()
    await expect(page.get_by_role("heading", name="Paged 00")).to_be_focused()
    await page.get_by_role("button", name="Archive", exact=True).click()
    await expect(page.get_by_role("status")).to_have_text("Conversation archived.")
    await expect(inbox).to_have_count(1)
    await expect(pager).to_contain_text("Page 2 of 2")
    await inbox.filter(has_text="Paged 01").click()
    await expect(page.get_by_role("heading", name="Paged 01")).to_be_focused()
    await page.get_by_role("button", name="Archive", exact=True).click()
    await expect(page.get_by_role("status")).to_have_text("Conversation archived.")
    await expect(page.locator("#inbox-count")).to_have_text("25 conversations")
    await expect(inbox).to_have_count(25)
    await expect(pager).to_be_hidden()

    await page.get_by_label("Archived").check()
    await page.get_by_role("button", name="Apply filters").click()
    await expect(inbox).to_have_count(2)
    await page.get_by_label("Archived").uncheck()
    await page.get_by_role("button", name="Apply filters").click()
    await expect(inbox).to_have_count(25)
    await expect(inbox.first).to_contain_text("Paged 26")


async def test_the_inbox_waits_out_a_busy_gateway_and_asks_again(
    practice: Practice, new_page: NewPage
) -> None:
    """A 503 `busy` was refused before any work, so the page waits its Retry-After and asks
    again instead of showing an error."""
    await practice.send_secure_message("busy-1", "Asked twice", "Hello.")
    refused: list[str] = []

    async def busy_once(route: Route) -> None:
        if refused:
            await route.continue_()
            return
        refused.append(route.request.url)
        problem = {
            "type": "urn:sotto:problem:busy",
            "title": "Service Unavailable",
            "status": 503,
            "detail": "The portal is busy right now; try again in a moment.",
            "code": "busy",
        }
        await route.fulfill(
            status=503,
            headers={"Retry-After": "1", "Content-Type": "application/problem+json"},
            body=json.dumps(problem),
        )

    page = await new_page(DESKTOP)
    await page.route(re.compile(r"/api/staff/inbox\?"), busy_once)
    await sign_in(page, practice, CLINICIAN)
    inbox = page.locator("#inbox").get_by_role("button")
    await expect(inbox.filter(has_text="Asked twice")).to_have_count(1)
    assert len(refused) == 1
    await expect(page.get_by_text("The portal is busy")).to_have_count(0)
