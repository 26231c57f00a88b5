"""What a round did, in the figures a user reads in the final table."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import Engine, select

from activelabel.storage import Campaign, Round, session_scope
from activelabel.storage.repository import require_campaign


def counted(n: int, singular: str, plural: str | None = None) -> str:
    """``n`` and the noun in the right number: ``counted(1, "labeled sample")`` is
    "1 labeled sample", ``counted(2, "copy", "copies")`` "2 copies" (thousands separated)."""
    return f"{n:,} {singular if n == 1 else (plural or singular + 's')}"


def yardstick(config: Mapping) -> str:
    """What a campaign's accuracy, NLL and ECE are measured on: ``"evaluation"`` for an own-data
    campaign without ``data.test`` (its ``evaluation_size`` samples labeled by the annotators),
    else ``"test"`` (a given or drawn test split). Status, ``run`` and the report all name the
    figures by it."""
    own = config.get("dataset") == "files"
    return "evaluation" if own and not config.get("data_test") and config.get("evaluation_size") else "test"


def accuracy_name(task_kind: str, config: Mapping) -> str:
    """What ``round.test_accuracy`` measures, in the words every table uses: "pixel accuracy" for
    a segmentation campaign (its mIoU is ``round.segmentation_metrics``), else "test accuracy" or
    "evaluation accuracy" (:func:`yardstick`)."""
    return "pixel accuracy" if task_kind == "segmentation" else f"{yardstick(config)} accuracy"


def kind_cells(kind: str, labeled: int | None, held_out: int = 0) -> tuple[str, str]:
    """(kind, trained on) cells of a round in ``run``'s and ``status``' tables: "evaluation",
    "cold start" or "active", and the labels an active round's model learned from, with the
    labels held out for calibration after them ("425 (75 held out)"; empty for rounds that train
    no model, and before training)."""
    if labeled is None or kind != "active":
        return kind.replace("_", " "), ""
    return kind.replace("_", " "), f"{labeled:,}" + (f" ({held_out:,} held out)" if held_out else "")


def trained_on_words(learned: int, held_out: int, unit: str = "label") -> str:
    """What a round's model learned from, in the words the training log, ``run``'s per-round
    line and the report share: "trained on 425 labels (75 held out for calibration)";
    ``learned`` excludes the ``held_out`` labels (images for segmentation, ``unit="mask"``)."""
    held = f" ({held_out:,} held out for calibration)" if held_out else ""
    return f"trained on {counted(learned, unit)}{held}"


class LearnedFrom:
    """What a round's model learned from, for the round views that carry ``labeled``
    (``Round.labeled_count``: every labeled sample the round had, held-out ones included) and
    ``trained_on`` (``Round.training["trained_on"]``: less the calibration hold-out)."""

    labeled: int | None
    trained_on: int | None

    @property
    def learned_from(self) -> int | None:
        """The labels the round's model learned from: ``trained_on`` where stored, else ``labeled``."""
        return self.labeled if self.trained_on is None else self.trained_on

    @property
    def held_out(self) -> int:
        """The labels held out of training to fit the temperature on (0 when none or unknown)."""
        if self.labeled is None or self.trained_on is None:
            return 0
        return max(self.labeled - self.trained_on, 0)

    def trained_on_cell(self) -> str:
        """The report's "trained on" cell, the same as ``status``' (:func:`kind_cells`): the labels
        the round's model learned from ("425 (75 held out)"); empty for a round that trains no
        model (evaluation, cold start), whose stored count is only the labels so far."""
        return kind_cells(self.kind, self.learned_from, self.held_out)[1]  # type: ignore[attr-defined]

    def trained_on_clause(self, unit: str = "labels") -> str:
        """The report headline's words for the same figure: "trained on 425 labels (75 held out
        for calibration)", or "no model trained" for an evaluation or cold-start round (trial F6:
        a bare "30 labels" beside the Data line's "50 labeled" read as a contradiction)."""
        if self.labeled is None or self.kind != "active":  # type: ignore[attr-defined]
            return "no model trained"
        held = f" ({self.held_out:,} held out for calibration)" if self.held_out else ""
        return f"trained on {self.learned_from:,} {unit}{held}"


