"""What a round's scoring said about the pool: the distribution of each uncertainty part and
the round's calibration, read from storage only (``activelabel status CAMPAIGN --round N``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Engine, select

from activelabel.campaign.hints import follow_up
from activelabel.errors import CampaignStateError
from activelabel.storage import Round, RoundStatus, Score, session_scope
from activelabel.storage.repository import require_campaign

PARTS = ("total", "aleatoric", "epistemic")


def _distribution(part: str, values: np.ndarray) -> Distribution:
    quantiles = np.quantile(values, [0, 0.25, 0.5, 0.75, 1])
    return Distribution(part, len(values), *(float(q) for q in quantiles), float(values.mean()))


@dataclass(frozen=True)
class Distribution:
    """Summary of one part over the scored pool, in nats (``log density``: higher = more familiar)."""

    part: str
    count: int
    minimum: float
    q1: float
    median: float
    q3: float
    maximum: float
    mean: float


@dataclass(frozen=True)
class RoundUncertainty:
    index: int
    kind: str
    strategy: str
    distributions: list[Distribution]  # empty when the round scored without a model
    uncertainty: dict | None
    calibration: dict | None
    labeled: int | None = None
    # Why the round has no calibration figures, in the report's words (None: it has them).
    calibration_absence: str | None = None
    # Round.training: what the round's training ran (None: no model trained, or stored before it).
    training: dict | None = None
    # Where a round stands that has not scored its pool yet ("at step training", "stopped by
    # Ctrl-C at step training"); None once it scored (with or without a model).
    not_scored_yet: str | None = None


def not_scored_yet(status: RoundStatus, failed_step: RoundStatus | None, error: str | None) -> str | None:
    """Where a round that has not scored its pool yet stands, in words; None once it has.

    A round stopped (Ctrl-C, SIGTERM) or failed in its train or score step is stored as
    ``failed`` at that step and resumes there; ``status --round N`` says that instead of taking
    its missing scores for a round that scored without a model (trial 13 F2)."""
    step = failed_step if status == RoundStatus.failed else status
    if step not in (RoundStatus.training, RoundStatus.scoring):
        return None
    if status != RoundStatus.failed:
        return f"at step {step.value}"
    from activelabel.campaign.summary import was_stopped

    if not was_stopped(error):
        why = "failed"
    elif error.startswith("stopped by"):  # the stop's own words: "stopped by Ctrl-C"
        why = error
    else:  # a stopped serve's error is a paragraph
        why = "stopped"
    return f"{why} at step {step.value}; it resumes there"


def calibration_absence(kind: str, labeled: int | None, calibration: Mapping | None,
                        config: Mapping) -> str | None:
    """Why a round (its ``kind``, ``labeled`` count and stored ``calibration``, of a campaign
    with stored settings ``config``) has no calibration figures, in words; None: it has them.

    The report and ``activelabel status CAMPAIGN --round N`` both say this, so they never disagree.
    """
    if calibration:
        if calibration.get("skipped"):
            return f"no temperature fitted: {calibration['skipped']}"
        if not calibration.get("before") or not calibration.get("after"):
            return ("temperature fitted, but the campaign has no labeled test or evaluation split to measure "
                    "it on")
        return None
    if kind == "evaluation":
        return "an evaluation round labels the yardstick; no model is trained"
    if kind == "cold_start":
        return "a cold-start round picks at random before any model is trained"
    if not config.get("calibrate", True):
        return "calibration is off for this campaign (calibrate = false)"
    from activelabel.campaign.calibration_terms import (
        FOLDS,
        MIN_LABELS,
        SEGMENTATION_MIN_IMAGES,
        VALIDATION_FRACTION,
    )

    if config.get("task") == "segmentation":
        if labeled is not None and labeled < SEGMENTATION_MIN_IMAGES:
            return (f"fewer than {SEGMENTATION_MIN_IMAGES} labeled images (a segmentation round fits a per-pixel "
                    f"temperature from {SEGMENTATION_MIN_IMAGES} on, holding {VALIDATION_FRACTION:.0%} of them, at "
                    f"least {FOLDS}, out of training); the pixel ECE is the uncalibrated model's")
        return "no calibration stored for this round"

    if labeled is not None and labeled < MIN_LABELS:
        return (f"fewer than {MIN_LABELS} labels (temperature scaling starts at {MIN_LABELS}, holding "
                f"{VALIDATION_FRACTION:.0%} of them out of training to fit T)")
    return "no calibration stored for this round"


def round_uncertainty(engine: Engine, campaign: str, index: int, command_ref: str | None = None) -> RoundUncertainty:
    """The pool's total / aleatoric / epistemic (and feature log density) distribution in round
    ``index`` of ``campaign``. ``command_ref``: how the hint of a missing round names the
    campaign (:func:`activelabel.campaign.hints.follow_up`; default its name).

    Raises :class:`~activelabel.errors.CampaignStateError` when the campaign or round does not exist.
    """
    with session_scope(engine) as session:
        stored = require_campaign(session, campaign)
        campaign_id = stored.id
        rnd = session.scalar(select(Round).where(Round.campaign_id == campaign_id, Round.index == index))
        if rnd is None:
            raise CampaignStateError(
                f"campaign {campaign!r} has no round {index}; {follow_up('status', campaign, command_ref)} lists its rounds"
            )
        rows = session.execute(
            select(Score.total, Score.aleatoric, Score.epistemic)
            .where(Score.round_id == rnd.id, Score.strategy == rnd.strategy, Score.total.is_not(None))
        ).all()
        densities = session.scalars(
            select(Score.log_density)
            .where(Score.round_id == rnd.id, Score.strategy == rnd.strategy, Score.log_density.is_not(None))
        ).all()
        values = np.array(rows, dtype=np.float64).reshape(-1, 3)
        distributions = [_distribution(part, values[:, i]) for i, part in enumerate(PARTS)] if len(values) else []
        # Not measured yet, the log densities are the jittered regime's extremes (around -1e13):
        # no row of them beside the line that says they mean nothing (trial 13 F6).
        if densities and density_measured((rnd.uncertainty or {}).get("density") or {}):
            distributions.append(_distribution("log density", np.array(densities, dtype=np.float64)))
        waiting = not_scored_yet(rnd.status, rnd.failed_step, rnd.error)
        untrained = waiting is not None and (rnd.failed_step or rnd.status) == RoundStatus.training
        absence = ("the round has not trained its model yet" if untrained and not rnd.calibration
                   else calibration_absence(rnd.kind.value, rnd.labeled_count, rnd.calibration, stored.config or {}))
        return RoundUncertainty(rnd.index, rnd.kind.value, rnd.strategy, distributions, rnd.uncertainty, rnd.calibration,
                                rnd.labeled_count, absence, rnd.training, waiting)


_MODES = {
    "full_network": "dropout active through the network",
    "head_only": "dropout in the classifier head only; the backbone runs once",
    "naive": "each pass runs the whole model",
}
#: A segmentation network (``pipeline.segmentation_model``: trunk, then Dropout and a 1x1 conv) is
#: scored as a chain ("full_network"), but its only dropout is the one before the head (trial 15 F9).
_SEGMENTATION_MODES = _MODES | {"full_network": "dropout before the 1x1 head only; the trunk runs once per image"}


def _plain(value: object) -> str:
    """A stored setting in words: numbers as numbers, mappings as ``key value`` pairs and lists
    comma-separated, never a Python repr."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k.replace('_', ' ')} {_plain(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_plain(v) for v in value)
    return str(value)


