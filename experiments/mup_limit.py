"""The muP infinite-width limit, computed: finite networks approach it; it learns what the kernel
limit cannot.

Yang & Hu, "Feature Learning in Infinite-Width Neural Networks" (Tensor Programs IV, ICML 2021,
arXiv:2011.14522; code edwardjhu/TP4). Under muP a network's training dynamics have an
infinite-width limit in which features move, and for linear networks (their word2vec and MAML
cases) and one-hidden-layer networks that limit can be computed directly
(:mod:`limits.mup_limit`). The paper finds that the limit beats the NTK limit on tasks that need
learned features and that finite muP networks approach it as they widen; networks in the standard
or NTK parametrization instead approach a kernel limit whose features never move.

Three tasks, each trained by full-batch gradient descent with one global learning rate ``eta``
under each parametrization's learning-rate scales (:func:`limits.mlp`, base width ``n0 = 1``,
``sigma_w = 1``):

* **completion** -- learning a low-rank embedding with TP IV's one-hidden-layer linear network
  (``f(x) = (n0 / n) x W^1 W^2``, a small random readout ``sigma_out = 0.03`` as in TP IV's MAML
  networks): 40 one-hot inputs (scaled to norm ``sqrt(40)``), 30 outputs, targets a rank-2
  matrix ``M = A B^T / sqrt(2)`` (Gaussian factors) observed on a random 30 % of its entries
  (a toy word2vec: rows are words, columns contexts); masked MSE on the observed entries, test
  MSE on the others; 100 steps at ``eta = 0.1``. Every kernel limit's input Gram is the identity
  on one-hot inputs, so a kernel limit leaves every unobserved entry at its initial output;
  learning the rows' embedding is the only way to fill them in. ``eta`` and the init scales were
  chosen for the muP limit on another draw of the task (seed 1: smaller init scales complete
  better, the low-rank bias of a factorisation started small).
* **deep** -- the same kind of task (16 x 12, 20 steps at ``eta = 0.1``) for a two-hidden-layer
  linear network, whose limit adds sources every step.
* **tanh** -- a one-hidden-layer tanh network with a zero readout on 2-d regression: 24 training
  and 24 held-out points at random angles on the circle of radius 1.5, ``y = sin(3 theta)``;
  10 steps at ``eta = 1``. Its limit is the tensor Gauss-Hermite quadrature (192 nodes per
  dimension) over the units' initial Gaussian coordinates ``w_0``; longer training sharpens the
  units' map of those coordinates and the quadrature then converges slowly (1e-3 after 20
  steps), so the task stops at 10 (change from 128 nodes: ~1e-5).

Per task: the muP limit; the kernel limit (kernel gradient descent with the parametrization's
infinite-width NTK, :func:`limits.mup_limit.linear_ntk` / ``shallow_ntk``) of NTP, of SP with
learning rate ``~ 1/n`` (:data:`limits.SP_LR_INV_WIDTH`) and of muP's own initial kernel, each
started from the network's own initial outputs; and finite networks of each parametrization at
every width (``seeds`` initialisations, trained in NumPy by :func:`train_networks`). The distance
of a network from a limit is the root mean square over seeds and outputs (every entry; train and
test points for tanh) of ``f_net - f_limit`` after the last step.

Claims (thresholds fixed before running): (i) finite muP networks approach the computed muP limit
like ``width^-1/2`` (the fluctuation of averages over ``n`` units; log-log slope in ``[-0.7,
-0.3]``, as in the other rate claims of this project) on all three tasks; (ii) on the completion
task the muP limit's test MSE is at most 0.575 times the NTK (NTP) limit's -- the paper's Omniglot
error ratio, muP limit 1 - 0.665 over linear NTK / GP 1 - 0.417 (read off the authors' MAML
figure, edwardjhu/TP4 MAML.png); (iii) NTP and SP networks approach their kernel limits at the
same rate, and at the largest width each network is at least 5 times closer to its own limit than
to the other one (NTP / SP: kernel over muP limit; muP: muP limit over muP's initial-kernel
limit); (iv) the tanh limit's quadrature error (change from 2/3 of the nodes) is at most a tenth
of the muP networks' distance at the largest width. NTP's rate is reported, not claimed: its
distance carries a large ``1/n`` term (its input layer trains) and falls like ``width^-0.8`` over
widths 32-512 on the completion task (full size, 32-8192: -0.69, and -0.55 over the last octaves).

Scaled down: TP IV trains word2vec on text8 / fil9 and MAML on Omniglot; here widths 32-512
(deep task 64-512) and 6 seeds (full: widths 32-8192, deep task 64-2048, and 16 seeds).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from threadpoolctl import threadpool_limits

import limits
from experiments.claims import at_most, claim, each, within
from limits import mup_limit as ml
from limits.scaling import loglog_slope

SUMMARY = ("Yang & Hu 2021 (TP IV): the muP limit of linear and one-hidden-layer tanh networks, "
           "computed; finite muP networks approach it like width^-1/2; it completes a low-rank "
           "matrix the NTK limit cannot; NTP and SP networks approach their kernel limits instead")
PAPER = "yang2021tp4"
CITATION = ("Yang, G. & Hu, E. J. (2021). Feature Learning in Infinite-Width Neural Networks "
            "(Tensor Programs IV). ICML 2021, arXiv:2011.14522.")

TASKS = ("completion", "deep", "tanh")
PARAMETRIZATIONS = {"mup": limits.MUP, "ntp": limits.NTP, "sp": limits.SP_LR_INV_WIDTH}
RATE = (-0.7, -0.3)                # (i), (iii): log-log slope of the distance against width
PAPER_ERROR_RATIO = (1 - 0.665) / (1 - 0.417)    # (ii): Omniglot, muP limit / linear NTK
OWN_LIMIT_RATIO = 0.2              # (iii): distance to own limit / distance to the other
QUADRATURE_RATIO = 0.1             # the tanh limit's quadrature error / the distances it judges
_CHUNK_ENTRIES = 1 << 24           # weights per layer and chunk of seeds (128 MiB in float64)


@dataclasses.dataclass(frozen=True)
class Config:
    widths: tuple[int, ...] = (32, 64, 128, 256, 512)
    deep_widths: tuple[int, ...] = (64, 128, 256, 512)
    seeds: int = 6
    base_width: float = 1.0
    sigma_w: float = 1.0
    sigma_out: float = 0.03
    rows: int = 40
    cols: int = 30
    rank: int = 2
    observed: float = 0.3
    completion_lr: float = 0.1
    completion_steps: int = 100
    deep_rows: int = 16
    deep_cols: int = 12
    deep_lr: float = 0.1
    deep_steps: int = 20
    tanh_train: int = 24
    tanh_test: int = 24
    tanh_lr: float = 1.0
    tanh_steps: int = 10
    quadrature_nodes: int = 192
    record_every: int = 5
    seed: int = 0

    @classmethod
    def quick(cls) -> "Config":
        return cls()

    @classmethod
    def full(cls) -> "Config":
        return cls(widths=(32, 64, 128, 256, 512, 1024, 2048, 4096, 8192),
                   deep_widths=(64, 128, 256, 512, 1024, 2048), seeds=16)

    def validate(self) -> None:
        for name in ("widths", "deep_widths"):
            w = getattr(self, name)
            if len(w) < 2 or any(v < 1 for v in w) or sorted(set(w)) != list(w):
                raise ValueError(f"{name} must be >= 2 increasing distinct positive ints, got {w}")
        if self.seeds < 2:
            raise ValueError(f"seeds must be >= 2, got {self.seeds}")
        for name in ("base_width", "sigma_w", "completion_lr", "deep_lr", "tanh_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not self.sigma_out >= 0:
            raise ValueError(f"sigma_out must be >= 0, got {self.sigma_out}")
        if not 0 < self.observed < 1:
            raise ValueError(f"observed must be in (0, 1), got {self.observed}")
        if not 1 <= self.rank <= min(self.rows, self.cols):
            raise ValueError(f"rank must be in [1, min(rows, cols)], got {self.rank}")
        for name in ("rows", "cols", "deep_rows", "deep_cols", "tanh_train", "tanh_test",
                     "completion_steps", "deep_steps", "tanh_steps", "quadrature_nodes",
                     "record_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


# --------------------------------------------------------------------------------- tasks


def completion_task(rows: int, cols: int, rank: int, observed: float, seed: int):
    """``(x, targets, mask)``: one-hot inputs ``sqrt(rows) I`` ``(rows, rows)``, the rank-``rank``
    matrix ``A B^T / sqrt(rank)`` ``(rows, cols)`` and a 0/1 mask of observed entries (at least one
    per row and column: rows or columns drawn empty get one entry)."""
    rng = np.random.default_rng([seed, rows, cols])
    a, b = rng.standard_normal((rows, rank)), rng.standard_normal((cols, rank))
    target = a @ b.T / math.sqrt(rank)
    mask = (rng.random((rows, cols)) < observed).astype(np.float64)
    for i in np.flatnonzero(mask.sum(1) == 0):
        mask[i, rng.integers(cols)] = 1.0
    for j in np.flatnonzero(mask.sum(0) == 0):
        mask[rng.integers(rows), j] = 1.0
    return math.sqrt(rows) * np.eye(rows), target, mask


def tanh_task(n_train: int, n_test: int, seed: int, radius: float = 1.5):
    """``(x, y, train_index)``: points ``radius (cos theta, sin theta)`` at uniform random angles
    (train rows first) and ``y = sin(3 theta)`` ``(N, 1)`` (odd, as every bias-free tanh network
    is)."""
    rng = np.random.default_rng([seed, 2])
    theta = rng.uniform(0.0, 2 * np.pi, n_train + n_test)
    x = radius * np.stack([np.cos(theta), np.sin(theta)], axis=1)
    return x, np.sin(3 * theta)[:, None], np.arange(n_train)


# --------------------------------------------------------------------------------- networks

def network(in_dim: int, width: int, depth: int, out_dim: int, parametrization,
            activation: str, cfg: Config, sigma_out: float):
    """``limits.mlp`` with the study's constants (no biases; ``sigma_out = 0``: a zero readout)."""
    return limits.mlp(in_dim, width, depth, out_dim, parametrization, activation=activation,
                      base_width=cfg.base_width, sigma_w=cfg.sigma_w, sigma_out=sigma_out)


