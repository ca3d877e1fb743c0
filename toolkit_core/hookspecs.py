"""The hook specifications: the one contract between torchtrust and its plugins.

A plugin is a module named by an entry point in the group ``torchtrust.plugins``. It implements one or
more of the hooks below with ``@hookimpl``. Each hook receives a ``register`` callback; calling
``register(MethodClass)`` adds a method of that hook's kind to the catalog. The registry records
which distribution (and version) provided each method, validates the class, and isolates failures:
if any hook of a plugin raises, or registers something invalid, none of that plugin's methods are
kept and the plugin is reported as ``failed`` by ``torchtrust plugins`` and ``torchtrust doctor``.

Contract common to every hook:

* ``register`` takes a class, not an instance. The class must subclass the base class of the hook's
  kind (see :mod:`toolkit_core.methods`) and define ``name`` (lowercase, ``[a-z][a-z0-9_]*``, unique
  across all installed plugins), ``summary`` (one line) and ``citation`` (arXiv id, DOI or URL).
* Parameters are the keyword arguments of ``__init__``, with type hints and defaults; they are
  introspected into :class:`toolkit_core.methods.MethodInfo` and validated when a user creates the
  method with :func:`toolkit_core.create`.
* A hook must be cheap and free of side effects: it runs whenever the catalog is built (``torchtrust
  list`` runs every hook). Do heavy work (compiling kernels, loading data) lazily inside the method.
* Return value is ignored.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

from .kinds import KIND_NAMES
from .kinds import KINDS as _KIND_TABLE

PROJECT = "torchtrust"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[[type], None]


@hookspec
def torchtrust_register_attribution_rules(register: Register) -> None:
    """Register attribution methods (kind ``attribution``).

    Classes subclass :class:`toolkit_core.methods.AttributionMethod` and implement
    ``attribute(model, x, target) -> Tensor`` returning a map of the same shape as ``x``, leaving
    the model exactly as it was (weights, ``requires_grad`` flags, train/eval mode, hooks), also when
    they raise.

    Example::

        from toolkit_core import hookimpl
        from toolkit_core.methods import AttributionMethod

        class Saliency(AttributionMethod):
            name = "saliency"
            summary = "Absolute input gradient of the target logit."
            citation = "arXiv:1312.6034"

            def attribute(self, model, x, target):
                x = x.detach().requires_grad_(True)
                logit = model(x).gather(1, target[:, None]).sum()
                return torch.autograd.grad(logit, x)[0].abs()

        @hookimpl
        def torchtrust_register_attribution_rules(register):
            register(Saliency)
    """


@hookspec
def torchtrust_register_attacks(register: Register) -> None:
    """Register adversarial attacks (kind ``attack``).

    Classes subclass :class:`toolkit_core.methods.Attack` and implement
    ``perturb(model, x, y) -> x_adv``: ``x`` in ``[0, 1]``, ``y`` class indices, the result the same
    shape as ``x``, inside ``[0, 1]`` and inside the attack's threat model. The base class validates
    inputs, puts the model in eval mode, freezes its parameters and restores both afterwards; calling
    the object (``attack(model, x, y)``) runs all of that.

    Example::

        class Noise(Attack):
            name = "uniform_noise"
            summary = "Uniform noise in the L-inf ball (a sanity baseline)."
            citation = "arXiv:1706.06083"

            def __init__(self, eps: float = 8 / 255):
                self.eps = eps

            def perturb(self, model, x, y):
                return (x + torch.empty_like(x).uniform_(-self.eps, self.eps)).clamp(0, 1)

        @hookimpl
        def torchtrust_register_attacks(register):
            register(Noise)
    """


@hookspec
def torchtrust_register_defenses(register: Register) -> None:
    """Register adversarial-training defenses (kind ``defense``).

    Classes subclass :class:`toolkit_core.methods.Defense` and implement
    ``loss(model, x, y) -> (loss, logs)``: the scalar training loss for one batch and a dict of
    floats to show in the progress bar. :func:`toolkit_core.fit` calls it once per batch with the
    model in train mode. A defense that crafts adversarial examples takes an ``attack`` parameter
    (an :class:`~toolkit_core.methods.Attack` object) and must generate them with the model in eval
    mode.

    Example::

        class Plain(Defense):
            name = "plain"
            summary = "Cross-entropy on clean inputs."
            citation = "doi:10.1038/nature14539"

            def loss(self, model, x, y):
                loss = F.cross_entropy(model(x), y)
                return loss, {"ce": loss.item()}

        @hookimpl
        def torchtrust_register_defenses(register):
            register(Plain)
    """


@hookspec
def torchtrust_register_priors(register: Register) -> None:
    """Register generative priors (kind ``prior``).

    Classes subclass :class:`toolkit_core.methods.Prior` and implement ``fit_points(X)`` (``X`` the
    training points as a checked float ``(N, D)`` tensor: ``Prior.fit`` converts a tensor, array,
    Dataset or DataLoader once and calls it), ``sample(n) -> Tensor`` of shape ``(n, dim)``, the
    attribute ``codes`` (``(N, dim)``: the code of every training point, for pairing) and ``dim``.

    Example::

        class Uniform(Prior):
            name = "uniform"
            summary = "z ~ U[-1, 1]^d."
            citation = "arXiv:1406.2661"

            def __init__(self, dim: int = 2):
                self.dim = dim

            def fit_points(self, X):
                self.codes = torch.rand(len(X), self.dim) * 2 - 1

            def sample(self, n):
                return torch.rand(n, self.dim) * 2 - 1

        @hookimpl
        def torchtrust_register_priors(register):
            register(Uniform)
    """


@hookspec
def torchtrust_register_metrics(register: Register) -> None:
    """Register generalization metrics (kind ``metric``).

    Classes subclass :class:`toolkit_core.methods.Metric` and implement
    ``compute(model, data) -> dict[str, float]`` where ``data`` is a DataLoader (or a tuple
    ``(x, y)`` of tensors); the metric streams over it, leaves the model unchanged, and declares in
    the class attribute ``higher_is_better`` (``{key: bool}``) which direction is better for each key.

    Example::

        class Accuracy(Metric):
            name = "accuracy"
            summary = "Top-1 accuracy."
            citation = "doi:10.1109/5.726791"
            higher_is_better = {"accuracy": True}

            def compute(self, model, data):
                correct = total = 0
                for x, y in iterate_batches(data):
                    correct += (model(x).argmax(1) == y).sum().item()
                    total += len(y)
                return {"accuracy": correct / total}

        @hookimpl
        def torchtrust_register_metrics(register):
            register(Accuracy)
    """



@hookspec
def torchtrust_register_datasets(register: Register) -> None:
    """Register data sets (kind ``dataset``).

    Classes subclass :class:`toolkit_core.methods.DataSource`. An instance declares, after
    ``__init__``, ``input_shape`` (one sample's shape), ``num_classes`` and ``value_range`` (the
    ``(low, high)`` bounds every input lies in), and implements ``loaders(batch_size, seed) ->
    (train, test)``: two ``DataLoader`` objects yielding ``(x, y)`` batches with ``x`` of shape
    ``(B, *input_shape)`` inside ``value_range`` and ``y`` class indices in ``0..num_classes-1``. The
    data is made or read locally: nothing is downloaded. The same ``seed`` gives the same data.

    Example::

        class Blobs(DataSource):
            name = "blobs"
            summary = "Two Gaussian blobs in the plane."
            citation = "doi:10.5555/1953048.2078195"

            def __init__(self, n: int = 1000):
                self.n = n
                self.input_shape, self.num_classes, self.value_range = (2,), 2, (-10.0, 10.0)

            def loaders(self, batch_size=256, seed=0):
                g = torch.Generator().manual_seed(seed)
                y = torch.randint(2, (self.n,), generator=g)
                x = (torch.randn(self.n, 2, generator=g) + 3 * y[:, None]).clamp(-10, 10)
                half = self.n // 2
                train = TensorDataset(x[:half], y[:half])
                test = TensorDataset(x[half:], y[half:])
                return DataLoader(train, batch_size, shuffle=True), DataLoader(test, batch_size)

        @hookimpl
        def torchtrust_register_datasets(register):
            register(Blobs)
    """


@hookspec
def torchtrust_register_detectors(register: Register) -> None:
    """Register detectors of out-of-distribution or adversarial inputs (kind ``detector``).

    Classes subclass :class:`toolkit_core.methods.Detector` and implement ``fit(model, data) -> self``
    (statistics of the in-distribution training data, a DataLoader or an ``(x, y)`` tuple) and
    ``score(model, x) -> Tensor`` of shape ``(B,)``: finite, **higher = more likely abnormal**
    (out-of-distribution or adversarial). Both leave the model and ``x`` unchanged. ``detect`` turns
    scores into a decision at a threshold; :func:`toolkit_core.detection.auroc` rates a detector on
    normal vs abnormal inputs.

    Example::

        class MaxSoftmax(Detector):
            name = "max_softmax"
            summary = "Negative maximum softmax probability (Hendrycks & Gimpel 2017)."
            citation = "arXiv:1610.02136"

            def fit(self, model, data):
                return self  # nothing to learn

            def score(self, model, x):
                with torch.no_grad():
                    return -torch.softmax(model(x), 1).amax(1)

        @hookimpl
        def torchtrust_register_detectors(register):
            register(MaxSoftmax)
    """

@hookspec
def torchtrust_register_certifiers(register: Register) -> None:
    """Register certifiers (kind ``certifier``): methods that certify a prediction within a radius.

    Classes subclass :class:`toolkit_core.methods.Certifier`, set ``norm`` (the norm of the certified
    radius, e.g. ``"l2"``) and implement

    * ``predict(model, x) -> Tensor``: ``(B,)`` class indices of the certified classifier (e.g. the
      smoothed classifier built on ``model``), ``-1`` where it abstains;
    * ``certify(model, x) -> (prediction, radius)``: two ``(B,)`` tensors; ``radius[i] >= 0`` is a
      radius (in ``norm``) within which the prediction provably does not change (with the method's
      stated confidence for probabilistic certificates); abstentions have ``prediction = -1`` and
      ``radius = 0``.

    ``x`` lies in ``[0, 1]`` with shape ``(B, ...)``. The model comes back exactly as it was (use
    ``with self.guard(model):``, which puts it in eval mode with frozen parameters and restores it,
    also on error). Randomized certifiers take a ``seed`` so results can be reproduced.
    :func:`toolkit_core.certification.certify_dataset` streams a data set through ``certify`` and
    gives certified-accuracy curves.

    Example::

        class MarginCertifier(Certifier):
            name = "linear_margin"
            summary = "Exact L2 radius of a linear classifier: the margin over the weight distance."
            citation = "arXiv:1902.02918"
            norm = "l2"

            def predict(self, model, x):
                with self.guard(model):
                    return model(x).argmax(1)

            def certify(self, model, x):
                with self.guard(model):
                    z = model(x)
                    w = model.weight                      # model is an nn.Linear on flat inputs
                top2 = z.topk(2, dim=1).indices
                a, b = top2[:, 0], top2[:, 1]
                gap = z.gather(1, a[:, None]) - z.gather(1, b[:, None])
                return a, gap[:, 0] / (w[a] - w[b]).norm(dim=1)

        @hookimpl
        def torchtrust_register_certifiers(register):
            register(MarginCertifier)
    """


@hookspec
def torchtrust_register_patches(register: Register) -> None:
    """Register weight patches (kind ``patch``): weight edits learned from models, applied to a copy.

    Classes subclass :class:`toolkit_core.methods.WeightPatch` and implement
    ``extract(source, reference) -> self``, which sets ``self.delta`` (a dict: parameter name ->
    tensor of that parameter's shape) from two models of one architecture, e.g. a robust ``source``
    and a standard ``reference``. The base class gives ``apply(model, coefficient=1.0)``: a deep copy
    of ``model`` with ``theta + coefficient * delta`` on the patched parameters, everything else
    copied. Neither call modifies the models it is given; coefficient ``0`` returns a model
    bit-identical to ``model``.

    Example::

        class WholeDifference(WeightPatch):
            name = "whole_difference"
            summary = "Task vector: the difference of every parameter (Ilharco et al. 2023)."
            citation = "arXiv:2212.04089"

            def extract(self, source, reference):
                ref = dict(reference.named_parameters())
                self.delta = {n: (p - ref[n]).detach().clone() for n, p in source.named_parameters()}
                return self

        @hookimpl
        def torchtrust_register_patches(register):
            register(WholeDifference)
    """


#: Kind name -> hook name, derived from the table of kinds (:mod:`toolkit_core.kinds`).
KIND_HOOKS: dict[str, str] = {k.name: k.hook for k in _KIND_TABLE}
KINDS: tuple[str, ...] = KIND_NAMES
