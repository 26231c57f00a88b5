"""Benchmark: which per-pixel map and which aggregation pick better images, through the campaign.

Unlike ``segmentation_strategies.py`` (a library-level loop), every arm here is a real
segmentation campaign: ``CampaignConfig(task="segmentation")``, ``prepare_campaign`` and the
round's own steps (train → score → select → push → sync, the steps the Prefect flows wrap),
with the simulated annotator painting the true masks. mIoU is what each round stored in
``round.segmentation_metrics``, measured on the campaign's test split.

- arms: ``random``; ``entropy`` and ``bald``, each with ``aggregation = mean`` and ``top_q``
  (q = 0.1); all arms of a seed share the data, the test split, the seed masks and round 1's
  model (same campaign seed), so round 1's mIoU is the same for every arm;
- ``--seeds`` seeds (the generated images, split, seed set and training noise change with it);
- round r trains on everything labeled before it, so round 1 measures the seed set and round
  ``--rounds`` measures the seed set plus ``--rounds - 1`` batches; the last round's picks are
  not trained on.

Prints the raw curves, a Markdown table (mean ± std over seeds of mIoU per labeled count, and
the mean over the rounds after the seed set) and paired per-seed differences (top-q − mean,
each arm − random).

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD nice -n 5 python bench/seg_strategies.py
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

ARMS = (("random", "mean"), ("entropy", "mean"), ("entropy", "top_q"), ("bald", "mean"), ("bald", "top_q"))


def run_campaign(engine, folder: Path, strategy: str, aggregation: str, seed: int, args) -> list[tuple[int, float]]:
    """One simulated segmentation campaign; (labeled images, mIoU) per round, as stored."""
    from sqlalchemy import select

    from activelabel.campaign import CampaignConfig, prepare_campaign, steps
    from activelabel.storage import Round, session_scope

    name = f"segbench-{strategy}-{aggregation}-seed{seed}"
    config = CampaignConfig(
        name=name, task="segmentation", dataset=f"shapes?n={args.images}&size={args.size}&seed={seed}",
        strategy=strategy, aggregation=aggregation, aggregation_q=0.1, seed=seed, rounds=args.rounds,
        initial_labeled=args.seed_size, min_labels_to_train=args.seed_size, batch_size=args.batch,
        mc_samples=args.samples, epochs=1, test_fraction=args.test_fraction, device="cpu",
        heatmap_dir=str(folder / "heatmaps" / name),
    )
    campaign_id = prepare_campaign(engine, config)
    for _ in range(args.rounds):
        round_id = steps.start_round(engine, campaign_id)
        for step in (steps.train_step, steps.score_step, steps.select_step, steps.push_step, steps.sync_step):
            step(engine, round_id)
    with session_scope(engine) as session:
        rounds = session.scalars(select(Round).where(Round.campaign_id == campaign_id).order_by(Round.index)).all()
        return [(r.labeled_count, float(r.segmentation_metrics["miou"])) for r in rounds]


def _mean_std(values) -> str:
    values = np.asarray(values, dtype=np.float64)
    std = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():.3f} ± {std:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seed-size", type=int, default=16)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--images", type=int, default=200, help="generated images (pool + test split)")
    parser.add_argument("--test-fraction", type=float, default=0.25)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--samples", type=int, default=8, help="MC-dropout passes (T)")
    parser.add_argument("--only", default=None, help="comma-separated arms, e.g. random/mean,bald/top_q")
    args = parser.parse_args()

    import torch

    from activelabel.storage import open_engine

    torch.set_num_threads(1)
    arms = ARMS if not args.only else tuple(tuple(a.split("/")) for a in args.only.split(","))
    load_before = os.getloadavg()
    started = time.perf_counter()
    curves: dict[str, list[list[float]]] = {}
    labeled: list[int] = []
    with tempfile.TemporaryDirectory(prefix="segbench-") as tmp:
        folder = Path(tmp)
        engine = open_engine(f"sqlite:///{folder}/bench.db")
        for seed in range(args.seeds):
            for strategy, aggregation in arms:
                key = "random" if strategy == "random" else f"{strategy}/{aggregation}"
                t0 = time.perf_counter()
                points = run_campaign(engine, folder, strategy, aggregation, seed, args)
                labeled = [n for n, _ in points]
                curves.setdefault(key, []).append([v for _, v in points])
                print(f"seed {seed} {key:14s} " + " ".join(f"{v:.3f}" for _, v in points)
                      + f"   ({time.perf_counter() - t0:.0f} s)", flush=True)
    wall = time.perf_counter() - started
    print(f"\n{args.seeds} seeds · {args.images} generated {args.size}x{args.size} images "
          f"({args.test_fraction:g} test) · {args.seed_size} seed masks, then {args.rounds - 1} batches of "
          f"{args.batch} · T = {args.samples} · wall {wall:.0f} s · load average {load_before[0]:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after\n")
    print("| arm | " + " | ".join(f"mIoU @ {n}" for n in labeled) + " | mean after the seed set |")
    print("|---|" + "---|" * (len(labeled) + 1))
    for key, runs in curves.items():
        runs_ = np.array(runs)
        cells = [_mean_std(runs_[:, i]) for i in range(runs_.shape[1])]
        print(f"| {key} | " + " | ".join(cells) + f" | {_mean_std(runs_[:, 1:].mean(axis=1))} |")
    print("\nPaired per seed (mean mIoU after the seed set; difference, then the per-seed values):")
    after = {key: np.array(runs)[:, 1:].mean(axis=1) for key, runs in curves.items()}
    pairs = [(f"{m}/top_q − {m}/mean", f"{m}/top_q", f"{m}/mean") for m in ("entropy", "bald")]
    pairs += [(f"{k} − random", k, "random") for k in after if k != "random"]
    for label, a, b in pairs:
        if a in after and b in after:
            d = after[a] - after[b]
            print(f"  {label:28s} {d.mean():+.3f}  (" + ", ".join(f"{v:+.3f}" for v in d) + ")")


if __name__ == "__main__":
    main()
