"""The adaptive-kernel (mean-field) equilibrium theory of a two-layer erf network learning a
cubic single-index teacher: Gaussian feature learning, droplets of specialised neurons, and
the first-order transition that Rubin, Seroussi & Ringel identify with grokking.

The problem (the paper's Sec. 2.1 and 2.3). Inputs ``x ~ N(0, I_d)``, a teacher direction
``|w*| = 1``, ``z = w* . x`` and the target

    y(x) = He1(z) + epsilon He3(z),      He1(z) = z,   He3(z) = z^3 - 3 z        (eq. 1)

learned by ``f(x) = sum_{i<=N} a_i erf(w_i . x)`` from ``n`` samples. Langevin training with
weight decay samples the posterior

    p(w, a | D) ~ exp(-sum_mu (f(x_mu) - y_mu)^2 / (2 sigma^2))
                  prod_i N(w_i; 0, sigma_w^2 / d I_d) N(a_i; 0, sigma_a^2 / N),

``sigma^2`` (``noise``) being the GP-regression noise and ``sigma_a^2`` (``readout_variance``)
the prior variance of the whole readout.

Mean-field decoupling (Seroussi, Naveh & Ringel 2023). Given the discrepancy
``tbar = (y - fbar) / sigma^2`` of the posterior-mean output ``fbar``, the hidden weight vectors
are i.i.d. with the action (negative log density)

    S[w] = d |w|^2 / (2 sigma_w^2) - sigma_a^2 / (2 N) (sum_mu tbar_mu erf(w . x_mu))^2,  (eq. 7)

and ``fbar`` is GP regression with the averaged kernel ``Q(x, x') = sigma_a^2 <erf(w . x)
erf(w . x')>_S``. In the equivalent-kernel (continuum) limit ``sum_mu -> n E_x`` the
discrepancy stays in span(He1, He3), ``sigma^2 tbar = b He1(z) + c He3(z)`` (eq. 12); with the
Gaussian moments (:func:`erf_moments`)

    E_x[He1(z) erf(w . x)] =  (2 / sqrt(pi)) q / sqrt(1 + 2 |w|^2),
    E_x[He3(z) erf(w . x)] = -(4 / sqrt(pi)) q^3 / (1 + 2 |w|^2)^(3/2),    q = w . w*,

and the transverse norm concentrating, ``|w|^2 = sigma_w^2 + q^2``, the overlap ``q`` (the
order parameter) has the action ``d Shat(q)`` with

    Shat(q) = q^2 / (2 sigma_w^2) - (2 u / pi) q^2 / D (b - 2 c q^2 / D)^2,
    D(q) = 1 + 2 (sigma_w^2 + q^2),      u = n^2 sigma_a^2 / (sigma^4 d N)          (eq. 13)

(``u``, the effective interaction, :meth:`TeacherStudent.interaction`). Self-consistency
(App. A.3): in the orthonormal basis ``(He1, He3 / sqrt 6)`` the kernel is the 2 x 2 matrix
``Qt = sigma_a^2 <J(q) J(q)^T>`` with ``J = (E[He1 erf], E[He3 erf] / sqrt 6)``
(:func:`hermite_projections`) averaged over ``p(q) ~ exp(-d Shat(q))``, and GP regression in
that subspace closes the loop:

    (b, sqrt6 c) = (I + M)^-1 (1, sqrt6 epsilon),    M = (n / sigma^2) Qt.

Two misprints of the paper are corrected here (each checked by the tests): App. A.3's
``Qt_11`` carries ``4 q^2 / (pi D)`` (printed ``2 q^2``), and its GPR line lacks the factor
``sigma^2 / n`` that makes ``(b, c) = (1, epsilon)`` when nothing is learned. With both, the
theory puts the transition of the paper's Fig. 2 network (``d = 150``, ``N = 700``,
``n = 3000``, ``sigma_a^2 = 8 / N``, ``epsilon = -0.3``) at ``sigma^2 = 0.179`` and
``u_c = 30.6`` (the paper: 0.18 and 30.2; :func:`critical_samples`,
:func:`critical_interaction`); with ``2 q^2`` it would sit at ``sigma^2 ~ 0.21``.

Finite ``d`` (:func:`mean_field`): ``p(q)`` on a grid, the loop solved as two equations in
``(b, c)``. It describes a network of input dimension ``d`` at the level of the paper's
approximations (mean field, equivalent kernel, ``|w_perp|^2 = sigma_w^2``).

Large ``d`` (:func:`large_d`): ``p(q)`` concentrates on the global minima of ``Shat``. Write
``A = 1 + 2 sigma_w^2``, ``r = n sigma_a^2 / (d sigma^2)`` (:meth:`TeacherStudent.gp_ratio`),
``h(q) = (b - 2 c q^2 / D)^2 / D`` and ``h_c = pi / (4 u sigma_w^2)``, so that
``Shat = q^2 (1 / (2 sigma_w^2) - (2 u / pi) h(q))``: a saddle at ``q != 0`` competes with
``q = 0`` once ``h(q) = h_c``. For ``c < 0 <= b < -2c`` (``epsilon < 0``, the paper's case)

    max_{q > 0} h = 4 (b - c)^3 / (27 (-c) A)   at   q*^2 = A (-2c - b) / (2 (b - c)).

* GFL (Gaussian feature learning): one saddle at ``q = 0``; ``p(q)`` is Gaussian with
  variance ``sigma_w^2 / (d (1 - xi))``, ``xi = 4 u sigma_w^2 b^2 / (pi A)``, so
  ``M = diag(4 r sigma_w^2 / (pi A (1 - xi)), 0)``: ``c = epsilon`` (the cubic part is not
  learned) and ``b (1 + 4 r sigma_w^2 / (pi A (1 - xi(b)))) = 1`` (one root in ``b``).
* The transition (:func:`critical_samples`): GFL's ``b`` makes ``max h = h_c``.
* GMFL-I, the mixed phase: a fraction ``rho / d`` of the neurons (droplets) sits at ``+-q*``
  with ``Shat(q*) = Shat(0)``. Degeneracy and stationarity give
  ``D(q*)^3 = 4 c^2 A^2 / h_c`` and ``b = -2 c (A - q*^2) / D(q*)``, and
  ``M = r (diag(4 sigma_w^2 / (pi A (1 - xi)), 0) + rho J(q*) J(q*)^T)``: GP regression then
  fixes ``c`` and ``rho`` (one root in ``c``). ``q*`` is finite at the onset: the order
  parameter of a droplet jumps (first order), while their number grows from zero.

Test error of the posterior mean (equivalent kernel): ``E (y - fbar)^2 = b^2 + 6 c^2``; the
learned fractions of the target's parts are ``1 - b`` and ``1 - c / epsilon``.

Everything is float64 numpy.

Rubin, Seroussi & Ringel (2024), "Grokking as a First Order Phase Transition in Two Layer
Networks" (ICLR 2024; first titled "Droplets of Good Representations"), arXiv:2310.03789;
Seroussi, Naveh & Ringel (2023), "Separation of scales and a thermodynamic description of
feature learning in some CNNs", Nature Communications 14, 908.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import optimize

__all__ = ["TeacherStudent", "MeanField", "LargeD", "hermite_teacher", "erf_moments",
           "hermite_projections", "action", "gpr_discrepancy", "gfl_discrepancy",
           "droplet_overlap", "mean_field", "large_d", "critical_interaction",
           "critical_samples", "population_error"]

SQRT6 = math.sqrt(6.0)


# --------------------------------------------------------------------------- validation


def _number(name: str, value, *, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or (positive and value <= 0):
        raise ValueError(f"{name}: expected a {'positive ' if positive else ''}finite number, "
                         f"got {value!r}")
    return value


class TeacherStudent(NamedTuple):
    """The paper's teacher-student problem (eq. 1, 2 and the posterior of Sec. 2.3).

    input_dim: ``d``; width: ``N`` hidden erf units; noise: ``sigma^2``;
    readout_variance: ``sigma_a^2`` (each ``a_i ~ N(0, sigma_a^2 / N)``);
    weight_variance: ``sigma_w^2`` (each ``w_i ~ N(0, sigma_w^2 / d I_d)``);
    epsilon: the cubic coefficient of the teacher.
    """
    input_dim: float
    width: float
    noise: float
    readout_variance: float
    weight_variance: float = 0.5
    epsilon: float = -0.3

    def validate(self) -> "TeacherStudent":
        for name in ("input_dim", "width", "noise", "readout_variance", "weight_variance"):
            _number(name, getattr(self, name))
        _number("epsilon", self.epsilon, positive=False)
        return self

    def interaction(self, n_samples) -> float:
        """``u = n^2 sigma_a^2 / (sigma^4 d N)``, the effective interaction (Sec. 3.1)."""
        n = _number("n_samples", n_samples)
        return n * n * self.readout_variance / (self.noise ** 2 * self.input_dim * self.width)

    def gp_ratio(self, n_samples) -> float:
        """``r = n sigma_a^2 / (d sigma^2)``: ``d`` times the GP's ``He1`` eigenvalue scale
        ``sigma_a^2 / d`` over the noise per sample ``sigma^2 / n``."""
        n = _number("n_samples", n_samples)
        return n * self.readout_variance / (self.input_dim * self.noise)


# --------------------------------------------------------------------------- Gaussian moments


def hermite_teacher(z, epsilon):
    """``y = He1(z) + epsilon He3(z) = z + epsilon (z^3 - 3 z)`` (eq. 1), elementwise."""
    z = np.asarray(z, dtype=np.float64)
    return z + epsilon * (z ** 3 - 3 * z)


def erf_moments(overlap, norm2):
    """``(E_x[z erf(w . x)], E_x[z^3 erf(w . x)])`` for ``x ~ N(0, I)``, ``z = w* . x``,
    ``|w*| = 1``, from ``q = w . w*`` and ``|w|^2`` (App. A.4, eq. 17 and 19):

        I0 = (2 / sqrt(pi)) q / sqrt(1 + 2 |w|^2),
        I1 = I0 (3 - 2 q^2 / (1 + 2 |w|^2)).

    Broadcasting arrays in, two arrays out. Raises ValueError unless ``|w|^2 >= q^2``
    (Cauchy-Schwarz) and ``|w|^2 >= 0``.
    """
    q = np.asarray(overlap, dtype=np.float64)
    w2 = np.asarray(norm2, dtype=np.float64)
    if np.any(w2 < 0) or np.any(q * q > w2 * (1 + 1e-12) + 1e-300):
        raise ValueError("erf_moments: expected norm2 >= overlap^2 >= 0 (|w|^2 >= (w . w*)^2 "
                         "with |w*| = 1)")
    s = 1 + 2 * w2
    i0 = 2 / math.sqrt(math.pi) * q / np.sqrt(s)
    return i0, i0 * (3 - 2 * q * q / s)


def hermite_projections(overlap, norm2):
    """``J = (E_x[He1(z) erf(w . x)], E_x[He3(z) erf(w . x)] / sqrt 6)``, the projections of one
    hidden unit on the orthonormal teacher basis ``(He1, He3 / sqrt 6)``:

        J1 =  (2 / sqrt(pi)) q / sqrt(1 + 2 |w|^2),
        J3 = -(4 / sqrt(6 pi)) q^3 / (1 + 2 |w|^2)^(3/2).

    Returns an array of shape ``broadcast(overlap, norm2).shape + (2,)``.
    """
    i0, i1 = erf_moments(overlap, norm2)
    return np.stack([i0, (i1 - 3 * i0) / SQRT6], axis=-1)


def _denominator(q, weight_variance):
    return 1 + 2 * (weight_variance + q * q)


def action(overlap, b, c, interaction, weight_variance=0.5):
    """``Shat(q) = q^2 / (2 sigma_w^2) - (2 u / pi) q^2 / D (b - 2 c q^2 / D)^2`` with
    ``D = 1 + 2 (sigma_w^2 + q^2)`` (eq. 13): the negative log density of the overlap per input
    dimension, ``p(q) ~ exp(-d Shat(q))``, given the discrepancy coefficients ``b, c``."""
    q = np.asarray(overlap, dtype=np.float64)
    den = _denominator(q, weight_variance)
    return (q * q / (2 * weight_variance)
            - (2 * interaction / math.pi) * q * q / den * (b - 2 * c * q * q / den) ** 2)


def gpr_discrepancy(scaled_kernel, epsilon):
    """``(b, c)`` from GP regression in span(He1, He3): ``(b, sqrt6 c) = (I + M)^-1 (1, sqrt6
    epsilon)`` with ``M = (n / sigma^2) Qt`` (``(2, 2)``, the kernel in the orthonormal basis
    ``(He1, He3 / sqrt 6)`` over the noise per sample). ``M = 0`` gives ``(1, epsilon)``."""
    m = np.asarray(scaled_kernel, dtype=np.float64)
    if m.shape != (2, 2):
        raise ValueError(f"scaled_kernel: expected shape (2, 2), got {m.shape}")
    t = np.linalg.solve(np.eye(2) + m, np.array([1.0, SQRT6 * epsilon]))
    return float(t[0]), float(t[1] / SQRT6)


def population_error(b, c):
    """``E_x (y - fbar)^2 = b^2 E He1^2 + c^2 E He3^2 = b^2 + 6 c^2`` for the discrepancy
    ``y - fbar = b He1 + c He3``."""
    return b * b + 6 * c * c


# --------------------------------------------------------------------------- finite d


class MeanField(NamedTuple):
    """The self-consistent mean-field state at finite ``d`` (:func:`mean_field`).

    b, c: discrepancy coefficients (``y - fbar = b He1 + c He3``); overlaps: ``(G,)`` grid of
    ``q >= 0``; density: ``p(q)`` on it, normalised so that ``2 int_0^inf p = 1`` (``p`` is
    even); scaled_kernel: ``M = (n / sigma^2) Qt``; test_error: ``b^2 + 6 c^2``;
    linear_learned, cubic_learned: ``1 - b`` and ``1 - c / epsilon``; residual: the largest
    self-consistency residual; action: ``Shat`` on the grid.
    """
    b: float
    c: float
    overlaps: np.ndarray
    density: np.ndarray
    action: np.ndarray
    scaled_kernel: np.ndarray
    test_error: float
    linear_learned: float
    cubic_learned: float
    residual: float

    def specialized_fraction(self, threshold: float = 0.5) -> float:
        """``P(|q| > threshold)``: the fraction of hidden units in the droplets."""
        q, p = self.overlaps, self.density
        above = np.where(q > threshold, p, 0.0)
        return float(2 * np.trapezoid(above, q))


def _trapezoid_weights(q):
    w = np.zeros_like(q)
    dq = np.diff(q)
    w[:-1] += dq / 2
    w[1:] += dq / 2
    return w


def mean_field(problem: TeacherStudent, n_samples, *, start=None, overlap_max: float = 4.0,
               grid_points: int = 8001) -> MeanField:
    """Solve the finite-``d`` adaptive-kernel equations of App. A.2-A.3 for ``(b, c)``.

        p(q) ~ exp(-d Shat(q; b, c)),   M(b, c) = (n / sigma^2) sigma_a^2 <J J^T>_p,
        (b, c) = gpr_discrepancy(M(b, c), epsilon),

    ``J`` from :func:`hermite_projections` at ``|w|^2 = sigma_w^2 + q^2``, the average by the
    trapezoid rule on ``0 <= q <= overlap_max`` (``p`` and ``J J^T`` are even in ``q``). The two
    equations are solved by Powell's hybrid method from ``start`` (when given: the previous
    solution of a sweep in ``n``), then from the large-``d`` solution (:func:`large_d`), GFL's
    ``(b, epsilon)``, ``(0, epsilon)`` and ``(1, epsilon)``, until the residual is below
    ``1e-9``; RuntimeError if none converges.

    Returns: :class:`MeanField`.

    Rubin, Seroussi & Ringel (2024), arXiv:2310.03789, App. A.
    """
    problem = TeacherStudent(*problem).validate()
    n = _number("n_samples", n_samples)
    if grid_points < 101 or overlap_max <= 0:
        raise ValueError(f"grid_points must be >= 101 and overlap_max > 0, got {grid_points}, "
                         f"{overlap_max}")
    d, sw2, eps = problem.input_dim, problem.weight_variance, problem.epsilon
    u = problem.interaction(n)
    scale = problem.gp_ratio(n) * d                   # (n / sigma^2) sigma_a^2
    q = np.linspace(0.0, overlap_max, grid_points)
    weights = _trapezoid_weights(q)
    j = hermite_projections(q, sw2 + q * q)           # (G, 2)
    jj = j[:, :, None] * j[:, None, :]                # (G, 2, 2)

    def state(x):
        b, c = x
        s = action(q, b, c, u, sw2)
        logp = -d * s
        p = np.exp(logp - logp.max())
        p /= 2 * (weights @ p)
        m = scale * 2 * np.einsum("g,gij->ij", weights * p, jj)
        return np.array(gpr_discrepancy(m, eps)), p, s, m

    starts = [] if start is None else [tuple(np.asarray(start, dtype=np.float64))]
    if eps < 0:
        try:
            limit = large_d(problem, n)
            starts.append((limit.b, limit.c))
        except RuntimeError:
            pass
    starts += [(gfl_discrepancy(u, problem.gp_ratio(n), sw2), eps), (0.0, eps), (1.0, eps)]
    for x0 in starts:
        sol = optimize.root(lambda x: x - state(x)[0], np.asarray(x0, dtype=np.float64),
                            method="hybr", options={"xtol": 1e-13})
        new, p, s, m = state(sol.x)
        residual = float(np.max(np.abs(new - sol.x)))
        if residual < 1e-9:
            break
    else:
        raise RuntimeError(f"mean_field: the self-consistency did not converge at n={n} "
                           f"(residual {residual:.2e} from every start); pass a start near "
                           "the solution (the previous n of a sweep)")
    b, c = (float(v) for v in sol.x)
    return MeanField(b, c, q, p, s, m, population_error(b, c), 1 - b,
                     1 - c / eps if eps != 0 else math.nan, residual)


# --------------------------------------------------------------------------- large d


class LargeD(NamedTuple):
    """The ``d -> inf`` saddle-point solution at one sample size (:func:`large_d`).

    phase: ``"GFL"`` (one saddle at ``q = 0``) or ``"GMFL-I"`` (the mixed phase);
    b, c: discrepancy coefficients; droplet_density: ``rho``, ``d`` times the fraction of
    hidden units at ``+-q*`` (0 in GFL); droplet_overlap: ``q*`` (GFL: where a droplet would
    sit, the maximiser of ``h``); xi: the Gaussian enhancement ``4 u sigma_w^2 b^2 / (pi A)``
    of the ``q = 0`` saddle's variance; test_error: ``b^2 + 6 c^2``; interaction, gp_ratio:
    ``u`` and ``r``.
    """
    phase: str
    b: float
    c: float
    droplet_density: float
    droplet_overlap: float
    xi: float
    test_error: float
    interaction: float
    gp_ratio: float


def _gfl_g(b, u, sw2):
    a = 1 + 2 * sw2
    xi = 4 * u * sw2 * b * b / (math.pi * a)
    return 4 * sw2 / (math.pi * a * (1 - xi)), xi


def gfl_discrepancy(interaction, gp_ratio, weight_variance=0.5) -> float:
    """GFL's linear discrepancy ``b``: the root in ``0 < b < min(1, b_max)`` of

        b (1 + 4 r sigma_w^2 / (pi A (1 - xi(b)))) = 1,   xi(b) = 4 u sigma_w^2 b^2 / (pi A),

    ``A = 1 + 2 sigma_w^2``, ``b_max = sqrt(pi A / (4 u sigma_w^2))`` (``xi = 1``). The left
    side rises from 0 to infinity, so the root is unique. ``u = 0`` gives the NNGP's ``b``."""
    u = _number("interaction", interaction, positive=False)
    r = _number("gp_ratio", gp_ratio, positive=False)
    sw2 = _number("weight_variance", weight_variance)
    if u < 0 or r < 0:
        raise ValueError(f"interaction and gp_ratio must be >= 0, got {u}, {r}")
    a = 1 + 2 * sw2
    hi = 1.0 if u == 0 else min(1.0, math.sqrt(math.pi * a / (4 * u * sw2)))

    def fn(b):
        if b >= hi and hi < 1.0:
            return math.inf
        g, _ = _gfl_g(b, u, sw2)
        return b * (1 + r * g) - 1
    return optimize.brentq(fn, 0.0, hi * (1 - 1e-15) if hi < 1.0 else 1.0, xtol=1e-16)


