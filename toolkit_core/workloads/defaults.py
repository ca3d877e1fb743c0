"""Attack budgets per dataset, in the [0, 1] pixel scale (normalization lives inside the model).

An attack class may declare its own per-dataset parameters as a class attribute
``dataset_params = {"cifar10": {"eps": 8 / 255, "alpha": 2 / 255}, ...}``; otherwise the common
L-inf budgets of the robustness literature below apply (RobustBench: CIFAR-10/100 8/255, ImageNet
4/255; MNIST 0.3 as in Madry et al. 2018, arXiv:1706.06083), with the step ``alpha = eps / 4``
for attacks that take one.
"""

from __future__ import annotations

from typing import Any

#: dataset -> L-inf eps in [0, 1] pixels
EPS: dict[str, float] = {"digits": 0.1, "cifar10": 8 / 255, "cifar100": 8 / 255, "svhn": 8 / 255, "mnist": 0.3,
                         "fashion_mnist": 0.1, "imagefolder": 4 / 255, "imagenet": 4 / 255}


def attack_params(name: str, dataset: str) -> dict[str, Any]:
    """Parameters of attack ``name`` suited to ``dataset``: the class's ``dataset_params``, else ``EPS``."""
    from ..catalog import _manager

    info = _manager().get_info(name, "attack")
    own = getattr(info.cls, "dataset_params", None)
    if isinstance(own, dict) and dataset in own:
        return dict(own[dataset])
    names = {p.name for p in info.parameters}
    out: dict[str, Any] = {}
    if "eps" in names and dataset in EPS:
        out["eps"] = EPS[dataset]
        if "alpha" in names:
            out["alpha"] = EPS[dataset] / 4
    return out
