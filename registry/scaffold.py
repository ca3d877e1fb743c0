"""``torchtrust new-plugin``: write a plugin package that installs, is discovered, and passes its test.

Each kind gets a small but real method and a test that asserts a number, so the generated package is
a working starting point rather than a stub.
"""

from __future__ import annotations

import re
from pathlib import Path

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

_HOOKS = {
    "attribution": "torchtrust_register_attribution_rules",
    "attack": "torchtrust_register_attacks",
    "defense": "torchtrust_register_defenses",
    "prior": "torchtrust_register_priors",
    "metric": "torchtrust_register_metrics",
}

_PYPROJECT = '''[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "torchtrust-{dist}"
version = "0.1.0"
description = "torchtrust plugin: {name} ({kind})"
requires-python = ">=3.10"
dependencies = ["torchtrust>=0.1"]

[project.entry-points."torchtrust.plugins"]
{name} = "torchtrust_{name}"

[tool.setuptools.packages.find]
where = ["src"]

[tool.pytest.ini_options]
testpaths = ["tests"]
'''

_INIT = '''"""torchtrust plugin providing the {kind} method '{name}'."""

from toolkit_core import hookimpl

from .method import {cls}

__all__ = ["{cls}"]


@hookimpl
def {hook}(register):
    register({cls})
'''

_METHODS = {
    "attribution": '''"""Input x gradient, written as a plugin (edit to implement your own rule)."""

import torch

from toolkit_core.attribution import logits_of, resolve_target
from toolkit_core.methods import AttributionMethod


class {cls}(AttributionMethod):
    """R(x) = x * d f_t(x) / d x  (Shrikumar et al. 2016)."""

    name = "{name}"
    summary = "Input times gradient of the target logit (plugin template)."
    citation = "arXiv:1605.01713"

    def __init__(self, scale: float = 1.0):
        self.scale = scale

    def attribute(self, model, x, target):
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = logits_of(model, x)
            t = resolve_target(target, logits)
            (grad,) = torch.autograd.grad(logits.gather(1, t[:, None]).sum(), x)
        return self.scale * x.detach() * grad
''',
    "attack": '''"""Uniform noise in the L-inf ball, written as a plugin (edit to implement your own attack)."""

import torch

from toolkit_core.methods import Attack


class {cls}(Attack):
    """x' = clip(x + U[-eps, eps], 0, 1)."""

    name = "{name}"
    summary = "Uniform random noise inside the L-inf eps-ball (plugin template)."
    citation = "arXiv:1706.06083"

    def __init__(self, eps: float = 8 / 255, seed: int = 0):
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {{eps}}")
        self.eps, self.seed = eps, seed

    def perturb(self, model, x, y):
        g = torch.Generator(device=x.device).manual_seed(self.seed)
        noise = torch.rand(x.shape, generator=g, device=x.device) * 2 - 1
        return (x + self.eps * noise).clamp(0, 1)
''',
    "defense": '''"""Plain cross-entropy training, written as a plugin (edit to implement your own defense)."""

import torch.nn.functional as F

from toolkit_core.methods import Defense


class {cls}(Defense):
    """loss = CE(f(x), y)."""

    name = "{name}"
    summary = "Cross-entropy on clean inputs (plugin template)."
    citation = "doi:10.1038/nature14539"

    def __init__(self, label_smoothing: float = 0.0):
        self.label_smoothing = label_smoothing

    def loss(self, model, x, y):
        loss = F.cross_entropy(model(x), y, label_smoothing=self.label_smoothing)
        return loss, {{"ce": float(loss)}}
''',
    "prior": '''"""A uniform prior, written as a plugin (edit to implement your own prior)."""

import torch

from toolkit_core.methods import Prior


class {cls}(Prior):
    """z ~ U[-1, 1]^dim; every training point gets a random code."""

    name = "{name}"
    summary = "Uniform prior on [-1, 1]^dim (plugin template)."
    citation = "arXiv:1406.2661"

    def __init__(self, dim: int = 2, seed: int = 0):
        self.dim, self.seed = dim, seed
        self.codes = None

    def fit(self, X):
        g = torch.Generator().manual_seed(self.seed)
        self.codes = torch.rand(len(X), self.dim, generator=g) * 2 - 1
        return self

    def sample(self, n):
        return torch.rand(n, self.dim) * 2 - 1
''',
    "metric": '''"""Top-1 accuracy, written as a plugin (edit to implement your own metric)."""

import torch

from toolkit_core.data import iterate_batches
from toolkit_core.methods import Metric
from toolkit_core.modelstate import preserved


class {cls}(Metric):
    """accuracy = mean 1[argmax f(x) = y], streamed over the data."""

    name = "{name}"
    summary = "Top-1 accuracy (plugin template)."
    citation = "doi:10.1109/5.726791"
    higher_is_better = {{"accuracy": True}}

    def compute(self, model, data):
        correct = total = 0
        with preserved(model, mode=False), torch.no_grad():
            for x, y in iterate_batches(data):
                correct += int((model(x).argmax(1) == y).sum())
                total += len(y)
        if total == 0:
            raise ValueError("data is empty")
        return {{"accuracy": correct / total}}
''',
}