#: What the report's "trained on" column holds (the column ``status`` shows under that name).
TRAINED_ON_NOTE = (
    "trained on: the labels the round's model learned from, as in activelabel status (in brackets: those "
    "held out to fit the calibration temperature); empty for evaluation and cold-start rounds, which train "
    "no model."
)


def miou_of(segmentation_metrics: Mapping | None) -> float | None:
    """A segmentation round's mIoU (``round.segmentation_metrics["miou"]``), None when it measured none."""
    value = (segmentation_metrics or {}).get("miou")
    return None if value is None else float(value)


@dataclass(frozen=True)
class RoundSummary(LearnedFrom):
    index: int
    status: str
    labeled: int | None
    test_accuracy: float | None
    test_nll: float | None
    test_ece: float | None
    mean_selected_score: float | None
    seconds: float
    model_version: str | None
    kind: str = "active"
    stop_reason: str | None = None
    # What test_accuracy measures (:func:`accuracy_name`); mIoU for segmentation rounds.
    accuracy_name: str = "test accuracy"
    miou: float | None = None
    # Round.training["trained_on"]: the labels the model learned from (labeled less those held
    # out for calibration); None for rounds stored before it (then ``labeled`` stands for it).
    trained_on: int | None = None
    # What one label is: "label" (a class) or "mask" (a segmentation round's painted image; trial 15 F11).
    unit: str = "label"

    def describe(self) -> str:
        """One line for logs and progress bars, in the user's words."""
        if self.status != "complete":
            return f"round {self.index} {self.status.replace('_', ' ')}"
        if self.kind != "active":
            return f"round {self.index} complete · {self.kind.replace('_', ' ')} batch labeled · {self.seconds:.1f}s"
        # No yardstick (no data.test, evaluation_size = 0): no accuracy to show.
        accuracy = ("no test set" if self.test_accuracy is None
                    else f"{self.accuracy_name} {self.test_accuracy:.4f}"
                    + ("" if self.miou is None else f" · mIoU {self.miou:.4f}"))
        learned = self.learned_from
        trained = "trained" if learned is None else trained_on_words(learned, self.held_out, self.unit)
        return f"round {self.index} complete · {trained} · {accuracy} · {self.seconds:.1f}s"


def _summary(rnd: Round) -> RoundSummary:
    return RoundSummary(
        index=rnd.index,
        status=rnd.status.value,
        labeled=rnd.labeled_count,
        test_accuracy=rnd.test_accuracy,
        test_nll=rnd.test_nll,
        test_ece=rnd.test_ece,
        mean_selected_score=rnd.mean_selected_score,
        seconds=round(sum((rnd.timings or {}).values()), 3),
        model_version=rnd.model_version,
        kind=rnd.kind.value,
        stop_reason=rnd.stop_reason,
        accuracy_name=accuracy_name(rnd.campaign.task_kind, rnd.campaign.config or {}),
        miou=miou_of(rnd.segmentation_metrics),
        trained_on=trained_on(rnd),
        unit="mask" if rnd.campaign.task_kind == "segmentation" else "label",
    )


def trained_on(rnd: Round) -> int | None:
    """The labels ``rnd``'s model learned from, as stored in ``Round.training["trained_on"]``
    (the labeled samples less those held out for calibration); None when not stored (rounds
    trained before migration 0009, or no model trained)."""
    value = (rnd.training or {}).get("trained_on")
    return None if value is None else int(value)


def round_summary(engine: Engine, round_id: int) -> RoundSummary:
    with session_scope(engine) as session:
        rnd = session.get(Round, round_id)
        assert rnd is not None
        return _summary(rnd)


def campaign_summaries(engine: Engine, campaign_name: str) -> list[RoundSummary]:
    with session_scope(engine) as session:
        rounds = session.scalars(
            select(Round).join(Campaign).where(Campaign.name == campaign_name).order_by(Round.index)
        )
        return [_summary(r) for r in rounds]