def describe_scoring(how: Mapping | None) -> list[str]:
    """How a round scored its pool (``round.uncertainty``, less its ``density`` summary, which
    ``status --round`` prints apart), as lines a user reads: the uncertainty method with its
    passes, the temperature, refinement, batch-aware candidates, Dask shards, and for
    segmentation the per-pixel map and its aggregation. Keys it does not know are printed as
    ``key: value`` in words (:func:`_plain`)."""
    if not how:
        return []
    how = dict(how)
    how.pop("density", None)
    method, samples, members = how.pop("method", None), how.pop("samples", None), how.pop("members", 1)
    mode, temperature = how.pop("mode", None), how.pop("temperature", None)
    # An ensemble first: a plain ensemble's stored mode is "deterministic" (one pass per member).
    if method is not None and method.startswith("ensemble"):
        passes = f"an ensemble of {members} models, {samples} passes per sample in all"
        if method == "ensemble+mc_dropout":
            passes += " (MC dropout in each model)"
        elif mode == "deterministic":
            passes += " (one deterministic pass per model)"
    elif method == "deterministic" or mode == "deterministic":
        passes = "one deterministic pass per sample"
    elif method == "mc_dropout":
        passes = f"MC dropout, {samples} stochastic passes per sample"
    else:
        passes = f"{method}, {samples} passes per sample"
    # A segmentation round's settings hold its per-pixel ``map`` (every such round stores one).
    modes = _SEGMENTATION_MODES if "map" in how else _MODES
    if mode in modes and method != "deterministic":
        passes += f" ({modes[mode]})"
    if temperature is not None:
        passes += ("; no temperature (T = 1)" if float(temperature) == 1.0
                   else f"; logits divided by the fitted temperature T = {float(temperature):.3f}")
    lines = [f"Scoring: {passes}."]
    refined = how.pop("refined", None)
    if refined:
        lines.append(f"Refinement: the {refined['candidates']} best-scored samples were scored again with "
                     f"{refined['passes']} passes each; the batch is the top of them.")
    candidates = how.pop("candidates", None)
    if candidates is not None:
        lines.append(f"Batch chosen jointly among the {candidates} best-scored candidates.")
    shards = how.pop("shards", None)
    if shards is not None:
        lines.append(f"Scored on Dask in {shards} shards.")
    pixel_map, aggregation, q = how.pop("map", None), how.pop("aggregation", None), how.pop("q", None)
    if pixel_map is not None:
        how_aggregated = (f"the mean of its top {q:g} of pixels" if aggregation == "top_q" and q is not None
                          else str(aggregation))
        lines.append(f"Image score: the per-pixel {pixel_map} map, aggregated as {how_aggregated}.")
    weights, pixels = how.pop("class_weights", None), how.pop("class_pixels", None)
    if weights is not None:
        lines.append(f"Class weights: {_plain(weights)}" + (f" (labeled pixels per class: {_plain(pixels)})"
                                                            if pixels is not None else "") + ".")
    lines += [f"{key.replace('_', ' ')}: {_plain(value)}" for key, value in how.items()]
    return lines


