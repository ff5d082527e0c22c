"""How width and depth go to infinity: parametrizations, depth scaling, coordinate checks
and criticality (see shared DESIGN: abc-parametrizations of Yang & Hu)."""
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
from limits.transfer import TransferConfig, load_task, lr_transfer, plot_transfer