@dataclass(frozen=True)
class RoundProgress(LearnedFrom):
    """Where each selected sample of a round is, every figure a count of samples: sent,
    ``annotated`` (with a current answer), ``resolved``, ``rejected`` (with a current answer
    rejected: a label outside the label set), and ``changed`` (annotations edited or deleted in
    the backend after a sync)."""

    index: int
    status: str
    selected: int
    sent: int
    annotated: int
    resolved: int
    rejected: int
    test_accuracy: float | None
    error: str | None
    changed: int = 0
    # Round.training: what the round's training ran (None: no model trained, or stored before it).
    training: dict | None = None
    kind: str = "active"  # evaluation, cold_start or active
    labeled: int | None = None  # Round.labeled_count: the labels an active round trained on
    miou: float | None = None  # a segmentation round's mIoU (Round.segmentation_metrics)
    trained_on: int | None = None  # Round.training["trained_on"]: labeled less the calibration hold-out


def round_progress(engine: Engine, campaign_name: str) -> list[RoundProgress]:
    """Each round's figures for ``activelabel status``; every count is of the round's selected
    samples (a sample with two rejected answers counts once). Only current answers count: one
    per annotator (their latest, :func:`~activelabel.storage.repository.one_vote_per_annotator`),
    none withdrawn by ``--relabel-changes`` (its image changed: that answer is history, not a
    label), and no skip (a skip is no answer; ``status`` names skipped samples apart). Raises
    ``CampaignStateError`` for an unknown campaign."""
    from activelabel.campaign.integrity import WITHDRAWN_REASON
    from activelabel.storage import Annotation, AnnotationStatus, Selection
    from activelabel.storage.repository import (
        campaign_min_votes,
        changed_samples_per_round,
        one_vote_per_annotator,
        resolved_labels,
    )

    with session_scope(engine) as session:
        campaign = require_campaign(session, campaign_name)
        resolved = resolved_labels(session, campaign.id, campaign_min_votes(campaign))
        changed = changed_samples_per_round(session, campaign.id)
        rows = session.execute(
            select(Annotation.sample_id, Annotation.annotator, Annotation.status, Annotation.reason,
                   Annotation.updated_at, Annotation.created_at, Annotation.id)
            .where(Annotation.campaign_id == campaign.id)
        ).all()
        votes = one_vote_per_annotator(
            (sample, who, None if (reason or "").startswith(WITHDRAWN_REASON) else status, updated, created, i)
            for sample, who, status, reason, updated, created, i in rows)
        # A skip is no answer: a sample only skipped is not "annotated" (status names it apart).
        answered = {i for i, current in votes.items()
                    if any(v is not None and v != AnnotationStatus.skipped for v in current)}
        rejected = {i for i, current in votes.items() if AnnotationStatus.rejected in current}
        out = []
        for rnd in session.scalars(select(Round).where(Round.campaign_id == campaign.id).order_by(Round.index)):
            selections = session.scalars(select(Selection).where(Selection.round_id == rnd.id)).all()
            out.append(RoundProgress(
                index=rnd.index,
                status=rnd.status.value,
                selected=len(selections),
                sent=sum(s.external_task_id is not None for s in selections),
                annotated=sum(s.sample_id in answered for s in selections),
                resolved=sum(s.sample_id in resolved for s in selections),
                rejected=sum(s.sample_id in rejected for s in selections),
                test_accuracy=rnd.test_accuracy,
                error=rnd.error,
                changed=changed.get(rnd.id, 0),
                training=rnd.training,
                kind=rnd.kind.value,
                labeled=rnd.labeled_count,
                miou=miou_of(rnd.segmentation_metrics),
                trained_on=trained_on(rnd),
            ))
        return out


def was_stopped(error: str | None) -> bool:
    """Whether a failed round's stored error records a stop, not a fault: "stopped by Ctrl-C" /
    "stopped by SIGTERM" (``steps.mark_failed``) or "stopped because serve was stopped ..."
    (``flows.schedule``). ``status`` and ``status --round N`` both say such a round was stopped."""
    return bool(error) and error.startswith("stopped")


