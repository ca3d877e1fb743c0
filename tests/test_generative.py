"""toolkit_core.generative: mode statistics, Frechet distance, the GAN loop (checkpoint/resume)."""

from __future__ import annotations

import copy
import math
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import toolkit_core as tt
from toolkit_core.data import GRID_MODES, GRID_STD, RING_MODES, RING_STD, ring8
from toolkit_core.generative import frechet_distance, mode_statistics, train_gan, train_gan_with_lr_drop
from toolkit_core.generative.gan import CHECKPOINT_NAME
from toolkit_core.models import MLP


def test_mode_statistics_hand_made():
    # 3 samples on mode 0, 1 on mode 2 (2 std away), 1 sample 4 std from mode 5, 1 far away
    s = torch.stack([
        RING_MODES[0], RING_MODES[0], RING_MODES[0] + torch.tensor([0.0, 0.01]),
        RING_MODES[2] + torch.tensor([0.02, 0.0]), RING_MODES[5] + torch.tensor([0.04, 0.0]),
        torch.tensor([0.0, 0.0]),
    ])
    out = mode_statistics(s, RING_MODES, RING_STD)
    assert out["modes_captured"] == 2
    assert out["high_quality_fraction"] == pytest.approx(4 / 6)
    p = np.array([3 / 4, 1 / 4])
    assert out["reverse_kl"] == pytest.approx(float((p * np.log(p * 8)).sum()))
    assert out["counts"].tolist() == [3, 0, 1, 0, 0, 0, 0, 0]


def test_mode_statistics_perfect_and_collapsed():
    perfect = GRID_MODES.repeat(4, 1)
    out = mode_statistics(perfect, GRID_MODES, GRID_STD)
    assert out["modes_captured"] == 25 and out["high_quality_fraction"] == 1.0
    assert out["reverse_kl"] == pytest.approx(0.0, abs=1e-12)
    collapsed = GRID_MODES[:1].repeat(10, 1)
    assert mode_statistics(collapsed, GRID_MODES, GRID_STD)["reverse_kl"] == pytest.approx(math.log(25))
    assert mode_statistics(torch.full((5, 2), 100.0), GRID_MODES, GRID_STD)["reverse_kl"] == pytest.approx(math.log(25))


def test_mode_metrics_plugins_on_samples_and_generators():
    x, _ = ring8(800, seed=0)
    names = ("modes_captured", "high_quality_fraction", "reverse_kl")
    got = {n: tt.create(n, mixture="ring").compute(None, x) for n in names}
    assert got["modes_captured"] == {"modes_captured": 8}
    assert got["high_quality_fraction"]["high_quality_fraction"] >= 0.99
    assert got["reverse_kl"]["reverse_kl"] < 0.01
    # a generator that maps every latent to mode 3 captures exactly one mode
    gen = torch.nn.Linear(2, 2)
    with torch.no_grad():
        gen.weight.zero_()
        gen.bias.copy_(RING_MODES[3])
    out = tt.create("modes_captured").compute(gen, (torch.randn(100, 2), None))
    assert out == {"modes_captured": 1}
    with pytest.raises(ValueError, match="shape"):
        tt.create("reverse_kl").compute(None, torch.zeros(10, 3))
    from toolkit_core.generative import mixture_spec

    with pytest.raises(ValueError, match="mixture"):
        mixture_spec("spiral")


def test_frechet_distance_formula():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4000, 3, generator=g)
    b = torch.randn(4000, 3, generator=g) * 2 + torch.tensor([1.0, 0.0, -1.0])
    # N(0, I) vs N(m, 4I): |m|^2 + tr(I + 4I - 2*2I) = 2 + 3
    assert frechet_distance(a, b) == pytest.approx(5.0, rel=0.05)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # a feature map is applied to both sides: a scale by 3 multiplies the distance by 9
    assert frechet_distance(a, b, features=lambda t: 3 * t) == pytest.approx(9 * frechet_distance(a, b), rel=1e-6)


def _mmc():
    return tt.create("mmc", dim=1, kicks=0, embedding="none")  # the raw 1-D code: tiny nets take 1 + noise inputs