def layer_names(net) -> list:
    return [f"layer_{l}" for l in range(1, net.depth + 1)] + ["output"]


def init_weights(net, cfg: Config, sigma_out: float, seeds: int,
                 rng: np.random.Generator) -> list:
    """Initial weights of ``seeds`` copies of ``net`` drawn in NumPy float64, one array
    ``(seeds, fan_in, fan_out)`` per layer, at the standard deviations :func:`limits.mlp` uses:
    ``Parametrization.init_std(role, n, n0, fan_in_base, sigma)`` with ``fan_in_base = d`` for
    the input layer and ``n0`` for the others."""
    p, n, n0 = net.parametrization, net.width, cfg.base_width
    shapes = ([(net.in_dim, n)] + [(n, n)] * (net.depth - 1) + [(n, net.out_dim)])
    stds = ([p.init_std("input", n, n0, net.in_dim, cfg.sigma_w)]
            + [p.init_std("hidden", n, n0, n0, cfg.sigma_w)] * (net.depth - 1)
            + [p.init_std("output", n, n0, n0, sigma_out)])
    return [std * rng.standard_normal((seeds,) + shape) for shape, std in zip(shapes, stds)]


def train_networks(net, weights, x, output_grad, learning_rate: float, steps: int,
                   x_eval=None, activation: str = "identity", dtype=np.float64):
    """Full-batch SGD of ``S`` copies of a :func:`limits.mlp` network (no biases) at once, in
    NumPy float64 with hand-written backpropagation; learning rate ``eta * lr_scale`` per layer,
    as :func:`limits.optimizers.optimizer` applies it.

    ``weights``: one ``(S, fan_in, fan_out)`` array per layer (:func:`init_weights`, or
    ``net.init`` parameters stacked); ``output_grad(f)`` maps outputs on ``x`` ``(S, N, O)`` to
    ``dLoss/df``; ``activation``: the network's (a name in
    :data:`limits.mup_limit.ACTIVATION_PAIRS`); ``dtype``: the arithmetic (the study trains in
    float32, twice as fast; its distances are ~1e-2, float32's rounding ~1e-6). Returns
    ``(f0, fT)`` ``(S, P, O)`` on ``x_eval`` (default ``x``) before and after ``steps`` steps,
    float64."""
    phi, dphi = ml.ACTIVATION_PAIRS[activation]
    names = layer_names(net)
    w = [np.asarray(a, dtype) for a in weights]
    x = np.asarray(x, dtype)
    mult = [float(net.multipliers[k]) for k in names]
    scale = [float(net.lr_scales[k]["w"]) for k in names]
    x_eval = x if x_eval is None else np.asarray(x_eval, dtype)

    def forward(inp):
        inputs, pre, a = [], [], inp
        for l in range(net.depth):
            inputs.append(a)
            pre.append(mult[l] * (a @ w[l]))
            a = phi(pre[-1])
        inputs.append(a)
        return mult[-1] * (a @ w[-1]), inputs, pre

    linear = activation == "identity"
    outer = lambda a, b: np.swapaxes(a, -1, -2) @ b    # sum over the batch, per seed

    f0 = forward(x_eval)[0]
    for _ in range(steps):
        f, inputs, pre = forward(x)
        delta = np.asarray(output_grad(f), dtype)
        grads = [None] * len(w)
        grads[-1] = mult[-1] * outer(inputs[-1], delta)
        back = mult[-1] * (delta @ np.swapaxes(w[-1], -1, -2))
        for l in reversed(range(net.depth)):
            dh = back if linear else back * dphi(pre[l])
            grads[l] = mult[l] * outer(inputs[l], dh)
            if l:
                back = mult[l] * (dh @ np.swapaxes(w[l], -1, -2))
        for l in range(len(w)):
            w[l] -= learning_rate * scale[l] * grads[l]
    f_end = forward(x_eval)[0]
    return (np.broadcast_to(f0, f_end.shape).astype(np.float64),
            np.asarray(f_end, np.float64))


