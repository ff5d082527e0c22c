"""Grokking in linear estimators: exact gradient-descent dynamics of a teacher-student model.

Levi, Beck & Bar-Sinai 2023, "Grokking in linear estimators -- a solvable model that groks
without understanding" (arXiv:2310.16441).

Setup. Inputs ``x ~ N(0, I_d)``, teacher ``y = T . x``, linear student ``S`` trained by full-batch
GD on ``L_train = (1/N) sum_i ((S - T) . x_i)^2 = D^T Sigma D`` with ``D = S - T`` and the sample
covariance ``Sigma = X^T X / N``. The generalisation loss is ``L_gen = E_x (D . x)^2 = |D|^2``.
GD ``D_{t+1} = (I - 2 eta Sigma) D_t`` is solved exactly in the eigenbasis of ``Sigma``:

    L_train(t) = sum_k s_k (1 - 2 eta s_k)^{2t} c_k^2,   L_gen(t) = sum_k (1 - 2 eta s_k)^{2t} c_k^2,

``c = V^T D_0``. With ``lambda = d / N`` the spectrum of ``Sigma`` fills the Marchenko-Pastur
interval ``[(1 - sqrt(lambda))^2, (1 + sqrt(lambda))^2]``; at late times both losses are
dominated by the smallest eigenvalue ``s_- = (1 - sqrt(lambda))^2`` and ``L_train / L_gen -> s_-``.
The train loss therefore crosses a small threshold ``epsilon`` before the generalisation loss
does, by (gradient-flow limit ``(1 - 2 eta s)^{2t} ~ exp(-4 eta s t)``, ``epsilon -> 0``)::

    t_grok = t_gen - t_train ~ log(1/s_-) / (4 eta s_-) = log(1/(1 - sqrt(lambda))) / (2 eta (1 - sqrt(lambda))^2).

For ``lambda > 1``, ``Sigma`` has a null space of dimension ``d - N`` that GD never touches, and
for an isotropic ``D_0`` with ``|D_0| = 1`` the generalisation loss plateaus at
``E[(d - N)/d] = 1 - 1/lambda``.

We measure ``t_train`` / ``t_gen`` as the first integer step where each loss (``|D_0| = 1``) falls
below ``epsilon`` -- the loss form of the paper's accuracy threshold; in the ``epsilon -> 0``
limit both give the formula above.

Scaled down: exact GD dynamics at d = 200, lambda = d/N in 0.1 .. 0.6, epsilon = 1e-8, 5 draws
per lambda (full: d = 1000, lambda = 0.05 .. 0.8, 10 draws).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from experiments.claims import at_least, at_most, claim, close_to, greater

SUMMARY = ("Levi, Beck & Bar-Sinai: exact GD dynamics of a linear teacher-student model; "
           "grokking time vs their formula as lambda = d / N_train varies")
PAPER = "levi2023linear"
CITATION = ("Levi, N., Beck, A. & Bar-Sinai, Y. (2023). Grokking in linear estimators -- a "
            "solvable model that groks without understanding. arXiv:2310.16441 (ICLR 2024).")


@dataclasses.dataclass(frozen=True)
class Config:
    dim: int = 200                          # d
    lambdas: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)   # d / N_train (< 1)
    plateau_lambdas: tuple[float, ...] = (1.5, 2.0, 4.0)          # d / N_train (> 1)
    eta: float = 0.05
    epsilon: float = 1e-8                  # loss threshold (|D_0| = 1)
    n_repeats: int = 5
    seed: int = 0

    @classmethod
    def quick(cls) -> "Config":
        return cls()

    @classmethod
    def full(cls) -> "Config":
        return cls(dim=1000, lambdas=tuple(np.round(np.arange(0.05, 0.81, 0.05), 2)),
                   plateau_lambdas=(1.25, 1.5, 2.0, 3.0, 4.0), n_repeats=10)

    def validate(self) -> None:
        if self.dim < 2:
            raise ValueError(f"dim must be >= 2, got {self.dim}")
        if not self.lambdas or not all(0 < v < 1 for v in self.lambdas):
            raise ValueError(f"lambdas must lie in (0, 1), got {self.lambdas}")
        if not all(v > 1 for v in self.plateau_lambdas):
            raise ValueError(f"plateau_lambdas must be > 1, got {self.plateau_lambdas}")
        if not 0 < self.epsilon < 1:
            raise ValueError(f"epsilon must lie in (0, 1), got {self.epsilon}")
        if self.n_repeats < 1:
            raise ValueError(f"n_repeats must be >= 1, got {self.n_repeats}")


def grokking_time_formula(lam, eta):
    """Levi et al.'s ``log(1/(1 - sqrt(lambda))) / (2 eta (1 - sqrt(lambda))^2)``."""
    r = 1.0 - np.sqrt(np.asarray(lam, float))
    return np.log(1.0 / r) / (2.0 * eta * r ** 2)


