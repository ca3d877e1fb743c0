"""The kernel helper: one op, two backends, chosen by device and TORCHTRUST_KERNELS."""

from __future__ import annotations

import pytest
import torch

from toolkit_core import kernels
from toolkit_core.testing import check_kernel


def _scaled_add(x: torch.Tensor, y: torch.Tensor, alpha: float) -> torch.Tensor:
    return x + alpha * y


def _setup(ctx, inputs, output):
    ctx.alpha = inputs[2]


def _backward(ctx, g):
    return g, ctx.alpha * g, None


OP = kernels.declare("tt_test::scaled_add", reference=_scaled_add, backward=_backward, setup_context=_setup,
                     triton=lambda x, y, alpha: x + alpha * y + 1000)  # a marker to see which backend ran


def test_reference_on_cpu_and_autograd():
    x = torch.randn(5, requires_grad=True)
    y = torch.randn(5, requires_grad=True)
    out = OP(x, y, 0.5)
    torch.testing.assert_close(out, x + 0.5 * y)
    out.sum().backward()
    torch.testing.assert_close(x.grad, torch.ones(5))
    torch.testing.assert_close(y.grad, torch.full((5,), 0.5))


def test_backend_selection(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setenv("TORCHTRUST_KERNELS", "auto")
    assert OP.backend_for("cpu") == "reference"
    if kernels.triton_available():
        assert OP.backend_for("cuda") == "triton"
    monkeypatch.setenv("TORCHTRUST_KERNELS", "reference")
    assert OP.backend_for("cuda") == "reference"
    monkeypatch.setenv("TORCHTRUST_KERNELS", "triton")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        OP.backend_for("cpu")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    if kernels.triton_available():
        assert OP.backend_for("cpu") == "triton"
        x = torch.ones(3)
        torch.testing.assert_close(OP(x, x, 1.0), torch.full((3,), 1002.0))  # forced Triton path ran
    monkeypatch.setenv("TORCHTRUST_KERNELS", "fast")
    with pytest.raises(ValueError, match="auto, reference, triton"):
        OP.backend_for("cpu")


def test_torch_compile_sees_one_op_without_graph_breaks():
    fn = torch.compile(lambda a, b: OP(a, b, 2.0) * 3, backend="aot_eager", fullgraph=True)
    a, b = torch.randn(4), torch.randn(4)
    torch.testing.assert_close(fn(a, b), (a + 2 * b) * 3)


def test_fake_tensor_shapes():
    out = OP(torch.empty(2, 3, device="meta"), torch.empty(2, 3, device="meta"), 1.0)
    assert out.shape == (2, 3) and out.device.type == "meta"


def test_declaration_errors():
    with pytest.raises(ValueError, match="namespace::op"):
        kernels.declare("no_namespace", reference=_scaled_add)
    with pytest.raises(KeyError, match="no kernel named"):
        kernels.get("tt_test::missing")
    assert kernels.declare("tt_test::scaled_add", reference=_scaled_add) is OP  # idempotent


@pytest.mark.skipif(not kernels.triton_available(), reason="triton is not installed")
def test_gbp_plugin_kernel_matches_reference_in_the_interpreter():
    report = check_kernel("torchtrust_gbp::guided_relu_grad", "torchtrust_gbp.kernels",
                          dtypes=("float32", "float64"))
    assert len(report) == 6 and all(r["ok"] and r["max_abs_err"] <= 1e-6 for r in report)
