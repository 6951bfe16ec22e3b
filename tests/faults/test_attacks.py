"""Attacks on the running system: foreign principals, link and session abuse, enumeration,
oversize input. Timing is compared as a ratio of medians with a generous bound."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from http.cookies import SimpleCookie

import httpx
import pytest

from sotto_contracts.common import Contact, ContactRelation
from sotto_contracts.inbound import ClientUpserted
from sotto_contracts.topology import Topology
from tests.e2e.conftest import Practice
from tests.e2e.portal import LINK, ClientSession, secure_link_token, staff_client
from tests.e2e.test_secure_messaging import open_conversation
from tests.faults.attack_support import median_ratio, seed_demo, sign_in_link, signed_in
from tests.faults.conftest import OUTPUT
from tests.faults.scoreboard import Scoreboard
from tests.support.amqp import Amqp, delete_namespace
from tests.support.infra import Infrastructure
from tests.support.mail import MailCatcher
from tests.support.system import running_system
from tests.support.waiting import eventually

ALEX_DOB = "1990-04-12"
TIMING_TRIES = 25
TIMING_BOUND = (0.5, 2.0)
REFUSED = {401, 403, 404}
# The timing probes must reach the real sign-in path, not the rate limits' quick answers.
UNLIMITED_SIGN_IN = {
    "GATEWAY_SIGN_IN_REQUESTS_PER_IP": "1000000",
    "GATEWAY_SIGN_IN_EMAILS_PER_ADDRESS": "10000",
}


@pytest.fixture(scope="module")
async def world(
    infra: Infrastructure, used_namespaces: set[str]
) -> AsyncIterator[dict[str, Practice]]:
    """Two practices on one running system; Sam's partner Robin may not message."""
    namespace = f"t{uuid.uuid4().hex[:12]}"
    used_namespaces.add(namespace)
    amqp = Amqp(infra.rabbitmq_url, Topology(namespace=namespace))
    try:
        async with running_system(
            infra, namespace, OUTPUT / "attacks", env=UNLIMITED_SIGN_IN
        ) as system:
            home = await seed_demo(system, amqp, namespace)
            other = await seed_demo(system, amqp, f"{namespace}-other")
            await amqp.publish(
                ClientUpserted(
                    practice_id=home.practice_id,
                    client_id="client-sam",
                    display_name="Sam Patel",
                    email=home.email("sam"),
                    primary_clinician_id="staff-clinician",
                    clinician_ids=["staff-clinician"],
                    contacts=[
                        Contact(
                            contact_id="contact-robin",
                            relation=ContactRelation.PARTNER,
                            display_name="Robin Patel",
                            email=home.email("robin"),
                            can_message=False,
                        )
                    ],
                )
            )
            yield {"home": home, "other": other}
    finally:
        await amqp.close()
        delete_namespace(infra.rabbitmq_management_url, namespace)


async def test_foreign_principals_get_no_data(
    world: dict[str, Practice], mail: MailCatcher, scoreboard: Scoreboard, scale: int
) -> None:
    home, other = world["home"], world["other"]
    secret = f"private {uuid.uuid4().hex}"
    async with home.staff("staff-clinician") as clinician:
        alex_thread = await open_conversation(clinician, "client-alex", secret)
        sam_thread = await open_conversation(clinician, "client-sam", secret)
    answers: dict[str, int] = {}
    leaked: list[str] = []

    def note(who: str, answer: httpx.Response) -> None:
        answers[who] = answer.status_code
        if secret in answer.text:
            leaked.append(who)

    async with staff_client(home.system.gateway_url, other.practice_id, "staff-owner") as foreign:
        for path in (
            f"/api/staff/conversations/{alex_thread}",
            "/api/staff/clients/client-alex/transcript",
        ):
            note(f"other practice owner GET {path}", await foreign.get(path))
        note(
            "other practice owner reply",
            await foreign.post(
                f"/api/staff/conversations/{alex_thread}/messages", json={"body": "x"}
            ),
        )
    async with home.staff("staff-biller") as biller:
        note("biller GET thread", await biller.get(f"/api/staff/conversations/{alex_thread}"))
        note("biller transcript", await biller.get("/api/staff/clients/client-alex/transcript"))
        note(
            "biller settings",
            await biller.patch(
                "/api/staff/settings", json={"client_notification_delay_seconds": 5}
            ),
        )
        note("biller audit", await biller.get("/api/staff/audit/access"))
    for who, email in (("sam", home.email("sam")), ("other alex", other.email("alex"))):
        client = await signed_in(home if who == "sam" else other, mail, email)
        try:
            note(
                f"{who} GET alex thread",
                await client.request("GET", f"/api/client/conversations/{alex_thread}"),
            )
            note(
                f"{who} reply in alex thread",
                await client.request(
                    "POST", f"/api/client/conversations/{alex_thread}/messages", json={"body": "x"}
                ),
            )
        finally:
            await client.close()
    robin = ClientSession(home.system.gateway_url)
    try:
        path = await sign_in_link(home, mail, home.email("robin"))
        await robin.request("POST", path)
        note(
            "robin (no rights) GET sam thread",
            await robin.request("GET", f"/api/client/conversations/{sam_thread}"),
        )
    except AssertionError:
        answers["robin (no rights) GET sam thread"] = 0  # no link sent at all: nothing to abuse
    finally:
        await robin.close()

    # The other practice has its own client-alex: its transcript may answer, without our data.
    wrong = {
        who: status
        for who, status in answers.items()
        if status not in REFUSED | {0} and not who.endswith("transcript")
    }
    wrong |= {who: answers[who] for who in leaked}
    scoreboard.record(
        "authorization matrix (e2e)",
        "404/403 and no data for every foreign principal",
        {"requests": len(answers), "answered with data": len(wrong), "leaked content": len(leaked)},
        met=not wrong and not leaked,
    )
    assert wrong == {}
    assert leaked == []


