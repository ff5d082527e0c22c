"""LM fine-tuning kernels (Malladi et al. 2023): the synthetic language's labels re-derived from
the words, the three kernels of the reference GPT's margin against explicit Jacobians, the
kernel predictor against a direct solve, figures and claims from a JSON round trip."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from matplotlib.figure import Figure

from experiments import lm_finetuning_kernels as lm
from experiments.claims import check
from experiments.records import jsonable

WORD = {i: w for w, i in lm.VOCAB.items()}


def _sentiment_from_words(doc):
    words = [WORD[int(t)] for t in doc]
    pos = words[5] in lm.POSITIVE
    assert pos or words[5] in lm.NEGATIVE
    return int(pos) ^ int(words[4] == "not")


def test_corpus_labels_follow_the_grammar_with_the_stated_noise():
    """Over 4,000 documents the label word matches the sentiment derived from the words (``not``
    flips the adjective) in 1 - noise of them, and the topic word the noun's topic, within 4
    binomial standard deviations."""
    noise, n = 0.2, 4000
    docs = lm.corpus(np.random.default_rng(0), n, noise)
    assert docs.shape == (n, lm.DOC_LEN) and docs[:, 0].max() == lm.VOCAB["<bos>"]
    label_ok = topic_ok = 0
    for d in docs:
        words = [WORD[int(t)] for t in d]
        i = words.index("it")
        label_ok += lm.LABELS.index(words[i + 2]) == _sentiment_from_words(d)
        j = words.index("about")
        topic_ok += words[2] in lm.TOPICS[words[j + 1]]
    sd = np.sqrt(noise * (1 - noise) / n)
    assert abs(label_ok / n - (1 - noise)) < 4 * sd
    # a flipped topic word is redrawn uniformly over 4 topics: right 1/4 of the time anyway
    assert abs(topic_ok / n - (1 - noise * 3 / 4)) < 4 * sd


@pytest.mark.parametrize("task", lm.TASKS)
def test_task_examples_and_prompts(task):
    x, y = lm.task_data(np.random.default_rng(1), task, 300, prompt=True)
    tail = [lm.VOCAB[w] for w in lm.PROMPTS[task]]
    assert (x[:, -len(tail):] == tail).all()
    for doc, label in zip(x, y):
        words = [WORD[int(t)] for t in doc]
        if task == "topic":
            assert words[2] in lm.TOPICS[lm.LABEL_WORDS["topic"][label]]
        else:
            assert label == _sentiment_from_words(doc)
            assert (words[4] == "not") or task == "sentiment"
    assert 0.35 < y.mean() < 0.65
    x_np, _ = lm.task_data(np.random.default_rng(1), task, 5, prompt=False)
    assert x_np.shape[1] == 7 and (x_np[:, -1] == lm.VOCAB["."]).all()


def _head(dim, seed=0):
    w = np.random.default_rng(seed).normal(size=(dim, 2))
    return {"w": jnp.asarray(w), "b": jnp.asarray([0.3, -0.2])}


def test_one_task_model_reads_label_words_with_a_prompt_and_a_new_head_without(tiny):
    """With a prompt the scores are the label words' logits at the prompt's last token (the
    LM's own output) and the new head gets exactly zero gradient; without one they are the
    head on the unpadded document's last representation, whatever the padding."""
    cfg, module, params = tiny
    full = {"lm": params, "head": _head(cfg.dim)}
    apply_fn = jax.jit(lm.task_model(module))
    lm_out = jax.jit(lambda t, features: module.apply({"params": params}, t, features=features),
                     static_argnums=1)
    x, _ = lm.task_data(np.random.default_rng(6), "topic", 4, prompt=True)
    logits = lm_out(jnp.asarray(x), False)[:, -1]
    ids = [lm.VOCAB[w] for w in lm.LABEL_WORDS["topic"]]
    prompted = jnp.asarray(lm.task_inputs(x, "topic", True))
    np.testing.assert_allclose(apply_fn(full, prompted), logits[:, ids], atol=1e-12)
    grad = jax.jit(jax.grad(lambda p: jnp.sum(apply_fn(p, prompted) ** 2)))(full)
    assert all(not np.any(g) for g in jax.tree.leaves(grad["head"]))
    assert any(np.any(g) for g in jax.tree.leaves(grad["lm"]))

    x, _ = lm.task_data(np.random.default_rng(7), "sentiment", 4, prompt=False)
    h = lm_out(jnp.asarray(x), True)[:, -1]
    want = h @ full["head"]["w"] + full["head"]["b"]
    padded = lm.task_inputs(x, "sentiment", False)
    np.testing.assert_allclose(apply_fn(full, jnp.asarray(padded)), want, atol=1e-12)
    padded[:, 7:lm.PROMPTED_LEN] = lm.VOCAB["great"]           # causal: padding is never read
    np.testing.assert_allclose(apply_fn(full, jnp.asarray(padded)), want, atol=1e-12)


def test_few_shot_has_k_per_class():
    (x, y), (xd, yd), (xt, yt) = lm.few_shot(np.random.default_rng(2), "sentiment", 8, 50, True)
    assert np.bincount(y).tolist() == [8, 8] and np.bincount(yd).tolist() == [8, 8]
    assert len(yt) == 50


@pytest.fixture(scope="module")
def tiny():
    cfg = lm.Config(dim=8, depth=1, heads=2)
    module = lm.model(cfg)
    params = jax.jit(module.init)(jax.random.PRNGKey(0),
                                  jnp.zeros((1, lm.DOC_LEN), jnp.int32))["params"]
    params = jax.tree.map(lambda a: a.astype(jnp.float64), params)
    return cfg, module, params


def test_features_times_the_tied_embedding_are_the_logits(tiny):
    _, module, params = tiny
    x = jnp.asarray(lm.corpus(np.random.default_rng(3), 3, 0.0)[:, :9])
    h, logits = jax.jit(lambda t: (module.apply({"params": params}, t, features=True),
                                   module.apply({"params": params}, t)))(x)
    np.testing.assert_allclose(h @ params["token_embed"]["embedding"].T, logits, atol=1e-12)


# With a prompt the margin reads two label-word logits of the tied head; without, a new head.
# Both under ``make test-all`` (the kernels themselves are checked against jacrev on the
# reference architectures by default, tests/ntk/test_architectures_entk.py and test_approx.py).
@pytest.mark.slow
@pytest.mark.parametrize("prompt", [True, False])
def test_kernels_match_explicit_jacobians(tiny, prompt):
    """SGD, SignGD and A-SignGD kernels of the margin against jax.jacrev per example. A
    derivative that is zero in exact arithmetic can come out as +-1e-17 from either program and
    its sign is then arbitrary: such coordinates (|g| below 1e-10 of the largest) may move a
    sign-kernel entry by one each, and nothing else may."""
    cfg, module, lm_params = tiny
    params = {"lm": lm_params, "head": _head(cfg.dim)}     # with a prompt the head is unused
    x, _ = lm.task_data(np.random.default_rng(4), "sentiment", 7, prompt)
    x = lm.task_inputs(x, "sentiment", prompt)
    fns = lm.task_functions(module)
    ks, k_full = lm.kernels(fns, params, jnp.asarray(x), 3)
    margin = lm.margin_fn(fns[0])
    jac = jax.jacrev(lambda p: margin(p, jnp.asarray(x))[:, 0])(params)
    g = np.concatenate([np.asarray(a).reshape(len(x), -1) for a in jax.tree.leaves(jac)], 1)
    tiny_g = (np.abs(g) < 1e-10 * np.abs(g).max()) & (g != 0)    # rounding noise, sign unsure
    n_tiny = tiny_g.sum(1).astype(float)
    wants = {"sgd": g @ g.T, "signgd": np.sign(g) @ np.sign(g).T,
             "asigngd": g @ np.sign(g[:3]).T}
    slack = {"sgd": 1e-9 * np.abs(g @ g.T).max(),
             "signgd": n_tiny[:, None] + n_tiny[None, :3],           # one per unsure sign
             "asigngd": np.abs(g) @ tiny_g[:3].T + 1e-9 * np.abs(g).sum()}
    np.testing.assert_allclose(k_full, wants["sgd"], rtol=1e-9, atol=1e-12)
    for name, want in wants.items():
        got = np.concatenate(ks[name])
        assert np.all(np.abs(got - want[:, :3]) <= slack[name]), name
    assert n_tiny.max() < 0.02 * g.shape[1]     # a few unsure signs: the check has teeth


def test_kernel_predict_solves_the_ridge_system():
    rng = np.random.default_rng(5)
    a = rng.normal(size=(6, 6))
    k_dd, k_td, y = a @ a.T, rng.normal(size=(4, 6)), np.sign(rng.normal(size=6))
    r = 0.1 * np.linalg.norm(k_dd, 2)
    want = k_td @ np.linalg.inv(k_dd + r * np.eye(6)) @ y
    np.testing.assert_allclose(lm.kernel_predict(k_dd, k_td, y, 0.1), want, rtol=1e-9)
    asym = k_dd + rng.normal(size=(6, 6))
    r = 0.1 * np.linalg.norm(asym, 2)
    want = k_td @ np.linalg.inv(asym + r * np.eye(6)) @ y
    np.testing.assert_allclose(lm.kernel_predict(asym, k_td, y, 0.1, asymmetric=True), want,
                               rtol=1e-9)


def _made_up_metrics():
    rng = np.random.default_rng(0)
    settings = {}
    for prompt in ("prompt", "no_prompt"):
        for t in lm.TASKS:
            row = {p: list(rng.uniform(0.6, 1.0, 2)) for p in lm.PREDICTORS
                   if p != "zero_shot" or prompt == "prompt"}
            row["kernel_change"] = [0.1, 0.2]
            settings[f"{prompt}/{t}/k=16"] = row
    return lm.summarise(lm.Config(), {k: v for k, v in settings.items()}, [3.0, 1.0, 0.7])


def test_figures_and_claims_from_a_json_round_trip():
    m = _made_up_metrics()
    results = json.loads(json.dumps(jsonable({"metrics": m})))
    figs = lm.figures(results)
    assert set(figs) == {"accuracy", "pretraining_and_kernel_change"}
    for fig in figs.values():
        assert isinstance(fig, Figure)
        for ax in fig.axes:
            assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    checked = {c["id"]: c for c in check(lm.CLAIMS, results["metrics"])}
    assert checked["prompt_finetuning_keeps_the_kernel"]["measured"] == pytest.approx(1.0)
    assert not checked["prompt_finetuning_keeps_the_kernel"]["holds"]


def test_config_validation():
    lm.Config.quick().validate()
    lm.Config.full().validate()
    for bad in (dict(pretrain_steps=650), dict(dim=30, heads=4), dict(corpus_noise=0.5),
                dict(sgd_lrs=()), dict(ridges=(0.0,)), dict(kernels=("sgd", "asigngd")),
                dict(kernels=("sgd", "signgd", "ntk"))):
        with pytest.raises(ValueError):
            lm.Config(**bad).validate()
