"""The stages for data set, detector and patch plugins (``datasets``, ``detectors``, ``patches``): each
reports what its methods measure, equal to the same computation done directly."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

import toolkit_core as tt
from toolkit_core.experiment.config import build_config, training_attack_spec
from toolkit_core.experiment.runner import RunContext
from toolkit_core.models import DigitsCNN
from toolkit_core.modelstate import ModelSnapshot


def _ctx(tmp_path, cfg: dict) -> RunContext:
    config = build_config({"data": {"train_size": 200, "test_size": 80}, **cfg}, quick=True)
    return RunContext(config=config, out=tmp_path)


def _models() -> dict[str, torch.nn.Module]:
    out = {}
    for i, label in enumerate(("plain", "defended")):
        torch.manual_seed(i)
        out[label] = DigitsCNN(size=16, width=8, hidden=32).eval()
    return out


def _run_on_models(tmp_path, cfg: dict, stage) -> tuple[RunContext, dict]:
    """``stage`` on a quick context with two fresh models; the models come back unchanged."""
    ctx = _ctx(tmp_path, cfg)
    ctx.models = _models()
    snaps = {k: ModelSnapshot.take(m) for k, m in ctx.models.items()}
    res = stage(ctx)
    for k, m in ctx.models.items():
        snaps[k].assert_unchanged(m)
    return ctx, res


def test_default_config_lists_every_installed_method_of_the_new_sections():
    cfg = build_config({}, quick=True)
    assert {s.name for s in cfg.methods["detectors"]} == set(tt.list_methods("detector"))
    assert {s.name for s in cfg.methods["patches"]} == set(tt.list_methods("patch"))
    assert {s.name for s in cfg.methods["datasets"]} == set(tt.list_methods("dataset"))
    assert {"datasets", "detectors", "patches"} <= set(cfg.stages)


@pytest.mark.skipif("mahalanobis" not in tt.list_methods("detector"), reason="needs the mahalanobis plugin")
def test_detectors_stage_reports_the_auroc_computed_directly(tmp_path):
    from toolkit_core.detection import auroc
    from toolkit_core.experiment.common import datasets
    from toolkit_core.experiment.detectors import _test_tensors, abnormal_inputs, stage_detectors

    ctx, res = _run_on_models(tmp_path, {"detectors": [{"name": "mahalanobis"}]}, stage_detectors)
    model = ctx.models["plain"]
    train, test = datasets(ctx)
    x, y = _test_tensors(test, 200)
    assert res["normal"] == len(y) == 80 and res["model"] == "plain"
    abnormal = abnormal_inputs(ctx, model, x, y)
    assert list(res["table"]["mahalanobis"]) == list(abnormal) and len(abnormal) == 3
    det = tt.create("mahalanobis").fit(model, DataLoader(train, batch_size=256))
    normal = det.score(model, x)
    for name in ("uniform noise", "upside-down inputs"):  # deterministic sets: equal to the direct AUROC
        direct = float(auroc(normal, det.score(model, abnormal[name])))
        assert res["table"]["mahalanobis"][name] == pytest.approx(direct)
    assert all(0.0 <= v <= 1.0 for v in res["table"]["mahalanobis"].values())
    assert (tmp_path / "detectors.png").exists()


@pytest.mark.skipif("rws" not in tt.list_methods("patch"), reason="needs the rws plugin")
def test_patches_stage_reports_the_patched_copies_accuracy(tmp_path):
    from toolkit_core.experiment.common import datasets
    from toolkit_core.experiment.detectors import _test_tensors
    from toolkit_core.experiment.patches import stage_patches

    ctx, res = _run_on_models(tmp_path, {"patches": [{"name": "rws"}]}, stage_patches)
    rows = res["table"]["rws"]["defended"]
    cls = tt.get_info("rws").cls
    from toolkit_core.experiment.config import scale_of

    assert [r["coefficient"] for r in rows] == cls.experiment_coefficients(scale_of(ctx.config.settings, True))
    x, y = _test_tensors(datasets(ctx)[1], 200)
    patch = tt.create("rws").extract(ctx.models["defended"], ctx.models["plain"])
    for r in rows:
        with torch.no_grad():
            acc = float((patch.apply(ctx.models["plain"], r["coefficient"])(x).argmax(1) == y).float().mean())
        assert r["clean_acc"] == acc  # the formula applied directly gives the same model and accuracy
        assert 0.0 <= r["robust_acc"] <= 1.0
    with torch.no_grad():  # coefficient 0 is the plain model itself
        assert rows[0]["clean_acc"] == float((ctx.models["plain"](x).argmax(1) == y).float().mean())
    assert res["attack"] == training_attack_spec(ctx.config.settings, True).label
    ctx.models = {"plain": _models()["plain"]}  # nothing defended: the stage says so and runs nothing
    assert stage_patches(ctx)["skipped"] == {"rws": "no defended model in this run"}


@pytest.mark.skipif("lms" not in tt.list_methods("dataset"), reason="needs the lms plugin")
def test_datasets_stage_trains_on_each_with_its_declared_budget(tmp_path):
    from toolkit_core.experiment.config import scale_of
    from toolkit_core.experiment.data_sources import stage_datasets

    torch.set_num_threads(1)
    ctx = _ctx(tmp_path, {"datasets": [{"name": "lms"}]})
    res = stage_datasets(ctx)
    (label, row), = res["table"].items()
    cls = tt.get_info("lms").cls
    assert res["budgets"][label] == cls.experiment_training(scale_of(ctx.config.settings, True))
    # simplicity bias (Shah et al. 2020): perfect on LMS, at chance without the linear coordinate,
    # unchanged without the nine perfectly predictive slab coordinates
    assert row["chance"] == 0.5 and row["test_acc"] >= 0.97
    assert abs(row["accuracy_L_randomized"] - 0.5) < 0.1 and row["accuracy_S_randomized"] >= 0.95
    assert (tmp_path / "datasets.png").exists()
