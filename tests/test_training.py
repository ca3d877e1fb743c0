"""toolkit_core.fit: determinism, history, atomic checkpoints, kill/resume bit-for-bit, DDP with two gloo ranks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from toolkit_core.data import load_digits
from toolkit_core.methods import Attack, Defense
from toolkit_core.models import DigitsCNN
from toolkit_core.training import History, fit, load_checkpoint, save_atomic

REPO = Path(__file__).resolve().parents[1]


def _data(n: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_digits(8, "train").tensors
    return x[:n].contiguous(), y[:n].contiguous()


def _model(seed: int = 0) -> DigitsCNN:
    torch.manual_seed(seed)
    return DigitsCNN(size=8, width=4, hidden=16)


class NoiseFGSM(Attack):
    """A local attack that uses the global RNG (random start), so RNG bookkeeping matters."""

    name = "noise_fgsm_test"
    summary = "test attack"
    citation = "none"

    def __init__(self, eps: float = 0.1):
        self.eps = eps

    def perturb(self, model, x, y):
        x0 = (x + self.eps * (2 * torch.rand_like(x) - 1)).clamp(0, 1).requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(torch.nn.functional.cross_entropy(model(x0), y), x0)
        return (x + self.eps * g.sign()).clamp(0, 1)


class AdvCE(Defense):
    name = "adv_ce_test"
    summary = "test defense"
    citation = "none"

    def __init__(self):
        self.attack = NoiseFGSM()
        self.epochs_seen: list[tuple[int, int]] = []

    def start_epoch(self, epoch, epochs):
        self.epochs_seen.append((epoch, epochs))

    def loss(self, model, x, y):
        assert model.training
        x_adv = self.attack(model, x, y)
        assert model.training, "the attack must hand the model back in train mode"
        logits = model(x_adv)
        loss = torch.nn.functional.cross_entropy(logits, y)
        return loss, {"loss": float(loss.detach()), "adv_acc": float((logits.argmax(1) == y).float().mean())}


def _params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs (max |diff| {float((a[k] - b[k]).abs().max()):.3g})"


def test_fit_is_seeded_and_deterministic_and_learns():
    data = _data()
    runs = []
    for _ in range(2):
        model, defense = _model(), AdvCE()
        hist = fit(model, data, defense, epochs=2, batch_size=32, lr=1e-2, progress=False, seed=3)
        runs.append((_params(model), hist))
        assert defense.epochs_seen == [(0, 2), (1, 2)]
        assert model.training
    _assert_equal(runs[0][0], runs[1][0])
    h: History = runs[0][1]
    assert len(h) == 2 and h["loss"] == runs[1][1]["loss"]
    assert h["loss"][1] < h["loss"][0]  # it learns
    assert 0.0 <= h.last["adv_acc"] <= 1.0
    other = _model()
    fit(other, data, AdvCE(), epochs=2, batch_size=32, lr=1e-2, progress=False, seed=4)
    assert any(not torch.equal(other.state_dict()[k], runs[0][0][k]) for k in runs[0][0])  # the seed matters


def test_plain_cross_entropy_and_eval_metrics():
    data, (xt, yt) = _data(1024), load_digits(8, "test").tensors
    torch.manual_seed(0)
    model = DigitsCNN(size=8, width=8, hidden=32)
    hist = fit(model, data, None, epochs=4, batch_size=64, lr=1e-2, progress=False, eval_data=(xt, yt),
               eval_attack=NoiseFGSM(0.1))
    model.eval()
    with torch.no_grad():
        acc = float((model(xt).argmax(1) == yt).float().mean())
    assert hist.last["eval_clean_acc"] == pytest.approx(acc, abs=1e-6)  # the history's eval equals a direct eval
    assert hist.last["eval_clean_acc"] > 0.4  # chance is 0.1
    assert hist.last["eval_adv_acc"] < hist.last["eval_clean_acc"]
    assert set(hist.to_dict()["epochs"][0]) >= {"loss", "clean_acc", "eval_clean_acc", "eval_adv_acc", "time_s"}


class HalvingCE(Defense):
    """Plain cross-entropy whose ``end_epoch`` records what it is given and sets the next epoch's lr."""

    name = "halving_ce_test"
    summary = "test defense"
    citation = "none"

    def __init__(self, next_lr: list[float]):
        self.next_lr = list(next_lr)
        self.seen: list[tuple[int, int, dict, float]] = []

    def loss(self, model, x, y):
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        return loss, {"loss": float(loss.detach()), "clean_acc": float((logits.argmax(1) == y).float().mean())}

    def end_epoch(self, epoch, epochs, metrics, optimizer):
        self.seen.append((epoch, epochs, dict(metrics), optimizer.param_groups[0]["lr"]))
        for group in optimizer.param_groups:
            group["lr"] = self.next_lr[epoch]
        return {"lr_next": self.next_lr[epoch]}


