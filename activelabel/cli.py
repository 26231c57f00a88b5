"""The ``activelabel`` command line: run campaigns, list strategies, read results."""

from __future__ import annotations

import logging
import os
import sys
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from activelabel.errors import ActiveLabelError

app = typer.Typer(
    help="Active learning for labeling teams: train a model, score the unlabeled pool by "
    "uncertainty, send the most uncertain samples to annotators, repeat.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

DatabaseOption = Annotated[
    Optional[str],
    typer.Option(
        "--database-url",
        help="SQLAlchemy URL of the campaign database, e.g. postgresql+psycopg://user@host/db. "
        "Default: $ACTIVELABEL_DATABASE_URL, else sqlite:///activelabel.db in this folder. "
        "Keep passwords in $ACTIVELABEL_DATABASE_PASSWORD.",
        show_default=False,
    ),
]


def _configure_logging(verbose: bool) -> None:
    # Prefect reads its logging level at import time: set it before anything imports prefect.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if verbose else "WARNING")
    # Prefect's telemetry writes race the ephemeral server's SQLite file on first start.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False)],
    )


@app.command()
def demo(
    strategy: Annotated[str, typer.Option(help="Acquisition strategy (see `activelabel strategies`).")] = "bald",
    rounds: Annotated[int, typer.Option(help="Labeling rounds to run (a rerun continues up to this many).")] = 10,
    batch_size: Annotated[int, typer.Option(help="Samples sent to annotators each round.")] = 20,
    initial_labeled: Annotated[int, typer.Option(help="Randomly chosen samples labeled before round 1.")] = 20,
    mc_samples: Annotated[int, typer.Option(help="MC-dropout forward passes per pool sample (T).")] = 20,
    seed: Annotated[int, typer.Option(help="Seed for splits, training, dropout and random picks.")] = 0,
    epochs: Annotated[int, typer.Option(help="Training epochs per round (at least 200 steps are taken).")] = 40,
    dataset: Annotated[str, typer.Option(help="'digits' (bundled) or 'mnist:/folder[?limit=N]'.")] = "digits",
    campaign: Annotated[Optional[str], typer.Option(help="Campaign name. Default: demo-<strategy>-seed<seed>.", show_default=False)] = None,
    database_url: DatabaseOption = None,
    device: Annotated[str, typer.Option(help="'auto' (CUDA when present), 'cpu' or 'cuda[:N]'.")] = "auto",
    cpu_threads: Annotated[int, typer.Option(help="CPU threads for torch (1 is fastest for the small demo CNN).")] = 1,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log each step (and Prefect's own logs).")] = False,
) -> None:
    """Run a whole simulated campaign on bundled digits: a simulated annotator answers with the
    true label, every round, score, selection and annotation lands in the database, and a table
    of learning progress ends the run. Rerunning the same command continues the campaign.
    """
    _configure_logging(verbose)
    from activelabel.campaign import CampaignConfig, campaign_summaries, prepare_campaign
    from activelabel.campaign.setup import check_dataset
    from activelabel.storage.database import DATABASE_URL_ENV, describe_url, open_engine, resolve_database_url

    config = CampaignConfig(
        name=campaign or f"demo-{strategy}-seed{seed}", dataset=dataset, strategy=strategy,
        rounds=rounds, batch_size=batch_size, initial_labeled=initial_labeled,
        mc_samples=mc_samples, seed=seed, epochs=epochs, device=device,
        cpu_threads=cpu_threads,
    )
    check_dataset(config)
    url = resolve_database_url(database_url)
    engine = open_engine(url)
    prepare_campaign(engine, config)
    # The flows read the URL from the environment so no password becomes a flow parameter.
    os.environ[DATABASE_URL_ENV] = url
    err_console.print(
        f"Campaign [bold]{config.name}[/] · strategy {config.strategy} · database {describe_url(url)}"
    )
    _run_with_progress(config.name, config.rounds)
    _print_rounds(config.name, campaign_summaries(engine, config.name))


def _run_with_progress(campaign_name: str, rounds: int) -> None:
    from activelabel.cli_progress import RichRoundProgress
    from activelabel.flows import campaign_flow
    from activelabel.progress import set_reporter

    if not logging.getLogger("activelabel").isEnabledFor(logging.INFO):
        # The CLI reports a failed round itself, on one line; Prefect would add a traceback.
        for name in ("prefect.flow_runs", "prefect.task_runs"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    with RichRoundProgress(err_console) as progress:
        set_reporter(progress)
        try:
            campaign_flow(campaign_name, rounds)
        finally:
            set_reporter(None)


def _print_rounds(campaign_name: str, summaries: list) -> None:
    table = Table(title=f"Campaign {campaign_name}")
    for column in ("round", "labeled", "test accuracy", "mean uncertainty of selected", "seconds", "status"):
        table.add_column(column, justify="left" if column == "status" else "right")
    for s in summaries:
        table.add_row(
            str(s.index),
            "" if s.labeled is None else str(s.labeled),
            "" if s.test_accuracy is None else f"{s.test_accuracy:.3f}",
            "" if s.mean_selected_score is None else f"{s.mean_selected_score:.4f}",
            f"{s.seconds:.1f}",
            s.status.replace("_", " "),
        )
    console.print(table)


@app.command()
def strategies() -> None:
    """List the acquisition strategies by name, with what each measures."""
    from activelabel.acquisition import STRATEGIES

    table = Table(title="Acquisition strategies (higher score = asked first)")
    table.add_column("name", style="bold")
    table.add_column("needs MC samples", justify="center")
    table.add_column("what it measures")
    for strategy in STRATEGIES.values():
        table.add_row(strategy.name, "yes" if strategy.needs_samples else "no", strategy.description)
    console.print(table)


def main() -> None:
    """Console entry point: known problems print one line and exit 1, without a traceback."""
    try:
        app()
    except ActiveLabelError as error:
        err_console.print(f"[bold red]error:[/] {error}", markup=True, highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
