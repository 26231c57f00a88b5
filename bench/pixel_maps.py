"""Benchmark: chunked per-pixel uncertainty maps against the naive whole-pool tensor (issue #10).

Per-pixel maps (entropy, BALD, variance, max-softmax) and a top-q image score for a pool of
``N`` images at T = 20 passes, C = 5 classes, 64 x 64 pixels, two ways:

- **chunked**: what ``segmentation_scores`` does: probabilities arrive chunk by chunk
  (``--chunk`` images; here copies of one fixed chunk of softmax outputs, standing in for the
  model), each chunk is reduced to maps and scores, and only the ``[N]`` scores are kept;
- **naive**: the pool's whole ``[T, N, C, H, W]`` float32 tensor is built first, then reduced
  in one call (``pixel_maps(probs, chunk_size=N)``).

Reported per run: wall time, images/s, and the peak of memory allocated through Python and
numpy (``tracemalloc``; numpy reports its buffers to it), which is the working set the method
needs, independent of the allocator and of the interpreter's own footprint. The model's
forward passes are not included: this isolates the maps. Naive runs use small pools only (its
memory grows ~12 MB per image at these sizes).

    OMP_NUM_THREADS=1 python bench/pixel_maps.py                     # chunked 1k and 10k, naive 100 and 200
    OMP_NUM_THREADS=1 python bench/pixel_maps.py --chunked 500 --naive 50 100 --chunk 16
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from activelabel.acquisition.pixelwise import aggregate, pixel_maps, stream_pixel_maps

T, C, H, W = 20, 5, 64, 64


def _template(chunk: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(T, chunk, C, H, W)).astype(np.float32)
    probs = np.exp(logits - logits.max(axis=2, keepdims=True))
    return probs / probs.sum(axis=2, keepdims=True)


def chunked(n: int, chunk: int) -> tuple[float, int, np.ndarray]:
    template = _template(chunk)
    tracemalloc.start()

    def chunks():
        for start in range(0, n, chunk):
            yield template[:, : min(chunk, n - start)].copy()

    started = time.perf_counter()
    scores = np.concatenate([aggregate(m.entropy, "top_q", q=0.1) for m in stream_pixel_maps(chunks())])
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return elapsed, peak, scores


def naive(n: int, chunk: int) -> tuple[float, int, np.ndarray]:
    template = _template(chunk)
    tracemalloc.start()
    started = time.perf_counter()
    pool = np.concatenate([template[:, : min(chunk, n - s)] for s in range(0, n, chunk)], axis=1)
    maps = pixel_maps(pool, chunk_size=n)
    scores = aggregate(maps.entropy, "top_q", q=0.1)
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return elapsed, peak, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunked", type=int, nargs="*", default=[1000, 10000], help="pool sizes, chunked")
    parser.add_argument("--naive", type=int, nargs="*", default=[100, 200], help="pool sizes, naive")
    parser.add_argument("--chunk", type=int, default=32, help="images per chunk")
    args = parser.parse_args()
    rows = []
    for method, sizes, run in (("naive", args.naive, naive), ("chunked", args.chunked, chunked)):
        for n in sizes:
            elapsed, peak, scores = run(n, args.chunk)
            rows.append((method, n, elapsed, n / elapsed, peak / 2**20))
            print(f"{method:8s} N={n:6d}  {elapsed:8.1f} s  {n / elapsed:7.1f} images/s  peak {peak / 2**20:9.1f} MiB",
                  flush=True)
    print()
    print(f"T={T}, C={C}, {H}x{W}, chunk {args.chunk}\n")
    print("| method | pool N | wall s | images/s | peak MiB (tracemalloc) |")
    print("|---|---|---|---|---|")
    for method, n, elapsed, rate, peak in rows:
        print(f"| {method} | {n} | {elapsed:.1f} | {rate:.1f} | {peak:.1f} |")


if __name__ == "__main__":
    main()
