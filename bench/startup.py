"""Start-up time of read-only `activelabel` commands, as a ratio to a bare interpreter.

Every command (and every CLI test) pays its imports before doing anything. Read-only commands
(``status``, ``report``, ``export --to``, ``db``) import no torch; this bench measures what that is
worth: wall time of each command over ``python -c pass`` and over ``python -c "import torch"`` in
the same run, interleaved (round-robin, so load drifts hit every case alike), median of ``--repeats``.

``--before PATH`` also times the same commands with ``PYTHONPATH=PATH`` (another checkout, e.g.
the commit before the cut) for a before/after ratio in one run.

    nice -n 5 python bench/startup.py --repeats 7 [--before /path/to/other/checkout]

Writes bench/results/startup.md. Timing only; the behaviour (no torch in ``sys.modules``) is
tests/cli/test_cli_startup.py's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def _time(argv: list[str], pythonpath: str, cwd: str) -> float:
    env = {**os.environ, "PYTHONPATH": pythonpath, "OMP_NUM_THREADS": "1", "COLUMNS": "120"}
    start = time.perf_counter()
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{argv} failed:\n{result.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--before", help="another checkout to time the same commands from (PYTHONPATH)")
    args = parser.parse_args()
    py = sys.executable
    work = tempfile.mkdtemp(prefix="startup-bench-")
    url = f"sqlite:///{work}/bench.db"
    subprocess.run([py, "-m", "activelabel.cli", "db", "upgrade", "--database-url", url], cwd=work, check=True,
                   capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    cli = [py, "-m", "activelabel.cli"]
    cases = {
        "python -c pass": [py, "-c", "pass"],
        "python -c 'import torch'": [py, "-c", "import torch"],
        "activelabel status --help": [*cli, "status", "--help"],
        "activelabel report --help": [*cli, "report", "--help"],
        "activelabel status (empty db)": [*cli, "status", "--database-url", url],
        "import report + gallery PNG": [py, "-c", "from activelabel.campaign.config import CampaignConfig; "
                                        "from activelabel.campaign.data import campaign_data; import activelabel.report; "
                                        "d = campaign_data(CampaignConfig.from_dict({'name': 'b', 'dataset': 'digits'})); "
                                        "d.store.png(d.pool[0])"],
    }
    trees = {"this": str(ROOT)} | ({"before": args.before} if args.before else {})
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.repeats):
        for name, argv in cases.items():
            for tree, path in trees.items():
                if tree == "before" and not name.startswith(("activelabel", "import")):
                    continue
                times.setdefault((name, tree), []).append(_time(argv, path, work))
    median = {k: statistics.median(v) for k, v in times.items()}
    base, torch_ = median[("python -c pass", "this")], median[("python -c 'import torch'", "this")]
    load = os.getloadavg()
    lines = ["# Start-up of read-only commands", "",
             f"Command: `nice -n 5 python bench/startup.py --repeats {args.repeats}"
             + (f" --before {args.before}`" if args.before else "`"),
             f"Load average (1/5/15 min) at the end: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}; "
             f"{os.cpu_count()} CPUs; median of {args.repeats} interleaved runs.", "",
             "| case | tree | median s | / python -c pass | / import torch |" + (" after / before |" if args.before else ""),
             "|---|---|---:|---:|---:|" + ("---:|" if args.before else "")]
    for (name, tree), m in median.items():
        row = f"| {name} | {tree} | {m:.2f} | {m / base:.2f} | {m / torch_:.2f} |"
        if args.before:
            row += (f" {m / median[(name, 'before')]:.2f} |" if tree == "this" and (name, "before") in median else " |")
        lines.append(row)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "startup.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
