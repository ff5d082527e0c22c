"""Checkpoints: training state saved atomically, restored exactly.

A checkpoint is one pickle per training task (``<run_dir>/checkpoints/<task>.pkl``)::

    {"format": 1, "key": <config hash + task>, "step": int, "state": <pytree of numpy arrays>,
     "rng": numpy uint32 key data or None, "history": {name: [floats]}, "done": bool,
     "extra": {...}}

``state`` holds parameters and optimizer state (any pytree of arrays: dicts, tuples and optax
NamedTuples pickle as they are). Arrays are converted to NumPy on save and back to JAX arrays
on load bit for bit, so a resumed run replays exactly the same float operations as an
uninterrupted one. Files are written with temp file + ``os.replace`` (a SIGKILL during a save
leaves the previous checkpoint intact, and the temp file it left is removed on the next load).
A checkpoint that cannot be read (truncated, corrupt) is moved aside to ``<task>.pkl.corrupt``
with a warning naming it, and its task starts over; one holding non-finite numbers is used
(a diverged run is a result) with a warning.
"""
from __future__ import annotations

import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments.records import atomic_write_bytes

FORMAT = 1


def _safe(task: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=+-]", "_", task)


def to_numpy(tree: Any) -> Any:
    return jax.tree.map(lambda a: np.array(a), tree)


def to_jax(tree: Any) -> Any:
    return jax.tree.map(lambda a: jnp.asarray(a), tree)


class Checkpoint:
    """Save / load one task's training state in ``folder``."""

    def __init__(self, folder: str | os.PathLike, task: str, key: str = ""):
        self.folder = Path(folder)
        self.task = task
        self.key = f"{key}/{task}"
        self.path = self.folder / f"{_safe(task)}.pkl"

    def exists(self) -> bool:
        return self.path.exists()

    def save(self, *, step: int, state: Any, history: dict, done: bool = False,
             rng: Any = None, extra: dict | None = None) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": FORMAT, "key": self.key, "step": int(step), "state": to_numpy(state),
            "rng": None if rng is None else np.asarray(jax.random.key_data(rng)
                                                       if _is_typed_key(rng) else rng),
            "rng_typed": rng is not None and _is_typed_key(rng),
            "history": {k: list(v) for k, v in history.items()},
            "done": bool(done), "extra": extra or {},
        }
        atomic_write_bytes(self.path, pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))

    def _remove_stale_temp_files(self) -> None:
        for tmp in self.folder.glob(f".{self.path.name}.*.tmp"):
            try:
                tmp.unlink()
            except OSError:
                pass

    def load(self) -> dict | None:
        """The saved payload with ``state`` (and ``rng``) as JAX arrays; None if absent, stale
        (another config or format) or unreadable (moved aside with a warning)."""
        if self.folder.is_dir():
            self._remove_stale_temp_files()
        if not self.path.exists():
            return None
        try:
            with open(self.path, "rb") as fh:
                payload = pickle.load(fh)
            if not isinstance(payload, dict):
                raise ValueError(f"not a checkpoint ({type(payload).__name__})")
        except Exception as err:  # truncated / corrupt / foreign file: start the task over
            aside = self.path.with_name(self.path.name + ".corrupt")
            os.replace(self.path, aside)
            warnings.warn(f"checkpoint {self.path} is unreadable ({type(err).__name__}: {err}); "
                          f"moved to {aside.name}, task {self.task!r} starts over",
                          CheckpointWarning, stacklevel=2)
            return None
        if payload.get("format") != FORMAT or payload.get("key") != self.key:
            return None
        leaves = [np.asarray(a) for a in jax.tree.leaves(payload["state"])]
        if any(a.dtype.kind in "fc" and not np.all(np.isfinite(a)) for a in leaves):
            warnings.warn(f"checkpoint {self.path} holds non-finite values (a diverged run?); "
                          "resuming from it", CheckpointWarning, stacklevel=2)
        payload["state"] = to_jax(payload["state"])
        if payload["rng"] is not None:
            raw = jnp.asarray(payload["rng"])
            payload["rng"] = jax.random.wrap_key_data(raw) if payload["rng_typed"] else raw
        return payload


class CheckpointWarning(UserWarning):
    """A checkpoint was unreadable (and moved aside) or holds non-finite values."""


def _is_typed_key(x: Any) -> bool:
    try:
        return jnp.issubdtype(x.dtype, jax.dtypes.prng_key)
    except Exception:
        return False
