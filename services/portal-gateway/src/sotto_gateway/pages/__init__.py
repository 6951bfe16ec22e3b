"""Server-side entry points of the client portal and staff inbox pages (static HTML + JS)."""

from __future__ import annotations

from functools import cache
from html import escape
from pathlib import Path
from string import Template

from litestar import MediaType, Response, Router, get
from litestar.static_files import create_static_files_router

PACKAGE = Path(__file__).resolve().parent.parent
TEMPLATES = PACKAGE / "templates"
STATIC = PACKAGE / "static"


@cache
def _page(name: str) -> bytes:
    return (TEMPLATES / name).read_bytes()


@cache
def _client_page(page: str, title: str) -> bytes:
    """The client portal's one page shell; its script renders the view named by `page`."""
    shell = Template((TEMPLATES / "client.html").read_text())
    return shell.substitute(page=page, title=title).encode()


def _html(name: str) -> Response[bytes]:
    return Response(_page(name), media_type=MediaType.HTML)


def sign_in_page(token: str, practice_name: str | None) -> Response[bytes]:
    """The page a sign-in email links to. Opening it changes nothing (mail scanners open links
    before people do); its button uses the link."""
    body = (
        "<p>Continue to read and reply to your secure messages. This link works once.</p>"
        f'<form method="post" action="/api/portal/sign-in/{escape(token)}/continue">'
        '<button type="submit">Continue to my messages</button></form>'
    )
    heading = f"Sign in to {practice_name}" if practice_name else "Sign in"
    return _sign_in_response(escape(heading), body, 200)


def sign_in_link_unusable_page(practice_slug: str | None) -> Response[bytes]:
    again = (
        f'<p><a href="/o/{escape(practice_slug)}/messages">Email me a new sign-in link</a></p>'
        if practice_slug
        else "<p>Ask for a new one on your practice's secure messages page.</p>"
    )
    body = (
        "<p>It was used already, a newer one replaced it, or it expired: a sign-in link "
        "works once, for 15 minutes.</p>" + again
    )
    return _sign_in_response("This sign-in link can no longer be used", body, 410)


def _sign_in_response(heading: str, body: str, status: int) -> Response[bytes]:
    page = Template(_page("sign_in.html").decode()).substitute(heading=heading, body=body)
    return Response(
        page.encode(),
        status_code=status,
        media_type=MediaType.HTML,
        headers={"Cache-Control": "no-store"},
    )


@get("/l/{token:str}", include_in_schema=False)
async def secure_link_page() -> Response[bytes]:
    """The page a secure-message email links to; the script reads the token from the path."""
    return Response(_client_page("link", "Secure message"), media_type=MediaType.HTML)


@get("/o/{practice_slug:str}/messages", include_in_schema=False)
async def practice_portal_page() -> Response[bytes]:
    return Response(_client_page("portal", "Secure messages"), media_type=MediaType.HTML)


@get("/exit", include_in_schema=False)
async def neutral_exit_page() -> Response[bytes]:
    """Where the quick-exit button leaves to: nothing on it hints at the portal."""
    return _html("exit.html")


@get("/staff", include_in_schema=False)
async def staff_inbox_page() -> Response[bytes]:
    return _html("staff.html")


pages_router = Router(
    path="/",
    route_handlers=[
        secure_link_page,
        practice_portal_page,
        neutral_exit_page,
        staff_inbox_page,
        create_static_files_router(
            path="/static", directories=[STATIC], include_in_schema=False, name="static"
        ),
    ],
)
