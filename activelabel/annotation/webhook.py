"""Label Studio webhooks as a wake-up signal for the annotation sync.

Label Studio POSTs to a webhook when an annotation is created or updated, so the next sync can
run at once instead of at the next poll. The webhook is only a wake-up signal: the data is always
pulled through the API afterwards, because Label Studio delivers webhooks on a best-effort basis
(1 s timeout, no retries) and a missed one only delays the sync until the next poll.

- :class:`~activelabel.annotation.webhook_receiver.WebhookReceiver` is the endpoint (FastAPI
  on uvicorn, in a thread) that accepts POSTs carrying the shared secret in the
  ``X-Activelabel-Secret`` header, records the event and wakes up whoever waits in
  :meth:`~activelabel.annotation.webhook_receiver.WebhookReceiver.wait_for_event`.
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

import json
import logging
from typing import Any
from urllib.parse import urlsplit

import httpx

from activelabel.annotation.ls_errors import (
    LabelStudioError,
    LabelStudioUnavailableError,
    deleted_unless_gone,
    typed_errors,
)
from activelabel.annotation.send_once import create_once
from activelabel.annotation.webhook_receiver import (
    DEFAULT_PATH,
    MAX_BODY_BYTES,
    SECRET_HEADER,
    WebhookReceiver,
    check_secret,
    generate_secret,
)
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
    "unregister_webhooks_to",
]

# Deletions matter too: a deleted annotation stops being a vote at the next sync.
WEBHOOK_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED")


class LabelStudioWebhookError(LabelStudioError):
    """Registering the webhook in Label Studio failed. Names the server, never the token or secret."""


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
        if not deleted_unless_gone(lambda: client.webhooks.delete(id=int(webhook_id))):
            return True
    except ApiError as exc:
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


def unregister_webhooks_to(client: Any, project_id: int, url: str) -> None:
    """Delete every webhook of ``project_id`` to ``url`` (best effort, as :func:`unregister_webhook`):
    for a run stopped while Label Studio made its webhook, before the webhook's id came back. A
    failed listing is a warning naming the project, nothing raised."""
    try:
        hooks = _webhooks_to(client, project_id, url)
    except Exception as exc:  # noqa: BLE001 - best effort on the way out; the next watch replaces a stale one
        log.warning("Label Studio %s: could not list the webhooks of project %d (%s); a webhook to %s may stay "
                    "registered: delete it in the project's settings (Webhooks), or the next `watch --webhook` "
                    "replaces it", _base_url(client), project_id, type(exc).__name__, url)
        return
    for hook in hooks:
        unregister_webhook(client, int(_get(hook, "id")))


def _webhooks_to(client: Any, project_id: int, url: str) -> list[Any]:
    """The project's webhooks to ``url``, oldest first."""
    hooks = [w for w in client.webhooks.list(project=str(project_id))
             if _get(w, "project") == project_id and _get(w, "url") == url]
    return sorted(hooks, key=lambda w: int(_get(w, "id")))


def _create_webhook_once(client: Any, project_id: int, url: str, settings: dict[str, Any], what: str) -> int:
    """Create the project's webhook to ``url``, sent once (:mod:`~activelabel.annotation.send_once`);
    its id. A webhook made twice (Label Studio on SQLite reruns a request that hit "database is
    locked", even after it wrote the webhook) would send every annotation event twice: the newer
    copies are deleted and the oldest is used."""
    base = _base_url(client)
    created = create_once(
        lambda doing: typed_errors(base, doing, refusals=False), what,
        lambda once: client.webhooks.create(url=url, project=project_id, **settings, request_options=once),
        landed=lambda: next(iter(_webhooks_to(client, project_id, url)), None),
    )
    made = _webhooks_to(client, project_id, url) or [created]
    for extra in made[1:]:
        deleted_unless_gone(lambda: client.webhooks.delete(id=int(_get(extra, "id"))))
    if len(made) > 1:
        extra_ids = [str(_get(w, "id")) for w in made[1:]]
        log.warning("Label Studio %s: project %d: webhook to %s was made %d times from one create (ids %s): on "
                    "SQLite, Label Studio reruns a create that hit 'database is locked'. activelabel uses the "
                    "oldest, id %d, and deleted %s %s.", base, project_id, url, len(made),
                    ", ".join(str(_get(w, "id")) for w in made), int(_get(made[0], "id")),
                    "id" if len(extra_ids) == 1 else "ids", ", ".join(extra_ids))
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
    check_secret(secret)
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
