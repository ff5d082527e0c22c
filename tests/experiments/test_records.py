"""Atomic writes and the plain-JSON results schema."""
import dataclasses
import json
import math
import os

import numpy as np
import pytest

from experiments.records import atomic_write_json, jsonable


def test_jsonable_handles_numpy_and_nonfinite():
    @dataclasses.dataclass
    class Row:
        measured: object
        holds: object
    obj = {"a": np.float32(1.5), "b": np.arange(3), "c": [math.inf, -math.inf, math.nan],
           "d": Row(np.float64(2.0), np.bool_(True))}
    out = jsonable(obj)
    assert out == {"a": 1.5, "b": [0, 1, 2], "c": ["inf", "-inf", "nan"],
                   "d": {"measured": 2.0, "holds": True}}
    json.dumps(out, allow_nan=False)


def test_atomic_write_leaves_no_temp_and_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "r.json"
    atomic_write_json(path, {"v": 1})
    assert json.loads(path.read_text()) == {"v": 1}

    class Unserialisable:
        def __str__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_write_json(path, {"v": Unserialisable()})
    assert json.loads(path.read_text()) == {"v": 1}   # the previous version is intact
    assert os.listdir(tmp_path) == ["r.json"]          # no temp file left behind
