"""OOD AUROC on MNIST: feature density vs max-softmax, predictive entropy and BALD (issue #12).

One model, the campaign's default network (``small_cnn``, dropout 0.5, built by
``campaign.model_settings.model_spec``; trained by ``pipeline.training.train_model``), trained
on ``--labels`` seeded-random MNIST training images. In-distribution: the 10,000 MNIST test
digits. Out-of-distribution, generated from them: inverted digits ``1 - x``, uniform noise in
[0, 1], and the test digits rotated 90°. AUROC (``pipeline.metrics.auroc``) with the OOD
inputs as positives and every score oriented "higher = more unusual":

* ``density``: ``-log q(z)`` of the class-conditional Gaussians (DDU, Mukhoti et al. 2021;
  ``acquisition.density.fit_class_gaussians`` on the labeled images' penultimate features
  ``Model.embed``, ``density_score`` on the test / OOD features). One deterministic pass.
* ``max-softmax``: ``1 - max_c p_c`` of one deterministic pass (the baseline).
* ``softmax entropy``: entropy of that one pass (for reference).
* ``predictive entropy`` and ``BALD``: total and epistemic parts of
  ``acquisition.decomposition.uncertainty_decomposition`` over T MC-dropout passes (T = 20).

It also reports the product's OOD flag: the share of each set below ``ood_threshold`` (the 5th
percentile of the labeled set's own log densities). ``--conv-features`` adds the density on
the conv block's output (the layer before the hidden layer, D = 512) to see whether the layer
matters. Rotated digits are partly in-distribution by nature (a rotated 0 or 8 still looks like
a digit), so the rotated row is broken down by digit in the JSON and the markdown.

    OMP_NUM_THREADS=2 PYTHONPATH=$PWD nice -n 5 python bench/ood_auroc.py
    PYTHONPATH=$PWD python bench/ood_auroc.py --quick      # smoke run, ~1 minute
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import DATA, RESULTS, machine, mean_std, write_results  # noqa: E402

from activelabel.acquisition.decomposition import uncertainty_decomposition  # noqa: E402
from activelabel.acquisition.density import density_score, fit_class_gaussians, ood_threshold  # noqa: E402
from activelabel.campaign.config import CampaignConfig  # noqa: E402
from activelabel.campaign.model_settings import model_spec, training_config  # noqa: E402
from activelabel.pipeline.datasets import load_mnist_images  # noqa: E402
from activelabel.pipeline.metrics import auroc  # noqa: E402
from activelabel.pipeline.prediction import predict_probabilities  # noqa: E402
from activelabel.pipeline.training import planned_epochs, train_model, uses_batch_norm  # noqa: E402

GOAL = 0.95
OOD_KINDS = ("inverted", "uniform noise", "rotated 90°")
SCORES = ("density", "max-softmax", "softmax entropy", "predictive entropy", "BALD")


def ood_sets(test: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """The generated OOD inputs, each shaped like ``test`` ``[N, 1, 28, 28]`` float32 in [0, 1]."""
    rng = np.random.default_rng([seed, 0x00D])
    return {
        "inverted": (1.0 - test).astype(np.float32),
        "uniform noise": rng.random(test.shape, dtype=np.float32),
        "rotated 90°": np.ascontiguousarray(np.rot90(test, k=1, axes=(2, 3))),
    }


@torch.no_grad()
def features(model, images: np.ndarray, layer: str, batch: int = 512) -> np.ndarray:
    """float64 ``[N, D]`` features of one deterministic (eval-mode) pass: ``Model.embed`` for
    ``penultimate``; the conv block's output (``features`` after ``normalize``) for ``conv``."""
    model.eval()
    out = []
    for s in range(0, len(images), batch):
        x = torch.from_numpy(images[s:s + batch])
        out.append(model.embed(x) if layer == "penultimate" else model.features(model.normalize(x)))
    return torch.cat(out).double().numpy()


def entropy(p: np.ndarray) -> np.ndarray:
    return -(p * np.log(np.clip(p, 1e-12, 1.0))).sum(axis=-1)


