"""Engines from URLs: schema creation, clear errors that never leak a password, URL resolution."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from activelabel.errors import ActiveLabelError, DatabaseUnavailableError
from activelabel.storage import (
    DEFAULT_DATABASE_URL,
    Base,
    Campaign,
    Sample,
    SampleSplit,
    describe_url,
    open_engine,
    session_scope,
)
from activelabel.storage.database import (
    DATABASE_PASSWORD_ENV,
    DATABASE_URL_ENV,
    has_password,
    resolve_database_url,
)

TABLES = {"campaign", "sample", "round", "model_checkpoint", "score", "selection", "annotation"}
SECRET_URL = "postgresql+psycopg://alice:s3cretpw@127.0.0.1:1/campaigns"


def _url_of(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


# --- open_engine ----------------------------------------------------------------------------


def test_open_engine_creates_every_table(
    engine: Engine, wipe_database: Callable[[Engine], None]
) -> None:
    url = _url_of(engine)
    engine.dispose()
    wipe_database(open_engine(url, create_schema=False))
    bare = open_engine(url, create_schema=False)
    assert inspect(bare).get_table_names() == []
    bare.dispose()
    reopened = open_engine(url)
    try:
        inspector = inspect(reopened)
        created = set(inspector.get_table_names())
        assert TABLES <= created
        assert set(Base.metadata.tables) <= created  # every model's table, whatever is added later
        uniques = {tuple(c["column_names"]) for c in inspector.get_unique_constraints("selection")}
        assert ("campaign_id", "sample_id") in uniques
        assert ("round_id", "rank") in uniques
        annotation_uniques = {
            tuple(c["column_names"]) for c in inspector.get_unique_constraints("annotation")
        }
        assert ("campaign_id", "source", "external_id") in annotation_uniques
        score_pk = inspector.get_pk_constraint("score")["constrained_columns"]
        assert set(score_pk) == {"round_id", "sample_id", "strategy"}
    finally:
        reopened.dispose()


def test_open_engine_without_create_schema(tmp_path: Path) -> None:
    eng = open_engine(f"sqlite:///{tmp_path / 'bare.db'}", create_schema=False)
    try:
        assert inspect(eng).get_table_names() == []
    finally:
        eng.dispose()


def test_reopening_keeps_existing_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keep.db'}"
    first = open_engine(url)
    with session_scope(first) as session:
        session.add(Campaign(name="c", labels=["a"], strategy="bald", dataset="digits", config={}))
    first.dispose()
    second = open_engine(url)
    try:
        with session_scope(second) as session:
            assert session.scalar(select(func.count()).select_from(Campaign)) == 1
    finally:
        second.dispose()


def test_foreign_keys_are_enforced(engine: Engine) -> None:
    with pytest.raises(IntegrityError):
        with session_scope(engine) as session:
            session.add(Sample(campaign_id=999, uri="x", content_hash="h", split=SampleSplit.pool))


def test_session_scope_commits_or_rolls_back(engine: Engine) -> None:
    with session_scope(engine) as session:
        session.add(Campaign(name="kept", labels=["a"], strategy="s", dataset="digits", config={}))
    with pytest.raises(RuntimeError, match="abort"):
        with session_scope(engine) as session:
            session.add(Campaign(name="lost", labels=["a"], strategy="s", dataset="digits", config={}))
            session.flush()
            raise RuntimeError("abort")
    with session_scope(engine) as session:
        assert list(session.scalars(select(Campaign.name))) == ["kept"]


def test_sqlite_in_missing_directory_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "no" / "such" / "dir" / "campaigns.db"
    with pytest.raises(DatabaseUnavailableError) as info:
        open_engine(f"sqlite:///{path}")
    assert str(path) in str(info.value)
    assert "cannot reach database" in str(info.value)
    assert isinstance(info.value, ActiveLabelError)
    assert not path.parent.exists()


def test_malformed_url() -> None:
    with pytest.raises(DatabaseUnavailableError, match="invalid database URL") as info:
        open_engine("notadb://x")
    assert "notadb" in str(info.value)


def test_unreachable_postgres_names_host_and_database_never_the_password() -> None:
    with pytest.raises(DatabaseUnavailableError) as info:
        open_engine(SECRET_URL)
    message = str(info.value)
    assert "127.0.0.1" in message
    assert "campaigns" in message
    assert "s3cretpw" not in message
    assert "\n" not in message  # the CLI prints it on one line
    # Not even the printed traceback (cause/context chain) carries the password.
    printed = "".join(traceback.format_exception(info.value))
    assert "s3cretpw" not in printed
    assert info.value.__cause__ is None


def test_describe_url_masks_password() -> None:
    shown = describe_url(SECRET_URL)
    assert "s3cretpw" not in shown
    assert shown == "postgresql+psycopg://alice:***@127.0.0.1:1/campaigns"
    assert describe_url("sqlite:///x.db") == "sqlite:///x.db"


def test_describe_url_unparseable() -> None:
    assert describe_url("not a url at all") == "<unparseable URL>"


BAD_PORT_URL = "postgresql+psycopg://alice:s3cretpw@db.example:notaport/campaigns"


def test_describe_url_with_non_numeric_port_shows_only_the_scheme() -> None:
    shown = describe_url(BAD_PORT_URL)
    assert shown == "postgresql+psycopg:…"
    assert "s3cretpw" not in shown


def test_open_engine_with_non_numeric_port_is_unavailable_error() -> None:
    with pytest.raises(DatabaseUnavailableError) as info:
        open_engine(BAD_PORT_URL)
    assert "s3cretpw" not in str(info.value)


def test_has_password_with_non_numeric_port() -> None:
    assert has_password(BAD_PORT_URL) is False


def test_password_in_query_string_is_masked_too() -> None:
    url = "postgresql+psycopg://alice@127.0.0.1:1/campaigns?password=s3cretpw"
    assert "s3cretpw" not in describe_url(url)
    with pytest.raises(DatabaseUnavailableError) as info:
        open_engine(url)
    assert "s3cretpw" not in str(info.value)


def test_has_password() -> None:
    assert has_password(SECRET_URL)
    assert not has_password("postgresql+psycopg://alice@127.0.0.1/campaigns")
    assert not has_password("sqlite:///x.db")
    assert not has_password("not a url at all")


# --- resolve_database_url --------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    monkeypatch.delenv(DATABASE_PASSWORD_ENV, raising=False)
    return monkeypatch


def test_resolve_default(clean_env: pytest.MonkeyPatch) -> None:
    assert resolve_database_url() == DEFAULT_DATABASE_URL == "sqlite:///activelabel.db"
    assert resolve_database_url(None) == DEFAULT_DATABASE_URL


def test_resolve_env_beats_default(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv(DATABASE_URL_ENV, "sqlite:////data/env.db")
    assert resolve_database_url() == "sqlite:////data/env.db"


def test_resolve_explicit_beats_env(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv(DATABASE_URL_ENV, "sqlite:////data/env.db")
    assert resolve_database_url("sqlite:////data/explicit.db") == "sqlite:////data/explicit.db"


def test_password_filled_into_postgres_url(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv(DATABASE_PASSWORD_ENV, "p@ss:w/rd")  # characters that need escaping
    resolved = resolve_database_url("postgresql+psycopg://bob@db.example:5432/campaigns")
    parsed = make_url(resolved)
    assert parsed.password == "p@ss:w/rd"
    assert (parsed.username, parsed.host, parsed.port, parsed.database) == (
        "bob",
        "db.example",
        5432,
        "campaigns",
    )
    assert parsed.drivername == "postgresql+psycopg"


def test_password_filled_into_env_url(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv(DATABASE_URL_ENV, "postgresql://bob@db.example/campaigns")
    clean_env.setenv(DATABASE_PASSWORD_ENV, "envpw")
    assert make_url(resolve_database_url()).password == "envpw"


def test_password_not_put_into_sqlite(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv(DATABASE_PASSWORD_ENV, "envpw")
    assert resolve_database_url("sqlite:///x.db") == "sqlite:///x.db"
    assert resolve_database_url() == DEFAULT_DATABASE_URL


def test_password_does_not_override_explicit_one(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv(DATABASE_PASSWORD_ENV, "envpw")
    assert resolve_database_url(SECRET_URL) == SECRET_URL
    assert make_url(resolve_database_url(SECRET_URL)).password == "s3cretpw"


def test_password_env_with_unparseable_url_returns_it_unchanged(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv(DATABASE_PASSWORD_ENV, "envpw")
    assert resolve_database_url("not a url at all") == "not a url at all"
    assert resolve_database_url(BAD_PORT_URL) == BAD_PORT_URL


def test_empty_password_env_changes_nothing(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv(DATABASE_PASSWORD_ENV, "")
    url = "postgresql+psycopg://bob@db.example/campaigns"
    assert resolve_database_url(url) == url
