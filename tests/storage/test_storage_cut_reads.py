"""A stop that cuts a read mid-way must not lock the database against the write that records it.

CI saw a round stopped by SIGTERM left at ``training`` with "could not record the failure of
round id 2: database is locked": on SQLite an unfinished read holds its SHARED lock while its
cursor lives (Python 3.11's sqlite3 no longer resets statements on rollback), and the stop's
traceback keeps the cut frame, and the cursor, alive. Real SQLite, real sessions; the stop is
raised in the loop (where a signal handler raises it) to cut the read at a known row.
"""

from __future__ import annotations

import signal

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError

from activelabel.stop import Stopped
from activelabel.storage import open_engine, session_scope
from activelabel.storage.database import release_reads_cut_by


def _engine(url: str):
    engine = open_engine(url)
    # A short busy timeout (after open_engine's 30 s): the point is the lock, not the wait.
    event.listen(engine, "connect", lambda connection, _record: connection.execute("PRAGMA busy_timeout=200"))
    engine.dispose()
    return engine


def test_a_read_cut_by_a_stop_no_longer_locks_the_write_that_records_it(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'al.db'}"
    engine = _engine(url)
    # The record is written through another connection than the cut read's (in a round, the
    # lease's heartbeat thread holds one too, and the flow's engine is not the step's).
    recorder = _engine(url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE probe (x INTEGER)"))
        connection.execute(text("INSERT INTO probe VALUES (:x)"), [{"x": i} for i in range(500)])

    def read_all() -> None:
        with session_scope(engine) as session:
            rows = session.execute(text("SELECT x FROM probe"))
            for _row in rows:
                raise Stopped(signal.SIGTERM)  # where the signal handler lands: row 1 of 500

    def write() -> None:
        with session_scope(recorder) as session:
            session.execute(text("INSERT INTO probe VALUES (-1)"))

    try:
        read_all()
    except Stopped as error:
        with pytest.raises(OperationalError, match="database is locked"):
            write()  # the failure CI saw
        release_reads_cut_by(error)
        write()
    with session_scope(engine) as session:
        assert session.scalar(text("SELECT count(*) FROM probe WHERE x = -1")) == 1
