"""Structured logging set-up for every btogether command (structlog, to stderr)."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog


class _StderrLoggerFactory:
    """A PrintLogger on whatever ``sys.stderr`` is *now*.

    structlog's own factory binds the stream once; when something swaps stderr (a
    test runner capturing output, a daemon redirecting it) and closes the old one,
    every later log call would fail with "I/O operation on closed file".
    """

    def __call__(self, *args: Any) -> structlog.PrintLogger:
        return structlog.PrintLogger(file=sys.stderr)


def configure_logging(level: str = "warning", json: bool = False) -> None:
    """Send structlog events to stderr, as JSON lines or as readable key=value lines."""
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.WARNING)
    logging.basicConfig(stream=sys.stderr, level=numeric, format="%(message)s")
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_StderrLoggerFactory(),
        cache_logger_on_first_use=False,
    )