def droplet_overlap(b, c, weight_variance=0.5):
    """``(h(q*), q*)``: the interior maximum of ``h(q) = (b - 2 c q^2 / D)^2 / D`` over ``q > 0``
    (``D = A + 2 q^2``, ``A = 1 + 2 sigma_w^2``). For ``c < 0`` and ``c < b < -2c`` it sits at
    ``q*^2 = A (-2c - b) / (2 (b - c))`` with ``h(q*) = 4 (b - c)^3 / (27 (-c) A)`` (for
    ``b >= 0`` the maximum over all ``q > 0``); otherwise ``h`` has no interior maximum and its
    value at ``q = 0``, ``(b^2 / A, 0)``, is returned. ValueError for ``c >= 0``. A droplet
    saddle beats ``q = 0`` when ``h(q*) > h_c = pi / (4 u sigma_w^2)``."""
    a = 1 + 2 * weight_variance
    if c < b < -2 * c:
        return 4 * (b - c) ** 3 / (27 * (-c) * a), math.sqrt(a * (-2 * c - b) / (2 * (b - c)))
    if c >= 0:
        raise ValueError(f"droplet_overlap: the closed form needs c < 0 (epsilon < 0), got "
                         f"c={c}")
    return b * b / a, 0.0


def _check_epsilon(eps):
    if not eps < 0:
        raise ValueError(f"epsilon: the large-d closed forms need epsilon < 0 (the paper's "
                         f"case), got {eps}; use mean_field for epsilon >= 0")


