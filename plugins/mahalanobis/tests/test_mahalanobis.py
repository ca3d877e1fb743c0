"""Numbers of the Mahalanobis detector: statistics and scores against a direct float64 evaluation,
AUROC against scikit-learn, and detection of noise, flipped digits and adversarial digits."""

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch import nn
from torchtrust_mahalanobis import Mahalanobis

from toolkit_core.catalog import get_info
from toolkit_core.detection import auroc
from toolkit_core.modelstate import ModelSnapshot
from toolkit_core.testing import check_method


def test_contract_and_provider():
    check_method("mahalanobis")
    assert get_info("mahalanobis").provider == "torchtrust-mahalanobis"


def test_auroc_equals_sklearn_with_ties():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (200,), generator=g).double()
    b = torch.randint(1, 7, (150,), generator=g).double()
    ref = roc_auc_score([0] * 200 + [1] * 150, torch.cat([a, b]).numpy())
    assert auroc(a, b) == pytest.approx(ref, abs=1e-12)
    assert auroc(torch.zeros(3), torch.ones(4)) == 1.0


def test_statistics_and_scores_equal_the_formula():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3)).double()
    x, y = torch.randn(300, 5, dtype=torch.float64), torch.randint(0, 3, (300,))
    det = Mahalanobis(batch_size=64).fit(model, (x, y))
    with torch.no_grad():
        f = torch.relu(model[0](x)).numpy()
    mus = np.stack([f[y.numpy() == c].mean(0) for c in range(3)])
    centered = f - mus[y.numpy()]
    cov = centered.T @ centered / len(f)
    np.testing.assert_allclose(det.means[0].numpy(), mus, rtol=1e-10)
    np.testing.assert_allclose(np.linalg.inv(det.precisions[0].numpy()), cov, rtol=1e-6, atol=1e-10)
    xt = torch.randn(20, 5, dtype=torch.float64)
    with torch.no_grad():
        ft = torch.relu(model[0](xt)).numpy()
    prec = np.linalg.pinv(cov)
    ref = np.min([np.einsum("bd,de,be->b", ft - m, prec, ft - m) for m in mus], axis=0)
    snap, xt0 = ModelSnapshot.take(model), xt.clone()
    np.testing.assert_allclose(det.score(model, xt).numpy(), ref, rtol=1e-6)
    snap.assert_unchanged(model)
    assert torch.equal(xt, xt0)


def test_preprocessing_moves_towards_the_closest_class_and_lowers_in_distribution_scores():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2)).double()
    centers = torch.tensor([[2.0, 0.0], [-2.0, 0.0]], dtype=torch.float64)
    y = torch.randint(0, 2, (400,))
    x = centers[y] + 0.3 * torch.randn(400, 2, dtype=torch.float64)
    plain = Mahalanobis().fit(model, (x, y))
    pre = Mahalanobis(epsilon=0.05).fit(model, (x, y))
    # x' = x - eps * sign(grad_x d(x)) evaluated by hand, then d(x')
    xs = x[:50].clone().requires_grad_(True)
    mu, prec = plain.means[0], plain.precisions[0]
    f = torch.tanh(model[0](xs))
    d = ((f[:, None] - mu[None]) @ prec * (f[:, None] - mu[None])).sum(-1).amin(1)
    (g,) = torch.autograd.grad(d.sum(), xs)
    with torch.no_grad():
        f2 = torch.tanh(model[0](x[:50] - 0.05 * g.sign()))
        ref = ((f2[:, None] - mu[None]) @ prec * (f2[:, None] - mu[None])).sum(-1).amin(1)
    after, before = pre.score(model, x[:50]), plain.score(model, x[:50])
    torch.testing.assert_close(after, ref)
    assert float((after < before).double().mean()) >= 0.9 and float(after.mean()) < float(before.mean())


def test_layer_ensemble_with_named_layers():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16, 3))
    x, y = torch.rand(90, 1, 4, 4), torch.randint(0, 3, (90,))
    det = Mahalanobis(layers=["0", "1"]).fit(model, (x, y))
    assert [m.shape for m in det.means] == [(3, 4), (3, 4)]  # conv maps averaged over space
    scores = det.layer_scores(model, x[:10])
    assert scores.shape == (10, 2)
    torch.testing.assert_close(det.score(model, x[:10]), scores.mean(1))
    det.fit_ensemble(model, x[:40], torch.rand(40, 1, 4, 4) * 3)
    assert det.weights.shape == (2,)
    with pytest.raises(ValueError, match="not a submodule"):
        Mahalanobis(layers=["nope"]).fit(model, (x, y))


def test_score_before_fit_is_an_error():
    with pytest.raises(RuntimeError, match="fit"):
        Mahalanobis().score(nn.Linear(2, 2), torch.rand(3, 2))


@pytest.mark.slow
def test_digits_out_of_distribution_and_adversarial_detection():
    """A trained DigitsCNN: uniform noise and upside-down digits are told apart from test digits, and
    so are PGD adversarial digits (AUROC numbers recorded in docs/results/seed-pool.md)."""
    from toolkit_core.catalog import create
    from toolkit_core.data import load_digits
    from toolkit_core.models import digits_model

    model = digits_model()
    xtr, ytr = load_digits(16, "train", seed=0).tensors
    xte, yte = load_digits(16, "test", seed=0).tensors
    det = Mahalanobis(layers=["features.2", "features.5", "relu"]).fit(model, (xtr, ytr))
    normal = det.score(model, xte)
    noise = det.score(model, torch.rand_like(xte))
    flipped = det.score(model, xte.flip(2))
    adv = create("pgd", eps=0.1, steps=10)(model, xte, yte)
    adversarial = det.score(model, adv)
    assert auroc(normal, noise) > 0.99
    assert auroc(normal, flipped) > 0.7
    assert auroc(normal, adversarial) > 0.7
