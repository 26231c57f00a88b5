"""Annotations follow the backend: edits and deletions replace the current rows, history keeps
what was replaced; resolved labels are derived from what is current (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import Engine

from activelabel.storage import AnnotationStatus, SampleSplit, Selection, session_scope
from activelabel.storage.models import AnnotationChangeKind
from activelabel.storage.repository import (
    NewAnnotation,
    NewSample,
    add_samples,
    annotation_changes,
    changed_samples_per_round,
    get_sync_cursor,
    outstanding_samples,
    reconcile_annotations,
    resolved_labels,
    samples_by_uri,
    set_sync_cursor,
)

T1 = datetime(2026, 1, 1, 10, 0, 0, tzinfo=timezone.utc)
T2 = datetime(2026, 1, 1, 11, 0, 0, tzinfo=timezone.utc)


def _setup(engine: Engine, make_campaign, make_round) -> tuple[int, int, dict[str, int]]:
    campaign_id = make_campaign(labels=["3", "4", "5"])
    round_id = make_round(campaign_id, index=1)
    with session_scope(engine) as session:
        add_samples(session, campaign_id, [NewSample(u, f"h-{u}", SampleSplit.pool) for u in "abc"])
        ids = samples_by_uri(session, campaign_id, "abc")
        for rank, uri in enumerate("abc"):
            session.add(Selection(campaign_id=campaign_id, round_id=round_id, sample_id=ids[uri], rank=rank,
                                  score=1.0, predicted_label="3", confidence=0.5))
    return campaign_id, round_id, ids


def _ann(sample_id: int, label: str, ext: str, round_id: int, who: str = "ann@x", at=T1, **kw) -> NewAnnotation:
    return NewAnnotation(sample_id=sample_id, annotator=who, label=label, source="labelstudio",
                         external_id=ext, round_id=round_id, updated_at=at, **kw)


def test_an_edit_replaces_the_label_and_keeps_the_old_one_in_history(engine, make_campaign, make_round):
    campaign_id, round_id, ids = _setup(engine, make_campaign, make_round)
    a = ids["a"]
    with session_scope(engine) as session:
        first = reconcile_annotations(session, campaign_id, "labelstudio", [a], [_ann(a, "3", "11", round_id)])
    assert (first.new, first.edited, first.deleted) == (1, 0, 0)
    with session_scope(engine) as session:
        assert resolved_labels(session, campaign_id)[a].label == "3"
        again = reconcile_annotations(session, campaign_id, "labelstudio", [a], [_ann(a, "3", "11", round_id)])
    assert (again.new, again.edited, again.deleted) == (0, 0, 0)
    with session_scope(engine) as session:
        edit = reconcile_annotations(session, campaign_id, "labelstudio", [a],
                                     [_ann(a, "4", "11", round_id, at=T2)])
    assert (edit.new, edit.edited, edit.deleted) == (0, 1, 0)
    with session_scope(engine) as session:
        assert resolved_labels(session, campaign_id)[a].label == "4"
        history = annotation_changes(session, campaign_id)
        assert [(h.kind, h.old_label, h.new_label, h.external_id, h.sample_id) for h in history] == [
            (AnnotationChangeKind.edited, "3", "4", "11", a)]
        assert history[0].old_updated_at.replace(tzinfo=timezone.utc) == T1
        assert history[0].new_updated_at.replace(tzinfo=timezone.utc) == T2
        assert changed_samples_per_round(session, campaign_id) == {round_id: 1}
        # Replaying the same state changes nothing more.
        reconcile_annotations(session, campaign_id, "labelstudio", [a], [_ann(a, "4", "11", round_id, at=T2)])
    with session_scope(engine) as session:
        assert len(annotation_changes(session, campaign_id)) == 1


def test_a_deleted_annotation_stops_being_a_vote(engine, make_campaign, make_round):
    campaign_id, round_id, ids = _setup(engine, make_campaign, make_round)
    b = ids["b"]
    two = [_ann(b, "5", "21", round_id, who="x@x"), _ann(b, "5", "22", round_id, who="y@y")]
    with session_scope(engine) as session:
        reconcile_annotations(session, campaign_id, "labelstudio", [b], two)
        assert resolved_labels(session, campaign_id, min_votes=2)[b].votes == 2
    with session_scope(engine) as session:
        gone = reconcile_annotations(session, campaign_id, "labelstudio", [b], two[:1])
    assert (gone.new, gone.edited, gone.deleted) == (0, 0, 1)
    with session_scope(engine) as session:
        assert b not in resolved_labels(session, campaign_id, min_votes=2)
        assert resolved_labels(session, campaign_id, min_votes=1)[b].votes == 1
        [change] = annotation_changes(session, campaign_id)
        assert (change.kind, change.old_label, change.new_label, change.annotator) == (
            AnnotationChangeKind.deleted, "5", None, "y@y")
        # The sample is out with annotators again (2 votes asked for).
        assert [s.id for s in outstanding_samples(session, campaign_id, min_votes=2)] == sorted(ids.values())
        assert b not in {s.id for s in outstanding_samples(session, campaign_id, min_votes=1)}


def test_samples_not_named_are_left_alone_and_an_edit_to_an_unknown_label_is_rejected(
    engine, make_campaign, make_round
):
    campaign_id, round_id, ids = _setup(engine, make_campaign, make_round)
    a, c = ids["a"], ids["c"]
    with session_scope(engine) as session:
        reconcile_annotations(session, campaign_id, "labelstudio", [a, c],
                              [_ann(a, "3", "31", round_id), _ann(c, "5", "32", round_id)])
    with session_scope(engine) as session:
        # Only sample c was re-read: a's annotation is not taken as deleted.
        result = reconcile_annotations(session, campaign_id, "labelstudio", [c], [
            _ann(c, "zebra", "32", round_id, at=T2, status=AnnotationStatus.rejected,
                 reason="label 'zebra' is not in the label set")])
    assert (result.new, result.edited, result.deleted) == (0, 1, 0)
    with session_scope(engine) as session:
        labels = resolved_labels(session, campaign_id)
        assert a in labels and c not in labels


def test_sync_cursor_is_stored_per_campaign_and_source(engine, make_campaign):
    campaign_id = make_campaign()
    with session_scope(engine) as session:
        assert get_sync_cursor(session, campaign_id, "labelstudio") is None
        set_sync_cursor(session, campaign_id, "labelstudio", "2026-01-01T10:00:00.000000Z")
    with session_scope(engine) as session:
        set_sync_cursor(session, campaign_id, "labelstudio", "2026-01-01T11:00:00.000000Z")
    with session_scope(engine) as session:
        assert get_sync_cursor(session, campaign_id, "labelstudio") == "2026-01-01T11:00:00.000000Z"
        assert get_sync_cursor(session, campaign_id, "simulated") is None


def test_migration_0002_keeps_existing_annotations_both_ways(engine):
    from sqlalchemy import inspect, text

    from activelabel.storage import migrate

    migrate.upgrade_or_downgrade(engine, "0001")
    assert "annotation_change" not in inspect(engine).get_table_names()
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO campaign (id, name, task_kind, labels, strategy, dataset, config, created_at) "
            "VALUES (1, 'old', 'classification', '[\"3\"]', 'bald', 'digits', '{}', '2026-01-01')"))
        connection.execute(text(
            "INSERT INTO sample (id, campaign_id, uri, content_hash, split) VALUES (1, 1, 'a', 'h', 'pool')"))
        connection.execute(text(
            "INSERT INTO annotation (campaign_id, sample_id, annotator, label, source, external_id, status, "
            "created_at) VALUES (1, 1, 'x@x', '3', 'labelstudio', '7', 'accepted', '2026-01-01')"))
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()
    with engine.connect() as connection:
        assert connection.execute(text("SELECT label, updated_at FROM annotation")).all() == [("3", None)]
    migrate.upgrade_or_downgrade(engine, "0001")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT label FROM annotation")).scalars().all() == ["3"]
    assert {"annotation_change", "sync_cursor"}.isdisjoint(inspect(engine).get_table_names())
    migrate.upgrade(engine)


def _mask(value: int):
    """A 4 x 4 mask, every pixel class ``value``, as the PNG bytes ``annotation.mask`` holds."""
    import numpy as np

    from activelabel.pipeline.masks import mask_to_png_bytes

    return mask_to_png_bytes(np.full((4, 4), value, dtype=np.int64))


def test_an_edited_or_deleted_mask_is_kept_in_history(engine, make_campaign, make_round):
    from sqlalchemy import select

    from activelabel.storage import Annotation

    campaign_id, round_id, ids = _setup(engine, make_campaign, make_round)
    a, b = ids["a"], ids["b"]
    first, second, third = _mask(1), _mask(2), _mask(0)
    with session_scope(engine) as session:
        reconcile_annotations(session, campaign_id, "labelstudio", [a, b], [
            _ann(a, "<mask>", "41", round_id, mask=first), _ann(b, "<mask>", "42", round_id, mask=third)])
    with session_scope(engine) as session:
        # Only the mask differs (the label stays "<mask>"): an edit, the replaced mask kept.
        edit = reconcile_annotations(session, campaign_id, "labelstudio", [a, b], [
            _ann(a, "<mask>", "41", round_id, at=T2, mask=second), _ann(b, "<mask>", "42", round_id, mask=third)])
    assert (edit.new, edit.edited, edit.deleted) == (0, 1, 0)
    with session_scope(engine) as session:
        gone = reconcile_annotations(session, campaign_id, "labelstudio", [a, b],
                                     [_ann(a, "<mask>", "41", round_id, at=T2, mask=second)])
    assert (gone.new, gone.edited, gone.deleted) == (0, 0, 1)
    with session_scope(engine) as session:
        history = [(c.external_id, c.kind, c.old_label, c.new_label, c.old_mask)
                   for c in annotation_changes(session, campaign_id)]
        current = dict(session.execute(select(Annotation.external_id, Annotation.mask)).all())
    assert history == [("41", AnnotationChangeKind.edited, "<mask>", "<mask>", first),
                       ("42", AnnotationChangeKind.deleted, "<mask>", None, third)]
    assert current == {"41": second}


def test_a_classification_edit_keeps_no_mask(engine, make_campaign, make_round):
    campaign_id, round_id, ids = _setup(engine, make_campaign, make_round)
    a = ids["a"]
    with session_scope(engine) as session:
        reconcile_annotations(session, campaign_id, "labelstudio", [a], [_ann(a, "3", "51", round_id)])
    with session_scope(engine) as session:
        reconcile_annotations(session, campaign_id, "labelstudio", [a], [_ann(a, "4", "51", round_id, at=T2)])
    with session_scope(engine) as session:
        (change,) = annotation_changes(session, campaign_id)
        assert (change.old_label, change.new_label, change.old_mask) == ("3", "4", None)


def test_migration_0008_keeps_history_rows_both_ways(engine):
    """Down to 0007 drops the kept mask but no history row; up again brings the column back
    empty (NULL) for those rows. On SQLite and, when configured, PostgreSQL."""
    from sqlalchemy import inspect, text

    from activelabel.storage import migrate

    kept = _mask(3)
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO campaign (id, name, task_kind, labels, strategy, dataset, config, created_at) "
            "VALUES (1, 'seg', 'segmentation', '[\"bg\", \"fg\"]', 'bald', 'shapes', '{}', '2026-01-01')"))
        connection.execute(text(
            "INSERT INTO sample (id, campaign_id, uri, content_hash, split) VALUES (1, 1, 'a', 'h', 'pool')"))
        connection.execute(text(
            "INSERT INTO annotation_change (campaign_id, sample_id, source, external_id, annotator, kind, "
            "old_label, old_status, new_label, new_status, changed_at, old_mask) VALUES (1, 1, 'labelstudio', "
            "'7', 'x@x', 'edited', '<mask>', 'accepted', '<mask>', 'accepted', '2026-01-02', :m)"), {"m": kept})
    migrate.upgrade_or_downgrade(engine, "0007_segmentation")
    assert migrate.current_revision(engine) == "0007_segmentation"
    assert "old_mask" not in {c["name"] for c in inspect(engine).get_columns("annotation_change")}
    with engine.connect() as connection:
        assert connection.execute(text("SELECT external_id, kind FROM annotation_change")).all() == [("7", "edited")]
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()
    with engine.connect() as connection:
        assert connection.execute(text(
            "SELECT external_id, old_label, old_mask FROM annotation_change")).all() == [("7", "<mask>", None)]
