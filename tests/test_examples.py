"""Every example runs in a smoke mode (a few epochs, tiny data), so none can rot."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore")


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_digits_quickstart(tmp_path, capsys):
    _load("digits_quickstart").main(["--epochs", "4", "--out", str(tmp_path)])
    assert "AUROC" in capsys.readouterr().out
    assert (tmp_path / "label_report.csv").exists()


@pytest.mark.parametrize("model", ["resnet18", "small-cnn", "small-cnn-aug"])
def test_cifar10_example_on_a_tiny_image_folder(tmp_path, model):
    rng = np.random.default_rng(0)
    for c in range(10):
        folder = tmp_path / "data" / "train" / f"class{c}"
        folder.mkdir(parents=True)
        for i in range(6):
            img = np.clip(rng.normal(25 * c, 20, size=(32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(folder / f"{i}.png")
    result = _load("cifar10").main(["--data-dir", str(tmp_path / "data"), "--epochs", "1",
                                    "--workers", "0", "--batch-size", "16", "--model", model,
                                    "--out", str(tmp_path / "out")])
    assert set(result) == {"f1", "auroc"}
    assert (tmp_path / "out" / "label_report.csv").exists()


def test_kfold_example(tmp_path, capsys):
    result = _load("kfold").main(["--folds", "2", "--epochs", "3", "--out", str(tmp_path)])
    assert 0.0 <= result["auroc"] <= 1.0 and "2-fold" in capsys.readouterr().out
    assert (tmp_path / "label_report.csv").exists()


def test_custom_head_example_names_its_classifier(tmp_path, capsys):
    result = _load("custom_head").main(["--epochs", "6", "--out", str(tmp_path)])
    assert result["auroc"] > 0.8  # the named head, not the auxiliary one, gives the logits
    assert "classifier.out" in capsys.readouterr().out


def test_mnist1d_example(tmp_path):
    pytest.importorskip("mnist1d")
    result = _load("mnist1d").main(["--epochs", "2", "--limit", "600", "--out", str(tmp_path)])
    assert 0.0 <= result["auroc"] <= 1.0


def test_ddp_example_on_two_processes(tmp_path):
    result = _load("ddp").main(["--epochs", "2", "--out", str(tmp_path)])
    assert 0.0 <= result["auroc"] <= 1.0
    assert (tmp_path / "audit_log.csv").exists()
