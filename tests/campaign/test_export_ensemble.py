"""`export --model` of a deep-ensemble campaign writes every member and the round's temperatures
(``activelabel-model/2``); a single-model campaign still writes its /1 file unchanged.

Real tiny campaigns on the built-in digits (SQLite, the round's own steps, no mocks): 3 members
of 2 fixed epochs on 40 labels, half of them held out for calibration (``MIN_LABELS`` lowered
from 500 as tests/campaign/test_campaign_uncertainty.py does) so the round fits and stores
temperatures the file must carry. The weak members make many held-out errors, so the round's
calibration check runs for real; which temperatures it keeps is the round's business, the
tests compare the file with what the round stored.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from sqlalchemy import select

from activelabel.acquisition import bald
from activelabel.campaign import CampaignConfig, calibrate, prepare_campaign
from activelabel.campaign.data import campaign_data, clear_cache
from activelabel.campaign.export import export_model
from activelabel.campaign.setup import check_dataset
from activelabel.campaign.model_settings import model_spec
from activelabel.errors import WeightsFileError
from activelabel.pipeline.calibration import calibrated_probabilities
from activelabel.pipeline.checkpoint import load_model
from activelabel.pipeline.model import ModelSpec
from activelabel.pipeline.model_file import (
    ENSEMBLE_FORMAT,
    FORMAT,
    build_model_for_training,
    load_ensemble_file,
    load_model_file,
)
from activelabel.pipeline.prediction import predict_probabilities
from activelabel.storage import ModelCheckpoint, Round, Sample, Score, open_engine, session_scope
from tests_support_rounds import run_round

MEMBERS = 3
CPU = torch.device("cpu")


def _config(name: str, **changes) -> CampaignConfig:
    settings = dict(name=name, dataset="digits", strategy="bald", uncertainty="ensemble", ensemble_size=MEMBERS,
                    rounds=1, batch_size=5, initial_labeled=40, epochs=2, fixed_epochs=True, mc_samples=2,
                    device="cpu", seed=0)
    return CampaignConfig(**(settings | changes))


def _stored(engine):
    """The campaign's one round and its checkpoints (member order), detached."""
    with session_scope(engine) as session:
        rnd = session.scalar(select(Round).where(Round.index == 1))
        checkpoints = list(session.scalars(select(ModelCheckpoint).where(ModelCheckpoint.round_id == rnd.id)
                                           .order_by(ModelCheckpoint.member)))
        session.expunge_all()
    return rnd, checkpoints


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory):
    """(engine, folder, config): one trained, calibrated, scored ensemble round, exported to model.pt."""
    folder = tmp_path_factory.mktemp("export-ensemble")
    clear_cache()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(calibrate, "MIN_LABELS", 20)
        patch.setattr(calibrate, "VALIDATION_FRACTION", 0.5)
        config = _config("ens-export")
        engine = open_engine(f"sqlite:///{folder}/al.db")
        run_round(engine, prepare_campaign(engine, config))
    return engine, folder, config


def test_the_file_holds_every_member_and_the_rounds_temperatures(ensemble) -> None:
    engine, folder, _ = ensemble
    rnd, checkpoints = _stored(engine)
    assert [c.member for c in checkpoints] == list(range(MEMBERS))
    assert rnd.calibration is not None and rnd.calibration["validation_size"] == 20  # the round calibrated

    exported = export_model(engine, "ens-export", folder / "model.pt")
    assert (exported.version, exported.round, exported.members) == (rnd.model_version, 1, MEMBERS)

    payload = torch.load(folder / "model.pt", weights_only=True)
    assert payload["format"] == ENSEMBLE_FORMAT
    assert "state_dict" not in payload  # no reader may take member 0 for the model
    assert payload["architecture"] == ModelSpec.from_dict(checkpoints[0].architecture).to_dict()
    assert payload["labels"] == [str(d) for d in range(10)]
    assert payload["extra"] == {"campaign": "ens-export", "version": rnd.model_version, "round": 1,
                                "members": MEMBERS}
    assert len(payload["members"]) == MEMBERS
    for state, checkpoint in zip(payload["members"], checkpoints):
        stored = torch.load(io.BytesIO(checkpoint.state), weights_only=True)
        assert state.keys() == stored.keys()
        assert all(torch.equal(state[k], v) for k, v in stored.items())
    assert len({tuple(m["head.3.bias"].tolist()) for m in payload["members"]}) == MEMBERS  # distinct seeds
    assert payload["calibration"] == {
        "temperature": rnd.calibration["temperature"],
        "mixture_temperature": rnd.calibration["mixture_temperature"],
        "predictor": {"method": "ensemble", "passes": 1, "members": MEMBERS},
    }
    # What `export` prints after "Wrote model <version> to <file>": the temperatures the round kept, by name.
    kept = [f"{name} {rnd.calibration[key]:.3g}" for name, key in
            (("temperature", "temperature"), ("mixture temperature", "mixture_temperature"))
            if rnd.calibration[key] != 1.0]
    assert exported.details() == (f": an ensemble of {MEMBERS} members (round 1), "
                                   + (", ".join(kept) or "no temperature kept (the round's calibration kept T = 1)"))


