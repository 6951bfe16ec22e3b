"""A demo practice: an owner, a clinician, a biller, and two clients (one with a partner)."""

from __future__ import annotations

from datetime import date

from sotto_contracts.base import Message
from sotto_contracts.common import Contact, ContactRelation, StaffRole
from sotto_contracts.inbound import ClientUpserted, PracticeUpserted, StaffUpserted


def demo_practice(practice_id: str = "demo", email_domain: str = "example.org") -> list[Message]:
    clinician = "staff-clinician"
    return [
        PracticeUpserted(practice_id=practice_id, slug=practice_id, display_name="Calm Waters"),
        StaffUpserted(
            practice_id=practice_id,
            staff_id="staff-owner",
            display_name="Morgan Owner",
            email=f"owner@{email_domain}",
            roles=[StaffRole.OWNER],
            can_view_others_conversations=True,
            can_export=True,
        ),
        StaffUpserted(
            practice_id=practice_id,
            staff_id=clinician,
            display_name="Dr. Jordan Lee",
            email=f"jordan@{email_domain}",
            roles=[StaffRole.CLINICIAN],
            client_ids=["client-alex", "client-sam"],
        ),
        StaffUpserted(
            practice_id=practice_id,
            staff_id="staff-biller",
            display_name="Casey Biller",
            email=f"billing@{email_domain}",
            roles=[StaffRole.BILLER],
        ),
        ClientUpserted(
            practice_id=practice_id,
            client_id="client-alex",
            display_name="Alex Rivera",
            email=f"alex@{email_domain}",
            date_of_birth=date(1990, 4, 12),
            primary_clinician_id=clinician,
            clinician_ids=[clinician],
        ),
        ClientUpserted(
            practice_id=practice_id,
            client_id="client-sam",
            display_name="Sam Patel",
            email=f"sam@{email_domain}",
            date_of_birth=date(1985, 9, 3),
            primary_clinician_id=clinician,
            clinician_ids=[clinician],
            contacts=[
                Contact(
                    contact_id="contact-robin",
                    relation=ContactRelation.PARTNER,
                    display_name="Robin Patel",
                    email=f"robin@{email_domain}",
                    date_of_birth=date(1986, 1, 20),
                )
            ],
        ),
    ]