# --------------------------------------------------------------------------------- limits


def _rms(a) -> float:
    return float(np.sqrt(np.mean(np.square(a))))


class TaskLoss:
    """``dLoss/df`` of a task's (masked) MSE on its training rows, ``Loss = 1 / (2 N)
    sum m (f - y)^2`` (:func:`limits.mup_limit.mse_output_grad`), for outputs ``(..., N, O)``
    (a leading seed axis broadcasts)."""

    def __init__(self, target, mask=None):
        self.target = np.asarray(target, np.float64)
        self.mask = None if mask is None else np.asarray(mask, np.float64)
        self.out_dim = self.target.shape[1]

    def __call__(self, f):
        r = f - self.target
        if self.mask is not None:
            r = r * self.mask
        return r / self.target.shape[0]

    def stacked(self, seeds: int):
        """The same on ``(N, S * O)`` outputs: ``S`` copies side by side (kernel descent of
        every seed at once)."""
        def grad(f):
            f = f.reshape(f.shape[0], seeds, self.out_dim).transpose(1, 0, 2)
            return self(f).transpose(1, 0, 2).reshape(f.shape[1], seeds * self.out_dim)
        return grad


def kernel_limit_outputs(theta, f0, train_index, loss: TaskLoss, learning_rate, steps):
    """:func:`limits.mup_limit.kernel_descent` from each seed's own initial outputs ``f0``
    ``(S, P, O)``: the kernel limit's outputs after ``steps`` steps, ``(S, P, O)``."""
    s, p, o = f0.shape
    stacked = f0.transpose(1, 0, 2).reshape(p, s * o)
    out = ml.kernel_descent(theta, stacked, train_index, loss.stacked(s), learning_rate,
                            steps)[-1]
    return out.reshape(p, s, o).transpose(1, 0, 2)


