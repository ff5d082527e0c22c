"""Kernel surrogates of a trained network: trace NTK, pNTK, their random projections, the
conjugate and the embedding kernel; faithfulness (Kendall tau) and attribution (LDS).

Engel, Wang, Frank, Dumitriu, Choudhury, Sarwate & Chiang 2024, "Faithful and Efficient
Explanations for Neural Networks via Neural Tangent Kernel Surrogate Models" (ICLR 2024);
attribution scored with the linear datamodeling score of Park et al. 2023 (TRAK).

Setup. A network ``f: R^64 -> R^O`` (``O = 10`` digit classes; an MLP, and in the full
config also a small CNN, both in NTK parametrisation) is trained on scikit-learn's digits
(:func:`tasks.load`) by full-batch gradient descent with momentum on the softmax
cross-entropy. With ``g_c(x) = d f_c(x) / d theta`` at the *trained* parameters, the kernels
compared are (as the authors' code defines them, every one cosine-normalised
``K(x, x') / sqrt(K(x, x) K(x', x'))`` before use):

- ``trNTK(x, x') = sum_c <g_c(x), g_c(x')>`` (:func:`ntk.approx.trace_ntk_fn`);
- ``trNTK0``: the same kernel *without* the cosine normalisation, divided by the standard
  deviation of its train-train block (the paper's ablation of the normalisation);
- ``pNTK(x, x') = <grad g(x), grad g(x')>``, ``g = (1/sqrt O) sum_c f_c`` (sum of logits,
  :func:`ntk.approx.pntk_fn`);
- ``proj-trNTK_k(x, x') = sum_c <S^T g_c(x), S^T g_c(x')>`` and
  ``proj-pNTK_k(x, x') = <S^T grad g(x), S^T grad g(x')>``: per-example gradients sketched
  to ``k`` dimensions by a random ``S`` (``P x k``, ``E[S S^T] = I_P``; Rademacher as in
  TRAK's projector; :func:`ntk.approx.projected_features_fn` with ``output='each'`` /
  ``'sum'``). For a Gaussian sketch and one output, ``Var K_hat(x, x') = (K(x, x) K(x', x')
  + K(x, x')^2) / k`` (Johnson-Lindenstrauss), so the relative Frobenius error
  ``|K_hat - K|_F / |K|_F`` falls like ``k^-1/2``; a Rademacher sketch has variance no larger;
- ``CK(x, x') = <h_L(x), h_L(x')>``, the conjugate kernel of the last hidden layer (the
  readout weights' block of the trNTK, up to the factor ``O``);
- ``Em(x, x') = sum_l <z_l(x), z_l(x')>``, the embedding kernel: inner products of every
  layer's output (each dense / convolution layer's pre-activation, the logits included)
  summed over layers.

Surrogate (the paper's kernel general linear model, kGLM): multinomial logistic regression
on the kernel rows ``K(x, X_train)`` fitted to the training *labels* (not the network's
outputs), ``logit_c(x) = sum_i W_ci K(x, x_i) + b_c``, L2 penalty ``alpha |W|^2 / 2`` per
example (``alpha = 1e-4`` for the paper's small models), balanced classes. The authors fit
scikit-learn's one-vs-rest ``SGDClassifier`` (log loss); here the exact minimiser of the
multinomial objective (L-BFGS), which does not depend on the order of SGD steps.

Faithfulness: Kendall's tau between the kGLM's and the network's softmax probability of the
true class on the held-out digits (points where either is exactly 0 or 1 dropped, as the
authors do). Test-accuracy differential ``acc(kGLM) - acc(network)`` is recorded.

Attribution: the kGLM splits its logit for the true class ``y`` of a test point ``z`` into
one term per training example, ``tau_i(z) = W_yi K(z, x_i)``. Linear datamodeling score:
draw ``M`` random subsets ``S_j`` of half the training set, retrain the network on each
(same initialisation and schedule as the original, so the retraining is deterministic and
only the subset varies), record the margin ``m_j(z) = f_y(z) - logsumexp_{c != y} f_c(z)``
and compare it with the prediction ``sum_{i in S_j} tau_i(z)``:
``LDS = mean_z Spearman_j(m_j(z), sum_{i in S_j} tau_i(z))``.

Claims (thresholds from the paper, or from the structure of its claim where it gives no
number): the trace NTK or its projection is the most faithful kernel; the projected trNTK
surrogate is as faithful as the exact one (BERT: 0.800 against 0.809 in the authors'
notebooks); the trNTK kGLM reaches the paper's smallest small-model tau (0.708, MNIST 0-vs-1
MLP); the projection error falls like ``k^-1/2``; the trNTK's attributions have positive LDS
and rank above CK and Em, as the kernels rank by faithfulness in the paper.

Scaled down: 8x8 digits, 10 classes, 200 + 200 points, one MLP of width 64, k = 256..2048,
30 retrained subsets (full: 1000 + 797 points, MLP and CNN, k = 256..8192, 100 subsets).
The paper: MNIST / FMNIST / CIFAR 2-class MLP and CNNs (100 seeds), ResNet-18 on CIFAR-10
(k = 10,240), BERT-base on CoLA. Not included: the Grad-Cos (TraceIn-style) kernel, which
needs each test point's label inside the kernel.

Engel, A., Wang, Z., Frank, N. S., Dumitriu, I., Choudhury, S., Sarwate, A. & Chiang, T.
(2024). Faithful and Efficient Explanations for Neural Networks via Neural Tangent Kernel
Surrogate Models. ICLR 2024, arXiv:2305.14585. Park, S. M., Georgiev, K., Ilyas, A., Leclerc,
G. & Madry, A. (2023). TRAK: Attributing Model Behavior at Scale. ICML 2023, arXiv:2303.14186.
"""
from __future__ import annotations

