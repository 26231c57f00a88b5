"""Pools of 10k, 100k and 1M generated 28x28 images: campaign creation, one round's scoring,
peak memory and database size (issue #11).

Every measurement runs in a fresh child process (``python bench/scale.py _child ...``), which
reports its own wall time for the measured call and its peak RSS (``resource.getrusage``,
``ru_maxrss``), so one measurement's memory never leaks into the next. Children start from a
small launcher process: on Linux a forked child's ``ru_maxrss`` starts at its parent's resident
size and survives ``exec``, so a child forked straight from a driver holding a 1 GB array would
report at least 1 GB whatever it did. Pools are stored as one
``.npy`` memory-map (every size) and as PNG files (sizes up to ``--files-max``: writing and
listing a million small files is what this machine cannot do in a benchmark's time).

Measured, for each pool:
- creation: ``prepare_campaign`` (listing, content hashes, bulk sample insert) on SQLite and,
  with ``--postgres-url``, on PostgreSQL (a throwaway schema, dropped afterwards);
- scoring: the round's own ``score_step`` on an active round (BALD, MC dropout, ``--mc-samples``
  passes, a small CNN with random weights: speed does not depend on the weights) — reading the
  pool, decoding, prediction, per-sample reduction and the bulk score write — in a child that
  sets the allocator as ``activelabel`` does at start (``activelabel.memory.steady_allocator``;
  ``--plain-allocator`` measures glibc's default instead);
- sharding: the same 100k pool scored by ``score_step(..., run_shards=...)`` on a 2-worker Dask
  LocalCluster (Prefect's Dask task runner) against the same shards run in one process.

    nice -n 5 python bench/scale.py --sizes 10000 100000 1000000 --files-max 100000 \\
        --postgres-url "$ACTIVELABEL_TEST_POSTGRES_URL" --dask-size 100000 --out bench/results/scale.md
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np

LABELS = tuple(str(d) for d in range(10))
#: Runs its arguments as a child of a ~10 MB process (see run_child).
LAUNCHER = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"


# ---------------------------------------------------------------- data
def make_npy(path: Path, count: int, seed: int = 0) -> Path:
    """``count`` distinct 28x28 uint8 images (blobs on noise), written block by block."""
    if path.exists():
        return path
    out = np.lib.format.open_memmap(path.with_suffix(".tmp.npy"), mode="w+", dtype=np.uint8, shape=(count, 28, 28))
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28]
    for start in range(0, count, 50_000):
        n = min(50_000, count - start)
        cy, cx = rng.uniform(6, 22, (2, n, 1, 1))
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 18.0) * 200
        out[start:start + n] = np.clip(blob + rng.integers(0, 56, (n, 28, 28)), 0, 255).astype(np.uint8)
    out.flush()
    del out
    os.replace(path.with_suffix(".tmp.npy"), path)
    return path


def make_files(folder: Path, array: Path, count: int) -> Path:
    """The first ``count`` rows of ``array`` as PNG files, 1,000 per sub-folder."""
    if (folder / ".done").exists():
        return folder
    from PIL import Image

    rows = np.load(array, mmap_mode="r")
    for i in range(count):
        sub = folder / f"{i // 1000:04d}"
        if i % 1000 == 0:
            sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(rows[i])).save(sub / f"{i:07d}.png", compress_level=1)
    (folder / ".done").write_text("ok")
    return folder


# ---------------------------------------------------------------- children
def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _config(pool: str, name: str, mc_samples: int, workers: int):
    from activelabel.campaign.config import CampaignConfig

    return CampaignConfig(name=name, dataset="files", data_pool=pool, labels=LABELS, annotator="labelstudio",
                          evaluation_size=0, batch_size=20, mc_samples=mc_samples, loader_workers=workers,
                          image_size=28, device="cpu", calibrate=False)


def _engine(url: str, schema: str | None):
    from sqlalchemy.engine import make_url

    from activelabel.storage import open_engine

    if schema:
        url = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False)
    return open_engine(url)


def _db_bytes(engine, url: str) -> int:
    from sqlalchemy import text

    if url.startswith("sqlite"):
        engine.dispose()
        return Path(url.split("///", 1)[1]).stat().st_size
    with engine.connect() as connection:
        return int(connection.scalar(text(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind = 'r'")))


def child_create(args: dict) -> dict:
    from activelabel.campaign import prepare_campaign

    engine = _engine(args["url"], args.get("schema"))
    config = _config(args["pool"], "scale", args["mc_samples"], args["workers"])
    import activelabel.pipeline.memmap  # noqa: F401 — torch's import (~3 s) is not creation time

    started = time.perf_counter()
    prepare_campaign(engine, config)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "peak_mb": _peak_mb(), "db_bytes": _db_bytes(engine, args["url"])}


def _active_round(engine, config) -> int:
    """An active round in ``scoring`` with a small CNN (random weights) as its checkpoint."""
    import torch

    from activelabel.campaign.model_settings import model_spec
    from activelabel.pipeline.checkpoint import serialize_weights
    from activelabel.pipeline.model import build_model
    from activelabel.storage import Campaign, ModelCheckpoint, Round, RoundKind, RoundStatus, session_scope

    torch.manual_seed(0)
    spec = model_spec(config, 1, len(LABELS))
    net = build_model(spec)
    with session_scope(engine) as session:
        campaign = session.query(Campaign).one()
        rnd = Round(campaign_id=campaign.id, index=1, strategy=campaign.strategy, kind=RoundKind.active,
                    status=RoundStatus.scoring, timings={}, model_version="bench")
        session.add(rnd)
        session.flush()
        session.add(ModelCheckpoint(round_id=rnd.id, member=0, version="bench", architecture=spec.to_dict(),
                                    state=serialize_weights(net)))
        return rnd.id


def child_score(args: dict) -> dict:
    from activelabel.campaign import steps
    from activelabel.storage import Round, session_scope

    if not args.get("plain_allocator"):
        from activelabel.memory import steady_allocator

        steady_allocator()  # what `activelabel` does first (cli.main)
    engine = _engine(args["url"], None)
    config = _config(args["pool"], "scale", args["mc_samples"], args["workers"])
    round_id = _active_round(engine, config)
    before = _peak_mb()
    started = time.perf_counter()
    steps.score_step(engine, round_id)
    seconds = time.perf_counter() - started
    with session_scope(engine) as session:
        scored = session.get(Round, round_id).pool_count
    return {"seconds": seconds, "peak_mb": _peak_mb(), "peak_mb_before": before, "scored": scored,
            "db_bytes": _db_bytes(engine, args["url"])}


def child_shards(args: dict) -> dict:
    """The round's ``score_step`` with its pool cut into shards: on a Dask LocalCluster, or run
    one after another in this process (the same shard code)."""
    from sqlalchemy import func, select

    from activelabel.campaign import steps
    from activelabel.campaign.shards import InProcessShards
    from activelabel.memory import steady_allocator
    from activelabel.storage import Score, session_scope

    steady_allocator()
    engine = _engine(args["url"], None)
    config = _config(args["pool"], "scale", args["mc_samples"], args["workers"])
    round_id = _active_round(engine, config)
    if args["dask_workers"]:
        from activelabel.flows.sharded import DaskShards

        runner = DaskShards(workers=args["dask_workers"], database_url=args["url"])
    else:
        runner = InProcessShards(shards=4, database_url=args["url"])
    started = time.perf_counter()
    steps.score_step(engine, round_id, run_shards=runner)
    seconds = time.perf_counter() - started
    with session_scope(engine) as session:
        scored, checksum = session.execute(select(func.count(), func.sum(Score.value * Score.sample_id))
                                           .where(Score.round_id == round_id)).one()
    return {"seconds": seconds, "peak_mb": _peak_mb(), "scored": scored, "checksum": float(checksum)}


def run_child(kind: str, args: dict, *, timeout: float = 3600) -> dict:
    """Run one measurement in a child process of its own session; anything it left running
    (the temporary Prefect API server a Dask flow starts) is stopped with its process group."""
    import signal
    import tempfile

    # Through a small launcher process: a child's ru_maxrss starts at its parent's resident size
    # when it forks (Linux keeps the high-water mark across exec), and the driver holds arrays.
    command = [sys.executable, "-S", "-c", LAUNCHER, sys.executable, __file__, "_child", kind, json.dumps(args)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PREFECT_LOGGING_LEVEL": "WARNING"}
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(command, stdout=out, stderr=err, text=True, env=env, start_new_session=True)
        try:
            code = child.wait(timeout=timeout)
        finally:
            try:
                os.killpg(child.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if code != 0:
        raise RuntimeError(f"{kind} {args} failed:\n{stderr[-4000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - started
    print(kind, {k: v for k, v in args.items() if k != "url"}, result, flush=True)
    return result


# ---------------------------------------------------------------- driver
def _pg_schema(url: str, create: bool, schema: str) -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"' if create else f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def start_prefect_server(work: Path):
    """A Prefect API server for the Dask child (the temporary one Prefect starts by itself
    times out on a busy 2-core machine); returns the process, PREFECT_API_URL is set."""
    import socket
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    home = work / "prefect-home"
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_UI_ENABLED": "false"}
    log = open(work / "prefect-server.log", "w")
    server = subprocess.Popen([str(Path(sys.executable).with_name("prefect")), "server", "start", "--host",
                               "127.0.0.1", "--port", str(port), "--no-ui"], env=env, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as answer:
                if answer.status == 200:
                    os.environ["PREFECT_API_URL"] = url
                    return server
        except OSError:
            time.sleep(1)
    raise RuntimeError(f"the Prefect server did not answer within 600 s; see {work / 'prefect-server.log'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--files-max", type=int, default=100_000, help="largest pool also stored as PNG files")
    parser.add_argument("--postgres-url", default=None)
    parser.add_argument("--mc-samples", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers while scoring")
    parser.add_argument("--dask-size", type=int, default=100_000, help="pool for Dask vs one process (0: skip)")
    parser.add_argument("--score-max", type=int, default=None, help="largest pool also scored (default: all)")
    parser.add_argument("--plain-allocator", action="store_true",
                        help="score with glibc's default allocator settings (not activelabel's)")
    parser.add_argument("--report-only", action="store_true", help="rewrite --out from --work/results.json")
    parser.add_argument("--work", type=Path, default=Path("/tmp/activelabel-scale"))
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results") / "scale.md")
    opts = parser.parse_args()
    opts.work.mkdir(parents=True, exist_ok=True)
    biggest = max(opts.sizes)
    results: list[dict] = []
    if opts.report_only:
        results = json.loads((opts.work / "results.json").read_text())
        opts.out.write_text(report(results, opts, biggest))
        print(opts.out.read_text())
        return
    server = start_prefect_server(opts.work) if opts.dask_size in opts.sizes else None
    try:
        run_all(opts, results)
    finally:
        if server is not None:
            import signal

            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(report(results, opts, biggest))
    print(opts.out.read_text())


def run_all(opts, results: list[dict]) -> None:
    for size in sorted(opts.sizes):
        array = make_npy(opts.work / f"pool{size}.npy", size)
        pools = [("npy", str(array))]
        if size <= opts.files_max:
            started = time.perf_counter()
            folder = make_files(opts.work / f"files{size}", array, size)
            print(f"files {size}: written in {time.perf_counter() - started:.0f} s", flush=True)
            pools.append(("files", str(folder)))
        for kind, pool in pools:
            base = {"pool": pool, "mc_samples": opts.mc_samples, "workers": opts.workers,
                    "plain_allocator": opts.plain_allocator}
            db = opts.work / f"{kind}{size}.db"
            db.unlink(missing_ok=True)
            row = {"size": size, "kind": kind}
            row["create_sqlite"] = run_child("create", {**base, "url": f"sqlite:///{db}"})
            if opts.postgres_url:
                schema = f"al_scale_{uuid.uuid4().hex[:10]}"
                _pg_schema(opts.postgres_url, True, schema)
                try:
                    row["create_postgres"] = run_child("create", {**base, "url": opts.postgres_url, "schema": schema})
                finally:
                    _pg_schema(opts.postgres_url, False, schema)
            if opts.score_max is None or size <= opts.score_max:
                row["score"] = run_child("score", {**base, "url": f"sqlite:///{db}"})
            if size == opts.dask_size and kind == "npy":
                for workers in (0, 2):
                    db.unlink(missing_ok=True)
                    run_child("create", {**base, "url": f"sqlite:///{db}"})
                    row[f"shards_{workers}"] = run_child("shards", {**base, "url": f"sqlite:///{db}",
                                                                     "dask_workers": workers})
            db.unlink(missing_ok=True)
            results.append(row)
            (opts.work / "results.json").write_text(json.dumps(results, indent=1))


def report(results: list[dict], opts, biggest: int) -> str:
    lines = [
        "# Scale: pools of 10k to 1M 28x28 images (issue #11)", "",
        f"Command: `nice -n 5 python bench/scale.py --sizes {' '.join(map(str, opts.sizes))} "
        f"--files-max {opts.files_max}{f' --score-max {opts.score_max}' if opts.score_max else ''} "
        f"--mc-samples {opts.mc_samples} --workers {opts.workers} "
        f"--dask-size {opts.dask_size}{' --postgres-url $ACTIVELABEL_TEST_POSTGRES_URL' if opts.postgres_url else ''}"
        f"{' --plain-allocator' if opts.plain_allocator else ''}`",
        "", f"Machine: {os.cpu_count()} CPUs (shared with other jobs), CPU only; every figure from its own "
        "child process (peak RSS = that process's ru_maxrss).", "",
        "| pool | stored as | create SQLite (s) | peak RSS (MB) | SQLite size (MB) | create PostgreSQL (s) | "
        "PG size (MB) | score (s) | samples/s | score peak RSS (MB) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results:
        c, s, p = row["create_sqlite"], row.get("score"), row.get("create_postgres")
        lines.append(
            f"| {row['size']:,} | {row['kind']} | {c['seconds']:.1f} | {c['peak_mb']:.0f} | {c['db_bytes'] / 2**20:.0f} | "
            f"{p['seconds']:.1f} | {p['db_bytes'] / 2**20:.0f} | " if p else
            f"| {row['size']:,} | {row['kind']} | {c['seconds']:.1f} | {c['peak_mb']:.0f} | {c['db_bytes'] / 2**20:.0f} | - | - | "
        )
        lines[-1] += (f"{s['seconds']:.1f} | {s['scored'] / s['seconds']:,.0f} | {s['peak_mb']:.0f} |" if s
                      else "not run | - | - |")
    by = {(r["size"], r["kind"]): r for r in results}
    lines += ["", "## Goals", ""]
    scored = sorted(size for (size, kind), row in by.items() if kind == "npy" and "score" in row)
    for big_size, small_size in zip(scored[1:], scored[:-1]):
        big, small = by[(big_size, "npy")], by[(small_size, "npy")]
        ratio = big["score"]["seconds"] / small["score"]["seconds"]
        lines.append(f"- scoring time {big_size:,} / {small_size:,} (npy): **{ratio:.2f}** "
                     f"(pools {big_size / small_size:.0f}x; goal at 1M / 100k: <= 11)")
    if (biggest, "npy") in by:
        big = by[(biggest, "npy")]
        if "score" in big:
            lines.append(f"- peak RSS scoring {biggest:,}: **{big['score']['peak_mb']:.0f} MB** (goal < 2048 MB)")
        lines.append(f"- peak RSS creating {biggest:,}: **{big['create_sqlite']['peak_mb']:.0f} MB** (SQLite)"
                     + (f", **{big['create_postgres']['peak_mb']:.0f} MB** (PostgreSQL)" if "create_postgres" in big
                        else ""))
        lines.append(f"- creation of {biggest:,} on SQLite: **{big['create_sqlite']['seconds']:.1f} s**"
                     + (f", on PostgreSQL: **{big['create_postgres']['seconds']:.1f} s**" if "create_postgres" in big
                        else "") + " (goal < 60 s)")
    for row in results:
        if "shards_2" in row:
            one, two = row["shards_0"], row["shards_2"]
            same = abs(one["checksum"] - two["checksum"]) == 0 and one["scored"] == two["scored"]
            lines.append(f"- Dask, {row['size']:,} (npy): one process {one['seconds']:.1f} s, 2 local workers "
                         f"{two['seconds']:.1f} s: speed-up **{one['seconds'] / two['seconds']:.2f}** "
                         f"(same scores: {same})")
    lines += ["", "Raw figures (JSON):", "", "```json", json.dumps(results, indent=1), "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        kind, payload = sys.argv[2], json.loads(sys.argv[3])
        result = {"create": child_create, "score": child_score, "shards": child_shards}[kind](payload)
        print(json.dumps(result))
    else:
        main()
