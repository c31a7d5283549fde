"""Request bodies of the ``/v1`` API (pydantic), and the 422 error they produce."""
from __future__ import annotations

from typing import Any, Literal

from flask import request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from base.ids import USER_ID_PATTERN, UserId, is_user_id
from pricing import JobParams
from webhook_receiver.errors import ApiError


def check_user_id(user_id: str) -> None:
    """A ``user_id`` from the URL; raises ``ApiError`` 422 unless it is one in full
    (``base.ids``)."""
    if not is_user_id(user_id):
        raise ApiError(422, "invalid_request", "user_id must match " + USER_ID_PATTERN)


class JobRequest(BaseModel):
    """``POST /v1/jobs``: ``{user_id, type, params: {duration_s, resolution, scale?}, input}``."""

    model_config = ConfigDict(extra="forbid")

    user_id: UserId
    type: Literal["framing", "overlay", "upscale", "track"]
    params: JobParams
    input: dict[str, Any] = Field(default_factory=dict)


class QuoteRequest(BaseModel):
    """``POST /v1/quotes``: ``{type, params: {duration_s, resolution, scale?}}``."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["framing", "overlay", "upscale", "track"]
    params: JobParams


def _fields(err: ValidationError) -> list[dict[str, Any]]:
    return [{"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]}
            for e in err.errors(include_url=False, include_input=False)]


def parse_query(model: type[BaseModel]) -> Any:
    """The request's query string validated as ``model`` (each parameter once; a repeated
    one counts as its first value). 422 ``invalid_request`` with per-parameter errors,
    exactly like a body."""
    try:
        return model.model_validate(request.args.to_dict(flat=True))
    except ValidationError as err:
        raise ApiError(422, "invalid_request", "query parameters are invalid", _fields(err)) from None


def parse_json(model: type[BaseModel]) -> Any:
    """The request's JSON body validated as ``model``.

    400 ``invalid_json`` for a body that is not a JSON object; 422 ``invalid_request``
    with per-field errors otherwise.
    """
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "body must be a JSON object")
    try:
        return model.model_validate(body)
    except ValidationError as err:
        raise ApiError(422, "invalid_request", "request body is invalid", _fields(err)) from None
