"""Training-free active learning by the NTK-GP's expected posterior variance (EV-GP).

Hemachandra, Dai, Singh, Ng & Low, "Training-Free Neural Active Learning with
Initialization-Robustness Guarantees" (ICML 2023, arXiv:2306.04454; code
apivich-h/init-robust-al).

The criterion. With ``Theta`` the infinite-width NTK of the network to be trained (here
:mod:`ntk.stax`, NTK parametrisation) and a labelled set ``L``, the NTK-GP posterior variance

    sigma^2(x | L) = Theta(x, x) - Theta(x, L) (Theta(L, L) + s^2 I)^-1 Theta(L, x)

approximates the variance over random initialisations of a trained wide network's output at
``x`` (the paper's motivation: lowering it makes training robust to the initialisation and, in
their bounds, lowers the generalisation error). EV-GP chooses ``L`` to maximise
``-mean_{x in T} sigma^2(x | L)`` over a target set ``T`` (the pool here; the authors subsample
it by k-means++ beyond 10,000 points), greedily: the next point ``c`` maximises the variance it
removes, ``sum_{x in T} Sigma(x, c)^2 / (Sigma(c, c) + s^2)``, with ``Sigma`` the current
posterior covariance, updated by one rank-one Gaussian conditioning per pick
(:func:`greedy_gp_selection`; the authors' lazy evaluation gives the same picks). The
variance depends on no label: the whole selection is made before a single label is seen,
and nothing is trained ("training-free").

Baselines. ``random``; ``kmeans++`` (D^2 seeding on the inputs: a diversity baseline of the
paper); ``max_variance`` (uncertainty sampling under the same GP: the next point is the one with
the largest ``sigma^2(c | L)``); ``lcmd`` (Holzmueller, Zaverkin, Kaestner & Steinwart 2023,
largest cluster maximum distance) on the sketched finite-width NTK of the network at
initialisation: features ``phi(x) = S^T grad_theta (sum_i f_i(x) / sqrt O)``
(:func:`ntk.approx.projected_features_fn`, Rademacher sketch), distances
``|phi(x) - phi(x')|``; the first pick has the largest ``|phi(x)|``, then repeatedly every pool
point joins its nearest selected centre, and the cluster with the largest sum of squared
distances gives up its farthest point.

Measured. Each method's picks (a nested sequence, so budget ``b`` is the first ``b``) are
labelled with digits' classes, and ``n_inits`` networks (ReLU MLP, ``depth`` hidden layers of
``width``, ``W_std = 1``, ``b_std = 0.1`` as in the authors' UCI configs) are trained on them by
full-batch gradient descent on the squared loss to centred one-hot targets (``steps`` steps,
learning rate ``lr_fraction`` of the kernel regime's maximum ``2 b / lambda_max(Theta_LL)``),
all from the same initialisations for every method. Reported per method and budget: test
accuracy (mean over initialisations), the variance of the trained networks' test outputs
across initialisations (mean over test points and outputs), the NTK-GP's mean posterior
variance on the test digits (the criterion, evaluated off the pool) and the NTK kernel
regression accuracy. Repeated over ``n_seeds`` pool / test splits.

Claims (the paper's, scaled down; thresholds are the claims' structure, the paper giving no
numbers at our scale): at budgets up to ``SMALL_BUDGET`` labels EV-GP's networks are more
accurate than those trained on random picks, and vary less across initialisations; and the
NTK-GP posterior variance of a labelled set ranks the measured across-initialisation variance
of the networks trained on it (Spearman correlation over every method, budget and seed).

Scaled down: the paper's MNIST setting uses a 20,000-image pool, a CNN, budget 400 in batches of
100; here 8x8 digits, a pool of 600 (full: 1,000), budgets 10 to 40 (full: 10 to 160), width
128 (full: 512), 3 initialisations trained 200 steps (full: 8, 500 steps), 2 splits (full: 5).
"""
from __future__ import annotations

import dataclasses
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

import tasks
from experiments.claims import claim, greater, less
from experiments.loop import train
from ntk import approx, stax

SUMMARY = ("Hemachandra et al. 2023: training-free active learning on digits by the NTK-GP's "
           "expected posterior variance (EV-GP) against random, k-means++, max-variance and "
           "LCMD on sketched eNTK features")
PAPER = "hemachandra2023evgp"
CITATION = ("Hemachandra, A., Dai, Z., Singh, J., Ng, S.-K. & Low, B. K. H. (2023). "
            "Training-Free Neural Active Learning with Initialization-Robustness Guarantees. "
            "ICML 2023, arXiv:2306.04454.")