_TEST_COMMON = '''import torch

import toolkit_core
from toolkit_core.testing import check_method


def test_discovered():
    assert "{name}" in toolkit_core.list_methods("{kind}")
    assert toolkit_core.get_info("{name}").provider == "torchtrust-{dist}"


def test_contract():
    check_method("{name}")
'''

_TESTS = {
    "attribution": '''

def test_sums_to_logit_on_bias_free_linear_model():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3, bias=False))
    x = torch.rand(4, 1, 3, 4)
    r = toolkit_core.attribute(model, x, target=1, method="{name}")
    torch.testing.assert_close(r.flatten(1).sum(1), model(x)[:, 1].detach())
''',
    "attack": '''

def test_stays_in_ball():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    x, y = torch.rand(8, 1, 4, 4), torch.randint(0, 3, (8,))
    x_adv = toolkit_core.create("{name}", eps=0.1)(model, x, y)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6
    assert 0 <= x_adv.min() and x_adv.max() <= 1
''',
    "defense": '''

def test_equals_cross_entropy():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    x, y = torch.rand(8, 1, 4, 4), torch.randint(0, 3, (8,))
    loss, _ = toolkit_core.create("{name}").loss(model, x, y)
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(model(x), y))
''',
    "prior": '''

def test_samples_in_range():
    prior = toolkit_core.create("{name}", dim=3).fit(torch.randn(50, 2))
    z = prior.sample(1000)
    assert z.shape == (1000, 3) and z.abs().max() <= 1
''',
    "metric": '''

class _Constant(torch.nn.Module):
    def forward(self, x):
        return torch.tensor([[1.0, 0.0]]).expand(len(x), 2)


def test_accuracy_of_constant_model():
    x, y = torch.rand(4, 3), torch.tensor([0, 0, 1, 1])
    assert toolkit_core.create("{name}").compute(_Constant(), (x, y)) == {{"accuracy": 0.5}}
''',
}


def write_plugin(name: str, kind: str, directory: str | None = None) -> Path:
    """Write the package for method ``name`` of ``kind`` into ``directory``; return its path."""
    if not _NAME.match(name):
        raise ValueError(f"plugin name must be a lowercase identifier like 'my_metric', got {name!r}")
    if kind not in _HOOKS:
        raise ValueError(f"unknown kind {kind!r}; choose one of {', '.join(_HOOKS)}")
    root = Path(directory or f"torchtrust-{name.replace('_', '-')}")
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} exists and is not empty; choose another --dir")
    fields = {
        "name": name,
        "kind": kind,
        "dist": name.replace("_", "-"),
        "cls": "".join(part.capitalize() for part in name.split("_")),
        "hook": _HOOKS[kind],
    }
    pkg = root / "src" / f"torchtrust_{name}"
    pkg.mkdir(parents=True, exist_ok=True)
    (root / "tests").mkdir(exist_ok=True)
    (root / "pyproject.toml").write_text(_PYPROJECT.format(**fields))
    (root / "README.md").write_text(
        f"# torchtrust-{fields['dist']}\n\nA torchtrust {kind} plugin providing `{name}`.\n\n"
        f"    pip install -e .\n    torchtrust info {name}\n    pytest tests\n"
    )
    (pkg / "__init__.py").write_text(_INIT.format(**fields))
    (pkg / "method.py").write_text(_METHODS[kind].format(**fields))
    (root / "tests" / f"test_{name}.py").write_text(_TEST_COMMON.format(**fields) + _TESTS[kind].format(**fields))
    return root
