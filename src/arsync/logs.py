"""Logging: structlog, one line per unit of work; readable on a terminal, JSON otherwise."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

#: keys whose values are never written, whatever logs them
SECRET_KEYS = frozenset(
    {"access_token", "refresh_token", "client_secret", "authorization", "code", "password"}
)


def _redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if key.lower() in SECRET_KEYS:
            event[key] = "<hidden>"
    return event


def configure(level: str = "info", fmt: str = "auto") -> None:
    """Send arsync's logs to stderr: `console` on a terminal (or asked), `json` otherwise."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            # JSON carries the traceback as text ("exception"); the console renders its own
            *([structlog.processors.format_exc_info] if use_json else []),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
