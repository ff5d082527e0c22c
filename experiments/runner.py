"""Run a study into ``OUT/STUDY/<run-id>/`` and resume it if it was interrupted.

The run id defaults to ``<quick|full>-seed<N>-<config hash>``: running the same command again
finds the same folder and resumes from its checkpoints (a finished task is not recomputed).
``fresh=True`` (``--fresh``) deletes the checkpoints first.

Folder contents: ``config.json`` (written first), ``checkpoints/*.pkl`` (during training),
``*.png`` figures (drawn by the study's ``figures(results)`` from the results alone, so
:func:`redraw` can draw them again) and ``results.json`` (written last; its presence means the
run finished). Claims are checked from the metrics by :func:`check_claims`, with the
thresholds in the study's ``CLAIMS``: a changed threshold re-checks stored results without
running anything.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Iterable

from experiments import config as configlib
from experiments.checkpoint import Checkpoint
from experiments.loop import RunInterrupted
from experiments.claims import check
from experiments.records import atomic_write_json, environment, jsonable, save_figure
from experiments.registry import load_study


def read_results(run_dir: str | os.PathLike) -> dict:
    """The ``results.json`` of a finished run (ValueError naming the file if absent or bad)."""
    import json
    path = Path(run_dir) / "results.json"
    try:
        with open(path) as fh:
            results = json.load(fh)
    except FileNotFoundError:
        raise ValueError(f"RUN_DIR {run_dir}: no results.json (the run has not finished)") from None
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"RUN_DIR {run_dir}: cannot read results.json: {err}") from None
    for key in ("study", "config", "metrics"):
        if key not in results:
            raise ValueError(f"{path}: not a study results file (no {key!r})")
    return results


def check_claims(module, results: dict) -> list[dict]:
    """The study's claims evaluated on ``results["metrics"]`` (its current thresholds)."""
    return check(module.CLAIMS, results["metrics"])


def draw_figures(module, results: dict, run_dir: Path) -> list[str]:
    """Draw the study's figures from ``results`` into ``run_dir``; returns the file names."""
    names = []
    for name, fig in (module.figures(results) or {}).items():
        path = run_dir / (name if name.endswith(".png") else name + ".png")
        save_figure(fig, path)
        names.append(path.name)
    return names


def redraw(run_dir: str | os.PathLike) -> list[str]:
    """Redraw every figure of a finished run from its ``results.json`` (no computation)."""
    run_dir = Path(run_dir)
    results = read_results(run_dir)
    module = load_study(results["study"])
    names = draw_figures(module, results, run_dir)
    results["figures"] = sorted(set(results.get("figures", [])) | set(names))
    atomic_write_json(run_dir / "results.json", results)
    return [str(run_dir / n) for n in names]


def default_run_id(cfg, *, quick: bool) -> str:
    """``<quick|full>-seed<N>-<config hash>``: the same config finds the same folder."""
    return f"{'quick' if quick else 'full'}-seed{cfg.seed}-{configlib.config_hash(cfg)}"


def run_dir_for(name: str, cfg, *, quick: bool, out: str | os.PathLike = "results") -> Path:
    """Where ``run_study(name, cfg=cfg, quick=quick, out=out)`` writes (default run id)."""
    return Path(out) / name / default_run_id(cfg, quick=quick)


class OutputError(ValueError):
    """The output folder cannot be created or written."""


class StudyFailed(RuntimeError):
    """An exception escaped a study's ``run`` or ``figures``: a bug, reported with its
    traceback (bad arguments are refused before anything runs)."""


