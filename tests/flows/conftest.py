"""A private PostgreSQL cluster that a test may stop and start (the shared one must stay up)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivatePostgres:
    def __init__(self, root: Path) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not bins or os.geteuid() != 0 or shutil.which("runuser") is None:
            pytest.skip("needs PostgreSQL binaries (bash .ci/run installs them) and root")
        self.bin = Path(bins[-1])
        self.root = root
        self.port = _free_port()
        root.mkdir(parents=True, exist_ok=True)
        (root / "sock").mkdir(exist_ok=True)
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(root / "sock", "postgres", "postgres")
        self._as_postgres(str(self.bin / "initdb"), "-D", str(root / "data"), "-U", "postgres",
                          "--auth=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
                          "--no-sync")  # a throwaway cluster: no fsync of its fresh files (seconds of I/O)
        self.start()
        self._as_postgres(str(self.bin / "psql"), "-q", "-h", str(root / "sock"), "-p", str(self.port),
                          "-U", "postgres", "-v", "ON_ERROR_STOP=1",
                          "-c", "CREATE ROLE crash_user LOGIN PASSWORD 'crash-pw-123';",
                          "-c", "CREATE DATABASE crash_db OWNER crash_user;")
        self.url = f"postgresql+psycopg://crash_user:crash-pw-123@127.0.0.1:{self.port}/crash_db"

    def _as_postgres(self, *args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True,
                       capture_output=True, cwd="/tmp")

    def start(self) -> None:
        self._as_postgres(
            str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-l", str(self.root / "log"),
            "-w", "-t", "60", "-o",
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root / 'sock'} -c fsync=off",
            "start",
        )

    def stop(self) -> None:
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")


@pytest.fixture
def private_postgres():
    # Not under pytest's tmp_path: its parents are root-only and postgres must reach the data.
    root = Path(tempfile.mkdtemp(prefix="activelabel-pg-"))
    root.chmod(0o755)
    server = PrivatePostgres(root / "cluster")
    yield server
    try:
        server.stop()
    except subprocess.CalledProcessError:
        pass
    shutil.rmtree(root, ignore_errors=True)
