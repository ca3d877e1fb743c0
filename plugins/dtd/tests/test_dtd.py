import torch

import toolkit_core as tt
from toolkit_core.testing import check_method, contract_model


def test_contract():
    check_method("dtd")
    check_method("dtd", low=0.0, high=1.0)


def test_dtd_conserves_and_equals_lrp_zplus_zbox_composite():
    model = contract_model(bias=False)
    x = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    r = tt.attribute(model, x, None, method="dtd", low=0.0, high=1.0, epsilon=1e-9)
    same = tt.attribute(model, x, None, method="lrp", epsilon=1e-9, low=0.0, high=1.0,
                        composite={"first": "lrp_zbox", "conv": "lrp_zplus", "linear": "lrp_zplus"})
    assert torch.allclose(r, same, atol=1e-7)
    with torch.no_grad():
        logits = model(x)
    top = logits.max(1).values
    # z+ and zB are conservative whenever the positive pre-activations do not all vanish
    assert torch.allclose(r.flatten(1).sum(1), top, rtol=1e-3)
