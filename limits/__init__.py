"""How width and depth go to infinity: parametrizations, depth scaling, coordinate checks
and criticality (see shared DESIGN: abc-parametrizations of Yang & Hu)."""
