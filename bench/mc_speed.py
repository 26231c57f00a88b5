"""MC-dropout pool scoring throughput and selection stability (issue #12).

Throughput: pool scoring at T passes (default 20) over the 10,000 MNIST test images, in one
process, same model and pool for every method:

* ``deterministic``: one eval pass (the floor; T = 1);
* ``naive``: T full forward passes per chunk (shared masks, activelabel's reference mode);
* ``full_network``: ours, layers before the first dropout once per chunk, the rest on T copies;
* ``head_only``: ours, backbone once per chunk, only the classifier on T copies.

Models: ``gal_cnn`` is activelabel's ``small_cnn`` with width 32 (two 3x3 conv layers of 32 and
64 channels with batch norm, max-pool, dropout 0.25, 128 hidden units, dropout 0.5). Gal et al.
2017's MNIST CNN has two 4x4 conv layers of 32 filters and no batch norm: close enough for
throughput (same layer sequence and dropout placement). Its conv dropout makes it
``full_network``; the same network with conv dropout 0 is measured ``head_only``.
``resnet18``: torchvision resnet18 (weights=None) with activelabel's dropout head, on the
images padded to 32x32; its dropout is only in the head, so full-network and head-only coincide.

Stability (``--stability``): a gal_cnn trained on ``--train`` MNIST training images scores the
pool under two MC seeds; reports the overlap of the two top-20 BALD selections and the
Spearman correlation of the scores, against T, with the cost relative to one deterministic pass.
With ``--refine-passes`` (and ``--refine-first``, ``--refine-candidates``), the same run also
measures refinement (``activelabel.campaign.refine``, what a round does): the pool scored with
T passes, its top M re-scored with T_refine passes under the refinement's own mask stream, the
batch = the top 20 of the candidates by refined score; cost = both stages against the same
deterministic pass. ``--seed-pairs 3:4 5:6 ...`` compares the selections of each pair of MC
seeds (default ``1:2``) and ends with the mean and min overlap over the pairs: one pair's
overlap moves by 0.05 per pick, so judge a setting on pairs it was not chosen on.

    OMP_NUM_THREADS=1 python bench/mc_speed.py --threads 1 --pool 10000 --passes 20 --stability

``--baal`` also times baal's MCDropoutModule when ``import baal`` works (a throwaway venv).
"""

from __future__ import annotations

import argparse
import gzip
import time
from pathlib import Path

import numpy as np
import torch

from activelabel.acquisition import bald, confidence, get_strategy, predicted_class
from activelabel.acquisition.decomposition import uncertainty_decomposition
from activelabel.campaign.refine import REFINE_CHUNK, choose_candidates, refine_seed, rescore
from activelabel.pipeline.model import ModelSpec, build_model
from activelabel.pipeline.prediction import mc_strategy, predict_probabilities, predict_stream
from activelabel.pipeline.training import TrainingConfig, train_model

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "MNIST" / "raw"


def read_idx(path: Path, offset: int) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        return np.frombuffer(handle.read(), dtype=np.uint8, offset=offset)


def mnist(split: str, limit: int) -> tuple[np.ndarray, np.ndarray]:
    prefix = "t10k" if split == "test" else "train"
    images = read_idx(DATA / f"{prefix}-images-idx3-ubyte.gz", 16).reshape(-1, 1, 28, 28)[:limit]
    labels = read_idx(DATA / f"{prefix}-labels-idx1-ubyte.gz", 8)[:limit].astype(np.int64)
    return images.astype(np.float32) / 255.0, labels


def timed(model, images, *, samples, mode=None, batch_size, seed=0) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    probs = predict_probabilities(model, images, samples=samples, device=torch.device("cpu"), seed=seed,
                                  batch_size=batch_size, mode=mode)
    return time.perf_counter() - start, probs