@dataclasses.dataclass
class RunContext:
    """What a study's ``run(cfg, ctx)`` may use: its folder, checkpoints, progress."""
    run_dir: Path
    config_key: str = ""
    progress: bool = True
    interrupt_after_steps: int | None = None  # test hook: raise RunInterrupted after this many
    steps_done: int = 0
    resumed: list = dataclasses.field(default_factory=list)

    def checkpoint(self, task: str) -> Checkpoint:
        return Checkpoint(self.run_dir / "checkpoints", task, key=self.config_key)

    def tick(self, n_steps: int) -> None:
        self.steps_done += n_steps
        if self.interrupt_after_steps is not None and self.steps_done >= self.interrupt_after_steps:
            raise RunInterrupted(f"interrupted after {self.steps_done} steps (test hook)")


def make_config(name: str, *, quick: bool = True, seed: int | None = None,
                overrides: Iterable[str] = (), cfg: Any = None):
    """The study module and its config: preset, then ``seed``, then ``--set`` overrides."""
    module = load_study(name)
    if cfg is None:
        cfg = module.Config.quick() if quick else module.Config.full()
    if seed is not None:
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError(f"--seed: expected an integer, got {seed!r}")
        cfg = dataclasses.replace(cfg, seed=seed)
    cfg = configlib.apply_overrides(cfg, overrides)
    return module, cfg


_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=+-]{0,127}")


def _prepare_dir(out: str | os.PathLike, study: str, run_id: str) -> Path:
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id) or ".." in run_id:
        raise OutputError(f"--run-id {run_id!r}: expected a folder name of letters, digits and "
                          "._=+- (no path separators, no '..')")
    out = Path(out)
    run_dir = out / study / run_id
    created = []
    try:
        for parent in reversed([run_dir, *run_dir.parents]):
            if not parent.exists():
                parent.mkdir()
                created.append(parent)
        if not os.access(run_dir, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as err:
        for folder in reversed(created):  # leave nothing half-made behind
            try:
                folder.rmdir()
            except OSError:
                pass
        raise OutputError(f"--out {out}: cannot write run folder {run_dir}: "
                          f"{err.strerror or err}") from None
    return run_dir


def run_study(name: str, *, quick: bool = True, seed: int | None = None,
              overrides: Iterable[str] = (), cfg: Any = None, out: str | os.PathLike = "results",
              run_id: str | None = None, progress: bool = True, fresh: bool = False,
              interrupt_after_steps: int | None = None) -> dict:
    """Run study ``name`` and return its results dict (also written to ``results.json``).

    Validates everything (study name, overrides, output folder) before writing anything.
    """
    module, cfg = make_config(name, quick=quick, seed=seed, overrides=overrides, cfg=cfg)
    key = configlib.config_hash(cfg)
    if run_id is None:
        run_id = default_run_id(cfg, quick=quick)
    run_dir = _prepare_dir(out, name, run_id)
    if fresh and (run_dir / "checkpoints").exists():
        shutil.rmtree(run_dir / "checkpoints")
    config_dict = configlib.to_dict(cfg)
    atomic_write_json(run_dir / "config.json", {"study": name, "run_id": run_id,
                                                "config": config_dict})
    ctx = RunContext(run_dir=run_dir, config_key=key, progress=progress,
                     interrupt_after_steps=interrupt_after_steps)
    start = time.perf_counter()
    try:
        metrics = module.run(cfg, ctx)
    except RunInterrupted:
        raise
    except Exception as err:
        raise StudyFailed(f"study {name!r} failed in run(): {type(err).__name__}: {err}") from err
    results = jsonable({
        "study": name, "run_id": run_id, "quick": quick, "config": config_dict,
        "metrics": metrics, "claims": [], "figures": [], "resumed_tasks": ctx.resumed,
        "environment": environment(cfg.seed),
        "elapsed_s": time.perf_counter() - start,
    })
    try:
        results["claims"] = check_claims(module, results)
        results["figures"] = draw_figures(module, results, run_dir)
    except Exception as err:
        raise StudyFailed(f"study {name!r} failed checking claims or drawing figures: "
                          f"{type(err).__name__}: {err}") from err
    atomic_write_json(run_dir / "results.json", results)
    return results
