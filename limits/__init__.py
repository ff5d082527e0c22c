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
