"""The one table of method kinds. Every list of kinds in torchtrust is derived from :data:`KINDS`.

A row says, for one kind of method:

* ``name``: the kind's name (``MethodInfo.kind``, ``torchtrust list --kind NAME``);
* ``hook``: the name of its hook specification in :mod:`toolkit_core.hookspecs`;
* ``base``: the name of its base class in :mod:`toolkit_core.methods`;
* ``section``: the experiment config's section listing methods of this kind (``[[attacks]]``), or
  ``None`` when the default experiment does not use the kind;
* ``template``: the folder under ``registry/templates/`` holding the ``torchtrust new-plugin``
  templates (``method.py.tmpl``, ``test.py.tmpl``);
* ``check``: the name of the contract check in :mod:`toolkit_core.testing` (``check_method`` calls it).

Who reads it: the hook specs (``hookspecs.KIND_HOOKS``), the base classes (``methods.BASES``), the
plugin manager (one ``register`` callback per row), the CLI (``--kind`` choices), the scaffold
(templates), the contract checks and the experiment config (sections). ``tests/test_kinds.py``
asserts each of those lists is derived from this table.

Adding a kind = one row here + its hook specification in :mod:`toolkit_core.hookspecs` + its base
class in :mod:`toolkit_core.methods` + its templates + its contract check (see
docs/plugin-authoring.md, "Adding a kind"). This module imports nothing heavy (no torch).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Kind:
    """One kind of method (one row of :data:`KINDS`)."""

    name: str
    hook: str
    base: str
    section: str | None
    template: str
    check: str


#: The kinds, in the order they are shown in.
KINDS: tuple[Kind, ...] = (
    Kind("attribution", "torchtrust_register_attribution_rules", "AttributionMethod", "attribution", "attribution",
         "_check_attribution"),
    Kind("attack", "torchtrust_register_attacks", "Attack", "attacks", "attack", "_check_attack"),
    Kind("defense", "torchtrust_register_defenses", "Defense", "defenses", "defense", "_check_defense"),
    Kind("prior", "torchtrust_register_priors", "Prior", "priors", "prior", "_check_prior"),
    Kind("metric", "torchtrust_register_metrics", "Metric", "metrics", "metric", "_check_metric"),
    Kind("dataset", "torchtrust_register_datasets", "DataSource", "datasets", "dataset", "_check_dataset"),
    Kind("detector", "torchtrust_register_detectors", "Detector", "detectors", "detector", "_check_detector"),
    Kind("certifier", "torchtrust_register_certifiers", "Certifier", "certifiers", "certifier", "_check_certifier"),
    Kind("patch", "torchtrust_register_patches", "WeightPatch", "patches", "patch", "_check_patch"),
)

#: The kind names, in table order.
KIND_NAMES: tuple[str, ...] = tuple(k.name for k in KINDS)


def get_kind(name: str) -> Kind:
    """The row of kind ``name``; an unknown name raises ``ValueError`` listing the valid ones."""
    for k in KINDS:
        if k.name == name:
            return k
    raise ValueError(f"unknown kind '{name}'; choose one of {', '.join(KIND_NAMES)}")


def experiment_sections() -> dict[str, str]:
    """Experiment config section -> kind name, for every kind the experiment uses."""
    return {k.section: k.name for k in KINDS if k.section is not None}