METHODS = ("random", "kmeans++", "max_variance", "lcmd", "ev_gp")
SMALL_BUDGET = 40   # "small budgets" in the claims: every budget up to this many labels


@dataclasses.dataclass(frozen=True)
class Config:
    n_pool: int = 600
    n_test: int = 400
    budgets: tuple[int, ...] = (10, 20, 40)
    depth: int = 2
    width: int = 128
    W_std: float = 1.0
    b_std: float = 0.1
    n_inits: int = 4
    steps: int = 300
    lr_fraction: float = 0.5
    noise: float = 1e-3          # s: the GP's observation noise standard deviation
    sketch_dim: int = 64         # LCMD's sketched eNTK features
    n_seeds: int = 2
    seed: int = 0

    @classmethod
    def quick(cls) -> "Config":
        return cls(n_inits=3, steps=200)

    @classmethod
    def full(cls) -> "Config":
        return cls(n_pool=1000, n_test=797, budgets=(10, 20, 40, 80, 160), width=512,
                   n_inits=8, steps=500, sketch_dim=256, n_seeds=5)

    def validate(self) -> None:
        if not self.budgets or sorted(set(self.budgets)) != list(self.budgets):
            raise ValueError(f"budgets must be increasing distinct sizes, got {self.budgets}")
        if self.budgets[-1] > self.n_pool:
            raise ValueError(f"the largest budget {self.budgets[-1]} exceeds n_pool="
                             f"{self.n_pool}")
        if self.budgets[0] > SMALL_BUDGET:
            raise ValueError(f"the claims compare budgets up to {SMALL_BUDGET}; the smallest "
                             f"budget is {self.budgets[0]}")
        if self.n_pool + self.n_test > 1797:
            raise ValueError(f"n_pool + n_test = {self.n_pool + self.n_test}: digits has 1797 "
                             "images")
        if self.n_inits < 2:
            raise ValueError(f"n_inits must be >= 2 (a variance across them), got "
                             f"{self.n_inits}")
        if not 0 < self.lr_fraction < 1:
            raise ValueError(f"lr_fraction must be in (0, 1), got {self.lr_fraction}")
        if not self.noise > 0:
            raise ValueError(f"noise must be > 0, got {self.noise}")


# ------------------------------------------------------------------------------- selection


def greedy_gp_selection(kernel, budget: int, noise: float, *, rule: str = "ev",
                        targets=None) -> np.ndarray:
    """Greedy batch selection from a pool under a GP prior with covariance ``kernel`` (P, P).

    ``rule='ev'`` (EV-GP): each pick maximises the total posterior variance it removes from the
    ``targets`` (indices into the pool; default all of it),
    ``sum_t Sigma(t, c)^2 / (Sigma(c, c) + noise^2)``. ``rule='max_variance'``: each pick has
    the largest posterior variance ``Sigma(c, c)``. ``Sigma`` starts at ``kernel`` and is
    conditioned on each pick's noisy observation by a rank-one update. Returns the ``budget``
    pool indices in the order picked.
    """
    sigma = np.array(kernel, dtype=np.float64, copy=True)
    p = sigma.shape[0]
    if sigma.shape != (p, p):
        raise ValueError(f"kernel: expected a square (P, P) matrix, got {sigma.shape}")
    if not 0 < budget <= p:
        raise ValueError(f"budget: expected 1..{p} (the pool size), got {budget}")
    if rule not in ("ev", "max_variance"):
        raise ValueError(f"rule: expected 'ev' or 'max_variance', got {rule!r}")
    t = np.arange(p) if targets is None else np.asarray(targets)
    s2 = float(noise) ** 2
    chosen = np.zeros(p, bool)
    picks = []
    for _ in range(budget):
        var = np.diag(sigma)
        if rule == "ev":
            score = np.sum(sigma[:, t] ** 2, axis=1) / (var + s2)
        else:
            score = var.copy()
        score[chosen] = -np.inf
        c = int(np.argmax(score))
        picks.append(c)
        chosen[c] = True
        col = sigma[:, c].copy()
        sigma -= np.outer(col, col) / (col[c] + s2)
    return np.asarray(picks)


def posterior_variance(k_xx_diag, k_xl, k_ll, noise: float) -> np.ndarray:
    """``sigma^2(x | L)`` for every row of ``k_xl`` (n, |L|): the exact formula, one solve."""
    a = np.asarray(k_ll, np.float64) + float(noise) ** 2 * np.eye(len(k_ll))
    k_xl = np.asarray(k_xl, np.float64)
    return np.asarray(k_xx_diag, np.float64) - np.einsum(
        "ij,ji->i", k_xl, np.linalg.solve(a, k_xl.T))


