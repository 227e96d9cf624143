"""Every ``python`` code block in the README and docs/ runs.

Blocks of one file run in order in one namespace, as a reader would type them (a block inside a
list item without the item's indentation). The docs assume the
reader brings a few things of their own; the test provides small stand-ins for exactly these names:
``base`` and ``base_train_set`` (a map-style dataset of ``(x, y)``: 300 digits, 20% wrong labels),
``model`` and ``make_model`` (an MLP that reads ``(x, y, idx)`` batches), ``i`` (an index).
Trainings are shortened to 3 epochs.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import TensorDataset

from fld_train.demo import MLPClassifier, load_digits_split
from fld_train.noise import inject_noise

ROOT = Path(__file__).resolve().parents[1]
FILES = ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))]
pytestmark = pytest.mark.filterwarnings("ignore")


def _blocks(path: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / path).read_text(), flags=re.DOTALL)


@pytest.mark.parametrize("path", [f for f in FILES if _blocks(f)])
def test_code_blocks_run(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    original_init = pl.Trainer.__init__

    def short_trainer(self, *args, **kwargs):  # the docs' epochs, cut for the test; CPU, quiet
        kwargs.update(max_epochs=min(kwargs.get("max_epochs") or 3, 3), accelerator="cpu",
                      enable_progress_bar=False, enable_model_summary=False)
        original_init(self, *args, **kwargs)

    monkeypatch.setattr(pl.Trainer, "__init__", short_trainer)
    x, y, _, _ = load_digits_split(seed=0)
    noisy, _ = inject_noise(y[:300], 10, rate=0.2, seed=0)
    base = TensorDataset(torch.from_numpy(x[:300]), torch.from_numpy(noisy))
    namespace = {"base": base, "base_train_set": base, "model": MLPClassifier(64, 10),
                 "make_model": lambda: MLPClassifier(64, 10), "i": 0, "__name__": "__docs__"}
    for number, block in enumerate(_blocks(path), start=1):
        try:
            # a block inside a list item is indented with it
            exec(compile(textwrap.dedent(block), f"{path} block {number}", "exec"), namespace)  # noqa: S102 - the docs' own code
        except Exception as err:
            raise AssertionError(f"{path}, python block {number} fails: {err!r}\n{block}") from err


def test_api_reference_is_current():
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_api", ROOT / "docs" / "build_api.py")
    build_api = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_api)
    assert (ROOT / "docs" / "api.md").read_text() == build_api.render(), (
        "docs/api.md is out of date: run .venv/bin/python docs/build_api.py")


def test_every_public_module_is_in_the_api_reference():
    import pkgutil

    import fld_train

    text = (ROOT / "docs" / "api.md").read_text()
    public = [m.name for m in pkgutil.iter_modules(fld_train.__path__) if not m.name.startswith("_")]
    missing = [m for m in public if m not in ("cli",) and f"`fld_train.{m}`" not in text]
    assert not missing, missing


def test_documented_fld_train_commands_parse():
    import shlex

    from fld_train.cli import build_parser

    commands = []
    for path in FILES:
        for block in re.findall(r"```bash\n(.*?)```", (ROOT / path).read_text(), flags=re.DOTALL):
            for line in block.replace("\\\n", " ").splitlines():
                words = shlex.split(line)
                if words and words[0].endswith("fld-train"):
                    commands.append((path, words[1:]))
    assert commands  # the docs do show the command line
    for path, argv in commands:
        build_parser().parse_args(argv)  # exits (fails the test) on an unknown command or option
