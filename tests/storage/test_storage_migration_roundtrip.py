"""Every migration keeps a campaign's rows: down to the first schema and up again, SQLite.

Batch-mode migrations rebuild tables (copy, drop, rename); with SQLite's foreign keys on, a drop
would cascade-delete every child row. This runs a real round first, so every table holds rows.
"""

from __future__ import annotations

from sqlalchemy import func, select

from activelabel.campaign import CampaignConfig, prepare_campaign
from activelabel.storage import Annotation, Round, Sample, Score, Selection, open_engine, session_scope
from activelabel.storage import migrate
from tests_support_rounds import run_round

TABLES = (Sample, Round, Score, Selection, Annotation)


def counts(engine) -> dict[str, int]:
    with session_scope(engine) as session:
        return {t.__tablename__: session.scalar(select(func.count()).select_from(t)) for t in TABLES}


def test_down_to_0001_and_back_to_head_keeps_every_row(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/al.db"
    engine = open_engine(url)
    config = CampaignConfig(name="keep", rounds=1, batch_size=5, initial_labeled=10, mc_samples=2,
                            epochs=1, device="cpu")
    campaign_id = prepare_campaign(engine, config)
    run_round(engine, campaign_id)
    before = counts(engine)
    assert all(before.values()), before

    migrate.upgrade_or_downgrade(engine, "0001")
    with engine.connect() as connection:
        for table in ("sample", "round", "score", "selection", "annotation"):
            assert connection.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar() == before[table]
    migrate.upgrade_or_downgrade(engine, "head")
    assert migrate.current_revision(engine) == migrate.head_revision()
    assert counts(engine) == before
