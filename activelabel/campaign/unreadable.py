"""The warning every step gives when it records unreadable files.

Whoever runs the command should see each file that will never be labeled, wherever it was found:
the evaluation draw at creation, the cold-start draw, scoring, training, a folder's new files
(trial 15 F8: files found by the evaluation draw were only counted by `status`). One wording:
``<where>: <what> <path> cannot be read (<reason>); recorded and never sent to annotators``, the
first ``NAMED`` files by name, then one line with the count of the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

NAMED = 10


def shown_path(root: Path | None) -> Callable[[str], str]:
    """A file's path for a message: the data folder joined with the URI (the URI when the data
    has no folder)."""
    return (lambda uri: str(root / uri)) if root is not None else (lambda uri: uri)


def warn_unreadable(log: logging.Logger, where: str, problems: Sequence[tuple[str, str]], *,
                    shown: Callable[[str], str] = str, what: str = "image") -> None:
    """Log one WARNING per recorded ``(uri, reason)`` (the first ``NAMED``), then the rest's count."""
    for uri, reason in problems[:NAMED]:
        log.warning("%s: %s %s cannot be read (%s); recorded and never sent to annotators",
                    where, what, shown(uri), reason)
    if len(problems) > NAMED:
        log.warning("%s: %d more %ss cannot be read (see `activelabel status`)", where, len(problems) - NAMED, what)
