"""NTK surrogate study (Engel et al. 2024): its pieces against independent truths.

The Johnson-Lindenstrauss variance of a Gaussian sketch (Monte Carlo over independent column
blocks), the projected trace NTK's unbiasedness, the kGLM against scikit-learn's multinomial
logistic regression, the LDS's vectorised Spearman against scipy, the margin and the
convolution-as-matrix-product against direct formulas, and the figures and claims redrawn
from made-up metrics through a JSON round trip. The whole quick study runs in
tests/papers/test_verify.py.
"""
import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from matplotlib.figure import Figure

from experiments import ntk_surrogates as ns
from experiments.claims import all_hold, check
from experiments.records import jsonable
from ntk import approx


@pytest.fixture(scope="module")
def tiny():
    """A 64-12-12-10 MLP of :func:`ns.layer_outputs`' shape in float64 (P = 1,066 parameters,
    nonzero biases) on 12 random inputs."""
    rng = np.random.default_rng(3)
    shapes = ((64, 12), (12, 12), (12, ns.NUM_CLASSES))
    params = [{"W": jnp.asarray(rng.standard_normal(s)),
               "b": jnp.asarray(rng.standard_normal(s[1]))} for s in shapes]
    return params, jnp.asarray(rng.standard_normal((12, 64)) / 8.0)


def test_sketches_are_unbiased_with_the_johnson_lindenstrauss_variance(tiny):
    """One Gaussian sketch of 4,096 columns of the per-logit gradients, cut into independent
    blocks: (a) the sum-of-logits features ``(1/sqrt O) sum_c phi_c`` (the pNTK's, by
    linearity) in 256 blocks of k = 16 have mean squared relative error
    ``sum_ij (K_ii K_jj + K_ij^2) / (k |K|_F^2)`` within 4 standard errors; (b) the mean of the
    blocks' kernels is the exact pNTK and trNTK (unbiased); (c) the RMS error of the traced
    per-logit kernels at k = 16, 64, 256 has log-log slope -1/2."""
    params, x = tiny
    phi = approx.projected_features_fn(ns.apply_fn, 4096, sketch="gaussian", output="each")(
        x, params, jax.random.PRNGKey(0))
    phi_sum = np.asarray(phi).sum(1) / np.sqrt(ns.NUM_CLASSES)
    for features, exact in ((phi_sum, approx.pntk_fn(ns.apply_fn)(x, None, params)),
                            (phi, approx.trace_ntk_fn(ns.apply_fn)(x, None, params))):
        exact = np.asarray(exact)
        blocks = ns.block_kernels(features, 16)
        assert len(blocks) == 256
        spread = np.std(blocks, axis=0) / np.sqrt(len(blocks))
        assert np.all(np.abs(np.mean(blocks, axis=0) - exact) <= 5 * spread + 1e-12)
        sq = np.array([ns.relative_error(g, exact) ** 2 for g in blocks])
        if features.ndim == 2:
            predicted = ns.jl_prediction(exact, 16) ** 2
            assert abs(sq.mean() - predicted) < 4 * sq.std() / np.sqrt(len(sq))
        else:
            dims = (16, 64, 256)
            rms = [np.sqrt(np.mean([ns.relative_error(g, exact) ** 2
                                    for g in ns.block_kernels(features, d)])) for d in dims]
            assert np.polyfit(np.log(dims), np.log(rms), 1)[0] == pytest.approx(-0.5, abs=0.1)
    with pytest.raises(ValueError, match="divide"):
        ns.block_kernels(phi, 300)


def test_kglm_matches_scikit_learn_multinomial_logistic_regression():
    """Same objective (C = 1 / (l2 N), balanced classes, unpenalised intercept): the
    trust-region Newton fit and scikit-learn's L-BFGS agree on coefficients and logits."""
    from sklearn.linear_model import LogisticRegression
    rng = np.random.default_rng(0)
    labels = np.arange(40) % ns.NUM_CLASSES
    labels[:7] = 3                                    # unbalanced classes
    feats = rng.normal(size=(40, 6)) + np.eye(ns.NUM_CLASSES, 6)[labels]
    k = feats @ feats.T / 6
    coef, intercept, grad_norm = ns.fit_kglm(k, labels, 1e-2)
    ref = LogisticRegression(C=1 / (1e-2 * 40), class_weight="balanced", tol=1e-10,
                             max_iter=2000).fit(k, labels)
    assert grad_norm < 1e-8
    np.testing.assert_allclose(coef, ref.coef_, atol=1e-5)
    np.testing.assert_allclose(ns.kglm_logits(coef, intercept, k), ref.decision_function(k),
                               atol=1e-5)
    # attributions split the true-class logit (minus the bias) into training examples' terms
    scores = ns.attributions(coef, k[:5], labels[:5])
    np.testing.assert_allclose(scores.sum(1) + intercept[labels[:5]],
                               ns.kglm_logits(coef, intercept, k[:5])[np.arange(5), labels[:5]])


def test_lds_is_the_mean_spearman_correlation_over_test_points():
    from scipy.stats import spearmanr
    rng = np.random.default_rng(1)
    masks = (rng.random((12, 9)) < 0.5).astype(float)
    scores = rng.normal(size=(5, 9))
    outputs = masks @ scores.T + rng.normal(size=(12, 5))
    outputs[:4, 2] = outputs[4, 2]                    # ties
    outputs[:, 4] = 1.0                               # a constant output: skipped
    rhos = [spearmanr(masks @ scores[z], outputs[:, z]).statistic for z in range(4)]
    assert ns.linear_datamodeling_score(scores, masks, outputs) == pytest.approx(np.mean(rhos))
    assert ns.linear_datamodeling_score(scores, masks, masks @ scores.T) == pytest.approx(1.0)


