"""Why our Gal et al. 2017 learning curves are slower than Table 1: three diagnostics on a
`bench/gal2017_mnist.py` experiment database (issue #9).

- ``mc-test``: the paper assesses test error "using the dropout approximation at test time"; our
  rounds store one deterministic pass. Re-evaluates the stored checkpoints on the 10,000 t10k
  images with T MC-dropout passes and prints both accuracies.
- ``retrain``: holds a campaign's acquired labels fixed (its first N labels, in the order they
  arrived) and retrains them under other recipes (architecture, epochs, the L2 scale c), so the
  training's share of the gap is measured apart from the acquisition's.
- ``t-check``: the paper scores BALD with T = 100 passes; we use T = 20 plus refinement of the
  top candidates. Compares each top-10 with a T = 2,000 reference on a stored checkpoint.

The ``gal_cnn`` layouts apply their first dropout after the max-pool, so the conv block runs
once per image and only the dense layers are resampled (exactly MC dropout for these networks).

    PYTHONPATH=$PWD python bench/gal2017_diagnose.py retrain --database-url sqlite:////work/gal-run/gal2017.db \\
        --campaigns bald-seed0,random-seed0 --labels 100,150 --variants paper,keras_ep200
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from activelabel.pipeline.checkpoint import load_model
from activelabel.pipeline.datasets import load_mnist_images
from activelabel.pipeline.model import GalCNN, ModelSpec
from activelabel.pipeline.training import TrainingConfig, train_model

CPU = torch.device("cpu")


def _spec(architecture: str) -> ModelSpec:
    return ModelSpec(in_channels=1, num_classes=10, architecture=architecture, input_size=(28, 28))


def _recipe(n: int, c: float = 3.5, epochs: int = 50, batch: int = 128) -> TrainingConfig:
    """The gal2017 recipe's training loop on n labels: Adam, no decay, L2 c / n on the hidden layer."""
    return TrainingConfig(epochs=epochs, batch_size=batch, weight_decay=0.0, min_steps=0, l2_penalty=c / n)


#: name -> (architecture, recipe on n labels, extra training seed).
VARIANTS: dict[str, tuple[str, Callable[[int], TrainingConfig], int]] = {
    "paper": ("gal_cnn", lambda n: _recipe(n), 0),
    "paper_seed1": ("gal_cnn", lambda n: _recipe(n), 1),
    "paper_ep200": ("gal_cnn", lambda n: _recipe(n, epochs=200), 0),
    "paper_c0.35": ("gal_cnn", lambda n: _recipe(n, c=0.35), 0),
    "paper_c1": ("gal_cnn", lambda n: _recipe(n, c=1.0), 0),
    "paper_c10": ("gal_cnn", lambda n: _recipe(n, c=10.0), 0),
    "keras": ("gal_cnn_keras", lambda n: _recipe(n), 0),
    "keras_seed1": ("gal_cnn_keras", lambda n: _recipe(n), 1),
    "keras_ep100": ("gal_cnn_keras", lambda n: _recipe(n, epochs=100), 0),
    "keras_ep200": ("gal_cnn_keras", lambda n: _recipe(n, epochs=200), 0),
    "keras_ep200_seed1": ("gal_cnn_keras", lambda n: _recipe(n, epochs=200), 1),
}


def pooled_features(model: GalCNN, images: torch.Tensor) -> torch.Tensor:
    """The conv block's output before its dropout [N, 32, h, w]: computed once, shared by every pass."""
    with torch.inference_mode():
        return torch.cat([model.features[:-2](model.normalize(images[i:i + 2000])) for i in range(0, len(images), 2000)])


def sample_passes(model: GalCNN, pooled: torch.Tensor, passes: int, generator: torch.Generator) -> torch.Tensor:
    """``passes`` MC-dropout softmaxes [T, N, C]: fresh masks on the pooled features and the hidden layer."""
    spec, out = model.spec, []
    with torch.inference_mode():
        for _ in range(passes):
            kept = (torch.rand(pooled.shape, generator=generator) >= spec.conv_dropout) / (1 - spec.conv_dropout)
            hidden = model.head[1](model.head[0]((pooled * kept).flatten(1)))
            kept = (torch.rand(hidden.shape, generator=generator) >= spec.dropout) / (1 - spec.dropout)
            out.append(model.head[3](hidden * kept).softmax(-1))
    return torch.stack(out)