def density_measured(density: Mapping) -> bool:
    """Whether a round's stored density summary means something: every class fitted on more
    labeled samples than feature dimensions. Below that a class covariance is rank-deficient and
    held up by jitter (``acquisition.density``), so log densities run to extremes (around -1e14
    nats on small labeled sets) and the threshold and the flag say nothing. A summary stored
    before ``smallest_class`` was recorded counts as measured."""
    return density.get("smallest_class", density.get("dim", 0) + 1) > density.get("dim", 0)


def describe_density(density: Mapping) -> list[tuple[str, bool]]:
    """The feature-density lines of ``status --round N``: (text, is a warning) each, counts in
    the right number ("1 labeled sample"). ``density``: the round's ``uncertainty["density"]``.
    A density not measured yet (:func:`density_measured`) gets no threshold and no flagged count,
    as in the report: those numbers mean nothing then."""
    from activelabel.campaign.summary import counted

    fitted = (f"class Gaussians on {counted(density['labeled'], 'labeled sample')} "
              f"({counted(density['dim'], 'feature')})")
    if not density_measured(density):
        lines = [(
            f"Feature density: not measured yet — {fitted}, but the smallest class has "
            f"{counted(density['smallest_class'], 'labeled sample')}, not more than the "
            f"{counted(density['dim'], 'feature dimension')}: its covariance is held up by jitter and log "
            f"densities run to meaningless extremes, so no threshold and no out-of-distribution flag until "
            f"every class has more than {density['dim']:,} labeled samples.",
            False,
        )]
    else:
        lines = [(
            f"Feature density: {fitted}; "
            f"{counted(density['flagged'], 'pool sample')} flagged out of distribution (log density below "
            f"{density['threshold']:.6g}, the labeled set's {density['percentile']:g}th percentile, out of fold).",
            False,
        )]
    unseen = density.get("num_classes", density["classes"]) - density["classes"]
    if unseen > 0:
        lines.append((f"  {counted(unseen, 'class', 'classes')} {'has' if unseen == 1 else 'have'} no labeled "
                      "sample, so no Gaussian: the density cannot tell their inputs from any other unfamiliar "
                      "input.", True))
    return lines
