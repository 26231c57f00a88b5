"""``run --relocate`` of a campaign whose Label Studio tasks show served images (document_root).

Real Label Studio, real files under its LOCAL_FILES_DOCUMENT_ROOT: a round is pushed, some tasks
answered, the data folder moves (under the same root); the relocation points the tasks still
out at the new place (Label Studio serves the bytes there), leaves answered tasks as they were,
gives the project a storage for the new folder, and a rerun (or one after a crash midway)
changes nothing more. A move outside the root is refused before anything is written.
"""

from __future__ import annotations

import shutil
import uuid

import httpx
import pytest

from activelabel.campaign import prepare_campaign
from activelabel.campaign.data import clear_cache
from activelabel.campaign.file import load_campaign_file
from activelabel.campaign.relocation import carry_to_labelstudio
from activelabel.errors import ConfigError
from activelabel.flows import campaign_flow, sync_flow
from activelabel.storage import Campaign, open_engine, session_scope
from tests_support_campaignfile import use_label_studio, write_campaign_file
from tests_support_lsserver import delete_projects_titled, project_titled
from tests_support_lstasks import answer, tasks_of_round
from tests_support_owndata import LABELS, write_unlabeled_pool

pytestmark = pytest.mark.labelstudio


def _tasks(ls_client, ids) -> dict[int, dict]:
    return {task_id: dict(ls_client.tasks.get(id=task_id).data) for task_id in ids}


def test_relocation_points_the_tasks_still_out_at_the_moved_images(ls_server, ls_client, tmp_path, monkeypatch) -> None:
    if ls_server.document_root is None:
        pytest.skip("this Label Studio server's LOCAL_FILES_DOCUMENT_ROOT is unknown")
    root = ls_server.document_root.resolve()
    base = root / f"reloc-{uuid.uuid4().hex[:8]}"
    db_url = use_label_studio(monkeypatch, ls_server, tmp_path)
    write_unlabeled_pool(base / "a" / "images", count=16)
    name = f"reloc-{uuid.uuid4().hex[:8]}"
    write_campaign_file(base / "a" / "campaign.toml", name, settings={
        "campaign.batch_size": 6, "data.evaluation_size": 0, "campaign.epochs": 1, "campaign.mc_samples": 2,
        "campaign.device": "cpu", "annotator.document_root": str(root)})
    config, _ = load_campaign_file(base / "a" / "campaign.toml")
    engine = open_engine(db_url)
    campaign_id = prepare_campaign(engine, config)
    try:
        assert campaign_flow(name, 1)[-1].status == "waiting_for_labels"
        sent = tasks_of_round(engine, 1)
        assert len(sent) == 6
        answered = dict(sorted(sent.items())[:2])
        out = dict(sorted(sent.items())[2:])
        for task_id in answered.values():
            answer(ls_client, task_id, LABELS[0])
        assert sync_flow(name).pending == 4
        before = _tasks(ls_client, sent.values())
        for uri, task_id in sent.items():
            assert before[task_id]["image"] == f"/data/local-files/?d={base.name}/a/images/{uri}"

        # Moved outside the document root: refused before anything is written.
        shutil.move(base / "a", tmp_path / "outside")
        clear_cache()
        outside, _ = load_campaign_file(tmp_path / "outside" / "campaign.toml")
        with pytest.raises(ConfigError) as refused:
            prepare_campaign(engine, outside, relocate=True)
        message = str(refused.value)
        assert str((tmp_path / "outside" / "images").resolve()) in message and repr(str(root)) in message
        assert "move the folder under" in message and "nothing was changed" in message
        with session_scope(engine) as session:
            assert session.get(Campaign, campaign_id).config["data_pool"] == config.data_pool
        assert _tasks(ls_client, sent.values()) == before

        # Moved under the same root.
        shutil.move(tmp_path / "outside", base / "b")
        clear_cache()
        moved, _ = load_campaign_file(base / "b" / "campaign.toml")
        # A crash midway: the Label Studio part done for some tasks, the new place not stored yet.
        carry_to_labelstudio(engine, campaign_id, config, moved)
        first = next(iter(out.values()))
        ls_client.tasks.update(id=str(first), data=before[first])  # this one not reached before the crash
        with session_scope(engine) as session:
            assert session.get(Campaign, campaign_id).config["data_pool"] == config.data_pool

        said: list[str] = []
        assert prepare_campaign(engine, moved, relocate=True, say=said.append) == campaign_id
        new_root = base / "b" / "images"
        assert said[0].startswith("Relocated campaign")
        assert said[1:] == [f"Label Studio: 1 task(s) still out now show images from {new_root} (3 did already)"]
        after = _tasks(ls_client, sent.values())
        for uri, task_id in out.items():
            value = after[task_id]["image"]
            assert value == f"/data/local-files/?d={base.name}/b/images/{uri}"
            assert {k: v for k, v in after[task_id].items() if k != "image"} == {
                k: v for k, v in before[task_id].items() if k != "image"}  # sample_id and the rest kept
            served = httpx.get(ls_server.url + value, headers={"Authorization": f"Token {ls_server.api_key}"})
            assert served.status_code == 200, served.text[:300]
            assert served.content == (new_root / uri).read_bytes()
        for task_id in answered.values():  # answered: history, left as it was
            assert after[task_id] == before[task_id]
        project = project_titled(ls_client, config.labelstudio_project)
        paths = [s.path for s in ls_client.import_storage.local.list(project=project.id)]
        assert paths.count(str(new_root)) == 1

        # A rerun changes nothing: the new place is stored, nothing is said, no task or storage is added.
        said.clear()
        assert prepare_campaign(engine, moved, relocate=True, say=said.append) == campaign_id
        assert said == []
        assert _tasks(ls_client, sent.values()) == after
        assert [s.path for s in ls_client.import_storage.local.list(project=project.id)] == paths
        with session_scope(engine) as session:
            assert session.get(Campaign, campaign_id).config["data_pool"] == str(new_root)
        assert len(list(ls_client.tasks.list(project=project.id))) == 6
    finally:
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(tmp_path / "outside", ignore_errors=True)
        delete_projects_titled(ls_client, config.labelstudio_project)


