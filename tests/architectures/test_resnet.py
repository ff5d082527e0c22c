"""CIFAR ResNet-18 and WideResNet: parameter counts by hand, shapes, BatchNorm modes."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import architectures


def _n_params(module, shape):
    variables = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), jnp.zeros(shape)))
    return sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(variables["params"]))


def resnet18_count(w, classes):
    """Convs without bias, BatchNorm scale + bias (2 per channel), Dense with bias."""
    total = 27 * w + 2 * w                                    # stem conv + BN
    c_in = w
    for i in range(4):
        c = w * 2**i
        total += 9 * c_in * c + 2 * c + 9 * c * c + 2 * c     # first block
        if c_in != c:
            total += c_in * c + 2 * c                         # 1x1 projection + BN
        total += 2 * (9 * c * c + 2 * c)                      # second block
        c_in = c
    return total + 8 * w * classes + classes


def wrn_count(depth, k, classes):
    n = (depth - 4) // 6
    total, c_in = 27 * 16, 16
    for c in (16 * k, 32 * k, 64 * k):
        total += 2 * c_in + 9 * c_in * c + 2 * c + 9 * c * c  # BN-conv-BN-conv
        total += c_in * c if c_in != c else 0                 # 1x1 shortcut, no BN
        total += (n - 1) * (4 * c + 18 * c * c)
        c_in = c
    return total + 2 * c_in + c_in * classes + classes


def test_resnet18_has_the_cifar_parameter_count():
    # the count of the usual CIFAR ResNet-18 (e.g. torchvision-style BasicBlocks, 3x3 stem)
    assert resnet18_count(64, 10) == 11_173_962
    assert _n_params(architectures.resnet18(), (1, 32, 32, 3)) == 11_173_962


@pytest.mark.parametrize("width,classes", [(4, 3), (16, 100)])
def test_resnet18_count_at_other_widths(width, classes):
    module = architectures.resnet18(num_classes=classes, width=width)
    assert _n_params(module, (1, 8, 8, 3)) == resnet18_count(width, classes)


def test_wide_resnet_parameter_count_by_hand():
    # WRN-10-1, 10 classes, by hand: stem 27*16 = 432; stage 1 (16 -> 16): 32 + 2304 + 32 +
    # 2304 = 4672; stage 2 (16 -> 32): 32 + 4608 + 64 + 9216 + 512 = 14432; stage 3 (32 -> 64):
    # 64 + 18432 + 128 + 36864 + 2048 = 57536; final BN 128; head 640 + 10.
    assert 432 + 4672 + 14432 + 57536 + 128 + 650 == 77_850
    assert _n_params(architectures.wide_resnet(10, 1), (1, 8, 8, 3)) == 77_850
    for depth, k in ((16, 2), (22, 3)):
        assert (_n_params(architectures.wide_resnet(depth, k, 7), (1, 8, 8, 3))
                == wrn_count(depth, k, 7))


@pytest.mark.parametrize("builder", [lambda: architectures.resnet18(5, width=2),
                                     lambda: architectures.wide_resnet(10, 1, 5)])
def test_output_shapes(builder):
    module = builder()
    x = jnp.zeros((2, 8, 8, 3))
    variables = jax.eval_shape(module.init, jax.random.PRNGKey(0), x)
    assert jax.eval_shape(module.apply, variables, x).shape == (2, 5)
    assert jax.eval_shape(module.apply, variables, jnp.zeros((3, 16, 12, 3))).shape == (3, 5)


@pytest.fixture(scope="module")
def net():
    x = jax.random.normal(jax.random.PRNGKey(1), (3, 8, 8, 3), jnp.float64)
    module = architectures.resnet18(num_classes=4, width=2)
    eval_fn, params = architectures.init(module, jax.random.PRNGKey(0), x)
    train_fn, params_t = architectures.init(module, jax.random.PRNGKey(0), x, train=True)
    params = jax.tree_util.tree_map(lambda p: p.astype(jnp.float64), params)
    return eval_fn, train_fn, params, params_t, x


def test_batchnorm_modes_couple_examples_only_in_training(net):
    eval_fn, train_fn, params, _, x = net
    x_changed = x.at[1].set(2.0 * x[1] + 1.0)
    y, y_changed = jax.jit(eval_fn)(params, x), jax.jit(eval_fn)(params, x_changed)
    assert y.dtype == jnp.float64
    np.testing.assert_array_equal(y[0], y_changed[0])          # inference: independent
    assert not np.allclose(y[1], y_changed[1])
    t, t_changed = jax.jit(train_fn)(params, x), jax.jit(train_fn)(params, x_changed)
    assert np.max(np.abs(t[0] - t_changed[0])) > 1e-6          # training: batch statistics


def test_train_mode_normalises_by_the_batch(net):
    """ResNet's stem conv is linear without bias and BatchNorm follows it: in train mode x -> 10 x
    leaves the output unchanged (up to BatchNorm's epsilon); in inference mode it does not."""
    eval_fn, train_fn, params, _, x = net
    t, t_scaled = train_fn(params, x), train_fn(params, 10.0 * x)
    np.testing.assert_allclose(t, t_scaled, rtol=1e-3, atol=1e-4)
    assert not np.allclose(eval_fn(params, x), eval_fn(params, 10.0 * x), rtol=1e-2)


def test_running_statistics_are_calibrated(net):
    eval_fn = net[0]
    stats = eval_fn.state["batch_stats"]
    means = jax.tree_util.tree_leaves({k: v["mean"] for k, v in _bn_layers(stats)})
    variances = jax.tree_util.tree_leaves({k: v["var"] for k, v in _bn_layers(stats)})
    assert means and all(float(jnp.max(jnp.abs(m))) > 1e-3 for m in means)
    assert all(float(jnp.max(jnp.abs(v - 1.0))) > 1e-3 for v in variances)


def _bn_layers(tree, prefix=""):
    for key, value in tree.items():
        if isinstance(value, dict) and "mean" in value:
            yield prefix + key, value
        elif isinstance(value, dict):
            yield from _bn_layers(value, prefix + key + "/")


def test_params_hold_only_trainable_parameters(net):
    eval_fn, _, params, params_t, _ = net
    assert "batch_stats" not in params and "batch_stats" in eval_fn.state
    leaves = jax.tree_util.tree_leaves_with_path(params)
    assert not any("mean" in jax.tree_util.keystr(p) or "var" in jax.tree_util.keystr(p)
                   for p, _ in leaves)
    # train=True changes the mode only, not the parameters
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(params_t)):
        np.testing.assert_array_equal(a, b.astype(a.dtype))


@pytest.mark.parametrize("kwargs", [dict(depth=12), dict(depth=4), dict(widen_factor=0)])
def test_wide_resnet_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        architectures.wide_resnet(**kwargs)


def test_resnet_rejects_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="width"):
        architectures.resnet18(width=0)
    module = architectures.resnet18(width=2)
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), jnp.zeros((2, 8, 8))))
