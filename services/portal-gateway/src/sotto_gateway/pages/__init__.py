"""Server-side entry points of the client portal and staff inbox pages (static HTML + JS)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from litestar import MediaType, Response, Router, get
from litestar.static_files import create_static_files_router

PACKAGE = Path(__file__).resolve().parent.parent
TEMPLATES = PACKAGE / "templates"
STATIC = PACKAGE / "static"


@cache
def _page(name: str) -> bytes:
    return (TEMPLATES / name).read_bytes()


def _html(name: str) -> Response[bytes]:
    return Response(_page(name), media_type=MediaType.HTML)


@get("/l/{token:str}", include_in_schema=False)
async def secure_link_page() -> Response[bytes]:
    """The page a secure-message email links to; the script reads the token from the path."""
    return _html("link.html")


@get("/o/{practice_slug:str}/messages", include_in_schema=False)
async def practice_portal_page() -> Response[bytes]:
    return _html("portal.html")


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
