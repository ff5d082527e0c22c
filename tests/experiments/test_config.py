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
