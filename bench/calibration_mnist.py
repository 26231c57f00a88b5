"""Calibration on MNIST after a round at 1,000 labels: temperature scaling before/after (issue #12).

What a round does, with the product's own functions: the campaign's default model and training
recipe (``campaign.model_settings.model_spec`` / ``training_config`` of a default
``CampaignConfig``), the round's held-out validation split (``campaign.calibrate.
validation_positions``: 15 % of the labeled set, drawn with the round's seed), training on the
rest (``pipeline.training.train_model``), one deterministic pass over the yardstick, and
``campaign.calibrate.fit_round_calibration`` (LBFGS on the validation NLL, Guo et al. 2017).
The yardstick is the 10,000 MNIST test images. Reported per seed and as mean ± std: accuracy,
NLL, Brier and ECE (15 equal-width bins) before and after scaling, and the temperature.

The 1,000 labels are a seeded uniform sample of the 60,000 training images (a stand-in for
whatever earlier rounds picked; active picks would be harder, less typical images). Each seed
changes the labeled set, the validation split and the training seed together, as a campaign
seed does (round seed = seed x 1,000,003 + round index, round index 1).

The round calibrates the predictor acquisition reads. For the default campaign
(``uncertainty = "mc_dropout"``, T = ``--mc-samples``) that is the mean of T MC-dropout softmaxes
with the round's mask seed, so the main table is ``fit_round_calibration(..., samples=T,
seed=round seed)`` on the MC yardstick logits: the round's calibrator, i.e. whichever of none,
the per-pass T1 (bounded scalar search on the NLL of that mean), the mixture temperature T2 on
the log of the mean, or T1 then T2 has the lowest 5-fold out-of-fold NLL on the held-out split.
A "T1 only" column replays the round's calibrator before T2 existed (the same stored K-fold
check of T1) on the same models, as the baseline.
The second table is one deterministic pass (``uncertainty = "deterministic"``, LBFGS), and a
third row set shows what the MC mean looked like with the deterministic temperature (the round's
behaviour before the predictor was calibrated). ``big-val`` fits the deterministic temperature on
``--big-validation`` *training* images outside the labeled set, to separate "the 150-sample
validation split gives a noisy T" from "one temperature cannot calibrate this model". Nothing is
ever fitted on the test images.

    OMP_NUM_THREADS=2 PYTHONPATH=$PWD nice -n 5 python bench/calibration_mnist.py
    PYTHONPATH=$PWD python bench/calibration_mnist.py --quick     # smoke run, ~1 minute
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

from activelabel.campaign.calibrate import BINS, fit_round_calibration, validation_positions  # noqa: E402
from activelabel.campaign.config import CampaignConfig  # noqa: E402
from activelabel.campaign.model_settings import model_spec, training_config  # noqa: E402
from activelabel.pipeline.calibration import (  # noqa: E402
    calibrated_probabilities,
    calibration_report,
    fit_mixture_sharpness,
    fit_mixture_temperature,
    fit_temperature,
    predictive_probabilities,
)
from activelabel.pipeline.datasets import load_mnist_images  # noqa: E402
from activelabel.pipeline.metrics import negative_log_likelihood  # noqa: E402
from activelabel.pipeline.prediction import predict_probabilities  # noqa: E402
from activelabel.pipeline.training import planned_epochs, train_model, uses_batch_norm  # noqa: E402

GOAL_ECE = 0.015
METRICS = ("accuracy", "nll", "brier", "ece")


def round_seed(seed: int, index: int = 1) -> int:
    """The seed a round uses (``campaign.steps._seed``: ``config.seed * 1_000_003 + round index``)."""
    return seed * 1_000_003 + index


def figures(report) -> dict:
    """accuracy, nll, brier, ece (floats) and the reliability bins of a CalibrationReport or its dict."""
    d = report if isinstance(report, dict) else report.to_dict()
    return {k: d[k] for k in (*METRICS, "bins")}


def one_seed(seed: int, args, train_set, test_set, device: torch.device) -> dict:
    config = CampaignConfig(name=f"bench-calibration-{seed}", epochs=args.epochs or CampaignConfig.epochs)
    spec = model_spec(config, in_channels=1, num_classes=10)
    rng = np.random.default_rng([seed, 1000])
    order = rng.permutation(len(train_set))
    labeled = np.sort(order[: args.labels])  # a campaign lists its labeled samples in id order
    x, y = train_set.images[labeled], train_set.targets[labeled]
    training = training_config(config, len(labeled))
    rseed = round_seed(seed)
    held = validation_positions(len(labeled), rseed)
    if held.size == 0:
        raise SystemExit(f"--labels {args.labels} is below the {validation_positions.__module__}.MIN_LABELS "
                         "a round needs before it holds out a validation split")
    train = np.setdiff1d(np.arange(len(labeled)), held)
    started = time.perf_counter()
    model = train_model(x[train], y[train], spec, training, seed=rseed, device=device)
    train_s = time.perf_counter() - started
    # One deterministic pass of each member over the yardstick, [M = 1, N, C] (uncertainty = "deterministic").
    yard = predict_probabilities(model, test_set.images, samples=0, device=device, seed=0, logits=True)
    deterministic = fit_round_calibration([model], x[held], y[held], yard, test_set.targets, device)
    row = {
        "seed": seed, "round_seed": rseed, "labels": int(len(labeled)), "trained_on": int(len(train)),
        "validation_size": deterministic["validation_size"], "epochs": planned_epochs(len(train), training, skips_batch_of_one=uses_batch_norm(model)),
        "train_seconds": round(train_s, 1), "deterministic": {
            "temperature": deterministic["temperature"], "skipped": deterministic.get("skipped"),
            "before": figures(deterministic["before"]), "after": figures(deterministic["after"])},
    }
    if args.mc_samples:  # the default campaign's predictor: the mean of T passes seeded like the round's scoring
        mc = predict_probabilities(model, test_set.images, samples=args.mc_samples, device=device, seed=rseed,
                                   logits=True)  # [T, N, C]
        calibration = fit_round_calibration([model], x[held], y[held], mc, test_set.targets, device,
                                            samples=args.mc_samples, seed=rseed, method="mc_dropout")
        row.update({
            "predictor": calibration["predictor"], "temperature": calibration["temperature"],
            "skipped": calibration.get("skipped"), "validation_errors": calibration["validation_errors"],
            "before": figures(calibration["before"]), "after": figures(calibration["after"]),
            "check": calibration.get("check"), "mixture_temperature": calibration["mixture_temperature"],
            "mixture_check": calibration.get("mixture_check"),
            "t1_only": t1_only(calibration, model, x[held], y[held], mc, test_set.targets, args.mc_samples, rseed,
                               device),
            "unguarded": unguarded(model, x[held], y[held], mc, test_set.targets, args.mc_samples, rseed, device),
            "mc_with_deterministic_t": figures(calibration_report(
                predictive_probabilities(mc, deterministic["temperature"]), test_set.targets, bins=BINS)),
        })
    else:
        row.update({"predictor": deterministic["predictor"], "temperature": deterministic["temperature"],
                    "skipped": deterministic.get("skipped"), "before": row["deterministic"]["before"],
                    "after": row["deterministic"]["after"]})
    if args.big_validation:
        outside = order[args.labels: args.labels + args.big_validation]  # training images, never labeled
        big = predict_probabilities(model, train_set.images[outside], samples=0, device=device, seed=0, logits=True)
        t_big = fit_temperature(big, train_set.targets[outside])
        row["big_validation"] = {
            "size": int(len(outside)), "temperature": t_big,
            "after": figures(calibration_report(predictive_probabilities(yard, t_big), test_set.targets, bins=BINS)),
        }
        if args.mc_samples:  # the same question for the MC mean: is the round's split too small to tell its T?
            big_mc = predict_probabilities(model, train_set.images[outside], samples=args.mc_samples, device=device,
                                           seed=rseed, logits=True)
            t_mc = fit_mixture_temperature(big_mc, train_set.targets[outside])
            t2_alone, t2_on_top = (fit_mixture_sharpness(big_mc, train_set.targets[outside], t)
                                   for t in (1.0, t_mc))
            row["big_validation"]["mc"] = {
                "temperature": t_mc, "after": figures(calibration_report(
                    predictive_probabilities(mc, t_mc), test_set.targets, bins=BINS)),
                "mixture_alone": {"mixture_temperature": t2_alone, "after": figures(calibration_report(
                    calibrated_probabilities(mc, 1.0, t2_alone), test_set.targets, bins=BINS))},
                "both": {"temperature": t_mc, "mixture_temperature": t2_on_top, "after": figures(calibration_report(
                    calibrated_probabilities(mc, t_mc, t2_on_top), test_set.targets, bins=BINS))}}
    return row


def t1_only(calibration: dict, model, x_val, y_val, mc, targets, samples: int, rseed: int,
            device: torch.device) -> dict:
    """The round's calibrator before the mixture temperature existed (commit 2925d45 to 0d18efc): the
    per-pass T1 alone, kept when its K-fold out-of-fold NLL beats T = 1 (the same stored check),
    and its figures on the test images: the baseline the new calibrator is compared with."""
    check = calibration.get("check")
    t = 1.0
    if check and check["out_of_fold_nll"] < check["nll_at_1"]:
        val = predict_probabilities(model, x_val, samples=samples, device=device, seed=rseed, logits=True)
        t = fit_mixture_temperature(val, y_val)
    return {"temperature": t, "after": figures(calibration_report(predictive_probabilities(mc, t), targets, bins=BINS))}


def unguarded(model, x_val, y_val, mc, targets, samples: int, rseed: int, device: torch.device) -> dict:
    """Diagnostic: the MC temperature fitted on the whole held-out split with no guard, and what it
    would do on the test images (the round's guard decides whether to keep it)."""
    val = predict_probabilities(model, x_val, samples=samples, device=device, seed=rseed, logits=True)
    t = fit_mixture_temperature(val, y_val)
    return {"temperature": t, "after": figures(calibration_report(predictive_probabilities(mc, t), targets, bins=BINS)),
            "halves_guard_keeps": halves_guard(val, y_val)}


def halves_guard(val: np.ndarray, y_val: np.ndarray) -> bool:
    """Whether the round's guard before the K-fold check (commit 2b58dc1: two seeded halves, each
    must hold an error, and a T fitted on either must lower the other's NLL) kept the fitted T."""
    wrong = predictive_probabilities(val).argmax(-1) != y_val
    halves = np.random.default_rng([0, 0x7E]).permutation(len(y_val)) % 2
    for half in (0, 1):
        fit_on, check = halves != half, halves == half
        if not wrong[fit_on].any():
            return False
        t = fit_mixture_temperature(val[:, fit_on], y_val[fit_on])
        if (negative_log_likelihood(predictive_probabilities(val[:, check], t), y_val[check])
                > negative_log_likelihood(predictive_probabilities(val[:, check], 1.0), y_val[check])):
            return False
    return bool(wrong.any())


def halves(unguarded_row: dict) -> str:
    keeps = unguarded_row.get("halves_guard_keeps")
    return "not run" if keeps is None else ("keeps T" if keeps else "T = 1")


def fmt(values: list[float], metric: str) -> str:
    if metric in ("accuracy", "ece"):
        return mean_std(values, 100.0, 2) + " %"
    return mean_std(values, 1.0, 4)


def markdown(rows: list[dict], args, wall: float, info: dict) -> str:
    n = len(rows)
    what = rows[0]["predictor"]
    predictor = (f"the mean of T = {what['passes']} MC-dropout softmaxes with the round's mask seed (what acquisition "
                 "reads with the default `uncertainty = \"mc_dropout\"`)" if what["passes"] > 1 else
                 "one deterministic pass")
    lines = [
        "# Calibration on MNIST after a round at 1,000 labels (issue #12)",
        "",
        f"`bench/calibration_mnist.py`: {rows[0]['labels']} seeded-random labeled MNIST training images per seed, "
        f"{rows[0]['validation_size']} held out by `validation_positions` (the round's split), the model trained on "
        f"{rows[0]['trained_on']} for {rows[0]['epochs']} epochs (campaign defaults: small_cnn, dropout 0.5, "
        f"Adam 1e-3, batch 32); temperature fitted by `fit_round_calibration` on the held-out labels for "
        f"{predictor}; figures of that predictor on the {args.test_size} MNIST test images (what the round stores). "
        f"{n} seed(s) ({', '.join(str(r['seed']) for r in rows)}), mean ± sample std.",
        "",
        f"Machine: {info['host_cpus']}-core shared VM, {info['torch_threads']} torch thread(s), load average "
        f"{info['load_average_1_5_15'][0]} at the end (other jobs running). Wall time {wall:.0f} s.",
        "",
        "| figure | before (T = 1) | after (the round's calibrator) |",
        "|---|---:|---:|",
    ]
    for metric in METRICS:
        label = {"accuracy": "accuracy", "nll": "NLL (nats)", "brier": "Brier", "ece": "ECE (15 bins)"}[metric]
        lines.append(f"| {label} | {fmt([r['before'][metric] for r in rows], metric)} | "
                     f"{fmt([r['after'][metric] for r in rows], metric)} |")
    lines.append(f"| temperature | 1 | {mean_std([r['temperature'] for r in rows], 1.0, 3)} |")
    if "mixture_temperature" in rows[0]:
        lines.append(f"| mixture temperature | 1 | {mean_std([r['mixture_temperature'] for r in rows], 1.0, 3)} |")
    after = np.mean([r["after"]["ece"] for r in rows])
    lines += ["", f"Goal ECE after <= {GOAL_ECE:.1%}: **{'met' if after <= GOAL_ECE else 'missed'}** "
              f"(mean {after:.2%}; Guo et al. 2017: 4.6 % -> 0.83 % on CIFAR-10 ResNet-110).", "",
              "Per seed:", "",
              "| seed | T | acc | NLL before -> after | Brier before -> after | ECE before -> after | kept T = 1 because | train s |",
              "|---:|---:|---:|---|---|---|---|---:|"]
    for r in rows:
        b, a = r["before"], r["after"]
        lines.append(f"| {r['seed']} | {r['temperature']:.3f} | {b['accuracy']:.2%} | {b['nll']:.4f} -> {a['nll']:.4f} "
                     f"| {b['brier']:.4f} -> {a['brier']:.4f} | {b['ece']:.2%} -> {a['ece']:.2%} | "
                     f"{r.get('skipped') or ''} | {r['train_seconds']} |")
    if "t1_only" in rows[0]:
        worst = max(r["after"]["ece"] for r in rows)
        lines += ["", "Three calibrators on the same models and test images, ECE and NLL before -> after "
                  "(deterministic: one eval pass, its own guarded T; MC, T1 only: the per-pass temperature alone "
                  "under the K-fold guard, the round's calibrator before the mixture temperature; MC, new: "
                  "`fit_round_calibration` now, the candidate with the lowest out-of-fold NLL among none / T1 / "
                  "T2 / T1 then T2):", "",
                  "| seed | deterministic ECE | deterministic NLL | MC, T1 only: T1, ECE | MC, T1 only: NLL | "
                  "MC, new: chosen (T1, T2) | MC, new: ECE | MC, new: NLL |", "|---:|---|---|---|---|---|---|---|"]
        for r in rows:
            d, o, b, a = r["deterministic"], r["t1_only"], r["before"], r["after"]
            chosen = (r.get("mixture_check") or {}).get("chosen", "none" if r.get("skipped") else "temperature")
            lines.append(
                f"| {r['seed']} | {d['before']['ece']:.2%} -> {d['after']['ece']:.2%} | {d['before']['nll']:.4f} -> "
                f"{d['after']['nll']:.4f} | {o['temperature']:.3f}, {b['ece']:.2%} -> {o['after']['ece']:.2%} | "
                f"{b['nll']:.4f} -> {o['after']['nll']:.4f} | {chosen} ({r['temperature']:.3f}, "
                f"{r['mixture_temperature']:.3f}) | {b['ece']:.2%} -> {a['ece']:.2%} | {b['nll']:.4f} -> "
                f"{a['nll']:.4f} |")
        lines.append(
            f"| mean ± std | {fmt([r['deterministic']['before']['ece'] for r in rows], 'ece')} -> "
            f"{fmt([r['deterministic']['after']['ece'] for r in rows], 'ece')} | "
            f"{fmt([r['deterministic']['after']['nll'] for r in rows], 'nll')} | "
            f"{fmt([r['t1_only']['after']['ece'] for r in rows], 'ece')} | "
            f"{fmt([r['t1_only']['after']['nll'] for r in rows], 'nll')} | | "
            f"{fmt([r['after']['ece'] for r in rows], 'ece')} | {fmt([r['after']['nll'] for r in rows], 'nll')} |")
        lines += ["", f"Goal ECE after <= {GOAL_ECE:.1%} on every seed (MC, new): "
                  f"**{'met' if worst <= GOAL_ECE else 'missed'}** (worst seed {worst:.2%})."]
        if rows[0].get("mixture_check"):
            lines += ["", "Out-of-fold NLL of each candidate on the round's held-out split (same 5 folds; the "
                      "lowest is kept):", "", "| seed | none (T = 1) | T1 | T2 | T1 then T2 | chosen |",
                      "|---:|---:|---:|---:|---:|---|"]
            for r in rows:
                m = r.get("mixture_check")
                if m:
                    n = m["out_of_fold_nll"]
                    lines.append(f"| {r['seed']} | {n['none']:.4f} | {n['temperature']:.4f} | "
                                 f"{n['mixture_temperature']:.4f} | {n['both']:.4f} | {m['chosen']} |")
    if rows[0].get("unguarded"):
        lines += ["", "The round's guard (K-fold cross-validated NLL on the held-out split) per seed, and the "
                  "diagnostic unguarded T (fitted on the whole split, kept whatever the check says) on the test "
                  "images:",
                  "", "| seed | held-out errors | fold errors | fold T | out-of-fold NLL: T = 1 -> fold T | kept T | "
                  "unguarded T | unguarded: test ECE, NLL | two-halves guard (before) |",
                  "|---:|---:|---|---|---|---:|---:|---|---|"]
        for r in rows:
            c, u = r.get("check"), r["unguarded"]
            folds = (f"{c['fold_errors']} | {', '.join(f'{t:.2f}' for t in c['fold_temperatures'])} | "
                     f"{c['nll_at_1']:.4f} -> {c['out_of_fold_nll']:.4f}") if c else "- | - | not run"
            lines.append(f"| {r['seed']} | {r['validation_errors']} of {r['validation_size']} | {folds} | "
                         f"{r['temperature']:.3f} | {u['temperature']:.3f} | {u['after']['ece']:.2%}, "
                         f"{u['after']['nll']:.4f} | {halves(u)} |")
    if "mc_with_deterministic_t" in rows[0]:
        lines += ["", "The same models, other predictors, same test images:", "",
                  "| figure | one deterministic pass, T = 1 | one pass, its fitted T | MC mean, the one-pass T "
                  "(before the predictor was calibrated) |", "|---|---:|---:|---:|"]
        for metric in METRICS:
            lines.append(f"| {metric} | {fmt([r['deterministic']['before'][metric] for r in rows], metric)} | "
                         f"{fmt([r['deterministic']['after'][metric] for r in rows], metric)} | "
                         f"{fmt([r['mc_with_deterministic_t'][metric] for r in rows], metric)} |")
        lines.append(f"| temperature | 1 | {mean_std([r['deterministic']['temperature'] for r in rows], 1.0, 3)} | "
                     f"{mean_std([r['deterministic']['temperature'] for r in rows], 1.0, 3)} |")
    if "big_validation" in rows[0]:
        size = rows[0]["big_validation"]["size"]
        lines += ["", f"Diagnostic: the temperature fitted on {size:,} unlabeled-by-the-round *training* images "
                  "(never the test set) instead of the round's validation split, deterministic pass:", "",
                  "| figure | round's split | big validation split |", "|---|---:|---:|"]
        for metric in METRICS:
            lines.append(f"| {metric} | {fmt([r['deterministic']['after'][metric] for r in rows], metric)} | "
                         f"{fmt([r['big_validation']['after'][metric] for r in rows], metric)} |")
        lines.append(f"| temperature | {mean_std([r['deterministic']['temperature'] for r in rows], 1.0, 3)} | "
                     f"{mean_std([r['big_validation']['temperature'] for r in rows], 1.0, 3)} |")
        if "mc" in rows[0]["big_validation"]:
            lines += ["", f"The same for the MC mean (what acquisition reads): its temperature fitted by "
                      f"`fit_mixture_temperature` on the {size:,} images' MC passes (no guard) vs the round's:", "",
                      "| figure | round's split, guarded | big validation split |", "|---|---:|---:|"]
            for metric in METRICS:
                lines.append(f"| {metric} | {fmt([r['after'][metric] for r in rows], metric)} | "
                             f"{fmt([r['big_validation']['mc']['after'][metric] for r in rows], metric)} |")
            lines.append(f"| temperature | {mean_std([r['temperature'] for r in rows], 1.0, 3)} | "
                         f"{mean_std([r['big_validation']['mc']['temperature'] for r in rows], 1.0, 3)} |")
            if "mixture_alone" in rows[0]["big_validation"]["mc"]:
                lines += ["", f"And the mixture temperature fitted on the same {size:,} images (no guard): T2 alone "
                          "(T1 = 1) and T1 then T2:", "", "| figure | T1 | T2 alone | T1 then T2 |", "|---|---:|---:|---:|"]
                for metric in METRICS:
                    lines.append(f"| {metric} | {fmt([r['big_validation']['mc']['after'][metric] for r in rows], metric)} | "
                                 f"{fmt([r['big_validation']['mc']['mixture_alone']['after'][metric] for r in rows], metric)} | "
                                 f"{fmt([r['big_validation']['mc']['both']['after'][metric] for r in rows], metric)} |")
                lines.append(f"| T2 | 1 | {mean_std([r['big_validation']['mc']['mixture_alone']['mixture_temperature'] for r in rows], 1.0, 3)} | "
                             f"{mean_std([r['big_validation']['mc']['both']['mixture_temperature'] for r in rows], 1.0, 3)} |")
            lines += ["", "Per seed (big validation, MC): " + "; ".join(
                f"seed {r['seed']}: T = {r['big_validation']['mc']['temperature']:.3f}, ECE "
                f"{r['big_validation']['mc']['after']['ece']:.2%}, NLL {r['big_validation']['mc']['after']['nll']:.4f}"
                for r in rows)]
    lines += ["", "Command:", "", f"    {args.command}", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Fits every temperature on held-out *labeled training* images only; the test images only "
               "measure. Results: bench/results/calibration_mnist.md and .json (--quick: /tmp/calibration_mnist_quick.md).",
    )
    parser.add_argument("--data", type=Path, default=DATA, help="folder holding MNIST's IDX files (default: %(default)s)")
    parser.add_argument("--labels", type=int, default=1000, help="labeled training images of the round (default: 1000)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="campaign seeds (default: 0 1 2)")
    parser.add_argument("--epochs", type=int, default=0,
                        help="training epochs (default 0: the campaign default, 40, at least 200 steps)")
    parser.add_argument("--mc-samples", type=int, default=20,
                        help="T of the round's MC-dropout predictor (0: a deterministic campaign; default: 20)")
    parser.add_argument("--big-validation", type=int, default=5000,
                        help="training images outside the labeled set for the large-validation diagnostic (0: skip)")
    parser.add_argument("--validation-fraction", type=float, default=0.0,
                        help="hold out this fraction of the labels instead of the round's VALIDATION_FRACTION "
                             "(a what-if for the split size; 0: the product's value)")
    parser.add_argument("--test-limit", type=int, default=0, help="use only the first N test images (0: all 10,000)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    parser.add_argument("--out", type=Path, default=None, help="markdown result file (JSON written beside it)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 seed, 3 epochs, 2,000 test images, T = 5, 1,000-image big validation")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.epochs, args.test_limit, args.mc_samples, args.big_validation = [0], 3, 2000, 5, 1000
    out = args.out or (Path("/tmp/calibration_mnist_quick.md") if args.quick else RESULTS / "calibration_mnist.md")
    args.command = "python bench/calibration_mnist.py " + " ".join(sys.argv[1:])
    if args.validation_fraction:
        import activelabel.campaign.calibrate as calibrate

        calibrate.VALIDATION_FRACTION = args.validation_fraction  # validation_positions reads it at call time
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    started = time.perf_counter()
    train_set = load_mnist_images(args.data, split="train")
    test_set = load_mnist_images(args.data, split="test", limit=args.test_limit or None)
    args.test_size = len(test_set)
    rows = []
    for seed in args.seeds:
        row = one_seed(seed, args, train_set, test_set, device)
        rows.append(row)
        print(f"seed {seed}: T = {row['temperature']:.3f}, T2 = {row.get('mixture_temperature', 1.0):.3f} "
              f"({row.get('skipped') or 'fitted'}), ECE {row['before']['ece']:.2%} -> {row['after']['ece']:.2%}, "
              f"NLL {row['before']['nll']:.4f} -> {row['after']['nll']:.4f}, acc {row['before']['accuracy']:.2%} "
              f"({row['train_seconds']} s training)", flush=True)
    wall = time.perf_counter() - started
    info = machine()
    text = markdown(rows, args, wall, info)
    print("\n" + text)
    write_results(out, text, {"bench": "calibration_mnist", "command": args.command, "wall_seconds": round(wall, 1),
                              "machine": info, "goal_ece_after": GOAL_ECE, "seeds": rows})


if __name__ == "__main__":
    main()