def _constants(cfg, sigma_out):
    return dict(base_width=cfg.base_width, sigma_w=cfg.sigma_w, sigma_out=sigma_out,
                readout_zero_init=sigma_out == 0)


def _kernel(task, x, parametrization, depth, cfg, sigma_out):
    kw = _constants(cfg, sigma_out)
    if task == "tanh":
        return ml.shallow_ntk(x, None, parametrization, "tanh", n_nodes=32, **kw)  # ~1e-5
    return ml.linear_ntk(x, None, parametrization, depth, **kw)


def _new_limit(task, in_dim, depth, out_dim, cfg, sigma_out, nodes=None):
    kw = _constants(cfg, sigma_out)
    if task == "tanh":
        return ml.shallow_mup_limit(in_dim, out_dim, "tanh", n_nodes=nodes or
                                    cfg.quadrature_nodes, **kw)
    return ml.linear_mup_limit(in_dim, depth, out_dim, **kw)


def limit_run(lim, x, loss, train_index, learning_rate, steps, record):
    """Train a computed limit ``steps`` steps on ``x[train_index]``; its outputs on ``x`` at the
    steps in ``record``: ``(lim, (len(record), P, O))``."""
    x_train = x[train_index]
    traj = [lim.apply(x)] if 0 in record else []
    for t in range(1, steps + 1):
        lim = lim.step(x_train, loss(lim.apply(x_train)), learning_rate)
        if t in record:
            traj.append(lim.apply(x))
    return lim, np.stack(traj)


