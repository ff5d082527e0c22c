"""--set overrides: parsed by the field's type; bad keys and values name the argument."""
import dataclasses
from typing import Optional

import pytest

from experiments.config import apply_overrides, config_hash, parse_value


@dataclasses.dataclass(frozen=True)
class Cfg:
    n: int = 3
    lr: float = 0.1
    flag: bool = False
    name: str = "a"
    alphas: tuple[float, ...] = (1.0,)
    maybe: Optional[int] = None
    seed: int = 0


def test_overrides_parse_by_type():
    cfg = apply_overrides(Cfg(), ["n=7", "lr=1e-3", "flag=true", "name=xy",
                                  "alphas=[0.5, 2,8]", "maybe=4", "n=1e3"])
    assert cfg == Cfg(n=1000, lr=1e-3, flag=True, name="xy", alphas=(0.5, 2.0, 8.0), maybe=4)
    assert apply_overrides(cfg, ["maybe=none"]).maybe is None
    assert isinstance(parse_value(tuple[int, ...], "1,2"), tuple)


@pytest.mark.parametrize("item, words", [
    ("nope=1", ["--set nope=1", "no field 'nope'", "lr"]),
    ("n=abc", ["--set n=abc", "'n'", "int"]),
    ("n=1.5", ["--set n=1.5", "'n'"]),
    ("flag=maybe", ["'flag'", "bool"]),
    ("alphas=1,x", ["'alphas'"]),
    ("novalue", ["expected key=value"]),
])
def test_bad_overrides_name_the_argument(item, words):
    with pytest.raises(ValueError) as err:
        apply_overrides(Cfg(), [item])
    for w in words:
        assert w in str(err.value)


def test_config_hash_is_stable_and_sensitive():
    assert config_hash(Cfg()) == config_hash(Cfg())
    assert config_hash(Cfg()) != config_hash(Cfg(n=4))


@pytest.mark.parametrize("item, words", [
    ("lr=nan", ["lr", "finite"]),
    ("lr=inf", ["lr", "finite"]),
    ("alphas=1,nan", ["alphas", "finite"]),
    ("n=-5", ["n=-5", ">= 0"]),
])
def test_values_no_study_can_mean_are_refused(item, words):
    with pytest.raises(ValueError) as err:
        apply_overrides(Cfg(), [item])
    for w in words:
        assert w in str(err.value)


def test_sizes_must_be_at_least_one():
    @dataclasses.dataclass(frozen=True)
    class Sized:
        width: int = 8
        widths: tuple[int, ...] = (8, 16)
        log_every: int = 10
        seed: int = 0
    assert apply_overrides(Sized(), ["width=1", "seed=0"]).width == 1
    for item in ("width=0", "widths=8,0", "log_every=0"):
        with pytest.raises(ValueError, match=">= 1"):
            apply_overrides(Sized(), [item])
