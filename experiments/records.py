"""Run records: ``config.json``, ``results.json`` and figures, written atomically.

``results.json`` holds::

    {"study", "run_id", "config": {...}, "metrics": {...plain numbers and lists...},
     "claims": [{"id", "text", "expected", "measured", "holds"}, ...],
     "environment": {versions, device, seed, x64, git}, "elapsed_s"}

Every file is written to a temporary sibling and moved into place with ``os.replace``, so a
reader (or a run killed with SIGKILL) never sees a half-written file. Non-finite floats are
stored as the strings ``"inf"``, ``"-inf"`` and ``"nan"`` (JSON has no such numbers).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def jsonable(obj: Any) -> Any:
    """Plain-JSON version of ``obj``: numpy / JAX arrays to lists, non-finite floats to strings."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        x = float(obj)
        if math.isnan(x):
            return "nan"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return x
    if hasattr(obj, "__array__"):
        arr = np.asarray(obj)
        return jsonable(arr.tolist() if arr.ndim else arr.item())
    if obj is None or isinstance(obj, str):
        return obj
    return str(obj)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder + ``os.replace``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    text = json.dumps(jsonable(obj), indent=2, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode())


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> str:
    """Save a matplotlib figure as PNG atomically; returns the path.

    Works on a bare ``matplotlib.figure.Figure`` (no pyplot, no backend chosen); a figure
    that pyplot manages is closed after saving.
    """
    import io
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    pyplot = sys.modules.get("matplotlib.pyplot")
    number = getattr(fig, "number", None)
    if pyplot is not None and number is not None and pyplot.fignum_exists(number):
        pyplot.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return str(path)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except Exception:
        return None


def environment(seed: int | None) -> dict:
    """Versions, device and seed of this run."""
    import jax
    versions = {"python": platform.python_version(), "numpy": np.__version__,
                "jax": jax.__version__}
    for mod in ("jaxlib", "optax", "scipy", "matplotlib"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:
            pass
    dev = jax.devices()[0]
    return {
        "versions": versions,
        "device": {"platform": dev.platform, "kind": getattr(dev, "device_kind", str(dev)),
                   "count": jax.device_count()},
        "x64": bool(jax.config.jax_enable_x64),
        "seed": seed,
        "platform": platform.platform(),
        "argv": sys.argv[1:],
        "git_commit": _git_commit(),
    }
