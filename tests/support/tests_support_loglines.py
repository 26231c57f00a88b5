"""A logging handler that keeps the WARNING lines a test's code said, in order.

For code that runs in another thread or outside pytest's ``caplog`` (a watch loop, a lease
holder), where a test asserts how often a line was said.
"""

from __future__ import annotations

import logging


class WarningLines(logging.Handler):
    """Attach to a logger; ``lines`` holds each WARNING (or worse) record's message."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
