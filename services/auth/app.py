"""The auth service: signs tokens (alone), manages users, sessions and gateway credentials.

Everything else verifies its tokens with the JWKS published here (``shared.auth.verify``).
"""

from __future__ import annotations

from contextlib import AsyncExitStack

from starlette.applications import Starlette
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from services.auth.api.gateway_api import gateway_routes
from services.auth.api.mqtt_api import mqtt_routes
from services.auth.api.session_api import session_routes
from services.auth.api.user_api import user_routes
from services.auth.security.keys import KeySet, load_keyset
from services.auth.settings import Settings
from services.auth.state import State, open_state, ready
from services.auth.tokens import TokenIssuer
from shared.service import service_app


def load_keys(settings: Settings) -> KeySet:
    auth = settings.auth
    return load_keyset(
        private_key=auth.private_key.get_secret_value() if auth.private_key else None,
        private_key_file=auth.private_key_file,
        previous_keys_dir=auth.previous_keys_dir,
        key_dir=auth.key_dir,
        production=settings.production,
    )


def create_app(settings: Settings) -> Starlette:
    """The ASGI app. Raises :class:`~services.auth.security.keys.KeyConfigError` without a
    usable key."""
    keys = load_keys(settings)
    issuer = TokenIssuer(keys, settings.jwt.issuer, settings.jwt.audience)

    async def opened(stack: AsyncExitStack, settings: Settings) -> State:
        return await open_state(stack, settings, keys, issuer)

    app = service_app(
        "auth",
        settings,
        opened,
        ready,
        routes=[*session_routes(keys), *user_routes(), *gateway_routes(), *mqtt_routes()],
        openapi_title="Millrace auth",
        security=settings.security,
        # Nearly every answer here is a credential or personal data: never cache by default.
        cache_control="no-store",
    )
    # Outermost: the sign-in throttle, sessions and the audit log all see the client address a
    # trusted proxy forwards (the console passes sign-ins on), never one anyone else claims.
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.auth.trusted_proxies)
    return app
