"""Contract of the `itid_enhance` plugin and its numbers against formulas."""

import pytest
import torch

from toolkit_core.catalog import create, get_info
from toolkit_core.testing import check_method, contract_model, digits_batch


def test_itid_enhance_contract_and_provider():
    check_method("itid_enhance")
    info = get_info("itid_enhance")
    assert info.provider == "torchtrust-itid-enhance"


# --------------------------------------------------------------- numbers against formulas evaluated directly


def test_itid_enhance_trains_on_the_worst_candidate():
    model = contract_model().train()
    x, y = digits_batch(8)
    a, b = create("itid_enhance", k=3, seed=5), create("itid_enhance", k=3, seed=5)
    cands = a._candidates(x)
    with torch.no_grad():
        model.eval()
        p = torch.softmax(model(x), 1)
        moves = torch.stack([0.5 * (torch.softmax(model(c), 1) - p).abs().sum(1) for c in cands])
        model.train()
    chosen, move = b.worst_of_k(model, x)
    torch.testing.assert_close(move, moves.max(0).values)
    torch.testing.assert_close(chosen, cands[moves.argmax(0), torch.arange(8)])
    loss, logs = b.loss(model, x, y)
    assert torch.isfinite(loss) and model.training and logs["tv_move"] >= 0


def test_itid_enhance_composes_with_a_training_loop():
    torch.manual_seed(0)
    x, y = digits_batch(64)
    model = contract_model().train()
    defense = create("itid_enhance", k=2)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    losses = []
    for _ in range(8):
        loss, _ = defense.loss(model, x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_itid_enhance_with_toolkit_fit():
    try:
        from toolkit_core.training import fit
    except ImportError:  # pragma: no cover - the training loop ships with the core
        pytest.skip("toolkit_core.training.fit is not available")
    x, y = digits_batch(64)
    model = contract_model()
    defense = create("itid_enhance", k=2)
    history = fit(model, (x, y), defense=defense, epochs=2, batch_size=32, lr=1e-2, progress=False)
    assert history is not None and all(torch.isfinite(p).all() for p in model.parameters())
    state = defense.state_dict()
    other = create("itid_enhance", k=2, seed=99)
    other.load_state_dict(state)
    torch.testing.assert_close(other._candidates(x[:4]), defense._candidates(x[:4]))
