"""FAB: the exact box-constrained projection (vs. scipy), bounds, minimum-norm behaviour, errors, state."""

import numpy as np
import pytest
import torch
from torchtrust_fab.methods import FAB
from torchtrust_fab.projection import project

import toolkit_core as tt
from toolkit_core.testing import ModelSnapshot, check_method


def test_contract():
    check_method("fab")
    check_method("fab", norm="l2", eps=1.0, targeted=False, restarts=2)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_projection_matches_scipy(norm):
    scipy_opt = pytest.importorskip("scipy.optimize")
    g = torch.Generator().manual_seed(0)
    p = torch.rand(20, 6, generator=g, dtype=torch.float64)
    w = torch.randn(20, 6, generator=g, dtype=torch.float64)
    r = torch.randn(20, generator=g, dtype=torch.float64) * 0.5
    delta = project(p, w, r, norm)
    for i in range(20):
        pi, wi, ri = p[i].numpy(), w[i].numpy(), float(r[i])
        lo, hi = -pi, 1 - pi
        reach = np.where(wi * np.sign(ri) > 0, hi, lo) @ wi  # fully saturated step
        if abs(reach) < abs(ri):  # the hyperplane misses the box: the saturated step is returned
            assert np.allclose(delta[i].numpy(), np.clip(np.sign(ri) * np.sign(wi) * 10, lo, hi))
            continue
        assert abs(float(delta[i] @ w[i]) - ri) < 1e-8  # on the hyperplane
        assert (delta[i].numpy() >= lo - 1e-12).all() and (delta[i].numpy() <= hi + 1e-12).all()
        if norm == "linf":  # LP: min t s.t. |d_j| <= t, box, w.d = r
            c = np.r_[np.zeros(6), 1.0]
            a_ub = np.r_[np.c_[np.eye(6), -np.ones(6)], np.c_[-np.eye(6), -np.ones(6)]]
            res = scipy_opt.linprog(c, A_ub=a_ub, b_ub=np.zeros(12), A_eq=np.r_[wi, 0.0][None], b_eq=[ri],
                                    bounds=list(zip(lo, hi)) + [(0, None)])
            assert abs(float(delta[i].abs().max()) - res.fun) < 1e-7
        else:  # QP: min ||d||^2 s.t. box, w.d = r
            res = scipy_opt.minimize(lambda d: d @ d, np.zeros(6), jac=lambda d: 2 * d, method="SLSQP",
                                     bounds=list(zip(lo, hi)),
                                     constraints=[{"type": "eq", "fun": lambda d, wi=wi, ri=ri: wi @ d - ri}],
                                     options={"ftol": 1e-14, "maxiter": 500})
            assert abs(float(delta[i].norm()) - np.sqrt(res.fun)) < 1e-5


def test_l2_projection_without_active_box_is_the_closed_form():
    p = torch.full((3, 5), 0.5, dtype=torch.float64)
    w = torch.randn(3, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    r = torch.tensor([0.01, -0.02, 0.0], dtype=torch.float64)
    expected = r[:, None] * w / (w * w).sum(1, keepdim=True)  # r w / ||w||^2
    assert torch.allclose(project(p, w, r, "l2"), expected, atol=1e-12)


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 1.0)])
def test_bounds_and_success(digits, norm, eps):
    model, x, y = digits
    x_adv = tt.create("fab", eps=eps, norm=norm, steps=10, n_target_classes=3, seed=0)(model, x, y)
    d = (x_adv - x).flatten(1)
    size = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
    assert float(size.max()) <= eps + 1e-5
    assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1
    with torch.no_grad():
        clean, adv = model(x).argmax(1) == y, model(x_adv).argmax(1) == y
    assert float(adv.float().mean()) < float(clean.float().mean()) - 0.3
    # a point FAB does not break comes back unchanged (a minimum-norm attack: nothing within eps found)
    same = (x_adv == x).flatten(1).all(1)
    assert bool((~adv | same | ~clean).all())


def test_smaller_eps_never_breaks_more(digits):
    model, x, y = digits
    fooled = []
    for eps in (0.03, 0.1):
        x_adv = tt.create("fab", eps=eps, steps=10, n_target_classes=2, seed=0)(model, x, y)
        with torch.no_grad():
            fooled.append(model(x_adv).argmax(1) != y)
    assert bool((fooled[1] | ~fooled[0]).all())  # same seed, same search: only the eps filter differs


def test_errors_and_model_state(digits):
    model, x, y = digits
    model.train()
    snap = ModelSnapshot.take(model)
    fab = tt.create("fab", eps=0.1, steps=2, n_target_classes=1, seed=0)
    fab(model, x, y)
    snap.assert_unchanged(model)
    with pytest.raises(ValueError, match="classes"):
        fab(model, x, torch.full_like(y, 10))
    for bad in ({"eps": -1.0}, {"steps": 0}, {"eta": 0.5}, {"beta": 0.0}, {"norm": "l1"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            FAB(**bad)
    snap.assert_unchanged(model)
