"""``run(...)``: the entry point of every service's ``__main__.py``.

Settings are built once (a refused configuration is one clear message on stderr and exit
status 2), logging is configured once, then uvicorn serves the app. SIGTERM makes uvicorn stop
accepting, finish the requests in flight within ``SHUTDOWN_TIMEOUT_S`` and run the lifespan's
shutdown: workers drain, then every connection closes in reverse order.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import uvicorn
from pydantic import ValidationError
from pydantic_settings import BaseSettings
from starlette.types import ASGIApp

from shared import workers as worker_processes
from shared.log import configure_logging


class Served(Protocol):
    """What the skeleton reads from every service's settings."""

    @property
    def port(self) -> int: ...
    @property
    def bind_host(self) -> str: ...
    @property
    def log_level(self) -> str: ...
    @property
    def shutdown_timeout_s(self) -> float: ...


S = TypeVar("S", bound=Served)

# Where worker processes find the service they serve ("name|settings-path|factory-path").
_WORKER_SPEC = "MILLRACE_WORKER_SERVICE"


def _models(model: type[BaseSettings]) -> dict[str, type[BaseSettings]]:
    """A settings class and its nested settings models (each reads its own prefix), by name."""
    found = {model.__name__: model}
    for field in model.model_fields.values():
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseSettings):
            found |= _models(sub)
    return found


def _env_name(model: type[BaseSettings] | None, loc: tuple[Any, ...]) -> str:
    """Where an error is, as the environment variable it came from when that is known: a
    nested model's field is reported as ``WRITER_BATCH_POINTS``, not ``batch_points``."""
    field = model.model_fields.get(str(loc[0])) if model is not None and len(loc) == 1 else None
    if model is not None and field is not None and field.validation_alias is None:
        return (str(model.model_config.get("env_prefix") or "") + str(loc[0])).upper()
    return ".".join(str(part) for part in loc)


def _describe(error: Any, model: type[BaseSettings] | None = None) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    where = _env_name(model, tuple(error.get("loc", ())))
    return f"{where}: {message}" if where else message


def load_settings(settings_cls: Callable[[], S]) -> S:
    """The service's settings from the environment; exit status 2 with one line if refused."""
    try:
        return settings_cls()
    except ValidationError as e:
        # A nested model's error escapes as that model's own (its title is the model's name).
        models = _models(settings_cls) if isinstance(settings_cls, type) else {}
        model = models.get(e.title)
        problems = "; ".join(_describe(err, model) for err in e.errors())
        sys.stderr.write(f"error: configuration refused: {problems}\n")
        raise SystemExit(2) from None


def serve(
    name: str,
    settings: S,
    create_app: Callable[[S], ASGIApp],
    workers: int = 1,
) -> None:
    """Serve ``create_app(settings)`` until SIGTERM/SIGINT; logging must be configured."""
    options: dict[str, Any] = {
        "host": settings.bind_host,
        "port": settings.port,
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": int(settings.shutdown_timeout_s),
    }
    if workers <= 1:
        uvicorn.run(create_app(settings), **options)
        return
    os.environ[_WORKER_SPEC] = "|".join((name, _path(type(settings)), _path(create_app)))
    worker_processes.run(name, f"{__name__}:worker_app", workers, **options)


def run(
    name: str,
    settings_cls: Callable[[], S],
    create_app: Callable[[S], ASGIApp],
    workers: Callable[[S], int] | None = None,
) -> None:
    """Build settings, configure logging, serve ``create_app(settings)`` in one process or in
    ``workers(settings)`` processes sharing the port."""
    settings = load_settings(settings_cls)
    configure_logging(name, settings.log_level)
    serve(name, settings, create_app, workers(settings) if workers else 1)


def worker_app() -> ASGIApp:
    """The app of one worker process: the parent's service, settings and logging rebuilt."""
    worker_processes.follow_parent()
    name, settings_path, factory_path = os.environ[_WORKER_SPEC].split("|")
    settings = load_settings(_load(settings_path))
    configure_logging(name, settings.log_level)
    app: ASGIApp = _load(factory_path)(settings)
    return app


def _path(obj: Any) -> str:
    return f"{obj.__module__}:{obj.__qualname__}"


def _load(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)
