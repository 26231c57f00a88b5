"""Benchmark: which per-pixel map and which image aggregation pick better images (issue #10).

A library-level active-learning loop on the generated shapes (``make_shapes``), not the
campaign round, which does not run segmentation yet:

- start from ``--seed-size`` labeled images; each of ``--rounds`` rounds trains a fresh small
  U-Net (``unet_small``, width 8, head dropout 0.3) on everything labeled, measures mIoU on a
  fixed test set, scores the unlabeled pool from T = ``--samples`` MC-dropout passes, and
  labels the ``--batch`` best-scored images (their true masks: a perfect simulated annotator);
- strategies: ``entropy`` and ``bald`` maps, each aggregated by ``mean`` and by ``top_q``
  (q = 0.1), against ``random``; every strategy starts from the same seed set and model;
- ``--seeds`` repetitions (data, initial set and training all change with the seed).

Reports mIoU per labeled count and strategy (mean ± std over seeds) and the mean over rounds
after the seed set (area under the learning curve, divided by the number of rounds).

    OMP_NUM_THREADS=1 python bench/segmentation_strategies.py          # 3 seeds, 3 rounds of 32
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from activelabel.pipeline.segmentation import evaluate_segmentation, segmentation_scores, train_segmentation
from activelabel.pipeline.segmentation_model import SegmentationSpec
from activelabel.pipeline.shapes import SHAPE_CLASSES, make_shapes
from activelabel.pipeline.training import TrainingConfig

STRATEGIES = (("random", None), ("entropy", "mean"), ("entropy", "top_q"), ("bald", "mean"), ("bald", "top_q"))


def run(seed: int, args) -> dict[str, list[float]]:
    cpu = torch.device("cpu")
    pool = make_shapes(args.pool, seed=1000 + seed, size=args.size)
    test = make_shapes(args.test, seed=2000 + seed, size=args.size)
    spec = SegmentationSpec(in_channels=3, num_classes=len(SHAPE_CLASSES), width=8, dropout=0.3)
    config = TrainingConfig(epochs=1, batch_size=8, learning_rate=5e-3, min_steps=args.steps, augment=True)
    first = np.random.default_rng(seed).choice(args.pool, args.seed_size, replace=False)
    model0 = train_segmentation(pool.images[first], pool.masks[first], spec, config, seed=seed, device=cpu)
    miou0 = evaluate_segmentation(model0, test.images, test.masks, device=cpu).miou
    curves = {}
    for name, how in STRATEGIES:
        labeled = list(first)
        model, curve = model0, [miou0]
        rng = np.random.default_rng([seed, 7])
        for r in range(args.rounds):
            rest = np.setdiff1d(np.arange(args.pool), labeled)
            if name == "random":
                scores = rng.random(len(rest))
            else:
                scores = segmentation_scores(model, pool.images[rest], samples=args.samples, device=cpu,
                                             seed=seed * 100 + r, map_name=name, how=how, q=0.1).scores
            labeled += [int(rest[i]) for i in np.argsort(-scores, kind="stable")[: args.batch]]
            model = train_segmentation(pool.images[labeled], pool.masks[labeled], spec, config, seed=seed, device=cpu)
            curve.append(evaluate_segmentation(model, test.images, test.masks, device=cpu).miou)
        key = name if how is None else f"{name}/{how}"
        curves[key] = curve
        print(f"seed {seed} {key:14s} " + " ".join(f"{v:.3f}" for v in curve), flush=True)
    return curves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed-size", type=int, default=16)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--pool", type=int, default=300)
    parser.add_argument("--test", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--steps", type=int, default=400)
    args = parser.parse_args()
    started = time.perf_counter()
    results = [run(seed, args) for seed in range(args.seeds)]
    counts = [args.seed_size + r * args.batch for r in range(args.rounds + 1)]
    print(f"\n{args.seeds} seeds, {args.size}x{args.size} shapes, pool {args.pool}, test {args.test}, "
          f"T={args.samples}, {args.steps} training steps per round, {time.perf_counter() - started:.0f} s\n")
    print("| strategy | " + " | ".join(f"mIoU @ {c}" for c in counts) + " | mean after seed set |")
    print("|---|" + "---|" * (len(counts) + 1))
    for key in results[0]:
        curves = np.array([r[key] for r in results])
        cells = [f"{m:.3f} ± {s:.3f}" for m, s in zip(curves.mean(axis=0), curves.std(axis=0))]
        after = curves[:, 1:].mean(axis=1)
        print(f"| {key} | " + " | ".join(cells) + f" | {after.mean():.3f} ± {after.std():.3f} |")


if __name__ == "__main__":
    main()
