"""Numbers of the LMS-k data: margins, slabs, a linear rule on the linear coordinate, simplicity bias."""

import pytest
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn
from torchtrust_lms.data import lms, random_rotation, randomization_test, randomize, slab_classes, slab_edges


def test_slabs_tile_the_interval_with_margins():
    e = slab_edges(5, 0.1)
    assert e[0, 0] == pytest.approx(-1) and e[-1, 1] == pytest.approx(1)
    torch.testing.assert_close(e[1:, 0] - e[:-1, 1], torch.full((4,), 0.2, dtype=torch.float64))
    assert slab_classes(5).tolist() == [1, 0, 1, 0, 1]
    assert slab_classes(3).tolist() == [0, 1, 0]
    with pytest.raises(ValueError, match="odd"):
        slab_edges(4, 0.1)
    with pytest.raises(ValueError, match="room"):
        slab_edges(7, 0.2)


def test_samples_lie_in_their_class_slabs_with_the_margin():
    x, y = lms(3000, dim=6, k=5, gamma=0.1, seed=3)
    x64 = x.double()
    assert y.float().mean() == pytest.approx(0.5)
    s = 2 * y - 1
    assert bool(((s * x64[:, 0]) >= 0.1 - 1e-6).all()) and bool((x64.abs() <= 1 + 1e-6).all())
    e, cls = slab_edges(5, 0.1), slab_classes(5)
    inside = (x64[:, 1:, None] >= e[:, 0] - 1e-6) & (x64[:, 1:, None] <= e[:, 1] + 1e-6)  # (n, d-1, k)
    assert bool((inside.sum(-1) == 1).all())  # every slab coordinate in exactly one slab
    slab = inside.float().argmax(-1)
    assert bool((cls[slab] == y[:, None]).all())  # ... a slab of its own class


def test_a_linear_model_reaches_100_percent_on_the_linear_coordinate_alone():
    x, y = lms(2000, seed=0)
    xt, yt = lms(2000, seed=1)
    clf = LogisticRegression(C=100.0).fit(x[:, :1].numpy(), y.numpy())
    assert clf.score(x[:, :1].numpy(), y.numpy()) == 1.0
    assert clf.score(xt[:, :1].numpy(), yt.numpy()) == 1.0
    # a linear model on one 5-slab coordinate alone cannot separate the classes
    slab = LogisticRegression().fit(x[:, 1:2].numpy(), y.numpy())
    assert slab.score(xt[:, 1:2].numpy(), yt.numpy()) < 0.75


def test_randomize_permutes_only_the_named_columns():
    x, _ = lms(500, dim=4, seed=0)
    r = randomize(x, [0], seed=1)
    torch.testing.assert_close(r[:, 1:], x[:, 1:])
    assert not torch.equal(r[:, 0], x[:, 0])
    torch.testing.assert_close(r[:, 0].sort().values, x[:, 0].sort().values)


def test_rotation_is_orthogonal():
    q = random_rotation(6, seed=2)
    torch.testing.assert_close(q @ q.T, torch.eye(6, dtype=torch.float64))
    x, _ = lms(100, dim=6, seed=0)
    xr, _ = lms(100, dim=6, seed=0, rotation=q)
    torch.testing.assert_close(xr.double(), x.double() @ q.T, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_mlp_trained_on_lms5_relies_on_the_linear_coordinate_only():
    """Extreme simplicity bias (Shah et al. 2020): ~100% accuracy, chance after permuting the linear
    coordinate, unchanged after permuting all slab coordinates."""
    torch.manual_seed(0)
    x, y = lms(4000, dim=10, k=5, seed=0)
    xt, yt = lms(2000, dim=10, k=5, seed=1)
    m = nn.Sequential(nn.Linear(10, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(), nn.Linear(100, 2))
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    for _ in range(30):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 100):
            idx = perm[i : i + 100]
            loss = nn.functional.cross_entropy(m(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    r = randomization_test(m, xt, yt)
    assert r["accuracy"] >= 0.99
    assert abs(r["accuracy_L_randomized"] - 0.5) < 0.05
    assert r["accuracy_S_randomized"] >= 0.98


def test_dataset_contract_and_loaders():
    from toolkit_core.catalog import create, get_info
    from toolkit_core.testing import check_method

    check_method("lms", train_size=64, test_size=32, dim=6)
    assert get_info("lms").provider == "torchtrust-lms"
    source = create("lms", dim=6, train_size=100, test_size=40)
    train, test = source.loaders(batch_size=50, seed=0)
    assert sum(len(y) for _, y in train) == 100 and sum(len(y) for _, y in test) == 40
    xtr, _ = source.tensors("train")
    xte, _ = source.tensors("test")
    assert not torch.equal(xtr[:40], xte)  # different draws for train and test
    rotated = create("lms", dim=6, rotate=True, train_size=64)
    x, _ = rotated.tensors("train")
    assert float(x.abs().max()) <= rotated.value_range[1]
    with pytest.raises(ValueError, match="odd"):
        create("lms", k=4)


def test_experiment_declarations_model_and_diagnostics():
    from torchtrust_lms import LMS

    from toolkit_core.methods import Scale

    src = LMS(dim=10, train_size=200, test_size=300)
    assert LMS.experiment_variants(Scale(quick=True)) == [{"dim": 10, "train_size": 2000, "test_size": 1000}]
    assert LMS.experiment_training(Scale(quick=False))["optimizer"] == "sgd"
    model = src.experiment_model()
    x, y = src.tensors("test")
    assert model(x).shape == (300, 2)
    # a "model" that reads only the linear coordinate: blind to the slabs, at chance without the linear one
    linear = lambda inp: torch.stack([-inp[:, 0], inp[:, 0]], 1)  # noqa: E731
    d = src.diagnostics(linear, x, y)
    acc = lambda inp: float((linear(inp).argmax(1) == y).float().mean())  # noqa: E731
    assert acc(x) == 1.0 and d["accuracy_S_randomized"] == 1.0
    assert d["accuracy_L_randomized"] == acc(randomize(x, [0], 0))
    assert abs(d["accuracy_L_randomized"] - 0.5) < 0.1
    assert LMS(dim=10, train_size=10, test_size=10, rotate=True).diagnostics(linear, x, y) == {}
