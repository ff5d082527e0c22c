"""Checkpoints: training state saved atomically, restored exactly.

A checkpoint is one pickle per training task (``<run_dir>/checkpoints/<task>.pkl``)::

    {"format": 1, "key": <config hash + task>, "step": int, "state": <pytree of numpy arrays>,
     "rng": numpy uint32 key data or None, "history": {name: [floats]}, "done": bool,
     "extra": {...}}

``state`` holds parameters and optimizer state (any pytree of arrays: dicts, tuples and optax
NamedTuples pickle as they are). Arrays are converted to NumPy on save and back to JAX arrays
on load bit for bit, so a resumed run replays exactly the same float operations as an
uninterrupted one. Files are written with temp file + ``os.replace`` (a SIGKILL during a save
leaves the previous checkpoint intact).
"""
from __future__ import annotations

import os
import pickle
import re
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

    def load(self) -> dict | None:
        """The saved payload with ``state`` (and ``rng``) as JAX arrays; None if absent/stale."""
        if not self.path.exists():
            return None
        with open(self.path, "rb") as fh:
            payload = pickle.load(fh)
        if payload.get("format") != FORMAT or payload.get("key") != self.key:
            return None
        payload["state"] = to_jax(payload["state"])
        if payload["rng"] is not None:
            raw = jnp.asarray(payload["rng"])
            payload["rng"] = jax.random.wrap_key_data(raw) if payload["rng_typed"] else raw
        return payload


def _is_typed_key(x: Any) -> bool:
    try:
        return jnp.issubdtype(x.dtype, jax.dtypes.prng_key)
    except Exception:
        return False
