"""The pieces of the experiment report that compute claims: aggregation over seeds, health checks,
published anchors with verdicts."""

from __future__ import annotations

import math
import statistics

import pytest

from toolkit_core.experiment.aggregate import aggregate, interval95, spread
from toolkit_core.experiment.anchors import (
    NOT_COMPARABLE,
    NOT_REPRODUCED,
    PACGAN_TABLE1,
    REPRODUCED,
    generative_claims,
    method_claims,
)
from toolkit_core.experiment.health import check_all, check_metrics, check_robustness, check_training


def test_aggregate_means_stds_booleans_and_nan():
    runs = [{"a": {"x": 1.0, "n": 2, "ok": True, "name": "m", "bad": 1.0}},
            {"a": {"x": 2.0, "n": 4, "ok": False, "name": "m", "bad": float("nan")}},
            {"a": {"x": 4.5, "n": 6, "ok": True, "name": "m", "bad": 2.0}}]
    res = aggregate(runs, [0, 1, 2])
    assert res["a"]["x"] == pytest.approx(statistics.mean([1.0, 2.0, 4.5]))
    assert res["over_seeds"]["std"]["a"]["x"] == pytest.approx(statistics.stdev([1.0, 2.0, 4.5]))
    assert res["a"]["n"] == 4 and isinstance(res["a"]["n"], int)
    assert res["a"]["ok"] is False and res["a"]["name"] == "m"
    assert math.isnan(res["a"]["bad"])
    assert spread(res, "a", "x") == (pytest.approx(statistics.stdev([1.0, 2.0, 4.5])), 3)
    warned = aggregate([{"w": ["a", "b"]}, {"w": []}, {"w": ["c", "a"]}], [0, 1, 2])
    assert warned["w"] == ["a", "b", "c"]  # a warning of any seed is kept, once
    by_model = aggregate([{"w": {"pgd_at": ["x"]}, "n": 1.0}, {"w": {}, "n": 2.0},
                          {"w": {"accelat": ["y"], "pgd_at": ["z"]}, "n": 3.0, "late": "k"}], [0, 1, 2])
    assert by_model["w"] == {"pgd_at": ["x", "z"], "accelat": ["y"]}  # keys the first seed lacks are kept
    assert by_model["late"] == "k" and by_model["n"] == 2.0
    partial = aggregate([{"w": {"pgd_at": ["x"]}}, {}, {"w": {"accelat": ["y"]}}], [0, 1, 2])  # seed 1: no key
    assert partial["w"] == {"pgd_at": ["x"], "accelat": ["y"]}
    one = aggregate(runs[:1], [0])
    assert one["a"]["x"] == 1.0 and spread(one, "a", "x") == (None, 1)
    from scipy.stats import t

    assert interval95(2.0, 3) == pytest.approx(t.ppf(0.975, 2) * 2.0 / math.sqrt(3))


