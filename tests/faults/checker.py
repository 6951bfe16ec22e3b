"""A Jepsen-style checker for notifications: what was commanded against what arrived.

Ambiguous means the notifier admitted it may or may not have sent: either outcome is allowed
for such a notification. Everything else must arrive exactly once.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

SETTLED_STATES = frozenset({"delivered", "failed", "ambiguous"})


@dataclass(frozen=True)
class NotificationHistory:
    lost: tuple[str, ...]
    duplicated: tuple[str, ...]
    ambiguous: tuple[str, ...]
    unexplained_duplicates: tuple[str, ...]
    unsettled: tuple[str, ...]
    failed: tuple[str, ...]
    delivered_once: int

    @property
    def counts(self) -> dict[str, int]:
        return {
            "lost": len(self.lost),
            "duplicated": len(self.duplicated),
            "ambiguous": len(self.ambiguous),
            "unexplained duplicates": len(self.unexplained_duplicates),
            "unsettled": len(self.unsettled),
            "failed": len(self.failed),
            "delivered once": self.delivered_once,
        }


def check_notifications(
    commanded: Mapping[str, str],
    emails_by_recipient: Mapping[str, int],
    record_states: Mapping[str, str],
    ambiguous_events: Collection[str] = (),
) -> NotificationHistory:
    """Judge a run.

    `commanded` maps each notification id to its unique recipient address;
    `emails_by_recipient` counts the emails the catcher received per address (lower case);
    `record_states` is the notifier's delivery record state per notification id;
    `ambiguous_events` are the ids the notifier announced as ambiguous (audit's view).
    """
    lost: list[str] = []
    duplicated: list[str] = []
    ambiguous: list[str] = []
    unexplained: list[str] = []
    unsettled: list[str] = []
    failed: list[str] = []
    delivered_once = 0
    for notification_id, address in commanded.items():
        emails = emails_by_recipient.get(address.lower(), 0)
        state = record_states.get(notification_id)
        admitted = state == "ambiguous" or notification_id in ambiguous_events
        if admitted:
            ambiguous.append(notification_id)
        if state not in SETTLED_STATES:
            unsettled.append(notification_id)
        if state == "failed":
            failed.append(notification_id)
        if emails == 0 and not admitted and state != "failed":
            lost.append(notification_id)
        if emails == 1:
            delivered_once += 1
        if emails > 1:
            duplicated.append(notification_id)
            if not admitted:
                unexplained.append(notification_id)
    return NotificationHistory(
        lost=tuple(lost),
        duplicated=tuple(duplicated),
        ambiguous=tuple(ambiguous),
        unexplained_duplicates=tuple(unexplained),
        unsettled=tuple(unsettled),
        failed=tuple(failed),
        delivered_once=delivered_once,
    )
