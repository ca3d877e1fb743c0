"""AccelAT: the learning rate follows the accuracy-gradient rule; the loss is PGD-AT's; resume is exact."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchtrust_accelat import AccelAT, next_learning_rate

import toolkit_core as tt
from toolkit_core.data import load_digits
from toolkit_core.models import DigitsCNN
from toolkit_core.testing import check_method, contract_model
from toolkit_core.training import fit, load_checkpoint


def test_contract():
    check_method("accelat")


def _by_hand(accuracies, lr0, threshold, factor, min_lr, patience=1, warmup=0):
    """The rule written out: the lr each epoch runs with, and the one after the last epoch."""
    lrs, lr, stalls = [], lr0, 0
    for t, a in enumerate(accuracies):
        lrs.append(lr)
        if t > 0:
            stalls = stalls + 1 if a - accuracies[t - 1] < threshold else 0
        if stalls >= patience and t >= warmup:
            lr = max(lr * factor, min_lr) if lr > min_lr else lr
            stalls = 0
    return lrs, lr


ACC = [0.20, 0.50, 0.60, 0.605, 0.70, 0.69, 0.69, 0.80, 0.801]


def _run(defense, accuracies, lrs=(0.1, 0.04)):
    model = contract_model()
    opt = torch.optim.SGD([{"params": [model.head.weight], "lr": lrs[0]}, {"params": [model.head.bias], "lr": lrs[1]}])
    defense.start_epoch(0, len(accuracies))
    rows = [defense.end_epoch(t, len(accuracies), {"epoch": t, "eval_adv_acc": a, "adv_acc": 0.0}, opt)
            for t, a in enumerate(accuracies)]
    return rows, opt


def test_learning_rate_follows_the_rule_on_a_scripted_accuracy_sequence():
    attack = tt.create("pgd", eps=0.1, steps=1)
    rows, opt = _run(AccelAT(attack=attack, threshold=0.01, patience=1, factor=0.5, min_lr=0.01), ACC)
    lrs, last = _by_hand(ACC, 0.1, 0.01, 0.5, 0.01)
    # gains 0.3, 0.1, 0.005 (< 0.01: halve), 0.095, -0.01 (halve), 0 (halve), 0.11, 0.001 (halve, floor 0.01)
    assert lrs == [0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.025, 0.0125, 0.0125]
    assert [r["lr"] for r in rows] == lrs
    assert opt.param_groups[0]["lr"] == last == 0.01  # 0.0125 * 0.5 = 0.00625 is floored at min_lr
    assert opt.param_groups[1]["lr"] == _by_hand(ACC, 0.04, 0.01, 0.5, 0.01)[1] == 0.01  # every group
    assert "accuracy_gradient" not in rows[0]
    assert [r["accuracy_gradient"] for r in rows[1:]] == pytest.approx([b - a for a, b in zip(ACC, ACC[1:])])
    # the step function alone: a drop needs enough stalls, the warm-up over, and a rate above the floor
    assert next_learning_rate(0.1, stalls=2, epoch=3, patience=2, warmup=0, factor=0.5, min_lr=0.01) == 0.05
    assert next_learning_rate(0.1, stalls=1, epoch=3, patience=2, warmup=0, factor=0.5, min_lr=0.01) == 0.1
    assert next_learning_rate(0.1, stalls=2, epoch=3, patience=2, warmup=4, factor=0.5, min_lr=0.01) == 0.1
    assert next_learning_rate(0.015, stalls=2, epoch=3, patience=2, warmup=0, factor=0.5, min_lr=0.01) == 0.01
    assert next_learning_rate(0.005, stalls=2, epoch=3, patience=2, warmup=0, factor=0.5, min_lr=0.01) == 0.005
    # patience 2: only the two stalls in a row (epochs 5 and 6) drop the rate; warm-up 7 forbids even that
    rows2, opt2 = _run(AccelAT(attack=attack, threshold=0.01, patience=2, factor=0.5, min_lr=0.01), ACC)
    assert [r["lr"] for r in rows2] == _by_hand(ACC, 0.1, 0.01, 0.5, 0.01, patience=2)[0] == [0.1] * 7 + [0.05] * 2
    defense = AccelAT(attack=attack, threshold=0.01, patience=2, warmup=7, factor=0.5, min_lr=0.01)
    rows3, _ = _run(defense, ACC)
    assert [r["lr"] for r in rows3] == _by_hand(ACC, 0.1, 0.01, 0.5, 0.01, patience=2, warmup=7)[0] == [0.1] * 9
    assert defense.state_dict() == {"previous_accuracy": ACC[-1], "stalls": 1, "reductions": 0}
    defense.start_epoch(0, 3)  # a new run forgets the old one
    assert defense.state_dict() == {"previous_accuracy": None, "stalls": 0, "reductions": 0}


def test_monitor_prefers_validation_and_falls_back_to_training_accuracy():
    clean = AccelAT(monitor="clean")
    assert clean.monitored({"clean_acc": 0.3, "eval_clean_acc": 0.7}) == 0.7
    assert clean.monitored({"clean_acc": 0.3, "adv_acc": 0.1}) == 0.3
    assert AccelAT().monitored({"clean_acc": 0.3, "adv_acc": 0.1, "eval_adv_acc": 0.2}) == 0.2
    with pytest.raises(KeyError, match="eval_data"):
        AccelAT().monitored({"loss": 1.0})
    for bad in ({"factor": 1.0}, {"factor": 0.0}, {"min_lr": -1.0}, {"patience": 0}, {"warmup": -1}):
        with pytest.raises(ValueError):
            tt.create("accelat", **bad)


def test_loss_is_pgd_at_loss():
    model = contract_model().train()
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(8, 1, 16, 16, generator=g), torch.randint(0, 10, (8,), generator=g)
    attack = tt.create("pgd", eps=0.1, alpha=0.05, steps=3, seed=0)
    loss, logs = AccelAT(attack=attack).loss(model, x, y)
    torch.testing.assert_close(loss, F.cross_entropy(model(attack(model, x, y)), y), atol=1e-6, rtol=1e-6)
    assert {"loss", "adv_acc", "clean_acc"} <= set(logs)


def _setup():
    x, y = load_digits(8, "train").tensors
    torch.manual_seed(0)
    return DigitsCNN(size=8, width=4, hidden=16), (x[:256], y[:256]), (x[256:384], y[256:384])


def test_fit_changes_the_learning_rate_as_the_rule_says_and_resumes_exactly(tmp_path):
    attack = tt.create("pgd", eps=0.1, alpha=0.05, steps=2)
    kw = dict(optimizer="sgd", lr=0.05, batch_size=32, seed=0, progress=False)
    model, train, val = _setup()
    # a high threshold makes every epoch after the first a stall: the rate halves from epoch 2 on
    defense = AccelAT(attack=attack, threshold=1.0, patience=1, factor=0.5)
    hist = fit(model, train, defense, epochs=4, eval_data=val, **kw)
    acc = hist["eval_adv_acc"]
    assert hist["lr"] == _by_hand(acc, 0.05, 1.0, 0.5, 1e-5)[0] == [0.05, 0.05, 0.025, 0.0125]
    assert hist["accuracy_gradient"][1:] == pytest.approx([b - a for a, b in zip(acc, acc[1:])])
    # stop after 2 epochs, resume to 4: the same weights, rates and history (lr and state in the checkpoint)
    part, _, _ = _setup()
    fit(part, train, AccelAT(attack=attack, threshold=1.0, patience=1, factor=0.5), epochs=2, eval_data=val,
        checkpoint_dir=tmp_path, **kw)
    assert load_checkpoint(tmp_path)["defense"]["reductions"] == 1
    resumed = DigitsCNN(size=8, width=4, hidden=16)
    again = fit(resumed, train, AccelAT(attack=attack, threshold=1.0, patience=1, factor=0.5), epochs=4, eval_data=val,
                checkpoint_dir=tmp_path, resume=True, **kw)
    assert again["lr"] == hist["lr"] and again["eval_adv_acc"] == acc
    for k, v in model.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k


def test_threshold_minus_infinity_is_pgd_at_bit_for_bit():
    """With a threshold no gain falls below, AccelAT never changes the rate: PGD-AT exactly."""
    attack = tt.create("pgd", eps=0.1, alpha=0.05, steps=2)
    kw = dict(epochs=2, optimizer="sgd", lr=0.05, batch_size=32, seed=0, progress=False)
    a, train, val = _setup()
    b, _, _ = _setup()
    ha = fit(a, train, AccelAT(attack=attack, threshold=-2.0), eval_data=val, **kw)
    hb = fit(b, train, tt.create("pgd_at", attack=attack), eval_data=val, **kw)
    assert ha["lr"] == [0.05, 0.05] and ha["eval_adv_acc"] == hb["eval_adv_acc"]
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k


@pytest.mark.slow
def test_digits_run_against_pgd_at_at_equal_epochs():
    """16 epochs on the 16x16 digits (Adam 3e-3, PGD-5 eps 0.1, 20% of the training split for validation):
    AccelAT follows PGD-AT exactly until its first drop, then stays as robust (test PGD-10 accuracy)."""
    torch.set_num_threads(1)
    x, y = load_digits(16, "train", seed=0).tensors
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    val, tr = (x[perm[:269]], y[perm[:269]]), (x[perm[269:]], y[perm[269:]])
    xte, yte = load_digits(16, "test", seed=0).tensors
    attack = tt.create("pgd", eps=0.1, alpha=0.025, steps=5)
    test_attack = tt.create("pgd", eps=0.1, alpha=0.025, steps=10, seed=0)
    runs = {}
    for name, defense in (("pgd_at", tt.create("pgd_at", attack=attack)), ("accelat", AccelAT(attack=attack))):
        torch.manual_seed(0)
        model = DigitsCNN(size=16, width=8, hidden=32)
        hist = fit(model, tr, defense, epochs=16, optimizer="adam", lr=3e-3, seed=0, eval_data=val, progress=False)
        model.eval()
        with torch.no_grad():
            robust = float((model(test_attack(model, xte, yte)).argmax(1) == yte).float().mean())
        runs[name] = (hist, robust)
    (h_pgd, r_pgd), (h_acc, r_acc) = runs["pgd_at"], runs["accelat"]
    first_drop = next(t for t, lr in enumerate(h_acc["lr"]) if lr < 3e-3)  # the first epoch run at a lower rate
    assert 2 <= first_drop < 16
    assert h_acc["eval_adv_acc"][:first_drop] == h_pgd["eval_adv_acc"][:first_drop]
    assert h_acc["lr"][first_drop] == 1.5e-3
    assert r_pgd > 0.35 and r_acc > r_pgd - 0.05


def test_experiment_variants_leave_quick_runs_out():
    from toolkit_core.methods import Scale

    assert AccelAT.experiment_variants(Scale(quick=True)) == []
    assert AccelAT.experiment_variants(Scale(quick=False)) == [{"threshold": 0.08, "patience": 1}]
    # why: PGD-AT's training PGD accuracy per epoch in a full default run (6 epochs, seed 0, measured):
    # with the defaults the rule never fires (AccelAT = PGD-AT bit for bit); with the experiment's it does
    climb = [0.1084, 0.3638, 0.5108, 0.5798, 0.6288, 0.66]
    assert set(_by_hand(climb, 2e-3, 0.01, 0.5, 1e-5, patience=2)[0]) == {2e-3}
    assert _by_hand(climb, 2e-3, 0.08, 0.5, 1e-5, patience=1)[0] == [2e-3] * 4 + [1e-3, 5e-4]
    # why: in 3 epochs the rule cannot drop the rate (patience 2 needs two stalled epochs after the first)
    assert _by_hand([0.5, 0.5, 0.5], 0.1, 0.01, 0.5, 1e-5, patience=2)[0] == [0.1, 0.1, 0.1]