def scores_of(model, density, images: np.ndarray, args, conv_density=None) -> dict[str, np.ndarray]:
    """Every score (higher = more unusual) of ``images``: float64 ``[N]`` each."""
    device = torch.device("cpu")
    det = predict_probabilities(model, images, samples=0, device=device, seed=0)[0].astype(np.float64)
    mc = predict_probabilities(model, images, samples=args.mc_samples, device=device, seed=args.mc_seed)
    parts = uncertainty_decomposition(mc.astype(np.float64))
    out = {
        "density": density_score(density, features(model, images, "penultimate")),
        "max-softmax": 1.0 - det.max(axis=1),
        "softmax entropy": entropy(det),
        "predictive entropy": parts.total,
        "BALD": parts.epistemic,
    }
    if conv_density is not None:
        out["density (conv layer)"] = density_score(conv_density, features(model, images, "conv"))
    return out


def one_seed(seed: int, args, train_set, test_set) -> dict:
    config = CampaignConfig(name=f"bench-ood-{seed}", epochs=args.epochs)
    spec = model_spec(config, in_channels=1, num_classes=10)
    training = training_config(config, args.labels)
    labeled = np.sort(np.random.default_rng([seed, 2000]).permutation(len(train_set))[: args.labels])
    x, y = train_set.images[labeled], train_set.targets[labeled]
    started = time.perf_counter()
    model = train_model(x, y, spec, training, seed=seed * 1_000_003 + 1, device=torch.device("cpu"))
    train_s = time.perf_counter() - started
    started = time.perf_counter()
    train_features = features(model, x, "penultimate")
    density = fit_class_gaussians(train_features, y, num_classes=10)
    threshold = ood_threshold(density, train_features, percentile=5.0)
    conv_density = None
    if args.conv_features:
        conv_density = fit_class_gaussians(features(model, x, "conv"), y, num_classes=10)
    sets = {"in-distribution (MNIST test)": test_set.images, **ood_sets(test_set.images, seed)}
    scored = {name: scores_of(model, density, images, args, conv_density) for name, images in sets.items()}
    score_s = time.perf_counter() - started
    inside = scored["in-distribution (MNIST test)"]
    accuracy = float((predict_probabilities(model, test_set.images, samples=0, device=torch.device("cpu"),
                                            seed=0)[0].argmax(1) == test_set.targets).mean())
    table = {kind: {name: auroc(inside[name], scored[kind][name]) for name in inside} for kind in OOD_KINDS}
    flagged = {name: float((-scored[name]["density"] < threshold).mean()) for name in sets}
    rotated_by_digit = {
        str(d): {name: auroc(inside[name], scored["rotated 90°"][name][test_set.targets == d])
                 for name in ("density", "max-softmax")}
        for d in range(10)
    }
    return {
        "seed": seed, "labels": int(args.labels), "epochs": planned_epochs(len(x), training, skips_batch_of_one=uses_batch_norm(model)),
        "train_seconds": round(train_s, 1), "score_seconds": round(score_s, 1), "test_accuracy": accuracy,
        "feature_dim": density.dim, "max_jitter": float(density.jitters.max()),
        "min_class_count": int(np.bincount(y, minlength=10).min()),
        "auroc": table, "flagged_at_5th_percentile": flagged, "rotated_auroc_by_digit": rotated_by_digit,
    }


