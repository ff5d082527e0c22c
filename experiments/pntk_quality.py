"""The sum-of-logits pseudo-NTK against the full empirical NTK as the readout width grows.

Mohamadi, Bae & Sutherland 2023, "A Fast, Well-Founded Approximation to the Empirical Neural
Tangent Kernel" (ICML 2023, arXiv:2206.12543).

For a network ``f: R^D -> R^O`` with parameters ``theta`` the full empirical NTK on ``N``
inputs is the ``N O x N O`` matrix ``Theta_ij(x, x') = <d f_i(x)/d theta, d f_j(x')/d theta>``.
The pseudo-NTK is the eNTK of the scaled sum of logits ``g = (1/sqrt O) sum_i f_i``::

    pNTK(x, x') = <grad g(x), grad g(x')> = (1/O) sum_ij Theta_ij(x, x'),

an ``N x N`` matrix (:func:`ntk.approx.pntk_fn`), used in place of the full kernel as
``pNTK (x) I_O`` (:func:`ntk.approx.lift`). At initialisation the readout layer ``W^{L+1}``
(``n x O``, NTK parametrisation) contributes exactly ``(h(x) . h(x') / n) delta_ij``; every
earlier layer contributes ``(1/n) sum_k W_ki W_kj (...)_k``, whose off-diagonal entries
(``i != j``) are averages of ``n`` zero-mean terms and whose diagonal entries agree across
``i`` up to the same fluctuations. Their Theorem: the relative Frobenius error

    err(n) = |Theta - pNTK (x) I_O|_F / |Theta|_F = O(n^{-1/2})

in the width ``n`` of the last hidden layer; by Weyl's inequality the eigenvalues, in
particular the largest one (and so the maximal stable learning rate ``2 N O / lambda_max``),
follow, and so do kernel-regression predictions ``Theta_td Theta_dd^{-1} Y`` as long as the
smallest eigenvalue stays well above the error. Using the pNTK saves a factor ``O^2`` of
kernel memory, a factor ``O^3`` in the regression solve, and at least ``O`` in computing the
kernel (one backward pass per example instead of ``O``).

Setup (scaled down): scikit-learn digits through :func:`tasks.load`
(centred pixels, ``|x|^2 ~ 1``; targets centred one-hot, ``O = 10``); a ReLU MLP in NTK
parametrisation built with :mod:`ntk.stax`, ``D -> hidden_width -> ... -> n -> O``, whose
earlier hidden layers stay at ``hidden_width`` while the last (readout) width ``n`` sweeps
(the quick config has one hidden layer, so ``n`` is its only width). For every width and
network seed: the relative Frobenius error on the training inputs, the ratios of the largest
eigenvalue and of the condition number (pNTK over full eNTK), and infinite-time kernel
regression with each kernel (ridge ``diag_reg``, :func:`ntk.predict.gp_inference`'s mean):
test accuracy, argmax agreement, relative distance of the test predictions. Both kernels use
the ``'structured'`` implementation (``implementation``). The cost ratio is read from
:func:`ntk.empirical_ntk_fn`'s ``plan`` (its FLOP estimate for that implementation) for the
full kernel and for the one-output model ``g`` that :func:`ntk.approx.pntk_fn`
differentiates; nothing is timed.

Scaled down: one hidden layer, 48 + 100 digits, readout widths 64, 512, 4096, two seeds (full:
two hidden layers, 200 + 1000 digits, widths 64..8192, five seeds).
"""
from __future__ import annotations

import dataclasses
import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

import ntk
import tasks
from experiments.claims import at_least, at_most, claim, close_to
from ntk import approx, predict, stax
from limits.scaling import loglog_slope

SUMMARY = ("Mohamadi et al. 2023: pseudo-NTK (sum of logits) against the full eNTK as the "
           "readout width grows")
PAPER = "mohamadi2023pntk"
CITATION = ("Mohamadi, M. A., Bae, W. & Sutherland, D. J. (2023). A fast, well-founded "
            "approximation to the empirical neural tangent kernel. ICML 2023, "
            "PMLR 202:25061-25081, arXiv:2206.12543.")
