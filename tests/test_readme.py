"""The README's set-up commands and CI must not drift apart."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = text.split("```")
    return [line.strip() for block in blocks[1::2] for line in block.splitlines()
            if line.strip().startswith("python3 -m venv")]


def test_ci_runs_the_readme_test_command():
    ci_lines = [ln for ln in (ROOT / ".ci/run").read_text().splitlines() if ln.startswith("python3")]
    assert ci_lines and ci_lines[0] in _readme_commands()


def test_readme_starts_with_the_two_setup_commands():
    commands = _readme_commands()
    assert len(commands) >= 2
    assert commands[0].endswith("fld-train demo")
    assert commands[1].endswith("python -m pytest")
    head = (ROOT / "README.md").read_text()[:1500]
    assert commands[0] in head and commands[1] in head