@dataclass(frozen=True)
class UnfinishedRound:
    """The campaign's latest round when it stands in a step (training, scoring, selecting,
    pushing) or failed in one; ``holder`` names the live run working on it ("process P on H
    (round N)", from the campaign's lease), None when no run holds the lease."""

    index: int
    step: str
    failed: bool
    holder: str | None
    #: A failed round whose error says it was stopped (Ctrl-C, SIGTERM, a stopped serve).
    stopped: bool = False

    def describe(self, command_ref: str) -> str:
        """What ``activelabel status NAME`` says about it: where the round stands, whether a run
        is on it, and the command that continues it (``command_ref`` as
        :func:`activelabel.campaign.hints.follow_up`). Claims no cause: a round left in a step
        with no live lease was stopped by a kill, a crash or a lost database, and the lease
        cannot tell which."""
        from activelabel.campaign.hints import follow_up

        if self.holder is not None:
            return f"Round {self.index} is at step {self.step}: {self.holder} is running it now."
        resume = follow_up("resume", command_ref, command_ref)
        if self.failed and self.stopped:  # a stop is no fault: say so, not only "failed" (trial 13 F3)
            return (f"Round {self.index} was stopped at step {self.step} (the error column says how; its status "
                    f"reads failed until it runs again); {resume} continues it from that step.")
        if self.failed:
            return (f"Round {self.index} failed at step {self.step} (see the error column); "
                    f"{resume} runs it again from that step.")
        return (f"Round {self.index} stopped at step {self.step} and no run is active on the campaign (no live "
                f"lease); {resume} continues it from there.")


IN_FLIGHT = ("training", "scoring", "selecting", "pushing")


def unfinished_round(engine: Engine, campaign_name: str) -> UnfinishedRound | None:
    """The campaign's latest round if a run left it in a step or it failed, with the live run
    holding the campaign's lease if any; None when it is complete, waits for labels, or the
    campaign has no round. Raises ``CampaignStateError`` for an unknown campaign."""
    from activelabel.storage import RoundStatus
    from activelabel.storage.lease import live_holder
    from activelabel.storage.repository import latest_round

    with session_scope(engine) as session:
        campaign = require_campaign(session, campaign_name)
        last = latest_round(session, campaign.id)
        if last is None or (last.status.value not in IN_FLIGHT and last.status != RoundStatus.failed):
            return None
        failed = last.status == RoundStatus.failed
        stopped = failed and was_stopped(last.error)
        step = last.resume_step.value
        index, campaign_id = last.index, campaign.id
    return UnfinishedRound(index, step.replace("_", " "), failed, live_holder(engine, campaign_id), stopped)


