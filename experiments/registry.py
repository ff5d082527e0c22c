"""The study registry, derived from the study modules themselves.

A study is a module ``experiments/<name>.py`` that defines, at module level::

    SUMMARY = "..."         # one line for ``ntk-lab list``
    PAPER = "..."           # optional: the paper this study checks on its own ...
    CITATION = "..."        # ... and its citation
    class Config: ...       # run settings only (quick() / full() presets)
    def run(cfg, ctx) -> dict           # metrics (plain numbers and lists)
    def figures(results) -> {name: Figure}   # drawn from a results.json dict
    CLAIMS = (claim(...), ...)          # experiments.claims

The registry reads ``SUMMARY`` / ``PAPER`` / ``CITATION`` from each module's source with
:mod:`ast`, so listing studies imports nothing heavy; :func:`load_study` imports one.
"""
from __future__ import annotations

import ast
import functools
import importlib
from pathlib import Path
from types import ModuleType

_HERE = Path(__file__).resolve().parent
REQUIRED = ("SUMMARY", "Config", "run", "figures", "CLAIMS")


def module_constants(path: Path) -> dict:
    """The module-level ``NAME = <literal>`` assignments of a Python file, read with
    :mod:`ast` (nothing is imported)."""
    found = {}
    for node in ast.parse(path.read_text(), filename=str(path)).body:
        targets = (node.targets if isinstance(node, ast.Assign)
                   else [node.target] if isinstance(node, ast.AnnAssign) and node.value else [])
        for t in targets:
            if isinstance(t, ast.Name):
                try:
                    found[t.id] = ast.literal_eval(node.value)
                except ValueError:
                    pass
    return found


@functools.lru_cache(maxsize=1)
def _scan() -> dict[str, dict]:
    studies = {}
    for path in sorted(_HERE.glob("*.py")):
        if path.name.startswith("_"):
            continue
        consts = module_constants(path)
        if "SUMMARY" not in consts:
            continue
        studies[path.stem] = {"module": f"experiments.{path.stem}", "summary": consts["SUMMARY"],
                              "paper": consts.get("PAPER"), "citation": consts.get("CITATION")}
    return studies


def studies() -> dict[str, dict]:
    """``{name: {"module", "summary", "paper", "citation"}}`` for every study module."""
    return {name: dict(info) for name, info in _scan().items()}


def study_names() -> list[str]:
    return sorted(_scan())


def check_study_name(name: str) -> str:
    if not isinstance(name, str) or name not in _scan():
        raise ValueError(
            f"STUDY: unknown study {name!r}; known studies: {', '.join(study_names())}")
    return name


def load_study(name: str) -> ModuleType:
    """Import and return the study module called ``name`` (ValueError if unknown)."""
    module = importlib.import_module(_scan()[check_study_name(name)]["module"])
    missing = [attr for attr in REQUIRED if not hasattr(module, attr)]
    if missing:
        raise TypeError(f"study module {module.__name__} lacks {', '.join(missing)}")
    return module
