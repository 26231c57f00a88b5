"""One mapping from Label Studio's answers to activelabel's typed errors (``ls_errors``).

The SDK's ``ApiError`` and httpx's errors are raised here as the SDK raises them; the real-server
paths that end in these errors are covered in ``tests/labelstudio`` (an unreachable server, a
wrong token, a served image that answers 404).
"""

from __future__ import annotations

import httpx
import pytest
from label_studio_sdk.core.api_error import ApiError

from activelabel.annotation.ls_errors import (
    LabelStudioAuthError,
    LabelStudioError,
    LabelStudioUnavailableError,
    deleted_unless_gone,
    error_for_status,
    typed_errors,
)
from activelabel.errors import ServiceUnavailableError

URL = "http://ls.example:8080"
KEY = "secret-key-0123456789"


def _scrub(text: str) -> str:
    return text.replace(KEY, "***")


@pytest.mark.parametrize(("status", "kind", "words"), [
    (401, LabelStudioAuthError, "authentication failed at http://ls.example:8080: check LABEL_STUDIO_API_KEY "
                                "(HTTP 401 while pushing)"),
    (403, LabelStudioAuthError, "(HTTP 403 while pushing)"),
    (500, LabelStudioUnavailableError, "Label Studio at http://ls.example:8080 failed while pushing (HTTP 500); "
                                       "retry later"),
    (503, LabelStudioUnavailableError, "(HTTP 503); retry later"),
    (408, LabelStudioUnavailableError, "(HTTP 408); retry later"),
    (429, LabelStudioUnavailableError, "(HTTP 429); retry later"),
    (None, LabelStudioUnavailableError, "(HTTP None); retry later"),
    (400, LabelStudioError, "Label Studio at http://ls.example:8080 refused pushing (HTTP 400): "
                            '{"detail": "token ***"}'),
])
def test_each_status_maps_to_one_error_type_and_wording(status, kind, words):
    error = error_for_status(URL, "pushing", status, {"detail": f"token {KEY}"}, _scrub)
    assert type(error) is kind
    assert words in str(error)
    assert KEY not in str(error)
    assert isinstance(error, ServiceUnavailableError) is (kind is LabelStudioUnavailableError)


def test_typed_errors_words_sdk_and_transport_failures_alike():
    with pytest.raises(LabelStudioError, match=r"refused listing \(HTTP 400\): bad \*\*\*") as caught:
        with typed_errors(URL, "listing", scrub=_scrub):
            raise ApiError(status_code=400, body=f"bad {KEY}")
    assert type(caught.value) is LabelStudioError
    with pytest.raises(LabelStudioUnavailableError, match="timed out while listing; is the server overloaded"):
        with typed_errors(URL, "listing"):
            raise httpx.ReadTimeout("slow")
    with pytest.raises(LabelStudioUnavailableError,
                       match=r"unreachable while listing \(ConnectError: refused \*\*\*\); is the server running"):
        with typed_errors(URL, "listing", scrub=_scrub):
            raise httpx.ConnectError(f"refused {KEY}")


def test_without_refusals_a_4xx_stays_the_sdks_error_and_a_5xx_is_typed():
    with pytest.raises(ApiError) as caught:
        with typed_errors(URL, "creating a webhook", refusals=False):
            raise ApiError(status_code=403, body="reserved network address")
    assert caught.value.status_code == 403
    with pytest.raises(LabelStudioUnavailableError, match="failed while creating a webhook"):
        with typed_errors(URL, "creating a webhook", refusals=False):
            raise ApiError(status_code=502, body="bad gateway")


def test_a_delete_that_finds_it_gone_is_not_an_error_but_other_refusals_are():
    calls: list[str] = []

    def gone() -> None:
        calls.append("gone")
        raise ApiError(status_code=404, body={"detail": "Not found."})

    def refused() -> None:
        raise ApiError(status_code=403, body="no")

    assert deleted_unless_gone(lambda: calls.append("deleted")) is True
    assert deleted_unless_gone(gone) is False
    assert calls == ["deleted", "gone"]
    with pytest.raises(ApiError):
        deleted_unless_gone(refused)
