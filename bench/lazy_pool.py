"""Benchmark: peak memory of scoring a pool of image files lazily (issue #8).

Generates pools of 28x28 grayscale PNG files (default 2,000 and 20,000; cached under --cache),
then, in a fresh subprocess per pool, scores every file the way a round does:

  FileStore(pool, size=28, channels=1).batches(uris, batch_size=256, workers=2)
  -> small CNN (build_model(ModelSpec(in_channels=1, num_classes=10)), untrained, CPU)
  -> T=20 MC-dropout passes (activelabel.pipeline.prediction.mc_dropout)
  -> BALD score per sample (activelabel.acquisition.uncertainty.bald)

keeping only the per-sample score array (float32 [N]) and the positions (int64 [N]).

Reported per pool: the main process's peak RSS (getrusage ru_maxrss), its RSS right before the
pass (after imports and model build), and the DataLoader workers' peak RSS (VmHWM from
/proc/<pid>/status, polled every 0.1 s; RSS of a forked worker counts pages shared with the
parent). The goal: the large pool's peak is no larger than the small pool's plus the score
arrays (12 bytes per sample here).

    python bench/lazy_pool.py                     # 2,000 and 20,000 files, T=20, 2 workers
    python bench/lazy_pool.py --sizes 500 5000 --samples 5
    python bench/lazy_pool.py --mmap-threshold 1048576   # glibc allocator without its dynamic threshold

Why the second form: with glibc's default, freed multi-MiB activation buffers raise the mmap
threshold, later ones come from the heap and are not always returned, so the main process's RSS
wanders by up to the forward pass's working set (~100 MiB at batch 256) from batch to batch and
the *peak* grows with the number of batches sampled, not with anything kept per sample.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

KIB = 1024


def _uris(count: int) -> list[str]:
    return [f"{i // 1000:04d}/{i:07d}.png" for i in range(count)]


def generate(root: Path, count: int, seed: int = 0) -> Path:
    """``count`` random 28x28 grayscale PNGs under ``root/pool-<count>`` (kept between runs)."""
    from PIL import Image

    folder = root / f"pool-{count}"
    marker = folder / ".complete"
    if marker.exists():
        return folder
    rng = np.random.default_rng(seed)
    for uri in _uris(count):
        path = folder / uri
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8), mode="L").save(path, compress_level=1)
    marker.write_text("ok")
    return folder


def _status_kib(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class _ChildPeaks(threading.Thread):
    """Polls /proc for this process's children and keeps each one's VmHWM (peak RSS, KiB)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peaks: dict[int, int] = {}
        self.stop = threading.Event()

    def _children(self) -> list[int]:
        me, found = os.getpid(), []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as handle:
                        ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                if ppid == me:
                    found.append(int(entry))
        return found

    def run(self) -> None:
        while not self.stop.is_set():
            for pid in self._children():
                peak = _status_kib(pid, "VmHWM")
                if peak is not None:
                    self.peaks[pid] = max(peak, self.peaks.get(pid, 0))
            self.stop.wait(0.1)


def score_pool(folder: str, count: int, samples: int, workers: int, batch_size: int) -> dict:
    """Runs in its own process: one lazy scoring pass; returns memory figures (KiB) and timing."""
    import resource

    import torch

    from activelabel.acquisition.uncertainty import bald
    from activelabel.pipeline.model import ModelSpec, build_model
    from activelabel.pipeline.prediction import mc_dropout
    from activelabel.pipeline.store import FileStore

    torch.manual_seed(0)
    model = build_model(ModelSpec(in_channels=1, num_classes=10))
    store = FileStore(folder, size=28, channels=1)
    uris = _uris(count)
    scores = np.zeros(count, dtype=np.float32)  # the per-sample arrays a round keeps
    seen = np.zeros(count, dtype=bool)
    failures = 0
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    current_before = _status_kib(os.getpid(), "VmRSS")
    monitor = _ChildPeaks()
    monitor.start()
    start = time.perf_counter()
    with torch.no_grad(), mc_dropout(model):
        for batch in store.batches(uris, batch_size=batch_size, workers=workers):
            probs = torch.stack([torch.softmax(model(batch.images), dim=-1) for _ in range(samples)])
            scores[batch.positions] = bald(probs.numpy())
            seen[batch.positions] = True
            failures += len(batch.failures)
    seconds = time.perf_counter() - start
    monitor.stop.set()
    monitor.join()
    return {
        "count": count,
        "scored": int(seen.sum()),
        "failures": failures,
        "seconds": round(seconds, 1),
        "main_peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "main_before_pass_kib": before,
        "main_rss_before_pass_kib": current_before,
        "workers_peak_kib": sorted(monitor.peaks.values(), reverse=True),
        "score_arrays_kib": (scores.nbytes + count * 8) / KIB,  # scores + positions as a round keeps them
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--samples", type=int, default=20, help="MC-dropout passes T")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the scoring process")
    parser.add_argument(
        "--mmap-threshold", type=int, default=None, metavar="BYTES",
        help="set MALLOC_MMAP_THRESHOLD_ in the scoring process (fixes glibc's dynamic threshold)",
    )
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "activelabel-bench-lazy-pool")
    parser.add_argument("--child", nargs=2, metavar=("FOLDER", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        result = score_pool(args.child[0], int(args.child[1]), args.samples, args.workers, args.batch_size)
        print(json.dumps(result))
        return

    results = []
    for count in args.sizes:
        started = time.perf_counter()
        folder = generate(args.cache, count)
        print(f"pool of {count:,} files ready in {time.perf_counter() - started:.1f} s: {folder}", flush=True)
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        if args.mmap_threshold is not None:
            env["MALLOC_MMAP_THRESHOLD_"] = str(args.mmap_threshold)
        done = subprocess.run(
            [sys.executable, __file__, "--child", str(folder), str(count), "--samples", str(args.samples),
             "--workers", str(args.workers), "--batch-size", str(args.batch_size), "--threads", str(args.threads)],
            capture_output=True, text=True, env=env,
        )
        if done.returncode != 0:
            sys.exit(f"scoring {count} files failed:\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        results.append(result)
        workers = ", ".join(f"{kib / KIB:.0f}" for kib in result["workers_peak_kib"]) or "none seen"
        print(
            f"{count:>7,} files: scored {result['scored']:,} ({result['failures']} failures) in {result['seconds']} s; "
            f"main peak RSS {result['main_peak_kib'] / KIB:.1f} MiB "
            f"(before the pass {result['main_before_pass_kib'] / KIB:.1f} MiB); "
            f"workers peak RSS [{workers}] MiB; score arrays {result['score_arrays_kib']:.0f} KiB",
            flush=True,
        )
    if len(results) >= 2:
        small, large = results[0], results[-1]
        allowed = small["main_peak_kib"] + (large["score_arrays_kib"] - small["score_arrays_kib"])
        worker_small = max(small["workers_peak_kib"] or [0])
        worker_large = max(large["workers_peak_kib"] or [0])
        print(
            f"ratio {large['count'] // small['count']}x files: main peak {large['main_peak_kib'] / small['main_peak_kib']:.3f}x "
            f"({(large['main_peak_kib'] - small['main_peak_kib']) / KIB:+.1f} MiB), "
            f"workers peak {worker_large / max(worker_small, 1):.3f}x ({(worker_large - worker_small) / KIB:+.1f} MiB); "
            f"goal (large <= small + score arrays = {allowed / KIB:.1f} MiB): "
            f"{'met' if large['main_peak_kib'] <= allowed else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
