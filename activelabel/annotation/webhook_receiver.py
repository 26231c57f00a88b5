"""The endpoint Label Studio's webhooks POST to: a FastAPI app served by uvicorn in a thread.

A webhook is only a wake-up signal for the annotation sync (the data is always pulled through
the API afterwards; see :mod:`activelabel.annotation.webhook`), so the receiver keeps no more
than counters, the last event and the sample/annotation ids seen, and wakes whoever waits in
:meth:`WebhookReceiver.wait_for_event`.

FastAPI and uvicorn come with Prefect, and they parse HTTP as a maintained server does
(malformed requests, keep-alive, bodies the client never finishes); activelabel writes only the
route: the secret, the body limit and what a valid event is.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import socket
import threading
import time
from typing import Any

# Imported with the module (only ``watch --webhook`` imports it): FastAPI reads the route
# functions' annotations from the module's globals.
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from activelabel.errors import ConfigError

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Activelabel-Secret"
DEFAULT_PATH = "/activelabel/webhook"
MAX_BODY_BYTES = 5 * 1024 * 1024

#: How long :meth:`WebhookReceiver.start` and :meth:`WebhookReceiver.stop` wait for uvicorn (s):
#: generous, because on a busy machine a thread may wait seconds for a core.
SERVER_WAIT_S = 60.0


def generate_secret() -> str:
    """A fresh random secret for the ``X-Activelabel-Secret`` header."""
    return secrets.token_urlsafe(32)


def check_secret(secret: Any) -> str:
    """``secret`` when it can be sent as a header value; :class:`ConfigError` otherwise."""
    if not isinstance(secret, str) or not secret:
        raise ConfigError("the webhook secret must be a non-empty string (see generate_secret())")
    if not secret.isascii() or not secret.isprintable() or secret != secret.strip():
        raise ConfigError("the webhook secret must be printable ASCII without surrounding spaces")
    return secret


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


class _Refused(Exception):
    """A request answered with ``status`` and ``{"ok": false, "error": reason}``, and logged."""

    def __init__(self, status: int, reason: str, allow: str | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.allow = status, reason, allow


def _client(request: Request) -> str:
    """The address a request came from, for log lines ("?" when the server does not know it)."""
    return request.client.host if request.client else "?"


def _event_of(body: bytes) -> dict:
    """The JSON object of a webhook body; :class:`_Refused` (400) unless it is one with an ``action``."""
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _Refused(400, "body is not JSON") from None
    if not isinstance(payload, dict):
        raise _Refused(400, f"body is a JSON {type(payload).__name__}, not an object")
    action = payload.get("action")
    if not isinstance(action, str) or not action:
        raise _Refused(400, "body has no 'action' string")
    return payload


class WebhookReceiver:
    """An HTTP endpoint receiving Label Studio webhooks as wake-up signals (FastAPI on uvicorn).

    Binds ``host`` (loopback by default) and ``port`` (0 picks a free one) on :meth:`start`, and
    serves in a daemon thread. A POST to ``path`` carrying ``X-Activelabel-Secret: <secret>`` and
    a JSON object with an ``action`` string is recorded and answered ``200 {"ok": true}``;
    anything else is refused with ``{"ok": false, "error": ...}`` (401 secret, 400 body, 404 path,
    405 method, 411 chunked body, 413 over 5 MB, answered before the body is read) and changes
    nothing. ``HEAD`` on ``path`` answers 200 without a secret and records nothing: it is the
    liveness probe another ``watch`` sends (:func:`~activelabel.annotation.webhook.receiver_answers`).

    Usage::

        with WebhookReceiver(secret) as receiver:
            register_webhook(annotator.client, annotator.project_id, receiver.url, secret)
            while True:
                receiver.wait_for_event(timeout=poll_seconds)  # woken early by a webhook
                sync()

    Raises :class:`~activelabel.errors.ConfigError` for a bad secret, path or port, and from
    :meth:`start` when the address cannot be bound.
    """

    def __init__(self, secret: str, host: str = "127.0.0.1", port: int = 0, path: str = DEFAULT_PATH) -> None:
        self._secret = check_secret(secret).encode("ascii")
        if not isinstance(path, str) or not path.startswith("/") or "?" in path or "#" in path:
            raise ConfigError(f"webhook path {path!r} must start with '/' and hold no query")
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(f"webhook port {port!r} must be 0 (any free port) to 65535")
        self.host = host
        self.path = path
        self._port = port
        self._bound_port: int | None = None
        self._server: Any = None  # uvicorn.Server while running
        self._thread: threading.Thread | None = None
        self._listener: socket.socket | None = None
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
        return self._bound_port if self._bound_port is not None else self._port

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
        """Bind, then serve in a daemon thread (no-op when already running); returns once serving.

        The socket is bound here rather than by uvicorn, so a taken port is a ``ConfigError`` at
        once and ``port=0`` gives its real port before the first request.
        """
        if self._server is not None:
            return self
        import uvicorn

        listener = self._bind()
        config = uvicorn.Config(
            self._app(), log_config=None, log_level=logging.WARNING, access_log=False, lifespan="off",
            timeout_keep_alive=5,  # Label Studio opens a connection per webhook
            limit_concurrency=64,  # past it uvicorn answers 503: never an unbounded backlog
        )
        server = uvicorn.Server(config)
        self._bound_port = int(listener.getsockname()[1])
        thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]},
                                  name=f"activelabel-webhook-{self._bound_port}", daemon=True)
        thread.start()
        deadline = time.monotonic() + SERVER_WAIT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                listener.close()
                self._bound_port = None
                raise ConfigError(f"the webhook receiver on {self.host}:{self._port} did not start "
                                  f"within {SERVER_WAIT_S:.0f} s; see the log above")
            time.sleep(0.02)
        self._server, self._thread, self._listener = server, thread, listener
        log.info("webhook receiver listening on %s", self.url)
        return self

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            # SO_REUSEADDR: a restart may bind while the last run's connections sit in TIME_WAIT;
            # on Linux it never lets two listeners share a port.
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, self._port))
            listener.listen(128)
        except OSError as exc:
            listener.close()
            raise ConfigError(
                f"cannot listen for webhooks on {self.host}:{self._port} ({exc.strerror or exc}); "
                "choose another host or port (0 picks a free one)"
            ) from None
        return listener

    def stop(self) -> None:
        """Stop serving and release the port (no-op when not running)."""
        server, thread = self._server, self._thread
        if server is None:
            return
        server.should_exit = True
        if thread is not None:
            thread.join(timeout=SERVER_WAIT_S)
        if self._listener is not None:
            self._listener.close()
        port = self.port
        self._server = self._thread = self._bound_port = self._listener = None
        log.info("webhook receiver on %s:%d stopped", self.host, port)

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- the route --------------------------------------------------------------------------

    def _app(self) -> FastAPI:
        app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

        def refused(request: Request, status: int, reason: str, allow: str | None = None) -> Response:
            log.warning("webhook %s: refused %s %s (%d): %s", _client(request), request.method, request.url.path,
                        status, reason)
            headers = {"Allow": allow} if allow else None
            return JSONResponse({"ok": False, "error": reason}, status_code=status, headers=headers)

        @app.exception_handler(HTTPException)
        async def routing_refusal(request: Request, exc: HTTPException) -> Response:
            # FastAPI's own 404 (another path) and 405 (another method on ours), in our shape.
            reason = "unknown path" if exc.status_code == 404 else f"method {request.method} not allowed"
            allow = "POST" if exc.status_code == 405 else None
            return refused(request, exc.status_code, reason, allow)

        @app.head(self.path)
        async def liveness_probe() -> Response:
            log.debug("webhook: answered a liveness probe")
            return JSONResponse({"ok": True})

        @app.post(self.path)
        async def webhook(request: Request) -> Response:
            try:
                self._check_request(request.headers)
                body = await request.body()
                payload = _event_of(body)
            except _Refused as refusal:
                return refused(request, refusal.status, refusal.reason, refusal.allow)
            except ClientDisconnect:
                log.warning("webhook %s: the client went away before sending its whole body", _client(request))
                return Response(status_code=400)
            event = self._record(payload, _client(request))
            log.info("webhook %s: accepted %s (project %s, sample %s, annotation %s)", event["client"],
                     event["action"], event["project_id"], event["sample_id"], event["annotation_id"])
            return JSONResponse({"ok": True})

        return app

    def _check_request(self, headers: Any) -> None:
        """:class:`_Refused` for a missing or wrong secret, a chunked body or a body over the limit
        (told by its ``Content-Length``, so 5 MB are never read to refuse them)."""
        given = headers.get(SECRET_HEADER)
        if given is None:
            raise _Refused(401, f"no {SECRET_HEADER} header")
        if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self._secret):
            raise _Refused(401, f"wrong {SECRET_HEADER} header")
        if headers.get("transfer-encoding"):
            raise _Refused(411, "chunked bodies are not accepted; send Content-Length")
        length = int(headers.get("content-length") or 0)  # uvicorn refused an invalid one already
        if length > MAX_BODY_BYTES:
            raise _Refused(413, f"body of {length} bytes is over the {MAX_BODY_BYTES} byte limit")

    # -- events -----------------------------------------------------------------------------

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