@dataclass(frozen=True)
class ShortOfAnswers:
    """Why the latest round still waits for labels, as far as the stored rows show it.

    ``outstanding``: the round's samples without ``needed`` (``annotations_per_task``) distinct
    annotators' accepted answers; of those, ``rejected``: samples with a rejected answer stored
    (a label outside the label set), ``partial``: samples with some accepted answers but fewer
    than ``needed`` (and no rejected one), and :attr:`unanswered` the rest (no answer stored).
    ``resolved`` of ``selected`` are done; the round completes at ``to_complete``
    (``min_new_labels``, else the batch size; every sample for an ``evaluation`` round, whatever
    ``min_new_labels`` says). Samples ``set_aside`` by skips
    (:func:`~activelabel.storage.repository.set_aside_samples`) are neither outstanding nor
    needed: the round does not wait for them, and they are named with who skipped them. A
    sample skipped by fewer annotators than a task needs is outstanding (others may answer).
    """

    index: int
    needed: int
    selected: int
    resolved: int
    to_complete: int
    outstanding: int
    rejected: int
    partial: int
    # An evaluation round (the yardstick) completes only when all of it is labeled.
    evaluation: bool = False
    # The campaign's min_new_labels (None: not set); an evaluation round does not apply it.
    min_new_labels: int | None = None
    # Outstanding samples sent back for a new answer: their answers were withdrawn by
    # --relabel-changes because the image changed (rejected with integrity.WITHDRAWN_REASON).
    withdrawn: int = 0
    # The round's samples set aside by skips (not in ``outstanding``): named in the advice.
    set_aside: tuple = ()

    @property
    def unanswered(self) -> int:
        """Outstanding samples with no answer stored at all (neither rejected, partial nor withdrawn)."""
        return self.outstanding - self.rejected - self.partial - self.withdrawn

    def _held_by_evaluation(self) -> bool:
        """An evaluation round that min_new_labels would have completed already."""
        return (self.evaluation and self.min_new_labels is not None
                and self.resolved >= min(self.min_new_labels, self.selected))

    def describe(self) -> str | None:
        """One paragraph for ``activelabel status``, or None when nothing stored holds the round
        and no rule needs saying (no sample has a rejected or a partial answer: the annotators
        simply have not answered). Its parts add up to ``outstanding``."""
        if (self.rejected == 0 and self.partial == 0 and self.withdrawn == 0 and not self._held_by_evaluation()
                and not self.set_aside):
            return None
        parts = []
        if self.rejected:
            parts.append(f"{self.rejected} with a rejected label (not in the label set)")
        if self.partial:
            answers = "an accepted answer" if self.needed == 2 else "some accepted answers"
            parts.append(f"{self.partial} with {answers} from fewer than {self.needed} annotators")
        if self.withdrawn:
            parts.append(f"{self.withdrawn} sent back for a new answer "
                         f"({'its image' if self.withdrawn == 1 else 'their images'} changed)")
        if self.unanswered:
            parts.append(f"{self.unanswered} not answered yet")
        from activelabel.campaign.skips import set_aside_words

        aside = set_aside_words(list(self.set_aside))
        if not self.outstanding:  # only set-aside samples hold it: the next sync completes it
            return (f"Round {self.index} waits: {self.resolved} of {self.selected} samples resolved, "
                    f"{self.to_complete} needed; the next sync completes it. {aside}")
        lack = "lacks" if self.outstanding == 1 else "lack"
        wanted = ("an accepted answer" if self.needed == 1
                  else f"{self.needed} accepted answers from different annotators")
        rule = ""
        if self.evaluation:
            rule = (" (an evaluation round needs all its samples labeled"
                    + ("" if self.min_new_labels is None else
                       f"; min_new_labels = {self.min_new_labels} applies to the later rounds only") + ")")
        line = (f"Round {self.index} waits: {self.resolved} of {self.selected} samples resolved, "
                f"{self.to_complete} needed{rule}; {counted(self.outstanding, 'sample')} {lack} {wanted}: "
                f"{', '.join(parts)}." + (f" {aside}" if aside else ""))
        advice = []
        if self.rejected:
            advice.append("correct the rejected labels in Label Studio")
        if self.needed > 1 and self.partial:
            advice.append("ask another annotator to answer (one annotator answering twice counts once)")
        if self.withdrawn:
            advice.append(f"have the annotators answer {'it' if self.withdrawn == 1 else 'them'} again")
        if self.unanswered:
            advice.append(f"have the annotators answer the {self.unanswered} unanswered task"
                          f"{'' if self.unanswered == 1 else 's'}")
        if not self.evaluation:
            advice.append("or set min_new_labels to complete the round with fewer labels")
        return f"{line} To go on: {', '.join(advice)}."