def baal_time(model, images, samples, batch_size) -> float | None:
    try:
        from baal.bayesian.dropout import MCDropoutModule
    except ImportError:
        return None
    wrapped = MCDropoutModule(model)
    wrapped.eval()
    start = time.perf_counter()
    with torch.no_grad():
        for s in range(0, len(images), batch_size):
            x = torch.from_numpy(images[s:s + batch_size])
            torch.stack([torch.softmax(wrapped(x), -1) for _ in range(samples)])
    return time.perf_counter() - start


def throughput(args) -> None:
    pool, _ = mnist("test", args.pool)
    padded = np.pad(pool, ((0, 0), (0, 0), (2, 2), (2, 2)))
    torch.manual_seed(0)
    models = {
        "gal_cnn": (build_model(ModelSpec(1, 10, width=32)), pool),
        "gal_cnn (conv dropout 0)": (build_model(ModelSpec(1, 10, width=32, conv_dropout=0.0)), pool),
        "resnet18": (build_model(ModelSpec(1, 10, architecture="resnet18")), padded),
    }
    print(f"\n## Throughput: {len(pool)} MNIST test images, T = {args.passes}, chunk {args.batch}, "
          f"{torch.get_num_threads()} torch thread(s)\n")
    print("| model | method | seconds | images/s | vs naive | vs deterministic |")
    print("|---|---|---:|---:|---:|---:|")
    for name, (model, images) in models.items():
        if args.models and name not in args.models:
            continue
        if name == "resnet18" and args.resnet_pool:
            images = images[: args.resnet_pool]
        model.eval()
        rows = []
        det, _ = timed(model, images, samples=0, batch_size=args.batch)
        rows.append(("deterministic (T = 1)", det))
        naive, reference = timed(model, images, samples=args.passes, mode="naive", batch_size=args.batch)
        rows.append((f"naive T = {args.passes} passes", naive))
        fast_mode = mc_strategy(model, args.passes)
        modes = ["full_network"] + (["head_only"] if fast_mode == "head_only" else [])
        for mode in modes:
            seconds, probs = timed(model, images, samples=args.passes, mode=mode, batch_size=args.batch)
            assert np.allclose(probs, reference, atol=1e-4), f"{mode} differs from naive"
            rows.append((f"ours, {mode}", seconds))
        if args.baal:
            seconds = baal_time(model, images, args.passes, args.batch)
            rows.append(("baal MCDropoutModule", seconds))
        for method, seconds in rows:
            if seconds is None:
                print(f"| {name} | {method} | not installed | | | |")
                continue
            print(f"| {name} ({len(images)} images) | {method} | {seconds:.2f} | {len(images) / seconds:,.0f} | "
                  f"{naive / seconds:.1f}x | {seconds / det:.2f}x |")


def overlap_top(a: np.ndarray, b: np.ndarray, k: int = 20) -> float:
    top_a = set(np.argsort(-a, kind="stable")[:k])
    top_b = set(np.argsort(-b, kind="stable")[:k])
    return len(top_a & top_b) / k


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(a)).astype(np.float64)
    rb = np.argsort(np.argsort(b)).astype(np.float64)
    return float(np.corrcoef(ra, rb)[0, 1])


def scored(model, pool, *, samples: int, seed: int, batch: int) -> tuple[float, np.ndarray]:
    """(seconds, BALD [N]) of what a round computes per chunk: the probabilities, the strategy's
    score and the stored decomposition, the predicted class and its confidence."""
    start = time.perf_counter()
    scores = []
    chunks = (pool[s:s + batch] for s in range(0, len(pool), batch))
    for probs in predict_stream(model, chunks, samples=samples, device=torch.device("cpu"), seed=seed):
        scores.append(bald(probs))
        uncertainty_decomposition(probs)
        predicted_class(probs), confidence(probs)
    return time.perf_counter() - start, np.concatenate(scores)


