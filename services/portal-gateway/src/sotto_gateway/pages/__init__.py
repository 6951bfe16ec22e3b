"""Server-side entry points of the client portal and staff inbox pages (static HTML + JS)."""

from __future__ import annotations

from functools import cache
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