async def test_secure_link_guessing_and_brute_force(
    world: dict[str, Practice], mail: MailCatcher, scoreboard: Scoreboard, scale: int
) -> None:
    home = world["home"]
    async with home.staff("staff-clinician") as clinician:
        await open_conversation(clinician, "client-alex", "see the portal")
    notices = await eventually(lambda: mail.to_address(home.email("alex")), what="alex notice")
    token = next(
        secure_link_token(caught) for caught in notices if LINK.search(caught.text + caught.html)
    )
    wrong_token = token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:]
    unknown_token = secrets.token_urlsafe(len(token))[: len(token)]

    async with httpx.AsyncClient(base_url=home.system.gateway_url, timeout=30) as http:
        unknown = await http.post(f"/api/client/links/{unknown_token}/open")
        wrong = await http.post(f"/api/client/links/{wrong_token}/open")
        ratio = await median_ratio(
            lambda: http.post(f"/api/client/links/{unknown_token}/open"),
            lambda: http.post(f"/api/client/links/{wrong_token}/open"),
            TIMING_TRIES * scale,
        )
    attacker = ClientSession(home.system.gateway_url)
    try:
        failures = [(await attacker.verify(token, "2001-01-01")).status_code for _ in range(5)]
        after_lock = await attacker.verify(token, ALEX_DOB)
    finally:
        await attacker.close()
    same = unknown.status_code == wrong.status_code and unknown.content == wrong.content
    scoreboard.record(
        "secure link guessing and brute force",
        f"unknown == wrong, timing ratio in {TIMING_BOUND}, locked after 5",
        {
            "timing ratio": ratio,
            "identical answers": int(same),
            "accepted after 5 failures": int(after_lock.status_code == 200),
        },
        met=same and TIMING_BOUND[0] <= ratio <= TIMING_BOUND[1] and after_lock.status_code != 200,
    )
    assert unknown.status_code == wrong.status_code == 404
    assert unknown.content == wrong.content
    assert TIMING_BOUND[0] <= ratio <= TIMING_BOUND[1]
    assert failures[:4] == [422] * 4, failures
    assert failures[4] in {403, 410, 423}, "the fifth failure locks the link"
    assert after_lock.status_code in {403, 410, 423}, "the right answer still works after 5"