def test_relocation_keeps_prefix_urls_since_uris_are_relative_to_the_data_folder(ls_server, ls_client, tmp_path,
                                                                                  monkeypatch) -> None:
    """image_url_prefix: the URL is prefix + the sample URI, relative to the data folder, so a
    move changes no task; the line says to serve the new folder under the same prefix (the
    prefix itself is not shown: it may hold a token)."""
    db_url = use_label_studio(monkeypatch, ls_server, tmp_path)
    write_unlabeled_pool(tmp_path / "a" / "images", count=12)
    name = f"reloc-{uuid.uuid4().hex[:8]}"
    write_campaign_file(tmp_path / "a" / "campaign.toml", name, settings={
        "campaign.batch_size": 4, "data.evaluation_size": 0, "campaign.epochs": 1, "campaign.mc_samples": 2,
        "campaign.device": "cpu", "annotator.image_url_prefix": "http://images.example/t0ken/"})
    config, _ = load_campaign_file(tmp_path / "a" / "campaign.toml")
    engine = open_engine(db_url)
    campaign_id = prepare_campaign(engine, config)
    try:
        assert campaign_flow(name, 1)[-1].status == "waiting_for_labels"
        sent = tasks_of_round(engine, 1)
        answer(ls_client, min(sent.values()), LABELS[1])
        assert sync_flow(name).pending == 3
        before = _tasks(ls_client, sent.values())
        assert {before[t]["image"] for t in sent.values()} == {f"http://images.example/t0ken/{u}" for u in sent}

        shutil.move(tmp_path / "a", tmp_path / "b")
        clear_cache()
        moved, _ = load_campaign_file(tmp_path / "b" / "campaign.toml")
        said: list[str] = []
        assert prepare_campaign(engine, moved, relocate=True, say=said.append) == campaign_id
        assert said[1:] == [
            "Label Studio: the 3 task(s) still out keep their image URLs (image_url_prefix + the path inside the "
            f"data folder, which the move keeps): make the prefix serve {(tmp_path / 'b' / 'images').resolve()}"]
        assert "t0ken" not in " ".join(said)
        assert _tasks(ls_client, sent.values()) == before
    finally:
        delete_projects_titled(ls_client, config.labelstudio_project)


