"""A wrong argument, value or file is refused before torch, Prefect or the flows are imported.

Trial 14 F7: `compare --strategies bogus,random ...` printed its (right) one-line error after
26 s under load, because ``activelabel.flows.compare`` (torch, Prefect) was imported before the
arguments were checked. The same held for `run --dask-workers 0`, `watch`/`sync` of an unknown
campaign and `serve --cron` with a wrong expression.

Behaviour, not timing: each command runs through the console entry point (``cli.main``) in a
fresh interpreter, which then reports which heavy modules the command imported. Each case
asserts the exact error line, exit 1, nothing on stdout, and that neither torch nor Prefect nor
the flows were imported; nothing is written (no database appears, a stored experiment or
campaign keeps its rows). Real SQLite files; the settings refusals meet a real stored
experiment and campaign.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

#: Modules a refusal must not import: each costs seconds (torch 1.5-10 s, Prefect and the flows more).
HEAVY = ("torch", "prefect", "activelabel.flows")

# Runs each argv of argv[1] (JSON) through the console entry point, as `activelabel ARGS` does,
# and prints one JSON line per command: its exit code, what it wrote to stdout and stderr, and
# which HEAVY modules are imported after it (cumulative: the first offender is the one to read).
RUNNER = """
import contextlib, io, json, sys
from activelabel.cli import main
for args in json.loads(sys.argv[1]):
    sys.argv = ["activelabel", *args]
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main()
        except SystemExit as exit_:
            code = exit_.code
    heavy = sorted(m for m in %r if m in sys.modules)
    print(json.dumps({"args": args, "code": code, "stdout": out.getvalue(), "stderr": err.getvalue(),
                      "heavy": heavy}))
""" % (HEAVY,)


def _run(commands: list[list[str]], cwd: Path) -> list[dict]:
    env = {**os.environ, "COLUMNS": "400", "OMP_NUM_THREADS": "1"}
    env.pop("ACTIVELABEL_DATABASE_URL", None)
    result = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(commands)], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def _check(results: list[dict], expected: list[str], light: tuple[str, ...] = HEAVY) -> None:
    """Each command: exit 1, stdout empty, stderr exactly its expected line, none of ``light`` imported."""
    assert len(results) == len(expected)
    for result, line in zip(results, expected):
        args = result["args"]
        assert result["code"] == 1, (args, result)
        assert result["stdout"].strip() == "", (args, result["stdout"])
        assert [s for s in result["stderr"].splitlines() if s.strip()] == [line], args
        assert not set(result["heavy"]) & set(light), (args, result["heavy"])


def _unknown_strategy(name: str) -> str:
    """The registry's own message for an unknown strategy (its list of names may grow)."""
    from activelabel.acquisition import get_strategy
    from activelabel.errors import UnknownStrategyError

    with pytest.raises(UnknownStrategyError) as refused:
        get_strategy(name)
    text = str(refused.value)
    assert text.startswith(f"unknown strategy {name!r}; choose one of: ") and "random" in text
    return f"error: {text}"