def large_d(problem: TeacherStudent, n_samples) -> LargeD:
    """The ``d -> inf`` adaptive-kernel solution at ``n`` samples (module docstring, "Large d").

    GFL if GFL's ``b`` (:func:`gfl_discrepancy`) leaves ``max_q h < h_c``; otherwise the mixed
    phase GMFL-I: for ``c`` in ``(epsilon, 0)`` the degenerate droplet has
    ``D* = (4 c^2 A^2 / h_c)^(1/3)``, ``q*^2 = (D* - A) / 2``, ``b = -2 c (A - q*^2) / D*``, and
    GP regression ``(I + r diag(g(b), 0) + r rho J* J*^T) t = y`` (``t = (b, sqrt6 c)``,
    ``y = (1, sqrt6 epsilon)``) holds iff ``e = y - (I + r diag(g, 0)) t`` is parallel to
    ``J* = J(q*)``; its first root from ``c = epsilon`` is found by scanning and bisection, and
    ``rho = e . J* / (r (t . J*) |J*|^2)``. Needs ``epsilon < 0``; raises RuntimeError where the
    mixed phase leaves the closed forms' domain (``b < 0``, far past the transition).

    Rubin, Seroussi & Ringel (2024), arXiv:2310.03789, Sec. 3.1 (Claims I-IV).
    """
    problem = TeacherStudent(*problem).validate()
    n = _number("n_samples", n_samples)
    sw2, eps = problem.weight_variance, problem.epsilon
    _check_epsilon(eps)
    u, r = problem.interaction(n), problem.gp_ratio(n)
    a = 1 + 2 * sw2
    hc = math.pi / (4 * u * sw2)
    b = gfl_discrepancy(u, r, sw2)
    hmax, qs = droplet_overlap(b, eps, sw2)
    if hmax <= hc:
        _, xi = _gfl_g(b, u, sw2)
        return LargeD("GFL", b, eps, 0.0, qs, xi, population_error(b, eps), u, r)
    y = np.array([1.0, SQRT6 * eps])

    def parts(c):
        dstar = (4 * c * c * a * a / hc) ** (1 / 3)
        s = (dstar - a) / 2
        if s <= 0:
            return None
        bb = -2 * c * (a - s) / dstar
        if bb * bb >= a * hc:                                   # xi >= 1: q = 0 unstable
            return None
        g, xi = _gfl_g(bb, u, sw2)
        j = hermite_projections(math.sqrt(s), sw2 + s)
        t = np.array([bb, SQRT6 * c])
        e = y - t - r * np.array([g * bb, 0.0])
        return bb, math.sqrt(s), xi, j, t, e

    def residual(c):
        p = parts(c)
        if p is None:
            return math.nan
        j, e = p[3], p[5]
        return float(j[0] * e[1] - j[1] * e[0])

    grid = eps * (1 - np.linspace(0.0, 1.0, 2001)[1:-1])      # c from epsilon towards 0
    prev_c, prev_v = eps * (1 - 1e-12), residual(eps * (1 - 1e-12))
    root = None
    for c in grid:
        v = residual(c)
        if not math.isfinite(v):
            continue
        if math.isfinite(prev_v) and v * prev_v <= 0:
            root = optimize.brentq(residual, prev_c, c, xtol=1e-15)
            break
        prev_c, prev_v = c, v
    if root is None:
        raise RuntimeError(f"large_d: no mixed-phase solution at n={n} (u={u:.4g}, r={r:.4g}) "
                           "inside the closed forms' domain")
    bb, qs, xi, j, t, e = parts(root)
    rho = float(e @ j / (r * (t @ j) * (j @ j)))
    if bb < 0 or rho < 0:
        raise RuntimeError(f"large_d: the mixed phase at n={n} leaves the closed forms' domain "
                           f"(b={bb:.3g}, rho={rho:.3g})")
    return LargeD("GMFL-I", bb, float(root), rho, qs, xi, population_error(bb, root), u, r)


