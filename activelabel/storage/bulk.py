"""Fast bulk writes of score and sample rows, inside the caller's transaction.

Scoring a large pool writes one row per (round, sample, strategy), and creating a campaign one
row per sample: a million rows is ordinary. The ORM (one object per row) and even Core ``insert()`` with dicts spend most of their
time building Python objects, so :func:`write_scores` and :func:`write_samples` talk to the driver directly
(:func:`write_rows`):

* PostgreSQL (psycopg 3): ``COPY <table> (...) FROM STDIN`` in binary format (about 4x faster
  than text format where the server is not the bottleneck);
* SQLite: the DBAPI cursor's ``executemany`` with plain tuples;
* anything else: Core ``insert(Score)`` executemany in chunks of :data:`CHUNK` dicts.

Every path uses the session's own connection, so the rows are part of the session's current
transaction — committed or rolled back together with whatever else the caller wrote (a round's
status change, say). Nothing is committed here. A driver error is re-raised as SQLAlchemy's
matching exception (a duplicate key is :class:`sqlalchemy.exc.IntegrityError`), exactly as
``session.execute`` would raise it; the caller then rolls back and nothing of the batch remains.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import islice
from typing import Any

from sqlalchemy import BigInteger, Boolean, Float, Integer, SmallInteger, String, Table, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from activelabel.storage.models import Sample, Score

#: Rows per ``insert()`` executemany on the generic path.
CHUNK = 20_000

#: The order of the values in each row tuple given to :func:`write_scores`.
SCORE_COLUMNS: tuple[str, ...] = (
    "round_id",
    "sample_id",
    "strategy",
    "value",
    "predicted_class",
    "confidence",
)

#: Optional trailing values of a row: the sample's uncertainty split in nats (None allowed).
UNCERTAINTY_COLUMNS: tuple[str, ...] = ("total", "aleatoric", "epistemic")
#: Optional after those: feature density log q(z) in nats and the OOD flag (None allowed).
DENSITY_COLUMNS: tuple[str, ...] = ("log_density", "ood")
#: Every column a row may carry, in order: a row has 6, 9 or all 11 values.
ALL_SCORE_COLUMNS: tuple[str, ...] = SCORE_COLUMNS + UNCERTAINTY_COLUMNS + DENSITY_COLUMNS
#: The column tuples a row may be, by its length.
ROW_LAYOUTS: dict[int, tuple[str, ...]] = {
    len(SCORE_COLUMNS): SCORE_COLUMNS,
    len(SCORE_COLUMNS + UNCERTAINTY_COLUMNS): SCORE_COLUMNS + UNCERTAINTY_COLUMNS,
    len(ALL_SCORE_COLUMNS): ALL_SCORE_COLUMNS,
}

ScoreRow = tuple  # (round_id, sample_id, strategy, value, predicted_class, confidence[, total, aleatoric, epistemic[, log_density, ood]])


def write_scores(session: Session, rows: Sequence[ScoreRow]) -> int:
    """Write score rows in the session's current transaction; return how many were written.

    Each row is a tuple in :data:`SCORE_COLUMNS` order:
    ``(round_id, sample_id, strategy, value, predicted_class, confidence)``, optionally
    followed by ``(total, aleatoric, epistemic)`` in nats (:data:`UNCERTAINTY_COLUMNS`; None
    allowed), and then by ``(log_density, ood)`` (:data:`DENSITY_COLUMNS`). All rows of one
    call have the same length (6, 9 or 11).
    Pending ORM changes are flushed first, so rows may refer to a round or samples added to the
    same session. The caller commits (or rolls back). Raises
    :class:`sqlalchemy.exc.IntegrityError` on a duplicate (round_id, sample_id, strategy) or a
    missing round/sample; the session must then be rolled back.
    """
    if not rows:
        return 0
    return write_rows(session, Score.__table__, _columns_of(rows), rows)


#: Rows turned into tuples at a time by :func:`write_score_columns`.
COLUMN_CHUNK = 65_536


def write_score_columns(session: Session, round_id: int, strategy: str, columns: Mapping[str, Any]) -> int:
    """Write one round's scores given column-wise, in the session's current transaction;
    return how many rows were written.

    ``columns`` maps score column names to equal-length 1-D arrays (numpy or lists):
    ``sample_id``, ``value``, ``predicted_class`` and ``confidence`` always, and any of
    ``total``, ``aleatoric``, ``epistemic`` (nats), ``log_density`` (nats) and ``ood`` (bool);
    a column left out is NULL in every row. The rows are the ones :func:`write_scores` writes
    for the same values, but they are made :data:`COLUMN_CHUNK` at a time: a million scores
    never exist as a million tuples (about 300 bytes each). Raises ``ValueError`` for an
    unknown or missing column or columns of different lengths, and what :func:`write_scores`
    raises for the rows.
    """
    unknown = sorted(set(columns) - set(ALL_SCORE_COLUMNS) | set(columns) & {"round_id", "strategy"})
    missing = [c for c in SCORE_COLUMNS[3:] + ("sample_id",) if c not in columns]
    if unknown or missing:
        raise ValueError(f"score columns: unknown {unknown}, missing {missing}; "
                         f"give {', '.join(ALL_SCORE_COLUMNS[1:2] + ALL_SCORE_COLUMNS[3:])}")
    names = tuple(c for c in ALL_SCORE_COLUMNS if c in columns or c in ("round_id", "strategy"))
    count = len(columns["sample_id"])
    if any(len(columns[c]) != count for c in columns):
        raise ValueError(f"score columns differ in length: { {c: len(v) for c, v in columns.items()} }")
    written = 0
    for start in range(0, count, COLUMN_CHUNK):
        stop = min(start + COLUMN_CHUNK, count)
        parts = [
            [round_id] * (stop - start) if name == "round_id"
            else [strategy] * (stop - start) if name == "strategy"
            else _plain(columns[name][start:stop])
            for name in names
        ]
        written += write_rows(session, Score.__table__, names, list(zip(*parts)))
    return written


def _plain(values: Any) -> list:
    """Python ints, floats and bools (what the drivers take) of a slice of a column."""
    return values.tolist() if hasattr(values, "tolist") else list(values)


#: The order of the values in each row tuple given to :func:`write_samples`.
SAMPLE_COLUMNS: tuple[str, ...] = ("campaign_id", "uri", "content_hash", "split", "size_bytes", "mtime_ns")


def write_samples(session: Session, rows: Sequence[tuple]) -> int:
    """Insert sample rows (:data:`SAMPLE_COLUMNS` order; ``split`` a SampleSplit or its value,
    size and mtime may be None) in the session's transaction; return how many were written.

    A campaign's creation writes a million of these in seconds this way (COPY on PostgreSQL).
    Raises :class:`sqlalchemy.exc.IntegrityError` on a URI already in the campaign.
    """
    if not rows:
        return 0
    if not isinstance(rows[0][3], str) or type(rows[0][3]) is not str:  # enum members -> their values
        rows = [(c, u, h, getattr(split, "value", split), size, mtime) for c, u, h, split, size, mtime in rows]
    return write_rows(session, Sample.__table__, SAMPLE_COLUMNS, rows)


def write_rows(session: Session, table: Table, columns: tuple[str, ...], rows: Sequence[tuple]) -> int:
    """Insert ``rows`` (tuples of plain values in ``columns`` order) into ``table`` with the
    fastest path the driver has (see the module docstring), in the session's transaction."""
    if not rows:
        return 0
    session.flush()
    connection = session.connection()
    dialect = connection.dialect
    if dialect.name == "postgresql" and dialect.driver == "psycopg":
        dbapi_connection = connection.connection.driver_connection
        statement = _copy_statement(dialect, columns, table)
        try:
            return _copy_postgres(dbapi_connection, statement, rows, columns, table)
        except dialect.loaded_dbapi.Error as exc:
            raise _wrap(exc, statement, dialect) from exc
    if dialect.name == "sqlite":
        dbapi_connection = connection.connection.driver_connection
        statement = _insert_statement(dialect, "?", columns, table)
        try:
            return _executemany_sqlite(dbapi_connection, statement, rows)
        except dialect.loaded_dbapi.Error as exc:
            raise _wrap(exc, statement, dialect) from exc
    return _insert_core(session, rows, columns, table)


