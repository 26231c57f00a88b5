"""Creating things in Label Studio exactly once, though a failed answer may hide a done request.

The SDK resends any request answered 5xx, 408, 409 or 429 (``max_retries``, 2 by default), and
that is wrong for a create: Label Studio on SQLite under load answers a project create 500
("database is locked" in ``ProjectSummary.reset``) *after* it wrote the project, and the resent
POST makes a second one (seen in this project's CI: one create, three projects). A task import
answered the same way would import its tasks twice.

So every create goes out with ``max_retries = 0`` (:data:`SEND_ONCE`), and after a failure that
may have been done anyway (a 5xx, a timeout, a dropped connection) :func:`create_once` first asks
the server whether it was (``landed``): what it finds is used, and only a create that did not land
is sent again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from activelabel.errors import ServiceUnavailableError

log = logging.getLogger(__name__)

#: ``request_options`` for a request the SDK must not resend by itself.
SEND_ONCE: dict[str, Any] = {"max_retries": 0}

#: How many times a create that did not land is sent, and the pause before the second try (s),
#: doubled for each later one: the SDK's own retries waited 0.5 and 1 s.
CREATE_ATTEMPTS = 3
FIRST_PAUSE_S = 1.0

Result = TypeVar("Result")


def create_once(
    talking: Callable[[str], AbstractContextManager[None]],
    what: str,
    create: Callable[[dict[str, Any]], Result],
    landed: Callable[[], Result | None],
    *,
    attempts: int = CREATE_ATTEMPTS,
    first_pause_s: float = FIRST_PAUSE_S,
) -> Result:
    """``create(SEND_ONCE)`` inside ``talking(what)``; after a failure the server may have done
    anyway, ``landed()`` says whether it did (its result, or ``None``) before the create is sent again.

    ``talking`` turns SDK and transport errors into activelabel's typed errors; a
    :class:`~activelabel.errors.ServiceUnavailableError` (5xx, timeout, unreachable) is the one
    that may hide a done create. Any other error (a 4xx refusal) is raised at once. Raises the
    last :class:`ServiceUnavailableError` when ``attempts`` creates failed and none landed.
    """
    for attempt in range(1, attempts + 1):
        try:
            with talking(what):
                return create(SEND_ONCE)
        except ServiceUnavailableError as error:
            found = landed()
            if found is not None:
                log.warning("%s; it was done all the same, so it is used and not sent again", error)
                return found
            if attempt == attempts:
                raise
            pause = first_pause_s * 2 ** (attempt - 1)
            log.warning("%s; it was not done: trying again in %.0f s (try %d of %d)", error, pause,
                        attempt + 1, attempts)
            time.sleep(pause)
    raise AssertionError("unreachable")  # pragma: no cover