def lcmd_selection(features, budget: int) -> np.ndarray:
    """Largest-cluster maximum-distance picks on ``features`` (P, k) (Holzmueller et al.)."""
    phi = np.asarray(features, np.float64)
    p = phi.shape[0]
    if not 0 < budget <= p:
        raise ValueError(f"budget: expected 1..{p} (the pool size), got {budget}")
    sq = np.sum(phi ** 2, axis=1)
    picks = [int(np.argmax(sq))]
    dist = np.maximum(sq + sq[picks[0]] - 2 * phi @ phi[picks[0]], 0)   # to the nearest centre
    owner = np.zeros(p, int)                                            # index into picks
    while len(picks) < budget:
        weight = np.bincount(owner, weights=dist, minlength=len(picks))
        heavy = int(np.argmax(weight))
        members = np.flatnonzero(owner == heavy)
        c = int(members[np.argmax(dist[members])])
        picks.append(c)
        d_new = np.maximum(sq + sq[c] - 2 * phi @ phi[c], 0)
        closer = d_new < dist
        dist = np.where(closer, d_new, dist)
        owner = np.where(closer, len(picks) - 1, owner)
        dist[c] = 0.0
    return np.asarray(picks)


def kmeanspp_selection(x, budget: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding on the inputs: the first pick uniform, then D^2 sampling."""
    x = np.asarray(x, np.float64)
    picks = [int(rng.integers(len(x)))]
    dist = np.sum((x - x[picks[0]]) ** 2, axis=1)
    while len(picks) < budget:
        c = int(rng.choice(len(x), p=dist / dist.sum()))
        picks.append(c)
        dist = np.minimum(dist, np.sum((x - x[c]) ** 2, axis=1))
    return np.asarray(picks)


# ------------------------------------------------------------------------------- the networks


def network(cfg: Config):
    layers = []
    for _ in range(cfg.depth):
        layers += [stax.Dense(cfg.width, cfg.W_std, cfg.b_std), stax.Relu()]
    return stax.serial(*layers, stax.Dense(tasks.NUM_CLASSES, cfg.W_std, cfg.b_std))


# The training loop keeps XLA's usual CPU optimisation where a caller lowers the default (the
# test suite compiles at level 0); results change by rounding only.
@partial(jax.jit, static_argnames=("apply_fn", "n_steps"),
         compiler_options={"xla_backend_optimization_level": 2})
def _gd(params, x, y, lr, x_test, *, apply_fn, n_steps):
    """``n_steps`` GD steps on ``|f(X) - Y|^2 / (2 b)`` for every (labelled set, init) pair:
    ``params`` (S, I, ...), ``x`` (S, b, d), ``y`` (S, b, O), ``lr`` (S,). Returns the trained
    params, their test outputs (S, I, n_test, O) and final training losses (S, I)."""
    def loss(p, xs, ys):
        return 0.5 * jnp.mean(jnp.sum((apply_fn(p, xs) - ys) ** 2, axis=-1))

    def one(p, xs, ys, rate):
        def step(q, _):
            g = jax.grad(loss)(q, xs, ys)
            return jax.tree.map(lambda a, b: a - rate * b, q, g), None
        q, _ = jax.lax.scan(step, p, None, length=n_steps)
        return q, apply_fn(q, x_test), loss(q, xs, ys)
    over_inits = jax.vmap(one, in_axes=(0, None, None, None))
    return jax.vmap(over_inits, in_axes=(0, 0, 0, 0))(params, x, y, lr)


@partial(jax.jit, static_argnums=(0, 1, 2))
def _initial_params(init_fn, in_dim: int, n: int, key):
    return jax.vmap(lambda k: init_fn(k, (-1, in_dim))[1])(jax.random.split(key, n))


def _spearman(a, b) -> float:
    ra = np.argsort(np.argsort(a))
    rb = np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


# ------------------------------------------------------------------------------- the study


def select_all(cfg: Config, x_pool, theta_pool, apply_fn, params0, seed: int):
    """Every method's picks (max budget, in order) and the seconds each selection took."""
    b = cfg.budgets[-1]
    rng = np.random.default_rng([cfg.seed, seed, 7])
    out, secs = {}, {}
    for method in METHODS:
        start = time.perf_counter()
        if method == "random":
            picks = rng.permutation(len(x_pool))[:b]
        elif method == "kmeans++":
            picks = kmeanspp_selection(x_pool, b, rng)
        elif method == "max_variance":
            picks = greedy_gp_selection(theta_pool, b, cfg.noise, rule="max_variance")
        elif method == "ev_gp":
            picks = greedy_gp_selection(theta_pool, b, cfg.noise, rule="ev")
        else:
            feats = approx.projected_features_fn(apply_fn, cfg.sketch_dim)(
                jnp.asarray(x_pool, jnp.float32), params0,
                jax.random.PRNGKey(cfg.seed * 1000 + seed))
            picks = lcmd_selection(np.asarray(feats), b)
        secs[method] = time.perf_counter() - start
        out[method] = np.asarray(picks)
        assert len(set(out[method].tolist())) == b, method
    return out, secs


def run(cfg: Config, ctx) -> dict:
    cfg.validate()
    init_fn, apply_fn, kernel_fn = network(cfg)
    nb, nm = len(cfg.budgets), len(METHODS)
    shape = (cfg.n_seeds, nm, nb)
    acc, out_var = np.zeros(shape), np.zeros(shape)
    gp_var, kr_acc, train_loss = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    select_s = {m: [] for m in METHODS}
    for s in range(cfg.n_seeds):
        split = tasks.load("digits", cfg.n_pool, cfg.n_test, seed=cfg.seed + s, dtype=np.float64)
        x_pool, x_test = split.x_train, split.x_test
        y_pool = tasks.one_hot(split.labels_train, centered=True, dtype=np.float64)
        n = len(x_pool)       # one kernel call: pool and test points together
        theta = np.asarray(kernel_fn(np.concatenate([x_pool, x_test]), None, "ntk"))
        theta_pool, theta_test_pool = theta[:n, :n], theta[n:, :n]
        theta_test_diag = np.diag(theta)[n:]
        key = jax.random.PRNGKey(cfg.seed * 1000 + s)
        params0 = _initial_params(init_fn, x_pool.shape[1], cfg.n_inits, key)
        first = jax.tree.map(lambda a: a[0], params0)
        picks, secs = select_all(cfg, x_pool, theta_pool, apply_fn, first, s)
        for m in METHODS:
            select_s[m].append(secs[m])
        for j, b in enumerate(cfg.budgets):
            sets = np.stack([picks[m][:b] for m in METHODS])               # (M, b)
            lrs = []
            for i, m in enumerate(METHODS):
                idx = sets[i]
                k_ll = theta_pool[np.ix_(idx, idx)]
                gp_var[s, i, j] = np.mean(posterior_variance(theta_test_diag,
                                                             theta_test_pool[:, idx], k_ll,
                                                             cfg.noise))
                mean = theta_test_pool[:, idx] @ np.linalg.solve(
                    k_ll + cfg.noise ** 2 * np.eye(b), y_pool[idx])
                kr_acc[s, i, j] = np.mean(np.argmax(mean, 1) == split.labels_test)
                lrs.append(cfg.lr_fraction * 2 * b / np.linalg.eigvalsh(k_ll)[-1])
            f32 = lambda a: jnp.asarray(np.asarray(a, np.float32))
            x_sets, y_sets = f32(x_pool[sets]), f32(y_pool[sets])
            stacked = jax.tree.map(lambda a: jnp.broadcast_to(a, (nm,) + a.shape), params0)

            # one chunk trains from the initialisation to the end: the state keeps the
            # outputs, not the parameters (the checkpoint is what a rerun needs)
            def chunk(state, x_sets=x_sets, y_sets=y_sets, lrs=f32(lrs), stacked=stacked):
                _, test_out, loss = _gd(stacked, x_sets, y_sets, lrs, f32(x_test),
                                        apply_fn=apply_fn, n_steps=cfg.steps)
                return {"test": test_out, "loss": loss.mean(1)}
            state, _, _ = train(
                ctx, f"seed={s}/budget={b}",
                init_state=lambda: {
                    "test": jnp.zeros((nm, cfg.n_inits, cfg.n_test, tasks.NUM_CLASSES),
                                      jnp.float32),
                    "loss": jnp.zeros(nm, jnp.float32)},
                chunk_fn=chunk, n_steps=cfg.steps, chunk=cfg.steps, record=lambda st, t: {})
            test_out = np.asarray(state["test"], np.float64)                # (M, I, n, O)
            acc[s, :, j] = np.mean(np.argmax(test_out, -1) == split.labels_test, axis=(1, 2))
            out_var[s, :, j] = np.mean(test_out.var(axis=1, ddof=1), axis=(1, 2))
            train_loss[s, :, j] = np.asarray(state["loss"])
    small = np.asarray(cfg.budgets) <= SMALL_BUDGET
    r, e = METHODS.index("random"), METHODS.index("ev_gp")
    per = lambda a: {m: a[:, i, :].tolist() for i, m in enumerate(METHODS)}   # (seeds, budgets)
    return {
        "budgets": list(cfg.budgets), "methods": list(METHODS), "small_budget": SMALL_BUDGET,
        "accuracy": per(acc), "output_variance": per(out_var), "gp_variance": per(gp_var),
        "kernel_accuracy": per(kr_acc), "final_train_loss": per(train_loss),
        "selection_seconds": {m: float(np.mean(v)) for m, v in select_s.items()},
        "evgp_minus_random_accuracy_small": float(np.mean(acc[:, e, small] - acc[:, r, small])),
        "evgp_over_random_variance_small": float(np.exp(np.mean(
            np.log(out_var[:, e, small] / out_var[:, r, small])))),
        "gp_variance_ranks_output_variance": _spearman(gp_var.ravel(), out_var.ravel()),
        "evgp_minus_random_kernel_accuracy_small": float(np.mean(
            kr_acc[:, e, small] - kr_acc[:, r, small])),
    }


# ------------------------------------------------------------------------------- figures


def figures(results: dict) -> dict:
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullLocator
    m = results["metrics"]
    budgets = np.asarray(m["budgets"])
    panels = (("accuracy", "test accuracy (trained networks)"),
              ("output_variance", "output variance across initialisations"),
              ("gp_variance", "NTK-GP mean posterior variance (test)"),
              ("kernel_accuracy", "NTK kernel regression test accuracy"))
    fig = Figure(figsize=(12, 7.5))
    axes = fig.subplots(2, 2).ravel()
    for ax, (key, label) in zip(axes, panels):
        for i, method in enumerate(m["methods"]):
            vals = np.asarray(m[key][method], float)                   # (seeds, budgets)
            mean = vals.mean(0)
            err = vals.std(0, ddof=1) / np.sqrt(len(vals)) if len(vals) > 1 else 0 * mean
            ax.errorbar(budgets, mean, yerr=err, marker="o", ms=3, capsize=2,
                        color=f"C{i}", lw=2.0 if method == "ev_gp" else 1.0, label=method)
        ax.set_xscale("log")
        if "variance" in key:
            ax.set_yscale("log")
        ax.set_xticks(budgets, [str(int(b)) for b in budgets])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("labelled examples (budget)")
        ax.set_ylabel(label)
        ax.set_title(label[0].upper() + label[1:] + f", mean of {len(vals)} splits",
                     fontsize=9)
        ax.legend(fontsize=7)
    gain = 100 * m["evgp_minus_random_accuracy_small"]
    fig.suptitle(f"Active learning on digits: EV-GP gains {gain:+.1f} points over random at "
                 f"budgets <= {m['small_budget']}", fontsize=10)
    fig.subplots_adjust(hspace=0.35, wspace=0.25)

    fig2 = Figure(figsize=(5.5, 4.2))
    ax = fig2.subplots()
    for i, method in enumerate(m["methods"]):
        ax.loglog(np.ravel(m["gp_variance"][method]), np.ravel(m["output_variance"][method]),
                  "o", ms=4, color=f"C{i}", label=method)
    ax.set_xlabel("NTK-GP mean posterior variance of the labelled set")
    ax.set_ylabel("networks' output variance across inits")
    ax.set_title(f"The criterion ranks the measured variance (Spearman "
                 f"{m['gp_variance_ranks_output_variance']:.2f})", fontsize=9)
    ax.legend(fontsize=7)
    return {"learning_curves": fig, "criterion_vs_variance": fig2}


# ------------------------------------------------------------------------------- claims

CLAIMS = (
    claim("evgp_beats_random_at_small_budgets",
          lambda m: f"test accuracy of networks trained on EV-GP's picks minus random picks, "
                    f"mean over budgets <= {m['small_budget']} and splits",
          "evgp_minus_random_accuracy_small", greater(0)),
    claim("evgp_networks_vary_less",
          lambda m: f"variance of test outputs across initialisations, EV-GP / random "
                    f"(geometric mean over budgets <= {m['small_budget']} and splits)",
          "evgp_over_random_variance_small", less(1)),
    claim("gp_variance_predicts_initialisation_variance",
          "Spearman correlation between a labelled set's NTK-GP posterior variance and its "
          "networks' output variance across initialisations (every method, budget, split)",
          "gp_variance_ranks_output_variance", greater(0)),
)
