"""The library's warnings and errors (`notify.*` loggers: alert routing, senders, pacing) in the
run's logs in the Prefect UI, for the run's duration; the library itself never imports Prefect."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from prefect import get_run_logger


class _ToRunLogger(logging.Handler):
    def __init__(self, target: logging.LoggerAdapter[logging.Logger]) -> None:
        super().__init__(level=logging.WARNING)
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.target.log(record.levelno, "%s: %s", record.name, record.getMessage())
        except Exception:  # a log line must never fail a run
            self.handleError(record)


@contextmanager
def library_logs_in_run(name: str = "notify") -> Iterator[None]:
    """Forward WARNING and above of `name`'s loggers to this flow run's logger."""
    handler = _ToRunLogger(get_run_logger())  # type: ignore[arg-type]
    library = logging.getLogger(name)
    library.addHandler(handler)
    try:
        yield
    finally:
        library.removeHandler(handler)
