"""Checkpoints: exact round trip; unreadable files are moved aside with a warning naming them;
stale temp files are removed; non-finite states warn."""
import numpy as np
import pytest

from experiments.checkpoint import Checkpoint, CheckpointWarning


def _ckpt(tmp_path):
    return Checkpoint(tmp_path / "checkpoints", "alpha=2", key="abc")


def test_round_trip_is_exact(tmp_path):
    ck = _ckpt(tmp_path)
    state = {"w": np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)}
    ck.save(step=7, state=state, history={"loss": [1.0, 0.5]})
    back = ck.load()
    assert back["step"] == 7 and back["history"] == {"loss": [1.0, 0.5]}
    np.testing.assert_array_equal(np.asarray(back["state"]["w"]), state["w"])


@pytest.mark.parametrize("damage", [lambda b: b[: len(b) // 2], lambda b: b"garbage" * 10,
                                    lambda b: b""])
def test_unreadable_checkpoint_is_moved_aside_with_a_warning(tmp_path, damage):
    ck = _ckpt(tmp_path)
    ck.save(step=3, state={"w": np.ones(4)}, history={})
    ck.path.write_bytes(damage(ck.path.read_bytes()))
    with pytest.warns(CheckpointWarning, match=str(ck.path.name)):
        assert ck.load() is None
    assert not ck.path.exists() and ck.path.with_name(ck.path.name + ".corrupt").exists()
    assert ck.load() is None          # the task starts over; no second warning needed


def test_stale_temp_files_are_removed_on_load(tmp_path):
    ck = _ckpt(tmp_path)
    ck.save(step=1, state={"w": np.ones(2)}, history={})
    stale = ck.folder / f".{ck.path.name}.x1y2.tmp"
    stale.write_bytes(b"half a pickle")
    assert ck.load()["step"] == 1 and not stale.exists()


def test_non_finite_state_warns_and_is_used(tmp_path):
    ck = _ckpt(tmp_path)
    ck.save(step=5, state={"w": np.array([1.0, np.nan])}, history={})
    with pytest.warns(CheckpointWarning, match="non-finite"):
        assert ck.load()["step"] == 5
