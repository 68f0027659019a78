"""One error shape for every 4xx/5xx: {"error": code, "detail": [{"field", "reason"}]}; 429/503 add Retry-After."""

from __future__ import annotations

import msgspec
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.ingest.schemas import ErrorDetail, ErrorResponse

_encode = msgspec.json.encode


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        error: str,
        detail: list[tuple[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.detail = detail or []
        self.headers = headers or {}


def error_response(exc: ApiError) -> Response:
    body = ErrorResponse(error=exc.error, detail=[ErrorDetail(field=f, reason=r) for f, r in exc.detail])
    return Response(_encode(body), status_code=exc.status, media_type="application/json", headers=exc.headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> Response:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> Response:
        detail = [(".".join(str(p) for p in e["loc"]), e["msg"]) for e in exc.errors()]
        return error_response(ApiError(422, "validation_error", detail))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> Response:
        return error_response(ApiError(exc.status_code, str(exc.detail).lower().replace(" ", "_")))