def markdown(rows: list[dict], args, wall: float, info: dict) -> str:
    names = list(rows[0]["auroc"]["inverted"])
    r0 = rows[0]
    lines = [
        "# OOD AUROC on MNIST: feature density vs softmax, entropy and BALD (issue #12)",
        "",
        f"`bench/ood_auroc.py`: campaign-default small_cnn trained on {r0['labels']:,} seeded-random MNIST training "
        f"images ({r0['epochs']} epochs; test accuracy {mean_std([r['test_accuracy'] for r in rows], 100, 2)} %). "
        f"In-distribution: the {args.test_size:,} MNIST test digits; OOD: the same digits inverted, rotated 90°, and "
        f"{args.test_size:,} uniform-noise images. Density: class Gaussians on the {r0['feature_dim']}-d penultimate "
        f"features of the labeled images (smallest class {r0['min_class_count']} samples, jitter "
        f"{r0['max_jitter']:g}). MC scores: T = {args.mc_samples}. AUROC with OOD = positive; "
        f"{len(rows)} seed(s), mean ± sample std.",
        "",
        f"Machine: {info['host_cpus']}-core shared VM, {info['torch_threads']} torch thread(s), load average "
        f"{info['load_average_1_5_15'][0]} at the end (other jobs running). Wall time {wall:.0f} s.",
        "",
        "| score | " + " | ".join(OOD_KINDS) + " |",
        "|---|" + "---:|" * len(OOD_KINDS),
    ]
    for name in names:
        cells = [mean_std([r["auroc"][kind][name] for r in rows], 1.0, 3) for kind in OOD_KINDS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    verdicts = []
    for kind in OOD_KINDS:
        d = np.mean([r["auroc"][kind]["density"] for r in rows])
        s = np.mean([r["auroc"][kind]["max-softmax"] for r in rows])
        ok = d >= GOAL and d > s
        verdicts.append(f"{kind}: {'met' if ok else 'missed'} ({d:.3f} vs softmax {s:.3f})")
    lines += ["", f"Goal density >= {GOAL} and > max-softmax, per kind: " + "; ".join(verdicts) + ".", "",
              "The product's OOD flag (log density below the 5th percentile of the labeled set's own densities), "
              "share of each set flagged:", "", "| set | flagged |", "|---|---:|"]
    for name in r0["flagged_at_5th_percentile"]:
        lines.append(f"| {name} | {mean_std([r['flagged_at_5th_percentile'][name] for r in rows], 100, 1)} % |")
    lines += ["", "Rotated 90°, AUROC by original digit (each digit's rotations vs all in-distribution digits):", "",
              "| digit | " + " | ".join(str(d) for d in range(10)) + " |", "|---|" + "---:|" * 10]
    for name in ("density", "max-softmax"):
        lines.append(f"| {name} | " + " | ".join(
            f"{np.mean([r['rotated_auroc_by_digit'][str(d)][name] for r in rows]):.3f}" for d in range(10)) + " |")
    lines += ["", "Command:", "", f"    {args.command}", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Results: bench/results/ood_auroc.md and .json (--quick: /tmp/ood_auroc_quick.md).",
    )
    parser.add_argument("--data", type=Path, default=DATA, help="folder holding MNIST's IDX files (default: %(default)s)")
    parser.add_argument("--labels", type=int, default=2000,
                        help="labeled training images (default 2,000: ~200 per class > D = 128, so every class "
                             "covariance is full rank without jitter, and training stays CPU-feasible)")
    parser.add_argument("--epochs", type=int, default=15, help="training epochs (default: 15)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds (default: 0)")
    parser.add_argument("--mc-samples", type=int, default=20, help="MC-dropout passes T (default: 20)")
    parser.add_argument("--mc-seed", type=int, default=1, help="MC mask seed (default: 1)")
    parser.add_argument("--conv-features", action="store_true",
                        help="also fit the density on the conv block's 512-d output (which layer matters?)")
    parser.add_argument("--test-limit", type=int, default=0, help="use only the first N test images (0: all 10,000)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    parser.add_argument("--out", type=Path, default=None, help="markdown result file (JSON written beside it)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 500 labels, 2 epochs, 1,000 test images, T = 5")
    args = parser.parse_args()
    if args.quick:
        args.labels, args.epochs, args.test_limit, args.mc_samples, args.seeds = 500, 2, 1000, 5, [0]
    out = args.out or (Path("/tmp/ood_auroc_quick.md") if args.quick else RESULTS / "ood_auroc.md")
    args.command = "python bench/ood_auroc.py " + " ".join(sys.argv[1:])
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    train_set = load_mnist_images(args.data, split="train")
    test_set = load_mnist_images(args.data, split="test", limit=args.test_limit or None)
    args.test_size = len(test_set)
    rows = []
    for seed in args.seeds:
        row = one_seed(seed, args, train_set, test_set)
        rows.append(row)
        print(f"seed {seed}: accuracy {row['test_accuracy']:.2%}, training {row['train_seconds']} s, "
              f"scoring {row['score_seconds']} s; density AUROC "
              + ", ".join(f"{k} {row['auroc'][k]['density']:.3f}" for k in OOD_KINDS), flush=True)
    wall = time.perf_counter() - started
    info = machine()
    text = markdown(rows, args, wall, info)
    print("\n" + text)
    write_results(out, text, {"bench": "ood_auroc", "command": args.command, "wall_seconds": round(wall, 1),
                              "machine": info, "goal": GOAL, "seeds": rows})


if __name__ == "__main__":
    main()
