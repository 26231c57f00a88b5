"""Label Studio webhooks as a wake-up signal for the annotation sync.

Label Studio POSTs to a webhook when an annotation is created or updated, so the next sync can
run at once instead of at the next poll. The webhook is only a wake-up signal: the data is always
pulled through the API afterwards, because Label Studio delivers webhooks on a best-effort basis
(1 s timeout, no retries) and a missed one only delays the sync until the next poll.

- :class:`WebhookReceiver` is a small threaded HTTP server (stdlib only) that accepts POSTs
  carrying the shared secret in the ``X-Activelabel-Secret`` header, records the event and
  wakes up whoever waits in :meth:`WebhookReceiver.wait_for_event`.
- :func:`register_webhook` creates (or finds again and updates) the project's webhook in Label
  Studio, pointing at the receiver and sending the secret header.
- :func:`unregister_webhook` removes it again when the receiver stops (best effort: a server
  that cannot be reached then gets a warning naming the webhook to delete by hand).
- :func:`generate_secret` makes a fresh secret.

Lifetime: ``watch --webhook`` registers the webhook when it starts and removes it on every exit
(end, stop rule, Ctrl-C, SIGTERM). A run killed without a chance to clean up (SIGKILL, a power
cut) leaves it behind; the next registration for the project deletes such a stale webhook of
ours (same receiver path, our secret header) when nothing answers at its URL any more, and keeps
it when a receiver answers there (a second ``watch`` on the same project: each keeps its own).

The secret never appears in a log line, an error message or a repr.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx

from activelabel.annotation.labelstudio import LabelStudioError, LabelStudioUnavailableError
from activelabel.annotation.send_once import create_once
from activelabel.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_PATH",
    "MAX_BODY_BYTES",
    "SECRET_HEADER",
    "WEBHOOK_ACTIONS",
    "LabelStudioWebhookError",
    "WebhookReceiver",
    "PROBE_SECONDS",
    "generate_secret",
    "receiver_answers",
    "register_webhook",
    "unregister_webhook",
]

SECRET_HEADER = "X-Activelabel-Secret"
DEFAULT_PATH = "/activelabel/webhook"
MAX_BODY_BYTES = 5 * 1024 * 1024
# Deletions matter too: a deleted annotation stops being a vote at the next sync.
WEBHOOK_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED")


class LabelStudioWebhookError(LabelStudioError):
    """Registering the webhook in Label Studio failed. Names the server, never the token or secret."""


def generate_secret() -> str:
    """A fresh random secret for the ``X-Activelabel-Secret`` header."""
    return secrets.token_urlsafe(32)


def _check_secret(secret: Any) -> str:
    if not isinstance(secret, str) or not secret:
        raise ConfigError("the webhook secret must be a non-empty string (see generate_secret())")
    if not secret.isascii() or not secret.isprintable() or secret != secret.strip():
        raise ConfigError("the webhook secret must be printable ASCII without surrounding spaces")
    return secret


# -- receiver ---------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    receiver: WebhookReceiver


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 10  # seconds a client may take to send its request
    server_version = "activelabel-webhook"
    sys_version = ""

    # Quiet the default stderr access log; refusals and acceptances are logged by the receiver.
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug("webhook %s: " + format, self.client_address[0], *args)

    def _reply(self, status: HTTPStatus, body: dict, *, close: bool = False, allow: str | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if allow:
            self.send_header("Allow", allow)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _refuse(self, status: HTTPStatus, reason: str, *, close: bool = True, allow: str | None = None) -> None:
        log.warning("webhook %s: refused %s %s (%d %s): %s", self.client_address[0], self.command,
                    self._path(), status.value, status.phrase, reason)
        self._reply(status, {"ok": False, "error": reason}, close=close, allow=allow)

    def _path(self) -> str:
        return urlsplit(self.path).path

    def _other(self) -> None:
        if self.command == "HEAD" and self._path() == self.server.receiver.path:
            # The liveness probe of register_webhook (another watch deciding whether our webhook
            # is stale): answered, records nothing, needs no secret.
            log.debug("webhook %s: answered a liveness probe", self.client_address[0])
            self._reply(HTTPStatus.OK, {"ok": True})
            return
        if self._path() != self.server.receiver.path:
            self._refuse(HTTPStatus.NOT_FOUND, "unknown path")
        else:
            self._refuse(HTTPStatus.METHOD_NOT_ALLOWED, f"method {self.command} not allowed", allow="POST")

    do_GET = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _other  # noqa: N815

    def do_POST(self) -> None:  # noqa: N802
        receiver = self.server.receiver
        if self._path() != receiver.path:
            self._refuse(HTTPStatus.NOT_FOUND, "unknown path")
            return
        given = self.headers.get(SECRET_HEADER)
        if given is None:
            self._refuse(HTTPStatus.UNAUTHORIZED, f"no {SECRET_HEADER} header")
            return
        if not receiver._secret_matches(given):
            self._refuse(HTTPStatus.UNAUTHORIZED, f"wrong {SECRET_HEADER} header")
            return
        if self.headers.get("Transfer-Encoding"):
            self._refuse(HTTPStatus.LENGTH_REQUIRED, "chunked bodies are not accepted; send Content-Length")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length < 0:
                raise ValueError
        except ValueError:
            self._refuse(HTTPStatus.BAD_REQUEST, "invalid Content-Length")
            return
        if length > MAX_BODY_BYTES:
            self._refuse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                         f"body of {length} bytes is over the {MAX_BODY_BYTES} byte limit")
            return
        try:
            body = self.rfile.read(length)
        except OSError as exc:  # timed out or reset while sending
            log.warning("webhook %s: could not read the request body (%s)", self.client_address[0],
                        type(exc).__name__)
            self.close_connection = True
            return
        if len(body) != length:
            self._refuse(HTTPStatus.BAD_REQUEST, "body shorter than Content-Length")
            return
        try:
            payload = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            self._refuse(HTTPStatus.BAD_REQUEST, "body is not JSON")
            return
        if not isinstance(payload, dict):
            self._refuse(HTTPStatus.BAD_REQUEST, f"body is a JSON {type(payload).__name__}, not an object")
            return
        action = payload.get("action")
        if not isinstance(action, str) or not action:
            self._refuse(HTTPStatus.BAD_REQUEST, "body has no 'action' string")
            return
        event = receiver._record(payload, self.client_address[0])
        log.info("webhook %s: accepted %s (project %s, sample %s, annotation %s)", self.client_address[0],
                 event["action"], event["project_id"], event["sample_id"], event["annotation_id"])
        self._reply(HTTPStatus.OK, {"ok": True})


def _field(obj: Any, *keys: str) -> Any:
    """``obj[k1][k2]...`` where every level is a dict, else None."""
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _scalar(value: Any) -> int | str | None:
    """Keep ids that are plain numbers or short strings; drop anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and 0 < len(value) <= 200:
        return value
    return None