def exact_losses(eigvals, coeffs, eta, t):
    """``(L_train(t), L_gen(t))`` of GD from the eigen-decomposition of the train covariance.

    ``eigvals`` (d,) of ``Sigma``, ``coeffs`` (d,) = ``V^T D_0``; ``t`` scalar or (T,) steps.
    """
    t = np.asarray(t, float)[..., None]
    decay = (1.0 - 2.0 * eta * eigvals) ** (2.0 * t) * coeffs ** 2
    return (decay * eigvals).sum(-1), decay.sum(-1)


def first_crossing(loss_at, epsilon, t_max=10 ** 9):
    """Smallest integer t with ``loss_at(t) < epsilon`` (losses decrease monotonically);
    ``inf`` if not reached by ``t_max``."""
    if loss_at(0) < epsilon:
        return 0.0
    hi = 1
    while loss_at(hi) >= epsilon:
        hi *= 2
        if hi > t_max:
            return float("inf")
    lo = hi // 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if loss_at(mid) < epsilon:
            hi = mid
        else:
            lo = mid
    return float(hi)


def sample_problem(rng, dim, n_train):
    """Eigenvalues of ``Sigma = X^T X / N`` and coefficients of a unit isotropic ``D_0``."""
    X = rng.standard_normal((n_train, dim))
    eigvals, V = np.linalg.eigh(X.T @ X / n_train)
    eigvals = np.clip(eigvals, 0.0, None)   # the null space of Sigma (d > N) is exactly 0
    D0 = rng.standard_normal(dim)
    return eigvals, V.T @ (D0 / np.linalg.norm(D0))


def run(cfg: Config, ctx) -> dict:
    cfg.validate()
    rng = np.random.default_rng(cfg.seed)
    measured, measured_std, t_train_mean, smallest_eig = [], [], [], []
    for lam in cfg.lambdas:
        n_train = int(round(cfg.dim / lam))
        lags, t_trains, s_min = [], [], []
        for _ in range(cfg.n_repeats):
            ev, c = sample_problem(rng, cfg.dim, n_train)
            if 2 * cfg.eta * ev.max() >= 2:
                raise ValueError(f"eta={cfg.eta} is unstable for lambda={lam} "
                                 f"(2 eta s_max = {2 * cfg.eta * ev.max():.2f} >= 2)")
            t_tr = first_crossing(lambda t: exact_losses(ev, c, cfg.eta, t)[0], cfg.epsilon)
            t_ge = first_crossing(lambda t: exact_losses(ev, c, cfg.eta, t)[1], cfg.epsilon)
            lags.append(t_ge - t_tr)
            t_trains.append(t_tr)
            s_min.append(ev.min())
        measured.append(float(np.mean(lags)))
        measured_std.append(float(np.std(lags)))
        t_train_mean.append(float(np.mean(t_trains)))
        smallest_eig.append(float(np.mean(s_min)))
    formula = grokking_time_formula(cfg.lambdas, cfg.eta)
    # the same formula with the sample's smallest eigenvalue in place of (1 - sqrt(lambda))^2
    s = np.array(smallest_eig)
    formula_empirical = np.log(1.0 / s) / (4.0 * cfg.eta * s)

    plateau, plateau_std = [], []
    for lam in cfg.plateau_lambdas:
        n_train = max(1, int(round(cfg.dim / lam)))
        vals = []
        for _ in range(cfg.n_repeats):
            ev, c = sample_problem(rng, cfg.dim, n_train)
            vals.append(float(np.sum(c[ev < 1e-10 * ev.max()] ** 2)))  # L_gen(t -> inf)
        plateau.append(float(np.mean(vals)))
        plateau_std.append(float(np.std(vals)))

    metrics = {
        "lambdas": list(cfg.lambdas),
        "grokking_time_measured": measured, "grokking_time_std": measured_std,
        "grokking_time_formula": formula.tolist(),
        "grokking_time_formula_empirical_smin": formula_empirical.tolist(),
        "ratio_measured_to_formula": (np.array(measured) / formula).tolist(),
        "t_train": t_train_mean, "smallest_eigenvalue": smallest_eig,
        "smallest_eigenvalue_mp": ((1 - np.sqrt(cfg.lambdas)) ** 2).tolist(),
        "plateau_lambdas": list(cfg.plateau_lambdas), "plateau_measured": plateau,
        "plateau_std": plateau_std,
        "plateau_formula": [1 - 1 / v for v in cfg.plateau_lambdas],
    }
    return metrics


