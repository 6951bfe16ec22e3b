"""Turn a rendered draft into the one email that goes out: one `To`, no `Cc`, no `Bcc`."""

from __future__ import annotations

import uuid
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate

from sotto_notifier.domain import EmailDraft
from sotto_notifier.rendering import RenderedBody


def compose_email(
    draft: EmailDraft, body: RenderedBody, *, from_address: str, notification_id: str
) -> EmailMessage:
    local_part, _, domain = from_address.partition("@")
    message = EmailMessage()
    message["From"] = Address(display_name=draft.sender_name, username=local_part, domain=domain)
    message["To"] = draft.to_address
    message["Subject"] = draft.subject
    message["Date"] = formatdate(usegmt=True)
    # Derived from the notification id so a receiving server can spot a duplicate.
    message["Message-ID"] = f"<{uuid.uuid5(uuid.NAMESPACE_URL, notification_id).hex}@{domain}>"
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(body.text)
    message.add_alternative(body.html, subtype="html")
    return message
