"""Reproducible studies: one module per study, one command line (``ntk-lab``).

Layout
------
- :mod:`experiments.registry` names the studies and loads them lazily.
- :mod:`experiments.config` applies ``--set key=value`` overrides to a study's config dataclass.
- :mod:`experiments.records` writes ``config.json`` / ``results.json`` / figures atomically
  (temp file + ``os.replace``) in the DESIGN schema.
- :mod:`experiments.checkpoint` saves and restores training state (params, optimizer state,
  step, RNG, metrics so far) atomically.
- :mod:`experiments.loop` is the resumable training loop every study trains with.
- :mod:`experiments.runner` runs a study into ``OUT/STUDY/<run-id>/`` and resumes it.

A study module defines ``NAME``, ``DESCRIPTION``, a ``Config`` dataclass with ``quick()`` and
``full()`` presets, ``run(cfg, ctx) -> metrics`` and ``claims(metrics, cfg) -> list[Claim]``.
"""
from experiments.registry import study_names, load_study
from experiments.runner import run_study, RunContext
from experiments.records import Claim

__all__ = ["study_names", "load_study", "run_study", "RunContext", "Claim"]