def test_relocation_outside_the_root_with_document_root_left_out_embeds_the_images(ls_server, ls_client, tmp_path,
                                                                                   monkeypatch) -> None:
    """The refusal's third way out: the moved campaign file leaves document_root out, so the
    tasks still out get the image embedded (the PNG data URI a new embedded task would have)."""
    if ls_server.document_root is None:
        pytest.skip("this Label Studio server's LOCAL_FILES_DOCUMENT_ROOT is unknown")
    from activelabel.campaign.data import campaign_data
    from activelabel.campaign.setup import build_annotator

    root = ls_server.document_root.resolve()
    base = root / f"reloc-{uuid.uuid4().hex[:8]}"
    db_url = use_label_studio(monkeypatch, ls_server, tmp_path)
    write_unlabeled_pool(base / "images", count=12)
    name = f"reloc-{uuid.uuid4().hex[:8]}"
    write_campaign_file(base / "campaign.toml", name, settings={
        "campaign.batch_size": 4, "data.evaluation_size": 0, "campaign.epochs": 1, "campaign.mc_samples": 2,
        "campaign.device": "cpu", "annotator.document_root": str(root)})
    config, _ = load_campaign_file(base / "campaign.toml")
    engine = open_engine(db_url)
    campaign_id = prepare_campaign(engine, config)
    try:
        assert campaign_flow(name, 1)[-1].status == "waiting_for_labels"
        sent = tasks_of_round(engine, 1)
        answered = min(sent.values())
        answer(ls_client, answered, LABELS[1])
        assert sync_flow(name).pending == 3
        before = _tasks(ls_client, sent.values())

        shutil.move(base, tmp_path / "out")
        path = tmp_path / "out" / "campaign.toml"
        path.write_text(path.read_text().replace(f'document_root = "{root}"', "# document_root = ..."))
        clear_cache()
        moved, _ = load_campaign_file(path)
        assert moved.document_root is None
        said: list[str] = []
        assert prepare_campaign(engine, moved, relocate=True, say=said.append) == campaign_id
        assert said[1:] == ["Label Studio: 3 task(s) still out now show images from the task itself (embedded)"]
        after = _tasks(ls_client, sent.values())
        assert after[answered] == before[answered]
        embed = build_annotator(moved, campaign_data(moved)).image_source
        for uri, task_id in sent.items():
            if task_id != answered:
                assert after[task_id]["image"] == embed(uri) and after[task_id]["image"].startswith("data:image/png")
    finally:
        shutil.rmtree(base, ignore_errors=True)
        delete_projects_titled(ls_client, config.labelstudio_project)


def test_cli_run_relocate_says_what_it_did_in_label_studio(ls_server, ls_client, tmp_path, monkeypatch) -> None:
    """`activelabel run campaign.toml --relocate` as a user runs it: outside the document root it
    stops before the database is touched; under it, the Label Studio line follows the relocation line."""
    if ls_server.document_root is None:
        pytest.skip("this Label Studio server's LOCAL_FILES_DOCUMENT_ROOT is unknown")
    from tests_support_cli import cli, error_line

    root = ls_server.document_root.resolve()
    base = root / f"reloc-{uuid.uuid4().hex[:8]}"
    use_label_studio(monkeypatch, ls_server, tmp_path)
    write_unlabeled_pool(base / "a" / "images", count=12)
    name = f"reloc-{uuid.uuid4().hex[:8]}"
    path = write_campaign_file(base / "a" / "campaign.toml", name, settings={
        "campaign.rounds": 1, "campaign.batch_size": 4, "data.evaluation_size": 0, "campaign.epochs": 1,
        "campaign.mc_samples": 2, "campaign.device": "cpu", "annotator.document_root": str(root)})
    project = f"activelabel {name}"
    try:
        first = cli("run", str(path), cwd=base / "a")
        assert first.returncode == 0, first.stderr
        database = (base / "a" / "activelabel.db").read_bytes()

        shutil.move(base / "a", tmp_path / "out")
        line = error_line(cli("run", str(tmp_path / "out" / "campaign.toml"), "--relocate", cwd=tmp_path / "out"))
        assert str((tmp_path / "out" / "images").resolve()) in line and str(root) in line
        assert "annotator.document_root" in line and "move the images under it" in line
        assert (tmp_path / "out" / "activelabel.db").read_bytes() == database  # nothing written

        shutil.move(tmp_path / "out", base / "b")
        run = cli("run", str(base / "b" / "campaign.toml"), "--relocate", cwd=base / "b")
        assert run.returncode == 0, run.stderr
        lines = run.stderr.splitlines()
        at = next(n for n, text in enumerate(lines) if text.startswith(f"Relocated campaign {name!r}"))
        assert lines[at + 1] == f"Label Studio: 4 task(s) still out now show images from {base / 'b' / 'images'}"
        pid = project_titled(ls_client, project).id
        images = {t.data["image"] for t in ls_client.tasks.list(project=pid, fields="all")}
        assert len(images) == 4 and all(i.startswith(f"/data/local-files/?d={base.name}/b/images/") for i in images)
    finally:
        shutil.rmtree(base, ignore_errors=True)
        delete_projects_titled(ls_client, project)
