"""One golden-file comparison for the stax layer batteries made in the neural-tangents
reference environment (``reference/make_stax_names*_golden.py``)."""
import numpy as np

from ntk import stax


def check_against_golden(index: int, spec: dict, arrays: dict, reference, build,
                         rtol: float) -> None:
    """Our kernels of case ``index`` (``spec``: layers, x1, x2, get) against ``reference``'s
    ``{index}/{name}`` arrays, to relative error ``rtol`` of the largest entry."""
    _, _, kernel_fn = build(stax, spec["layers"])
    x2 = None if spec.get("x2") is None else arrays[spec["x2"]]
    get = tuple(spec["get"])
    for name, value in zip(get, kernel_fn(arrays[spec["x1"]], x2, get=get)):
        theirs = reference[f"{index}/{name}"]
        assert value.shape == theirs.shape, (name, value.shape, theirs.shape)
        err = float(np.max(np.abs(np.asarray(value) - theirs))) / float(np.max(np.abs(theirs)))
        assert err < rtol, f"{spec['layers']}: {name} relative error {err:.2e}"


def assert_kernel_close(value, theirs, name: str, self_pairs: bool, rtol: float,
                        rtol_self_ntk: float, label) -> None:
    """One kernel array against neural-tangents', relative to its largest entry; with
    ``self_pairs`` (``x2=None``) the NTK of each input with itself, which both libraries take
    through an arccos at correlation 1, only to ``rtol_self_ntk``."""
    assert value.shape == theirs.shape, (name, value.shape, theirs.shape)
    err = np.abs(np.asarray(value) - theirs) / np.max(np.abs(theirs))
    if name == "ntk" and self_pairs:
        diagonal = np.eye(err.shape[0], dtype=bool).reshape(
            err.shape[:2] + (1,) * (err.ndim - 2))
        assert np.max(np.where(diagonal, err, 0)) < rtol_self_ntk, name
        err = np.where(diagonal, 0, err)
    assert np.max(err) < rtol, f"{label}: {name} relative error {np.max(err):.2e}"


def load_golden(path) -> tuple[list, list, dict, dict]:
    """``(names, specs, inputs, neural-tangents arrays)`` of a golden battery file."""
    import json
    with np.load(path) as data:
        specs = json.loads(str(data["spec"]))
        names = json.loads(str(data["names"]))
        arrays = {k[len("input/"):]: np.asarray(data[k]) for k in data.files
                  if k.startswith("input/")}
        nt = {k[len("nt/"):]: np.asarray(data[k]) for k in data.files if k.startswith("nt/")}
    return names, specs, arrays, nt
