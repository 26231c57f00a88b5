"""BatchBALD cost per acquired point (issue #12): batch 10 over a 2,000-sample pool, S = 20, C = 10.

Goal: under 1 s per acquired point on 2 CPU cores. The pool is synthetic but shaped like MC
outputs of a small classifier: per-sample class logits, plus per-pass noise whose scale varies
across samples (so epistemic uncertainty varies), plus blocks of exact duplicates (so the batch
has something to avoid). Passes are shared across samples (one "w_s" per pass), as BatchBALD
requires.

Reports, for each configuration: wall time of the whole selection, seconds per acquired point,
the sum of the returned scores (for BatchBALD: the batch's joint mutual information, the sum
of its marginal gains; for top-k / Power / SoftmaxBALD: the sum of the picks' BALD scores, an
upper bound on their joint MI) and how many picks are copies of another pick — next to top-k
BALD and Power/SoftmaxBALD for reference. The joint MI can never exceed log S (log 20 = 3.0
nats): S passes cannot carry more information than which pass is the true one.

    OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 MKL_NUM_THREADS=2 \\
        python bench/batchbald.py --pool 2000 --passes 20 --classes 10 --batch 10

``--redux`` also times batchbald_redux's ``get_batchbald_batch`` on the same pool when it is
importable (install it in a throwaway location, never as a project dependency).
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TQDM_DISABLE", "1")  # batchbald_redux draws progress bars
import time

import numpy as np

from activelabel.acquisition import bald, select_top_k
from activelabel.acquisition.batchbald import (
    batchbald_select,
    power_bald_select,
    softmax_bald_select,
)


def synthetic_pool(n: int, s: int, c: int, seed: int, duplicates: int) -> tuple[np.ndarray, np.ndarray]:
    """``[S, N, C]`` probabilities and a group id per sample (copies share an id)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(scale=3.0, size=(n, c))
    noise_scale = rng.gamma(shape=1.5, scale=1.0, size=(n, 1))
    logits = base[None] + noise_scale[None] * rng.normal(size=(s, n, c)) * 2.0
    group = np.arange(n)
    # Copy the `duplicates` most uncertain-looking samples 3 times each over other rows.
    if duplicates:
        e = np.exp(logits - logits.max(axis=-1, keepdims=True))
        scores = bald(e / e.sum(axis=-1, keepdims=True))
        sources = np.argsort(-scores)[:duplicates]
        targets = rng.choice(np.setdiff1d(np.arange(n), sources), size=3 * duplicates, replace=False)
        for i, src in enumerate(np.repeat(sources, 3)):
            logits[:, targets[i]] = logits[:, src]
            group[targets[i]] = src
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True), group


def duplicate_pairs(indices: np.ndarray, group: np.ndarray) -> int:
    groups = group[indices]
    return int(len(groups) - len(set(groups.tolist())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=2000)
    parser.add_argument("--passes", type=int, default=20)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--duplicates", type=int, default=5, help="uncertain samples copied 3x")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--redux", action="store_true", help="also time batchbald_redux")
    args = parser.parse_args()

    probs, group = synthetic_pool(args.pool, args.passes, args.classes, args.seed, args.duplicates)
    print(
        f"pool N={args.pool} S={args.passes} C={args.classes} batch={args.batch}; "
        f"threads OMP={os.environ.get('OMP_NUM_THREADS', 'unset')} cpus={os.cpu_count()}"
    )

    def timed(label: str, fn) -> None:
        best, result = float("inf"), None
        for r in range(args.repeats):
            start = time.perf_counter()
            result = fn(np.random.default_rng(args.seed + r))
            best = min(best, time.perf_counter() - start)
        indices, scores = result
        print(
            f"{label:<44} {best:8.3f} s total {best / args.batch:8.3f} s/point   "
            f"score sum {np.sum(scores):7.3f} nats   duplicate picks {duplicate_pairs(indices, group)}"
        )

    def topk(rng):
        s = bald(probs)
        idx = select_top_k(s, args.batch)
        return idx, s[idx]  # sum of BALD, an upper bound on the batch's joint MI

    timed("top-k BALD (sum of BALD, not joint MI)", topk)
    for m in (1000, 10000):
        timed(f"BatchBALD num_samples={m}", lambda rng, m=m: batchbald_select(probs, args.batch, num_samples=m, rng=rng))
    timed(
        "BatchBALD num_samples=1000 candidates=200",
        lambda rng: batchbald_select(probs, args.batch, num_samples=1000, candidates=200, rng=rng),
    )
    timed("PowerBALD (BALD of picks)", lambda rng: power_bald_select(probs, args.batch, rng=rng))
    timed("SoftmaxBALD (BALD of picks)", lambda rng: softmax_bald_select(probs, args.batch, rng=rng))

    if args.redux:
        try:
            import torch
            from batchbald_redux.batchbald import get_batchbald_batch
        except ImportError as exc:
            print(f"batchbald_redux not importable ({exc}); skipped")
            return
        log_probs = torch.from_numpy(np.log(np.clip(probs.transpose(1, 0, 2), 1e-300, None)))

        def redux(rng, m: int):
            batch = get_batchbald_batch(log_probs, args.batch, m, dtype=torch.double)
            return np.asarray(batch.indices), np.diff(np.r_[0.0, batch.scores])

        for m in (1000, 10000):
            timed(f"batchbald_redux num_samples={m}", lambda rng, m=m: redux(rng, m))
        ours = batchbald_select(probs, args.batch, num_samples=10000, rng=np.random.default_rng(0))
        theirs = redux(None, 10000)
        print(f"same picks as redux (M=10000): {ours.indices.tolist() == theirs[0].tolist()}")
        print(f"  ours   {ours.indices.tolist()}\n  redux  {theirs[0].tolist()}")


if __name__ == "__main__":
    main()