def _tiny(seed=0):
    torch.manual_seed(seed)
    return MLP((2, 16, 2)), MLP((2, 16, 1))


def test_train_gan_resume_equals_uninterrupted(tmp_path):
    x, _ = ring8(96, seed=0)
    G, D = _tiny()
    full = train_gan(G, D, x, _mmc(), epochs=3, pair_weight=1.0, noise_dim=1,
                     batch_size=32, seed=0, progress=False)
    G2, D2 = _tiny()
    train_gan(G2, D2, x, _mmc(), epochs=2, pair_weight=1.0, noise_dim=1,
              batch_size=32, seed=0, progress=False, checkpoint_dir=tmp_path)
    G3, D3 = _tiny(seed=5)  # different init: everything must come from the checkpoint
    resumed = train_gan(G3, D3, x, _mmc(), epochs=3, pair_weight=1.0, noise_dim=1,
                        batch_size=32, seed=0, progress=False, checkpoint_dir=tmp_path, resume=True)
    for a, b in zip(G.state_dict().values(), G3.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(D.state_dict().values(), D3.state_dict().values()):
        assert torch.equal(a, b)
    assert [r["d_loss"] for r in full.epochs] == [r["d_loss"] for r in resumed.epochs]
    assert len(resumed) == 3 and all(r["pair_loss"] > 0 for r in resumed.epochs)
    assert not list(tmp_path.glob("*.tmp"))


def test_train_gan_with_lr_drop_is_two_train_gan_calls():
    """8 epochs: 6 at lr, then 2 at lr / 10 with fresh Adam state and seed + 7919; the prior fitted once."""
    x, _ = ring8(96, seed=0)
    G, D = _tiny()
    hs = train_gan_with_lr_drop(G, D, x, _mmc(), epochs=8, lr=1e-3, pair_weight=1.0, noise_dim=1,
                                batch_size=32, seed=3, progress=False)
    G2, D2 = _tiny()
    prior = _mmc()
    train_gan(G2, D2, x, prior, epochs=6, lr=1e-3, pair_weight=1.0, noise_dim=1, batch_size=32, seed=3,
              progress=False)
    train_gan(G2, D2, x, prior, epochs=2, lr=1e-4, pair_weight=1.0, noise_dim=1, batch_size=32, seed=3 + 7919,
              progress=False, fit_prior=False)
    assert [len(h) for h in hs] == [6, 2]
    for a, b in zip([*G.state_dict().values(), *D.state_dict().values()],
                    [*G2.state_dict().values(), *D2.state_dict().values()]):
        assert torch.equal(a, b)
    G3, D3 = _tiny()  # no drop (or fewer than 4 epochs): one call at lr
    assert [len(h) for h in train_gan_with_lr_drop(G3, D3, x, _mmc(), epochs=3, lr=1e-3, noise_dim=1,
                                                           progress=False)] == [3]


def test_train_gan_pairing_fits_the_codes():
    """With only the pairing term active (lr on D = irrelevant, mu large), G(c_i, 0) approaches x_i."""
    x, _ = ring8(64, seed=1)
    prior = tt.create("mmc", dim=1, kicks=0)  # sinusoidal code features: 14 generator inputs
    G, D = MLP((prior.dim, 64, 64, 2)), MLP((2, 16, 1))
    h = train_gan(G, D, x, prior, epochs=60, pair_weight=50.0, batch_size=64, lr=3e-3, progress=False)
    assert h.epochs[-1]["pair_loss"] < 0.25 * h.epochs[0]["pair_loss"]


def test_train_gan_pairing_samples_the_noise_dimensions():
    """The pairing term feeds G([c_i, n_i]) with n_i ~ N(0, 1), not the noise fixed at 0."""
    x, _ = ring8(64, seed=2)
    prior = tt.create("mmc", dim=1, kicks=0).fit(x)
    seen = []

    class Recording(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = MLP((prior.dim + 1, 8, 2))

        def forward(self, z):
            seen.append(z.detach().clone())
            return self.net(z)

    train_gan(Recording(), MLP((2, 8, 1)), x, prior, epochs=2, pair_weight=1.0, noise_dim=1, batch_size=32,
              progress=False)
    codes = prior.codes
    paired = [z for z in seen if (z[:, None, :-1] == codes[None]).all(-1).any(1).all()]  # rows are exact codes
    assert len(paired) == 4  # 2 epochs x 2 batches
    noise = torch.cat([z[:, -1] for z in paired])
    assert noise.abs().min() > 0 and 0.6 < float(noise.std()) < 1.5


def test_train_gan_bad_input():
    G, D = _tiny()
    with pytest.raises(ValueError, match="resume"):
        train_gan(G, D, torch.randn(10, 2), tt.create("gaussian"), epochs=1, resume=True)
    with pytest.raises(ValueError, match="NaN"):
        train_gan(G, D, torch.full((10, 2), float("nan")), tt.create("gaussian"), epochs=1)
    with pytest.raises(ValueError, match="pair_weight"):
        train_gan(G, D, torch.randn(10, 2), tt.create("gaussian"), epochs=1, pair_weight=-1.0)


GAN_DDP_WORKER = textwrap.dedent(
    """
    import os, sys
    import torch
    import torch.multiprocessing as mp
    import toolkit_core as tt
    from toolkit_core.data import ring8
    from toolkit_core.generative import train_gan
    from toolkit_core.models import MLP

    def nets(seed):
        torch.manual_seed(seed)
        return MLP((2, 16, 2)), MLP((2, 16, 1))

    def run(rank, out, ports, x):
        torch.set_num_threads(1)
        def env(port):  # what torchrun provides; train_gan creates and destroys the gloo group itself
            os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank),
                              LOCAL_RANK=str(rank))
        kw = dict(pair_weight=1.0, noise_dim=1, batch_size=32, seed=0, progress=False, device="cpu")
        env(ports[0])
        G, D = nets(rank)  # different inits per rank: rank 0's weights must be broadcast
        hist = train_gan(G, D, x, tt.create("mmc", dim=1, kicks=0, embedding="none"), epochs=2,
                         checkpoint_dir=os.path.join(out, "full"), **kw)
        env(ports[1])
        G2, D2 = nets(rank)
        train_gan(G2, D2, x, tt.create("mmc", dim=1, kicks=0, embedding="none"), epochs=1,
                  checkpoint_dir=os.path.join(out, "part"), **kw)
        env(ports[2])
        G3, D3 = nets(10 + rank)  # everything must come from the checkpoint
        resumed = train_gan(G3, D3, x, tt.create("mmc", dim=1, kicks=0, embedding="none"), epochs=2, resume=True,
                            checkpoint_dir=os.path.join(out, "part"), **kw)
        torch.save({"full": (G.state_dict(), D.state_dict()), "resumed": (G3.state_dict(), D3.state_dict()),
                    "hist": [e["d_loss"] for e in hist.epochs], "hist_resumed": [e["d_loss"] for e in resumed.epochs]},
                   os.path.join(out, f"rank{rank}.pt"))

    if __name__ == "__main__":
        x, _ = ring8(96, seed=0)
        tt.create("mmc", dim=1, kicks=0, embedding="none").fit(x)  # compile the path solver once, before the fork
        ports = [int(p) for p in sys.argv[2:5]]
        mp.start_processes(run, args=(sys.argv[1], ports, x), nprocs=2, start_method="fork")
    """
)


def test_train_gan_two_gloo_ranks_agree_and_resume_bit_for_bit(tmp_path):
    ports = []
    for _ in range(3):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(str(s.getsockname()[1]))
    script = tmp_path / "gan_ddp.py"
    script.write_text(GAN_DDP_WORKER)
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    repo = str(Path(__file__).resolve().parents[1])
    proc = subprocess.run([sys.executable, str(script), str(tmp_path), *ports], capture_output=True, text=True,
                          timeout=300, env={**env, "PYTHONPATH": repo})
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for key in ("full", "resumed"):
        for a, b in zip(r0[key], r1[key]):  # generator and discriminator identical on both ranks
            assert all(torch.equal(a[k], b[k]) for k in a)
    for a, b in zip(r0["full"], r0["resumed"]):  # an interrupted two-process run resumes bit for bit
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert r0["hist"] == r1["hist"] == r0["hist_resumed"]  # the epoch means are reduced over ranks
    ck = torch.load(tmp_path / "full" / CHECKPOINT_NAME, weights_only=True)
    assert ck["world_size"] == 2 and len(ck["rng"]) == 2
    assert not torch.equal(ck["rng"][0]["torch"], ck["rng"][1]["torch"])  # each rank draws its own latents


# --------------------------------------------------------------------------- pair_noise: the noise in the pairing term


def _weights(*nets):
    return [t.clone() for net in nets for t in net.state_dict().values()]


def test_pair_noise_sampled_is_the_default_bit_for_bit():
    """``pair_noise="sampled"`` is the behaviour without the argument (also checked once against the code
    before the option existed: identical weights for train_gan and train_gan_with_lr_drop)."""
    x, _ = ring8(96, seed=0)
    for fn, kw in ((train_gan, {}), (train_gan_with_lr_drop, {"lr": 1e-3})):
        runs = []
        for extra in ({}, {"pair_noise": "sampled"}):
            torch.manual_seed(0)
            G, D = MLP((3, 16, 2)), MLP((2, 16, 1))
            h = fn(G, D, x, _mmc(), epochs=4, pair_weight=1.0, noise_dim=2, batch_size=32, seed=1, progress=False,
                   **kw, **extra)
            hs = h if isinstance(h, list) else [h]
            losses = [(r["d_loss"], r["g_loss"], r["pair_loss"]) for hh in hs for r in hh.epochs]
            runs.append((_weights(G, D), losses, [hh.meta["pair_noise"] for hh in hs]))
        (w0, l0, m0), (w1, l1, m1) = runs
        assert all(torch.equal(a, b) for a, b in zip(w0, w1)) and l0 == l1
        assert set(m0) == set(m1) == {"sampled"}


def test_pair_noise_zero_is_the_pairing_loss_at_noise_zero():
    """One full batch: the recorded pair_loss is mean_i |G0([c_i, 0]) - x_i|^2 with the initial weights G0,
    evaluated here directly; "sampled" records mean_i |G0([c_i, n_i]) - x_i|^2 at random n_i, which differs."""
    x, _ = ring8(64, seed=2)
    k = 3
    torch.manual_seed(0)
    G0 = MLP((1 + k, 16, 2))
    pair = {}
    final = {}
    for mode in ("zero", "sampled"):
        G, D = copy.deepcopy(G0), MLP((2, 16, 1))
        prior = _mmc()
        h = train_gan(G, D, x, prior, epochs=1, pair_weight=1.0, noise_dim=k, batch_size=len(x), seed=0,
                      progress=False, pair_noise=mode)
        assert h.meta["pair_noise"] == mode
        pair[mode] = h.epochs[0]["pair_loss"]
        final[mode] = _weights(G)
    codes = torch.as_tensor(prior.codes).float()
    with torch.no_grad():
        direct = (G0(torch.cat([codes, torch.zeros(len(x), k)], 1)) - x).pow(2).sum(1).mean().item()
    assert pair["zero"] == pytest.approx(direct, rel=1e-6)
    assert abs(pair["sampled"] - direct) > 1e-3 * direct
    assert not all(torch.equal(a, b) for a, b in zip(final["zero"], final["sampled"]))


class _FoldedNoisePrior:
    """The MMC prior with k noise dims folded in and code [c_i, 0] (the earlier benchmarks' wrapper)."""

    name = "mmc"

    def __init__(self, mmc, k):
        self.mmc, self.k, self.dim = mmc, k, mmc.dim + k
        self.codes = torch.cat([torch.as_tensor(mmc.codes).float(), torch.zeros(len(mmc.codes), k)], 1)

    def sample(self, n):
        return torch.cat([torch.as_tensor(self.mmc.sample(n)).float(), torch.randn(n, self.k)], 1)


def test_pair_noise_zero_equals_the_folded_noise_prior_and_keeps_the_adversarial_noise():
    """"zero" with k noise dims is bit for bit the earlier definition (noise folded into the prior, codes
    [c_i, 0], noise_dim = 0): the adversarial term still samples the noise. Without pairing the option is moot."""
    x, _ = ring8(96, seed=0)
    k = 2
    mmc = _mmc().fit(x)
    runs = {}
    for name, prior, noise, mode, mu in (("zero", mmc, k, "zero", 1.0), ("folded", _FoldedNoisePrior(mmc, k), 0,
                                                                        "sampled", 1.0),
                                         ("gan-zero", mmc, k, "zero", 0.0), ("gan-sampled", mmc, k, "sampled", 0.0)):
        torch.manual_seed(0)
        G, D = MLP((1 + k, 16, 2)), MLP((2, 16, 1))
        train_gan(G, D, x, prior, epochs=3, pair_weight=mu, noise_dim=noise, batch_size=32, seed=4, progress=False,
                  pair_noise=mode, fit_prior=False)
        runs[name] = _weights(G, D)
    assert all(torch.equal(a, b) for a, b in zip(runs["zero"], runs["folded"]))
    assert all(torch.equal(a, b) for a, b in zip(runs["gan-zero"], runs["gan-sampled"]))
    assert not all(torch.equal(a, b) for a, b in zip(runs["zero"], runs["gan-zero"]))


def test_pair_noise_bad_value_names_the_choices_and_trains_nothing(tmp_path):
    x, _ = ring8(64, seed=0)
    G, D = _tiny()
    before = _weights(G, D)
    for fn, kw in ((train_gan, {}), (train_gan_with_lr_drop, {"lr": 1e-3})):
        with pytest.raises(ValueError, match=r"pair_noise must be one of 'sampled', 'zero'.*got 'zeros'"):
            fn(G, D, x, _mmc(), epochs=4, pair_weight=1.0, noise_dim=1, progress=False, pair_noise="zeros", **kw)
    assert all(torch.equal(a, b) for a, b in zip(before, _weights(G, D)))
    # a checkpoint remembers its pair_noise: resuming with the other one is refused
    train_gan(G, D, x, _mmc(), epochs=1, pair_weight=1.0, noise_dim=1, batch_size=32, progress=False,
              checkpoint_dir=tmp_path, pair_noise="zero")
    with pytest.raises(ValueError, match="trained with pair_noise='zero', not 'sampled'"):
        train_gan(G, D, x, _mmc(), epochs=2, pair_weight=1.0, noise_dim=1, batch_size=32, progress=False,
                  checkpoint_dir=tmp_path, resume=True)


def test_generative_pair_noise_setting_is_checked_with_its_line_and_reaches_train_gan(tmp_path, monkeypatch):
    import toolkit_core.generative as gen
    from toolkit_core.experiment import ConfigError, Experiment
    from toolkit_core.experiment.config import SETTINGS

    assert SETTINGS["generative"]["pair_noise"] == ("sampled", "sampled")  # full and quick default
    bad = tmp_path / "bad.toml"
    bad.write_text('stages = ["generative"]\n[generative]\nepochs = 2\npair_noise = "noise0"\n')
    with pytest.raises(ConfigError) as err:
        Experiment.from_toml(bad)
    assert [line for line, _ in err.value.problems] == [4]
    assert "generative.pair_noise: 'noise0' is not allowed; choose from 'sampled', 'zero'" in str(err.value)
    good = tmp_path / "good.toml"
    good.write_text('stages = ["generative"]\n[[priors]]\nname = "mmc"\ndim = 1\nkicks = 0\nembedding = "none"\n'
                    '[generative]\nmixtures = ["ring"]\nepochs = 1\ntrain_points = 40\nbatch_size = 20\n'
                    'samples = 40\nhidden = 8\npair_noise = "zero"\n')
    exp = Experiment.from_toml(good)
    assert exp.config.settings["generative"]["pair_noise"] == "zero"
    default = tmp_path / "default.toml"
    default.write_text('stages = ["generative"]\n[generative]\nepochs = 2\n')
    for quick in (False, True):
        assert Experiment.from_toml(default, quick=quick).config.settings["generative"]["pair_noise"] == "sampled"
    seen = []
    real = gen.train_gan_with_lr_drop

    def spy(*args, **kwargs):
        seen.append(kwargs.get("pair_noise"))
        return real(*args, **kwargs)

    monkeypatch.setattr(gen, "train_gan_with_lr_drop", spy)
    exp.run(tmp_path / "out", progress=False)
    assert seen == ["zero"]