def _columns_of(rows: Sequence[ScoreRow]) -> tuple[str, ...]:
    width = len(rows[0])
    if width not in ROW_LAYOUTS:
        raise ValueError(
            f"a score row has {', '.join(map(str, ROW_LAYOUTS))} values "
            f"({', '.join(ALL_SCORE_COLUMNS)}), got {width}"
        )
    return ROW_LAYOUTS[width]


def _pg_binary_types(columns: tuple[str, ...] = SCORE_COLUMNS, table: Table | None = None) -> tuple[str, ...] | None:
    """PostgreSQL type names of ``columns`` of ``table`` (default: score) for binary COPY;
    None if one has no known mapping.

    Binary COPY needs the exact server types, so they are derived from the model rather than
    hard-coded: a migration to BigInteger, say, keeps working.
    """
    table = Score.__table__ if table is None else table
    names = []
    for name in columns:
        column_type = table.c[name].type
        if isinstance(column_type, BigInteger):
            names.append("int8")
        elif isinstance(column_type, SmallInteger):
            names.append("int2")
        elif isinstance(column_type, Integer):
            names.append("int4")
        elif isinstance(column_type, Float) and not column_type.asdecimal:
            precision = column_type.precision
            names.append("float4" if precision is not None and precision <= 24 else "float8")
        elif isinstance(column_type, String):  # an Enum stored as its value is a String too
            names.append("text")  # same binary wire format as varchar
        elif isinstance(column_type, Boolean):
            names.append("bool")
        else:
            return None
    return tuple(names)


