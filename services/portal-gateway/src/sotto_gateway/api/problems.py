"""Every error becomes an RFC 9457 problem+json answer; no stack trace ever leaves the process."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import aiormq.exceptions
import pydantic
from faststream.exceptions import IncorrectState
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ExceptionHandlersMap
from pymongo.errors import PyMongoError

from sotto_gateway.adapters.tokens import InvalidStaffTokenError
from sotto_gateway.handlers import NotFoundError, SessionRequiredError, SignInRequiredError
from sotto_kit.messaging import ProblemError, RequestTimeoutError

PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_SECONDS = 5

logger = logging.getLogger(__name__)


class ApiProblemError(Exception):
    """Raised by controllers for a refusal with a stable code."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra or {}


def problem_response(
    status: int,
    code: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {
        "type": f"urn:sotto:problem:{code}",
        "title": HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else code,
        "status": status,
        "detail": detail,
        "code": code,
        **(extra or {}),
    }
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers or {})


def _unavailable(what: str) -> Response[dict[str, Any]]:
    return problem_response(
        503,
        "service_unavailable",
        f"{what} is unavailable; try again shortly.",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _api_problem(_: Request[Any, Any, Any], error: Exception) -> Response[dict[str, Any]]:
    assert isinstance(error, ApiProblemError)
    return problem_response(
        error.status, error.code, error.detail, headers=error.headers, extra=error.extra
    )


def _service_problem(_: Request[Any, Any, Any], error: Exception) -> Response[dict[str, Any]]:
    assert isinstance(error, ProblemError)
    problem = error.problem
    status = problem.status if 400 <= problem.status <= 599 else 409
    return problem_response(status, problem.code, problem.detail)


def _not_found(_: Request[Any, Any, Any], __: Exception) -> Response[dict[str, Any]]:
    return problem_response(404, "not_found", "Nothing here, or you may not see it.")


def _session_required(request: Request[Any, Any, Any], _: Exception) -> Response[dict[str, Any]]:
    return problem_response(
        401,
        "session_required",
        "Your session has ended. Sign in again from your practice's portal page.",
    )


def _sign_in_required(_: Request[Any, Any, Any], __: Exception) -> Response[dict[str, Any]]:
    return problem_response(
        403, "sign_in_required", "Sign in from your practice's portal page to do this."
    )


def _staff_token(_: Request[Any, Any, Any], __: Exception) -> Response[dict[str, Any]]:
    return problem_response(
        401,
        "invalid_token",
        "A valid staff bearer token is required.",
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


def _validation(_: Request[Any, Any, Any], error: Exception) -> Response[dict[str, Any]]:
    assert isinstance(error, ValidationException)
    fields = [
        {"key": item.get("key"), "message": item.get("message")}
        for item in (error.extra if isinstance(error.extra, list) else [])
        if isinstance(item, dict)
    ]
    return problem_response(
        400, "invalid_request", "The request is not valid.", extra={"errors": fields}
    )


def _invalid_model(_: Request[Any, Any, Any], error: Exception) -> Response[dict[str, Any]]:
    assert isinstance(error, pydantic.ValidationError)
    fields = [
        {"key": ".".join(str(part) for part in item["loc"]), "message": item["msg"]}
        for item in error.errors(include_input=False, include_url=False)
    ]
    return problem_response(
        400, "invalid_request", "The request is not valid.", extra={"errors": fields}
    )


def _http(_: Request[Any, Any, Any], error: Exception) -> Response[dict[str, Any]]:
    assert isinstance(error, HTTPException)
    status = error.status_code
    code = HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    headers = dict(error.headers or {})
    if status >= 500:
        return problem_response(status, code, "The server could not answer.", headers=headers)
    return problem_response(status, code, str(error.detail), headers=headers)


def _database_down(_: Request[Any, Any, Any], __: Exception) -> Response[dict[str, Any]]:
    logger.warning("database unavailable")
    return _unavailable("The database")


def _broker_down(_: Request[Any, Any, Any], error: Exception) -> Response[dict[str, Any]]:
    logger.warning("broker or service unavailable", extra={"error": type(error).__name__})
    return _unavailable("A backing service")


def _unexpected(_: Request[Any, Any, Any], __: Exception) -> Response[dict[str, Any]]:
    logger.exception("unexpected error")
    return problem_response(500, "internal_error", "Something went wrong on our side.")


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    ApiProblemError: _api_problem,
    ProblemError: _service_problem,
    NotFoundError: _not_found,
    SessionRequiredError: _session_required,
    SignInRequiredError: _sign_in_required,
    InvalidStaffTokenError: _staff_token,
    ValidationException: _validation,
    pydantic.ValidationError: _invalid_model,
    HTTPException: _http,
    PyMongoError: _database_down,
    RequestTimeoutError: _broker_down,
    aiormq.exceptions.AMQPError: _broker_down,
    # a publish while the broker reconnects: a closed channel, a producer not connected yet
    aiormq.exceptions.ChannelInvalidStateError: _broker_down,
    IncorrectState: _broker_down,
    ConnectionError: _broker_down,
    Exception: _unexpected,
}
