"""Defenses end to end: adversarial training on digits buys robust accuracy that plain training lacks."""

from __future__ import annotations

import torch

import toolkit_core as tt
from toolkit_core.data import load_digits
from toolkit_core.models import DigitsCNN


def _robust_accuracy(model, x, y, attack) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        clean = float((model(x).argmax(1) == y).float().mean())
    x_adv = attack(model, x, y)
    assert float((x_adv - x).abs().max()) <= attack.eps + 1e-6
    with torch.no_grad():
        robust = float((model(x_adv).argmax(1) == y).float().mean())
    return clean, robust


def test_pgd_at_is_far_more_robust_than_plain_training():
    train, (xt, yt) = load_digits(8, "train"), load_digits(8, "test").tensors
    results = {}
    for name, epochs in ((None, 5), ("pgd_at", 8)):
        torch.manual_seed(0)
        model = DigitsCNN(size=8, width=8, hidden=32)
        defense = None if name is None else tt.create(name, attack=tt.create("pgd", eps=0.1, alpha=0.05, steps=5))
        tt.fit(model, train, defense, epochs=epochs, batch_size=64, lr=1e-2, progress=False, seed=0)
        for eps in (0.1, 0.15):
            evaluation = tt.create("pgd", eps=eps, alpha=eps / 8, steps=20, seed=0)
            results[name, eps] = _robust_accuracy(model, xt, yt, evaluation)
    assert results[None, 0.1][0] > 0.85 and results["pgd_at", 0.1][0] > 0.8, results  # clean accuracy
    # PGD-20 at the training radius and beyond: adversarial training keeps far more points
    assert results["pgd_at", 0.1][1] > results[None, 0.1][1] + 0.2, results
    assert results["pgd_at", 0.15][1] > max(4 * results[None, 0.15][1], results[None, 0.15][1] + 0.2), results
    assert results[None, 0.15][1] < 0.15, results  # the undefended model breaks