def refined_top(model, pool, first: np.ndarray, seed: int, candidates: int, passes: int, batch: int,
                k: int = 20) -> tuple[float, np.ndarray]:
    """(seconds, top-k pool positions) of the refinement stage after first-stage BALD ``first``:
    what ``campaign.refine.refine_pool`` does, on in-memory images."""
    start = time.perf_counter()
    chosen = choose_candidates(first, np.arange(len(first)), candidates)
    chunks = [chosen[s:s + REFINE_CHUNK] for s in range(0, len(chosen), REFINE_CHUNK)]
    stream = predict_stream(model, (pool[c] for c in chunks), samples=passes, device=torch.device("cpu"),
                            seed=refine_seed(seed))
    refined = rescore(get_strategy("bald"), zip(chunks, stream), passes)
    seconds = time.perf_counter() - start
    return seconds, refined.positions[refined.ranked()[:k]]


def best_of(repeats: int, run):
    """(fastest seconds, result) of ``repeats`` runs of ``run() -> (seconds, result)``: the
    results are identical (same seed), the fastest time is the one least disturbed by load."""
    runs = [run() for _ in range(max(1, repeats))]
    return min(seconds for seconds, _ in runs), runs[0][1]


def timings(repeats: int, run) -> tuple[list[float], object]:
    """(every run's seconds, result) of ``repeats`` runs of ``run() -> (seconds, result)``."""
    runs = [run() for _ in range(max(1, repeats))]
    return [seconds for seconds, _ in runs], runs[0][1]


def seed_pairs(texts: list[str]) -> list[tuple[int, int]]:
    """``["1:2", "3:4"]`` -> ``[(1, 2), (3, 4)]``: the MC seed pairs whose selections are compared."""
    return [tuple(int(v) for v in text.split(":")) for text in texts]  # type: ignore[misc]