def test_health_checks_flag_chance_gap_masking_and_nan():
    train = {"models": {"plain": {"train_acc": 0.99, "test_acc": 0.95},
                        "collapsed": {"train_acc": 0.12, "test_acc": 0.11},
                        "overfit": {"train_acc": 1.0, "test_acc": 0.8}}}
    flags = check_training(train)
    assert {(f.check, f.subject) for f in flags} == {("at chance", "collapsed"), ("train/test gap", "overfit")}
    same = {"train_acc": 0.93, "test_acc": 0.92, "final_loss": 0.88}
    twins = {"models": {"pgd_at": dict(same), "accelat": dict(same), "alp": {**same, "final_loss": 0.8801},
                        "itid": {**same, "final_loss": None}}}  # no loss: not comparable, never flagged
    assert [(f.check, f.subject) for f in check_training(twins)] == [("identical models", "pgd_at = accelat")]
    fgsm, pgd = {"eps": 0.1}, {"eps": 0.1, "steps": 20}
    rob = {"table": {
        "plain": {"clean_accuracy": 0.95, "attacks": {"fgsm": {"accuracy": 0.2, "params": fgsm},
                                                      "pgd": {"accuracy": 0.1, "params": pgd}}},
        "masked": {"clean_accuracy": 0.9, "attacks": {"fgsm": {"accuracy": 0.3, "params": fgsm},
                                                      "pgd": {"accuracy": 0.6, "params": pgd}}},
        "flat": {"clean_accuracy": 0.9, "attacks": {"pgd": {"accuracy": 0.89, "params": pgd}}},
        "queried": {"clean_accuracy": 0.9, "attacks": {"square": {"accuracy": 0.2, "params": {"eps": 0.1,
                                                                                              "n_queries": 500}},
                                                       "pgd": {"accuracy": 0.5, "params": pgd},
                                                       "pgd_l2": {"accuracy": 0.6, "params": {**pgd, "norm": "2"}}}}}}
    rob["table"]["nested"] = {"clean_accuracy": 0.9, "attacks": {  # evaluate_robustness's own layout
        "fgsm": {"accuracy": 0.3, "params": {"name": "fgsm", "params": fgsm}},
        "pgd": {"accuracy": 0.6, "params": {"name": "pgd", "params": pgd}}}}
    rob["table"]["ensemble"] = {"clean_accuracy": 0.9, "attacks": {  # an ensemble's worst case beats its members
        "autoattack": {"accuracy": 0.3, "params": {"eps": 0.1}, "components": {"apgd": 0.5}},
        "pgd": {"accuracy": 0.5, "params": pgd}}}
    members = {"apgd-ce": {"name": "apgd", "black_box": False}, "square": {"name": "square", "black_box": True}}
    for label, after in (("square_finds", 0.35), ("square_idle", 0.49)):  # 0.15 vs 0.01 below what APGD left
        rob["table"][label] = {"clean_accuracy": 0.9, "attacks": {"autoattack": {
            "accuracy": after, "params": {"params": {"eps": 0.1}, "members": members},
            "components": {"apgd-ce": 0.5, "square": after}}}}
    masking = check_robustness(rob)
    assert sorted(f.subject for f in masking) == ["flat", "masked", "nested", "queried",  # square vs pgd, not L2
                                                  "square_finds"]
    assert "from 0.500 to 0.350" in [f for f in masking if f.subject == "square_finds"][0].message
    nan = check_metrics({"table": {"m": {"plain": {"k": float("nan"), "k/part": float("nan"), "j": 1.0}}}})
    assert [(f.subject, f.message.split(": ")[1]) for f in nan] == [("m on plain", "k is NaN or infinite")]
    assert len(check_all({"train": train, "robustness": rob})) == 7


def _gan_row(modes, hq, kl, of, seeds=1, std=0.0):
    return {"modes": modes, "modes std": std, "high quality %": hq, "high quality % std": 0.0, "reverse KL": kl,
            "reverse KL std": 0.0, "of modes": of, "seeds": seeds}


def test_pacgan_anchor_verdicts_follow_the_numbers():
    gan, pub = PACGAN_TABLE1["ring"]["GAN"], PACGAN_TABLE1["ring"]
    close = {"ring / gaussian (GAN)": _gan_row(gan[0] + 0.5, gan[1] - 3, gan[2] + 0.05, 8),
             "ring / mmc (paired)": _gan_row(8, 90.0, 0.05, 8)}
    claims = {c.claim.split(":")[0]: c for c in generative_claims({"table": close})}
    assert claims["GAN on the ring"].verdict == REPRODUCED
    assert claims["PacGAN2 on the ring"].verdict == NOT_COMPARABLE and "PacGAN4 on the ring" in claims
    assert claims["GAN on the grid"].verdict == NOT_COMPARABLE  # no grid run
    prior = [c for c in generative_claims({"table": close}) if c.source.startswith("MMCGAN")]
    assert [c.verdict for c in prior] == [REPRODUCED]  # 8 > 6.8 modes
    far = {"ring / gaussian (GAN)": _gan_row(3.0, 60.0, 1.5, 8)}
    assert generative_claims({"table": far})[0].verdict == NOT_REPRODUCED
    assert len(pub) == 3


