"""Errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}` with an HTTP status."""

from __future__ import annotations

from typing import Any


class OpenAIError(Exception):
    """A refusal the HTTP layer returns as OpenAI does; `param` names the request field at fault."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def invalid(message: str, param: str | None = None, code: str | None = None) -> OpenAIError:
    return OpenAIError(400, message, param=param, code=code)


def not_found(what: str, ident: str, param: str | None = None) -> OpenAIError:
    return OpenAIError(
        404,
        f"No {what} found with id {ident!r}.",
        param=param,
        code=f"{what.replace(' ', '_').replace('-', '_')}_not_found",
    )


def unauthorized(message: str = "Incorrect API key provided.") -> OpenAIError:
    return OpenAIError(401, message, type="invalid_request_error", code="invalid_api_key")
