"""The examples run: digits end to end, CIFAR-10's code path on a tiny generated ImageFolder."""

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


def test_cifar10_example_on_a_tiny_image_folder(tmp_path):
    rng = np.random.default_rng(0)
    for c in range(10):
        folder = tmp_path / "data" / "train" / f"class{c}"
        folder.mkdir(parents=True)
        for i in range(6):
            img = np.clip(rng.normal(25 * c, 20, size=(32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(folder / f"{i}.png")
    result = _load("cifar10").main(["--data-dir", str(tmp_path / "data"), "--epochs", "2",
                                    "--workers", "0", "--batch-size", "16",
                                    "--out", str(tmp_path / "out")])
    assert set(result) == {"f1", "auroc"}
    assert (tmp_path / "out" / "label_report.csv").exists()