def test_the_loaded_ensemble_predicts_what_the_round_scored(ensemble) -> None:
    engine, folder, config = ensemble
    export_model(engine, "ens-export", folder / "load.pt")
    rnd, checkpoints = _stored(engine)
    loaded = load_ensemble_file(folder / "load.pt")
    assert len(loaded.members) == MEMBERS and loaded.labels == [str(d) for d in range(10)]
    assert (loaded.temperature, loaded.mixture_temperature) == (
        rnd.calibration["temperature"], rnd.calibration["mixture_temperature"])

    with session_scope(engine) as session:
        scores = session.scalars(select(Score).where(Score.round_id == rnd.id).order_by(Score.sample_id)).all()[:12]
        uris = dict(session.execute(select(Sample.id, Sample.uri)).all())
        values = [s.value for s in scores]
        images = campaign_data(config).store.read([uris[s.sample_id] for s in scores])
    assert len(values) == 12
    x = torch.as_tensor(images, dtype=torch.float32)
    stored_models = [load_model(ModelSpec.from_dict(c.architecture), c.state, CPU) for c in checkpoints]
    with torch.no_grad():
        logits = torch.stack([m(x) for m in loaded.members])
        assert all(torch.equal(logits[i], stored_models[i](x)) for i in range(MEMBERS))
    # The round's own scores (BALD of the members at the acquisition temperature) from the file's members.
    probs = predict_probabilities(list(loaded.members), images, samples=0, device=CPU, seed=0,
                                  temperature=rnd.uncertainty["temperature"])
    np.testing.assert_allclose(bald(probs), values, rtol=1e-4, atol=1e-6)
    # predict(): the calibrated predictive distribution the round reports (T1 per member, T2 on the mean).
    expected = calibrated_probabilities(logits.numpy(), rnd.calibration["temperature"],
                                        rnd.calibration["mixture_temperature"])
    np.testing.assert_allclose(loaded.predict(x).numpy(), expected, rtol=1e-5, atol=1e-6)
    # The docstring's snippet for averaging the members outside activelabel gives the same.
    cal = torch.load(folder / "load.pt", weights_only=True)["calibration"]
    with torch.no_grad():
        p = torch.stack([torch.softmax(net(x) / cal["temperature"], -1) for net in loaded.members]).mean(0)
        p = torch.softmax(p.log() / cal["mixture_temperature"], -1)
    np.testing.assert_allclose(p.numpy(), expected, rtol=1e-4, atol=1e-6)


def test_load_model_file_refuses_an_ensemble_by_name(ensemble) -> None:
    engine, folder, _ = ensemble
    export_model(engine, "ens-export", folder / "refused.pt")
    with pytest.raises(WeightsFileError, match=rf"holds an ensemble of {MEMBERS} members .*load_ensemble_file"):
        load_model_file(folder / "refused.pt")


def test_model_weights_refuses_an_ensemble_file_and_takes_the_member_its_message_saves(ensemble, tmp_path) -> None:
    engine, folder, _ = ensemble
    export_model(engine, "ens-export", folder / "weights.pt")
    config = _config("from-ensemble", uncertainty="mc_dropout", weights=str(folder / "weights.pt"))
    # check_dataset: the check every `run` makes before anything is written.
    with pytest.raises(WeightsFileError, match=rf"ensemble of {MEMBERS} members .*starts from one network") as raised:
        check_dataset(config)
    # The message's command, run as it is, saves member 0 as a file the campaign takes.
    command = str(raised.value).split('python -c "', 1)[1].removesuffix('"')
    subprocess.run([sys.executable, "-c", command], cwd=tmp_path, check=True, timeout=300)
    config = _config("from-member", uncertainty="mc_dropout", weights=str(tmp_path / "member0.pt"))
    check_dataset(config)
    model = build_model_for_training(model_spec(config, 1, 10, 8))
    member0 = torch.load(folder / "weights.pt", weights_only=True)["members"][0]
    backbone = [k for k in member0 if k.startswith(("features.", "head.0."))]
    assert backbone and all(torch.equal(model.state_dict()[k], member0[k]) for k in backbone)


def test_cli_says_it_wrote_an_ensemble(ensemble) -> None:
    engine, folder, _ = ensemble
    rnd, _ = _stored(engine)
    out = subprocess.run([sys.executable, "-m", "activelabel.cli", "export", "ens-export", "--model", "cli.pt",
                          "--database-url", f"sqlite:///{folder}/al.db"],
                         capture_output=True, text=True, cwd=folder, timeout=600,
                         env={**os.environ, "COLUMNS": "250"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"Wrote model {rnd.model_version} to cli.pt: an ensemble of {MEMBERS} members (round 1), " in out.stdout
    if rnd.calibration["mixture_temperature"] != 1.0:
        assert f"mixture temperature {rnd.calibration['mixture_temperature']:.3g}" in out.stdout
    assert len(torch.load(folder / "cli.pt", weights_only=True)["members"]) == MEMBERS


def test_a_single_model_campaign_still_writes_its_v1_file(tmp_path) -> None:
    clear_cache()
    engine = open_engine(f"sqlite:///{tmp_path}/single.db")
    run_round(engine, prepare_campaign(engine, _config("single", uncertainty="mc_dropout", initial_labeled=10)))
    rnd, (checkpoint,) = _stored(engine)
    exported = export_model(engine, "single", tmp_path / "model.pt")
    assert (exported.members, exported.version, exported.details()) == (1, rnd.model_version, "")
    payload = torch.load(tmp_path / "model.pt", weights_only=True)
    assert list(payload) == ["format", "architecture", "labels", "state_dict", "extra"]
    assert payload["format"] == FORMAT and payload["extra"] == {"campaign": "single", "version": rnd.model_version}
    stored = torch.load(io.BytesIO(checkpoint.state), weights_only=True)
    assert all(torch.equal(payload["state_dict"][k], v) for k, v in stored.items())
    loaded = load_ensemble_file(tmp_path / "model.pt")  # a /1 file is an ensemble of one
    assert len(loaded.members) == 1 and (loaded.temperature, loaded.mixture_temperature) == (1.0, 1.0)
