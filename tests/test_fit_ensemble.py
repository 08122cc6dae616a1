"""fit_ensemble: K seeds of a recipe, trained, averaged, resumable member by member."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import keras
import numpy as np
import pytest

from cxr_pneumonia.bundle import load_bundle
from cxr_pneumonia.cli.common import recorded_split
from cxr_pneumonia.exceptions import EnsembleError
from cxr_pneumonia.training import fit_ensemble
from helpers_training import make_splits, tiny_model


def build(seed: int) -> keras.Model:
    return tiny_model(16, seed=seed, name="tiny")


def test_members_differ_and_the_ensemble_is_their_mean(tmp_path: Path) -> None:
    data = dataclasses.replace(make_splits(), validation_fraction=0.25)
    built: list[int] = []

    def recording_build(seed: int) -> keras.Model:
        built.append(seed)
        return build(seed)

    result = fit_ensemble(
        recording_build,
        data,
        members=2,
        seed=5,
        tta=True,
        epochs=1,
        callbacks=None,
        checkpoint_dir=tmp_path / "ckpt",
        verbose=0,
        name="tiny-x2",
    )
    assert built == [5, 6]
    assert result.seeds == (5, 6)
    assert result.model.name == "tiny-x2"
    assert all(r is not None and r.epochs_run == 1 for r in result.results)
    first, second = (m.get_weights() for m in result.members)
    assert not np.allclose(first[0], second[0])  # different initial weights
    x = np.asarray(data.images["validation"])
    mean = np.mean([m.predict_on_batch(x) for m in result.members], axis=0)
    np.testing.assert_allclose(result.model.predict_on_batch(x), mean, atol=1e-6)
    records = result.model.get_layer("mean_of_members").members
    assert [r["training"]["seed"] for r in records] == [5, 6]
    # each member's record is its run's, plus its seed and split
    for record, member_result in zip(records, result.results, strict=True):
        assert member_result is not None
        assert {k: v for k, v in record["training"].items() if k not in ("seed", "data")} == (
            member_result.record()
        )
    assert all(r["training"]["epochs_run"] == 1 for r in records)
    member_times = [r["training"]["training_time"] for r in records]
    assert all(t > 0 for t in member_times)
    assert result.training_time == pytest.approx(sum(member_times), abs=0.11)
    # Every finished member is a bundle in its checkpoint folder, recording its own
    # seed and the split it was tuned on (what shift-report re-draws for it alone) ...
    data_record = {"source": data.source, "validation_fraction": 0.25, "seed": 0}
    for k in range(2):
        _, metadata = load_bundle(tmp_path / "ckpt" / f"member-{k}" / "bundle")
        assert metadata.training["seed"] == 5 + k
        assert metadata.training["data"] == data_record
        assert recorded_split(metadata) == (0.25, 0)  # the data's seed, not the member's
    # ... and a rerun loads it instead of training again.
    built.clear()
    again = fit_ensemble(
        recording_build,
        data,
        members=2,
        seed=5,
        tta=True,
        epochs=1,
        callbacks=None,
        checkpoint_dir=tmp_path / "ckpt",
        verbose=0,
    )
    assert built == []
    assert again.results == (None, None)
    assert again.training_time == result.training_time  # as the members' bundles record it
    np.testing.assert_allclose(
        again.model.predict_on_batch(x), result.model.predict_on_batch(x), atol=1e-6
    )
    assert [r["training"]["seed"] for r in again.model.get_layer("mean_of_members").members] == [
        5,
        6,
    ]


def test_bad_options_are_refused() -> None:
    data = make_splits()
    with pytest.raises(EnsembleError, match="at least two members; got members=1"):
        fit_ensemble(build, data, members=1)
    with pytest.raises(EnsembleError, match="at least two members; got members=True"):
        fit_ensemble(build, data, members=True)