def short_of_answers(engine: Engine, campaign_name: str) -> ShortOfAnswers | None:
    """What holds the campaign's latest round if it waits for labels (see
    :class:`ShortOfAnswers`); None when it does not wait or the campaign has no round. Raises
    ``CampaignStateError`` for an unknown campaign."""
    from activelabel.campaign.integrity import WITHDRAWN_REASON
    from activelabel.storage import Annotation, AnnotationStatus, RoundKind, RoundStatus, Selection
    from activelabel.storage.repository import (
        campaign_min_votes,
        latest_round,
        one_vote_per_annotator,
        resolved_labels,
        set_aside_samples,
    )

    with session_scope(engine) as session:
        campaign = require_campaign(session, campaign_name)
        last = latest_round(session, campaign.id)
        if last is None or last.status != RoundStatus.waiting_for_labels:
            return None
        needed = campaign_min_votes(campaign)
        selected = set(session.scalars(select(Selection.sample_id).where(Selection.round_id == last.id)))
        labels = resolved_labels(session, campaign.id, needed)
        resolved = selected & set(labels)
        skipped_by = set_aside_samples(session, campaign.id, needed, labels.keys())
        aside = selected & set(skipped_by)
        outstanding = selected - resolved - aside
        rows = session.execute(
            select(Annotation.sample_id, Annotation.annotator, Annotation.status, Annotation.reason,
                   Annotation.updated_at, Annotation.created_at, Annotation.id)
            .where(Annotation.campaign_id == campaign.id, Annotation.sample_id.in_(outstanding))
        ).all() if outstanding else []
        # Each annotator's latest answer, as "accepted", "skipped", "rejected" (a label outside the
        # label set, or another reason) or "withdrawn" (its image changed: --relabel-changes).
        def vote(status: AnnotationStatus, reason: str | None) -> str:
            if status == AnnotationStatus.accepted:
                return "accepted"
            if status == AnnotationStatus.skipped:
                return "skipped"
            return "withdrawn" if (reason or "").startswith(WITHDRAWN_REASON) else "rejected"

        statuses = one_vote_per_annotator((s, a, vote(st, r), u, c, i) for s, a, st, r, u, c, i in rows)
        rejected = {i for i, votes in statuses.items() if "rejected" in votes}
        partial = {i for i, votes in statuses.items() if i not in rejected and "accepted" in votes}
        withdrawn = {i for i, votes in statuses.items() if i not in rejected and i not in partial
                     and "withdrawn" in votes}
        min_new = (campaign.config or {}).get("min_new_labels")
        to_complete = int(min_new or (campaign.config or {}).get("batch_size") or len(selected))
        evaluation = last.kind == RoundKind.evaluation
        # As sync_step: set-aside samples are not waited for.
        waited = len(selected) - len(aside)
        to_complete = waited if evaluation else min(to_complete, waited)
        index = last.index
    from activelabel.campaign.skips import campaign_set_aside

    named = tuple(s for s in campaign_set_aside(engine, campaign_name, skipped_by) if s.sample_id in aside)
    return ShortOfAnswers(index, needed, len(selected), len(resolved), to_complete,
                          len(outstanding), len(rejected), len(partial), evaluation,
                          None if min_new is None else int(min_new), len(withdrawn), named)


@dataclass(frozen=True)
class CampaignOverview:
    """One campaign in ``activelabel list``; ``labeled``: samples with a resolved label (as
    many distinct annotators' accepted answers as ``annotations_per_task`` asks, or given)."""

    name: str
    strategy: str
    dataset: str
    rounds_complete: int
    latest_status: str | None
    labeled: int


def campaign_overviews(engine: Engine) -> list[CampaignOverview]:
    from activelabel.storage import RoundStatus
    from activelabel.storage.repository import campaign_min_votes, count_rounds, latest_round, resolved_labels

    with session_scope(engine) as session:
        out = []
        for campaign in session.scalars(select(Campaign).order_by(Campaign.name)):
            last = latest_round(session, campaign.id)
            out.append(CampaignOverview(
                name=campaign.name,
                strategy=campaign.strategy,
                dataset=campaign.dataset,
                rounds_complete=count_rounds(session, campaign.id, RoundStatus.complete),
                latest_status=None if last is None else last.status.value,
                labeled=len(resolved_labels(session, campaign.id, campaign_min_votes(campaign))),
            ))
        return out