NUM_CLASSES = 10


@dataclasses.dataclass(frozen=True)
class Config:
    dataset: str = "digits"
    n_train: int = 48
    n_test: int = 100
    depth: int = 1                  # hidden layers; the last one has the readout width
    hidden_width: int = 64          # width of the hidden layers before the readout layer
    readout_widths: tuple[int, ...] = (64, 512, 4096)
    n_seeds: int = 2                # network initialisations per width (errors averaged)
    W_std: float = 1.4142135623730951
    b_std: float = 0.1
    diag_reg: float = 1e-4          # ridge, relative to the mean diagonal of each kernel
    implementation: str = "structured"   # ntk.empirical_ntk_fn implementation for both kernels
    seed: int = 0

    @classmethod
    def quick(cls) -> "Config":
        return cls()

    @classmethod
    def full(cls) -> "Config":
        return cls(n_train=200, n_test=1000, depth=2, hidden_width=256,
                   readout_widths=(64, 128, 256, 512, 1024, 2048, 4096, 8192), n_seeds=5)

    def validate(self) -> None:
        if self.dataset not in ("digits", "mnist"):
            raise ValueError(f"dataset must be 'digits' or 'mnist', got {self.dataset!r}")
        for name in ("n_train", "n_test", "depth", "hidden_width", "n_seeds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        widths = self.readout_widths
        if (len(widths) < 3 or any(isinstance(w, bool) or not isinstance(w, int) or w < 1
                                   for w in widths)
                or any(b <= a for a, b in zip(widths, widths[1:]))):
            raise ValueError(f"readout_widths needs >= 3 increasing positive ints, got {widths}")
        if not self.W_std > 0:
            raise ValueError(f"W_std must be > 0, got {self.W_std!r}")
        if self.b_std < 0 or self.diag_reg < 0:
            raise ValueError(f"b_std and diag_reg must be >= 0, got b_std={self.b_std!r}, "
                             f"diag_reg={self.diag_reg!r}")
        if self.implementation not in ("jacobian", "ntvp", "structured", "auto"):
            raise ValueError(f"implementation must be 'jacobian', 'ntvp', 'structured' or "
                             f"'auto', got {self.implementation!r}")


def network(cfg: Config, readout_width: int):
    """``(init_fn, apply_fn)`` of the NTK-parametrised ReLU MLP
    ``D -> hidden_width x (depth - 1) -> readout_width -> O``."""
    layers = []
    for width in (cfg.hidden_width,) * (cfg.depth - 1) + (readout_width,):
        layers += [stax.Dense(width, W_std=cfg.W_std, b_std=cfg.b_std), stax.Relu()]
    init_fn, apply_fn, _ = stax.serial(*layers, stax.Dense(NUM_CLASSES, W_std=cfg.W_std,
                                                           b_std=cfg.b_std))
    return init_fn, apply_fn


def init_params(shapes, rng: np.random.Generator, dtype):
    """Parameters of the NTK-parametrised :func:`network`: every weight and bias is
    ``N(0, 1)`` (the scales ``W_std / sqrt(fan_in)`` and ``b_std`` live in ``apply_fn``, as in
    ``ntk.stax``'s own init), drawn with numpy for the pytree of ``shapes`` (from
    ``jax.eval_shape`` of the init function) so that no width needs its own compiled
    random-number program."""
    return jax.tree.map(lambda leaf: jnp.asarray(rng.standard_normal(leaf.shape), dtype), shapes)


def sum_of_logits(apply_fn):
    """The one-output model ``g(x) = (1/sqrt O) sum_i f_i(x)`` whose eNTK is the pNTK (the
    model :func:`ntk.approx.pntk_fn` hands to :func:`ntk.empirical_ntk_fn`); used here only
    for its cost ``plan``."""
    def g(params, x, **kwargs):
        fx = apply_fn(params, x, **kwargs)
        return fx.reshape(fx.shape[0], -1).sum(-1, keepdims=True) / math.sqrt(fx.shape[-1])
    return g


def relative_frobenius_error(full, pntk):
    """``|Theta - pNTK (x) I_O|_F / |Theta|_F`` for ``Theta`` ``(N1, N2, O, O)`` and
    ``pNTK`` ``(N1, N2)``."""
    if full.ndim != 4 or full.shape[:2] != pntk.shape or full.shape[2] != full.shape[3]:
        raise ValueError(f"full must be (N1, N2, O, O) and pntk (N1, N2); got "
                         f"{tuple(full.shape)} and {tuple(pntk.shape)}")
    lifted = approx.lift(pntk, full.shape[2])
    return float(jnp.linalg.norm(full - lifted) / jnp.linalg.norm(full))


def loglog_fit(x, y) -> tuple[float, float]:
    """Least-squares fit ``log y = log C + s log x``: returns ``(s, C)``."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.shape != y.shape or x.ndim != 1 or x.size < 2:
        raise ValueError(f"x and y must be 1-D of the same length >= 2, got shapes "
                         f"{x.shape} and {y.shape}")
    if np.any(x <= 0) or np.any(y <= 0) or not np.all(np.isfinite(y)):
        raise ValueError(f"x and y must be positive and finite, got x={x}, y={y}")
    slope = float(loglog_slope(x, y))
    return slope, float(np.exp(np.mean(np.log(y)) - slope * np.mean(np.log(x))))


def extreme_eigenvalues(k) -> tuple[float, float]:
    """``(lambda_max, lambda_min)`` of a symmetric train kernel ``(N, N)``, or of a full
    ``(N, N, O, O)`` kernel as the ``(N O, N O)`` matrix ``[(a, i), (b, j)]``; in float64
    LAPACK (numpy: no XLA program to compile for each kernel shape)."""
    k = np.asarray(k, np.float64)
    if k.ndim == 4:
        n, _, o, _ = k.shape
        k = k.transpose(0, 2, 1, 3).reshape(n * o, n * o)
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"k must be (N, N) or (N, N, O, O), got {k.shape}")
    evals = np.linalg.eigvalsh(0.5 * (k + k.T))
    return float(evals[-1]), float(evals[0])


@partial(jax.jit, static_argnames=("diag_reg",))
def regression(k_dd, k_td, y_train, diag_reg: float):
    """Kernel-regression test prediction ``K_td (K_dd + diag_reg mean(diag K_dd) I)^{-1} Y``,
    ``(N_test, O)``, for ``(N, N)`` or full ``(N, N, O, O)`` kernels: the linearised network
    trained to ``t = inf`` from ``f_0 = 0`` (:func:`ntk.predict.gp_inference`'s posterior
    mean, a Cholesky solve). Jitted: one program per kernel shape."""
    return predict.gp_inference(k_dd, y_train, diag_reg=diag_reg)("nngp", k_td)


def _split(k, n_train):
    """Rows ``[train; test]`` -> the train-train block (symmetrised) and the test-train
    block."""
    k_dd = k[:n_train]
    # Theta[a, b, i, j] = Theta[b, a, j, i]: swap the output axes with the example axes
    k_t = k_dd.T if k_dd.ndim == 2 else jnp.transpose(k_dd, (1, 0, 3, 2))
    return 0.5 * (k_dd + k_t), k[n_train:]


def _plan_flops(kernel_fn, x, params):
    plan = kernel_fn.plan(x, None, params)
    return plan["flops"][plan["implementation"]], plan["implementation"]


def run(cfg: Config, ctx) -> dict:
    cfg.validate()
    x_tr, l_tr, x_te, l_te = tasks.load(cfg.dataset, cfg.n_train, cfg.n_test, cfg.seed)
    x_tr, x_te = jnp.asarray(x_tr), jnp.asarray(x_te)
    y_tr = predict.one_hot(jnp.asarray(l_tr), NUM_CLASSES, centered=True, dtype=x_tr.dtype)
    l_te = jnp.asarray(l_te)
    x_all, n_tr = jnp.concatenate([x_tr, x_te]), x_tr.shape[0]
    keys = ("frobenius_error", "lambda_max_ratio", "condition_ratio", "entk_condition",
            "entk_accuracy", "pntk_accuracy", "prediction_agreement", "prediction_rel_dist")
    per_seed = {k: np.zeros((len(cfg.readout_widths), cfg.n_seeds)) for k in keys}
    flop_ratio, impls = [], []
    for wi, width in enumerate(cfg.readout_widths):
        init_fn, apply_fn = network(cfg, width)
        full_fn = ntk.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0,
                                       implementation=cfg.implementation)
        pntk_fn = approx.pntk_fn(apply_fn, implementation=cfg.implementation)
        shapes = jax.eval_shape(lambda: init_fn(jax.random.PRNGKey(0), x_tr.shape)[1])
        for s in range(cfg.n_seeds):
            params = init_params(shapes, np.random.default_rng([cfg.seed, wi, s]), x_tr.dtype)
            # one call per kernel: rows [train; test] against the training columns
            full_dd, full_td = _split(full_fn(x_all, x_tr, params), n_tr)
            p_dd, p_td = _split(pntk_fn(x_all, x_tr, params), n_tr)
            per_seed["frobenius_error"][wi, s] = relative_frobenius_error(full_dd, p_dd)
            e_max, e_min = extreme_eigenvalues(full_dd)
            p_max, p_min = extreme_eigenvalues(p_dd)
            f_full = np.asarray(regression(full_dd, full_td, y_tr, cfg.diag_reg))
            f_p = np.asarray(regression(p_dd, p_td, y_tr, cfg.diag_reg))
            per_seed["lambda_max_ratio"][wi, s] = p_max / e_max
            per_seed["entk_condition"][wi, s] = e_max / e_min
            per_seed["condition_ratio"][wi, s] = (p_max / p_min) / (e_max / e_min)
            per_seed["entk_accuracy"][wi, s] = predict.accuracy(f_full, l_te)
            per_seed["pntk_accuracy"][wi, s] = predict.accuracy(f_p, l_te)
            per_seed["prediction_agreement"][wi, s] = np.mean(f_full.argmax(-1)
                                                              == f_p.argmax(-1))
            per_seed["prediction_rel_dist"][wi, s] = (np.linalg.norm(f_full - f_p)
                                                      / np.linalg.norm(f_full))
        # the cost of the two kernels on the training set, as the planner estimates it
        full_flops, full_impl = _plan_flops(full_fn, x_tr, params)
        p_flops, p_impl = _plan_flops(
            ntk.empirical_ntk_fn(sum_of_logits(apply_fn), vmap_axes=0,
                                 implementation=cfg.implementation), x_tr, params)
        flop_ratio.append(full_flops / p_flops)
        impls.append(f"{full_impl}/{p_impl}")
    mean = {k: v.mean(1) for k, v in per_seed.items()}
    slope, prefactor = loglog_fit(cfg.readout_widths, mean["frobenius_error"])
    metrics = {"readout_widths": list(cfg.readout_widths), "num_outputs": NUM_CLASSES,
               **{k: v.tolist() for k, v in mean.items()},
               "frobenius_error_per_seed": per_seed["frobenius_error"].tolist(),
               "error_slope": slope, "error_prefactor": prefactor,
               "flop_ratio": flop_ratio, "implementations_full_over_pntk": impls}
    return metrics


def figures(results: dict) -> dict:
    """The error against readout width (log-log, per seed and mean), the spectrum ratios, and
    kernel-regression accuracy and agreement."""
    from matplotlib.figure import Figure
    m = results["metrics"]
    n = np.asarray(m["readout_widths"], float)
    curve = lambda key: np.asarray(m[key], float)
    error, slope = curve("frobenius_error"), float(m["error_slope"])
    fig = Figure(figsize=(14.5, 3.9))
    axes = fig.subplots(1, 3)
    ax = axes[0]
    for row in np.asarray(m["frobenius_error_per_seed"], float).T:
        ax.loglog(n, row, ".", color="0.6")
    ax.loglog(n, error, "o-", label=f"mean over seeds (slope {slope:.2f})")
    ax.loglog(n, float(m["error_prefactor"]) * n ** slope, "k:", lw=0.8, label="fit")
    ax.loglog(n, error[0] * np.sqrt(n[0] / n), "r--", lw=0.8, label="n^-1/2")
    ax.set_xlabel("readout width n (last hidden layer)")
    ax.set_ylabel("||eNTK - pNTK (x) I||_F / ||eNTK||_F")
    ax.set_title("pNTK error falls like n^-1/2")
    ax.legend(fontsize=7)
    ax = axes[1]
    ax.semilogx(n, curve("lambda_max_ratio"), "o-", label="lambda_max(pNTK) / lambda_max(eNTK)")
    ax.semilogx(n, curve("condition_ratio"), "s-", label="cond(pNTK) / cond(eNTK)")
    ax.axhline(1.0, color="k", lw=0.8, ls=":")
    ax.set_xlabel("readout width n")
    ax.set_ylabel("ratio (pNTK over full eNTK)")
    ax.set_title("Spectrum: pNTK tracks the full eNTK")
    ax.legend(fontsize=7)
    ax = axes[2]
    ax.semilogx(n, curve("entk_accuracy"), "o-", label="full eNTK regression")
    ax.semilogx(n, curve("pntk_accuracy"), "s--", label="pNTK regression")
    ax.semilogx(n, curve("prediction_agreement"), "^:", label="argmax agreement")
    ax.set_xlabel("readout width n")
    ax.set_ylabel("test accuracy / agreement")
    ax.set_title(f"Kernel regression on digits: same predictions\n(pNTK: "
                 f"{float(m['flop_ratio'][-1]):.0f}x fewer planned kernel FLOPs)", fontsize=10)
    ax.legend(fontsize=7)
    return {"pntk_quality": fig}


def _at_largest(m: dict) -> str:
    return f"at n = {m['readout_widths'][-1]}"


# Thresholds (the old defaults): the O(n^-1/2) theorem as a fitted slope -0.5 +- 0.15 over
# three widths; at the largest width lambda_max within 5 %, the condition number within 25 %,
# accuracies within 2 points, >= 95 % agreement; the kernel costs at least a factor O = 10.
CLAIMS = (
    claim("pntk_error_inverse_sqrt_width",
          lambda m: f"relative Frobenius error of pNTK (x) I against the full eNTK ~ n^s, readout "
                    f"widths n = {m['readout_widths'][0]}..{m['readout_widths'][-1]}",
          "error_slope", close_to(-0.5, 0.15)),
    claim("lambda_max_ratio",
          lambda m: f"lambda_max(pNTK) / lambda_max(eNTK) {_at_largest(m)}",
          lambda m: m["lambda_max_ratio"][-1], close_to(1.0, 0.05)),
    claim("condition_number_ratio",
          lambda m: f"cond(pNTK) / cond(eNTK) {_at_largest(m)}",
          lambda m: m["condition_ratio"][-1], close_to(1.0, 0.25)),
    claim("regression_accuracy_gap",
          lambda m: f"absolute difference of the test accuracies of pNTK and eNTK kernel "
                    f"regression {_at_largest(m)}",
          lambda m: abs(m["pntk_accuracy"][-1] - m["entk_accuracy"][-1]), at_most(0.02)),
    claim("regression_argmax_agreement",
          lambda m: f"fraction of test points where pNTK and eNTK regression predict the same "
                    f"class {_at_largest(m)}",
          lambda m: m["prediction_agreement"][-1], at_least(0.95)),
    # the pNTK needs one backward pass per example instead of O = NUM_CLASSES
    claim("kernel_flop_ratio",
          lambda m: f"planned FLOPs of the full eNTK / the pNTK {_at_largest(m)} "
                    f"(O = {m['num_outputs']} outputs)",
          lambda m: m["flop_ratio"][-1], at_least(10)),
)
