"""Benchmark: bulk score writes (activelabel.storage.bulk.write_scores) against the naive ORM path.

For each backend, on a fresh schema: create a campaign, three rounds and N pool samples, then time

  bulk   write_scores() of --rows score rows in one transaction, commit included;
  naive  session.add_all([Score(...), ...]) + commit of a --naive-rows slice (second round);
  core   (optional, --core-rows) Core insert(Score) executemany of dicts in 20,000-row chunks,
         i.e. what repository.insert_scores did before write_scores (third round);
  diag   (optional, --fk-breakdown, PostgreSQL) the bulk rows COPY'd into a temporary clone of
         score with its primary key and none / one of its two foreign keys: how much each
         per-row FK trigger costs (diagnosis, not a product path).

Each time is wall clock for write + commit; also shown: this process's CPU seconds and, for a
local PostgreSQL server, the CPU seconds of the server backend that did the work (from /proc).

Every method starts from the same list of row tuples (built before the clock starts); building
the Score objects or dicts is part of the naive and core timings, as it is in real use.

SQLite runs on a file in a temporary directory with the product engine's settings (open_engine:
no PRAGMA changes, default synchronous/journal). PostgreSQL runs in a throwaway schema created in
the --postgres-url database and dropped afterwards, so the database's own tables are untouched.

    python bench/storage.py                      # 1,000,000 bulk rows, 50,000 naive, both backends
    python bench/storage.py --backends sqlite --rows 200000
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, create_engine, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from activelabel.storage import Campaign, Round, Sample, Score, open_engine, session_scope
from activelabel.storage.bulk import _PG_BINARY_TYPES, CHUNK, SCORE_COLUMNS, write_scores

POSTGRES_URL_ENV = "ACTIVELABEL_TEST_POSTGRES_URL"
GOAL_SECONDS = 10.0
STRATEGY = "bald"


@dataclass
class Result:
    backend: str
    method: str
    rows: int
    seconds: float
    client_cpu: float
    server_cpu: float | None  # the PostgreSQL backend's CPU seconds (local server only)

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")


def progress(backend: str, message: str) -> float:
    print(f"[{backend}] {message} …", end="", flush=True, file=sys.stderr)
    return time.perf_counter()


def done(start: float) -> float:
    elapsed = time.perf_counter() - start
    print(f" {elapsed:.2f} s", flush=True, file=sys.stderr)
    return elapsed


# --- setup ----------------------------------------------------------------------------------


def add_samples(engine: Engine, campaign_id: int, n: int) -> list[int]:
    """N pool samples generated server-side (setup only, not timed in the results)."""
    if engine.dialect.name == "postgresql":
        statement = text(
            "INSERT INTO sample (campaign_id, uri, content_hash, split) "
            "SELECT :cid, 'mem://sample/' || g, md5(g::text), 'pool' FROM generate_series(1, :n) g"
        )
    else:
        statement = text(
            "WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < :n) "
            "INSERT INTO sample (campaign_id, uri, content_hash, split) "
            "SELECT :cid, 'mem://sample/' || x, printf('%064x', x), 'pool' FROM g"
        )
    with session_scope(engine) as session:
        session.execute(statement, {"cid": campaign_id, "n": n})
        return list(
            session.scalars(
                select(Sample.id).where(Sample.campaign_id == campaign_id).order_by(Sample.id)
            )
        )


def setup(engine: Engine, n_samples: int, n_rounds: int) -> tuple[list[int], list[int]]:
    with session_scope(engine) as session:
        campaign = Campaign(
            name="bench", labels=["a", "b"], strategy=STRATEGY, dataset="bench", config={}
        )
        session.add(campaign)
        session.flush()
        rounds = [
            Round(campaign_id=campaign.id, index=i, strategy=STRATEGY) for i in range(n_rounds)
        ]
        session.add_all(rounds)
        session.flush()
        campaign_id, round_ids = campaign.id, [r.id for r in rounds]
    return round_ids, add_samples(engine, campaign_id, n_samples)


def score_rows(round_id: int, sample_ids: list[int], seed: int) -> list[tuple]:
    rng = random.Random(seed)
    return [
        (round_id, sid, STRATEGY, rng.random(), rng.randrange(10), rng.random())
        for sid in sample_ids
    ]


# --- timed methods --------------------------------------------------------------------------


def backend_pid(session: Session) -> int | None:
    if session.get_bind().dialect.name != "postgresql":
        return None
    return session.scalar(text("SELECT pg_backend_pid()"))


def process_cpu(pid: int | None) -> float | None:
    """CPU seconds used so far by a local process (the PostgreSQL backend), None if unknown."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None  # a remote server
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


