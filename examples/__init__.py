"""Runnable examples: the tasks neural-tangents' ``examples/`` show, written against ``ntk``.

Each module has ``main(argv=None) -> dict``: it parses its command line (``--quick`` for a
run of seconds, sizes to override), prints what it measured, and returns the numbers (and
arrays) so that ``tests/examples/test_examples.py`` can check a property of each on tiny
data. Run one from the repository root::

    .venv/bin/python -m examples.infinite_fcn --quick

- :mod:`examples.infinite_fcn`: NNGP and NTK inference with an infinitely wide network;
- :mod:`examples.function_space`: a trained finite network against the closed-form
  function-space dynamics of its empirical NTK;
- :mod:`examples.weight_space`: a network against its linearization, both trained by SGD
  with momentum on cross-entropy;
- :mod:`examples.empirical_ntk`: the empirical-NTK implementations of a CNN agree;
- :mod:`examples.elementwise`: kernels of an activation from its NNGP map (autodiff) and
  from its function (quadrature) against closed forms;
- :mod:`examples.attention`: infinite-width self-attention on synthetic sentences.

The digits come from :mod:`tasks` (scikit-learn's bundled 8x8 digits; nothing is
downloaded), where neural-tangents' examples read CIFAR-10, MNIST and IMDb through
TensorFlow Datasets.
"""
