"""Config dataclasses: ``--set key=value`` overrides, JSON round trip and a stable hash.

Every study config is a (frozen) dataclass with ``quick()`` and ``full()`` classmethods.
Overrides are parsed by the field's annotated type: ``int``, ``float``, ``bool``, ``str``,
``tuple[float, ...]`` / ``tuple[int, ...]`` (written ``1,2,4`` or ``[1, 2, 4]``) and
``Optional[...]`` (``none`` for None). Unknown keys and unparsable values raise
``ValueError`` naming the ``--set`` argument, the field and the expected type.

Every config is also checked for values no study can mean (:func:`check_values`): floats
must be finite, integers non-negative, and sizes (``width``, ``depth``, ``dim``, ``steps``,
``n_steps``, ``*_every``, ``widths``, ``depths``) at least 1. A study's own ``validate()``
adds what is specific to it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import typing
from typing import Any, Iterable

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse_scalar(kind: type, text: str) -> Any:
    text = text.strip()
    if kind is bool:
        low = text.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError("not a boolean")
    if kind is int:
        value = float(text) if ("e" in text.lower() and not text.lower().startswith("0x")) else None
        if value is not None:
            if not value.is_integer():
                raise ValueError("not an integer")
            return int(value)
        return int(text)
    if kind is float:
        return float(text)
    if kind is str:
        return text
    raise ValueError(f"unsupported field type {kind!r}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def parse_value(tp: Any, text: str) -> Any:
    """Parse ``text`` as a value of the annotated type ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union:
        inner = [a for a in args if a is not type(None)]
        if text.strip().lower() in ("none", "null"):
            return None
        if len(inner) == 1:
            return parse_value(inner[0], text)
        raise ValueError(f"unsupported union type {tp}")
    if origin in (tuple, list):
        elem = args[0] if args else float
        body = text.strip()
        if body.startswith(("[", "(")) and body.endswith(("]", ")")):
            body = body[1:-1]
        parts = [p for p in body.split(",") if p.strip()]
        if not parts:
            raise ValueError("empty sequence")
        values = [parse_value(elem, p) for p in parts]
        return tuple(values) if origin is tuple else values
    return _parse_scalar(tp, text)


def field_types(cfg_or_cls: Any) -> dict[str, Any]:
    cls = cfg_or_cls if isinstance(cfg_or_cls, type) else type(cfg_or_cls)
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


_SIZES = {"width", "depth", "dim", "steps", "n_steps", "widths", "depths", "n_train"}


def _is_size(name: str) -> bool:
    return name in _SIZES or name.endswith("_every")


def check_values(cfg: Any) -> None:
    """ValueError naming the field if a value is non-finite, a negative integer, or a size
    below 1 (see the module docstring)."""
    for field in dataclasses.fields(cfg):
        value = getattr(cfg, field.name)
        values = value if isinstance(value, (tuple, list)) else (value,)
        for v in values:
            if isinstance(v, bool) or v is None or isinstance(v, str):
                continue
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"{field.name}={value!r}: must be finite")
            if isinstance(v, int):
                low = 1 if _is_size(field.name) else 0
                if v < low:
                    raise ValueError(f"{field.name}={value!r}: must be >= {low}")


def apply_overrides(cfg: Any, overrides: Iterable[str]) -> Any:
    """Return ``cfg`` with each ``"key=value"`` in ``overrides`` applied (dataclasses.replace)."""
    types = field_types(cfg)
    changes: dict[str, Any] = {}
    for item in overrides or ():
        if not isinstance(item, str) or "=" not in item:
            raise ValueError(f"--set {item!r}: expected key=value")
        key, text = item.split("=", 1)
        key = key.strip()
        if key not in types:
            raise ValueError(
                f"--set {item}: {type(cfg).__name__} has no field {key!r}; "
                f"fields are: {', '.join(types)}")
        try:
            changes[key] = parse_value(types[key], text)
        except (ValueError, TypeError) as err:
            raise ValueError(
                f"--set {item}: field {key!r} expects {_type_name(types[key])}, "
                f"got {text!r} ({err})") from None
    new = dataclasses.replace(cfg, **changes)
    check_values(new)
    validate = getattr(new, "validate", None)
    if callable(validate):
        validate()
    return new


def to_dict(cfg: Any) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def config_hash(cfg: Any) -> str:
    """A short, stable hash of the config's JSON (names a run directory)."""
    text = json.dumps({"type": type(cfg).__name__, **to_dict(cfg)}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:8]
