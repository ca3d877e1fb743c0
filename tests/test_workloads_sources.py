"""[model] and [data] sources: on-disk formats read back exactly, checkpoints, preprocessing, sharding."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest
import torch

from toolkit_core.workloads import (
    CheckpointMismatchError,
    DatasetNotFoundError,
    DataSpec,
    ModelSpec,
    Preprocessed,
    build_model,
    eval_loader,
    input_bounds,
    load_split,
)
from toolkit_core.workloads import synthetic as syn
from toolkit_core.workloads.data import ShardedBatches, num_classes, subset


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    syn.write_cifar10(d, 23, 7, seed=3)
    syn.write_cifar100(d, 11, 5)
    syn.write_mnist(d, 13, 4)
    syn.write_mnist(d, 9, 3, name="FashionMNIST")
    syn.write_svhn(d / "svhn", 6, 4)
    syn.write_imagefolder(d / "folder", per_class=2, classes=3, side=40)
    return d


def test_cifar10_pickles_read_back_pixel_for_pixel(root):
    ds = load_split(DataSpec("cifar10", root=str(root)), "test")
    x, y = syn.images(7, 32, 3, 10, 3 + 5)  # test_batch is the sixth file, seed + 5
    assert len(ds) == 7 and num_classes(ds) == 10
    for i in (0, 6):
        img, label = ds[i]
        assert img.shape == (3, 32, 32) and label == y[i]
        assert torch.equal(img, torch.from_numpy(x[i]).permute(2, 0, 1).float() / 255)
    assert len(load_split(DataSpec("cifar10", root=str(root)), "train")) == 23  # over five batches


@pytest.mark.parametrize("name,train,test,shape", [("cifar100", 11, 5, (3, 32, 32)), ("mnist", 13, 4, (1, 28, 28)),
                                                   ("fashion_mnist", 9, 3, (1, 28, 28)),
                                                   ("svhn", 6, 4, (3, 32, 32))])
def test_formats_sizes_and_range(root, name, train, test, shape):
    r = str(root / "svhn") if name == "svhn" else str(root)
    for split, n in (("train", train), ("test", test)):
        ds = load_split(DataSpec(name, root=r), split)
        img, label = ds[n - 1]
        assert len(ds) == n and img.shape == shape and 0 <= float(img.min()) <= float(img.max()) <= 1
    if name == "mnist":
        x, y = syn.images(4, 28, 1, 10, 1)
        img, label = load_split(DataSpec(name, root=r), "test")[2]
        assert label == y[2] and torch.equal(img[0], torch.from_numpy(x[2, ..., 0]).float() / 255)
    if name == "svhn":  # label 10 on disk is digit 0
        _, y = syn.images(4, 32, 3, 10, 1)
        assert [int(load_split(DataSpec(name, root=r), "test")[i][1]) for i in range(4)] == y.tolist()


def test_imagefolder_resize_crop_and_channels(root):
    ds = load_split(DataSpec("imagefolder", root=str(root / "folder"), resize=36, crop=32), "test")  # val/ alias
    assert len(ds) == 6 and ds[0][0].shape == (3, 32, 32) and [ds[i][1] for i in range(6)] == [0, 0, 1, 1, 2, 2]
    gray = load_split(DataSpec("mnist", root=str(root), channels=3), "test")[0][0]
    assert gray.shape == (3, 28, 28) and torch.equal(gray[0], gray[2])


def test_missing_dataset_says_where_and_how(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"cifar-10-batches-py.*download = true"):
        load_split(DataSpec("cifar10", root=str(tmp_path)), "train")
    with pytest.raises(DatasetNotFoundError, match=r"ImageFolder"):
        load_split(DataSpec("imagefolder", root=str(tmp_path / "none")), "train")
    assert DataSpec("cifar11").check()[0].startswith("data.dataset 'cifar11' is not known")


def test_subsets_first_and_seeded_random():
    base = torch.utils.data.TensorDataset(torch.arange(100))
    assert [int(subset(base, 5, "first")[i][0]) for i in range(5)] == [0, 1, 2, 3, 4]
    a = [int(subset(base, 10, "random", seed=7)[i][0]) for i in range(10)]
    b = [int(subset(base, 10, "random", seed=7)[i][0]) for i in range(10)]
    expected = torch.randperm(100, generator=torch.Generator().manual_seed(7))[:10].sort().values.tolist()
    assert a == b == expected
    assert subset(base, 0) is base and subset(base, 500) is base


@pytest.mark.parametrize("world", [1, 2, 3])
def test_sharded_batches_partition_the_data_in_whole_batches(world):
    n, bs = 23, 4
    shards = [ShardedBatches(n, bs, r, world) for r in range(world)]
    seen = sorted(j for s in shards for j in s.indices())
    assert seen == list(range(n))
    one = list(ShardedBatches(n, bs))
    for s in shards:  # every batch of a rank is a batch of the one-process run
        assert all(b in one for b in s)
    loader = eval_loader(torch.utils.data.TensorDataset(torch.arange(n)), bs, 0, world)
    assert torch.cat([b[0] for b in loader]).tolist() == shards[0].indices()


def test_preprocessed_normalizes_inside_and_declares_bounds():
    torch.manual_seed(0)
    net = torch.nn.Conv2d(3, 2, 3)
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    model = Preprocessed(net, mean, std, 32)
    x = torch.rand(2, 3, 8, 8)
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(model(x), net((x - m) / s))
    low, high = input_bounds(model)
    assert torch.allclose(low, -m / s) and torch.allclose(high, (1 - m) / s)
    assert model.input_range == (0.0, 1.0) and input_bounds(net) is None
    assert torch.equal(Preprocessed(net)(x), net(x))


@pytest.mark.slow
def test_torchvision_resnet18_small_input_and_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    spec = ModelSpec("torchvision:resnet18", num_classes=10, small_input=True, mean=[0.5] * 3, std=[0.25] * 3)
    a = build_model(spec)
    assert a.net.conv1.kernel_size == (3, 3) and isinstance(a.net.maxpool, torch.nn.Identity)
    assert a.net.fc.out_features == 10 and not a.training
    path = tmp_path / "r18.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in a.net.state_dict().items()}}, path)
    torch.manual_seed(1)
    b = build_model(ModelSpec(**{**spec.__dict__, "checkpoint": str(path)}))
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(a(x), b(x))
    assert ModelSpec("torchvision:resnet18", checkpoint=str(path)).label == "resnet18 (r18.pth)"


def test_checkpoint_mismatch_names_the_keys(tmp_path):
    path = tmp_path / "r18.pth"
    net = build_model(ModelSpec("torchvision:resnet18", num_classes=10)).net
    state = net.state_dict()
    state.pop("fc.bias")
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, path)
    with pytest.raises(CheckpointMismatchError, match=r"missing keys \(1\): fc.bias; unexpected keys \(1\): "
                                                      r"extra.weight"):
        build_model(ModelSpec("torchvision:resnet18", num_classes=10, checkpoint=str(path)))
    torch.save(build_model(ModelSpec("torchvision:resnet18", num_classes=5)).net.state_dict(), path)
    with pytest.raises(CheckpointMismatchError, match=r"fc.weight: checkpoint \(5, 512\) vs model \(10, 512\)"):
        build_model(ModelSpec("torchvision:resnet18", num_classes=10, checkpoint=str(path)))


def test_checkpoint_is_loaded_with_weights_only(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "obj": np.random.default_rng(0)}, path)
    with pytest.raises(Exception, match="(?i)weights.only|unsupported global"):
        build_model(ModelSpec("torchvision:resnet18", num_classes=10, checkpoint=str(path)))


def test_factory_from_the_users_own_module(tmp_path, monkeypatch):
    (tmp_path / "mynets.py").write_text(textwrap.dedent("""
        import torch
        def tiny(num_classes=10, width=4):
            return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, num_classes))
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    model = build_model(ModelSpec("mynets:tiny", num_classes=7))
    assert model(torch.rand(2, 3, 8, 8)).shape == (2, 7)
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        build_model(ModelSpec("mynets:nope"))
    with pytest.raises(ValueError, match="torchvision has no classification model 'resnet19'"):
        build_model(ModelSpec("torchvision:resnet19"))
    sys.modules.pop("mynets", None)


