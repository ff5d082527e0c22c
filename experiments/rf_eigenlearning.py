"""More is better: eigenlearning predicts kernel and random-feature ridge regression on digits.

Simon, Karkada, Ghosh & Belkin, "More is Better in Modern Machine Learning: when Infinite
Overparameterization is Optimal and Overfitting is Obligatory" (2023, arXiv:2311.14646; code
dkarkada/more-is-better and james-simon/eigenlearning).

The theory (:mod:`limits.eigenlearning`). From a kernel's eigenvalues ``lambda_i`` and a
target's eigencoefficients ``v_i`` under the data distribution, the KRR eigenlearning estimate
(effective regularisation ``kappa``, learnabilities ``L_i``, overfitting coefficient ``E0``)
and the paper's RF eigenframework (``k`` random features: ``kappa`` and ``gamma`` from two
equations) predict the test MSE of ridge regression with ``n`` samples and ridge ``delta``.
The paper's Section 4 result: at the optimal ridge the predicted test MSE falls in both ``n`` and
``k``, so infinite width (KRR) is best. Its next section: for power-law eigenstructure (the
paper measures it for convolutional NTKs on image data), near-optimal test error needs a
training error far below it: the optimal ridge is small and overfitting is obligatory.

The population. ``n_pool`` digits (scikit-learn's 8x8, :func:`tasks.load`, inputs scaled to
unit-variance coordinates) with the uniform measure on them are the data distribution, so the
theory's eigensystem is exact: ``K / P = U diag(lambda) U^T`` on the pool
(:func:`limits.eigenlearning.pool_eigensystem`), targets the centred one-hot labels (10 outputs,
MSE summed over them, no label noise). Training sets are ``n`` pool points drawn without
replacement (nested across ``n`` within a trial); test MSE is the population MSE, the mean over
the whole pool.

The models. Kernel ridge regression ``f(x) = K(x, X) (K(X, X) + delta I)^-1 Y`` with the two
:mod:`ntk.stax` kernels of a one-hidden-layer ReLU network: its NNGP (``nngp``: only the last
layer trained) and its NTK (``ntk``: both layers); and random ReLU feature regression,
``g_j(x) = W_std relu(W_std w_j . x / sqrt(d) + b_std b_j)``, ``w_j ~ N(0, I_d)``,
``b_j ~ N(0, 1)``, ``k`` features (nested across ``k`` within a trial), whose ``k -> inf``
kernel is the ``nngp`` kernel (the paper's model: a shallow network with only the last layer
trained): the RF theory uses the ``nngp`` eigensystem. Ridges are ``delta = r n tr(K / P)``
for ``r`` in ``ridge_scales`` (``r = 0``: the minimum-norm interpolant). The optimal ridge of a
measured curve is the grid's best ``r``; the theory's is :func:`limits.eigenlearning.optimal_ridge`.

Claims (thresholds fixed from the paper before running; the paper's figures show theory and
experiment agreeing to about the marker size on log axes and give no number at our scale):
(i) the predicted test MSE is within 10% (KRR, mean relative error over kernels, ``n`` and
ridges) and 15% (random features, over ``n``, ``k`` and ridges) of the measured one; (ii) at the
optimal ridge the measured test MSE never rises with ``k`` (``k = inf`` last: KRR) or with ``n``
by more than 2% (the Monte Carlo allowance), and the predicted one never rises at all (the
paper's Section 4 result on these spectra); (iii) the theory's optimal ridge per sample
``delta* / (n tr K)`` falls from the smallest ``n`` to the largest, the measured optimal ridge
scale stays at most 1e-2, and at the measured optimal ridge the training MSE is at most a tenth
of the test MSE ("much smaller", the paper's obligatory overfitting).

Scaled down: the paper uses CIFAR-10 / MNIST / SVHN with Myrtle CNTKs and ReLU NNGP features,
``n`` and ``k`` up to 10^4; here a pool of 600 digits, ``n`` 25-200, ``k`` 16-1024, 6 trials
(full: all 1,797 digits, ``n`` 25-600, ``k`` 16-4096, 20 trials).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

import tasks
from experiments.claims import claim, each, at_most
from limits import eigenlearning as el
from limits.scaling import loglog_slope

SUMMARY = ("Simon et al. 2023: eigenlearning predicts kernel and random-feature ridge "
           "regression test MSE on digits; at the optimal ridge more features and more data "
           "never hurt; the optimal ridge stays small (overfitting is obligatory)")
PAPER = "simon2023more"
CITATION = ("Simon, J. B., Karkada, D., Ghosh, N. & Belkin, M. (2023). More is Better in Modern "
            "Machine Learning: when Infinite Overparameterization is Optimal and Overfitting is "
            "Obligatory. arXiv:2311.14646.")

KERNELS = ("nngp", "ntk")
DIGITS = 1797
KRR_TOLERANCE = 0.10          # (i): mean relative error of the predicted test MSE, KRR
RF_TOLERANCE = 0.15           # (i): the same, random features
MONTE_CARLO_ALLOWANCE = 0.02  # (ii): a measured rise smaller than this is noise
SMALL_RIDGE = 1e-2            # (iii): the optimal ridge scale delta / (n tr K) stays below this
FITTING_RATIO = 0.1           # (iii): train / test MSE at the optimal ridge ("much smaller")


@dataclasses.dataclass(frozen=True)
class Config:
    n_pool: int = 600
    n_samples: tuple[int, ...] = (25, 50, 100, 200)
    n_features: tuple[int, ...] = (16, 64, 256, 1024)
    ridge_scales: tuple[float, ...] = (0.0, 1e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1,
                                       1.0)
    W_std: float = 1.0
    b_std: float = 0.1
    trials: int = 6
    theory_points: int = 5        # n values of the theory's optimal-ridge trend, 25 .. P / 2
    seed: int = 0

    @classmethod
    def quick(cls) -> "Config":
        return cls()

    @classmethod
    def full(cls) -> "Config":
        return cls(n_pool=DIGITS, n_samples=(25, 50, 100, 200, 400, 600),
                   n_features=(16, 64, 256, 1024, 4096), trials=20, theory_points=12)

    def validate(self) -> None:
        def increasing(name, values):
            if (len(values) < 2 or any(v <= 0 for v in values)
                    or sorted(set(values)) != list(values)):
                raise ValueError(f"{name} must be >= 2 increasing distinct positive values, got "
                                 f"{values}")
        increasing("n_samples", self.n_samples)
        increasing("n_features", self.n_features)
        if not 2 <= self.n_pool <= DIGITS:
            raise ValueError(f"n_pool must be in [2, {DIGITS}] (digits has {DIGITS} images), got "
                             f"{self.n_pool}")
        if 2 * self.n_samples[-1] > self.n_pool:
            raise ValueError(f"the largest n_samples {self.n_samples[-1]} must be at most half "
                             f"the pool (n_pool={self.n_pool}): the pool is the population")
        clash = sorted(set(self.n_samples) & set(self.n_features))
        if clash and 0.0 in self.ridge_scales:
            raise ValueError(f"n_samples and n_features share {clash}: the ridgeless estimate "
                             "diverges at n = k")
        r = self.ridge_scales
        if len(r) < 3 or any(x < 0 or not math.isfinite(x) for x in r) or sorted(set(r)) != list(r):
            raise ValueError(f"ridge_scales must be >= 3 increasing distinct values >= 0, got {r}")
        if self.trials < 2:
            raise ValueError(f"trials must be >= 2, got {self.trials}")
        if self.theory_points < 2:
            raise ValueError(f"theory_points must be >= 2, got {self.theory_points}")
        if not (self.W_std > 0 and self.b_std >= 0):
            raise ValueError(f"W_std must be > 0 and b_std >= 0, got {self.W_std}, {self.b_std}")


# ------------------------------------------------------------------------------- kernels


def pool_kernels(cfg: Config, x) -> dict:
    """The NNGP and NTK of a one-hidden-layer ReLU network ``Dense(W_std, b_std) -> Relu ->
    Dense(W_std, 0)`` (:mod:`ntk.stax`, NTK parametrisation) on ``x`` ``(P, d)``: float64
    ``(P, P)`` each. The NNGP, ``W_std^2 E[relu(z) relu(z')]``, is the random ReLU features'
    ``k -> inf`` kernel (only the last layer trained); the NTK trains both layers."""
    from ntk import stax
    _, _, kernel_fn = stax.serial(stax.Dense(512, cfg.W_std, cfg.b_std), stax.Relu(),
                                  stax.Dense(1, cfg.W_std, 0.0))
    kernels = kernel_fn(x, None, ("nngp", "ntk"))
    return {"nngp": np.asarray(kernels.nngp, np.float64),
            "ntk": np.asarray(kernels.ntk, np.float64)}


def relu_features(cfg: Config, x, n_features: int, rng: np.random.Generator) -> np.ndarray:
    """``(P, k)`` features ``W_std relu(W_std w . x / sqrt(d) + b_std b)`` with Gaussian ``w, b``:
    ``E[g(x) g(x')]`` is the ``nngp`` kernel of :func:`pool_kernels`."""
    w = rng.standard_normal((n_features, x.shape[1]))
    b = rng.standard_normal(n_features)
    return cfg.W_std * np.maximum(cfg.W_std * x @ w.T / math.sqrt(x.shape[1]) + cfg.b_std * b,
                                  0.0)


# ------------------------------------------------------------------------------- regression


def krr_errors(gram, y, idx, ridges):
    """Population (pool-mean) test MSE and train MSE of KRR on pool rows ``idx``, per ridge
    (``ridge = 0``: the pseudo-inverse, the minimum-norm interpolant): two ``(R,)`` arrays."""
    s, q = np.linalg.eigh(gram[np.ix_(idx, idx)])
    keep = s > s.max() * len(s) * 1e-13
    s, q = s[keep], q[:, keep]
    proj = q.T @ y[idx]                                              # (r, O)
    basis = gram[:, idx] @ q                                         # (P, r)
    return _errors(basis, s, np.ones((len(s), 1)), proj, y, idx, ridges)


def rf_errors(features, y, idx, ridges):
    """The same for random-feature ridge regression with ``features`` ``(P, k)`` already divided
    by ``sqrt(k)``: ``f = Phi (Phi_X^T Phi_X + delta I)^-1 Phi_X^T Y`` (SVD of ``Phi_X``)."""
    u, sv, vt = np.linalg.svd(features[idx], full_matrices=False)
    keep = sv > sv.max() * max(features.shape[1], len(idx)) * 1e-14
    u, sv, vt = u[:, keep], sv[keep], vt[keep]
    basis = features @ vt.T                                          # (P, r)
    return _errors(basis, sv * sv, sv[:, None], u.T @ y[idx], y, idx, ridges)


def _errors(basis, s, scale, proj, y, idx, ridges):
    """``pred(delta) = basis diag(scale / (s + delta)) proj`` for every ridge; the pool-mean and
    training-mean squared errors summed over outputs."""
    gains = np.stack([scale * proj / (s + delta)[:, None] for delta in ridges], 1)  # (r, R, O)
    pred = (basis @ gains.reshape(len(s), -1)).reshape(len(y), len(ridges), -1)     # (P, R, O)
    err = np.sum((pred - y[:, None]) ** 2, -1)                                      # (P, R)
    return err.mean(0), err[idx].mean(0)


# ------------------------------------------------------------------------------- the study


def _max_rise(values) -> float:
    """Largest relative rise between neighbours of a sequence (negative if it only falls)."""
    v = np.asarray(values, float)
    return float(np.max(v[1:] / v[:-1] - 1))


def run(cfg: Config, ctx) -> dict:
    cfg.validate()
    split = tasks.load("digits", cfg.n_pool, 0, seed=cfg.seed, dtype=np.float64)
    d = split.x_train.shape[1]
    x = split.x_train * math.sqrt(d)                # unit-variance coordinates
    y = tasks.one_hot(split.labels_train, centered=True, dtype=np.float64)
    p = cfg.n_pool
    grams = pool_kernels(cfg, x)
    eig, trace = {}, {}
    for name, gram in grams.items():
        lam, coef, u = el.pool_eigensystem(gram, y)
        eig[name] = (lam, coef)
        trace[name] = float(lam.sum())
        grams[name] = (u * (lam * p)) @ u.T        # the PSD kernel the theory describes
    ns, ks, rs = list(cfg.n_samples), list(cfg.n_features), np.asarray(cfg.ridge_scales)
    nn, nk, nr = len(ns), len(ks), len(rs)

    krr_test = {name: np.zeros((cfg.trials, nn, nr)) for name in KERNELS}
    krr_train = {name: np.zeros((cfg.trials, nn, nr)) for name in KERNELS}
    rf_test, rf_train = np.zeros((cfg.trials, nn, nk, nr)), np.zeros((cfg.trials, nn, nk, nr))
    for t in range(cfg.trials):
        if ctx.progress:
            print(f"  trial {t + 1}/{cfg.trials}", flush=True)
        rng = np.random.default_rng([cfg.seed, t])
        perm = rng.permutation(p)
        feats = relu_features(cfg, x, ks[-1], rng)
        for i, n in enumerate(ns):
            idx = perm[:n]
            for name in KERNELS:
                ridges = rs * n * trace[name]
                krr_test[name][t, i], krr_train[name][t, i] = krr_errors(grams[name], y, idx,
                                                                         ridges)
            ridges = rs * n * trace["nngp"]
            for j, k in enumerate(ks):
                rf_test[t, i, j], rf_train[t, i, j] = rf_errors(feats[:, :k] / math.sqrt(k),
                                                                y, idx, ridges)
        ctx.tick(1)

    # ---- the theory on the same grid
    krr_pred = {name: np.array([[el.krr_prediction(*eig[name], n, r * n * trace[name]).test_mse
                                 for r in rs] for n in ns]) for name in KERNELS}
    lam_rf, coef_rf = eig["nngp"]
    rf_pred = np.array([[[el.rf_prediction(lam_rf, coef_rf, n, k, r * n * trace["nngp"]).test_mse
                          for r in rs] for k in ks] for n in ns])

    # ---- (i) prediction errors
    krr_mean = {name: krr_test[name].mean(0) for name in KERNELS}
    rf_mean = rf_test.mean(0)
    krr_rel = np.concatenate([np.abs(krr_mean[nm] / krr_pred[nm] - 1).ravel() for nm in KERNELS])
    rf_rel = np.abs(rf_mean / rf_pred - 1).ravel()

    # ---- (ii) optimal ridge: measured (grid minimum of the trial mean) and predicted
    ks_inf = ks + [math.inf]
    measured_opt = np.zeros((nn, nk + 1))
    for i in range(nn):
        measured_opt[i, :nk] = rf_mean[i].min(-1)
        measured_opt[i, nk] = krr_mean["nngp"][i].min()
    best_ridge = lambda lam, coef, n, k=math.inf: el.optimal_ridge(lam, coef, n, k, grid_points=25,
                                                                   tolerance=1e-4)
    theory_opt = np.array([[best_ridge(lam_rf, coef_rf, n, k).test_mse for k in ks_inf]
                           for n in ns])
    rise_k_measured = max(_max_rise(row) for row in measured_opt)
    rise_n_measured = max(_max_rise(col) for col in measured_opt.T)
    rise_theory = max(max(_max_rise(row) for row in theory_opt),
                      max(_max_rise(col) for col in theory_opt.T))

    # ---- (iii) the optimal ridge as n grows (KRR, both kernels)
    n_theory = np.unique(np.round(np.geomspace(ns[0], p // 2, cfg.theory_points)).astype(int))
    optimal = {}
    for name in KERNELS:
        lam, coef = eig[name]
        theory = [best_ridge(lam, coef, int(n)) for n in n_theory]
        best = krr_mean[name].argmin(-1)
        train_mean = krr_train[name].mean(0)
        optimal[name] = {
            "theory_ridge_scale": [o.ridge / (n * trace[name]) for o, n in zip(theory, n_theory)],
            "theory_test_mse": [o.test_mse for o in theory],
            "measured_ridge_scale": [float(rs[b]) for b in best],
            "measured_test_mse": [float(krr_mean[name][i, b]) for i, b in enumerate(best)],
            "measured_fitting_ratio": [float(train_mean[i, b] / krr_mean[name][i, b])
                                       for i, b in enumerate(best)],
        }
    falls = []
    for name in KERNELS:
        scales = optimal[name]["theory_ridge_scale"]
        first, last = scales[0], scales[-1]
        falls.append(0.0 if last == 0 else (math.inf if first == 0 else last / first))

    # ---- power-law fits of the spectra (descriptive)
    spectra = {}
    for name in KERNELS:
        lam, coef = eig[name]
        i = np.arange(1, p + 1)
        window = (i >= 2) & (i <= p // 8)
        power = np.sum(coef ** 2, 1)
        tail = np.cumsum(power[::-1])[::-1]                  # sum_{j >= i} v_j^2
        spectra[name] = {
            "eigenvalues": lam[:p // 2].tolist(),
            "target_tail": tail[:p // 2].tolist(),
            "alpha": -loglog_slope(i[window], lam[window]),
            "beta": 1 - loglog_slope(i[window], tail[window]),
            "trace": trace[name],
        }

    return {
        "n_samples": ns, "n_features": ks, "ridge_scales": rs.tolist(), "kernels": list(KERNELS),
        "n_pool": p, "trials": cfg.trials,
        "krr_test_mse": {nm: krr_mean[nm].tolist() for nm in KERNELS},          # (n, r)
        "krr_test_mse_sem": {nm: (krr_test[nm].std(0, ddof=1) / math.sqrt(cfg.trials)).tolist()
                             for nm in KERNELS},
        "krr_train_mse": {nm: krr_train[nm].mean(0).tolist() for nm in KERNELS},
        "krr_predicted": {nm: krr_pred[nm].tolist() for nm in KERNELS},
        "rf_test_mse": rf_mean.tolist(),                                         # (n, k, r)
        "rf_test_mse_sem": (rf_test.std(0, ddof=1) / math.sqrt(cfg.trials)).tolist(),
        "rf_train_mse": rf_train.mean(0).tolist(),
        "rf_predicted": rf_pred.tolist(),
        "krr_mean_relative_error": float(krr_rel.mean()),
        "krr_max_relative_error": float(krr_rel.max()),
        "rf_mean_relative_error": float(rf_rel.mean()),
        "rf_max_relative_error": float(rf_rel.max()),
        "measured_optimal_test_mse": measured_opt.tolist(),                      # (n, k + inf)
        "theory_optimal_test_mse": theory_opt.tolist(),
        "measured_max_rise_in_k": rise_k_measured,
        "measured_max_rise_in_n": rise_n_measured,
        "theory_max_rise": rise_theory,
        "n_theory": n_theory.tolist(),
        "optimal_ridge": optimal,
        "theory_ridge_scale_last_over_first": max(falls),
        "measured_max_optimal_ridge_scale": max(max(optimal[nm]["measured_ridge_scale"])
                                                for nm in KERNELS),
        "measured_fitting_ratios": [r for nm in KERNELS
                                    for r in optimal[nm]["measured_fitting_ratio"]],
        "spectra": spectra,
    }


# ------------------------------------------------------------------------------- figures


def _num(x) -> float:
    return float(x)


def _n_ticks(ax, ns) -> None:
    from matplotlib.ticker import NullLocator
    ax.set_xticks(ns, [str(int(n)) for n in ns])
    ax.xaxis.set_minor_locator(NullLocator())


def figures(results: dict) -> dict:
    from matplotlib.figure import Figure
    m = results["metrics"]
    ns, ks, rs = np.asarray(m["n_samples"]), np.asarray(m["n_features"]), m["ridge_scales"]
    kernels = m["kernels"]
    as_arr = lambda a: np.vectorize(_num)(np.asarray(a, dtype=object)).astype(float)

    # 1. predicted against measured test MSE
    fig = Figure(figsize=(13, 4.2))
    ax1, ax2, ax3 = fig.subplots(1, 3)
    lo, hi = math.inf, 0.0
    for c, name in enumerate(kernels):
        meas = as_arr(m["krr_test_mse"][name]).ravel()
        pred = as_arr(m["krr_predicted"][name]).ravel()
        ax1.loglog(pred, meas, "o", ms=3, color=f"C{c}", label=f"KRR, {name}")
        lo, hi = min(lo, pred.min(), meas.min()), max(hi, pred.max(), meas.max())
    meas, pred = as_arr(m["rf_test_mse"]), as_arr(m["rf_predicted"])
    for j, k in enumerate(ks):
        ax1.loglog(pred[:, j].ravel(), meas[:, j].ravel(), "s", ms=2.5, mfc="none",
                   color=f"C{j + 2}", label=f"RF, k={k}")
    lo, hi = min(lo, pred.min(), meas.min()), max(hi, pred.max(), meas.max())
    ax1.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax1.set_xlabel("predicted test MSE (eigenlearning)")
    ax1.set_ylabel("measured test MSE (mean of trials)")
    ax1.set_title(f"Mean relative error: KRR {100 * m['krr_mean_relative_error']:.1f}%, "
                  f"RF {100 * m['rf_mean_relative_error']:.1f}%", fontsize=9)
    ax1.legend(fontsize=6, ncol=2)
    pos = np.asarray([r if r > 0 else np.nan for r in rs], float)
    floor = np.nanmin(pos) / 3
    xr = np.where(np.isnan(pos), floor, pos)
    i = len(ns) - 1
    for c, name in enumerate(kernels):
        ax2.loglog(xr, as_arr(m["krr_predicted"][name])[i], "-", color=f"C{c}",
                   label=f"{name}: theory")
        ax2.errorbar(xr, as_arr(m["krr_test_mse"][name])[i],
                     yerr=as_arr(m["krr_test_mse_sem"][name])[i], fmt="o", ms=3, color=f"C{c}",
                     label=f"{name}: measured")
    ax2.set_xlabel("ridge / (n tr K)   (leftmost: ridge 0)")
    ax2.set_ylabel("test MSE")
    ax2.set_title(f"KRR at n = {ns[i]}", fontsize=9)
    ax2.legend(fontsize=7)
    for j, k in enumerate(ks):
        ax3.loglog(xr, pred[i, j], "-", color=f"C{j + 2}")
        ax3.errorbar(xr, meas[i, j], yerr=as_arr(m["rf_test_mse_sem"])[i, j], fmt="s", ms=3,
                     mfc="none", color=f"C{j + 2}", label=f"k = {k}")
    ax3.set_xlabel("ridge / (n tr K)   (leftmost: ridge 0)")
    ax3.set_ylabel("test MSE")
    ax3.set_title(f"Random ReLU features at n = {ns[i]} (lines: theory)", fontsize=9)
    ax3.legend(fontsize=7)
    fig.suptitle("Eigenlearning predicts ridge regression's test MSE on digits", fontsize=10)
    fig.subplots_adjust(wspace=0.3, top=0.85, bottom=0.14)

    # 2. more is better at the optimal ridge
    fig2 = Figure(figsize=(10, 4.2))
    bx1, bx2 = fig2.subplots(1, 2)
    meas_opt, th_opt = as_arr(m["measured_optimal_test_mse"]), as_arr(m["theory_optimal_test_mse"])
    kx = np.append(ks, ks[-1] * 4.0)                   # k = inf drawn one step right
    for i, n in enumerate(ns):
        bx1.loglog(kx, th_opt[i], "-", color=f"C{i}")
        bx1.loglog(kx, meas_opt[i], "o", ms=4, color=f"C{i}", label=f"n = {n}")
    bx1.set_xticks(kx, [str(k) for k in ks] + ["inf"])
    bx1.set_xlabel("random features k (inf: KRR with the NNGP kernel)")
    bx1.set_ylabel("test MSE at the optimal ridge")
    bx1.set_title("More features never hurt (lines: theory, dots: measured)", fontsize=9)
    bx1.legend(fontsize=7)
    for j, k in enumerate(list(ks) + ["inf"]):
        bx2.loglog(ns, th_opt[:, j], "-", color=f"C{j}")
        bx2.loglog(ns, meas_opt[:, j], "o", ms=4, color=f"C{j}", label=f"k = {k}")
    _n_ticks(bx2, ns)
    bx2.set_xlabel("training samples n")
    bx2.set_ylabel("test MSE at the optimal ridge")
    bx2.set_title(f"More data never hurts (largest measured rise: "
                  f"{100 * max(m['measured_max_rise_in_k'], m['measured_max_rise_in_n']):+.1f}%)",
                  fontsize=9)
    bx2.legend(fontsize=7)
    fig2.subplots_adjust(wspace=0.3, bottom=0.14)

    # 3. the optimal ridge and the spectra
    fig3 = Figure(figsize=(13, 4.2))
    cx1, cx2, cx3 = fig3.subplots(1, 3)
    n_th = np.asarray(m["n_theory"])
    for c, name in enumerate(kernels):
        o = m["optimal_ridge"][name]
        th = as_arr(o["theory_ridge_scale"])
        zero = "" if np.any(th > 0) else " (0 at every n)"
        cx1.loglog(n_th, np.where(th > 0, th, np.nan), "-", color=f"C{c}",
                   label=f"{name}: theory{zero}")
        cx1.loglog(n_th[th == 0], np.full(np.sum(th == 0), floor), "x", color=f"C{c}")
        ms = as_arr(o["measured_ridge_scale"])
        cx1.loglog(ns, np.where(ms > 0, ms, floor), "o", color=f"C{c}",
                   label=f"{name}: measured (grid)")
        cx2.semilogx(ns, as_arr(o["measured_fitting_ratio"]), "o-", color=f"C{c}", label=name)
        s = m["spectra"][name]
        lam = as_arr(s["eigenvalues"])
        idx = np.arange(1, len(lam) + 1)
        cx3.loglog(idx, lam, "-", color=f"C{c}",
                   label=f"{name}: eigenvalues (alpha = {s['alpha']:.2f})")
        cx3.loglog(idx, as_arr(s["target_tail"]) * lam[0] / as_arr(s["target_tail"])[0], ":",
                   color=f"C{c}", label=f"{name}: target tail (beta = {s['beta']:.2f}), scaled")
    cx1.axhline(SMALL_RIDGE, color="k", lw=0.8, ls="--")
    _n_ticks(cx1, n_th)
    cx1.set_xlabel("training samples n")
    cx1.set_ylabel("optimal ridge / (n tr K)")
    cx1.set_title(f"KRR's optimal ridge falls with n (0 drawn at {floor:.0e})", fontsize=9)
    cx1.legend(fontsize=6)
    cx2.axhline(FITTING_RATIO, color="k", lw=0.8, ls="--")
    _n_ticks(cx2, ns)
    cx2.set_xlabel("training samples n")
    cx2.set_ylabel("train MSE / test MSE at the optimal ridge")
    cx2.set_title("Overfitting is obligatory: train << test", fontsize=9)
    cx2.legend(fontsize=7)
    cx3.set_xlabel("mode index i")
    cx3.set_ylabel("lambda_i ; sum_{j >= i} v_j^2 (scaled)")
    cx3.set_title(f"Pool eigenstructure (P = {m['n_pool']} digits)", fontsize=9)
    cx3.legend(fontsize=6)
    fig3.subplots_adjust(wspace=0.3, bottom=0.14)
    return {"predictions": fig, "more_is_better": fig2, "optimal_ridge": fig3}


# ------------------------------------------------------------------------------- claims

CLAIMS = (
    claim("krr_test_mse_predicted",
          "KRR (NNGP and NTK kernels): mean relative error of the eigenlearning test MSE over "
          "every n and ridge",
          "krr_mean_relative_error", at_most(KRR_TOLERANCE)),
    claim("rf_test_mse_predicted",
          "random ReLU features: mean relative error of the RF eigenframework's test MSE over "
          "every n, k and ridge",
          "rf_mean_relative_error", at_most(RF_TOLERANCE)),
    claim("more_features_never_hurt",
          "at the optimal ridge, the largest relative rise of measured test MSE from one k to "
          "the next (k = inf: KRR), any n",
          "measured_max_rise_in_k", at_most(MONTE_CARLO_ALLOWANCE)),
    claim("more_data_never_hurts",
          "at the optimal ridge, the largest relative rise of measured test MSE from one n to "
          "the next, any k",
          "measured_max_rise_in_n", at_most(MONTE_CARLO_ALLOWANCE)),
    claim("theory_monotone_in_n_and_k",
          "the predicted optimal-ridge test MSE never rises with n or k (the paper's Section 4 "
          "result on the pool's NNGP eigensystem; relative rise)",
          "theory_max_rise", at_most(1e-6)),
    claim("optimal_ridge_falls_with_n",
          "theory's optimal ridge / (n tr K) at the largest n over that at the smallest n "
          "(worst kernel)",
          "theory_ridge_scale_last_over_first", at_most(1.0)),
    claim("optimal_ridge_stays_small",
          "measured optimal ridge / (n tr K) (ridge grid), largest over n and kernels",
          "measured_max_optimal_ridge_scale", at_most(SMALL_RIDGE)),
    claim("overfitting_is_obligatory",
          "train MSE / test MSE at the measured optimal ridge, every n and kernel",
          "measured_fitting_ratios", each(at_most(FITTING_RATIO))),
)
