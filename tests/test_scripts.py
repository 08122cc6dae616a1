"""The committed scripts' own logic: flags reach the library calls they stand for."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import cxr_pneumonia
import cxr_pneumonia.training
from cxr_pneumonia.data.augment import Augmentation
from cxr_pneumonia.training import CrossValidationResult

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def cross_validate_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Stand-ins for load_dataset and cross_validate that record how they were called."""
    calls: list[dict[str, Any]] = []

    def fake_load_dataset(**options: Any) -> str:
        return "the data"

    def fake_cross_validate(name: str, data: str, **options: Any) -> CrossValidationResult:
        calls.append({"name": name, "data": data, **options})
        metrics = {"val_auc": 0.99}
        return CrossValidationResult(
            name=name,
            folds=options["folds"],
            seed=options["seed"],
            fold_metrics=(metrics, metrics),
            mean=metrics,
            std={"val_auc": 0.0},
            fold_sizes=((10, 5), (10, 5)),
            training=(),
            wall_time=1.0,
        )

    monkeypatch.setattr(cxr_pneumonia, "load_dataset", fake_load_dataset)
    monkeypatch.setattr(cxr_pneumonia.training, "cross_validate", fake_cross_validate)
    return calls


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ([], Augmentation()),
        (["--fill-mode", "nearest"], Augmentation(fill_mode="nearest")),
        (
            ["--fill-mode", "constant", "--fill-value", "128"],
            Augmentation(fill_mode="constant", fill_value=128.0),
        ),
    ],
)
def test_cross_validate_recipe_passes_the_fill_to_every_fold(
    cross_validate_calls: list[dict[str, Any]],
    tmp_path: Path,
    flags: list[str],
    expected: Augmentation,
) -> None:
    script = load_script("cross_validate_recipe")
    out = tmp_path / "report.json"
    argv = ["--data-dir", str(tmp_path), "--folds", "2", "--out", str(out), *flags]
    assert script.main(argv) == 0
    (call,) = cross_validate_calls
    assert call["augment"] == expected
    assert call["folds"] == 2
    report = json.loads(out.read_text())
    assert report["augmentation"]["fill_mode"] == expected.fill_mode
    assert report["augmentation"]["fill_value"] == expected.fill_value
    assert report["fold_metrics"] == [{"val_auc": 0.99}] * 2
    assert not list(tmp_path.glob("*.partial"))


def test_cross_validate_recipe_refuses_an_unknown_fill(tmp_path: Path) -> None:
    script = load_script("cross_validate_recipe")
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--data-dir", str(tmp_path), "--fill-mode", "reflect"])
    assert exit_info.value.code == 2


def test_cross_validate_recipe_passes_mixup_to_every_fold_and_records_it(
    cross_validate_calls: list[dict[str, Any]], tmp_path: Path
) -> None:
    script = load_script("cross_validate_recipe")
    out = tmp_path / "report.json"
    argv = ["--data-dir", str(tmp_path), "--folds", "2", "--out", str(out), "--mixup", "0.2"]
    assert script.main(argv) == 0
    (call,) = cross_validate_calls
    assert call["mixup"] == 0.2
    assert json.loads(out.read_text())["mixup"] == 0.2
