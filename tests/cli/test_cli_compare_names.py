"""Trial 15 F13: `compare --dataset "shapes?n=120"` named its experiment `compare-shapes?n=120`,
and `report` wrote `compare-shapes?n=120.html`, which a browser cannot open from a file:// URL
(the `?` starts a query). The default experiment name and the report's default file name are
file-safe now; a database where an older version stored the raw name continues that experiment.
Real SQLite; nothing trains."""

from __future__ import annotations

from pathlib import Path

from activelabel.cli import default_report_file
from activelabel.cli_compare import continued_name, default_experiment_name
from activelabel.naming import file_safe
from activelabel.storage import open_engine
from activelabel.storage.database import session_scope
from activelabel.storage.models import Experiment


def test_file_safe_names() -> None:
    assert file_safe("compare-shapes?n=120") == "compare-shapes-n-120"
    assert file_safe("compare-shapes?n=120-random-seed0") == "compare-shapes-n-120-random-seed0"  # the heatmap folder's words
    assert file_safe("compare-digits") == "compare-digits"
    assert default_experiment_name("shapes?n=120") == "compare-shapes-n-120"
    assert default_experiment_name("folder:/data/cats") == "compare-folder"
    assert default_experiment_name("digits") == "compare-digits"
    assert default_report_file("compare-shapes?n=120") == Path("compare-shapes-n-120.html")
    assert default_report_file("my run 1") == Path("my-run-1.html")
    assert default_report_file("own") == Path("own.html")


def _store(engine, *names: str) -> None:
    with session_scope(engine) as session:
        for name in names:
            session.add(Experiment(name=name, config={}))


def test_a_rerun_continues_the_experiment_an_older_version_named(tmp_path: Path) -> None:
    fresh = open_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    assert continued_name(fresh, "shapes?n=120") == "compare-shapes-n-120"

    old = open_engine(f"sqlite:///{tmp_path / 'old.db'}")
    _store(old, "compare-shapes?n=120")
    assert continued_name(old, "shapes?n=120") == "compare-shapes?n=120"

    both = open_engine(f"sqlite:///{tmp_path / 'both.db'}")
    _store(both, "compare-shapes?n=120", "compare-shapes-n-120")
    assert continued_name(both, "shapes?n=120") == "compare-shapes-n-120"

    plain = open_engine(f"sqlite:///{tmp_path / 'plain.db'}")
    _store(plain, "compare-digits")
    assert continued_name(plain, "digits") == "compare-digits"


def test_the_report_line_names_what_report_will_find_from_any_folder(tmp_path, monkeypatch) -> None:
    """Trial 17 F2: compare's last line said `activelabel report NAME`, which failed outside the
    experiment file's folder (its database sits beside the file)."""
    from activelabel.cli_compare import report_command

    monkeypatch.chdir(tmp_path)
    file = tmp_path / "exp" / "experiment.toml"
    # the file's experiment: its absolute path, which report reads the database setting of
    assert report_command("loc", "exp/experiment.toml", None, file_experiment="loc") == f"activelabel report {file}"
    # an --experiment other than the file's: the name and the database it ran in, never its password
    assert report_command("other", "exp/experiment.toml", None, file_experiment="loc",
                          used_url=f"sqlite:///{tmp_path}/exp/activelabel.db") == (
        f"activelabel report other --database-url sqlite:///{tmp_path}/exp/activelabel.db")
    # no file: the name, and a --database-url given (relative SQLite made absolute)
    assert report_command("digits-5x3", None, None) == "activelabel report digits-5x3"
    assert report_command("digits-5x3", None, "sqlite:///runs.db") == (
        f"activelabel report digits-5x3 --database-url sqlite:///{tmp_path}/runs.db")
    line = report_command("pg", None, "postgresql+psycopg://al:s3cret@db:5432/labels")
    assert "s3cret" not in line and line.startswith("activelabel report pg --database-url postgresql+psycopg://al@db:5432/labels")
    assert line.endswith("(with the database password in $ACTIVELABEL_DATABASE_PASSWORD)")
