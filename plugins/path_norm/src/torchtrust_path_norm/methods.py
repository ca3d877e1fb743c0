"""Path-norm (Neyshabur et al. 2015; as measured by Jiang et al. 2019)."""

from __future__ import annotations

import torch
from torch.func import functional_call

from toolkit_core.data import iterate_batches
from toolkit_core.features import Directions, device_of, require_data
from toolkit_core.methods import Metric
from toolkit_core.modelstate import preserved


def path_norm(model: torch.nn.Module, input_shape: tuple[int, ...]) -> torch.Tensor:
    """``f_{w^2}(1)``: the network with every parameter squared, applied to an all-ones input.

    For a ReLU network all squared weights and biases are non-negative, so every unit is active and
    the output sums ``prod_l w_l^2`` over all input-output paths (plus the bias paths). Returns the
    ``(C,)`` output; the path-norm is its sum. Eval mode; the model is not mutated.
    """
    params = {k: p.detach() ** 2 for k, p in model.named_parameters()}
    x = torch.ones((1, *input_shape), device=device_of(model))
    with preserved(model, mode=False), torch.no_grad():
        return functional_call(model, params, (x,))[0].double()


class PathNorm(Metric):
    """Path-norm ``mu = sum_i f_{w^2}(1)[i]`` (Jiang et al. 2019, arXiv:1912.02178, eq. 44).

    Every parameter (weights and biases) is squared and the network is applied to an input of ones
    shaped like one sample of ``data`` (only the shape is read). Exact path-norm for ReLU networks of
    linear/convolutional layers; for max-pooling or batch norm it is the quantity Jiang et al. compute,
    not a path sum. ``path_norm/out_<k>`` are the per-output terms.
    """

    name = "path_norm"
    summary = "Path-norm: the network with squared parameters applied to an all-ones input, summed."
    citation = "arXiv:1912.02178"
    higher_is_better = Directions(path_norm=False, log_path_norm=False)
    definitions = {
        "path_norm": "sum of the outputs of the network with squared weights applied to an all-ones input",
        "log_path_norm": "natural log of path_norm",
    }

    def compute(self, model, data) -> dict[str, float]:
        first = next(iter(iterate_batches(data)), None)
        require_data(0 if first is None or len(first[0]) == 0 else 1, self.name)
        out = path_norm(model, tuple(first[0].shape[1:]))
        total = float(out.sum())
        res = {"path_norm": total, "log_path_norm": float(torch.log(out.sum().clamp_min(1e-300)))}
        for k, v in enumerate(out.tolist()):
            res[f"path_norm/out_{k}"] = v
        return res