def critical_interaction(gp_ratio, weight_variance=0.5, epsilon=-0.3) -> float:
    """``u_c`` at fixed ``r``: the ``u`` at which GFL's ``b`` brings a droplet saddle level with
    ``q = 0``, ``4 (b - epsilon)^3 / (27 (-epsilon) A) = pi / (4 u sigma_w^2)`` (Claim IV;
    the paper quotes ``u_c = 30.2`` for ``epsilon = -0.3`` at its Fig. 2 network)."""
    r = _number("gp_ratio", gp_ratio)
    sw2 = _number("weight_variance", weight_variance)
    _check_epsilon(epsilon)

    def gap(log_u):
        u = math.exp(log_u)
        return droplet_overlap(gfl_discrepancy(u, r, sw2), epsilon, sw2)[0] - math.pi / (
            4 * u * sw2)
    return math.exp(optimize.brentq(gap, math.log(1e-6), math.log(1e8), xtol=1e-14))


def critical_samples(problem: TeacherStudent) -> float:
    """``n_c``: the sample size at which the large-``d`` theory leaves GFL, with ``d, N,
    sigma^2, sigma_a^2`` fixed (``u ~ n^2``, ``r ~ n``; the gap ``max h - h_c`` rises in
    ``n``)."""
    problem = TeacherStudent(*problem).validate()
    sw2, eps = problem.weight_variance, problem.epsilon
    _check_epsilon(eps)

    def gap(log_n):
        n = math.exp(log_n)
        u, r = problem.interaction(n), problem.gp_ratio(n)
        return droplet_overlap(gfl_discrepancy(u, r, sw2), eps, sw2)[0] - math.pi / (
            4 * u * sw2)
    return math.exp(optimize.brentq(gap, math.log(1e-8), math.log(1e12), xtol=1e-14))
