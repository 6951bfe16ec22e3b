"""The checker itself: each kind of anomaly is counted, and only that kind."""

from __future__ import annotations

from tests.faults.checker import check_notifications

COMMANDED = {"n1": "a@x.org", "n2": "b@x.org", "n3": "c@x.org", "n4": "d@x.org"}


def test_a_clean_run_has_no_anomalies() -> None:
    history = check_notifications(
        COMMANDED,
        {"a@x.org": 1, "b@x.org": 1, "c@x.org": 1, "d@x.org": 1},
        dict.fromkeys(COMMANDED, "delivered"),
    )
    assert history.counts == {
        "lost": 0,
        "duplicated": 0,
        "ambiguous": 0,
        "unexplained duplicates": 0,
        "unsettled": 0,
        "failed": 0,
        "delivered once": 4,
    }


def test_missing_email_is_lost_unless_the_notifier_admitted_ambiguity() -> None:
    history = check_notifications(
        COMMANDED,
        {"a@x.org": 1},
        {"n1": "delivered", "n2": "delivered", "n3": "ambiguous", "n4": "sending"},
        ambiguous_events={"n3"},
    )
    assert history.lost == ("n2", "n4")
    assert history.ambiguous == ("n3",)
    assert history.unsettled == ("n4",)


def test_duplicates_are_explained_only_by_an_ambiguous_record_or_event() -> None:
    history = check_notifications(
        COMMANDED,
        {"A@x.org".lower(): 2, "b@x.org": 2, "c@x.org": 1, "d@x.org": 1},
        {"n1": "ambiguous", "n2": "delivered", "n3": "delivered", "n4": "failed"},
    )
    assert history.duplicated == ("n1", "n2")
    assert history.unexplained_duplicates == ("n2",)
    assert history.failed == ("n4",)
    assert history.lost == ()