def test_end_epoch_hook_sees_validation_metrics_and_sets_the_learning_rate():
    data, (xt, yt) = _data(), load_digits(8, "test").tensors
    defense = HalvingCE([0.05, 0.0, 0.0])
    model = _model()
    snapshots = []
    hist = fit(model, data, defense, epochs=3, batch_size=32, optimizer="sgd", lr=0.1, progress=False,
               eval_data=(xt, yt), on_batch_end=lambda e, b, logs: snapshots.append((e, _params(model))))
    assert [(e, n) for e, n, _, _ in defense.seen] == [(0, 3), (1, 3), (2, 3)]
    assert [lr for *_, lr in defense.seen] == [0.1, 0.05, 0.0]  # the lr the hook set is the one the next epoch used
    for (epoch, _, metrics, _), row in zip(defense.seen, hist.to_dict()["epochs"]):
        assert metrics["epoch"] == epoch and metrics["eval_clean_acc"] == row["eval_clean_acc"]
        assert metrics["loss"] == row["loss"] and "time_s" not in metrics
    assert hist["lr_next"] == [0.05, 0.0, 0.0]  # the returned mapping lands in the history
    # with lr 0 the SGD step p -= lr * v changes nothing: epoch 3 leaves the weights where epoch 2 ended
    last_of_epoch_2 = [p for e, p in snapshots if e == 1][-1]
    _assert_equal(_params(model), last_of_epoch_2)


def test_bad_arguments_are_explained():
    with pytest.raises(ValueError, match="epochs"):
        fit(_model(), _data(), epochs=0)
    with pytest.raises(ValueError, match="checkpoint_dir"):
        fit(_model(), _data(), resume=True)
    with pytest.raises(TypeError, match="train_data"):
        fit(_model(), [1, 2, 3], progress=False)
    with pytest.raises(ValueError, match="optimizer"):
        fit(_model(), _data(), optimizer="lbfgs", progress=False)


