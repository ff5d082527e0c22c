"""How width and depth go to infinity: parametrizations, depth scaling, coordinate checks
and criticality (abc-parametrizations of Yang & Hu 2021, arXiv:2011.14522).

* :mod:`limits.parametrization` -- ``Parametrization`` (per-role ``a, b, c`` width exponents
  for SGD or Adam), presets ``SP``, ``SP_LR_INV_WIDTH``, ``SP_ADAM``, ``NTP``, ``MFP``,
  ``MUP``, ``MUP_ADAM`` and ``mup(optimizer, table)`` (TP IV Table 1, TP V Tables 3/8/9),
  the abc-symmetry between forms.
* :mod:`limits.regimes` -- TP IV's ``r``, ``r_l``, stability / nontriviality conditions and
  ``classify`` (unstable / trivial / kernel / feature learning, with reasons), in sympy.
* :mod:`limits.depth` -- branch multipliers ``L^-alpha`` and TP VI's depth classes.
* :mod:`limits.networks` -- ``mlp`` / ``resmlp`` built under a parametrization (init, apply,
  features, per-leaf learning-rate scales), ``ntk_fn`` (empirical NTK under those scales).
* :mod:`limits.optimizers` -- optax SGD / Adam(W) from per-leaf learning-rate scales.
* :mod:`limits.coord_check` -- one-step width exponents, microsoft/mup-style coordinate
  checks, one-step sizes against depth.
* :mod:`limits.transfer` -- learning-rate transfer across width (and depth).
* :mod:`limits.criticality` -- length / correlation maps, ``q*``, ``chi_1``, depth scales,
  edge of chaos, phase diagram, Monte Carlo of deep nets.
* :mod:`limits.width_depth` -- the depth-ODE limit of ``1/sqrt(L)`` residual covariances.
* :mod:`limits.scaling` -- fitted log-log slopes of power laws.
* :mod:`limits.finite_width` -- ``1/width`` corrections at initialisation: the four-point
  vertex (excess kurtosis) and the NTK's variance over initialisations, growing like
  depth / width (Roberts, Yaida & Hanin).
* :mod:`limits.dntk` -- the NTK's change in one gradient step (the dNTK): exact by ``jax.jvp``
  of the empirical NTK, the actual one-step change, hand-written tangents for Monte Carlo, the
  deep-linear leading order ``-(2/3)(L^2 - 1)/(L n)`` (Roberts, Yaida & Hanin, Ch. 11).
* :mod:`limits.mup_limit` -- the muP infinite-width limit computed directly, and its kernel
  counterpart (Yang & Hu, TP IV).
* :mod:`limits.eigenlearning` -- eigenlearning predictions of kernel and random-feature ridge
  regression (Simon et al.).
* :mod:`limits.deep_limits` -- infinitely wide and deep NTK / NNGP classifiers on the sphere
  (Radhakrishnan, Belkin & Uhler).
* :mod:`limits.pseudo_iid` -- pseudo-i.i.d. weights (orthogonal, low-rank, block-sparse) and
  their Gaussian-process limit (Nait Saada, Naderi & Tanner).
* :mod:`limits.signature` -- neural signature kernels of controlled ResNets and their Goursat
  PDE (Muca Cirone, Lemercier & Salvi).
* :mod:`limits.deep_kernel_machines` -- the deep kernel machine objective: the Bayesian
  representation-learning limit (Yang et al. 2023).
* :mod:`limits.adaptive_kernel` -- the adaptive-kernel theory of grokking as a first-order
  transition in two-layer teacher-student networks (Rubin, Seroussi & Ringel).
"""
from limits.parametrization import (
    MFP,
    MUP,
    MUP_ADAM,
    NTP,
    OPTIMIZERS,
    ROLES,
    SP,
    SP_ADAM,
    SP_LR_INV_WIDTH,
    Parametrization,
    RoleExponents,
    mup,
    standard,
    width_symbol,
)
from limits.regimes import (
    REGIMES,
    Regime,
    classify,
    feature_learning_exponent,
    regime_conditions,
    update_exponents,
)
from limits.depth import (
    BRANCH_SCALINGS,
    DepthRegime,
    branch_exponent,
    branch_multiplier,
    depth_lr_exponent,
    depth_regime,
    depth_update_exponent,
)
from limits.networks import ACTIVATIONS, Network, mlp, ntk_fn, resmlp
from limits.optimizers import optimizer, scale_by_tree
from limits.coord_check import (
    CoordCheckConfig,
    coord_check,
    depth_update_sizes,
    one_step_update_sizes,
    plot_coord_check,
    update_size_exponents,
)
from limits.criticality import (
    c_star,
    chi_1,
    chi_c,
    correlation_map,
    depth_scales,
    edge_of_chaos,
    length_map,
    phase_diagram,
    plot_phase_diagram,
    q_star,
    relu_correlation_map,
    simulate_deep_network,
)
from limits.scaling import loglog_slope
from limits.width_depth import (
    gaussian_product_expectation,
    residual_covariance_ode,
    residual_covariance_recursion,
    simulate_residual_network,
)
from limits.transfer import TransferConfig, load_task, lr_transfer, lr_transfer_depth, plot_transfer