def test_attribution_and_robustness_claims_come_from_the_method_classes():
    """The core names no method: gbp/lrp/dtd, aalp and itid declare their seeds' claims (experiment_claims)."""
    methods = {"attribution": [{"name": "gradient", "label": "gradient"}, {"name": "gbp", "label": "gbp"},
                               {"name": "lrp", "label": "lrp(rule=lrp_zplus)"}],
               "defenses": [{"name": "alp", "label": "alp"}, {"name": "aalp", "label": "aalp"}]}
    res = {"input alignment (trained a CNN)": {"gradient": {"mean cos(A, x)": 0.1},
                                               "gbp": {"mean cos(A, x)": 0.5},
                                               "lrp(rule=lrp_zplus)": {"mean cos(A, x)": 0.4}}}
    claims = method_claims({"attribution": res}, methods)
    assert [(c.claim.split(" ")[0], c.verdict) for c in claims] == [("gbp", REPRODUCED), ("lrp", REPRODUCED)]
    assert "(a CNN)" in claims[0].claim and "gradient 0.100" in claims[0].ours
    methods["attribution"].append({"name": "dtd", "label": "dtd"})
    res["input alignment (trained a CNN)"]["dtd"] = {"mean cos(A, x)": 0.05}
    (dtd,) = [c for c in method_claims({"attribution": res}, methods) if c.claim.startswith("dtd")]
    assert dtd.verdict == NOT_REPRODUCED and "dtd" in dtd.note
    rob = {"table": {"alp": {"worst_case_accuracy": 0.4}, "aalp": {"worst_case_accuracy": 0.5}},
           "over_seeds": {"seeds": [0, 1], "std": {"table": {"alp": {"worst_case_accuracy": 0.02},
                                                             "aalp": {"worst_case_accuracy": 0.03}}}}}
    assert [c.verdict for c in method_claims({"robustness": rob}, methods)] == [REPRODUCED]
    rob["over_seeds"]["std"]["table"]["aalp"]["worst_case_accuracy"] = 0.09  # 0.1 gap < 0.02 + 0.09
    assert [c.verdict for c in method_claims({"robustness": rob}, methods)] == [NOT_REPRODUCED]
    assert [c.verdict for c in method_claims({"robustness": {"table": {"plain": {}}}}, methods)] == [NOT_COMPARABLE]
    metrics = {"table": {"itid": {"plain": {"inv_hard": 0.6}, "itid_enhance": {"inv_hard": 0.8}}}}
    (itid,) = method_claims({"metrics": metrics}, {"metrics": [{"name": "itid", "label": "itid"}]})
    assert itid.verdict == REPRODUCED and itid.ours == "itid_enhance 0.8 vs plain 0.6"


def test_wrapped_method_labels_keep_every_character_and_fit_the_width():
    from toolkit_core.analysis.plots import wrap_label

    for label in ("lrp(composite=epsilon_plus_flat)", "lrp(rule=lrp_zplus)", "gradient", "a(b=1,c=2,d=3)"):
        lines = wrap_label(label, 18).split("\n")
        assert "".join(lines) == label
        assert all(len(line) <= 18 or ("(" not in line[:-1] and "=" not in line[:-1]) for line in lines)
    assert wrap_label("lrp(composite=epsilon_plus_flat)", 18) == "lrp(composite=\nepsilon_plus_flat)"
    assert wrap_label("gradient", 18) == "gradient"


def test_heatmap_grids_wrap_into_blocks_that_fit_the_page_with_every_label(tmp_path, monkeypatch):
    """15 methods: three blocks of at most 7 methods, the PNG no wider than the report (1100 px), so the
    column titles are shown at their drawn size; every label appears once."""
    import torch
    from matplotlib.figure import Figure
    from PIL import Image

    from toolkit_core.experiment import figures

    titles: list[str] = []
    savefig = Figure.savefig

    def record(fig, *a, **k):
        titles.extend(ax.get_title() for ax in fig.axes if ax.get_title())
        return savefig(fig, *a, **k)

    monkeypatch.setattr(Figure, "savefig", record)
    labels = [f"lrp(composite=epsilon_gamma_box_{i})" for i in range(15)]
    maps = {lab: torch.randn(4, 1, 16, 16) for lab in labels}
    figures.heatmap_grid(tmp_path / "g.png", torch.rand(4, 1, 16, 16), maps, "title")
    width, height = Image.open(tmp_path / "g.png").size
    assert width <= 1100 and height > width / 2
    assert titles.count("input") == 3
    assert sorted(t.replace("\n", "") for t in titles if t != "input") == sorted(labels)