def test_argument_and_file_errors_come_before_torch_prefect_and_the_flows(tmp_path) -> None:
    experiment = tmp_path / "exp.toml"
    experiment.write_text('[experiment]\nname = "t"\nstrategies = ["random"]\nbogus_key = 1\n', encoding="utf-8")
    typo = tmp_path / "typo.toml"  # trial 18 F12: the file, the table, every key at once, the nearest known one
    typo.write_text('[experiment]\nname = "t"\nstrategies = ["random"]\n[campaign]\nround = 3\nbatchsize = 5\n'
                    'seed = 1\nzzz = 2\n', encoding="utf-8")
    no_workers = tmp_path / "workers.toml"
    no_workers.write_text('[experiment]\nname = "w"\nstrategies = ["random"]\nworkers = 0\n', encoding="utf-8")
    campaign = tmp_path / "campaign.toml"
    campaign.write_text('[campaign]\nname = "c"\nstrategy = "random"\nbatch_size = 0\n[data]\npool = "images"\n', encoding="utf-8")
    own_pool = tmp_path / "own.toml"  # trial 17 F1: a classification experiment given a campaign file's pool
    own_pool.write_text('[experiment]\nname = "own"\nstrategies = ["random"]\n[campaign]\nrounds = 1\n[data]\n'
                        'pool = "images"\nlabels = ["a", "b"]\n[annotator]\nkind = "simulated"\ntruth = "truth.csv"\n',
                        encoding="utf-8")
    cases = [
        (["compare", str(own_pool)],
         "error: an experiment reads your own classification images as a labeled dataset: instead of [data] pool, "
         f"set dataset = \"manifest:{tmp_path / 'truth.csv'}\" (your truth manifest, if it lists every image with "
         "its label) or dataset = \"imagefolder:FOLDER\" (one sub-folder per class) under [campaign] (or "
         "--dataset); the strategies of a seed then share one test split"),
        # trial 14 F7, as the user ran it
        (["compare", "--strategies", "bogus,random", "--seeds", "2", "--rounds", "4", "--experiment", "t14-digits"],
         _unknown_strategy("bogus")),
        (["compare", "--seeds", "0"], "error: --seeds must be at least 1, got 0"),
        (["compare", "--rounds", "0"], "error: rounds must be at least 1, got 0"),
        (["compare", "--workers", "0"], "error: --workers must be at least 1, got 0"),
        (["compare", "--device", "tpu"],  # trial 18 F10: was 15 campaigns written, each failed by torch
         "error: device must be 'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N', got 'tpu'"),
        (["demo", "--device", "gpu"], "error: device must be 'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N', got 'gpu'"),
        (["compare", "--workers", "two"], "error: --workers must be 'auto' or a whole number of at least 1, got 'two'"),
        (["compare", "--dataset", "bogus:x"],
         "error: unknown dataset 'bogus:x'; use 'digits', 'imagefolder:/path/to/folder[?size=N&channels=1|3]', "
         "'manifest:/path/to/labels.csv[?size=N&channels=1|3]' or 'mnist:/path/to/folder[?limit=N][&test=t10k]'"),
        (["compare", "--batch-size", "100000"],  # the bundled digits loaded and their pool counted
         "error: batch size 100000 is larger than the unlabeled pool (1438 pool samples - 20 initially labeled "
         "= 1418)"),
        (["compare", "--architecture", "bogus"],
         "error: unknown model architecture 'bogus'; choose one of: small_cnn, gal_cnn, gal_cnn_keras, resnet18, "
         "mobilenet_v3_small, efficientnet_b0"),
        (["compare", "--architecture", "gal_cnn_keras"],  # the digits are 8 x 8: checked by the spec, no torch
         "error: gal_cnn_keras needs images of at least 9x9 pixels (two 3x3 convolutions and a 5x5 max-pool), "
         "got 8x8; use a larger image_size or small_cnn"),
        (["compare", str(experiment)],
         f"error: {experiment}: unknown key(s) in [experiment]: bogus_key (known: name, strategies, seeds, "
         "workers, database_url)"),
        (["compare", str(typo)],
         f"error: {typo}: unknown key(s) in [campaign]: batchsize (did you mean batch_size?), round (did you mean "
         "rounds?), seed (set per campaign by [experiment] strategies and seeds), zzz; the keys are a campaign's "
         "settings, as `activelabel compare --help` and docs/compare.md name them"),
        (["compare", str(no_workers)],
         f"error: {no_workers}: [experiment] workers must be at least 1, got 0"),
        (["report", str(experiment)],
         f"error: {experiment}: unknown key(s) in [experiment]: bogus_key (known: name, strategies, seeds, "
         "workers, database_url)"),
        (["report", "anything", "--gallery-size", "-1"], "error: --gallery-size must be at least 1, got -1"),
        (["report", "anything", "--gallery-size", "0"], "error: --gallery-size must be at least 1, got 0"),
        (["run", "--strategy", "bogus"], _unknown_strategy("bogus")),
        (["run", str(campaign)], f"error: {campaign}: batch size must be at least 1, got 0"),
        (["run", "--dask-workers", "0"], "error: --dask-workers must be at least 1, got 0"),
        (["run", "--dask-address", "foo"],
         "error: --dask-address 'foo' is not a Dask scheduler address; write it as tcp://host:8786"),
        (["demo", "--strategy", "bogus"], _unknown_strategy("bogus")),
        (["demo", "--dataset", f"mnist:{tmp_path / 'nowhere'}"], f"error: MNIST folder {tmp_path / 'nowhere'} does not exist"),
    ]
    _check(_run([args for args, _ in cases], tmp_path), [line for _, line in cases])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["campaign.toml", "exp.toml", "own.toml", "typo.toml", "workers.toml"]


