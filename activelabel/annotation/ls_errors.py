"""Label Studio's failures as activelabel's typed errors, said one way wherever they happen.

Every call to Label Studio (the SDK's, a served image fetched as a browser would, a webhook's
registration) maps an answer to the same errors, so a caller (and a round that resumes) tells
"retry later" from "fix the key" from "Label Studio refused this" by type, not by wording:

- 401/403: :class:`LabelStudioAuthError` (check ``LABEL_STUDIO_API_KEY``);
- 5xx, 408, 429, a timeout, a dropped connection: :class:`LabelStudioUnavailableError`, which
  is a :class:`~activelabel.errors.ServiceUnavailableError` (a create that may have been done
  anyway, :mod:`~activelabel.annotation.send_once`);
- any other 4xx: :class:`LabelStudioError` with the start of Label Studio's answer.

Messages name the server and what was being done, never the API key.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from activelabel.errors import ActiveLabelError, ServiceUnavailableError

__all__ = [
    "LabelStudioAuthError",
    "LabelStudioError",
    "LabelStudioProjectError",
    "LabelStudioUnavailableError",
    "deleted_unless_gone",
    "error_for_status",
    "typed_errors",
]


class LabelStudioError(ActiveLabelError):
    """Label Studio answered something this adapter cannot use (e.g. a 4xx on a valid request)."""


class LabelStudioUnavailableError(LabelStudioError, ServiceUnavailableError):
    """The Label Studio server cannot be reached, timed out or failed (5xx). Retry later."""


class LabelStudioAuthError(LabelStudioError):
    """Label Studio refused the API key (401/403). Never carries the key."""


class LabelStudioProjectError(LabelStudioError):
    """The project with the campaign's title exists but does not fit the campaign (other labels)."""


def _unscrubbed(text: str) -> str:
    return text


def is_unavailable(status: int | None) -> bool:
    """Whether an HTTP status says "retry later" (no status: the answer never came)."""
    return status is None or status >= 500 or status in (408, 429)


def error_for_status(url: str, what: str, status: int | None, body: Any = "",
                     scrub: Callable[[str], str] = _unscrubbed) -> LabelStudioError:
    """The typed error for Label Studio at ``url`` answering ``status`` while ``what``.

    ``body`` (Label Studio's answer, text or JSON) is quoted, scrubbed and cut to 300 characters,
    for a refusal only: a 5xx page says nothing a user can act on.
    """
    if status in (401, 403):
        return LabelStudioAuthError(
            f"authentication failed at {url}: check LABEL_STUDIO_API_KEY (HTTP {status} while {what})")
    if is_unavailable(status):
        return LabelStudioUnavailableError(f"Label Studio at {url} failed while {what} (HTTP {status}); retry later")
    text = body if isinstance(body, str) else json.dumps(body, default=str)
    return LabelStudioError(f"Label Studio at {url} refused {what} (HTTP {status}): {scrub(text)[:300]}")


@contextmanager
def typed_errors(url: str, what: str, *, scrub: Callable[[str], str] = _unscrubbed,
                 refusals: bool = True) -> Iterator[None]:
    """Turn the SDK's ``ApiError`` and httpx's transport errors raised inside into typed errors
    (see the module's docstring) naming ``url`` and ``what``; ``scrub`` hides secrets in what is
    quoted. With ``refusals=False`` a 4xx ``ApiError`` is raised as it is, for a caller that
    words its own refusals (a webhook's registration adds Label Studio's SSRF hint).
    """
    from label_studio_sdk.core.api_error import ApiError

    try:
        yield
    except ApiError as exc:
        if not refusals and not is_unavailable(exc.status_code):
            raise
        raise error_for_status(url, what, exc.status_code, exc.body, scrub) from None
    except httpx.TimeoutException:
        raise LabelStudioUnavailableError(
            f"Label Studio at {url} timed out while {what}; is the server overloaded? Retry later") from None
    except httpx.TransportError as exc:
        raise LabelStudioUnavailableError(
            f"Label Studio at {url} is unreachable while {what} ({type(exc).__name__}: {scrub(str(exc))}); "
            "is the server running?"
        ) from None


def deleted_unless_gone(delete: Callable[[], Any]) -> bool:
    """Run ``delete`` (an SDK delete call); False when Label Studio answered 404 because it was
    gone already (another process deleted it first), True when this call deleted it. Any other
    error is raised as it is, for :func:`typed_errors` around it to word."""
    from label_studio_sdk.core.api_error import ApiError

    try:
        delete()
    except ApiError as exc:
        if exc.status_code == 404:
            return False
        raise
    return True
