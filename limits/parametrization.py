"""abc-parametrizations: how initialization, multipliers and learning rates scale with width.

Yang & Hu, "Feature Learning in Infinite-Width Neural Networks" (Tensor Programs IV, 2021),
parametrize an MLP of width ``n`` layer by layer as

    W^l = n^-a_l w^l,      w^l_ij ~ N(0, n^-2 b_l),      learning rate eta n^-c_l,

with three layer roles: the *input* layer (``d -> n``, fan-in finite), *hidden* layers
(``n -> n``) and the *output* layer (``n -> O``, fan-out finite).  Biases are input-like (a
bias is a weight from the constant input 1) and follow the input role unless given their own.
Tensor Programs V (Yang et al. 2022) lets every role have its own learning rate and tabulates
muP for SGD and Adam in three forms (its Tables 3, 8 and 9); Table 8 is what
``microsoft/mup`` implements. For SGD the three are exactly equivalent. For Adam they are
equivalent only up to Adam's ``eps``: the update ``m / (sqrt(v) + eps)`` is invariant under a
rescaled gradient only where ``eps`` is negligible against ``sqrt(v)``, and the forms rescale
gradients differently (by ``n^-a``). With a fixed ``eps = 1e-8``, single updates of the forms
differ where a gradient is near ``eps`` (up to a few percent for Table 3 and tens of percent
for Table 9 at width 1024, side by side with microsoft/mup); scaling ``eps`` with the
gradient's width exponent restores agreement to rounding.

abc-symmetry.  For SGD, ``(a, b, c) -> (a + theta, b - theta, c - 2 theta)`` leaves the
effective weights ``n^-(a+b)`` at init and their updates ``n^-(2a+c)`` unchanged, hence the whole
training trajectory of the function.  For Adam the update of ``w`` no longer carries the factor
``n^-a`` of the gradient, so the symmetry is ``(a, b, c) -> (a + theta, b - theta, c - theta)``.

Concrete numbers.  A network of width ``n`` built with base width ``n0`` uses ``rho = n / n0``:

    multiplier = rho^-a,    init std = sigma / sqrt(fan_in(n0)) * rho^-b,    lr scale = rho^-c,

where ``fan_in(n0)`` is the fan-in the layer has at the base width.  With ``rho = 1`` every
parametrization reduces to the standard parametrization ``std = sigma / sqrt(fan_in)``,
multiplier 1, learning rate ``eta`` (this is how muP equals SP at the base width, bit for bit,
as in microsoft/mup), and standard-parametrization exponents reproduce the usual
``sigma / sqrt(fan_in)`` at every width.
"""
from __future__ import annotations

import dataclasses
from fractions import Fraction
from typing import Mapping

import sympy

__all__ = [
    "ROLES",
    "OPTIMIZERS",
    "RoleExponents",
    "Parametrization",
    "standard",
    "mup",
    "SP",
    "SP_LR_INV_WIDTH",
    "SP_ADAM",
    "NTP",
    "MFP",
    "MUP",
    "MUP_ADAM",
    "width_symbol",
]

ROLES = ("input", "hidden", "output", "bias")
OPTIMIZERS = ("sgd", "adam")

#: The width ``n`` as a positive sympy symbol (used by the symbolic forms).
width_symbol = sympy.Symbol("n", positive=True)