# The score table's (kept for bench/storage.py); None: text-format COPY.
_PG_BINARY_TYPES = _pg_binary_types()

_BINARY_TYPES: dict[tuple[str, tuple[str, ...]], tuple[str, ...] | None] = {}


def _binary_types(columns: tuple[str, ...], table: Table | None = None) -> tuple[str, ...] | None:
    """:func:`_pg_binary_types`, computed once per (table, columns); None: text-format COPY."""
    table = Score.__table__ if table is None else table
    key = (table.name, columns)
    if key not in _BINARY_TYPES:
        _BINARY_TYPES[key] = _pg_binary_types(columns, table)
    return _BINARY_TYPES[key]


def _copy_postgres(
    dbapi_connection: Any, statement: str, rows: Sequence[ScoreRow], columns: tuple[str, ...] = SCORE_COLUMNS,
    table: Table | None = None,
) -> int:
    types = _binary_types(columns, table)
    with dbapi_connection.cursor() as cursor:
        with cursor.copy(statement) as copy:
            if types is not None:
                copy.set_types(types)
            write_row = copy.write_row
            for row in rows:
                write_row(row)
        return cursor.rowcount if cursor.rowcount >= 0 else len(rows)


def _executemany_sqlite(dbapi_connection: Any, statement: str, rows: Sequence[ScoreRow]) -> int:
    # pysqlite opens a transaction implicitly before the first INSERT when none is open (the
    # session's BEGIN is deferred to it), so these rows join the session's transaction.
    cursor = dbapi_connection.cursor()
    try:
        cursor.executemany(statement, rows)
        return cursor.rowcount if cursor.rowcount >= 0 else len(rows)
    finally:
        cursor.close()


def _insert_core(session: Session, rows: Sequence[ScoreRow], columns: tuple[str, ...] = SCORE_COLUMNS,
                 table: Table | None = None) -> int:
    table = Score.__table__ if table is None else table
    written = 0
    iterator = iter(rows)
    while chunk := list(islice(iterator, CHUNK)):
        session.execute(insert(table), [dict(zip(columns, row)) for row in chunk])
        written += len(chunk)
    return written


def _quoted_columns(dialect: Dialect, names: tuple[str, ...] = SCORE_COLUMNS, table: Table | None = None) -> tuple[str, str]:
    preparer = dialect.identifier_preparer
    formatted = preparer.format_table(Score.__table__ if table is None else table)
    columns = ", ".join(preparer.quote(name) for name in names)
    return formatted, columns


def _copy_statement(dialect: Dialect, names: tuple[str, ...] = SCORE_COLUMNS, table: Table | None = None) -> str:
    formatted, columns = _quoted_columns(dialect, names, table)
    options = " (FORMAT BINARY)" if _binary_types(names, table) is not None else ""
    return f"COPY {formatted} ({columns}) FROM STDIN{options}"


def _insert_statement(dialect: Dialect, placeholder: str, names: tuple[str, ...] = SCORE_COLUMNS,
                      table: Table | None = None) -> str:
    formatted, columns = _quoted_columns(dialect, names, table)
    marks = ", ".join([placeholder] * len(names))
    return f"INSERT INTO {formatted} ({columns}) VALUES ({marks})"


def _wrap(exc: Exception, statement: str, dialect: Dialect) -> DBAPIError:
    """The SQLAlchemy exception ``session.execute`` would raise for this driver error.

    Parameters are hidden: they would be the whole batch.
    """
    return DBAPIError.instance(
        statement,
        None,
        exc,
        dialect.loaded_dbapi.Error,
        hide_parameters=True,
        dialect=dialect,
    )