def test_settings_refusals_and_unknown_campaigns_come_before_torch_prefect_and_the_flows(tmp_path) -> None:
    from sqlalchemy import select

    from activelabel.campaign import CampaignConfig, prepare_campaign
    from activelabel.campaign.experiment import ExperimentConfig, prepare_experiment
    from activelabel.storage import Campaign, open_engine, session_scope

    url = f"sqlite:///{tmp_path / 'stored.db'}"
    engine = open_engine(url)
    prepare_experiment(engine, ExperimentConfig(name="t14", strategies=("random",), seeds=(0,),
                                                campaign={"dataset": "digits", "rounds": 2}))
    prepare_campaign(engine, CampaignConfig(name="c1", dataset="digits", rounds=2))

    def stored() -> list[tuple]:
        with session_scope(engine) as session:
            return [tuple(row) for row in session.execute(select(Campaign.name, Campaign.config).order_by(Campaign.name))]

    before = stored()
    db = ["--database-url", url]
    known = "its campaigns: 'c1', 't14-random-seed0'"
    cases = [
        (["compare", "--experiment", "t14", "--strategies", "random", "--seeds", "1", "--batch-size", "7", *db],
         "error: experiment 't14' already exists with other settings (batch_size 20 -> 7); pick another "
         "--experiment name or a fresh --database-url"),
        (["run", "--campaign", "c1", "--batch-size", "7", *db],
         "error: campaign 'c1' already exists with other settings (batch_size 20 -> 7); pick another --campaign "
         "name or a fresh --database-url"),
        (["watch", "nosuch", *db], f"error: no campaign named 'nosuch' in this database; {known}"),
        (["sync", "nosuch", *db], f"error: no campaign named 'nosuch' in this database; {known}"),
        (["watch", "c1", "--dask-workers", "0", *db], "error: --dask-workers must be at least 1, got 0"),
        (["watch", "c1", "--webhook", *db], "error: --webhook needs a Label Studio campaign; 'c1' uses 'simulated'"),
    ]
    _check(_run([args for args, _ in cases], tmp_path), [line for _, line in cases])
    assert stored() == before  # the refusals changed no stored setting and added no campaign
    engine.dispose()


def test_a_wrong_cron_expression_is_refused_before_the_server_the_database_and_torch(tmp_path) -> None:
    # Prefect's own cron validator is used (its client, about a second), but not the flows nor torch;
    # no PREFECT_API_URL is needed to hear that the expression is wrong.
    results = _run([["serve", "nowhere", "--cron", "bogus"]], tmp_path)
    _check(results, ["error: --cron 'bogus' is not a cron expression (Invalid cron string: \"bogus\"); "
                     "e.g. '0 3 * * *' for 3 am daily"], light=("torch", "activelabel.flows"))
    assert list(tmp_path.iterdir()) == []