def _exponent(value, name):
    """Convert an exponent to an exact sympy number (or keep a sympy expression)."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number or sympy expression, got bool {value!r}")
    if isinstance(value, sympy.Basic):
        return value
    if isinstance(value, int):
        return sympy.Integer(value)
    if isinstance(value, Fraction):
        return sympy.Rational(value.numerator, value.denominator)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{name} must be finite, got {value!r}")
        # 0.5 -> 1/2 exactly; arbitrary floats keep a close rational.
        return sympy.nsimplify(value, rational=True, tolerance=1e-12)
    if isinstance(value, str):
        try:
            return sympy.Rational(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must parse as a rational number, got {value!r}") from None
    raise TypeError(f"{name} must be int, float, Fraction, str or sympy expression, "
                    f"got {type(value).__name__}")


def _as_float(expr, name):
    if getattr(expr, "free_symbols", None):
        symbols = sorted(map(str, expr.free_symbols))
        raise ValueError(f"{name} = {expr} still has free symbols {symbols}; substitute "
                         "numbers with Parametrization.subs(...) first")
    return float(expr)


@dataclasses.dataclass(frozen=True)
class RoleExponents:
    """Width exponents of one layer role.

    ``a``: multiplier ``n^-a``; ``b``: init standard deviation ``n^-b`` (variance
    ``n^-2b``); ``c``: learning rate ``eta n^-c``.  Stored as exact sympy numbers (or sympy
    expressions with free symbols, for symbolic questions).
    """

    a: object = 0
    b: object = 0
    c: object = 0

    def __post_init__(self):
        for field in ("a", "b", "c"):
            object.__setattr__(self, field, _exponent(getattr(self, field), field))

    def shift(self, theta, optimizer="sgd"):
        """The abc-symmetry: ``(a + theta, b - theta, c - 2 theta)`` for SGD,
        ``(a + theta, b - theta, c - theta)`` for Adam (TP IV eq. 5; TP V Sec. J)."""
        theta = _exponent(theta, "theta")
        optimizer = _check_optimizer(optimizer)
        k = 2 if optimizer == "sgd" else 1
        return RoleExponents(self.a + theta, self.b - theta, self.c - k * theta)

    def subs(self, mapping):
        return RoleExponents(*(sympy.sympify(getattr(self, f)).subs(mapping) for f in "abc"))

    def as_tuple(self):
        return (self.a, self.b, self.c)


def _check_optimizer(optimizer):
    if not isinstance(optimizer, str) or optimizer.lower() not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    return optimizer.lower()


def _check_role(role):
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    return role


def _check_width(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a positive number, got {type(value).__name__}")
    if not value > 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class Parametrization:
    """An abc-parametrization for SGD or Adam: width exponents per layer role.

    Attributes:
      name: a label.
      optimizer: ``'sgd'`` or ``'adam'``: which update rule the ``c`` exponents are for.
      input, hidden, output: :class:`RoleExponents` (``hidden=None`` for a network with a
        single hidden layer, e.g. mean field).
      bias: exponents of hidden-layer biases; ``None`` means "same as ``input``" (TP V
        tabulates input weights and all biases in one row).

    Concrete values for a layer of width ``n`` at base width ``n0`` (``rho = n / n0``):
    ``multiplier(role) = rho^-a``, ``init_std(role) = sigma / sqrt(fan_in_base) rho^-b``,
    ``lr_scale(role) = rho^-c``.
    """

    name: str
    optimizer: str
    input: RoleExponents
    output: RoleExponents
    hidden: RoleExponents | None = None
    bias: RoleExponents | None = None

    def __post_init__(self):
        object.__setattr__(self, "optimizer", _check_optimizer(self.optimizer))
        for role in ROLES:
            value = getattr(self, role)
            if value is None:
                if role in ("input", "output"):
                    raise ValueError(f"{role} exponents are required")
                continue
            if isinstance(value, (tuple, list)) and len(value) == 3:
                value = RoleExponents(*value)
            if not isinstance(value, RoleExponents):
                raise TypeError(f"{role} must be RoleExponents or an (a, b, c) triple, "
                                f"got {value!r}")
            object.__setattr__(self, role, value)

    # -- roles -------------------------------------------------------------------------
    def role(self, role: str) -> RoleExponents:
        """Exponents of ``role`` (``'input'``, ``'hidden'``, ``'output'``, ``'bias'``)."""
        _check_role(role)
        value = getattr(self, role)
        if role == "bias" and value is None:
            return self.input
        if value is None:
            raise ValueError(f"parametrization {self.name!r} has no {role!r} role "
                             "(it is defined for a single hidden layer only)")
        return value

    def supports_depth(self, depth: int) -> bool:
        """Whether the exponents fit an MLP with ``depth`` hidden layers (``depth >= 2``
        needs hidden-to-hidden exponents)."""
        return depth >= 1 and (depth == 1 or self.hidden is not None)

    def check_depth(self, depth):
        if isinstance(depth, bool) or not isinstance(depth, int):
            raise TypeError(f"depth must be an int, got {type(depth).__name__}")
        if depth < 1:
            raise ValueError(f"depth (number of hidden layers) must be >= 1, got {depth}")
        if not self.supports_depth(depth):
            raise ValueError(f"parametrization {self.name!r} has no hidden-layer exponents, so "
                             f"it fits only depth=1 networks; got depth={depth}")
        return depth

    # -- concrete numbers --------------------------------------------------------------
    def multiplier(self, role, width, base_width=1):
        """``(width / base_width)^-a`` of ``role``."""
        rho = _check_width(width, "width") / _check_width(base_width, "base_width")
        return rho ** -_as_float(self.role(role).a, f"{role}.a")

    def init_std(self, role, width, base_width=1, fan_in_base=1, sigma=1.0):
        """``sigma / sqrt(fan_in_base) * (width / base_width)^-b`` of ``role``."""
        rho = _check_width(width, "width") / _check_width(base_width, "base_width")
        _check_width(fan_in_base, "fan_in_base")
        return sigma / fan_in_base ** 0.5 * rho ** -_as_float(self.role(role).b, f"{role}.b")

    def lr_scale(self, role, width, base_width=1):
        """``(width / base_width)^-c`` of ``role``: multiplies the global learning rate."""
        rho = _check_width(width, "width") / _check_width(base_width, "base_width")
        return rho ** -_as_float(self.role(role).c, f"{role}.c")

    # -- symbolic forms ----------------------------------------------------------------
    def symbolic(self, role):
        """Width scalings of ``role`` as sympy expressions in ``n`` (:data:`width_symbol`):
        ``{'multiplier': n^-a, 'init_var': n^-2b, 'lr': n^-c}``."""
        e = self.role(role)
        n = width_symbol
        return {"multiplier": n ** -e.a, "init_var": n ** (-2 * e.b), "lr": n ** -e.c}

    def subs(self, mapping: Mapping) -> "Parametrization":
        """Substitute values for free sympy symbols in the exponents."""
        kw = {r: (None if getattr(self, r) is None else getattr(self, r).subs(mapping))
              for r in ROLES}
        return dataclasses.replace(self, **kw)

    @property
    def free_symbols(self):
        out = set()
        for r in ROLES:
            e = getattr(self, r)
            if e is not None:
                for v in e.as_tuple():
                    out |= set(getattr(v, "free_symbols", ()))
        return out

    # -- abc-symmetry ------------------------------------------------------------------
    def shift(self, name=None, **thetas) -> "Parametrization":
        """Apply the abc-symmetry role by role: ``p.shift(output=1)`` shifts the output
        role by ``theta = 1``.  The training trajectory of the function is unchanged."""
        kw = {}
        for role, theta in thetas.items():
            _check_role(role)
            kw[role] = self.role(role).shift(theta, self.optimizer)
        return dataclasses.replace(self, name=name or f"{self.name} (shifted)", **kw)

    def canonical(self) -> "Parametrization":
        """The equivalent form with every multiplier exponent ``a = 0``."""
        roles = [r for r in ROLES if getattr(self, r) is not None or r == "bias"]
        return self.shift(name=f"{self.name} (a=0 form)",
                          **{r: -self.role(r).a for r in roles})

    def equivalent(self, other: "Parametrization") -> bool:
        """Whether ``other`` is related to this one by the abc-symmetry (same optimizer).

        For Adam the symmetry holds for ``eps -> 0`` only; with a fixed ``eps`` the forms'
        trajectories differ where gradients are comparable to ``eps`` (see the module notes).
        """
        if not isinstance(other, Parametrization):
            raise TypeError(f"other must be a Parametrization, got {type(other).__name__}")
        if self.optimizer != other.optimizer:
            return False
        x, y = self.canonical(), other.canonical()
        for r in ROLES:
            ex = getattr(x, r) if r != "bias" else x.role("bias")
            ey = getattr(y, r) if r != "bias" else y.role("bias")
            if (ex is None) != (ey is None):
                return False
            if ex is not None and any(sympy.simplify(u - v) != 0
                                      for u, v in zip(ex.as_tuple(), ey.as_tuple())):
                return False
        return True

    def shifts_to(self, other: "Parametrization") -> dict:
        """The ``theta`` per role that maps this form onto ``other`` (``ValueError`` if
        they are not equivalent)."""
        if not self.equivalent(other):
            raise ValueError(f"{self.name!r} and {other.name!r} are not related by the "
                             "abc-symmetry")
        return {r: other.role(r).a - self.role(r).a for r in ROLES
                if getattr(self, r) is not None or r == "bias"}

    def __str__(self):
        rows = [f"{self.name} ({self.optimizer})"]
        for r in ROLES:
            if getattr(self, r) is None and r != "bias":
                continue
            e = self.role(r)
            rows.append(f"  {r:>6}: a={e.a}, b={e.b}, c={e.c}")
        return "\n".join(rows)


# --------------------------------------------------------------------------------------
# presets
# --------------------------------------------------------------------------------------
_H = sympy.Rational(1, 2)


def standard(lr_exponent=0, optimizer="sgd") -> Parametrization:
    """Standard parametrization: init variance ``1/fan_in``, no multipliers, learning rate
    ``eta n^-lr_exponent`` for every layer (TP IV Table 1 uses ``lr_exponent = 1``;
    practice uses 0, which TP IV shows is unstable: ``r = -1``)."""
    k = _exponent(lr_exponent, "lr_exponent")
    return Parametrization(
        name=f"SP (lr ~ n^-{k})" if k != 0 else "SP",
        optimizer=optimizer,
        input=RoleExponents(0, 0, k),
        hidden=RoleExponents(0, _H, k),
        output=RoleExponents(0, _H, k),
    )


# TP V tables in (a, b, c) form: n = fan_in for hidden/output, n = fan_out for input.
_MUP_TABLES = {
    # TP IV Table 1 (SGD): W^1 = n^{1/2} w, W^{L+1} = n^{-1/2} w, all w ~ N(0, 1/n).
    ("sgd", "tp4"): dict(input=(-_H, _H, 0), hidden=(0, _H, 0), output=(_H, _H, 0)),
    # TP V Table 3: no multipliers; output init var 1/fan_in^2.
    ("sgd", 3): dict(input=(0, 0, -1), hidden=(0, _H, 0), output=(0, 1, 1)),
    ("adam", 3): dict(input=(0, 0, 0), hidden=(0, _H, 1), output=(0, 1, 1)),
    # TP V Table 8 (microsoft/mup): output multiplier 1/fan_in, init var 1.
    ("sgd", 8): dict(input=(0, 0, -1), hidden=(0, _H, 0), output=(1, 0, -1)),
    ("adam", 8): dict(input=(0, 0, 0), hidden=(0, _H, 1), output=(1, 0, 0)),
    # TP V Table 9: input multiplier sqrt(fan_out), output multiplier 1/sqrt(fan_in).
    ("sgd", 9): dict(input=(-_H, _H, 0), hidden=(0, _H, 0), output=(_H, _H, 0)),
    ("adam", 9): dict(input=(-_H, _H, _H), hidden=(0, _H, 1), output=(_H, _H, _H)),
}


def mup(optimizer="sgd", table=8) -> Parametrization:
    """Maximal-update parametrization (muP) for ``optimizer`` in the form of Tensor Programs
    V Table ``table`` (3, 8 or 9), or ``table='tp4'`` for TP IV Table 1 (SGD only).
    All forms are related by the abc-symmetry; 8 is microsoft/mup's."""
    optimizer = _check_optimizer(optimizer)
    key = (optimizer, table)
    if key not in _MUP_TABLES:
        raise ValueError(f"table must be one of 3, 8, 9 (or 'tp4' for sgd), got {table!r} "
                         f"for optimizer={optimizer!r}")
    roles = {r: RoleExponents(*v) for r, v in _MUP_TABLES[key].items()}
    label = "TP IV Table 1" if table == "tp4" else f"TP V Table {table}"
    return Parametrization(name=f"muP ({label})", optimizer=optimizer, **roles)