Writer = Callable[[Session, list[tuple]], None]


def timed(backend: str, method: str, engine: Engine, rows: list[tuple], write: Writer) -> Result:
    """Time write(session, rows) + commit: wall clock, client CPU, server backend CPU."""
    with Session(engine) as session:
        pid = backend_pid(session)  # before the clock; the write runs on this same connection
        server = process_cpu(pid)
        wall, cpu = time.perf_counter(), time.process_time()
        write(session, rows)
        session.commit()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        after = process_cpu(pid)
    server = None if server is None or after is None else after - server
    return Result(backend, method, len(rows), wall, cpu, server)


def write_bulk(session: Session, rows: list[tuple]) -> None:
    written = write_scores(session, rows)
    assert written == len(rows), (written, len(rows))


def write_naive(session: Session, rows: list[tuple]) -> None:
    session.add_all([Score(**dict(zip(SCORE_COLUMNS, row))) for row in rows])


def write_core(session: Session, rows: list[tuple]) -> None:
    dicts = [dict(zip(SCORE_COLUMNS, row)) for row in rows]
    for i in range(0, len(dicts), CHUNK):
        session.execute(insert(Score), dicts[i : i + CHUNK])


def copy_into_clone(*foreign_keys: str) -> Writer:
    """Diagnosis only, not a product path: the same binary COPY into a clone of score (its
    primary key included) keeping only the given foreign keys ("round", "sample"), to show what
    each per-row foreign-key trigger costs. The clone lives in the throwaway bench schema."""
    clone = "score_clone_" + ("_".join(foreign_keys) or "nofk")

    def write(session: Session, rows: list[tuple]) -> None:
        session.execute(text(f"CREATE TABLE {clone} (LIKE score INCLUDING ALL)"))
        for table in foreign_keys:
            session.execute(
                text(f"ALTER TABLE {clone} ADD FOREIGN KEY ({table}_id) REFERENCES {table} (id)")
            )
        cursor = session.connection().connection.driver_connection.cursor()
        columns = ", ".join(SCORE_COLUMNS)
        with cursor.copy(f"COPY {clone} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(_PG_BINARY_TYPES)
            for row in rows:
                copy.write_row(row)

    return write


def count_scores(engine: Engine, round_id: int) -> int:
    with engine.connect() as connection:
        return connection.scalar(
            text("SELECT count(*) FROM score WHERE round_id = :r"), {"r": round_id}
        )


# --- backends -------------------------------------------------------------------------------


def run_backend(backend: str, engine: Engine, args: argparse.Namespace) -> list[Result]:
    n_samples = max(args.rows, args.naive_rows, args.core_rows)
    start = progress(backend, f"setup: campaign, 3 rounds, {n_samples:,} samples")
    round_ids, sample_ids = setup(engine, n_samples, 3)
    done(start)

    start = progress(backend, f"building {args.rows:,} score tuples (not timed)")
    bulk_rows = score_rows(round_ids[0], sample_ids[: args.rows], seed=1)
    done(start)

    def phase(method: str, rows: list[tuple], write: Writer, round_id: int | None) -> None:
        progress(backend, f"{method}: {len(rows):,} rows + commit")
        result = timed(backend, method, engine, rows, write)
        print(f" {result.seconds:.2f} s", flush=True, file=sys.stderr)
        if round_id is not None:
            assert count_scores(engine, round_id) == len(rows)
        results.append(result)

    results: list[Result] = []
    phase("bulk write_scores", bulk_rows, write_bulk, round_ids[0])
    if args.fk_breakdown and backend == "postgresql":
        phase("diag: COPY, no FK", bulk_rows, copy_into_clone(), None)
        phase("diag: COPY, FK round only", bulk_rows, copy_into_clone("round"), None)
        phase("diag: COPY, FK sample only", bulk_rows, copy_into_clone("sample"), None)
    del bulk_rows
    phase(
        "naive ORM add_all",
        score_rows(round_ids[1], sample_ids[: args.naive_rows], 2),
        write_naive,
        round_ids[1],
    )
    if args.core_rows:
        phase(
            "core insert() 20k chunks",
            score_rows(round_ids[2], sample_ids[: args.core_rows], 3),
            write_core,
            round_ids[2],
        )
    return results


def sqlite_backend(args: argparse.Namespace) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="activelabel-bench-") as tmp:
        engine = open_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
        try:
            return run_backend("sqlite", engine, args)
        finally:
            engine.dispose()


