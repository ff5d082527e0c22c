"""tasks: one normalisation, seeded disjoint splits, clear errors."""
import numpy as np
import pytest

import tasks


@pytest.mark.parametrize("name", ["digits", "mnist", "teacher"])
def test_normalised_training_rows_are_centred_with_unit_mean_square_norm(name):
    split = tasks.load(name, n_train=300, n_test=100, seed=1, dtype=np.float64)
    np.testing.assert_allclose(split.x_train.mean(0), 0.0, atol=1e-12)
    assert np.mean(np.sum(split.x_train ** 2, axis=1)) == pytest.approx(1.0, rel=1e-12)
    assert split.labels_train.shape == (300,) and split.labels_test.shape == (100,)
    assert set(np.unique(split.labels_train)) <= set(range(10))


def test_splits_are_seeded_and_disjoint():
    a = tasks.load("digits", 200, 100, seed=3)
    b = tasks.load("digits", 200, 100, seed=3)
    c = tasks.load("digits", 200, 100, seed=4)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a.x_train, c.x_train)
    # no test image is a training image (digits has a few exact duplicates: allow them)
    rows = {r.tobytes() for r in a.x_train}
    assert sum(r.tobytes() in rows for r in a.x_test) <= 3


def test_normalize_matches_its_formula_on_other_rows():
    rng = np.random.default_rng(0)
    ref, x = rng.normal(3.0, 2.0, (50, 4)), rng.normal(size=(7, 4))
    m = ref.mean(0)
    expected = (x - m) / ((ref - m).std() * 2.0)
    np.testing.assert_allclose(tasks.normalize(x, ref), expected)


def test_one_hot_centred_rows_sum_to_zero_and_bad_labels_raise():
    y = tasks.one_hot(np.array([0, 3, 9]), centered=True)
    np.testing.assert_allclose(y.sum(1), 0.0, atol=1e-6)
    assert y[1, 3] == pytest.approx(0.9)
    with pytest.raises(ValueError, match="labels"):
        tasks.one_hot(np.array([0, 10]))
    with pytest.raises(ValueError, match="labels"):
        tasks.one_hot(np.array([-1, 2]))


@pytest.mark.parametrize("kwargs, words", [
    (dict(name="digits", n_train=1800, n_test=0), ["1800", "1797"]),
    (dict(name="cifar", n_train=10), ["name", "cifar"]),
    (dict(name="digits", n_train=0), ["n_train"]),
    (dict(name="digits", n_train=2.5), ["n_train"]),
    (dict(name="digits", n_train=10, n_test=-1), ["n_test"]),
])
def test_bad_arguments_name_themselves(kwargs, words):
    with pytest.raises(ValueError) as err:
        tasks.load(**kwargs)
    for w in words:
        assert w in str(err.value)
