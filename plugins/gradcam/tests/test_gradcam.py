import pytest
import torch
import torch.nn.functional as F
from torch import nn

import toolkit_core as tt
from toolkit_core.feature_maps import find_layer, spatial_layers
from toolkit_core.testing import ModelSnapshot, check_method, contract_model


def two_layer_cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(4, 5, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 3),
    ).eval()


def hand_maps(model, x, c, relu=True):
    """Grad-CAM and Grad-CAM++ from the weights, without autograd (the head is linear after a mean)."""
    a = F.relu(model[2](F.relu(model[0](x))))  # (B, 5, 4, 4)
    hw = a.shape[2] * a.shape[3]
    g = (model[6].weight[c] / hw)[:, :, None, None].expand_as(a)  # dy_c / dA_kij = W_ck / (H W)
    w_cam = g.mean((2, 3))
    alpha = g**2 / (2 * g**2 + a.sum((2, 3), keepdim=True) * g**3 + 1e-6)
    alpha = torch.where(g != 0, alpha, 0.0)
    w_pp = (alpha * g.clamp_min(0)).sum((2, 3))
    out = []
    for w in (w_cam, w_pp):
        cam = (w[:, :, None, None] * a).sum(1, keepdim=True)
        cam = F.relu(cam) if relu else cam
        out.append(F.interpolate(cam, size=x.shape[2:], mode="bilinear", align_corners=False).expand_as(x))
    return out


@pytest.mark.parametrize("name", ["gradcam", "gradcam_pp"])
def test_contract(name):
    check_method(name)


def test_gradcam_equals_the_hand_formula_on_a_two_layer_cnn():
    model = two_layer_cnn()
    x = torch.rand(3, 2, 8, 8)
    c = torch.tensor([0, 2, 1])
    cam, pp = hand_maps(model, x, c)
    with torch.no_grad():
        assert cam.abs().sum() > 0 and pp.abs().sum() > 0
        got = tt.attribute(model, x, c, method="gradcam")
        got_pp = tt.attribute(model, x, c, method="gradcam_pp")
    torch.testing.assert_close(got, cam, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_pp, pp, rtol=1e-5, atol=1e-6)
    # the layer by name gives the same map; an earlier layer gives another one
    torch.testing.assert_close(tt.attribute(model, x, c, method="gradcam", layer="3"), got)
    assert not torch.allclose(tt.attribute(model, x, c, method="gradcam", layer="1"), got)


def test_signed_map_keeps_negative_values():
    model = two_layer_cnn(1)
    x = torch.rand(4, 2, 8, 8)
    c = torch.tensor([1, 1, 0, 2])
    signed = tt.attribute(model, x, c, method="gradcam", relu=False)
    assert (signed < 0).any()
    torch.testing.assert_close(signed, hand_maps(model, x, c, relu=False)[0], rtol=1e-5, atol=1e-6)
    assert tt.attribute(model, x, c, method="gradcam").min() >= 0


def test_automatic_layer_is_the_last_spatial_feature_map():
    model = contract_model()
    x = torch.rand(2, 1, 16, 16)
    assert spatial_layers(model, x)[-1] == "features.5"
    assert find_layer(model, x)[0] == "features.5"
    tv = pytest.importorskip("torchvision")
    resnet = tv.models.resnet18(weights=None, num_classes=4).eval()
    assert find_layer(resnet, torch.rand(1, 3, 64, 64))[0] == "layer4.1.relu"  # called twice, last call wins


def test_errors_name_the_problem_and_the_model_is_unchanged():
    model = contract_model()
    snap = ModelSnapshot.take(model)
    x = torch.rand(2, 1, 16, 16)
    x0 = x.clone()
    with pytest.raises(ValueError, match="no sub-module named 'nope'"):
        tt.attribute(model, x, 0, method="gradcam", layer="nope")
    with pytest.raises(ValueError, match="not a spatial feature map"):
        tt.attribute(model, x, 0, method="gradcam", layer="fc")
    snap.assert_unchanged(model)
    assert all(m.inplace for m in model.modules() if hasattr(m, "inplace"))
    tt.attribute(model, x, 0, method="gradcam_pp")
    assert torch.equal(x, x0)


def test_matches_pytorch_grad_cam():
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = two_layer_cnn(2)
    x = torch.rand(4, 2, 8, 8)
    targets = [0, 1, 2, 1]
    for ours, theirs in (("gradcam", pgc.GradCAM), ("gradcam_pp", pgc.GradCAMPlusPlus)):
        with theirs(model=model, target_layers=[model[3]]) as cam:
            ref = torch.from_numpy(cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in targets]))
        got = tt.attribute(model, x, targets, method=ours)[:, 0]
        lo = got.flatten(1).min(1).values[:, None, None]
        hi = got.flatten(1).max(1).values[:, None, None]
        got = (got - lo) / (hi - lo + 1e-7)
        assert (got - ref).abs().max() < 1e-3, ours
