"""What following new files costs before each round: a folder of N small PNG files.

Before a new round, :func:`activelabel.campaign.growth.join_new_files` lists ``data.pool``
again and compares it with the stored URIs; only new files are hashed and decoded. Measured on
a campaign of N files (SQLite), each call repeated and the minimum and median kept:

- ``join, nothing new``: the per-round overhead when nobody added a file (listing + one query);
- ``listing only``: :func:`activelabel.campaign.data.list_pool_files`;
- baseline, in the same run: ``find_changes``, the check every ``activelabel run`` already made
  before this work (a ``stat`` of each stored file, :mod:`activelabel.campaign.integrity`);
- ``join, 100 new``: 100 files added (listing, hashing, decoding, one insert transaction), as
  a round start runs it: inside :func:`activelabel.campaign.data.one_pool_listing`, so the join
  and the refresh of the cached campaign data share one listing; baseline in the same run: the
  same join without it (each reader lists the folder itself: two listings, the code before).
  Three additions each, alternating, minimum kept; ``walks`` counts the folder listings.

    nice -n 5 python bench/pool_growth.py --sizes 10000 100000 --work /tmp/pool-growth-bench \\
        --out bench/results/pool_growth.md
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image


def write_pool(folder: Path, count: int, seed: int, prefix: str = "i") -> None:
    rng = np.random.default_rng(seed)
    for i in range(count):
        sub = folder / f"d{i // 500:04d}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8), mode="L").save(sub / f"{prefix}{i:07d}.png")


def timed(call, repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return min(times), statistics.median(times)


class _count_walks:
    """Counts the pool-folder walks (``data._walk_pool`` calls) until :meth:`stop`."""

    def __init__(self) -> None:
        import activelabel.campaign.data as data

        self.data, self.real, self.calls = data, data._walk_pool, 0

        def counted(pool, labels):
            self.calls += 1
            return self.real(pool, labels)

        data._walk_pool = counted

    def stop(self) -> int:
        self.data._walk_pool = self.real
        return self.calls


def measure(size: int, work: Path, repeats: int) -> dict:
    from activelabel.campaign import prepare_campaign
    from activelabel.campaign.config import CampaignConfig
    from activelabel.campaign.data import campaign_data, list_pool_files, one_pool_listing
    from activelabel.campaign.growth import join_new_files
    from activelabel.campaign.integrity import find_changes
    from activelabel.storage import open_engine

    root = work / f"pool-{size}"
    shutil.rmtree(root, ignore_errors=True)
    images = root / "images"
    write_pool(images, size, seed=size)
    config = CampaignConfig(name=f"growth-{size}", dataset="files", data_pool=str(images), labels=("a", "b"),
                            batch_size=10, annotator="labelstudio", evaluation_size=0)
    engine = open_engine(f"sqlite:///{root / 'al.db'}")
    started = time.perf_counter()
    campaign_id = prepare_campaign(engine, config)
    created = time.perf_counter() - started
    store = campaign_data(config).store
    row = {
        "size": size,
        "create": created,
        "join_nothing": timed(lambda: join_new_files(engine, campaign_id, config), repeats),
        "listing": timed(lambda: list_pool_files(config), repeats),
        "find_changes": timed(lambda: find_changes(engine, campaign_id, store, config), repeats),
    }
    shared_times, own_times, walks = [], [], {}
    for attempt in range(3):
        for shared in (True, False):
            write_pool(images / f"new{attempt}{'s' if shared else 'o'}", 100, seed=size + 10 * attempt + shared,
                       prefix=f"n{attempt}{int(shared)}")
            counter = _count_walks()
            started = time.perf_counter()
            if shared:
                with one_pool_listing():
                    growth = join_new_files(engine, campaign_id, config)
            else:
                growth = join_new_files(engine, campaign_id, config)
            (shared_times if shared else own_times).append(time.perf_counter() - started)
            walks["shared" if shared else "own"] = counter.stop()
            assert growth.joined == 100, growth
    row["join_100"] = min(shared_times)
    row["join_100_before"] = min(own_times)
    row["walks"] = walks
    engine.dispose()
    shutil.rmtree(root, ignore_errors=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--work", type=Path, default=Path("/tmp/pool-growth-bench"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    load_before = os.getloadavg()
    rows = [measure(size, args.work, args.repeats) for size in args.sizes]
    load_after = os.getloadavg()
    lines = [
        "| files | create | join, nothing new (min / median) | listing only | find_changes (baseline) "
        "| join / find_changes | join, 100 new: one listing (walks) | before: a listing per reader (walks) "
        "| ratio |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']:,} | {r['create']:.1f} s | {r['join_nothing'][0]:.3f} / {r['join_nothing'][1]:.3f} s "
            f"| {r['listing'][0]:.3f} s | {r['find_changes'][0]:.3f} / {r['find_changes'][1]:.3f} s "
            f"| {r['join_nothing'][0] / r['find_changes'][0]:.2f} | {r['join_100']:.2f} s ({r['walks']['shared']}) "
            f"| {r['join_100_before']:.2f} s ({r['walks']['own']}) | {r['join_100'] / r['join_100_before']:.2f} |")
    lines.append("")
    lines.append(f"Load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after; "
                 f"{os.cpu_count()} CPUs; minimum of {args.repeats} calls.")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text("# Following new files: cost before each round\n\n" + text + "\n")


if __name__ == "__main__":
    main()