#: Standard parametrization with a width-independent learning rate (unstable, r = -1).
SP = standard(0, "sgd")
#: Standard parametrization with learning rate ~ 1/n (TP IV Table 1: kernel regime, r = 1/2).
SP_LR_INV_WIDTH = standard(1, "sgd")
#: Standard parametrization trained by Adam with a width-independent learning rate.
SP_ADAM = standard(0, "adam")
#: NTK parametrization (TP IV Table 1): W^l = n^-1/2 w^l for l >= 2, all w ~ N(0, 1).
NTP = Parametrization(name="NTP", optimizer="sgd", input=RoleExponents(0, 0, 0),
                      hidden=RoleExponents(_H, 0, 0), output=RoleExponents(_H, 0, 0))
#: Mean-field parametrization of a one-hidden-layer net (TP IV Table 1, L = 1):
#: f = n^-1 w^2 phi(w^1 x), learning rate eta n.
MFP = Parametrization(name="MFP", optimizer="sgd", input=RoleExponents(0, 0, -1),
                      output=RoleExponents(1, 0, -1))
#: muP for SGD, TP V Table 8 form (microsoft/mup).
MUP = mup("sgd", 8)
#: muP for Adam, TP V Table 8 form (microsoft/mup).
MUP_ADAM = mup("adam", 8)