@dataclass(frozen=True)
class DataCounts:
    """A campaign's samples by split, with copies and unreadable files counted apart;
    ``labeled``: samples with a resolved label, counted as the export and the round table count
    them (``annotations_per_task`` distinct annotators, or given with the data).

    ``by_split`` counts every sample of a split, copies and unreadable files included;
    ``copies_by_split`` the copies among them and ``unreadable_by_split`` the unreadable files
    (not copies), both shown apart ("10 evaluation (+1 copy)", "42 pool (+3 unreadable)"): a copy
    dropped into the folder lands in its original's split, so without it "11 evaluation" would
    contradict ``evaluation_size = 10``, and an unreadable file can never be labeled, so "45 pool"
    would contradict "pool exhausted" at 42 labels (trial 15 F15). ``copies_of_unreadable``: the
    copies whose original is unreadable; they are skipped with it, never "labeled once with
    their original" (trial 15 F8)."""

    by_split: dict[str, int]
    copies: int
    unreadable: int
    labeled: int
    copies_by_split: dict[str, int] = field(default_factory=dict)
    unreadable_by_split: dict[str, int] = field(default_factory=dict)
    copies_of_unreadable: int = 0

    def describe(self) -> str:
        def split_count(split: str, n: int) -> str:
            copies = self.copies_by_split.get(split, 0)
            unreadable = self.unreadable_by_split.get(split, 0)
            apart = ([f"+{counted(copies, 'copy', 'copies')}"] if copies else []) + (
                [f"+{unreadable} unreadable"] if unreadable else [])
            return f"{n - copies - unreadable} {split}" + (f" ({', '.join(apart)})" if apart else "")

        splits = ", ".join(split_count(split, n) for split, n in sorted(self.by_split.items()))
        return (f"Samples: {splits} · {counted(self.copies, 'byte-identical copy', 'byte-identical copies')} "
                f"({self._copies_note()}) · "
                f"{self.unreadable} unreadable (skipped) · "
                f"{self.labeled} labeled")

    def _copies_note(self) -> str:
        readable = self.copies - self.copies_of_unreadable
        with_original = f"labeled once with {'its' if readable == 1 else 'their'} original"
        if not self.copies_of_unreadable:
            return with_original
        of_unreadable = ("of an unreadable file, skipped with it" if self.copies_of_unreadable == 1
                         else "of unreadable files, skipped with them")
        if not readable:
            return of_unreadable
        return f"{readable} {with_original}, {self.copies_of_unreadable} {of_unreadable}"


def data_counts(engine: Engine, campaign_name: str) -> DataCounts:
    from sqlalchemy import func
    from sqlalchemy.orm import aliased

    from activelabel.storage import Sample, SampleProblem
    from activelabel.storage.repository import campaign_min_votes, resolved_labels

    with session_scope(engine) as session:
        campaign = require_campaign(session, campaign_name)
        by_split = dict(session.execute(
            select(Sample.split, func.count()).where(Sample.campaign_id == campaign.id).group_by(Sample.split)
        ).all())
        copies_by_split = dict(session.execute(
            select(Sample.split, func.count()).where(Sample.campaign_id == campaign.id,
                                                     Sample.duplicate_of.is_not(None)).group_by(Sample.split)
        ).all())
        problems = select(SampleProblem.uri).where(SampleProblem.campaign_id == campaign.id)
        unreadable_by_split = dict(session.execute(
            select(Sample.split, func.count()).where(Sample.campaign_id == campaign.id, Sample.duplicate_of.is_(None),
                                                     Sample.uri.in_(problems)).group_by(Sample.split)
        ).all())
        original = aliased(Sample)
        copies_of_unreadable = session.scalar(
            select(func.count()).select_from(Sample).join(original, original.id == Sample.duplicate_of)
            .where(Sample.campaign_id == campaign.id, original.uri.in_(problems)))
        unreadable = session.scalar(select(func.count()).select_from(SampleProblem).where(
            SampleProblem.campaign_id == campaign.id))
        labeled = len(resolved_labels(session, campaign.id, campaign_min_votes(campaign)))
    return DataCounts({k.value: v for k, v in by_split.items()}, sum(copies_by_split.values()), unreadable, labeled,
                      {k.value: v for k, v in copies_by_split.items()},
                      {k.value: v for k, v in unreadable_by_split.items()}, copies_of_unreadable)