def postgres_backend(args: argparse.Namespace) -> list[Result]:
    if not args.postgres_url:
        raise SystemExit(f"postgresql: no --postgres-url and ${POSTGRES_URL_ENV} is unset")
    schema = f"activelabel_bench_{os.getpid()}"
    admin = create_engine(args.postgres_url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(args.postgres_url).update_query_dict({"options": f"-csearch_path={schema}"})
    engine = open_engine(url.render_as_string(hide_password=False))
    try:
        return run_backend("postgresql", engine, args)
    finally:
        engine.dispose()
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


# --- report ---------------------------------------------------------------------------------


def report(results: list[Result]) -> str:
    lines = []
    header = (
        f"{'backend':<11} {'method':<26} {'rows':>10} {'seconds':>8} {'rows/s':>11} "
        f"{'bulk ÷ this':>11} {'client CPU s':>12} {'server CPU s':>12}"
    )
    lines += [header, "-" * len(header)]
    for backend in dict.fromkeys(r.backend for r in results):
        mine = [r for r in results if r.backend == backend]
        bulk = next(r for r in mine if r.method.startswith("bulk"))
        for r in mine:
            ratio = "" if r is bulk else f"{bulk.rate / r.rate:.1f}x"
            server = "" if r.server_cpu is None else f"{r.server_cpu:.2f}"
            lines.append(
                f"{r.backend:<11} {r.method:<26} {r.rows:>10,} {r.seconds:>8.2f} {r.rate:>11,.0f} "
                f"{ratio:>11} {r.client_cpu:>12.2f} {server:>12}"
            )
    lines.append("")
    for r in results:
        if r.method.startswith("bulk"):
            projected = r.seconds * 1_000_000 / r.rows
            verdict = "MET" if projected < GOAL_SECONDS else "NOT MET"
            note = "" if r.rows == 1_000_000 else f", projected from {r.rows:,} rows"
            lines.append(
                f"goal 1,000,000 rows < {GOAL_SECONDS:.0f} s on {r.backend}: {verdict} "
                f"({projected:.2f} s{note})"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Time bulk score writes (write_scores) against the naive ORM path.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="score rows for write_scores")
    parser.add_argument("--naive-rows", type=int, default=50_000, help="score rows for ORM add_all")
    parser.add_argument(
        "--core-rows",
        type=int,
        default=0,
        help="score rows for Core insert() executemany (the old insert_scores); 0 skips it",
    )
    parser.add_argument(
        "--fk-breakdown",
        action="store_true",
        help="postgresql: also time the same COPY into clones of score with fewer foreign keys",
    )
    parser.add_argument("--backends", default="sqlite,postgresql", help="comma-separated backends")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(POSTGRES_URL_ENV),
        help=f"PostgreSQL URL (default: ${POSTGRES_URL_ENV}); a throwaway schema is used in it",
    )
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - {"sqlite", "postgresql"}
    if unknown:
        parser.error(f"unknown backend(s): {', '.join(sorted(unknown))}")
    if min(args.rows, args.naive_rows) <= 0 or args.core_rows < 0:
        parser.error("--rows and --naive-rows must be positive")

    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        file=sys.stderr,
    )
    results: list[Result] = []
    for backend in backends:
        results += sqlite_backend(args) if backend == "sqlite" else postgres_backend(args)
    print()
    print(report(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
