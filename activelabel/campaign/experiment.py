"""Experiments: one campaign per strategy × seed, over the same data, compared in one report.

Every arm is an ordinary simulated campaign (:class:`CampaignConfig`, a built-in dataset), so
it runs, resumes and is stored exactly as a campaign does; the ``experiment`` row only groups
them (``campaign.experiment_id``) and keeps the shared settings. Because the split of a built-in
dataset depends only on the seed (see :func:`activelabel.campaign.setup.split_dataset`), every
strategy of one seed starts from the same initial labeled set and is measured on the same
test split: the strategies differ in what they pick, nothing else.

A segmentation experiment (``task = "segmentation"``) runs on the generated shapes (split by
seed as above) or on your own image and mask folders with the simulated annotator painting the
pool's true masks: there every arm shares the seed masks and the test folder, whatever the seed.

No Prefect here: :mod:`activelabel.flows.compare` runs the arms as subflows.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from sqlalchemy import Engine, select

from activelabel.acquisition import get_strategy
from activelabel.campaign.config import _MUTABLE, CampaignConfig, check_name
from activelabel.campaign.recipes import recipe_defaults
from activelabel.campaign.setup import prepare_campaign
from activelabel.errors import CampaignStateError, ConfigError
from activelabel.storage import Campaign, Experiment, Round, RoundStatus, session_scope

# Settings an arm takes from its place in the grid, not from the shared settings.
PER_ARM = {"name", "strategy", "seed"}


def shared_campaign_keys() -> set[str]:
    """The campaign settings every arm of an experiment shares: a campaign's, less :data:`PER_ARM`."""
    return {f.name for f in fields(CampaignConfig)} - PER_ARM


@dataclass(frozen=True)
class ExperimentConfig:
    """An experiment's grid (strategies × seeds) and the settings every arm shares.

    ``campaign`` holds :class:`CampaignConfig` keys except name, strategy and seed; a ``recipe``
    fills in its defaults for the keys left unset (``campaign.recipes``). Raises
    ``ConfigError`` for an empty grid, a duplicate, an unknown key, or an arm whose settings are
    invalid (the arm's own message), and ``UnknownStrategyError`` for an unknown strategy.
    """

    name: str
    strategies: tuple[str, ...]
    seeds: tuple[int, ...]
    campaign: dict

    def __post_init__(self) -> None:
        check_name(self.name, "experiment")
        strategies = tuple(get_strategy(s.strip()).name for s in self.strategies)
        object.__setattr__(self, "strategies", strategies)
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        if not strategies or not self.seeds:
            raise ConfigError("an experiment needs at least one strategy and one seed")
        for what, values in (("strategies", strategies), ("seeds", self.seeds)):
            if len(set(values)) != len(values):
                raise ConfigError(f"the {what} of experiment {self.name!r} repeat a value: {list(values)}; "
                                  "give each once")
        object.__setattr__(self, "campaign", recipe_defaults(self.campaign))
        unknown = sorted(set(self.campaign) - shared_campaign_keys())
        if unknown:
            raise ConfigError(f"unknown campaign settings for experiment {self.name!r}: {', '.join(unknown)}")
        own_folders = self.campaign.get("dataset", "digits") == "files"
        segmentation = self.campaign.get("task") == "segmentation"
        if own_folders and not segmentation and self.campaign.get("annotator", "simulated") == "simulated":
            truth = self.campaign.get("truth")
            suggestion = (f"dataset = \"manifest:{truth}\" (your truth manifest, if it lists every image with its "
                          "label)" if truth and Path(truth).suffix.lower() in (".csv", ".jsonl", ".ndjson") else
                          "dataset = \"manifest:labels.csv\" (a .csv/.jsonl with path and label columns)")
            raise ConfigError(
                f"an experiment reads your own classification images as a labeled dataset: instead of [data] pool, "
                f"set {suggestion} or dataset = \"imagefolder:FOLDER\" (one sub-folder per class) under [campaign] "
                "(or --dataset); the strategies of a seed then share one test split"
            )
        if (own_folders and not segmentation) or self.campaign.get("annotator", "simulated") != "simulated":
            raise ConfigError(
                "an experiment runs simulated campaigns on a built-in dataset (digits, mnist:/dir, imagefolder:/dir, "
                "manifest:/labels.csv, shapes) or, for task = \"segmentation\", on your own image and mask folders "
                "with [annotator] kind = \"simulated\" and its truth masks: the oracle must know every answer"
            )
        self.arms()  # every arm's settings are checked now, before anything is written

    @property
    def rounds(self) -> int:
        return self.arms()[0].rounds

    def arm_name(self, strategy: str, seed: int) -> str:
        return f"{self.name}-{strategy}-seed{seed}"

    def arms(self) -> list[CampaignConfig]:
        """One campaign per (seed, strategy), seed-major: an interrupted run leaves whole seeds."""
        return [
            CampaignConfig(name=self.arm_name(strategy, seed), strategy=strategy, seed=seed,
                           **self._own_folder(self.arm_name(strategy, seed)))
            for seed in self.seeds for strategy in self.strategies
        ]

    def _own_folder(self, arm: str) -> dict:
        """The shared settings for one arm: a shared ``heatmap_dir`` gets a sub-folder per arm,
        since heatmap files are named by sample and round and arms pick the same samples."""
        folder = self.campaign.get("heatmap_dir")
        return self.campaign if not folder else {**self.campaign, "heatmap_dir": str(Path(folder) / arm)}

    def to_dict(self) -> dict:
        shared = {**self.arms()[0].to_dict(), "heatmap_dir": self.campaign.get("heatmap_dir")}
        return {"strategies": list(self.strategies), "seeds": list(self.seeds),
                "campaign": {k: v for k, v in shared.items() if k not in PER_ARM}}