def test_margin_and_convolution_by_patches():
    rng = np.random.default_rng(2)
    logits, labels = rng.normal(size=(3, 4, 5)), np.array([0, 4, 2, 2])
    brute = [[z[i, y] - np.log(np.sum(np.exp(np.delete(z[i], y))))
              for i, y in enumerate(labels)] for z in logits]
    np.testing.assert_allclose(ns.margins(logits, labels), brute, rtol=1e-12)
    h = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 3))
    w = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 3, 5))
    direct = jax.lax.conv_general_dilated(h, w, (1, 1), "SAME",
                                          dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(ns._patches(h) @ w.reshape(27, 5), direct, atol=1e-10)


def _made_up_metrics():
    dims = [256, 512, 1024]
    rng = np.random.default_rng(0)

    def model(shift):
        tau = {k: 0.8 - 0.03 * i + shift for i, k in enumerate(ns.KERNELS)}
        tau["proj-trNTK"] = tau["trNTK"] - 0.01
        lds = {k: 0.55 - 0.02 * i for i, k in enumerate(ns.KERNELS)}
        err = {k: (c * np.array(dims, float) ** -0.5).tolist()
               for k, c in (("proj-trNTK", 2.0), ("proj-pNTK", 4.0))}
        return {"network_test_accuracy": 0.9, "tau": tau, "lds": lds,
                "tau_vs_k": {k: list(0.8 + 0.01 * rng.normal(size=3)) for k in err},
                "projection_error": err,
                "projection_error_slope": {k: -0.5 for k in err},
                "pntk_jl_prediction": list(5.0 * np.array(dims, float) ** -0.5),
                "kernel_seconds": {"trNTK": 1.0, "pNTK": 0.5, "CK+Em": 0.1},
                "projection_seconds": {"proj-trNTK": 2.0, "proj-pNTK": 1.0},
                "trace_minus_best_other_tau": tau["trNTK"] - tau["pNTK"],
                "trntk_lds_minus_best_of_ck_em": lds["trNTK"] - max(lds["CK"], lds["Em"])}
    return {"models": ["mlp", "cnn"], "kernels": list(ns.KERNELS), "proj_dims": dims,
            "per_model": {"mlp": model(0.0), "cnn": model(0.05)}}


def test_figures_and_claims_redraw_from_a_json_round_trip():
    results = json.loads(json.dumps(jsonable(
        {"metrics": _made_up_metrics(),
         "config": dataclasses.asdict(ns.Config.quick())})))
    figs = ns.figures(results)
    assert set(figs) == {"faithfulness", "projection"}
    assert all(isinstance(f, Figure) for f in figs.values())
    labels = [ax.get_ylabel() for ax in figs["projection"].axes]
    assert any("K_proj" in y for y in labels) and figs["projection"].axes[0].get_xscale() == "log"
    checked = check(ns.CLAIMS, results["metrics"])
    assert all_hold(checked) and len(checked) == len(ns.CLAIMS)
    results["metrics"]["per_model"]["cnn"]["projection_error_slope"]["proj-pNTK"] = -1.0
    failed = {c["id"] for c in check(ns.CLAIMS, results["metrics"]) if not c["holds"]}
    assert failed == {"proj_pntk_error_k_inverse_sqrt"}


def test_config_validation():
    ns.Config.quick().validate()
    ns.Config.full().validate()
    for bad in (dict(models=("vit",)), dict(proj_dims=(256, 384, 1024)),
                dict(n_train=1500, n_test=400), dict(steps=250), dict(sketch="sparse2")):
        with pytest.raises(ValueError):
            dataclasses.replace(ns.Config.quick(), **bad).validate()


def test_resnet18_network_frozen_statistics_and_layer_outputs():
    """The reference ResNet-18 of the study (stem width 2, 12 digit rows): (a) in inference
    mode with the frozen training-set statistics it computes, on those rows, exactly what
    Flax's training-mode BatchNorm (batch statistics) computes; (b) its Em layers are the 21
    convolutions and the head (stem, 16 block convolutions, 3 shortcuts, Dense), each with the
    shape of that layer's output; (c) the CK features are the head's input:
    ``logits = h W + b``; (d) the parameters are the trainable ones only (no statistics)."""
    from architectures.resnet import resnet18
    cfg = dataclasses.replace(ns.Config.quick(), models=("resnet18",), resnet_width=2)
    x = jax.random.normal(jax.random.PRNGKey(0), (12, 64), jnp.float32) / 8.0
    net = ns.build_network("resnet18", cfg, jax.random.PRNGKey(1), x)
    module = resnet18(ns.NUM_CLASSES, 2)
    variables = module.init(jax.random.PRNGKey(1), ns.digit_images(x)[:2])
    train_mode, _ = module.apply(variables, ns.digit_images(x), train=True,
                                 mutable=["batch_stats"])
    logits = net.apply(net.params0, x)
    np.testing.assert_allclose(logits, train_mode, rtol=2e-4, atol=2e-4)
    assert "batch_stats" not in net.params0 and "Dense_0" in net.params0
    outs, last = net.features(net.params0, x)
    assert len(outs) == 21
    widths = sorted({int(z.shape[-1]) for z in outs})
    assert widths == sorted([2, 4, 8, 16, ns.NUM_CLASSES])
    head_outputs = [z for z in outs if z.ndim == 2]
    assert len(head_outputs) == 1
    np.testing.assert_allclose(head_outputs[0], logits, rtol=1e-6, atol=1e-6)
    head = net.params0["Dense_0"]
    np.testing.assert_allclose(last @ head["kernel"] + head["bias"], logits, rtol=1e-5,
                               atol=1e-5)