import dataclasses
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

import tasks
from experiments.claims import at_least, at_most, claim, each, greater, within
from experiments.loop import train
from limits.scaling import loglog_slope
from ntk import approx

SUMMARY = ("Engel et al. 2024: kernel surrogates (trace NTK, pNTK, projections, CK, Em) of a "
           "trained digits network: faithfulness (Kendall tau), k^-1/2 projection error, "
           "attribution LDS against retraining")
PAPER = "engel2024surrogates"
CITATION = ("Engel, A., Wang, Z., Frank, N. S., Dumitriu, I., Choudhury, S., Sarwate, A. & "
            "Chiang, T. (2024). Faithful and Efficient Explanations for Neural Networks via "
            "Neural Tangent Kernel Surrogate Models. ICLR 2024, arXiv:2305.14585.")
NUM_CLASSES = 10
MODELS = ("mlp", "cnn")
# the kernels every surrogate is fitted with, in the order tables and figures show them
KERNELS = ("trNTK", "proj-trNTK", "pNTK", "proj-pNTK", "trNTK0", "CK", "Em")
TRACE_KERNELS = ("trNTK", "proj-trNTK")


@dataclasses.dataclass(frozen=True)
class Config:
    models: tuple[str, ...] = ("mlp",)
    n_train: int = 200
    n_test: int = 200
    width: int = 64                  # MLP hidden width / CNN channels
    depth: int = 2                   # MLP hidden layers
    steps: int = 300                 # full-batch GD steps (network and every subset model)
    chunk: int = 100                 # steps per checkpointed chunk
    learning_rate: float = 0.5
    momentum: float = 0.9
    proj_dims: tuple[int, ...] = (256, 512, 1024, 2048)
    n_sketches: int = 1              # sketch keys the projection error is averaged over
    sketch: str = "rademacher"
    kglm_l2: float = 1e-4            # alpha: L2 penalty per training example
    n_subsets: int = 30              # retrained half-subsets for the LDS
    subset_fraction: float = 0.5
    seed: int = 0

    @classmethod
    def quick(cls) -> "Config":
        return cls()

    @classmethod
    def full(cls) -> "Config":
        return cls(models=("mlp", "cnn"), n_train=1000, n_test=797, width=128, steps=1000,
                   chunk=250, proj_dims=(256, 512, 1024, 2048, 4096, 8192), n_sketches=3,
                   n_subsets=100)

    def validate(self) -> None:
        if not self.models or any(m not in MODELS for m in self.models):
            raise ValueError(f"models: expected a non-empty subset of {MODELS}, got {self.models}")
        for name in ("n_train", "n_test", "width", "depth", "steps", "chunk", "n_sketches",
                     "n_subsets"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.n_train + self.n_test > 1797:
            raise ValueError(f"n_train + n_test = {self.n_train + self.n_test}: digits has 1797")
        if self.steps % self.chunk:
            raise ValueError(f"steps={self.steps} must be a multiple of chunk={self.chunk}")
        dims = self.proj_dims
        if len(dims) < 3 or any(isinstance(k, bool) or not isinstance(k, int) or k < 1
                                for k in dims) or any(b <= a for a, b in zip(dims, dims[1:])):
            raise ValueError(f"proj_dims needs >= 3 increasing positive ints, got {dims}")
        if self.sketch not in approx.SKETCHES:
            raise ValueError(f"sketch must be one of {approx.SKETCHES}, got {self.sketch!r}")
        if not (self.learning_rate > 0 and 0 <= self.momentum < 1 and self.kglm_l2 > 0):
            raise ValueError(f"need learning_rate > 0, 0 <= momentum < 1, kglm_l2 > 0; got "
                             f"{self.learning_rate}, {self.momentum}, {self.kglm_l2}")
        if not 0 < self.subset_fraction < 1 or self.n_subsets < 3:
            raise ValueError(f"need 0 < subset_fraction < 1 and n_subsets >= 3, got "
                             f"{self.subset_fraction}, {self.n_subsets}")


# ---------------------------------------------------------------- networks (NTK parametrisation)

def init_network(model: str, cfg: Config, key) -> list:
    """Parameters ``[{"W", "b"}, ...]``, every entry ``N(0, 1)`` (biases zero); the layer scales
    ``1 / sqrt(fan_in)`` live in :func:`layer_outputs`."""
    if model == "mlp":
        shapes = [(64, cfg.width)] + [(cfg.width, cfg.width)] * (cfg.depth - 1)
        shapes.append((cfg.width, NUM_CLASSES))
    elif model == "cnn":
        c = cfg.width // 4   # channels: a quarter of the width keeps the CNN's cost near the MLP's
        shapes = [(3, 3, 1, c), (3, 3, c, c), (8 * 8 * c, NUM_CLASSES)]
    else:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    keys = jax.random.split(key, len(shapes))
    return [{"W": jax.random.normal(k, s), "b": jnp.zeros(s[-1])} for k, s in zip(keys, shapes)]


def layer_outputs(params, x):
    """Every layer's output ``z_l`` (pre-activations; the last is the logits ``(N, O)``) and the
    last hidden features ``h_L`` (``(N, width)``), for inputs ``(N, 64)``."""
    outs, h = [], x
    conv = params[0]["W"].ndim == 4
    if conv:
        h = x.reshape(x.shape[0], 8, 8, 1)
    for i, p in enumerate(params):
        w = p["W"]
        if w.ndim == 4:
            fan_in = w.shape[0] * w.shape[1] * w.shape[2]
            z = jax.lax.conv_general_dilated(h, w, (1, 1), "SAME",
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"))
        else:
            h = h.reshape(h.shape[0], -1)
            fan_in = w.shape[0]
            z = h @ w
        z = z / jnp.sqrt(fan_in) + 0.1 * p["b"]
        outs.append(z)
        if i < len(params) - 1:
            h = jax.nn.relu(z)
    return outs, h.reshape(h.shape[0], -1)


def apply_fn(params, x):
    """Logits ``(N, O)``."""
    return layer_outputs(params, x)[0][-1]


def margins(logits, labels):
    """``f_y(x) - logsumexp_{c != y} f_c(x)`` (TRAK's output function), ``(N,)``."""
    y = jax.nn.one_hot(labels, logits.shape[-1], dtype=bool)
    own = jnp.sum(jnp.where(y, logits, 0.0), -1)
    return own - jax.nn.logsumexp(jnp.where(y, -jnp.inf, logits), axis=-1)


def _loss(params, x, labels, weights):
    """Weighted mean cross-entropy, ``sum_i w_i CE_i / sum_i w_i``."""
    logp = jax.nn.log_softmax(apply_fn(params, x))
    ce = -jnp.take_along_axis(logp, labels[:, None], axis=1)[:, 0]
    return jnp.sum(weights * ce) / jnp.sum(weights)


@partial(jax.jit, static_argnames=("n_steps", "learning_rate", "momentum"))
def gd_chunk(state, x, labels, weights, *, n_steps: int, learning_rate: float,
             momentum: float):
    """``n_steps`` full-batch steps of heavy-ball GD on :func:`_loss`; a state holds
    ``params`` and ``velocity``. ``weights`` may carry a leading subset axis (then ``state``
    does too: one model per subset, vmapped)."""
    def one(state, w):
        def step(s, _):
            g = jax.grad(_loss)(s["params"], x, labels, w)
            v = jax.tree.map(lambda a, b: momentum * a + b, s["velocity"], g)
            p = jax.tree.map(lambda a, b: a - learning_rate * b, s["params"], v)
            return {"params": p, "velocity": v}, None
        return jax.lax.scan(step, state, None, length=n_steps)[0]
    if weights.ndim == 2:
        return jax.vmap(one)(state, weights)
    return one(state, weights)


def train_network(params0, x, labels, cfg: Config, *, weights=None, ctx=None, task="network"):
    """Train from ``params0`` for ``cfg.steps`` steps; ``weights (M, N)`` trains ``M`` models
    at once on weighted (0/1: subset) losses. With ``ctx`` the training is checkpointed
    (:func:`experiments.loop.train`); returns the final parameters."""
    w = jnp.ones(x.shape[0]) if weights is None else jnp.asarray(weights, jnp.float32)
    p0 = params0 if w.ndim == 1 else jax.tree.map(
        lambda a: jnp.broadcast_to(a, (w.shape[0],) + a.shape), params0)
    init = lambda: {"params": p0, "velocity": jax.tree.map(jnp.zeros_like, p0)}
    chunk_fn = lambda s: gd_chunk(s, x, labels, w, n_steps=cfg.chunk,
                                  learning_rate=cfg.learning_rate, momentum=cfg.momentum)
    if ctx is None:
        state = init()
        for _ in range(cfg.steps // cfg.chunk):
            state = chunk_fn(state)
        return state["params"]

    def record(s, t):
        if w.ndim == 2:
            return {}
        return {"train_loss": float(_loss(s["params"], x, labels, w))}
    state, _, _ = train(ctx, task, init_state=init, chunk_fn=chunk_fn, n_steps=cfg.steps,
                        chunk=cfg.chunk, record=record)
    return state["params"]


# ---------------------------------------------------------------- kernels

def cosine_normalize(k):
    """``K(x, x') / sqrt(K(x, x) K(x', x'))`` of a square kernel on one set of points."""
    d = jnp.sqrt(jnp.diagonal(k))
    return k / jnp.outer(d, d)


def _timed(fn):
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - start


def exact_kernels(params, x) -> tuple[dict, dict]:
    """Unnormalised ``trNTK``, ``pNTK``, ``CK``, ``Em`` on the points ``x`` (``(N, N)`` each)
    and the seconds each took (first call: compilation included)."""
    kernels, seconds = {}, {}
    kernels["trNTK"], seconds["trNTK"] = _timed(
        lambda: approx.trace_ntk_fn(apply_fn)(x, None, params))
    kernels["pNTK"], seconds["pNTK"] = _timed(lambda: approx.pntk_fn(apply_fn)(x, None, params))

    def features():
        outs, last = layer_outputs(params, x)
        flat = [z.reshape(z.shape[0], -1) for z in outs]
        return last @ last.T, sum(z @ z.T for z in flat)
    (kernels["CK"], kernels["Em"]), seconds["CK+Em"] = _timed(features)
    return kernels, seconds


def projected_kernels(params, x, dim: int, key, sketch: str) -> tuple[dict, dict]:
    """``proj-trNTK`` (per-logit features, traced) and ``proj-pNTK`` (sum of logits) at sketch
    dimension ``dim`` with one sketch ``key``; and their seconds."""
    def trace():
        phi = approx.projected_features_fn(apply_fn, dim, sketch=sketch, output="each")(
            x, params, key)
        return jnp.einsum("aok,bok->ab", phi, phi)

    def psum():
        phi = approx.projected_features_fn(apply_fn, dim, sketch=sketch, output="sum")(
            x, params, key)
        return phi @ phi.T
    kernels, seconds = {}, {}
    kernels["proj-trNTK"], seconds["proj-trNTK"] = _timed(trace)
    kernels["proj-pNTK"], seconds["proj-pNTK"] = _timed(psum)
    return kernels, seconds


def relative_error(k_hat, k) -> float:
    """``|K_hat - K|_F / |K|_F``."""
    return float(jnp.linalg.norm(k_hat - k) / jnp.linalg.norm(k))


def jl_prediction(k, dim: int) -> float:
    """Expected relative Frobenius error of a Gaussian sketch of a one-output kernel:
    ``sqrt(sum_ij (K_ii K_jj + K_ij^2) / k) / |K|_F`` (the sum-of-logits pNTK's case)."""
    k = np.asarray(k, np.float64)
    d = np.diagonal(k)
    return float(np.sqrt((np.outer(d, d) + k ** 2).sum() / dim) / np.linalg.norm(k))


# ---------------------------------------------------------------- surrogate and scores

def fit_kglm(k_train, labels_train, l2: float):
    """Multinomial logistic regression on kernel rows (the kGLM): minimises
    ``mean_i balanced CE_i + l2 |W|^2 / 2``; returns the fitted scikit-learn model
    (``coef_`` ``(O, N_train)``, ``intercept_`` ``(O,)``)."""
    from sklearn.linear_model import LogisticRegression
    n = k_train.shape[0]
    model = LogisticRegression(C=1.0 / (l2 * n), class_weight="balanced", max_iter=5000,
                               tol=1e-8)
    model.fit(np.asarray(k_train, np.float64), np.asarray(labels_train))
    return model


def true_class_probability(logits, labels):
    """Softmax probability of the true class, in float64, ``(N,)``."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(-1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    return p[np.arange(len(labels)), np.asarray(labels)]


def faithfulness_tau(p_surrogate, p_network) -> float:
    """Kendall's tau of the two true-class probabilities, saturated (exactly 0 or 1) points
    dropped."""
    from scipy.stats import kendalltau
    a, b = np.asarray(p_surrogate, np.float64), np.asarray(p_network, np.float64)
    keep = ~((a == 0) | (a == 1) | (b == 0) | (b == 1))
    return float(kendalltau(a[keep], b[keep]).statistic)


def attributions(kglm, k_test_train, labels_test):
    """``tau_i(z) = W_{y_z, i} K(z, x_i)``: each training example's term in the kGLM logit of
    the test point's true class, ``(N_test, N_train)``."""
    coef = np.asarray(kglm.coef_, np.float64)
    return coef[np.asarray(labels_test)] * np.asarray(k_test_train, np.float64)


def linear_datamodeling_score(scores, masks, outputs) -> float:
    """``mean_z Spearman_j(outputs[j, z], masks[j] . scores[z])``: scores ``(N_test, N_train)``,
    masks ``(M, N_train)`` 0/1, outputs ``(M, N_test)``; test points whose outputs or
    predictions do not vary are skipped."""
    from scipy.stats import spearmanr
    predicted = np.asarray(masks, np.float64) @ np.asarray(scores, np.float64).T   # (M, N_test)
    outputs = np.asarray(outputs, np.float64)
    rhos = [spearmanr(predicted[:, z], outputs[:, z]).statistic
            for z in range(outputs.shape[1])
            if np.ptp(outputs[:, z]) > 0 and np.ptp(predicted[:, z]) > 0]
    return float(np.nanmean(rhos)) if rhos else float("nan")


def subset_masks(n_train: int, n_subsets: int, fraction: float, seed: int) -> np.ndarray:
    """``(M, N)`` 0/1 masks, each choosing ``round(fraction N)`` examples uniformly."""
    rng = np.random.default_rng([seed, 16])
    size = int(round(fraction * n_train))
    masks = np.zeros((n_subsets, n_train), np.float32)
    for j in range(n_subsets):
        masks[j, rng.choice(n_train, size, replace=False)] = 1.0
    return masks


# ---------------------------------------------------------------- the study

def _study_model(model: str, cfg: Config, data, ctx) -> dict:
    x_tr, l_tr, x_te, l_te = data
    n = x_tr.shape[0]
    x_all = jnp.concatenate([x_tr, x_te])
    params0 = init_network(model, cfg, jax.random.PRNGKey(cfg.seed))
    params = train_network(params0, x_tr, l_tr, cfg, ctx=ctx, task=f"{model}-network")
    logits_te = np.asarray(apply_fn(params, x_te))
    nn_acc = float(np.mean(logits_te.argmax(-1) == np.asarray(l_te)))
    train_acc = float(np.mean(np.asarray(apply_fn(params, x_tr)).argmax(-1) == np.asarray(l_tr)))
    p_nn = true_class_probability(logits_te, l_te)

    exact, seconds = exact_kernels(params, x_all)
    errors = {name: np.zeros((len(cfg.proj_dims), cfg.n_sketches))
              for name in ("proj-trNTK", "proj-pNTK")}
    proj_seconds = {name: [] for name in errors}
    projected = {}   # the first sketch's kernel at every k (for the surrogates)
    for di, dim in enumerate(cfg.proj_dims):
        for s in range(cfg.n_sketches):
            key = jax.random.PRNGKey(1000 * (cfg.seed + 1) + s)
            kern, sec = projected_kernels(params, x_all, dim, key, cfg.sketch)
            for name in errors:
                errors[name][di, s] = relative_error(kern[name], exact[name[5:]])
                if s == 0:
                    proj_seconds[name].append(sec[name])
                    projected[(name, dim)] = kern[name]
    k_max = cfg.proj_dims[-1]

    normalized = {"trNTK": cosine_normalize(exact["trNTK"]),
                  "pNTK": cosine_normalize(exact["pNTK"]),
                  "CK": cosine_normalize(exact["CK"]), "Em": cosine_normalize(exact["Em"]),
                  "trNTK0": exact["trNTK"] / jnp.std(exact["trNTK"][:n, :n])}
    for name in ("proj-trNTK", "proj-pNTK"):
        for dim in cfg.proj_dims:
            normalized[(name, dim)] = cosine_normalize(projected[(name, dim)])
        normalized[name] = normalized[(name, k_max)]

    masks = subset_masks(n, cfg.n_subsets, cfg.subset_fraction, cfg.seed)
    subset_params = train_network(params0, x_tr, l_tr, cfg, weights=masks, ctx=ctx,
                                  task=f"{model}-subsets")
    subset_margins = np.asarray(jax.vmap(lambda p: margins(apply_fn(p, x_te), l_te))(
        subset_params))                                                # (M, N_test)

    def surrogate(k):
        k = np.asarray(k, np.float64)
        kglm = fit_kglm(k[:n, :n], l_tr, cfg.kglm_l2)
        logits = kglm.decision_function(k[n:, :n])
        return {"tau": faithfulness_tau(true_class_probability(logits, l_te), p_nn),
                "accuracy": float(np.mean(kglm.classes_[logits.argmax(-1)] == np.asarray(l_te))),
                "lds": linear_datamodeling_score(attributions(kglm, k[n:, :n], l_te), masks,
                                                 subset_margins)}

    per_kernel = {name: surrogate(normalized[name]) for name in KERNELS}
    tau_vs_k = {name: [surrogate(normalized[(name, d)])["tau"] for d in cfg.proj_dims]
                for name in ("proj-trNTK", "proj-pNTK")}
    mean_err = {name: e.mean(1) for name, e in errors.items()}
    out = {
        "network_test_accuracy": nn_acc, "network_train_accuracy": train_acc,
        "n_params": int(sum(p.size for p in jax.tree.leaves(params))),
        "tau": {k: v["tau"] for k, v in per_kernel.items()},
        "kglm_accuracy": {k: v["accuracy"] for k, v in per_kernel.items()},
        "test_accuracy_differential": {k: v["accuracy"] - nn_acc for k, v in per_kernel.items()},
        "lds": {k: v["lds"] for k, v in per_kernel.items()},
        "tau_vs_k": tau_vs_k,
        "projection_error": {k: v.tolist() for k, v in mean_err.items()},
        "projection_error_per_sketch": {k: v.tolist() for k, v in errors.items()},
        "projection_error_slope": {k: float(loglog_slope(cfg.proj_dims, v))
                                   for k, v in mean_err.items()},
        "pntk_jl_prediction": [jl_prediction(exact["pNTK"], d) for d in cfg.proj_dims],
        "kernel_seconds": {k: float(v) for k, v in seconds.items()},
        "projection_seconds": proj_seconds,
        "subset_margin_spread": float(np.mean(np.std(subset_margins, axis=0))),
    }
    tau = out["tau"]
    out["trace_minus_best_other_tau"] = (max(tau[k] for k in TRACE_KERNELS)
                                         - max(v for k, v in tau.items()
                                               if k not in TRACE_KERNELS))
    lds = out["lds"]
    out["trntk_lds_minus_best_of_ck_em"] = lds["trNTK"] - max(lds["CK"], lds["Em"])
    return out


def run(cfg: Config, ctx) -> dict:
    cfg.validate()
    x_tr, l_tr, x_te, l_te = tasks.load("digits", cfg.n_train, cfg.n_test, cfg.seed)
    data = (jnp.asarray(x_tr), jnp.asarray(l_tr), jnp.asarray(x_te), jnp.asarray(l_te))
    per_model = {}
    for model in cfg.models:
        if ctx.progress:
            print(f"  {model}: training, kernels, surrogates, {cfg.n_subsets} subset models",
                  flush=True)
        per_model[model] = _study_model(model, cfg, data, ctx)
    return {"models": list(cfg.models), "kernels": list(KERNELS),
            "proj_dims": list(cfg.proj_dims), "per_model": per_model}


# ---------------------------------------------------------------- figures

def figures(results: dict) -> dict:
    """``faithfulness``: Kendall tau and LDS of every kernel's surrogate, per model;
    ``projection``: relative error of the projected kernels against k (log-log, k^-1/2 and the
    Gaussian-sketch prediction for the pNTK), tau against k, and the kernels' wall time."""
    from matplotlib.figure import Figure
    m = results["metrics"]
    models, kernels = m["models"], m["kernels"]
    dims = np.asarray(m["proj_dims"], float)
    per = m["per_model"]

    fig = Figure(figsize=(13, 4))
    axes = fig.subplots(1, 2)
    width = 0.8 / len(models)
    pos = np.arange(len(kernels))
    for i, model in enumerate(models):
        off = (i - (len(models) - 1) / 2) * width
        tau = np.asarray([per[model]["tau"][k] for k in kernels], float)
        lds = np.asarray([per[model]["lds"][k] for k in kernels], float)
        axes[0].bar(pos + off, tau, width, label=f"{model} (network acc "
                    f"{float(per[model]['network_test_accuracy']):.2f})")
        axes[1].bar(pos + off, lds, width, label=model)
    for ax in axes:
        ax.set_xticks(pos)
        ax.set_xticklabels(kernels, rotation=20)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xlabel("kernel of the kGLM surrogate (projections at the largest k)")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("Kendall tau (kGLM vs network, true-class prob.)")
    axes[0].set_title("Faithfulness: trace NTK surrogates track the network best", fontsize=10)
    axes[1].set_ylabel("linear datamodeling score (Spearman)")
    axes[1].set_title(f"Attribution vs retraining on {results['config']['n_subsets']} "
                      "half subsets (LDS)", fontsize=10)

    proj = Figure(figsize=(14, 4))
    axes = proj.subplots(1, 3)
    for model in models:
        p = per[model]
        for name, marker in (("proj-trNTK", "o-"), ("proj-pNTK", "s--")):
            err = np.asarray(p["projection_error"][name], float)
            axes[0].loglog(dims, err, marker, label=f"{model} {name} (slope "
                           f"{float(p['projection_error_slope'][name]):.2f})")
            axes[1].semilogx(dims, np.asarray(p["tau_vs_k"][name], float), marker,
                             label=f"{model} {name}")
            axes[2].loglog(dims, np.asarray(p["projection_seconds"][name], float), marker,
                           label=f"{model} {name}")
        axes[0].loglog(dims, np.asarray(p["pntk_jl_prediction"], float), "k:", lw=0.8,
                       label=f"{model} pNTK, Gaussian-sketch prediction")
        axes[1].axhline(float(p["tau"]["trNTK"]), color="0.4", lw=0.8, ls=":",
                        label=f"{model} exact trNTK")
        for name in ("trNTK", "pNTK"):
            axes[2].axhline(float(p["kernel_seconds"][name]), lw=0.8, ls=":",
                            color="C3" if name == "trNTK" else "C4",
                            label=f"{model} exact {name}")
    axes[0].loglog(dims, float(np.asarray(per[models[0]]["projection_error"]["proj-trNTK"],
                                          float)[0]) * np.sqrt(dims[0] / dims), "r--", lw=0.8,
                   label="k^-1/2")
    axes[0].set_xlabel("sketch dimension k")
    axes[0].set_ylabel("|K_proj - K|_F / |K|_F")
    axes[0].set_title("Projection error falls like k^-1/2", fontsize=10)
    axes[1].set_xlabel("sketch dimension k")
    axes[1].set_ylabel("Kendall tau (kGLM vs network)")
    axes[1].set_title("Projected surrogates: faithfulness vs k", fontsize=10)
    axes[2].set_xlabel("sketch dimension k")
    axes[2].set_ylabel("wall time (s, log scale, compilation included)")
    axes[2].set_title("Cost of the kernels on train + test points", fontsize=10)
    for ax in axes:
        ax.legend(fontsize=6)
    return {"faithfulness": fig, "projection": proj}


# ---------------------------------------------------------------- claims

def _per_model(key):
    return lambda m: [m["per_model"][model][key] for model in m["models"]]


def _models(m) -> str:
    return ", ".join(m["models"])


# Engel et al.: "trace NTK the most consistent performer" -> the best of trNTK / proj-trNTK beats
# every other kernel's tau (> 0); projected trNTK as faithful as the exact one: BERT 0.800 vs
# 0.809 (difference 0.009, each +- ~0.009) -> |difference| <= 0.02; the smallest small-model
# tau in the authors' notebooks is 0.708 (MNIST 0-vs-1 MLP) -> >= 0.7; JL: error ~ k^-1/2, a
# fitted slope within 0.1 of -1/2; attribution: trNTK LDS > 0 and above CK and Em (the
# paper's faithfulness order among these kernels).
CLAIMS = (
    claim("trace_ntk_most_faithful",
          lambda m: f"{_models(m)}: best tau of trNTK / proj-trNTK minus the best tau of pNTK, "
                    "proj-pNTK, trNTK0, CK, Em",
          _per_model("trace_minus_best_other_tau"), each(greater(0))),
    claim("projected_trntk_as_faithful",
          lambda m: f"{_models(m)}: |tau(proj-trNTK, k = {m['proj_dims'][-1]}) - tau(trNTK)|",
          lambda m: [abs(m["per_model"][x]["tau"]["proj-trNTK"] - m["per_model"][x]["tau"]["trNTK"])
                     for x in m["models"]], each(at_most(0.02))),
    claim("trntk_surrogate_tau",
          lambda m: f"{_models(m)}: Kendall tau of the trNTK kGLM against the network "
                    "(paper's smallest small-model value 0.708)",
          lambda m: [m["per_model"][x]["tau"]["trNTK"] for x in m["models"]],
          each(at_least(0.7))),
    claim("proj_trntk_error_k_inverse_sqrt",
          lambda m: f"{_models(m)}: |proj-trNTK - trNTK|_F / |trNTK|_F ~ k^s, "
                    f"k = {m['proj_dims'][0]}..{m['proj_dims'][-1]}",
          lambda m: [m["per_model"][x]["projection_error_slope"]["proj-trNTK"]
                     for x in m["models"]], each(within(-0.6, -0.4))),
    claim("proj_pntk_error_k_inverse_sqrt",
          lambda m: f"{_models(m)}: |proj-pNTK - pNTK|_F / |pNTK|_F ~ k^s, "
                    f"k = {m['proj_dims'][0]}..{m['proj_dims'][-1]}",
          lambda m: [m["per_model"][x]["projection_error_slope"]["proj-pNTK"]
                     for x in m["models"]], each(within(-0.6, -0.4))),
    claim("trntk_attribution_lds_positive",
          lambda m: f"{_models(m)}: LDS of the trNTK kGLM's attributions against retraining on "
                    "half subsets",
          lambda m: [m["per_model"][x]["lds"]["trNTK"] for x in m["models"]], each(greater(0))),
    claim("lds_trntk_above_ck_and_em",
          lambda m: f"{_models(m)}: LDS(trNTK) - max(LDS(CK), LDS(Em))",
          _per_model("trntk_lds_minus_best_of_ck_em"), each(greater(0))),
)
