"""The `compare` command's console side: one progress bar over every arm, and a final table.

The bar reads complete rounds from the database every second instead of listening to the
steps: arms may run in other processes, where this process's reporter cannot hear them.
"""

from __future__ import annotations

import dataclasses
import shlex
import threading
from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from activelabel.naming import file_safe
from activelabel.spread import mean_std_text


class ExperimentProgress:
    """A Rich bar of complete rounds over all arms, refreshed from ``count()`` by a thread."""

    def __init__(self, console: Console, description: str, total: int, count: Callable[[], int]) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, transient=False,
        )
        self._count = count
        self._task = self._progress.add_task(description, total=max(total, 1), completed=min(count(), total))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.wait(1.0):
            self._refresh()

    def _refresh(self) -> None:
        try:
            self._progress.update(self._task, completed=self._count())
        except Exception:  # a busy database must not end the run; the next poll tries again
            pass

    def __enter__(self) -> ExperimentProgress:
        self._progress.start()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._refresh()
        self._progress.stop()


def final_table(title: str, rows: list[tuple[str, int, int | None, float | None, float | None]],
                measure: str = "test accuracy (mean ± std)") -> Table:
    """rows: (strategy, seeds, labels trained on, mean, std of ``measure``) at each arm's last round.

    "trained on", as status and the report name it: the labels the last measured model learned
    from, not the labels bought (the last round's batch is labeled after it; trial 14 F2).

    4 decimals, as the report: its labels-to-target rule is a strict >= on these means, so a
    mean of 0.8997 must not read 0.900 (trial 14 F1)."""
    table = Table(title=title)
    for column in ("strategy", "seeds", "trained on", measure):
        table.add_column(column, justify="left" if column == "strategy" else "right")
    for strategy, seeds, labels, mean, std in rows:
        accuracy = "" if mean is None else mean_std_text(mean, std, seeds)
        table.add_row(strategy, str(seeds), "" if labels is None else str(labels), accuracy)
    return table


DEFAULT_STRATEGIES = ("random", "entropy", "bald", "mean_std", "margin")


def load_experiment_file(path) -> tuple[dict, dict]:
    """(``[experiment]`` table, ``[campaign]`` table) of an experiment TOML file.

    A relative SQLite path in ``database_url`` is read from the file's folder. Raises
    ``ConfigError`` naming the file for a syntax error or an unknown table or key.
    """
    import tomllib
    from pathlib import Path

    from activelabel.errors import ConfigError

    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"experiment file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None
    from activelabel.campaign.file import OWN_DATA_TABLES, experiment_arm_settings

    unknown = sorted(set(raw) - {"experiment", "campaign", *OWN_DATA_TABLES})
    if unknown:
        raise ConfigError(f"{path}: unknown table(s) {', '.join(unknown)}; use [experiment] and [campaign] "
                          f"(on your own folders also a campaign file's {', '.join(f'[{t}]' for t in OWN_DATA_TABLES)})")
    experiment = dict(raw.get("experiment", {}))
    extra = sorted(set(experiment) - {"name", "strategies", "seeds", "workers", "database_url"})
    if extra:
        raise ConfigError(f"{path}: unknown key(s) in [experiment]: {', '.join(extra)} "
                          "(known: name, strategies, seeds, workers, database_url)")
    if isinstance(experiment.get("database_url"), str):  # a relative SQLite path is read from the file's folder
        from activelabel.storage.location import anchor_sqlite_url

        experiment["database_url"] = anchor_sqlite_url(experiment["database_url"], path.resolve().parent)
    own = {t: raw[t] for t in OWN_DATA_TABLES if t in raw}
    if own:  # your own folders: [campaign] and these tables read as a campaign file's
        return experiment, experiment_arm_settings(path, dict(raw.get("campaign", {})), own)
    campaign = dict(raw.get("campaign", {}))
    check_campaign_keys(path, campaign)
    # imagefolder:, manifest:, mnist: paths are read from the file's folder
    if isinstance(campaign.get("dataset"), str):
        from activelabel.campaign.config import normalize_dataset_spec

        campaign["dataset"] = normalize_dataset_spec(campaign["dataset"], path.resolve().parent)
    return experiment, campaign


def check_campaign_keys(path, campaign: dict) -> None:
    """An experiment file's [campaign] keys, checked as [experiment]'s are: the file, the table,
    every unknown key at once, and the nearest known one (trial 18 F12: `round = 3` got "unknown
    campaign settings for experiment 'typo': round", no file, no table, no suggestion)."""
    import difflib

    from activelabel.campaign.experiment import PER_ARM, shared_campaign_keys
    from activelabel.errors import ConfigError

    known = sorted(shared_campaign_keys())
    unknown = sorted(set(campaign) - set(known))
    if not unknown:
        return
    words = []
    for key in unknown:
        if key in PER_ARM:
            words.append(f"{key} (set per campaign by [experiment] strategies and seeds)")
            continue
        guess = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        words.append(f"{key} (did you mean {guess[0]}?)" if guess else key)
    raise ConfigError(f"{path}: unknown key(s) in [campaign]: {', '.join(words)}; the keys are a campaign's "
                      "settings, as `activelabel compare --help` and docs/compare.md name them")


