import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchtrust_eigencam import first_component_projection

import toolkit_core as tt
from toolkit_core.testing import ModelSnapshot, check_method, contract_model


def cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(),
        nn.Conv2d(6, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    ).eval()


def svd_reference(a, center=True):
    """First principal component, one sample at a time, by torch.linalg.svd directly."""
    out = []
    for ai in a.double():
        m = ai.reshape(ai.shape[0], -1).T  # (positions, channels)
        if center:
            m = m - m.mean(0)
        _, _, vh = torch.linalg.svd(m, full_matrices=False)
        v = vh[0] if vh[0].sum() >= 0 else -vh[0]  # documented sign convention
        out.append((m @ v).reshape(1, *ai.shape[1:]))
    return torch.stack(out)


def test_contract():
    check_method("eigencam")
    check_method("eigencam", solver="power")


@pytest.mark.parametrize("center", [True, False])
def test_projection_equals_first_principal_component_by_svd(center):
    a = torch.relu(torch.randn(5, 7, 6, 4, dtype=torch.float64))
    ref = svd_reference(a, center)
    torch.testing.assert_close(first_component_projection(a, center=center), ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(first_component_projection(a, center=center, solver="power", iters=2000, tol=1e-14),
                               ref, rtol=1e-8, atol=1e-8)
    # sign convention: the map correlates non-negatively with the channel-summed activation
    m = a.reshape(5, 7, -1)
    s = m.sum(1) - (m.sum(1).mean(1, keepdim=True) if center else 0)
    assert ((ref.reshape(5, -1) * s).sum(1) >= -1e-12).all()


def test_eigencam_map_on_a_cnn_equals_the_svd_reference():
    model = cnn()
    x = torch.rand(3, 3, 8, 8)
    a = F.relu(model[2](F.relu(model[0](x)))).detach()
    ref = F.interpolate(svd_reference(a).float().clamp_min(0), size=(8, 8), mode="bilinear",
                        align_corners=False).expand_as(x)
    got = tt.attribute(model, x, None, method="eigencam")
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
    # class-agnostic: every target gives the same map
    torch.testing.assert_close(tt.attribute(model, x, 2, method="eigencam"), got)
    signed = tt.attribute(model, x, None, method="eigencam", relu=False)
    assert (signed < 0).any() and signed.max() > 0


def test_model_and_input_unchanged_and_bad_target_raises():
    model = contract_model()
    snap = ModelSnapshot.take(model)
    x = torch.rand(2, 1, 16, 16)
    x0 = x.clone()
    tt.attribute(model, x, None, method="eigencam")
    with pytest.raises(ValueError, match="target values"):
        tt.attribute(model, x, 10, method="eigencam")
    snap.assert_unchanged(model)
    assert torch.equal(x, x0)


def test_matches_pytorch_grad_cam_projection_up_to_its_arbitrary_sign():
    pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    a = torch.relu(torch.randn(4, 8, 5, 5))
    theirs = torch.from_numpy(get_2d_projection(a.numpy().copy()))
    ours = first_component_projection(a)[:, 0]
    err = torch.minimum((ours - theirs).flatten(1).norm(dim=1), (ours + theirs).flatten(1).norm(dim=1))
    assert (err / theirs.flatten(1).norm(dim=1)).max() < 1e-5
