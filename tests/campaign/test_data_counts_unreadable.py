"""Trial 15 F15 and F8: status's ``Samples:`` line counted unreadable files in "pool"
("45 pool · 3 unreadable (skipped)" while 42 pool images could be labeled), and called a copy of
an unreadable file "labeled once with its original". Unreadable files are shown apart in their
split now ("42 pool (+3 unreadable)"), as copies are, and such a copy says what it is.
The rows are written to a real SQLite database and counted by ``data_counts``."""

from __future__ import annotations

from pathlib import Path

from activelabel.campaign.summary import DataCounts, data_counts
from activelabel.storage import open_engine
from activelabel.storage.database import session_scope
from activelabel.storage.models import Campaign, Sample, SampleProblem, SampleSplit


def test_unreadable_files_are_shown_apart_in_their_split() -> None:
    assert DataCounts({"evaluation": 6, "pool": 45}, 0, 3, 48, {}, {"pool": 3}).describe() == (
        "Samples: 6 evaluation, 42 pool (+3 unreadable) · 0 byte-identical copies (labeled once with their "
        "original) · 3 unreadable (skipped) · 48 labeled")
    assert DataCounts({"pool": 46}, 1, 3, 48, {"pool": 1}, {"pool": 3}).describe() == (
        "Samples: 42 pool (+1 copy, +3 unreadable) · 1 byte-identical copy (labeled once with its original) · "
        "3 unreadable (skipped) · 48 labeled")


def test_a_copy_of_an_unreadable_file_says_so() -> None:
    assert DataCounts({"pool": 12}, 1, 6, 0, {"pool": 1}, {"pool": 6}, 1).describe() == (
        "Samples: 5 pool (+1 copy, +6 unreadable) · 1 byte-identical copy (of an unreadable file, skipped with it) · "
        "6 unreadable (skipped) · 0 labeled")
    assert DataCounts({"pool": 12}, 3, 2, 0, {"pool": 3}, {"pool": 2}, 2).describe() == (
        "Samples: 7 pool (+3 copies, +2 unreadable) · 3 byte-identical copies (1 labeled once with its original, "
        "2 of unreadable files, skipped with them) · 2 unreadable (skipped) · 0 labeled")


def test_data_counts_reads_unreadable_files_and_their_copies_by_split(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'counts.db'}")
    with session_scope(engine) as session:
        campaign = Campaign(name="f15", labels=["a", "b"], strategy="random", dataset="own", config={})
        session.add(campaign)
        session.flush()

        def sample(uri: str, split: SampleSplit, duplicate_of: int | None = None) -> int:
            row = Sample(campaign_id=campaign.id, uri=uri, content_hash=uri, split=split, duplicate_of=duplicate_of)
            session.add(row)
            session.flush()
            return row.id

        for i in range(2):
            sample(f"eval_{i}.png", SampleSplit.evaluation)
        good = [sample(f"good_{i}.png", SampleSplit.pool) for i in range(4)]
        bad = [sample(f"bad_{i}.jpg", SampleSplit.pool) for i in range(3)]
        sample("copy_of_good.png", SampleSplit.pool, good[0])
        sample("copy_of_bad.jpg", SampleSplit.pool, bad[0])
        session.add_all(SampleProblem(campaign_id=campaign.id, uri=f"bad_{i}.jpg", reason="Truncated File Read")
                        for i in range(3))
    counts = data_counts(engine, "f15")
    assert counts.describe() == (
        "Samples: 2 evaluation, 4 pool (+2 copies, +3 unreadable) · 2 byte-identical copies (1 labeled once with its "
        "original, 1 of an unreadable file, skipped with it) · 3 unreadable (skipped) · 0 labeled")