def mc_predictions(model: GalCNN, images: torch.Tensor, passes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(deterministic softmax [N, C], mean of ``passes`` MC-dropout softmaxes [N, C]) of a gal_cnn."""
    pooled = pooled_features(model, images)
    with torch.inference_mode():
        deterministic = model.head(model.features[-1](pooled)).softmax(-1)
    mean = sum(sample_passes(model, pooled, 1, torch.Generator().manual_seed(seed + t))[0] for t in range(passes))
    return deterministic, mean / passes


def _accuracy(probs: torch.Tensor, targets: torch.Tensor) -> float:
    return float((probs.argmax(-1) == targets).float().mean())


def _results(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _campaigns(connection, wanted: list[str]) -> list[tuple[int, str]]:
    rows = connection.execute("select id, name from campaign order by name").fetchall()
    return [(i, name) for i, name in rows if any(w in name for w in wanted)]


def _stored_round(connection, campaign_id: int, n: int) -> tuple[float, GalCNN] | None:
    """(stored test accuracy, checkpoint model) of the campaign's complete round on n labels, or None."""
    row = connection.execute(
        "select r.test_accuracy, m.architecture, m.state from round r join model_checkpoint m on m.round_id = r.id "
        "where r.campaign_id = ? and r.labeled_count = ? and r.status = 'complete'", (campaign_id, n)).fetchone()
    if row is None:
        return None
    return row[0], load_model(ModelSpec.from_dict(json.loads(row[1])), row[2], CPU)


def _rounds_to_examine(args, connection, results: dict, command: str) -> Iterator[tuple[str, int, float, GalCNN]]:
    """(results key, label count n, stored test accuracy, checkpoint model) for each campaign matching
    ``--campaigns`` and each n of ``--labels``, skipping a key the results file holds already (a rerun
    continues) and a round not stored (complete, with a checkpoint) on exactly n labels."""
    for campaign_id, name in _campaigns(connection, args.campaigns.split(",")):
        for n in [int(v) for v in args.labels.split(",")]:
            key = f"{command} {name}@{n}"
            stored_round = None if key in results else _stored_round(connection, campaign_id, n)
            if stored_round is not None:
                yield key, n, *stored_round


def mc_test(args, connection, results: dict, save: Callable[[], None]) -> None:
    test = load_mnist_images(args.data, split="test")
    images, targets = torch.from_numpy(test.images), torch.from_numpy(test.targets)
    for key, _, stored, model in _rounds_to_examine(args, connection, results, "mc-test"):
        deterministic, mean = mc_predictions(model, images, args.passes, seed=0)
        results[key] = {"stored": stored, "deterministic": _accuracy(deterministic, targets),
                        "mc": _accuracy(mean, targets), "passes": args.passes}
        save()
        print(f"{key:<48} stored {stored:.4f}  one pass {results[key]['deterministic']:.4f}  "
              f"MC-{args.passes} {results[key]['mc']:.4f}", flush=True)


def retrain(args, connection, results: dict, save: Callable[[], None]) -> None:
    pool = load_mnist_images(args.data, limit=args.limit)
    test = load_mnist_images(args.data, split="test")
    images, targets = torch.from_numpy(test.images), torch.from_numpy(test.targets)
    variants = args.variants.split(",")
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; choose from {sorted(VARIANTS)}")
    for campaign_id, name in _campaigns(connection, args.campaigns.split(",")):
        labels = connection.execute(
            "select s.uri, a.label from annotation a join sample s on s.id = a.sample_id where a.campaign_id = ? "
            "order by a.id", (campaign_id,)).fetchall()
        for n in [int(v) for v in args.labels.split(",")]:
            if len(labels) < n:
                continue
            rows = pool.indices_of([uri for uri, _ in labels[:n]])
            x, y = pool.images[rows], np.array([int(label) for _, label in labels[:n]])
            if not (y == pool.targets[rows]).all():
                raise SystemExit(f"{name}: stored labels differ from the MNIST targets (wrong --limit or data?)")
            for variant in variants:
                key = f"retrain {name}@{n}:{variant}"
                if key in results:
                    continue
                architecture, recipe, extra_seed = VARIANTS[variant]
                started = time.perf_counter()
                model = train_model(x, y, _spec(architecture), recipe(n), seed=1000 + extra_seed, device=CPU)
                deterministic, mean = mc_predictions(model, images, args.passes, seed=0)
                results[key] = {"deterministic": _accuracy(deterministic, targets), "mc": _accuracy(mean, targets),
                                "seconds": time.perf_counter() - started}
                save()
                print(f"{key:<56} one pass {results[key]['deterministic']:.4f}  MC-{args.passes} "
                      f"{results[key]['mc']:.4f}  ({results[key]['seconds']:.0f} s)", flush=True)


def _bald(probs: torch.Tensor) -> np.ndarray:
    """BALD [N] of MC softmaxes [T, N, C] (nats)."""
    mean = probs.mean(0)
    total = -(mean * mean.clamp_min(1e-12).log()).sum(-1)
    aleatoric = -(probs * probs.clamp_min(1e-12).log()).sum(-1).mean(0)
    return (total - aleatoric).numpy()


def t_check(args, connection, results: dict, save: Callable[[], None]) -> None:
    pool = load_mnist_images(args.data, limit=args.limit)
    for key, n, _, model in _rounds_to_examine(args, connection, results, "t-check"):
        subset = np.random.default_rng(n).choice(len(pool), 2000, replace=False)
        pooled = pooled_features(model, torch.from_numpy(pool.images[subset]))

        def passes(count: int, seed: int) -> torch.Tensor:
            generator = torch.Generator().manual_seed(seed)
            return torch.cat([sample_passes(model, pooled, min(100, count - t), generator) for t in range(0, count, 100)])

        reference = set(np.argsort(-_bald(passes(2000, 1)))[:10])
        first = _bald(passes(20, 2))
        overlap = {
            "T20_top10": len(reference & set(np.argsort(-first)[:10])),
            "T100_top10": len(reference & set(np.argsort(-_bald(passes(100, 3)))[:10])),
            "T20_top100_holds": len(reference & set(np.argsort(-first)[:100])),
        }
        results[key] = overlap
        save()
        print(f"{key:<40} of the T=2000 top-10: T=20 top-10 has {overlap['T20_top10']}, T=100 top-10 "
              f"{overlap['T100_top10']}, T=20 top-100 (refinement's candidates) {overlap['T20_top100_holds']}",
              flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("mc-test", "retrain", "t-check"))
    parser.add_argument("--database-url", required=True, help="sqlite:////path of a gal2017_mnist.py experiment")
    parser.add_argument("--data", default="/work/shared/data", help="folder with the MNIST IDX files")
    parser.add_argument("--limit", type=int, default=20000, help="the experiment's pool: first N training images")
    parser.add_argument("--campaigns", default="bald-seed0,random-seed0", help="substrings of campaign names")
    parser.add_argument("--labels", default="100,150", help="label counts (rounds) to examine")
    parser.add_argument("--variants", default="paper,keras_ep200", help=f"retrain recipes: {', '.join(VARIANTS)}")
    parser.add_argument("--passes", type=int, default=20, help="MC-dropout passes for the MC test accuracy")
    parser.add_argument("--results", default="gal2017_diagnose.json", help="JSON file; a rerun skips what it holds")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if not args.database_url.startswith("sqlite:///"):
        raise SystemExit("--database-url must be a sqlite:/// URL of the experiment database")
    import sqlite3

    connection = sqlite3.connect(args.database_url.removeprefix("sqlite:///"))
    path = Path(args.results)
    results = _results(path)
    save = lambda: path.write_text(json.dumps(results, indent=1))  # noqa: E731
    {"mc-test": mc_test, "retrain": retrain, "t-check": t_check}[args.command](args, connection, results, save)
    return 0


if __name__ == "__main__":
    sys.exit(main())