class WebhookReceiver:
    """A threaded HTTP server receiving Label Studio webhooks as wake-up signals.

    Binds ``host`` (loopback by default) and ``port`` (0 picks a free one) on :meth:`start`.
    A POST to ``path`` carrying ``X-Activelabel-Secret: <secret>`` and a JSON object with an
    ``action`` string is recorded and answered ``200 {"ok": true}``; anything else is refused
    (401 secret, 400 body, 404 path, 405 method, 413 over 5 MB) and changes nothing.

    Usage::

        with WebhookReceiver(secret) as receiver:
            register_webhook(annotator.client, annotator.project_id, receiver.url, secret)
            while True:
                receiver.wait_for_event(timeout=poll_seconds)  # woken early by a webhook
                sync()
    """

    def __init__(self, secret: str, host: str = "127.0.0.1", port: int = 0, path: str = DEFAULT_PATH) -> None:
        self._secret = _check_secret(secret).encode("ascii")
        if not isinstance(path, str) or not path.startswith("/") or "?" in path or "#" in path:
            raise ConfigError(f"webhook path {path!r} must start with '/' and hold no query")
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(f"webhook port {port!r} must be 0 (any free port) to 65535")
        self.host = host
        self.path = path
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._events_received = 0
        self._action_counts: dict[str, int] = {}
        self._last_event: dict | None = None
        self._sample_ids: set[int | str] = set()
        self._annotation_ids: set[int | str] = set()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"WebhookReceiver(host={self.host!r}, port={self.port}, path={self.path!r}, {state})"

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        """The bound port once started (the requested one before)."""
        return self._server.server_address[1] if self._server is not None else self._port

    @property
    def url(self) -> str:
        """The URL Label Studio should POST to, e.g. ``http://127.0.0.1:PORT/activelabel/webhook``."""
        host = self.host
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}{self.path}"

    def start(self) -> WebhookReceiver:
        """Bind and serve in a daemon thread (no-op when already running)."""
        if self._server is not None:
            return self
        cls = _Server6 if ":" in self.host else _Server
        try:
            server = cls((self.host, self._port), _Handler)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen for webhooks on {self.host}:{self._port} ({exc.strerror or exc}); "
                "choose another host or port (0 picks a free one)"
            ) from None
        server.receiver = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name=f"activelabel-webhook-{self.port}", daemon=True)
        self._thread.start()
        log.info("webhook receiver listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving and release the port (no-op when not running)."""
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None
        log.info("webhook receiver on %s:%d stopped", self.host, server.server_address[1])

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- events -----------------------------------------------------------------------------

    def _secret_matches(self, given: str) -> bool:
        return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self._secret)

    def _record(self, payload: dict, client: str) -> dict:
        event = {
            "action": payload["action"],
            "project_id": _scalar(_field(payload, "project", "id")),
            "task_id": _scalar(_field(payload, "task", "id")),
            "sample_id": _scalar(_field(payload, "task", "data", "sample_id")),
            "annotation_id": _scalar(_field(payload, "annotation", "id")),
            "received_at": time.time(),
            "client": client,
        }
        with self._lock:
            self._events_received += 1
            self._action_counts[event["action"]] = self._action_counts.get(event["action"], 0) + 1
            self._last_event = event
            if event["sample_id"] is not None:
                self._sample_ids.add(event["sample_id"])
            if event["annotation_id"] is not None:
                self._annotation_ids.add(event["annotation_id"])
            self._event.set()
        return event

    def wait_for_event(self, timeout: float | None) -> bool:
        """True when an event arrived since the last call (waiting up to ``timeout`` seconds).

        Clears the signal, so several events coalesce into one wake-up: the sync that follows
        pulls everything anyway.
        """
        if self._event.wait(timeout):
            self._event.clear()
            return True
        return False

    @property
    def events_received(self) -> int:
        """How many events were accepted since start-up."""
        with self._lock:
            return self._events_received

    @property
    def action_counts(self) -> dict[str, int]:
        """Accepted events per action, e.g. ``{"ANNOTATION_CREATED": 3}``."""
        with self._lock:
            return dict(self._action_counts)

    @property
    def last_event(self) -> dict | None:
        """The last accepted event: action, project_id, task_id, sample_id, annotation_id, received_at."""
        with self._lock:
            return dict(self._last_event) if self._last_event is not None else None

    def pop_sample_ids(self) -> set[int | str]:
        """The ``task.data.sample_id`` values seen since the last call (then forgotten)."""
        with self._lock:
            found, self._sample_ids = self._sample_ids, set()
        return found

    def pop_annotation_ids(self) -> set[int | str]:
        """The annotation ids seen since the last call (then forgotten)."""
        with self._lock:
            found, self._annotation_ids = self._annotation_ids, set()
        return found