def test_the_settings_checks_modules_import_neither_torch_nor_prefect() -> None:
    # What the commands above check with: their homes must stay light, or every refusal waits again.
    # The strategy registry (every command checks a strategy name with it) needs no scipy either.
    code = ("import json, sys\n"
            "import activelabel.acquisition\n"
            "assert 'scipy' not in sys.modules, 'the strategy registry imported scipy'\n"
            "import activelabel.campaign.model_settings, activelabel.campaign.epochs, activelabel.campaign.setup\n"
            "import activelabel.campaign.dask_options, activelabel.campaign.experiment, activelabel.serve_checks\n"
            "import activelabel.pipeline.architectures, activelabel.pipeline.training_plan, activelabel.cli_compare\n"
            f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_watch_refuses_a_poll_interval_under_half_a_second(tmp_path):
    # 0 would read Label Studio in a busy loop; a negative one failed in time.sleep mid-watch.
    results = _run([["watch", "any", "--poll-seconds", value] for value in ("0", "-3")], tmp_path)
    for result in results:
        assert result["code"] == 2, result  # click's usage error
        assert "Invalid value for '--poll-seconds'" in result["stderr"] and "0.5" in result["stderr"]
        assert not set(result["heavy"]) & set(HEAVY)
    assert not list(tmp_path.iterdir())  # no database made


def test_an_image_size_the_unet_cannot_take_is_refused_when_the_campaign_is_created(tmp_path) -> None:
    # Trial 15 F3: image_size 30 with unet_small (sides divisible by 4) was accepted, annotators
    # painted two rounds, and round 3's training failed; image_size is then fixed, so the campaign
    # was stuck. The divisor is the network's own (SIDE_DIVISORS), checked before anything is written.
    from activelabel.campaign import prepare_campaign
    from activelabel.campaign.file import load_campaign_file
    from activelabel.campaign.setup import check_dataset
    from activelabel.pipeline.segmentation_sizes import SIDE_DIVISORS
    from activelabel.pipeline.shapes import SHAPE_CLASSES, make_shapes, write_segmentation_folder
    from activelabel.storage import Campaign, open_engine, session_scope

    write_segmentation_folder(make_shapes(12, seed=1, size=32), tmp_path / "pool")

    def campaign_file(name: str, size: int, architecture: str = "unet_small") -> Path:
        path = tmp_path / f"{name}.toml"
        path.write_text(
            f'[campaign]\nname = "{name}"\ntask = "segmentation"\n'
            'strategy = "entropy"\nbatch_size = 2\nrounds = 1\n'
            f'[model]\narchitecture = "{architecture}"\n'
            f'[data]\npool = "pool/images"\nlabels = {list(SHAPE_CLASSES)!r}\nimage_size = {size}\nchannels = 3\nevaluation_size = 2\n'
            f'[annotator]\nkind = "simulated"\ntruth = "pool/masks"\n'
            f'[database]\nurl = "sqlite:///{name}.db"\n'.replace("'", '"'), encoding="utf-8")
        return path

    assert SIDE_DIVISORS == {"unet_small": 4, "smp_unet": 32}
    bad, bad_smp = campaign_file("c30", 30), campaign_file("s48", 48, "smp_unet")
    results = _run([["run", str(bad)], ["run", str(bad_smp)]], tmp_path)
    _check(results, [
        f"error: {bad}: data.image_size = 30 does not fit unet_small, which needs image sides divisible by 4; "
        "set data.image_size to 28 or 32",
        f"error: {bad_smp}: data.image_size = 48 does not fit smp_unet, which needs image sides divisible by 32; "
        "set data.image_size to 32 or 64",
    ])
    assert not list(tmp_path.glob("*.db"))  # refused before the database was written

    good, url = load_campaign_file(campaign_file("c28", 28))
    check_dataset(good)  # the same check `run` makes: 28 fits
    engine = open_engine(url)
    prepare_campaign(engine, good)
    with session_scope(engine) as session:
        assert session.query(Campaign).one().config["image_size"] == 28
    engine.dispose()