def task_setup(task: str, cfg: Config) -> dict:
    """Inputs, loss, depth, activation, readout scale, learning rate, steps and widths of one
    task (the tanh task's readout starts at zero: its limit's quadrature is then over ``d = 2``
    coordinates only)."""
    if task == "tanh":
        x, y, train_index = tanh_task(cfg.tanh_train, cfg.tanh_test, cfg.seed)
        return dict(x=x, y=y, mask=None, train_index=train_index, loss=TaskLoss(y[train_index]),
                    depth=1, activation="tanh", sigma_out=0.0, lr=cfg.tanh_lr,
                    steps=cfg.tanh_steps, widths=cfg.widths)
    rows, cols = (cfg.rows, cfg.cols) if task == "completion" else (cfg.deep_rows, cfg.deep_cols)
    x, y, mask = completion_task(rows, cols, cfg.rank, cfg.observed, cfg.seed)
    deep = task == "deep"
    return dict(x=x, y=y, mask=mask, train_index=np.arange(rows), loss=TaskLoss(y, mask),
                depth=2 if deep else 1, activation="identity", sigma_out=cfg.sigma_out,
                lr=cfg.deep_lr if deep else cfg.completion_lr,
                steps=cfg.deep_steps if deep else cfg.completion_steps,
                widths=cfg.deep_widths if deep else cfg.widths)