# -- registration -----------------------------------------------------------------------------


def _base_url(client: Any) -> str:
    try:
        return str(client._client_wrapper.get_base_url()).rstrip("/")
    except Exception:  # an unexpected client: the message still says what failed
        return "<unknown Label Studio URL>"


def _api_key(client: Any) -> str | None:
    wrapper = getattr(client, "_client_wrapper", None)
    for holder in (getattr(wrapper, "_tokens_client", None), wrapper):
        key = getattr(holder, "api_key", None)
        if isinstance(key, str) and key:
            return key
    return None


def _scrub(text: str, *hidden: str | None) -> str:
    for value in hidden:
        if value:
            text = text.replace(value, "***")
    return text


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)


def _is_ours(webhook: Any, path: str) -> bool:
    """A webhook this module registered: our receiver path and our secret header."""
    headers = _get(webhook, "headers") or {}
    return urlsplit(str(_get(webhook, "url") or "")).path == path and isinstance(headers, dict) and SECRET_HEADER in headers


PROBE_SECONDS = 2.0  # how long a receiver may take to answer the liveness probe before it counts as gone


def receiver_answers(url: str, timeout: float = PROBE_SECONDS) -> bool:
    """Whether something answers at webhook URL ``url`` (a ``HEAD`` request, ``timeout`` seconds
    for connecting and answering): False when the connection is refused, times out or fails, or a
    proxy answers 502/503/504 (nothing behind it); True for any other answer. A receiver of this
    module answers ``HEAD`` on its path with 200 and records nothing.
    """
    try:
        response = httpx.head(url, timeout=timeout, follow_redirects=False)
    except (httpx.TransportError, httpx.TimeoutException, ValueError):
        return False
    return response.status_code not in (502, 503, 504)