def segmentation_settings(shared: dict, defaults: dict) -> dict:
    """A segmentation experiment's shared settings: on a built-in dataset, what is left unset
    takes ``defaults`` (``demo --task segmentation``'s CPU-fast values, cli.SEGMENTATION_DEMO),
    and round 1 trains on the seed masks (min_labels_to_train = initial_labeled), as the demo
    does. Own folders (dataset ``files``) keep what their tables say, as `run` would."""
    if shared.get("dataset") == "files":
        return shared
    merged = {**defaults, **shared}
    merged.setdefault("min_labels_to_train", merged.get("initial_labeled"))
    return merged


def run_compare_command(experiment_file, *, console: Console, err_console: Console, database_url, name,
                        strategies, seeds, workers, campaign: dict, open_database, quiet_prefect,
                        segmentation_defaults: dict | None = None) -> None:
    """The `compare` command: build the experiment, run its unfinished arms, print a summary."""
    from activelabel.campaign.experiment import (
        ExperimentConfig, completed_rounds, is_finished, prepare_experiment,
    )
    from activelabel.campaign.setup import check_dataset
    from activelabel.errors import ConfigError
    from activelabel.storage.database import describe_url

    given_url = database_url  # --database-url as given: the report hint repeats it
    settings, shared = ({}, {}) if experiment_file is None else load_experiment_file(experiment_file)
    file_experiment = file_experiment_name(settings, shared)  # what `report FILE` finds
    shared.update({k: v for k, v in campaign.items() if v is not None})
    if shared.get("task") == "segmentation":
        shared = segmentation_settings(shared, segmentation_defaults or {})
    shared.setdefault("dataset", "digits")
    given = settings.get("strategies", DEFAULT_STRATEGIES) if strategies is None else strategies
    names = [s.strip() for s in given.split(",")] if isinstance(given, str) else list(given)
    seed_value = settings.get("seeds", 3) if seeds is None else seeds
    seed_list = list(range(seed_value)) if isinstance(seed_value, int) else [int(s) for s in seed_value]
    if isinstance(seed_value, int) and seed_value < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seed_value}")
    chosen_name = name or settings.get("name")
    config = ExperimentConfig(name=chosen_name or default_experiment_name(shared["dataset"]), strategies=tuple(names),
                              seeds=tuple(seed_list), campaign=shared)
    # Checked here, before anything is written or the flows are imported (trial 14 F7).
    from activelabel.campaign.concurrency import parse_workers

    if workers is not None:
        given_workers = parse_workers(workers, "--workers")
    else:
        given_workers = parse_workers(settings.get("workers", "auto"), f"{experiment_file}: [experiment] workers")
    if campaign.get("epochs") is not None:  # --epochs given: say once if the step minimum raises it
        from activelabel.campaign.epochs import raised_epochs_note

        first = config.arms()[0]  # file, options and the recipe's defaults, as the campaigns get them
        note = raised_epochs_note(first, first.initial_labeled, hint="; --fixed-epochs trains exactly that many")
        if note:
            err_console.print(note, markup=False, highlight=False, soft_wrap=True)
    for arm in config.arms()[: len(config.strategies)]:
        check_dataset(arm)  # one arm per strategy: data and pool size, before anything is written
    database_url = database_url or settings.get("database_url")
    if experiment_file is not None:  # default: activelabel.db next to the file (storage/location.py)
        from activelabel.storage.location import database_for_file

        database_url = database_for_file(experiment_file, database_url, table="experiment", name=config.name,
                                         setting="[experiment] database_url")
    engine, url = open_database(database_url)
    if not chosen_name:
        stored_name = continued_name(engine, shared["dataset"])
        if stored_name != config.name:
            err_console.print(f"Continuing experiment {stored_name!r}, stored under the name older versions "
                              f"gave it (new experiments on this dataset are named {config.name!r})",
                              markup=False, highlight=False, soft_wrap=True)
            config = dataclasses.replace(config, name=stored_name)
    arms = prepare_experiment(engine, config)
    pending = [a for a in arms if not is_finished(engine, a.campaign_id, config.rounds)]
    workers = None
    if pending:
        from activelabel.campaign.concurrency import choose_workers

        first = config.arms()[0]
        workers = choose_workers(given_workers, len(pending), device=first.device, cpu_threads=first.cpu_threads,
                                 cuda_available=_cuda_available)
    at_once = f" · {workers.count} at once ({workers.why})" if workers else ""
    err_console.print(
        f"Experiment [bold]{config.name}[/] · {_count(len(config.strategies), 'strateg', 'y', 'ies')} × "
        f"{_count(len(config.seeds), 'seed')} · {_count(len(arms) - len(pending), 'campaign')} already finished"
        f"{at_once} · database {describe_url(url)}", soft_wrap=True, highlight=False,
    )
    failed: dict[str, str] = {}
    if pending:
        # The flows (torch, Prefect: 10-25 s under load) only once every argument and setting
        # was checked and the experiment is stored: a typo answers in about a second (trial 14 F7).
        from activelabel.flows.compare import run_compare

        quiet_prefect()
        ids = [a.campaign_id for a in arms]
        with ExperimentProgress(err_console, f"{config.name}: rounds over {_count(len(arms), 'campaign')}",
                                len(arms) * config.rounds, lambda: completed_rounds(engine, ids)):
            failed = run_compare(config.name, [a.name for a in pending], config.rounds, workers=workers.count)
    segmentation = shared.get("task") == "segmentation"
    console.print(final_table(f"Experiment {config.name}", summary_rows(engine, arms, "miou" if segmentation else "accuracy"),
                              "test mIoU (mean ± std)" if segmentation else "test accuracy (mean ± std)"))
    if failed:
        for campaign_name, error in failed.items():
            err_console.print(f"[bold red]failed:[/] {campaign_name}: {error}", highlight=False)
        raise ConfigError(
            f"{len(failed)} of {_count(len(pending), 'campaign')} failed; run the same command again to continue them"
        )
    hint = report_command(config.name, experiment_file, given_url, file_experiment=file_experiment,
                          used_url=url)
    err_console.print(f"Report: {hint}", markup=False, highlight=False, soft_wrap=True)


