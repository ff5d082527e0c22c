"""Shared helpers for the experiments tests: a tiny grokking config that runs in ~2 s."""
import pytest

TINY_GROKKING = ["dim=8", "n_train=40", "n_test=100", "width=32", "alphas=0.5,32",
                 "n_steps=400", "log_every=50", "checkpoint_every=1"]


@pytest.fixture
def tiny_grokking():
    return list(TINY_GROKKING)