def figures(results: dict) -> dict:
    """Grokking time against lambda with the formula; the lambda > 1 plateau."""
    from matplotlib.figure import Figure

    m, cfg = results["metrics"], results["config"]
    fig = Figure(figsize=(9, 3.5))
    axes = fig.subplots(1, 2)
    ax = axes[0]
    lam = np.asarray(m["lambdas"], float)
    grid = np.linspace(lam.min() * 0.8, lam.max() * 1.05, 200)
    ax.semilogy(grid, grokking_time_formula(grid, cfg["eta"]), "k-",
                label="log(1/(1-sqrt(l))) / (2 eta (1-sqrt(l))^2)")
    ax.errorbar(lam, np.asarray(m["grokking_time_measured"], float),
                yerr=np.asarray(m["grokking_time_std"], float), fmt="o",
                label=f"exact GD, d={cfg['dim']}, eps={cfg['epsilon']:g}")
    ax.set_xlabel("lambda = d / N_train")
    ax.set_ylabel("grokking time t_gen - t_train (GD steps)")
    ax.set_title("Grokking time follows the formula")
    ax.legend(fontsize=7)
    ax = axes[1]
    pl = np.asarray(m["plateau_lambdas"], float)
    g2 = np.linspace(1.0, pl.max() * 1.05, 100)
    ax.plot(g2, 1 - 1 / g2, "k-", label="1 - 1/lambda")
    ax.errorbar(pl, np.asarray(m["plateau_measured"], float),
                yerr=np.asarray(m["plateau_std"], float), fmt="o", label="exact GD")
    ax.set_xlabel("lambda = d / N_train")
    ax.set_ylabel("generalisation loss at t = inf (|D_0| = 1)")
    ax.set_title("lambda > 1: plateau at 1 - 1/lambda")
    ax.legend(fontsize=7)
    return {"grokking_time": fig}


def _worst_ratio(m: dict) -> float:
    """The measured / formula ratio farthest from 1 over lambda."""
    ratio = np.asarray(m["ratio_measured_to_formula"], float)
    return float(ratio[np.argmax(np.abs(ratio - 1))])


# Bounds: the formula is the epsilon -> 0, gradient-flow limit, so a finite epsilon and d leave
# the ratio within 25 % of 1; the plateau is E[(d - N)/d] up to 0.05 of sampling spread (the
# study's earlier defaults). Grokking itself is strict: a positive lag that rises with lambda.
CLAIMS = (
    claim("groks", "the train loss reaches epsilon before the generalisation loss (smallest "
          "measured t_gen - t_train over lambda, GD steps)",
          lambda m: float(np.min(np.asarray(m["grokking_time_measured"], float))), greater(0)),
    claim("time_grows_with_lambda", "grokking time increases with lambda = d/N (fraction of "
          "consecutive lambdas where it increases)",
          lambda m: float(np.mean(np.diff(np.asarray(m["grokking_time_measured"], float)) > 0)),
          at_least(1.0)),
    claim("matches_formula", "measured grokking time / formula "
          "log(1/(1-sqrt(l)))/(2 eta (1-sqrt(l))^2), worst over lambda",
          _worst_ratio, close_to(1.0, 0.25)),
    claim("plateau", "lambda > 1: generalisation loss plateaus at 1 - 1/lambda (largest "
          "|measured - formula|)",
          lambda m: float(np.max(np.abs(np.asarray(m["plateau_measured"], float)
                                        - np.asarray(m["plateau_formula"], float)))),
          at_most(0.05)),
)
