"""Which requests count as sent by the portal's own pages (the login-CSRF check)."""

from __future__ import annotations

import pytest

from sotto_gateway.domain import comes_from, web_origin

PORTAL = "https://portal.example.org/practice/"


@pytest.mark.parametrize(
    ("origin", "referer", "fetch_site"),
    [
        ("https://portal.example.org", None, None),
        ("https://PORTAL.example.org:443", None, "same-origin"),
        (None, "https://portal.example.org/api/portal/sign-in/abc", None),
        ("null", None, "same-origin"),  # a form on a page whose referrer policy is no-referrer
        (None, None, None),  # no browser at all
        (None, None, "none"),
    ],
)
def test_the_portals_own_pages_and_non_browsers_pass(
    origin: str | None, referer: str | None, fetch_site: str | None
) -> None:
    assert comes_from(PORTAL, origin, referer, fetch_site)


@pytest.mark.parametrize(
    ("origin", "referer", "fetch_site"),
    [
        ("https://attacker.example", None, None),
        ("https://attacker.example", PORTAL, None),
        ("http://portal.example.org", None, None),
        ("https://portal.example.org:8443", None, None),
        ("https://portal.example.org.attacker.example", None, None),
        ("null", None, None),
        ("null", None, "cross-site"),
        (None, "https://attacker.example/portal.example.org", None),
        (None, None, "cross-site"),
        (None, None, "same-site"),
        ("https://portal.example.org", None, "cross-site"),
        ("not a url", None, None),
        ("https://portal.example.org:99999", None, None),
    ],
)
def test_other_sites_fail(origin: str | None, referer: str | None, fetch_site: str | None) -> None:
    assert not comes_from(PORTAL, origin, referer, fetch_site)


def test_an_origin_is_scheme_host_and_port() -> None:
    assert web_origin("http://127.0.0.1:8000/o/x") == "http://127.0.0.1:8000"
    assert web_origin("https://Portal.Example.org/") == "https://portal.example.org:443"
    assert web_origin("null") is None