def unregister_webhook(client: Any, webhook_id: int) -> bool:
    """Delete webhook ``webhook_id`` from Label Studio; True when it is gone (or was already).

    Best effort, for a receiver that stops: when Label Studio cannot be reached or refuses, a
    warning names the server and the webhook to delete by hand (Project settings > Webhooks),
    and False is returned; nothing is raised.
    """
    from label_studio_sdk.core.api_error import ApiError

    base = _base_url(client)
    try:
        client.webhooks.delete(id=int(webhook_id))
    except ApiError as exc:
        if exc.status_code == 404:
            return True
        log.warning("Label Studio %s refused deleting webhook %d (HTTP %s); delete it in the project's "
                    "settings (Webhooks), or the next `watch --webhook` replaces it", base, webhook_id,
                    exc.status_code)
        return False
    except (httpx.TransportError, httpx.TimeoutException) as exc:
        log.warning("Label Studio %s is unreachable (%s): webhook %d stays registered; delete it in the "
                    "project's settings (Webhooks), or the next `watch --webhook` replaces it", base,
                    type(exc).__name__, webhook_id)
        return False
    log.info("Label Studio %s: deleted webhook %d", base, webhook_id)
    return True


def _webhooks_to(client: Any, project_id: int, url: str) -> list[Any]:
    """The project's webhooks to ``url``, oldest first."""
    hooks = [w for w in client.webhooks.list(project=str(project_id))
             if _get(w, "project") == project_id and _get(w, "url") == url]
    return sorted(hooks, key=lambda w: int(_get(w, "id")))


@contextmanager
def _unavailable_as_typed(base: str, what: str) -> Iterator[None]:
    """A 5xx, 408, 429, timeout or dropped connection as :class:`LabelStudioUnavailableError`,
    which :func:`~activelabel.annotation.send_once.create_once` takes for "maybe done"."""
    from label_studio_sdk.core.api_error import ApiError

    try:
        yield
    except ApiError as exc:
        if exc.status_code is None or exc.status_code >= 500 or exc.status_code in (408, 429):
            raise LabelStudioUnavailableError(
                f"Label Studio at {base} failed while {what} (HTTP {exc.status_code}); retry later") from None
        raise
    except httpx.TimeoutException:
        raise LabelStudioUnavailableError(f"Label Studio at {base} timed out while {what}; retry later") from None
    except httpx.TransportError as exc:
        raise LabelStudioUnavailableError(
            f"Label Studio at {base} is unreachable while {what} ({type(exc).__name__}); is the server running?"
        ) from None


def _create_webhook_once(client: Any, project_id: int, url: str, settings: dict[str, Any], what: str) -> int:
    """Create the project's webhook to ``url``, sent once (:mod:`~activelabel.annotation.send_once`);
    its id. A webhook made twice (Label Studio on SQLite reruns a request that hit "database is
    locked", even after it wrote the webhook) would send every annotation event twice: the newer
    copies are deleted and the oldest is used."""
    base = _base_url(client)
    created = create_once(
        lambda doing: _unavailable_as_typed(base, doing), what,
        lambda once: client.webhooks.create(url=url, project=project_id, **settings, request_options=once),
        landed=lambda: next(iter(_webhooks_to(client, project_id, url)), None),
    )
    from label_studio_sdk.core.api_error import ApiError

    made = _webhooks_to(client, project_id, url) or [created]
    for extra in made[1:]:
        try:
            client.webhooks.delete(id=int(_get(extra, "id")))
        except ApiError as exc:
            if exc.status_code != 404:  # 404: gone already
                raise
        log.warning("Label Studio %s: project %d: webhook to %s was made %d times from one create (ids %s): on "
                    "SQLite, Label Studio reruns a create that hit 'database is locked'. activelabel uses the "
                    "oldest, id %d, and deleted id %d.", base, project_id, url, len(made),
                    ", ".join(str(_get(w, "id")) for w in made), int(_get(made[0], "id")), int(_get(extra, "id")))
    return int(_get(made[0], "id"))


