"""Droplets of good representations: grokking as a first-order phase transition.

Rubin, Seroussi & Ringel, "Grokking as a First Order Phase Transition in Two Layer Networks"
(ICLR 2024, arXiv:2310.03789; first titled "Droplets of Good Representations"), Sec. 3.1 and
App. D: the cubic teacher-student model.

The model. Inputs ``x ~ N(0, I_d)``, a random unit teacher direction ``w*``, ``z = w* . x``,
target ``y = He1(z) + epsilon He3(z)``; the student ``f(x) = sum_{i<=N} a_i erf(w_i . x)`` with
the prior ``w_i ~ N(0, sigma_w^2 / d I)``, ``a_i ~ N(0, sigma_a^2 / N)`` (mean-field readout)
and the Gaussian likelihood of noise ``sigma^2``. Training is Langevin dynamics with weight
decay (the paper's eq. 6), whose stationary law is this posterior: the unadjusted Langevin
algorithm ``theta <- theta - eta grad U + sqrt(2 eta) xi`` on
``U = sum_mu (f(x_mu) - y_mu)^2 / (2 sigma^2) + |w_hat|^2 / 2 + |a_hat|^2 / 2`` in whitened
coordinates ``w = sqrt(sigma_w^2 / d) w_hat``, ``a = sqrt(sigma_a^2 / N) a_hat`` (a linear
change of variables: layer-wise step sizes, the same stationary law; the Gaussian kicks ``xi``
are drawn with NumPy from the seed and the chunk's index, so a resumed run replays them).
Every network starts from the prior; ``burn_in`` steps are discarded and the next ``steps`` are
measured every ``record_every`` steps. ``chains`` networks per sample size, each on its own
data set (nested across ``n``: chain ``c`` uses the first ``n`` points of one draw).

The order parameter (the paper's Fig. 2a-b, 4): the overlaps ``q_i = w_i . w*`` of all hidden
units, pooled over chains and measurement times. Below the transition their law is one
Gaussian around 0 (GFL); past it a second population, the droplets, sits near ``|q| ~ 1``
(GMFL-I, the mixed phase). Measured: the fraction of units with ``|q| > 0.5``, the histogram of
``q``, its second mode and the mode's contrast over the valley. Learning (Fig. 2c, 5, 6): the
posterior-mean output ``fbar`` (the time average of ``f``), its test error on ``n_test`` fresh
points, and its exact projections on the teacher's parts, ``linear = E[fbar He1]`` and
``cubic = E[fbar He3] / (6 epsilon)`` (closed forms :func:`limits.adaptive_kernel.erf_moments`
per unit, averaged over time), the learned fractions ``1 - b`` and ``1 - c / epsilon``. The
infinite-width baseline: GP regression with the same network's NNGP kernel (the arcsine kernel,
equal to :mod:`ntk.stax`'s ``Dense -> Erf -> Dense``) on the same data.

The theory (:mod:`limits.adaptive_kernel`): the large-``d`` critical sample size ``n_c``
(sample sizes are set as ``n / n_c``), the droplet density ``rho`` and overlap ``q*`` of the
mixed phase, and the finite-``d`` mean-field solution at every ``n`` (the law of ``q``, the
specialised fraction, ``b``, ``c`` and the test error ``b^2 + 6 c^2``). A hot start checks that
the droplets are an equilibrium state: ``hot_chains`` extra networks at the largest ``n`` start
with half their units at ``q = 1`` (on the cold chains' data, other noise).

Setting. The paper's App. D teacher (``epsilon = -1.2``, ``sigma_w^2 = 0.5``) at
``sigma^2 = 1`` and ``sigma_a^2 = 0.12``: the transition sits at ``u = n^2 sigma_a^2 /
(sigma^4 d N) ~ 4.2``, ``r = n sigma_a^2 / (d sigma^2) ~ 0.88`` (App. D's ``r``), ``n_c ~ 4.6
N``. Scaled down from the paper's ``d = 150``, ``N = 700 - 2800`` (Fig. 2: 200 networks,
3.6e5 epochs): quick ``d = 20``, ``N = 32``, ``n / n_c`` in ``{0.5, 1, 2}``, 4 chains, 1,400
steps (400 burn-in); full ``d = 32``, ``N = 48``, ``n / n_c`` in ``{0.5 .. 2.5}`` (7 values),
16 chains, 8,000 steps (2,000 burn-in). At these ``d`` the transition is rounded (the
saddle-point weight is ``exp(-d Shat)``): the finite-``d`` theory, not the ``d -> inf`` one, is
the comparison.

Claims (thresholds fixed from the paper and its theory before the recorded runs; the paper
quotes no droplet fractions, its theory gives ``rho / d``, 0.1 - 0.16 at ``2 n_c`` here):

* GFL below the transition: at ``n = n_c / 2`` at most 2 % of the units have ``|q| > 0.5``
  (the Gaussian tail at ``d = 20``; the paper: a single saddle at ``q = 0``).
* The droplets form at the transition: the fraction rises at least 5-fold from the smallest to
  the largest ``n``, and reaches half its largest-``n`` value within ``[0.6, 1.4] n_c`` (the
  paper's Fig. 2c: the transition where the theory puts it).
* First order: past the transition the law of ``|q|`` has a second mode at ``|q|`` in
  ``[0.7, 1.7]`` (the paper: "roughly at +-|w*|^2 = +-1"), at least twice the density of the
  valley between the populations.
* The mixed phase: at every ``n > n_c`` both populations coexist (2 % - 50 % droplets), and
  the hot start relaxes to the cold start's fraction within 0.03 (the droplet fraction is set
  by the self-consistency, the paper's Sec. 2.4.1, not by the initial state).
* Grokking: the cubic part is not learned at ``n_c / 2`` (at most 2 %) and is past the
  transition (at least 4 % at the largest ``n``; theory 8.6 %); the test error falls at least
  15 % from the smallest to the largest ``n`` and ends at most 0.9 times the NNGP's (theory
  0.8: the finite network beats its infinite-width GP).
* The theory (the paper's Fig. 2: theory against Langevin networks): at every ``n`` the
  measured droplet fraction and learned cubic fraction are within 0.02 plus two standard
  errors (over chains) of the finite-``d`` mean-field values, and the test error within 15 %
  of ``b^2 + 6 c^2`` (an allowance for what the equivalent-kernel theory leaves out, the
  variance of a finite sample: the paper says it "washes out the generalization phenomena").

Not claimed: the learned fraction of the linear part (figure ``learning``), which the
equivalent-kernel theory gets only roughly at these ``n / d`` (4 - 20): measured 0.24 - 1.22
against 0.16 - 1.12 at full size, 0.12 - 0.81 against 0.17 - 1.01 at quick size.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import erf
from threadpoolctl import threadpool_limits

from experiments.claims import at_least, at_most, claim, each, within
from experiments.loop import train
from limits import adaptive_kernel as ak

SUMMARY = ("Rubin, Seroussi & Ringel 2024: Langevin-trained two-layer erf networks on a cubic "
           "teacher grow droplets of teacher-aligned units past the adaptive-kernel theory's "
           "critical sample size (a first-order transition with a mixed phase); the cubic "
           "part is learned and the test error falls there")
PAPER = "rubin2024droplets"
CITATION = ("Rubin, N., Seroussi, I. & Ringel, Z. (2024). Grokking as a First Order Phase "
            "Transition in Two Layer Networks (first titled: Droplets of Good Representations). "
            "ICLR 2024, arXiv:2310.03789.")

SPECIALIZED = 0.5          # |q| above this: a droplet (half the paper's q* ~ |w*|^2 = 1)
OVERLAP_RANGE = 2.4        # histogram of q on [-2.4, 2.4] ...
BINS = 96                  # ... in bins of 0.05

# claim thresholds (module docstring)
GFL_FRACTION = 0.02
JUMP = 5.0
TRANSITION_WINDOW = (0.6, 1.4)
MODE_WINDOW = (0.7, 1.7)
MODE_CONTRAST = 2.0
MIXED_FRACTIONS = (0.02, 0.5)
HOT_COLD = 0.03
CUBIC_BELOW, CUBIC_ABOVE = 0.02, 0.04
ERROR_DROP = 0.85
NNGP_RATIO = 0.9
THEORY_FRACTION = 0.02
THEORY_CUBIC = 0.02
THEORY_ERROR = 0.15


@dataclasses.dataclass(frozen=True)
class Config:
    input_dim: int = 20                # d
    width: int = 32                    # N
    noise: float = 1.0                 # sigma^2
    readout_variance: float = 0.12     # sigma_a^2 (E a_i^2 = sigma_a^2 / N)
    weight_variance: float = 0.5       # sigma_w^2 (E w_i w_i^T = sigma_w^2 / d I)
    epsilon: float = -1.2
    sample_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)     # n / n_c
    chains: int = 4                    # networks (data sets) per n
    hot_chains: int = 4                # extra networks at the largest n, half their units at q = 1
    step_size: float = 0.05            # Langevin eta (whitened coordinates)
    burn_in: int = 400
    steps: int = 1000                  # measured steps after the burn-in
    record_every: int = 50
    n_test: int = 1000
    theory_points: int = 13            # finite-d theory curve over n / n_c in [0.3, max ratio]
    checkpoint_every: int = 5          # in chunks of record_every steps
    seed: int = 0

    @classmethod
    def quick(cls) -> "Config":
        return cls()

    @classmethod
    def full(cls) -> "Config":
        return cls(input_dim=32, width=48, sample_ratios=(0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5),
                   chains=16, hot_chains=16, burn_in=2000, steps=6000, n_test=4000,
                   theory_points=41)

    def validate(self) -> None:
        for name in ("input_dim", "width", "chains", "record_every", "n_test", "burn_in",
                     "steps", "checkpoint_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("noise", "readout_variance", "weight_variance", "step_size"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not self.epsilon < 0:
            raise ValueError(f"epsilon must be < 0 (the paper's case; the large-d theory "
                             f"needs it), got {self.epsilon}")
        r = self.sample_ratios
        if (len(r) < 3 or min(r) <= 0 or sorted(set(r)) != list(r) or r[0] >= 1 or r[-1] <= 1):
            raise ValueError(f"sample_ratios must be >= 3 increasing values n / n_c, the first "
                             f"below 1 and the last above 1, got {r}")
        if self.burn_in % self.record_every or self.steps % self.record_every:
            raise ValueError(f"burn_in={self.burn_in} and steps={self.steps} must be multiples "
                             f"of record_every={self.record_every}")
        if not 0 <= self.hot_chains <= self.chains:
            raise ValueError(f"hot_chains must be in [0, chains={self.chains}] (they reuse the "
                             f"cold chains' data), got {self.hot_chains}")
        if self.theory_points < 3:
            raise ValueError(f"theory_points must be >= 3, got {self.theory_points}")

    def problem(self) -> ak.TeacherStudent:
        return ak.TeacherStudent(self.input_dim, self.width, self.noise, self.readout_variance,
                                 self.weight_variance, self.epsilon)


# ------------------------------------------------------------------------------- the network


def teacher(x, w_star, epsilon):
    """``y = He1(z) + epsilon He3(z)``, ``z = x . w*`` (the paper's eq. 1)."""
    z = x @ w_star
    return z + epsilon * (z ** 3 - 3 * z)


def network(w, a, x):
    """``f(x) = sum_i a_i erf(w_i . x)``; w (N, d), a (N,), x (P, d) -> (P,) (eq. 2)."""
    return erf(x @ w.T) @ a


def potential(theta, x, y, mask, scales, noise):
    """``U = sum_mu mask_mu (f(x_mu) - y_mu)^2 / (2 sigma^2) + |w_hat|^2 / 2 + |a_hat|^2 / 2``
    with ``w = scales[0] w_hat``, ``a = scales[1] a_hat``: the negative log posterior in
    whitened coordinates (``mask`` selects the first ``n`` of the padded data)."""
    w_hat, a_hat = theta
    f = network(scales[0] * w_hat, scales[1] * a_hat, x)
    return (0.5 * jnp.sum(mask * (f - y) ** 2) / noise
            + 0.5 * jnp.sum(w_hat ** 2) + 0.5 * jnp.sum(a_hat ** 2))


def langevin_steps(theta, kicks, x, y, mask, scales, noise, step_size):
    """Langevin steps ``theta <- theta - eta grad U + sqrt(2 eta) xi`` for one network, one per
    leading index of ``kicks = (xi_w, xi_a)`` (standard normals, ``(T, N, d)`` and ``(T, N)``)."""
    grad = jax.grad(potential)
    root = jnp.sqrt(2 * step_size).astype(x.dtype)

    def step(th, xi):
        g = grad(th, x, y, mask, scales, noise)
        return (th[0] - step_size * g[0] + root * xi[0],
                th[1] - step_size * g[1] + root * xi[1]), None
    theta, _ = jax.lax.scan(step, theta, kicks)
    return theta


def unit_statistics(w, a, w_star):
    """Per hidden unit: the overlap ``q = w . w*`` and the unit's exact projections on the
    teacher's parts, ``a E[He1(z) erf(w . x)]`` and ``a E[He3(z) erf(w . x)]`` (App. A.4)."""
    q = w @ w_star
    s = 1 + 2 * jnp.sum(w * w, -1)
    i0 = 2 / math.sqrt(math.pi) * q / jnp.sqrt(s)
    return q, a * i0, a * (-2 * i0 * q * q / s)


@jax.jit
def _chunk(state, kicks, data, consts, weight):
    """Langevin steps of every network (one per leading index of ``kicks``, ``(T, B, N, d)`` and
    ``(T, B, N)``), then one measurement added with ``weight`` (0 in the burn-in, 1 after: one
    compiled program for both)."""
    x, y, mask, x_test = data
    w_star, scales, noise, step_size, edges = consts
    theta = jax.vmap(langevin_steps, in_axes=((0, 0), (1, 1), 0, 0, 0, None, None, None))(
        (state["w_hat"], state["a_hat"]), kicks, x, y, mask, scales, noise, step_size)
    w, a = scales[0] * theta[0], scales[1] * theta[1]
    q, lin, cub = jax.vmap(unit_statistics, in_axes=(0, 0, None))(w, a, w_star)
    idx = jnp.clip(jnp.searchsorted(edges, q, side="right") - 1, 0, BINS - 1)
    return dict(
        w_hat=theta[0], a_hat=theta[1], chunk=state["chunk"] + 1,
        hist=state["hist"] + weight * jax.nn.one_hot(idx, BINS, dtype=jnp.float32).sum(1),
        specialized=state["specialized"] + weight * jnp.sum(jnp.abs(q) > SPECIALIZED, -1),
        f_test=state["f_test"] + weight * jax.vmap(network, in_axes=(0, 0, None))(w, a, x_test),
        linear=state["linear"] + weight * lin.sum(-1),
        cubic=state["cubic"] + weight * cub.sum(-1),
        count=state["count"] + weight)


@jax.jit
def _fractions(w_hat, w_star, scale):
    return jnp.mean(jnp.abs(scale * (w_hat @ w_star)) > SPECIALIZED, -1)


# ------------------------------------------------------------------------------- data


def make_data(cfg: Config, ns: list[int]):
    """The teacher, the padded training sets of every network (cold: ``n`` index major, chain
    minor; then the hot chains on the first data sets at the largest ``n``) and a test set."""
    rng = np.random.default_rng([cfg.seed, 0])
    d = cfg.input_dim
    w_star = rng.standard_normal(d)
    w_star /= np.linalg.norm(w_star)
    n_max = ns[-1]
    sets = [np.random.default_rng([cfg.seed, 1, c]).standard_normal((n_max, d))
            for c in range(cfg.chains)]
    x, mask = [], []
    for n in ns:
        for c in range(cfg.chains):
            x.append(sets[c])
            mask.append(np.arange(n_max) < n)
    for c in range(cfg.hot_chains):
        x.append(sets[c])
        mask.append(np.ones(n_max, bool))
    x = np.stack(x).astype(np.float32)
    y = teacher(x, w_star.astype(np.float32), np.float32(cfg.epsilon))
    x_test = np.random.default_rng([cfg.seed, 2]).standard_normal((cfg.n_test, d))
    return {"w_star": w_star, "sets": sets, "x": x, "y": y.astype(np.float32),
            "mask": np.stack(mask).astype(np.float32), "x_test": x_test.astype(np.float32),
            "y_test": teacher(x_test, w_star, cfg.epsilon)}


def init_state(cfg: Config, n_nets: int, w_star: np.ndarray) -> dict:
    """Prior draws in whitened coordinates (``w_hat, a_hat ~ N(0, I)``); the last
    ``hot_chains`` networks get half their units moved to ``q = 1`` along ``w*``."""
    rng = np.random.default_rng([cfg.seed, 3])
    d, width = cfg.input_dim, cfg.width
    w_hat = rng.standard_normal((n_nets, width, d))
    if cfg.hot_chains:
        hot = w_hat[n_nets - cfg.hot_chains:, : width // 2]
        along = hot @ w_star
        hot += (math.sqrt(d / cfg.weight_variance) - along)[..., None] * w_star
    return {"w_hat": jnp.asarray(w_hat, jnp.float32),
            "a_hat": jnp.asarray(rng.standard_normal((n_nets, width)), jnp.float32),
            "chunk": jnp.zeros((), jnp.int32),
            "hist": jnp.zeros((n_nets, BINS), jnp.float32),
            "specialized": jnp.zeros(n_nets, jnp.float32),
            "f_test": jnp.zeros((n_nets, cfg.n_test), jnp.float32),
            "linear": jnp.zeros(n_nets, jnp.float32),
            "cubic": jnp.zeros(n_nets, jnp.float32),
            "count": jnp.zeros((), jnp.float32)}


# ------------------------------------------------------------------------------- baselines


def nngp_kernel(x1, x2, weight_variance, readout_variance):
    """The network's NNGP (Williams 1997): ``K(x, x') = sigma_a^2 (2 / pi) arcsin(2 s(x, x') /
    sqrt((1 + 2 s(x, x)) (1 + 2 s(x', x'))))``, ``s(x, x') = sigma_w^2 x . x' / d``: the
    ``N -> inf`` covariance of ``f`` under the prior (float64 numpy; :mod:`ntk.stax`'s
    ``Dense(W_std = sigma_w) -> Erf -> Dense(W_std = sigma_a)`` NNGP)."""
    x1, x2 = np.asarray(x1, np.float64), np.asarray(x2, np.float64)
    d = x1.shape[1]
    s12 = weight_variance * x1 @ x2.T / d
    s1 = 1 + 2 * weight_variance * np.sum(x1 * x1, 1) / d
    s2 = 1 + 2 * weight_variance * np.sum(x2 * x2, 1) / d
    return readout_variance * 2 / math.pi * np.arcsin(2 * s12 / np.sqrt(np.outer(s1, s2)))


def nngp_test_errors(cfg: Config, sets, ns, x_test, y_test, w_star) -> np.ndarray:
    """``(len(ns), chains)`` test MSE of GP regression (noise ``sigma^2``) with the network's
    NNGP (:func:`nngp_kernel`) on each chain's first ``n`` points: the infinite-width limit of
    the same posterior."""
    out = np.zeros((len(ns), cfg.chains))
    with threadpool_limits(1):
        for c in range(cfg.chains):
            out[:, c] = _nngp_errors_one(cfg, sets[c], ns, x_test, y_test, w_star)
    return out


def _nngp_errors_one(cfg, data_set, ns, x_test, y_test, w_star) -> np.ndarray:
    x = np.asarray(data_set[: ns[-1]], np.float64)
    y = teacher(x, w_star, cfg.epsilon)
    k_train = nngp_kernel(x, x, cfg.weight_variance, cfg.readout_variance)
    k_test = nngp_kernel(x_test, x, cfg.weight_variance, cfg.readout_variance)
    out = np.zeros(len(ns))
    for i, n in enumerate(ns):
        alpha = np.linalg.solve(k_train[:n, :n] + cfg.noise * np.eye(n), y[:n])
        g = k_test[:, :n] @ alpha
        out[i] = population_error(np.mean(g * g), np.mean(g * y_test), cfg.epsilon)
    return out


def population_error(second_moment, cross, epsilon):
    """``E (g - y)^2 = E g^2 - 2 E[g y] + E y^2`` with ``E y^2 = 1 + 6 epsilon^2`` exact. A
    plain test-set mean of ``(g - y)^2`` inherits the heavy tail of ``He3(z)^2`` (relative
    standard error ~ 10 / sqrt(n_test)); the network's ``E[g y]`` is exact (closed forms per
    unit) and only the bounded ``g^2`` is averaged over test points."""
    return second_moment - 2 * cross + 1 + 6 * epsilon ** 2


# ------------------------------------------------------------------------------- analysis


def folded_density(hist) -> tuple[np.ndarray, np.ndarray]:
    """The signed-``q`` histogram folded to ``|q|``: bin centres and a density (integral 1)."""
    h = np.asarray(hist, float)
    half = BINS // 2
    folded = h[half:] + h[:half][::-1]
    width = 2 * OVERLAP_RANGE / BINS
    centres = (np.arange(half) + 0.5) * width
    return centres, folded / max(folded.sum(), 1.0) / width


def second_mode(centres, density) -> tuple[float, float]:
    """The droplet mode of the ``|q|`` density: the highest local maximum (of the 3-bin running
    mean) beyond ``SPECIALIZED``, and its contrast over the lowest density between 0.2 and it.
    ``(nan, nan)`` if there is none."""
    smooth = np.convolve(density, np.ones(3) / 3, mode="same")
    inner = np.arange(1, len(smooth) - 1)
    peaks = inner[(smooth[inner] > smooth[inner - 1]) & (smooth[inner] >= smooth[inner + 1])
                  & (centres[inner] > SPECIALIZED)]
    if not len(peaks):
        return math.nan, math.nan
    p = peaks[np.argmax(smooth[peaks])]
    valley = smooth[(centres >= 0.2) & (centres <= centres[p])].min()
    return float(centres[p]), float(smooth[p] / max(valley, 1e-12))


def theory_binned(mf: ak.MeanField) -> np.ndarray:
    """The finite-``d`` law of ``|q|`` averaged over the histogram's bins (a density)."""
    half = BINS // 2
    width = 2 * OVERLAP_RANGE / BINS
    edges = np.arange(half + 1) * width
    q, p = mf.overlaps, 2 * mf.density          # density of |q|
    cum = np.concatenate([[0.0], np.cumsum((p[1:] + p[:-1]) / 2 * np.diff(q))])
    return np.diff(np.interp(edges, q, cum)) / width


def _half_crossing(ratios, fractions) -> float:
    """``n / n_c`` where the fraction first reaches half its last value (linear in log n)."""
    f = np.asarray(fractions, float)
    target = f[-1] / 2
    for i in range(1, len(f)):
        if f[i] >= target > f[i - 1]:
            t = (target - f[i - 1]) / (f[i] - f[i - 1])
            return float(math.exp((1 - t) * math.log(ratios[i - 1]) + t * math.log(ratios[i])))
    return float(ratios[0]) if f[0] >= target else math.nan


def _theory_sweep(problem, ns):
    """The finite-``d`` solution along ``ns`` (continuation from the smallest ``n``)."""
    out, start = [], None
    for n in ns:
        mf = ak.mean_field(problem, n, start=start, grid_points=4001, overlap_max=3.0)
        start = (mf.b, mf.c)
        out.append(mf)
    return out


def _large_d(problem, n):
    try:
        return ak.large_d(problem, n)
    except RuntimeError:
        return None


# ------------------------------------------------------------------------------- the study


def run(cfg: Config, ctx) -> dict:
    cfg.validate()
    problem = cfg.problem()
    n_c = ak.critical_samples(problem)
    ratios = list(cfg.sample_ratios)
    ns = [max(1, int(round(r * n_c))) for r in ratios]
    data = make_data(cfg, ns)
    n_cold = len(ns) * cfg.chains
    n_nets = n_cold + cfg.hot_chains
    w_star32 = jnp.asarray(data["w_star"], jnp.float32)
    scales = (jnp.float32(math.sqrt(cfg.weight_variance / cfg.input_dim)),
              jnp.float32(math.sqrt(cfg.readout_variance / cfg.width)))
    edges = jnp.linspace(-OVERLAP_RANGE, OVERLAP_RANGE, BINS + 1, dtype=jnp.float32)
    device_data = tuple(jnp.asarray(data[k]) for k in ("x", "y", "mask", "x_test"))
    consts = (w_star32, scales, jnp.float32(cfg.noise), jnp.float32(cfg.step_size), edges)
    groups = [np.arange(i * cfg.chains, (i + 1) * cfg.chains) for i in range(len(ns))]
    if cfg.hot_chains:
        groups.append(np.arange(n_cold, n_nets))
    names = [f"fraction_n{i}" for i in range(len(ns))] + (["fraction_hot"] if cfg.hot_chains
                                                          else [])

    def record(state, step):
        frac = np.asarray(_fractions(state["w_hat"], w_star32, scales[0]))
        return {name: float(frac[g].mean()) for name, g in zip(names, groups)}

    def kicks(state):
        """The chunk's Gaussian kicks, drawn with NumPy from the seed and the chunk's index
        (so a resumed run replays them)."""
        rng = np.random.default_rng([cfg.seed, 4, int(state["chunk"])])
        t = cfg.record_every
        return (rng.standard_normal((t, n_nets, cfg.width, cfg.input_dim), np.float32),
                rng.standard_normal((t, n_nets, cfg.width), np.float32))

    def phase(task, n_steps, measure, init):
        weight = jnp.float32(1.0 if measure else 0.0)
        return train(ctx, task, init_state=init,
                     chunk_fn=lambda s: _chunk(s, kicks(s), device_data, consts, weight),
                     n_steps=n_steps, chunk=cfg.record_every, record=record,
                     checkpoint_every=cfg.checkpoint_every)

    burned, hist_burn, _ = phase("burn-in", cfg.burn_in, False,
                                 lambda: init_state(cfg, n_nets, data["w_star"]))
    state, hist_meas, _ = phase("measure", cfg.steps, True, lambda: burned)

    count = float(state["count"])
    per_net_fraction = np.asarray(state["specialized"], float) / (count * cfg.width)
    f_bar = np.asarray(state["f_test"], np.float64) / count
    linear = np.asarray(state["linear"], float) / count              # E[fbar He1]
    he3 = np.asarray(state["cubic"], float) / count                  # E[fbar He3]
    cubic = he3 / (6 * cfg.epsilon)
    test_err = population_error(np.mean(f_bar ** 2, -1), linear + cfg.epsilon * he3,
                                cfg.epsilon)
    hist = np.asarray(state["hist"], float)

    def group_stats(values, g):
        v = values[g]
        return float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else 0.0

    nngp = nngp_test_errors(cfg, data["sets"], ns, data["x_test"], data["y_test"],
                            data["w_star"])
    theory = _theory_sweep(problem, ns)
    curve_ratios = np.geomspace(0.3, ratios[-1], cfg.theory_points)
    curve = _theory_sweep(problem, curve_ratios * n_c)
    limits_ = [_large_d(problem, r * n_c) for r in curve_ratios]
    onset = ak.large_d(problem, n_c * (1 + 1e-9))

    per_n = []
    for i, (n, g) in enumerate(zip(ns, groups[:len(ns)])):
        centres, dens = folded_density(hist[g].sum(0))
        mode, contrast = second_mode(centres, dens)
        th_dens = theory_binned(theory[i])
        th_mode, _ = second_mode(centres, th_dens)
        frac, frac_sem = group_stats(per_net_fraction, g)
        err, err_sem = group_stats(test_err, g)
        ld = _large_d(problem, n)
        per_n.append({
            "n": n, "ratio": ratios[i], "interaction": problem.interaction(n),
            "gp_ratio": problem.gp_ratio(n),
            "fraction": frac, "fraction_sem": frac_sem,
            "fraction_per_chain": per_net_fraction[g].tolist(),
            "histogram": hist[g].sum(0).tolist(),
            "density": dens.tolist(), "mode": mode, "mode_contrast": contrast,
            "test_error": err, "test_error_sem": err_sem,
            "linear_learned": group_stats(linear, g)[0],
            "cubic_learned": group_stats(cubic, g)[0],
            "cubic_learned_sem": group_stats(cubic, g)[1],
            "nngp_test_error": float(nngp[i].mean()),
            "theory_fraction": theory[i].specialized_fraction(SPECIALIZED),
            "theory_density": th_dens.tolist(), "theory_mode": th_mode,
            "theory_b": theory[i].b, "theory_c": theory[i].c,
            "theory_test_error": theory[i].test_error,
            "theory_linear_learned": theory[i].linear_learned,
            "theory_cubic_learned": theory[i].cubic_learned,
            "large_d_phase": ld.phase if ld else "outside",
            "large_d_fraction": ld.droplet_density / cfg.input_dim if ld else math.nan,
            "large_d_overlap": ld.droplet_overlap if ld else math.nan,
        })

    fractions = [p["fraction"] for p in per_n]
    above = [p for p in per_n if p["ratio"] > 1]
    hot = {}
    if cfg.hot_chains:
        cold_last = groups[len(ns) - 1][: cfg.hot_chains]
        hot = {"fraction_hot": float(per_net_fraction[groups[-1]].mean()),
               "fraction_cold_paired": float(per_net_fraction[cold_last].mean()),
               "hot_minus_cold": float(per_net_fraction[groups[-1]].mean()
                                       - per_net_fraction[cold_last].mean())}
    trace = {k: hist_burn[k] + hist_meas[k][1:] for k in names}
    steps_axis = hist_burn["step"] + [cfg.burn_in + s for s in hist_meas["step"][1:]]
    last = per_n[-1]
    return {
        "critical_samples": n_c, "critical_interaction": problem.interaction(n_c),
        "critical_gp_ratio": problem.gp_ratio(n_c), "onset_overlap": onset.droplet_overlap,
        "input_dim": cfg.input_dim, "width": cfg.width, "epsilon": cfg.epsilon,
        "sample_ratios": ratios, "n_samples": ns, "per_n": per_n,
        "bin_centres": folded_density(hist[0])[0].tolist(),
        "fraction_below": per_n[0]["fraction"],
        "fraction_jump": (fractions[-1] / fractions[0] if fractions[0] > 0 else math.inf),
        "transition_ratio": _half_crossing(ratios, fractions),
        "droplet_mode": last["mode"], "droplet_contrast": last["mode_contrast"],
        "mixed_fractions": [p["fraction"] for p in above],
        **hot,
        "cubic_below": per_n[0]["cubic_learned"], "cubic_above": last["cubic_learned"],
        "test_error_ratio": last["test_error"] / per_n[0]["test_error"],
        "nngp_ratio": last["test_error"] / last["nngp_test_error"],
        "theory_fraction_excess": max(abs(p["fraction"] - p["theory_fraction"])
                                      - 2 * p["fraction_sem"] for p in per_n),
        "theory_cubic_excess": max(abs(p["cubic_learned"] - p["theory_cubic_learned"])
                                   - 2 * p["cubic_learned_sem"] for p in per_n),
        "theory_error_gap": max(abs(p["test_error"] / p["theory_test_error"] - 1)
                                for p in per_n),
        "curve": {"ratio": curve_ratios.tolist(),
                  "fraction": [m.specialized_fraction(SPECIALIZED) for m in curve],
                  "test_error": [m.test_error for m in curve],
                  "cubic_learned": [m.cubic_learned for m in curve],
                  "linear_learned": [m.linear_learned for m in curve],
                  "large_d_fraction": [ld.droplet_density / cfg.input_dim if ld else math.nan
                                       for ld in limits_],
                  "large_d_overlap": [ld.droplet_overlap if ld and ld.phase == "GMFL-I"
                                      else math.nan for ld in limits_],
                  "large_d_test_error": [ld.test_error if ld else math.nan for ld in limits_],
                  "large_d_cubic_learned": [1 - ld.c / cfg.epsilon if ld else math.nan
                                            for ld in limits_]},
        "trace": {"step": steps_axis, **trace},
    }


# ------------------------------------------------------------------------------- figures


def _f(x) -> float:
    return float(x)


def figures(results: dict) -> dict:
    from matplotlib.figure import Figure
    m = results["metrics"]
    per_n = m["per_n"]
    centres = np.asarray(m["bin_centres"], float)
    as_f = lambda xs: np.asarray([_f(v) for v in xs], float)

    # 1. the law of the overlap: -log p(|q|), measured and finite-d theory (Fig. 2a-b, 4)
    k = len(per_n)
    fig = Figure(figsize=(3.3 * k, 3.6))
    axes = np.atleast_1d(fig.subplots(1, k, sharey=True))
    for ax, p in zip(axes, per_n):
        dens, th = as_f(p["density"]), as_f(p["theory_density"])
        with np.errstate(divide="ignore"):
            ax.plot(centres, -np.log(np.where(dens > 0, dens, np.nan)), "o", ms=3,
                    label="Langevin networks")
            ax.plot(centres, -np.log(np.where(th > 0, th, np.nan)), "-", label="theory (finite d)")
        ax.axvline(SPECIALIZED, color="gray", lw=0.8, ls=":")
        ax.set_xlim(0, 2.2)
        ax.set_ylim(-3, 14)
        ax.set_title(f"n = {p['n']} ({_f(p['ratio']):.2g} n_c): droplets "
                     f"{100 * _f(p['fraction']):.1f}%", fontsize=9)
        ax.set_xlabel("|q| = |w . w*|")
    axes[0].set_ylabel("-log p(|q|)")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"The hidden units' teacher overlap: one Gaussian below n_c = "
                 f"{_f(m['critical_samples']):.0f}, a second population (droplets) above",
                 fontsize=10)
    fig.subplots_adjust(top=0.82, bottom=0.15, wspace=0.08)

    # 2. the order parameter against n
    c = m["curve"]
    ratios = as_f([p["ratio"] for p in per_n])
    fig2 = Figure(figsize=(15, 4))
    ax1, ax2, ax3 = fig2.subplots(1, 3)
    ax1.errorbar(ratios, as_f([p["fraction"] for p in per_n]),
                 yerr=as_f([p["fraction_sem"] for p in per_n]), fmt="o", label="measured")
    ax1.plot(as_f(c["ratio"]), as_f(c["fraction"]), "-", label=f"theory, d = {m['input_dim']}")
    ax1.plot(as_f(c["ratio"]), as_f(c["large_d_fraction"]), "--", label="theory, d -> inf "
             "(rho / d)")
    if "fraction_hot" in m:
        ax1.plot([ratios[-1]], [_f(m["fraction_hot"])], "s", mfc="none", ms=8,
                 label="hot start (half the units at q = 1)")
    ax1.axvline(1.0, color="k", lw=0.8, ls=":")
    ax1.set_xlabel("n / n_c")
    ax1.set_ylabel(f"fraction of units with |q| > {SPECIALIZED}")
    ax1.set_title("Droplet fraction (GFL -> GMFL-I at n_c)", fontsize=9)
    ax1.legend(fontsize=7)
    ax2.plot(ratios, as_f([p["mode"] for p in per_n]), "o", label="measured second mode")
    ax2.plot(ratios, as_f([p["theory_mode"] for p in per_n]), "x", label="theory mode, finite d")
    ax2.plot(as_f(c["ratio"]), as_f(c["large_d_overlap"]), "--", label="q*, d -> inf")
    ax2.axvline(1.0, color="k", lw=0.8, ls=":")
    ax2.set_ylim(0, 2)
    ax2.set_xlim(0, 1.05 * ratios[-1])
    ax2.set_xlabel("n / n_c")
    ax2.set_ylabel("droplet overlap |q|")
    ax2.set_title("The droplets sit at finite |q| from the onset (first order)", fontsize=9)
    ax2.legend(fontsize=7)
    t = m["trace"]
    steps = as_f(t["step"])
    for i, p in enumerate(per_n):
        ax3.plot(steps, as_f(t[f"fraction_n{i}"]), "-", lw=1,
                 label=f"n / n_c = {_f(p['ratio']):.2g}")
    if "fraction_hot" in t:
        ax3.plot(steps, as_f(t["fraction_hot"]), "k--", lw=1.2,
                 label=f"hot start, n / n_c = {_f(per_n[-1]['ratio']):.2g}")
    ax3.axvline(_f(results.get("config", {}).get("burn_in", 0)), color="gray", lw=0.8, ls=":")
    ax3.set_xlabel("Langevin step (dotted: end of burn-in)")
    ax3.set_ylabel(f"fraction of units with |q| > {SPECIALIZED}")
    ax3.set_title("An equilibrium value: cold and hot starts agree", fontsize=9)
    ax3.legend(fontsize=7)
    fig2.subplots_adjust(wspace=0.3, bottom=0.14)

    # 3. learning: the cubic part and the test error (Fig. 2c)
    fig3 = Figure(figsize=(10, 4))
    bx1, bx2 = fig3.subplots(1, 2)
    bx1.errorbar(ratios, as_f([p["cubic_learned"] for p in per_n]),
                 yerr=as_f([p["cubic_learned_sem"] for p in per_n]), fmt="o",
                 label="cubic, measured")
    bx1.plot(as_f(c["ratio"]), as_f(c["cubic_learned"]), "-", label="cubic, theory (finite d)")
    bx1.plot(as_f(c["ratio"]), as_f(c["large_d_cubic_learned"]), "--", label="cubic, d -> inf")
    bx1.plot(ratios, as_f([p["linear_learned"] for p in per_n]), "s", label="linear, measured")
    bx1.plot(as_f(c["ratio"]), as_f(c["linear_learned"]), "-", label="linear, theory")
    bx1.axvline(1.0, color="k", lw=0.8, ls=":")
    bx1.set_xlabel("n / n_c")
    bx1.set_ylabel("fraction of the teacher part learned")
    bx1.set_title("The cubic part is learned only past n_c", fontsize=9)
    bx1.legend(fontsize=7)
    bx2.errorbar(ratios, as_f([p["test_error"] for p in per_n]),
                 yerr=as_f([p["test_error_sem"] for p in per_n]), fmt="o",
                 label="network (posterior mean)")
    bx2.plot(as_f(c["ratio"]), as_f(c["test_error"]), "-", label="theory b^2 + 6c^2 (finite d)")
    bx2.plot(ratios, as_f([p["nngp_test_error"] for p in per_n]), "^",
             label="NNGP regression (infinite width)")
    bx2.axvline(1.0, color="k", lw=0.8, ls=":")
    bx2.set_xlabel("n / n_c")
    bx2.set_ylabel("test MSE")
    bx2.set_title("Test error falls past the transition", fontsize=9)
    bx2.legend(fontsize=7)
    fig3.subplots_adjust(wspace=0.3, bottom=0.14)
    return {"overlap_distribution": fig, "order_parameter": fig2, "learning": fig3}


# ------------------------------------------------------------------------------- claims

CLAIMS = (
    claim("gfl_below_transition",
          "n = n_c / 2 (GFL): fraction of hidden units with |w . w*| > 0.5 (one Gaussian "
          "around q = 0; Claim IV, Fig. 2a)",
          "fraction_below", at_most(GFL_FRACTION)),
    claim("droplets_form",
          "droplet fraction at the largest n over that at n_c / 2",
          "fraction_jump", at_least(JUMP)),
    claim("transition_at_predicted_n",
          "n / n_c where the measured droplet fraction reaches half its largest-n value "
          "(n_c from the d -> inf theory; Fig. 2c)",
          "transition_ratio", within(*TRANSITION_WINDOW)),
    claim("droplets_at_finite_overlap",
          "largest n: the second mode of the law of |q| (first order: 'roughly at "
          "+-|w*|^2 = +-1', Claim IV)",
          "droplet_mode", within(*MODE_WINDOW)),
    claim("two_populations",
          "largest n: density at the second mode over the valley between the populations",
          "droplet_contrast", at_least(MODE_CONTRAST)),
    claim("mixed_phase_coexistence",
          "every n > n_c: fraction of droplets (both populations coexist: GMFL-I, Fig. 1)",
          "mixed_fractions", each(within(*MIXED_FRACTIONS))),
    claim("droplet_fraction_is_equilibrium",
          "largest n: hot start (half the units at q = 1) minus cold start droplet fraction, "
          "paired data (the mixed phase's fraction is set by self-consistency, Sec. 2.4.1)",
          "hot_minus_cold", within(-HOT_COLD, HOT_COLD)),
    claim("cubic_not_learned_before",
          "n = n_c / 2: learned fraction of the cubic part, 1 - c / epsilon",
          "cubic_below", at_most(CUBIC_BELOW)),
    claim("cubic_learned_after",
          "largest n: learned fraction of the cubic part (Fig. 2c, 6)",
          "cubic_above", at_least(CUBIC_ABOVE)),
    claim("test_error_falls",
          "test MSE of the posterior mean, largest n over n_c / 2 (Fig. 5)",
          "test_error_ratio", at_most(ERROR_DROP)),
    claim("beats_the_nngp",
          "largest n: network test MSE over NNGP regression's (finite width beats the GP limit)",
          "nngp_ratio", at_most(NNGP_RATIO)),
    claim("theory_droplet_fraction",
          "largest |measured - finite-d mean-field| droplet fraction over n, less two "
          "standard errors (over chains)",
          "theory_fraction_excess", at_most(THEORY_FRACTION)),
    claim("theory_cubic_part",
          "largest |measured - finite-d mean-field| learned cubic fraction over n, less two "
          "standard errors (Fig. 2c)",
          "theory_cubic_excess", at_most(THEORY_CUBIC)),
    claim("theory_test_error",
          "largest |measured / mean-field - 1| test MSE over n (the equivalent-kernel theory "
          "leaves out the finite-n variance)",
          "theory_error_gap", at_most(THEORY_ERROR)),
)