async def test_sign_in_links_sessions_cookies_and_csrf(
    world: dict[str, Practice], mail: MailCatcher, scoreboard: Scoreboard, scale: int
) -> None:
    home = world["home"]
    # The planted cookie is a real session of someone else (Sam), set before Alex signs in.
    client = await signed_in(home, mail, home.email("sam"))
    planted = client.cookies["sotto_session"]
    path = await sign_in_link(home, mail, home.email("alex"))
    try:
        started = await client.request("POST", path)
        assert started.status_code == 200, started.text
        client.csrf_token = started.json()["csrf_token"]
        async with httpx.AsyncClient(base_url=home.system.gateway_url) as second_browser:
            reused = await second_browser.post(path)
        cookies: dict[str, SimpleCookie] = {}
        for header in started.headers.get_list("set-cookie"):
            parsed: SimpleCookie = SimpleCookie()
            parsed.load(header)
            for name in parsed:
                cookies[name] = parsed
        session = cookies["sotto_session"]["sotto_session"]
        assert session.value != planted
        async with httpx.AsyncClient(base_url=home.system.gateway_url) as raw:
            fixated = await raw.get(
                "/api/client/session", headers={"Cookie": f"sotto_session={planted}"}
            )
            no_csrf = await raw.post(
                "/api/client/sign-out", headers={"Cookie": f"sotto_session={session.value}"}
            )
        still_in = await client.request("GET", "/api/client/session")
    finally:
        await client.close()
    flags = {
        "httponly": bool(session["httponly"]),
        "secure": bool(session["secure"]),
        "samesite": str(session["samesite"]).lower() in {"strict", "lax"},
    }
    fixated_as_alex = fixated.status_code == 200 and "client-alex" in fixated.text
    met = (
        reused.status_code != 200
        and not fixated_as_alex
        and no_csrf.status_code == 403
        and still_in.status_code == 200
        and all(flags.values())
    )
    scoreboard.record(
        "sign-in link reuse, fixation, CSRF, cookie flags",
        "reuse refused, pre-sign-in cookie not Alex's, no CSRF 403, HttpOnly/Secure/SameSite",
        {
            "reuse status": reused.status_code,
            "pre-sign-in cookie is the new session": int(fixated_as_alex),
            "no-CSRF status": no_csrf.status_code,
            **{k: int(v) for k, v in flags.items()},
        },
        met=met,
    )
    assert reused.status_code in {400, 401, 404, 410}
    assert not fixated_as_alex, "the cookie set before sign-in became Alex's session"
    assert no_csrf.status_code == 403
    assert still_in.status_code == 200, "refusing the forged call must not end the session"
    assert flags == {"httponly": True, "secure": True, "samesite": True}


async def test_sign_in_does_not_reveal_who_is_a_client(
    world: dict[str, Practice], scoreboard: Scoreboard, scale: int
) -> None:
    home = world["home"]
    route = f"/api/portal/{home.practice_id}/sign-in"
    async with httpx.AsyncClient(base_url=home.system.gateway_url, timeout=30) as http:
        known = await http.post(route, json={"email": home.email("alex")})
        unknown = await http.post(route, json={"email": f"nobody-{uuid.uuid4().hex}@{home.domain}"})
        # An attacker repeats the address they probe: a known one's newer link replaces the
        # older, and so must an unknown one's.
        stranger = f"nobody-{uuid.uuid4().hex}@{home.domain}"
        ratio = await median_ratio(
            lambda: http.post(route, json={"email": home.email("sam")}),
            lambda: http.post(route, json={"email": stranger}),
            TIMING_TRIES * scale,
        )
    same = known.status_code == unknown.status_code and known.content == unknown.content
    scoreboard.record(
        "sign-in enumeration",
        f"identical status and body, timing ratio in {TIMING_BOUND}",
        {"identical answers": int(same), "timing ratio": ratio},
        met=same and TIMING_BOUND[0] <= ratio <= TIMING_BOUND[1],
    )
    assert known.status_code == unknown.status_code == 202
    assert known.content == unknown.content
    assert TIMING_BOUND[0] <= ratio <= TIMING_BOUND[1]


async def test_oversize_bodies_and_headers_are_refused_cleanly(
    world: dict[str, Practice], scoreboard: Scoreboard, scale: int
) -> None:
    home = world["home"]
    statuses: dict[str, int] = {}
    async with httpx.AsyncClient(base_url=home.system.gateway_url, timeout=30) as http:
        statuses["1 MB sign-in body"] = (
            await http.post(
                f"/api/portal/{home.practice_id}/sign-in",
                content=b'{"email": "' + b"a" * 1_000_000 + b'"}',
                headers={"Content-Type": "application/json"},
            )
        ).status_code
        async with home.staff("staff-clinician") as clinician:
            statuses["1 MB staff message"] = (
                await clinician.post(
                    "/api/staff/conversations",
                    json={
                        "conversation_id": "c-big",
                        "subject": "s",
                        "client_id": "client-alex",
                        "first_message": "x" * 1_000_000,
                    },
                )
            ).status_code
        statuses["100 kB header"] = (
            await http.get("/health", headers={"X-Filler": "a" * 100_000})
        ).status_code
        statuses["1000 headers"] = (
            await http.get("/health", headers={f"X-Filler-{index}": "a" for index in range(1000)})
        ).status_code
    clean = all(status in {400, 413, 431} for status in statuses.values())
    scoreboard.record(
        "oversize bodies and headers",
        "413/431/400, never 5xx",
        statuses,
        met=clean,
    )
    assert clean, statuses
