"""Write docs/api.md from the package's docstrings: every public name, its signature and docstring.

    .venv/bin/python docs/build_api.py          # rewrite docs/api.md
    .venv/bin/python docs/build_api.py --check  # exit 1 if docs/api.md is out of date (tests run this)
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from pathlib import Path

MODULES = (
    "fld_train", "fld_train.callback", "fld_train.dataset", "fld_train.report", "fld_train.review",
    "fld_train.folds", "fld_train.check", "fld_train.store", "fld_train.knn", "fld_train.scoring",
    "fld_train.confident", "fld_train.sparse", "fld_train.noise", "fld_train.metrics", "fld_train.capture",
    "fld_train.distributed", "fld_train.tensorboard", "fld_train.vision", "fld_train.fit", "fld_train.demo",
)
OUT = Path(__file__).with_name("api.md")


def _public(module) -> list[tuple[str, object]]:
    if module.__name__ == "fld_train":  # the top level re-exports; list what it offers, documented below
        return []
    names = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
    items = []
    for name in names:
        obj = getattr(module, name)
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and obj.__module__ == module.__name__:
            items.append((name, obj))
    return items


def _signature(obj) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"


def _doc(obj) -> str:
    return inspect.cleandoc(obj.__doc__ or "(no docstring)")


def _members(cls) -> list[str]:
    lines = []
    for name, member in vars(cls).items():
        if name.startswith("_") or any(name in vars(base) for base in cls.__mro__[1:]):
            continue  # private, or an override of the base class's API (Lightning hooks, forward)
        if isinstance(member, property):
            lines.append(f"- `{name}` (property): {_doc(member).splitlines()[0]}")
        elif isinstance(member, (classmethod, staticmethod)):
            func = member.__func__
            lines.append(f"- `{name}{_signature(func)}`: {_doc(func).splitlines()[0]}")
        elif inspect.isfunction(member):
            lines.append(f"- `{name}{_signature(member)}`: {_doc(member).splitlines()[0]}")
    return lines


def render() -> str:
    top = importlib.import_module("fld_train")
    parts = ["# API reference", "",
             "Generated from the docstrings by `docs/build_api.py` (a test keeps it current).", "",
             "The top-level package offers: " + ", ".join(f"`{n}`" for n in top.__all__) + ".", ""]
    for mod_name in MODULES[1:]:
        module = importlib.import_module(mod_name)
        items = _public(module)
        if not items:
            continue
        parts += [f"## `{mod_name}`", "", inspect.cleandoc(module.__doc__ or "").split("\n\n")[0], ""]
        for name, obj in items:
            kind = "class" if inspect.isclass(obj) else "function"
            parts += [f"### `{name}` ({kind})", "", "```", f"{name}{_signature(obj)}", "```", "", _doc(obj), ""]
            if inspect.isclass(obj):
                members = _members(obj)
                if members:
                    parts += ["Members:", "", *members, ""]
    return "\n".join(parts).rstrip() + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print("docs/api.md is out of date: run .venv/bin/python docs/build_api.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
