"""create_once: a failed create is looked for before it is sent again, and only then.

Label Studio's own answers are in tests/labelstudio/test_labelstudio_send_once.py; here the
rule itself, with plain functions standing for the request and the lookup.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

import pytest

from activelabel.annotation.send_once import SEND_ONCE, create_once
from activelabel.errors import ActiveLabelError, ServiceUnavailableError


@contextmanager
def talking(what):
    yield


class Server:
    """Answers ``create`` with the errors given, in turn, then with "made"; counts what it made."""

    def __init__(self, *errors: Exception, done_anyway: bool = False) -> None:
        self.errors, self.done_anyway = list(errors), done_anyway
        self.made: list[dict] = []
        self.looked = 0

    def create(self, options):
        if self.errors:
            if self.done_anyway:
                self.made.append(options)
            raise self.errors.pop(0)
        self.made.append(options)
        return "made"

    def landed(self):
        self.looked += 1
        return "found" if self.made else None


def test_a_create_that_works_is_sent_once_without_the_sdks_retries():
    server = Server()
    assert create_once(talking, "creating", server.create, server.landed) == "made"
    assert server.made == [SEND_ONCE] and SEND_ONCE == {"max_retries": 0} and server.looked == 0


def test_a_failed_create_that_was_done_is_found_and_not_sent_again(caplog):
    server = Server(ServiceUnavailableError("Label Studio failed while creating (HTTP 500)"), done_anyway=True)
    with caplog.at_level(logging.WARNING):
        assert create_once(talking, "creating", server.create, server.landed, first_pause_s=0) == "found"
    assert len(server.made) == 1 and server.looked == 1
    assert "(HTTP 500); it was done all the same" in caplog.text


def test_a_failed_create_that_was_not_done_is_sent_again_with_growing_pauses(caplog):
    server = Server(ServiceUnavailableError("a"), ServiceUnavailableError("b"))
    with caplog.at_level(logging.WARNING):
        assert create_once(talking, "creating", server.create, server.landed, first_pause_s=0.01) == "made"
    assert len(server.made) == 1 and server.looked == 2
    assert "a; it was not done: trying again in 0 s (try 2 of 3)" in caplog.text
    assert "b; it was not done: trying again in 0 s (try 3 of 3)" in caplog.text


def test_the_last_failure_is_raised_when_no_try_was_done():
    server = Server(*(ServiceUnavailableError(f"failure {i}") for i in range(3)))
    with pytest.raises(ServiceUnavailableError, match="failure 2"):
        create_once(talking, "creating", server.create, server.landed, first_pause_s=0)
    assert server.made == [] and server.looked == 3


def test_a_refusal_is_raised_at_once_without_a_lookup():
    server = Server(ActiveLabelError("refused (HTTP 400)"))
    with pytest.raises(ActiveLabelError, match="HTTP 400"):
        create_once(talking, "creating", server.create, server.landed)
    assert server.looked == 0