def register_webhook(client: Any, project_id: int, url: str, secret: str) -> int:
    """Make Label Studio POST annotation events of ``project_id`` to ``url``; returns the webhook id.

    Idempotent: an existing webhook of the project with the same URL is updated (actions,
    payload, active, secret header) and reused, never duplicated; a new one is created once, even
    when Label Studio answers 5xx after making it or makes it twice (:func:`_create_webhook_once`). Other webhooks of ours (the
    project's webhooks to the same receiver path that send our secret header) are probed
    (:func:`receiver_answers`, at most :data:`PROBE_SECONDS` each): one whose receiver answers
    belongs to another running ``watch`` and is kept; one where nothing answers was left by a
    run that was killed and is deleted, so dead webhooks do not pile up.
    """
    _check_secret(secret)
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"webhook URL {url!r} must be an http:// or https:// URL")
    project_id = int(project_id)
    from label_studio_sdk.core.api_error import ApiError

    base = _base_url(client)
    hidden = (secret, _api_key(client))
    settings: dict[str, Any] = dict(
        actions=list(WEBHOOK_ACTIONS),
        send_payload=True,
        send_for_all_actions=False,  # Label Studio's default (True) ignores the action list
        is_active=True,
        headers={SECRET_HEADER: secret},
    )
    doing = f"listing the webhooks of project {project_id}"
    try:
        hooks = [w for w in client.webhooks.list(project=str(project_id)) if _get(w, "project") == project_id]
        mine = sorted((w for w in hooks if _get(w, "url") == url), key=lambda w: int(_get(w, "id")))
        for stale in hooks:
            if _get(stale, "url") != url and _is_ours(stale, parts.path):
                stale_id = int(_get(stale, "id"))
                if receiver_answers(str(_get(stale, "url"))):
                    log.info("Label Studio %s: project %d: kept webhook %d to %s (its receiver answers: "
                             "another watch is listening)", base, project_id, stale_id, _get(stale, "url"))
                    continue
                doing = f"deleting stale webhook {stale_id} of project {project_id}"
                client.webhooks.delete(id=stale_id)
                log.info("Label Studio %s: project %d: deleted stale webhook %d to %s", base, project_id,
                         stale_id, _get(stale, "url"))
        if mine:
            webhook_id = int(_get(mine[0], "id"))
            if len(mine) > 1:
                log.warning("Label Studio %s: project %d has %d webhooks to %s (ids %s); using %d",
                            base, project_id, len(mine), url, [int(_get(w, "id")) for w in mine], webhook_id)
            doing = f"updating webhook {webhook_id} of project {project_id}"
            # A PATCH without "actions" would clear them: always send the full settings.
            client.webhooks.update(id=webhook_id, url=url, **settings)
            log.info("Label Studio %s: project %d: reusing webhook %d to %s", base, project_id, webhook_id, url)
        else:
            doing = f"creating a webhook for project {project_id}"
            webhook_id = _create_webhook_once(client, project_id, url, settings, doing)
            log.info("Label Studio %s: project %d: created webhook %d to %s", base, project_id, webhook_id, url)
    except LabelStudioUnavailableError as exc:
        raise LabelStudioWebhookError(_scrub(str(exc), *hidden)) from None
    except ApiError as exc:
        code = exc.status_code
        body = exc.body if isinstance(exc.body, str) else json.dumps(exc.body, default=str)
        hint = ""
        if code in (401, 403):
            hint = "; check LABEL_STUDIO_API_KEY"
            if "reserved network address" in str(body) or "blocked" in str(body).lower():
                hint = "; Label Studio refuses local webhook URLs unless started with SSRF_PROTECTION_ENABLED=false"
        raise LabelStudioWebhookError(
            f"Label Studio at {base} refused {doing} (HTTP {code}): {_scrub(str(body), *hidden)[:300]}{hint}"
        ) from None
    except httpx.TimeoutException:
        raise LabelStudioWebhookError(f"Label Studio at {base} timed out while {doing}; retry later") from None
    except httpx.TransportError as exc:
        raise LabelStudioWebhookError(
            f"Label Studio at {base} is unreachable while {doing} "
            f"({type(exc).__name__}: {_scrub(str(exc), *hidden)}); is the server running?"
        ) from None
    return webhook_id