@dataclass(frozen=True)
class Arm:
    """One stored campaign of an experiment."""

    campaign_id: int
    name: str
    strategy: str
    seed: int


def prepare_experiment(engine: Engine, config: ExperimentConfig) -> list[Arm]:
    """Create (or find) the experiment and every arm's campaign; the arms in run order.

    A rerun may add strategies or seeds and raise the rounds; any other shared setting that
    differs from the stored experiment raises ``CampaignStateError`` naming it. A campaign of
    the same name that belongs to another experiment is refused too.
    """
    with session_scope(engine) as session:
        stored = session.scalar(select(Experiment).where(Experiment.name == config.name))
        if stored is None:
            stored = Experiment(name=config.name, config=config.to_dict())
            session.add(stored)
            session.flush()
        else:
            _check_compatible(config, stored.config)
            old = stored.config
            merged = config.to_dict()
            merged["strategies"] = _union(old.get("strategies", []), merged["strategies"])
            merged["seeds"] = _union(old.get("seeds", []), merged["seeds"])
            stored.config = merged
        experiment_id = stored.id
    arms = []
    for arm in config.arms():
        campaign_id = prepare_campaign(engine, arm)
        with session_scope(engine) as session:
            campaign = session.get(Campaign, campaign_id)
            if campaign.experiment_id not in (None, experiment_id):
                raise CampaignStateError(
                    f"campaign {arm.name!r} belongs to another experiment; pick another "
                    "--experiment name or a fresh --database-url"
                )
            campaign.experiment_id = experiment_id
        arms.append(Arm(campaign_id, arm.name, arm.strategy, arm.seed))
    return arms


def _union(old: list, new: list) -> list:
    return list(old) + [v for v in new if v not in old]


def _check_compatible(config: ExperimentConfig, stored: dict) -> None:
    new, old = config.to_dict()["campaign"], stored.get("campaign", {})
    changed = [f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(new) | set(old))
               if k not in _MUTABLE and old.get(k) != new.get(k)]
    if changed:
        raise CampaignStateError(
            f"experiment {config.name!r} already exists with other settings ({'; '.join(changed)}); "
            "pick another --experiment name or a fresh --database-url"
        )


def is_finished(engine: Engine, campaign_id: int, rounds: int) -> bool:
    """True when the campaign has ``rounds`` complete rounds or a stopping rule ended it."""
    with session_scope(engine) as session:
        done = list(session.scalars(select(Round).where(
            Round.campaign_id == campaign_id, Round.status == RoundStatus.complete).order_by(Round.index)))
    return len(done) >= rounds or bool(done and done[-1].stop_reason)


def completed_rounds(engine: Engine, campaign_ids: list[int]) -> int:
    """Complete rounds over the given campaigns (a progress bar's starting point)."""
    from sqlalchemy import func

    with session_scope(engine) as session:
        return session.scalar(select(func.count()).select_from(Round).where(
            Round.campaign_id.in_(campaign_ids), Round.status == RoundStatus.complete)) or 0


def experiment_arms(engine: Engine, name: str) -> list[Arm]:
    """The stored campaigns of experiment ``name`` (by strategy, then seed).

    Raises ``CampaignStateError`` when no experiment has that name.
    """
    with session_scope(engine) as session:
        experiment = session.scalar(select(Experiment).where(Experiment.name == name))
        if experiment is None:
            raise CampaignStateError(f"no experiment named {name!r} in this database")
        campaigns = session.scalars(select(Campaign).where(Campaign.experiment_id == experiment.id))
        arms = [Arm(c.id, c.name, c.strategy, int(c.config.get("seed", 0))) for c in campaigns]
    return sorted(arms, key=lambda a: (a.strategy, a.seed))


def find_experiment(engine: Engine, name: str) -> dict | None:
    """The stored settings of experiment ``name``, or None."""
    with session_scope(engine) as session:
        experiment = session.scalar(select(Experiment).where(Experiment.name == name))
        return None if experiment is None else dict(experiment.config)
