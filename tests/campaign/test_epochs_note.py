"""The note a run prints when the 200-step training minimum raises --epochs: it appears exactly
when the training loop would run more epochs than asked (pipeline.training.planned_epochs)."""

from __future__ import annotations

from activelabel.campaign.config import CampaignConfig
from activelabel.campaign.epochs import labels_for_epochs, raised_epochs_note
from activelabel.campaign.model_settings import training_config
from activelabel.pipeline.training import planned_epochs


def test_the_note_appears_exactly_when_training_runs_more_epochs_than_asked() -> None:
    for epochs in (1, 2, 3, 7, 40, 200, 201):
        config = CampaignConfig(name="n", epochs=epochs)
        enough = labels_for_epochs(config)
        for labels in range(1, 7000, 37):
            raised = planned_epochs(labels, training_config(config, labels), skips_batch_of_one=True) > epochs  # small_cnn
            assert (raised_epochs_note(config, labels) is not None) == raised, (epochs, labels)
            assert raised == (labels < enough), (epochs, labels)


def test_the_note_says_the_threshold_and_what_this_campaign_gets() -> None:
    assert raised_epochs_note(CampaignConfig(name="n", epochs=2), 16) == (
        "Rounds on fewer than 3,170 labels train more than epochs = 2: each round takes at least 200 optimizer "
        "steps of 32 samples (on 16 labels: 200 epochs).")
    assert raised_epochs_note(CampaignConfig(name="n", epochs=40), None, hint="; --fixed-epochs trains exactly "
                              "that many") == (
        "Rounds on fewer than 130 labels train more than epochs = 40: each round takes at least 200 optimizer "
        "steps of 32 samples; --fixed-epochs trains exactly that many.")
    # 129 labels: 4 batches of 32 and one of 1, which small_cnn (batch norm) skips: 4 x 40 steps < 200.
    assert raised_epochs_note(CampaignConfig(name="n", epochs=40), 129) == (
        "Rounds on fewer than 130 labels train more than epochs = 40: each round takes at least 200 optimizer "
        "steps of 32 samples (on 129 labels: 50 epochs).")
    assert raised_epochs_note(CampaignConfig(name="n", epochs=40), 130) is None
    # gal_cnn has no batch norm: its last batch of one is a step, so 129 labels take 5 x 40 steps.
    assert raised_epochs_note(CampaignConfig(name="n", epochs=40, architecture="gal_cnn"), 129) is None
    assert raised_epochs_note(CampaignConfig(name="n", epochs=2, fixed_epochs=True), 16) is None
    assert labels_for_epochs(CampaignConfig(name="n", epochs=2, fixed_epochs=True)) is None


def test_compare_says_it_only_when_the_settings_that_run_raise_the_epochs(tmp_path) -> None:
    """compare's note reads the campaigns' settings (options, experiment file, recipe): the
    gal2017 recipe trains exactly --epochs, so it gets no note; the default recipe does. The
    dataset folder is missing on purpose: the note comes before the data check, and nothing runs."""
    from typer.testing import CliRunner

    from activelabel.cli import app

    def said(*extra: str) -> str:
        result = CliRunner().invoke(app, ["compare", "--dataset", f"imagefolder:{tmp_path / 'missing'}",
                                          "--strategies", "random", "--seeds", "1", "--epochs", "3",
                                          "--database-url", f"sqlite:///{tmp_path / 'x.db'}", *extra],
                                    terminal_width=250)
        assert result.exit_code != 0  # the missing folder
        return result.output

    assert "train more than epochs = 3" in said()
    assert "train more than epochs = 3" not in said("--recipe", "gal2017")
    assert not (tmp_path / "x.db").exists()
