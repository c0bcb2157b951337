"""Security headers and CORS for any Millrace HTTP service.

Usage (any service)::

    from shared.security import SecuritySettings, security_middleware

    Starlette(..., middleware=[*security_middleware(settings.security), ...])

``CORS_ORIGINS`` is a comma-separated list of allowed origins; empty (the default) means no CORS
headers at all, so browsers on other origins are refused. Tokens travel in the ``Authorization``
header, never in cookies, so credentials mode stays off.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.settings import SettingsPart, env_config

# A JSON API renders nothing: forbid every resource and framing.
API_CSP = "default-src 'none'; frame-ancestors 'none'"


class SecuritySettings(BaseSettings):
    model_config = env_config()

    cors_origins: Annotated[list[str], NoDecode] = []

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [o.strip().rstrip("/") for o in value.split(",") if o.strip()]
        return value


class UsesSecurity(SettingsPart):
    """Security headers and CORS of a service answering browsers (``shared.settings`` mixins)."""

    security: SecuritySettings = Field(default_factory=SecuritySettings)


class SecurityHeadersMiddleware:
    """Adds the headers below to every HTTP response that does not already set them.

    ``Content-Security-Policy`` defaults to "load nothing, never framed": right for JSON, and a
    second line of defence should a response ever be rendered by a browser.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        content_security_policy: str | None = API_CSP,
        cache_control: str | None = None,
    ) -> None:
        self.app = app
        self.defaults = {
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer",
        }
        if content_security_policy:
            self.defaults["Content-Security-Policy"] = content_security_policy
        if cache_control:
            self.defaults["Cache-Control"] = cache_control

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                # HTML is the API docs page (Swagger UI), which needs its scripts: it gets
                # everything but the API's "load nothing" policy.
                html = headers.get("content-type", "").startswith("text/html")
                for name, value in self.defaults.items():
                    if name not in headers and not (html and name == "Content-Security-Policy"):
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def security_middleware(
    settings: SecuritySettings,
    *,
    content_security_policy: str | None = API_CSP,
    cache_control: str | None = None,
) -> list[Middleware]:
    """CORS (only when origins are configured) outside, security headers inside.

    ``cache_control`` is a default for responses that set none: the auth service passes
    ``"no-store"`` because nearly everything it answers is a credential or personal data.
    """
    stack = []
    if settings.cors_origins:
        stack.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origins,
                allow_methods=["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
                allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
                expose_headers=["X-Request-ID", "Retry-After", "WWW-Authenticate"],
                allow_credentials=False,
                max_age=600,
            )
        )
    stack.append(
        Middleware(
            SecurityHeadersMiddleware,
            content_security_policy=content_security_policy,
            cache_control=cache_control,
        )
    )
    return stack