def run_task(task: str, cfg: Config, ctx=None) -> dict:
    """Limits and finite networks of one task (module docstring); plain-JSON metrics."""
    t = task_setup(task, cfg)
    x, y, mask, idx, loss = t["x"], t["y"], t["mask"], t["train_index"], t["loss"]
    depth, lr, steps, widths = t["depth"], t["lr"], t["steps"], t["widths"]
    sigma_out = t["sigma_out"]
    test = np.setdiff1d(np.arange(len(x)), idx)
    every = min(cfg.record_every, steps)
    record = [0] + [s for s in range(1, steps + 1) if s % every == 0 or s == steps]
    lim, traj = limit_run(_new_limit(task, x.shape[1], depth, y.shape[1], cfg, sigma_out), x,
                          loss, idx, lr, steps, record)
    f_lim = traj[-1]
    kernels = {name: _kernel(task, x, p, depth, cfg, sigma_out)
               for name, p in PARAMETRIZATIONS.items()}
    ntk_traj = ml.kernel_descent(kernels["ntp"], np.zeros_like(f_lim), idx, loss, lr, steps)

    def errors(f):
        """(train, test) MSE: observed / unobserved entries, or train / test points."""
        if mask is None:
            return (float(np.mean((f[idx] - y[idx]) ** 2)),
                    float(np.mean((f[test] - y[test]) ** 2)))
        return (float(np.sum(mask * (f - y) ** 2) / mask.sum()),
                float(np.sum((1 - mask) * (f - y) ** 2) / (1 - mask).sum()))

    out = {"steps": record, "learning_rate": lr, "depth": depth, "widths": list(widths),
           "limit_errors": [errors(f) for f in traj],
           "ntk_limit_errors": [errors(ntk_traj[s]) for s in record],
           "limit_output_rms": _rms(f_lim)}
    if task == "tanh":      # quadrature error estimate: the same limit on 2/3 of the nodes
        coarse = _new_limit(task, x.shape[1], depth, y.shape[1], cfg, sigma_out,
                            nodes=max(2 * cfg.quadrature_nodes // 3, 2))
        out["quadrature_change"] = _rms(limit_run(coarse, x, loss, idx, lr, steps,
                                                  [steps])[1][-1] - f_lim)
    else:                   # the limit's embedding moved: relative change of its feature Gram
        key = f"layer_{depth}"
        c0 = _new_limit(task, x.shape[1], depth, y.shape[1], cfg, sigma_out).features(x)[key]
        c1 = lim.features(x)[key]
        g0, g1 = c0 @ c0.T, c1 @ c1.T
        out["feature_gram_change"] = float(np.linalg.norm(g1 - g0) / np.linalg.norm(g0))
        out["limit_sources"] = int(lim.size)

    dist = {f"{name}_to_{other}": [] for name in PARAMETRIZATIONS
            for other in ("mup_limit", "kernel_limit")}
    test_mse = {name: [] for name in PARAMETRIZATIONS}
    for wi, width in enumerate(widths):
        for pi, (name, p) in enumerate(PARAMETRIZATIONS.items()):
            net = network(x.shape[1], width, depth, y.shape[1], p, t["activation"], cfg,
                          sigma_out)
            rng = np.random.default_rng([cfg.seed, TASKS.index(task), wi, pi])
            chunk = max(1, min(cfg.seeds, _CHUNK_ENTRIES // (width * max(width, x.shape[1]))))
            f0, f_net = [], []
            for start in range(0, cfg.seeds, chunk):      # bounded memory for wide deep nets
                weights = init_weights(net, cfg, sigma_out, min(chunk, cfg.seeds - start), rng)
                a, b = train_networks(net, weights, x[idx], loss, lr, steps, x, t["activation"],
                                      np.float32)
                f0.append(a)
                f_net.append(b)
            f0, f_net = np.concatenate(f0), np.concatenate(f_net)
            own = kernel_limit_outputs(kernels[name], f0, idx, loss, lr, steps)
            dist[f"{name}_to_mup_limit"].append(_rms(f_net - f_lim))
            dist[f"{name}_to_kernel_limit"].append(_rms(f_net - own))
            test_mse[name].append(float(np.mean([errors(f)[1] for f in f_net])))
            if ctx is not None:
                ctx.tick(cfg.seeds)
    out["distance"] = dist
    out["slope"] = {k: float(loglog_slope(widths, v)) for k, v in dist.items()}
    out["network_test_mse"] = test_mse
    return out


def run(cfg: Config, ctx) -> dict:
    cfg.validate()
    results = {}
    # small matrices: BLAS threads only add contention (several times slower on a busy machine)
    with threadpool_limits(limits=1, user_api="blas"):
        for task in TASKS:
            ckpt = ctx.checkpoint(f"task-{task}")
            saved = ckpt.load()
            if saved is None:
                if ctx.progress:
                    print(f"  {task}", flush=True)
                results[task] = run_task(task, cfg, ctx)
                ckpt.save(step=1, state={}, history={}, done=True, extra=results[task])
            else:
                results[task] = saved["extra"]
                ctx.resumed.append(f"task-{task}")
    comp = results["completion"]
    mup_test, ntk_test = comp["limit_errors"][-1][1], comp["ntk_limit_errors"][-1][1]
    metrics = {"tasks": results, "task_names": list(TASKS),
               "mup_rate": [results[t]["slope"]["mup_to_mup_limit"] for t in TASKS],
               "ntp_rate": [results[t]["slope"]["ntp_to_kernel_limit"] for t in TASKS],
               "sp_rate": [results[t]["slope"]["sp_to_kernel_limit"] for t in TASKS],
               "mup_limit_test_mse": mup_test, "ntk_limit_test_mse": ntk_test,
               "test_mse_ratio": mup_test / ntk_test}
    own = {"mup": ("mup_to_mup_limit", "mup_to_kernel_limit"),
           "ntp": ("ntp_to_kernel_limit", "ntp_to_mup_limit"),
           "sp": ("sp_to_kernel_limit", "sp_to_mup_limit")}
    metrics["own_limit_ratio"] = {
        name: [results[t]["distance"][a][-1] / results[t]["distance"][b][-1] for t in TASKS]
        for name, (a, b) in own.items()}
    metrics["own_limit_ratio_kernel_nets"] = (metrics["own_limit_ratio"]["ntp"]
                                              + metrics["own_limit_ratio"]["sp"])
    shallow = results["tanh"]
    metrics["quadrature_ratio"] = (shallow["quadrature_change"]
                                   / shallow["distance"]["mup_to_mup_limit"][-1])
    return metrics


# --------------------------------------------------------------------------------- figures

_TITLES = {"completion": "rank-{rank} completion, linear, 1 hidden layer",
           "deep": "completion, linear, 2 hidden layers",
           "tanh": "2-d regression, tanh, 1 hidden layer"}


def figures(results: dict) -> dict:
    """Distances against width (log-log) per task; the completion task's test MSE in training
    (muP limit, NTK limit, finite muP widths)."""
    from matplotlib.figure import Figure
    m = results["metrics"]
    cfg = results.get("config", {})
    fig = Figure(figsize=(14, 4.3))
    styles = {"mup_to_mup_limit": ("C0", "o-", "muP net - muP limit"),
              "ntp_to_kernel_limit": ("C1", "s-", "NTP net - its kernel limit"),
              "sp_to_kernel_limit": ("C2", "^-", "SP (lr ~ 1/n) net - its kernel limit"),
              "mup_to_kernel_limit": ("C0", "o:", "muP net - muP's initial-kernel limit"),
              "ntp_to_mup_limit": ("C1", "s:", "NTP net - muP limit"),
              "sp_to_mup_limit": ("C2", "^:", "SP net - muP limit")}
    for ax, task in zip(fig.subplots(1, len(m["task_names"])), m["task_names"]):
        r = m["tasks"][task]
        widths = np.asarray(r["widths"], float)
        for key, (color, style, label) in styles.items():
            d = np.asarray(r["distance"][key], float)
            ax.plot(widths, d, style, color=color, ms=4,
                    label=f"{label} ({float(r['slope'][key]):+.2f})")
        first = float(r["distance"]["mup_to_mup_limit"][0])
        ax.plot(widths, first * np.sqrt(widths[0] / widths), "--", color="gray", lw=0.8,
                label="width^-1/2")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("width n")
        ax.set_ylabel("RMS distance of outputs after training")
        ax.set_title(_TITLES[task].format(rank=cfg.get("rank", "r")), fontsize=9)
        ax.legend(fontsize=6)
    fig.suptitle("Each network approaches its own limit: muP the computed muP limit, NTP / SP "
                 "the kernel limit (log-log slopes in brackets)", fontsize=10)
    fig.tight_layout()

    comp = m["tasks"]["completion"]
    fig2 = Figure(figsize=(10, 4.2))
    ax1, ax2 = fig2.subplots(1, 2)
    steps = np.asarray(comp["steps"], float)
    lim = np.asarray(comp["limit_errors"], float)
    ntk = np.asarray(comp["ntk_limit_errors"], float)
    ax1.plot(steps, lim[:, 1], "C0-", label="muP limit: test")
    ax1.plot(steps, lim[:, 0], "C0:", label="muP limit: train")
    ax1.plot(steps, ntk[:, 1], "C1-", label="NTK limit: test")
    ax1.plot(steps, ntk[:, 0], "C1:", label="NTK limit: train")
    ax1.set_yscale("log")
    ax1.set_xlabel("gradient-descent step")
    ax1.set_ylabel("MSE (observed / unobserved entries)")
    ax1.set_title(f"Completion: test MSE ratio muP / NTK limit {m['test_mse_ratio']:.3f}",
                  fontsize=9)
    ax1.legend(fontsize=7)
    widths = np.asarray(comp["widths"], float)
    for name, color in (("mup", "C0"), ("ntp", "C1"), ("sp", "C2")):
        ax2.plot(widths, np.asarray(comp["network_test_mse"][name], float), "o-", color=color,
                 label=f"{name} networks")
    ax2.axhline(lim[-1, 1], color="C0", ls="--", label="muP limit")
    ax2.axhline(ntk[-1, 1], color="C1", ls="--", label="NTK limit")
    ax2.set_xscale("log", base=2)
    ax2.set_xlabel("width n")
    ax2.set_ylabel("test MSE after training (mean over seeds)")
    ax2.set_title("Finite widths approach their limits' test MSE", fontsize=9)
    ax2.legend(fontsize=7)
    fig2.tight_layout()
    return {"convergence": fig, "completion": fig2}


# --------------------------------------------------------------------------------- claims

CLAIMS = (
    claim("mup_networks_approach_mup_limit",
          "muP networks' distance to the computed muP limit ~ width^slope (completion, deep "
          "linear, tanh)", "mup_rate", each(within(*RATE))),
    claim("feature_limit_beats_ntk_limit",
          "completion task: test MSE of the muP limit / test MSE of the NTK (NTP) limit",
          "test_mse_ratio", at_most(PAPER_ERROR_RATIO)),
    # NTP's distance carries a large 1/width term (its input layer trains): over widths 32-512
    # it falls like width^-0.8 on the completion task, -0.69 over 32-8192 (full) and -0.55 over
    # the last octaves. Reported, not deciding (README).
    claim("ntp_networks_approach_kernel_limit",
          "NTP networks' distance to their kernel limit ~ width^slope (three tasks)",
          "ntp_rate", each(within(*RATE)), reported=True),
    claim("sp_networks_approach_kernel_limit",
          "SP (lr ~ 1/width) networks' distance to their kernel limit ~ width^slope (three tasks)",
          "sp_rate", each(within(*RATE))),
    claim("kernel_networks_stay_off_mup_limit",
          "largest width: NTP and SP networks' distance to their kernel limit / to the muP "
          "limit (three tasks each)", "own_limit_ratio_kernel_nets",
          each(at_most(OWN_LIMIT_RATIO))),
    claim("mup_networks_stay_off_kernel_limit",
          "largest width: muP networks' distance to the muP limit / to the kernel limit of "
          "muP's initial NTK (three tasks)",
          lambda m: m["own_limit_ratio"]["mup"], each(at_most(OWN_LIMIT_RATIO))),
    claim("tanh_limit_quadrature_converged",
          "tanh task: change of the computed limit's outputs from 2/3 of the quadrature nodes, "
          "over the muP networks' distance to it at the largest width",
          "quadrature_ratio", at_most(QUADRATURE_RATIO)),
)