def report_command(name: str, experiment_file, given_url: str | None, *, file_experiment: str | None = None,
                   used_url: str | None = None) -> str:
    """The ``activelabel report`` line compare ends with, runnable from any folder (trial 17 F2:
    ``Report: activelabel report NAME`` failed outside the experiment file's folder).

    With an experiment file whose experiment this is (``file_experiment``: the name ``report
    FILE`` finds), the file's absolute path: report finds the database beside it, or the file's
    own ``database_url``. With a file but another ``--experiment``, the name and ``used_url``, the
    database it ran in. Without a file, the name. ``--database-url`` (``given_url``, the one given
    on the command line) follows, never with its password."""
    from pathlib import Path

    from activelabel.campaign.hints import database_option, password_note
    from activelabel.storage.location import anchor_sqlite_url

    if experiment_file is not None and file_experiment not in (None, name):
        experiment_file, given_url = None, used_url
    ref = shlex.quote(str(Path(experiment_file).resolve()) if experiment_file is not None else name)
    if given_url:
        ref += database_option(anchor_sqlite_url(given_url, Path.cwd()))
    return f"activelabel report {ref}{password_note(ref)}"


def file_experiment_name(settings: dict, shared: dict) -> str:
    """The experiment an experiment file names, as ``report FILE`` finds it: its ``[experiment]
    name``, else the name compare stored experiments under before names were made file-safe
    (``compare-<dataset kind>``)."""
    return settings.get("name") or f"compare-{str(shared.get('dataset', 'digits')).partition(':')[0]}"


def default_experiment_name(dataset: str) -> str:
    """``compare-<dataset kind>``, made file-safe: ``--dataset "shapes?n=120"`` names the
    experiment ``compare-shapes-n-120``, so its report ``compare-shapes-n-120.html`` opens from a
    file:// URL and its campaigns' heatmap folders carry the same words (trial 15 F13)."""
    return f"compare-{file_safe(dataset.partition(':')[0])}"


def continued_name(engine, dataset: str) -> str:
    """The experiment name a rerun without a name continues: the file-safe default, unless only
    the name older versions gave (``compare-shapes?n=120``, unsanitised) is stored in this
    database: then that one, so the same command continues the same experiment instead of
    starting a second one from round one."""
    from sqlalchemy import select

    from activelabel.storage.database import session_scope
    from activelabel.storage.models import Experiment

    name = default_experiment_name(dataset)
    legacy = f"compare-{dataset.partition(':')[0]}"
    if legacy == name:
        return name
    with session_scope(engine) as session:
        stored = set(session.scalars(select(Experiment.name).where(Experiment.name.in_((name, legacy)))))
    return legacy if legacy in stored and name not in stored else name


def summary_rows(engine, arms, metric: str = "accuracy") -> list[tuple]:
    """Per strategy: (strategy, seeds, labels, mean, std) of ``metric`` at each arm's last
    measured round; ``metric`` "miou" reads a segmentation round's mIoU."""
    from activelabel.report.data import load_campaign

    groups: dict[str, list] = {}
    for arm in arms:
        record = load_campaign(engine, arm.campaign_id)
        groups.setdefault(arm.strategy, []).append(
            record.segmentation_curve("miou") if metric == "miou" else record.curve(metric))
    rows = []
    for strategy, curves in groups.items():
        last = [(labels[-1], acc[-1]) for labels, acc in curves if labels]
        if not last:
            rows.append((strategy, len(curves), None, None, None))
            continue
        values = [a for _, a in last]
        mean = sum(values) / len(values)
        std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0
        rows.append((strategy, len(curves), max(n for n, _ in last), mean, std))
    return rows


def _cuda_available() -> bool:
    import torch  # only when the campaigns' device is 'auto' and there is work to run

    return torch.cuda.is_available()


def _count(n: int, stem: str, one: str = "", many: str = "s") -> str:
    """``n`` and the word in the right number: 1 campaign, 2 campaigns, 1 strategy, 3 strategies."""
    return f"{n} {stem}{one if n == 1 else many}"