@dataclass(frozen=True)
class SegmentationRoundFigures:
    """What ``activelabel status`` adds for a round of a segmentation campaign.

    ``agreement``: the annotators' mean pairwise IoU (``annotation.mask_votes.mean_pairwise_iou``,
    as the export writes it per image), averaged over the ``agreed`` images the round selected
    that two or more annotators painted; None when it has none (one mask agrees with itself
    and says nothing). ``class_weights`` / ``class_pixels``: what its class-weighted scoring
    used (``round.uncertainty``, class-index order); None for other aggregations and rounds
    stored before they were kept."""

    index: int
    agreement: float | None
    agreed: int
    class_weights: list[float] | None
    class_pixels: list[int] | None


def class_weight_cells(uncertainty: dict | None, classes: int) -> list[str] | None:
    """A round's stored class weights as one cell per class, ``"0.3256 (50 px)"`` (weight, and
    the labeled pixels it came from); None when the round stored none. Status and the report
    both show them this way."""
    weights = (uncertainty or {}).get("class_weights")
    if not weights:
        return None
    pixels = (uncertainty or {}).get("class_pixels") or [None] * len(weights)
    cells = [f"{w:.4f}" + ("" if n is None else f" ({n:,} px)") for w, n in zip(weights, pixels)]
    return (cells + [""] * classes)[:classes]


def segmentation_round_figures(engine: Engine, campaign_name: str) -> list[SegmentationRoundFigures]:
    """Each round's annotator agreement and class weights (see :class:`SegmentationRoundFigures`),
    derived from the stored masks (``segmentation_round.resolved_mask_labels``, the export's
    reading) and ``round.uncertainty``."""
    import math

    from activelabel.campaign.segmentation_round import resolved_mask_labels
    from activelabel.storage import Selection

    with session_scope(engine) as session:
        campaign = require_campaign(session, campaign_name)
        campaign_id, classes = campaign.id, len(campaign.labels)
        rounds = [(r.id, r.index, dict(r.uncertainty or {})) for r in session.scalars(
            select(Round).where(Round.campaign_id == campaign_id).order_by(Round.index))]
        picked = session.execute(select(Selection.round_id, Selection.sample_id)
                                 .where(Selection.campaign_id == campaign_id)).all()
    masks = resolved_mask_labels(engine, campaign_id, classes)
    agreements: dict[int, list[float]] = {}
    for round_id, sample_id in picked:
        label = masks.get(sample_id)
        if label is not None and label.votes >= 2 and not math.isnan(label.agreement):
            agreements.setdefault(round_id, []).append(label.agreement)
    out = []
    for round_id, index, how in rounds:
        values = agreements.get(round_id, [])
        out.append(SegmentationRoundFigures(
            index=index, agreement=sum(values) / len(values) if values else None, agreed=len(values),
            class_weights=how.get("class_weights"), class_pixels=how.get("class_pixels")))
    return out


def segmentation_figure_rows(engine: Engine, campaign_name: str) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the rounds' annotator agreement and class weights, as ``activelabel
    status`` and the report show them: ``round``, ``agreement`` (``"0.792 (2 images)"``) and,
    when some round stored class weights, one column per class (:func:`class_weight_cells`).
    One row per round that has either; no rows when none has."""
    with session_scope(engine) as session:
        labels = list(require_campaign(session, campaign_name).labels)
    figures = [f for f in segmentation_round_figures(engine, campaign_name)
               if f.agreement is not None or f.class_weights]
    weighted = any(f.class_weights for f in figures)
    header = ["round", "agreement", *(labels if weighted else [])]
    rows = []
    for f in figures:
        cells = class_weight_cells({"class_weights": f.class_weights, "class_pixels": f.class_pixels},
                                   len(labels)) or [""] * len(labels)
        rows.append([str(f.index), "" if f.agreement is None else f"{f.agreement:.3f} ({counted(f.agreed, 'image')})",
                     *(cells if weighted else [])])
    return header, rows