def stability(args) -> None:
    import os

    x, y = mnist("train", args.train)
    pool, _ = mnist("test", args.pool)
    pairs = seed_pairs(args.seed_pairs)
    print(f"\n## Selection stability: models trained on {args.train} MNIST training images "
          f"({args.epochs} epochs), pool = {len(pool)} test images, BALD top-20, MC seed pairs "
          f"{', '.join(f'{a} vs {b}' for a, b in pairs)}\n")
    print(f"Load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}.\n")
    print("Cost = seconds of what a round computes (probabilities, BALD, decomposition, prediction) over "
          "seconds of the same for one deterministic pass. Per seed pair, the deterministic pass is timed "
          f"{max(3, args.repeats)} times before and {max(3, args.repeats)} times after the MC stages, each MC stage "
          f"{args.repeats} times per seed: the cost column gives median over median and, in brackets, fastest "
          "over fastest, per seed of the pair.\n")
    print("| model (mode) | seeds | T | refine M | T_refine | top-20 overlap | Spearman (first stage) | "
          "cost vs deterministic: median (fastest) per seed |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    firsts = sorted(set(args.stability_passes) | (set(args.refine_first) if args.refine_passes else set()))
    summary: dict[tuple, list[tuple[float, float, float]]] = {}
    for label, spec in (("gal_cnn (full_network)", ModelSpec(1, 10, width=32)),
                        ("gal_cnn, conv dropout 0 (head_only)", ModelSpec(1, 10, width=32, conv_dropout=0.0))):
        head = "head_only" in label
        if not head and args.skip_full:
            continue
        model = train_model(x, y, spec, TrainingConfig(epochs=args.epochs), seed=0, device=torch.device("cpu"))
        det = min(scored(model, pool, samples=0, seed=0, batch=args.batch)[0] for _ in range(3))
        for t in firsts:
            if not head and t > args.max_full_passes:
                continue
            for sa_seed, sb_seed in pairs:
                dets, _ = timings(max(3, args.repeats), lambda: scored(model, pool, samples=0, seed=0, batch=args.batch))
                det = min(det, min(dets))
                times_a, sa = timings(args.repeats, lambda: scored(model, pool, samples=t, seed=sa_seed, batch=args.batch))
                times_b, sb = timings(args.repeats, lambda: scored(model, pool, samples=t, seed=sb_seed, batch=args.batch))
                dets += timings(max(3, args.repeats), lambda: scored(model, pool, samples=0, seed=0,
                                                                      batch=args.batch))[0]  # load drifts: re-check
                det = min(det, min(dets))
                rho = spearman(sa, sb)
                if t in args.stability_passes:
                    print(f"| {label} | {sa_seed}:{sb_seed} | {t} | | | {overlap_top(sa, sb):.2f} | {rho:.3f} | "
                          f"{cost(times_a, dets)}, {cost(times_b, dets)} |", flush=True)
                if not args.refine_passes or t not in args.refine_first or not (head or args.refine_full):
                    continue
                for m in args.refine_candidates:
                    for tr in args.refine_passes:
                        ra, top_a = timings(args.repeats,
                                            lambda: refined_top(model, pool, sa, sa_seed, m, tr, args.batch))
                        rb, top_b = timings(args.repeats,
                                            lambda: refined_top(model, pool, sb, sb_seed, m, tr, args.batch))
                        overlap = len(set(top_a.tolist()) & set(top_b.tolist())) / 20
                        both_a = [f + r for f, r in zip(times_a, ra)]
                        both_b = [f + r for f, r in zip(times_b, rb)]
                        print(f"| {label} | {sa_seed}:{sb_seed} | {t} | {m} | {tr} | {overlap:.2f} | {rho:.3f} | "
                              f"{cost(both_a, dets)}, {cost(both_b, dets)} |", flush=True)
                        summary.setdefault((label, t, m, tr), []).append(
                            (overlap, float(np.median(both_a + both_b) / np.median(dets)),
                             min(both_a + both_b) / min(dets)))
        print(f"\nOne deterministic pass of {label} (fastest): {det:.2f} s ({len(pool) / det:,.0f} images/s).\n")
    if summary:
        print("| model | T | refine M | T_refine | pairs | mean overlap | min overlap | median cost (median of pairs) "
              "| highest fastest-over-fastest cost of any pair |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for (label, t, m, tr), rows in summary.items():
            overlaps = [r[0] for r in rows]
            print(f"| {label} | {t} | {m} | {tr} | {len(rows)} | {np.mean(overlaps):.3f} | {min(overlaps):.2f} | "
                  f"{np.median([r[1] for r in rows]):.2f}x | {max(r[2] for r in rows):.2f}x |")
    print(f"\nLoad average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}.")


def cost(times: list[float], dets: list[float]) -> str:
    """``median (fastest)``: the median of ``times`` over the median of the deterministic
    passes ``dets`` timed around them, and the fastest over the fastest; e.g. ``1.02x (0.97x)``."""
    return f"{float(np.median(times) / np.median(dets)):.2f}x ({min(times) / min(dets):.2f}x)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool", type=int, default=10_000)
    parser.add_argument("--resnet-pool", type=int, default=0, help="fewer images for resnet18 (0: all)")
    parser.add_argument("--passes", type=int, default=20)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--baal", action="store_true")
    parser.add_argument("--models", nargs="+", help="throughput only for these models (default: all)")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--stability", action="store_true")
    parser.add_argument("--stability-passes", type=int, nargs="+", default=[5, 20, 100, 500])
    parser.add_argument("--max-full-passes", type=int, default=100, help="largest T for the full-network model")
    parser.add_argument("--refine-passes", type=int, nargs="*", default=[], help="T_refine values (none: no refinement)")
    parser.add_argument("--refine-first", type=int, nargs="+", default=[100], help="first-stage T for refinement")
    parser.add_argument("--refine-candidates", type=int, nargs="+", default=[200], help="M candidates refined")
    parser.add_argument("--refine-full", action="store_true", help="refinement for the full-network model too")
    parser.add_argument("--skip-full", action="store_true", help="stability of the head-only model only")
    parser.add_argument("--repeats", type=int, default=1, help="time each MC stage this many times (median, fastest)")
    parser.add_argument("--seed-pairs", nargs="+", default=["1:2"], help="MC seed pairs compared, e.g. 3:4 5:6")
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not args.skip_throughput:
        throughput(args)
    if args.stability:
        stability(args)


if __name__ == "__main__":
    main()