def test_save_atomic_replaces_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "last.pt"
    save_atomic({"a": torch.arange(3)}, path)
    save_atomic({"a": torch.arange(5)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.arange(5))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_resume_from_epoch_checkpoint_equals_uninterrupted(tmp_path):
    data = _data()
    ref = _model()
    fit(ref, data, AdvCE(), epochs=3, batch_size=32, lr=1e-2, progress=False)
    part = _model()
    fit(part, data, AdvCE(), epochs=2, batch_size=32, lr=1e-2, progress=False, checkpoint_dir=tmp_path)
    ck = load_checkpoint(tmp_path)
    assert (ck["epoch"], ck["batch"]) == (2, 0)
    resumed = _model(seed=99)  # different init: everything must come from the checkpoint
    hist = fit(resumed, data, AdvCE(), epochs=3, batch_size=32, lr=1e-2, progress=False, checkpoint_dir=tmp_path,
               resume=True)
    assert len(hist) == 3
    _assert_equal(_params(resumed), _params(ref))


WORKER = textwrap.dedent(
    """
    import sys, time, torch
    torch.set_num_threads(1)
    sys.path.insert(0, {tests!r})
    from test_training import AdvCE, _data, _model
    from toolkit_core.training import fit

    def on_batch_end(epoch, batch, logs):
        print(f"BATCH {{epoch}} {{batch}}", flush=True)
        time.sleep(0.03)

    model = _model()
    fit(model, _data(), AdvCE(), epochs=3, batch_size=32, lr=1e-2, progress=False, checkpoint_dir=sys.argv[1],
        on_batch_end=on_batch_end)
    print("DONE", flush=True)
    """
)


def test_kill_with_sigterm_then_resume_is_bit_for_bit(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(Path(__file__).parent)))
    ckdir = tmp_path / "ck"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, str(script), str(ckdir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        for line in proc.stdout:
            if line.strip() == "BATCH 1 2" or time.monotonic() > deadline:
                break
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == -signal.SIGTERM, f"worker exit {rc}: {proc.stderr.read()[-2000:]}"
    ck = load_checkpoint(ckdir)
    assert ck["epoch"] == 1 and 3 <= ck["batch"] < 8, (ck["epoch"], ck["batch"])  # stopped mid-epoch
    assert [p.name for p in ckdir.iterdir()] == ["last.pt"]

    resumed = _model(seed=123)
    fit(resumed, _data(), AdvCE(), epochs=3, batch_size=32, lr=1e-2, progress=False, checkpoint_dir=ckdir,
        resume=True)
    ref = _model()
    fit(ref, _data(), AdvCE(), epochs=3, batch_size=32, lr=1e-2, progress=False)
    _assert_equal(_params(resumed), _params(ref))


DDP_WORKER = textwrap.dedent(
    """
    import os, sys
    import torch
    import torch._dynamo  # noqa: F401  (imported once here, before the fork, instead of in every rank)
    import torch.multiprocessing as mp
    import toolkit_core as tt
    from toolkit_core.data import load_digits
    from toolkit_core.models import DigitsCNN
    from toolkit_core.training import fit

    def run(rank, out, port, data, defense):
        # exactly what torchrun provides; fit() initializes (gloo) and destroys the process group itself
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank),
                          LOCAL_RANK=str(rank))
        torch.set_num_threads(1)
        torch.manual_seed(rank)  # different inits: DDP must broadcast rank 0's weights
        model = DigitsCNN(size=8, width=4, hidden=16)
        hist = fit(model, data, defense, epochs=2, batch_size=32, lr=1e-2, progress=False, device="cpu",
                   checkpoint_dir=os.path.join(out, "ck"))
        torch.save({"params": model.state_dict(), "loss": hist["loss"]}, os.path.join(out, f"rank{rank}.pt"))

    if __name__ == "__main__":
        x, y = load_digits(8, "train").tensors  # data and plugins are loaded once, before the fork
        attack = tt.create("pgd", eps=0.1, alpha=0.05, steps=2, random_start=False)
        defense = tt.create("pgd_at", attack=attack)
        args = (sys.argv[1], int(sys.argv[2]), (x[:256], y[:256]), defense)
        mp.start_processes(run, args=args, nprocs=2, start_method="fork")
    """
)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_gloo_ranks_agree_and_match_one_process(tmp_path):
    import toolkit_core as tt

    script = tmp_path / "ddp.py"
    script.write_text(DDP_WORKER)
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    proc = subprocess.run([sys.executable, str(script), str(tmp_path), str(_free_port())], capture_output=True,
                          text=True, timeout=300, env={**env, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    _assert_equal(r0["params"], r1["params"])  # identical across ranks
    assert r0["loss"] == r1["loss"]  # the history is averaged over ranks
    ck = load_checkpoint(tmp_path / "ck")
    assert ck["world_size"] == 2 and len(ck["rng"]) == 2 and (ck["epoch"], ck["batch"]) == (2, 0)

    x, y = load_digits(8, "train").tensors
    torch.manual_seed(0)
    model = DigitsCNN(size=8, width=4, hidden=16)
    attack = tt.create("pgd", eps=0.1, alpha=0.05, steps=2, random_start=False)
    hist = fit(model, (x[:256], y[:256]), tt.create("pgd_at", attack=attack), epochs=2, batch_size=32, lr=1e-2,
               progress=False, device="cpu")
    one = _params(model)
    for k in one:
        assert torch.allclose(one[k], r0["params"][k], atol=1e-4, rtol=1e-4), (
            f"{k}: one process and two ranks differ by {float((one[k] - r0['params'][k]).abs().max()):.3g}"
        )
    assert hist["loss"] == pytest.approx(r0["loss"], abs=1e-4)


def test_fit_prints_each_epoch_once(capsys):
    import torch

    from toolkit_core.models import DigitsCNN
    from toolkit_core.training import fit

    x, y = torch.rand(64, 1, 8, 8), torch.arange(64) % 10
    fit(DigitsCNN(8, 4, 8), torch.utils.data.TensorDataset(x, y), epochs=2, batch_size=32, progress=True, seed=0)
    out = capsys.readouterr().out
    assert out.count("epoch 1/2") == 1 and out.count("epoch 2/2") == 1, out
