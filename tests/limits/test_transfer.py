"""Learning-rate transfer across width: muP's argmin stays, SP's drifts (TP V Fig. 1)."""
import numpy as np
import pytest

from limits import parametrization as P
from limits.transfer import TransferConfig, lr_transfer, plot_transfer


# The sweeps (about 11 CPU-s) run under ``make test-all``; by default the same transfer claims
# are checked by ``ntk-lab verify yang2021tp5 --quick`` (tests/papers/test_verify.py).
@pytest.fixture(scope="module")
def sweeps():
    config = TransferConfig.quick()  # widths 16..256 (16x), 13 log2 learning rates, 2 seeds
    return {"sp": lr_transfer(P.SP_ADAM, config), "mup": lr_transfer(P.MUP_ADAM, config)}


@pytest.mark.slow
def test_mup_argmin_stays_within_one_grid_step(sweeps):
    r = sweeps["mup"]
    assert max(r["widths"]) / min(r["widths"]) >= 16 and len(r["widths"]) >= 4
    assert r["argmin_shift"] <= 1
    # the optimum is interior, not at the edge of the grid
    assert 0 < min(r["argmin"]) and max(r["argmin"]) < len(r["learning_rates"]) - 1


@pytest.mark.slow
def test_sp_argmin_drifts_towards_smaller_rates(sweeps):
    r = sweeps["sp"]
    assert r["argmin_shift"] >= 2
    assert r["argmin"][-1] < r["argmin"][0]  # wider SP nets want smaller learning rates
    assert r["argmin_shift"] > sweeps["mup"]["argmin_shift"]


@pytest.mark.slow
def test_muP_at_base_width_is_the_sp_curve(sweeps):
    np.testing.assert_array_equal(sweeps["mup"]["loss"][:, 0], sweeps["sp"]["loss"][:, 0])


@pytest.mark.slow
def test_transfer_figure(sweeps, tmp_path):
    import json

    import matplotlib
    backend = matplotlib.get_backend()
    path = tmp_path / "transfer.png"
    fig = plot_transfer([sweeps["sp"], sweeps["mup"]], path)
    assert path.exists() and path.stat().st_size > 10_000
    assert len(fig.axes) == 2 and matplotlib.get_backend() == backend   # backend untouched
    # the same figure from the sweeps' JSON round trip (how a study redraws from results)
    plain = json.loads(json.dumps([sweeps["sp"], sweeps["mup"]], default=lambda a: a.tolist()))
    again = plot_transfer(plain)
    assert [ax.get_title() for ax in again.axes] == [ax.get_title() for ax in fig.axes]


def test_bad_input():
    with pytest.raises(ValueError, match="learning_rates"):
        lr_transfer(P.MUP, learning_rates=(0.1, 0.01, 0.001))
    with pytest.raises(ValueError, match="widths"):
        lr_transfer(P.MUP, widths=(64,))
    with pytest.raises(ValueError, match="dataset"):
        lr_transfer(P.MUP, dataset="cifar10")
    with pytest.raises(TypeError, match="parametrization"):
        lr_transfer("muP")


@pytest.mark.slow
def test_depth_mup_learning_rate_transfers_across_depth():
    """resmlp, width 64, depths 2..32 (16x), Adam: depth-muP (branch 1/sqrt(L), block lr
    1/sqrt(L)) keeps the argmin within one grid step; without the lr scaling it drifts
    towards smaller rates (measured: shifts 1 vs 2)."""
    from limits.transfer import lr_transfer_depth

    mu = lr_transfer_depth(P.MUP_ADAM, (2, 4, 8, 16, 32))
    plain = lr_transfer_depth(P.MUP_ADAM, (2, 4, 8, 16, 32), lr_depth_exponent=0)
    assert mu["argmin_shift"] <= 1
    assert plain["argmin"][-1] < plain["argmin"][0]
    assert plain["argmin_shift"] > mu["argmin_shift"]
