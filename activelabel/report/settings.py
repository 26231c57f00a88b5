"""The report's settings table: only the settings that apply to the campaign's kind and data.

A campaign page shows what a team lead needs to read its figures: the strategy, the label set,
who labels (and, for Label Studio, when a round completes and how images reach it), where the
data and the yardstick come from, then the round and model settings. Settings that do not apply
are left out: ``test_fraction`` when a test set is given (your own, or MNIST's t10k) or for your own data, ``evaluation_size``
when a test set is given or it is 0, ``initial_labeled`` for your own data, unset (None) and
switched-off (False) settings; ``calibrate`` where a round had the labels it needs (500 labels,
20 labeled images for segmentation), with that threshold in words. An experiment page keeps its
``strategies`` and ``seeds`` rows.
Secrets never appear: a password in a URL and token-like query values are masked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from activelabel.campaign.summary import yardstick

#: A URL's ``user:password@`` (the password is masked) and secret-looking query values.
_USERINFO = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^/@:\s]*):[^/@\s]*@")
_SECRET_QUERY = re.compile(r"(?P<key>[?&](?:token|access_token|api_key|apikey|key|password|secret|sig|signature)=)"
                           r"[^&#\s]*", re.IGNORECASE)

#: Round and model settings shown for every campaign kind when set (in this order).
ROUND_KEYS = ("rounds", "batch_size", "min_labels_to_train", "pool_subset")
MODEL_KEYS = ("uncertainty", "mc_samples", "ensemble_size", "epochs", "fixed_epochs",
              "weight_decay_scale", "recipe", "architecture", "dropout")
#: Stopping rules (None: off).
STOP_KEYS = ("label_budget", "target_accuracy", "plateau_threshold")


def masked(value: object) -> str:
    """``value`` as a table cell, with a URL's password and secret query values as ``***``:
    ``http://u:pw@host/x?token=abc`` → ``http://u:***@host/x?token=***``."""
    text = str(value)
    text = _USERINFO.sub(lambda m: f"{m.group('head')}:***@", text)
    return _SECRET_QUERY.sub(lambda m: f"{m.group('key')}***", text)


def own_data(config: Mapping) -> bool:
    """Whether the campaign reads your own files (``dataset = "files"``) rather than a built-in dataset."""
    return config.get("dataset") == "files"


def _shown(config: Mapping, key: str) -> bool:
    value = config.get(key)
    return value is not None and value is not False


def calibration_threshold(task: str) -> tuple[int, str]:
    """(labels, words) from which a round holds labels out to fit a temperature: 500 labels
    for classification, 20 labeled images for segmentation (``calibration_terms``)."""
    from activelabel.campaign.calibration_terms import MIN_LABELS, SEGMENTATION_MIN_IMAGES

    if task == "segmentation":
        return SEGMENTATION_MIN_IMAGES, f"from {SEGMENTATION_MIN_IMAGES} labeled images"
    return MIN_LABELS, f"from {MIN_LABELS} labels"


def calibrate_rows(config: Mapping, most_labeled: int | None, task: str = "classification") -> list[list[str]]:
    """The ``calibrate`` row where it applies: when some round had labels enough to hold some
    out (``most_labeled``: the most labels a round had, None when unknown), with the threshold
    in words ("on: 15 % of the labels held out to fit a temperature, from 500 labels"); no row
    for a campaign below the threshold, where calibration never runs whatever it says."""
    threshold, words = calibration_threshold(task)
    if most_labeled is not None and most_labeled < threshold:
        return []
    from activelabel.campaign.calibration_terms import VALIDATION_FRACTION

    share = f"{VALIDATION_FRACTION:.0%}".replace("%", " %")
    what = "images" if task == "segmentation" else "labels"
    if config.get("calibrate", True):
        return [["calibrate", f"on: {share} of the {what} held out to fit a temperature, {words}"]]
    return [["calibrate", f"off: every label trains, no temperature fitted ({words} it would be)"]]


def data_keys(config: Mapping) -> list[str]:
    """Where the samples and the yardstick come from: the dataset, your own folders (pool, seed
    labels, test set, their masks), the evaluation size when it is the yardstick (no test set),
    or a built-in dataset's initial labels and test fraction."""
    keys = ["dataset"]
    if own_data(config):
        keys += [k for k in ("data_pool", "data_labeled", "labeled_masks", "data_test", "test_masks")
                 if _shown(config, k)]
        if yardstick(config) == "evaluation":
            keys.append("evaluation_size")
    else:
        keys += [k for k in ("initial_labeled", "initial_balanced") if _shown(config, k)]
        if not given_test_split(str(config.get("dataset", ""))):
            keys.append("test_fraction")
    return keys


def given_test_split(dataset: str) -> bool:
    """Whether the dataset spec brings its own test split (``mnist:...?test=t10k``), so the
    campaign's ``test_fraction`` is not used and is not shown (trial 17 F5)."""
    from activelabel.pipeline.datasets import named_test_split

    return named_test_split(dataset) is not None


def annotator_rows(config: Mapping) -> list[list[str]]:
    """Who labels: the annotator kind, then for Label Studio the answers each task needs, when a
    round completes (``min_new_labels``; an evaluation round always needs all of its samples) and
    how images reach it (``document_root``, ``image_url_prefix``, else embedded); for the
    simulated annotator its noise when set."""
    kind = config.get("annotator", "simulated")
    rows = [["annotator", str(kind)]]
    if kind == "labelstudio":
        rows.append(["annotations_per_task", str(config.get("annotations_per_task", 1))])
        min_new = config.get("min_new_labels")
        evaluated = yardstick(config) == "evaluation"
        rows.append(["min_new_labels", "None: every sample of a round" if min_new is None else
                     f"{min_new}" + (" (the evaluation round needs all of its samples)" if evaluated else "")])
        served = [[k, masked(config[k])] for k in ("document_root", "image_url_prefix") if config.get(k)]
        rows += served or [["images", "embedded in the tasks (PNG data)"]]
    elif config.get("annotator_noise"):
        rows.append(["annotator_noise", str(config["annotator_noise"])])
    return rows


def key_rows(config: Mapping, keys: Sequence[str]) -> list[list[str]]:
    """``[key, value]`` of each key that is set (not None, not False), values masked."""
    return [[k, masked(config[k])] for k in keys if _shown(config, k)]


def model_keys(config: Mapping) -> list[str]:
    """The model settings that apply to its uncertainty method (``mc_samples`` for MC dropout,
    ``ensemble_size`` for an ensemble)."""
    method = config.get("uncertainty", "mc_dropout")
    return [k for k in MODEL_KEYS
            if not (k == "mc_samples" and "mc_dropout" not in str(method))
            and not (k == "ensemble_size" and "ensemble" not in str(method))]


def campaign_settings_rows(strategy: str, labels: Sequence[str], config: Mapping,
                           most_labeled: int | None = None) -> list[list[str]]:
    """The settings table of a classification campaign's page (see the module docstring);
    ``most_labeled``: the most labels a round had, which says whether ``calibrate`` applies
    (:func:`calibrate_rows`)."""
    rows = [["strategy", strategy], ["labels", ", ".join(labels)]]
    if config.get("annotator", "simulated") == "simulated":
        rows.append(["seed", str(config.get("seed", 0))])  # what repeats a simulated run
    rows += annotator_rows(config)
    rows += key_rows(config, [*data_keys(config), *ROUND_KEYS, *model_keys(config)])
    rows += calibrate_rows(config, most_labeled)
    rows += key_rows(config, STOP_KEYS)
    return rows
