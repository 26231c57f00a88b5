"""One builder for the small campaign files tests write: `activelabel init`'s template, with the
keys a test sets changed in place.

Why on the template: a test then runs on the file a user gets, so a key renamed or moved there
fails here (every key set must be in the template, or the builder raises) instead of the test
quietly running on defaults.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from activelabel.campaign.file import template
from tests_support_owndata import LABELS


def campaign_text(name: str, *, settings: Mapping[str, object] = {}, simulated: bool = False,
                  labels: list[str] | None = LABELS, extra: Mapping[str, str] = {},
                  replace: Mapping[str, str] = {}) -> str:
    """The template for campaign ``name`` with ``settings`` applied.

    settings: ``{"section.key": value}`` (str, int, float, bool or list of str); a key commented out
    in the template (``# key = ...``) is set by uncommenting it.
    simulated: ``[annotator] kind = "simulated"`` answering from ``[annotator] truth = "truth.csv"``.
    labels: ``data.labels`` (the digit labels of tests_support_owndata by default; None keeps the
    template's).
    extra: ``{"section": "raw TOML lines"}`` appended to the section (keys the template lacks).
    replace: literal ``{old: new}`` replacements, applied last (each ``old`` must occur).
    Raises KeyError naming a section or key the template does not have.
    """
    chosen: dict[str, object] = {"data.workers": 0}  # no DataLoader worker processes in tests
    if labels is not None:
        chosen["data.labels"] = list(labels)
    if simulated:
        chosen |= {"annotator.kind": "simulated", "annotator.truth": "truth.csv"}
    chosen |= settings
    lines = template(name).split("\n")
    section, done = "", set()
    for n, line in enumerate(lines):
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key = line.removeprefix("# ").split(" = ", 1)[0]
        if " = " in line and f"{section}.{key}" in chosen:
            comment = line.split("  # ", 1)[1] if "  # " in line else ""
            value = json.dumps(chosen[f"{section}.{key}"])
            lines[n] = f"{key} = {value}" + (f"  # {comment}" if comment else "")
            done.add(f"{section}.{key}")
    missing = set(chosen) - done
    if missing:
        raise KeyError(f"not in the campaign template: {sorted(missing)}")
    for part, added in extra.items():
        if f"[{part}]" not in lines:
            raise KeyError(f"no [{part}] section in the campaign template")
        at = lines.index(f"[{part}]") + 1
        lines[at:at] = added.split("\n")
    text = "\n".join(lines)
    for old, new in replace.items():
        if old not in text:
            raise KeyError(f"{old!r} is not in the campaign template")
        text = text.replace(old, new)
    return text


def write_campaign_file(path: Path, name: str, **options) -> Path:
    """Write ``campaign_text(name, **options)`` to ``path`` (folders made). Returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(campaign_text(name, **options))
    return path


def use_label_studio(monkeypatch, ls_server, tmp_path: Path) -> str:
    """Ready a test for a campaign on the test Label Studio server (``ls_server`` of
    tests/labelstudio/conftest.py): a fresh campaign-data cache, the server's URL and key in the
    environment, and a new SQLite database ``tmp_path/al.db`` as ``ACTIVELABEL_DATABASE_URL``
    (undone after the test by ``monkeypatch``). Returns that database URL."""
    from activelabel.campaign.data import clear_cache

    clear_cache()
    monkeypatch.setenv("LABEL_STUDIO_URL", ls_server.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", ls_server.api_key)
    db_url = f"sqlite:///{tmp_path / 'al.db'}"
    monkeypatch.setenv("ACTIVELABEL_DATABASE_URL", db_url)
    return db_url
