"""Reproducible studies: one module per study (the command line is ``ntk-lab``, in
:mod:`ntk_lab`, above this package and :mod:`papers`).

Layout
------
- :mod:`experiments.registry` finds the studies by reading their modules (no import).
- :mod:`experiments.claims` states claims as data: a measured value and its bound.
- :mod:`experiments.config` applies ``--set key=value`` overrides to a study's config dataclass.
- :mod:`experiments.records` writes ``config.json`` / ``results.json`` / figures atomically
  (temp file + ``os.replace``).
- :mod:`experiments.checkpoint` saves and restores training state (params, optimizer state,
  step, RNG, metrics so far) atomically.
- :mod:`experiments.loop` is the resumable training loop every study trains with.
- :mod:`experiments.runner` runs a study into ``OUT/STUDY/<run-id>/``, resumes it, checks its
  claims and draws its figures from the results.

A study module defines ``SUMMARY`` (and ``PAPER`` / ``CITATION`` when it checks a paper on its
own), a ``Config`` dataclass of run settings with ``quick()`` and ``full()`` presets,
``run(cfg, ctx) -> metrics``, ``figures(results) -> {name: Figure}`` and ``CLAIMS`` (see
:mod:`experiments.registry`). Data sets come from :mod:`tasks`.
"""
from experiments.registry import load_study, study_names

__all__ = ["study_names", "load_study", "run_study", "RunContext"]


def __getattr__(name):  # the runner imports JAX: only when asked for (``ntk-lab list`` is not)
    if name in ("run_study", "RunContext"):
        from experiments import runner
        return getattr(runner, name)
    raise AttributeError(f"module 'experiments' has no attribute {name!r}")