def test_spec_checks():
    problems = ModelSpec("resnet18", num_classes=1, mean=[0.5], std=None, checkpoint="/nonexistent.pth").check()
    assert len(problems) == 4 and "torchvision:<name>" in problems[0]


@pytest.mark.parametrize("params", [{}, {"composite": "epsilon_plus_flat"}])
def test_attribution_folds_the_preprocessing_into_the_first_layer(params):
    """LRP of Preprocessed(net, mean, std) equals LRP of net with the normalization folded by hand
    into its first convolution (W' = W / std, b' = b - sum W mean / std): relevance lives on pixels."""
    from toolkit_core import catalog

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(144, 5))
    mean, std = torch.tensor([0.5, 0.4, 0.3]), torch.tensor([0.2, 0.25, 0.3])
    wrapped = Preprocessed(net, mean.tolist(), std.tolist()).eval()
    folded = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(144, 5))
    folded.load_state_dict(net.state_dict())
    with torch.no_grad():
        w = net[0].weight
        folded[0].weight.copy_(w / std.view(1, 3, 1, 1))
        folded[0].bias.copy_(net[0].bias - (w * (mean / std).view(1, 3, 1, 1)).sum(dim=(1, 2, 3)))
    folded.input_range = (0.0, 1.0)
    x, y = torch.rand(3, 3, 8, 8), torch.tensor([0, 1, 4])
    assert torch.allclose(wrapped(x), folded(x), atol=1e-5)
    lrp = catalog.create("lrp", **params)
    assert torch.allclose(lrp(wrapped, x, y), lrp(folded, x, y), atol=1e-5)
