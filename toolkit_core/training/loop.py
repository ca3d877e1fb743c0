"""The training loop: :func:`fit`."""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from .. import precision as amp
from . import checkpoint as ckpt_io
from . import distributed as dist_utils
from .adversarial import accuracy, craft, unwrap_model
from .history import History
from .runtime import Runtime

OptimizerSpec = str | torch.optim.Optimizer | Callable[..., torch.optim.Optimizer]

#: Default learning rate per named optimizer (used when ``lr=None``).
DEFAULT_LR = {"adam": 1e-3, "sgd": 0.1}
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _PlainCE:
    """The loss when ``defense=None``: cross-entropy on the clean batch."""

    def start_epoch(self, epoch: int, epochs: int) -> None:
        pass

    def loss(self, model, x, y):
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        return loss, {"loss": float(loss.detach()), "clean_acc": accuracy(logits.detach(), y)}


def _resolve_defense(defense):
    if defense is None:
        return _PlainCE()
    if hasattr(defense, "loss") and hasattr(defense, "start_epoch"):  # a Defense, or any object like one
        return defense
    from ..catalog import resolve

    try:
        return resolve(defense, kind="defense")
    except TypeError as exc:
        raise TypeError(
            "defense must be None, a registered defense name, (name, params), a dict with 'name', or an object "
            f"with loss(model, x, y) and start_epoch(epoch, epochs): {exc}"
        ) from None


def _make_optimizer(spec: OptimizerSpec, params, lr: float | None, weight_decay: float) -> torch.optim.Optimizer:
    if isinstance(spec, torch.optim.Optimizer):
        if lr is not None:
            raise ValueError("lr was given together with an optimizer object; set the lr on the optimizer instead")
        return spec
    if isinstance(spec, str):
        name = spec.lower()
        if name not in DEFAULT_LR:
            raise ValueError(f"optimizer must be 'adam', 'sgd', an Optimizer or a factory, got {spec!r}")
        lr = DEFAULT_LR[name] if lr is None else lr
        if name == "adam":
            return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    if callable(spec):
        opt = spec(params) if lr is None else spec(params, lr=lr)
        if not isinstance(opt, torch.optim.Optimizer):
            raise TypeError(f"the optimizer factory must return a torch.optim.Optimizer, got {type(opt).__name__}")
        return opt
    raise TypeError(f"optimizer must be 'adam', 'sgd', an Optimizer or a factory, got {type(spec).__name__}")


def _as_dataset(data) -> Dataset:
    if isinstance(data, Dataset):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        if len(data[0]) != len(data[1]):
            raise ValueError(f"x and y have different lengths ({len(data[0])} and {len(data[1])})")
        return TensorDataset(data[0], data[1])
    raise TypeError(
        f"train_data must be a DataLoader, a Dataset or a tuple (x, y) of tensors, got {type(data).__name__}"
    )


def _make_loader(data, batch_size: int, ctx: dist_utils.DistContext, seed: int | None):
    """(loader, sampler-or-None). ``batch_size`` is the *global* batch; each rank loads its share."""
    if isinstance(data, DataLoader):
        if not ctx.distributed:
            return data, None
        dataset, global_batch = data.dataset, data.batch_size
        shuffle = isinstance(data.sampler, RandomSampler)
        extra = {"num_workers": data.num_workers, "collate_fn": data.collate_fn, "drop_last": data.drop_last,
                 "pin_memory": data.pin_memory}
    else:
        dataset, global_batch, shuffle, extra = _as_dataset(data), batch_size, True, {}
    if global_batch is None or global_batch < 1:
        raise ValueError(f"batch_size must be a positive integer, got {global_batch!r}")
    if global_batch % ctx.world_size:
        raise ValueError(
            f"the global batch size {global_batch} is not divisible by the world size {ctx.world_size}; "
            "choose a batch size that splits evenly across processes"
        )
    sampler = DistributedSampler(
        dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=shuffle, seed=seed or 0
    )
    return DataLoader(dataset, batch_size=global_batch // ctx.world_size, sampler=sampler, **extra), sampler


class _SignalGuard:
    """Turn SIGINT/SIGTERM into a flag checked between batches; restore the previous handlers on exit."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.received: int = 0
        self._previous: dict[int, Any] = {}

    def __enter__(self):
        if self.enabled:
            for s in _STOP_SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.received:  # a second signal: stop waiting for the batch to end
            self.restore()
            signal.raise_signal(signum)
            return
        self.received = signum

    def restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def __exit__(self, *exc):
        self.restore()
        return False


def _evaluate(model: nn.Module, data, attack, ctx: dist_utils.DistContext, seed: int,
              precision: str = "fp32") -> dict[str, float]:
    """Clean (and adversarial, if ``attack``) accuracy on ``data``, sharded over ranks, RNG untouched."""
    from ..data import iterate_batches

    base = unwrap_model(model)
    counts = torch.zeros(3, dtype=torch.float64)
    devices = [ctx.device] if ctx.device.type == "cuda" else []
    modes = [(m, m.training) for m in base.modules()]
    with torch.random.fork_rng(devices=devices), amp.autocast(precision, ctx.device):
        torch.manual_seed(seed)
        base.eval()
        try:
            for i, (x, y) in enumerate(iterate_batches(data, 256)):
                if i % ctx.world_size != ctx.rank:
                    continue
                x, y = x.to(ctx.device), y.to(ctx.device)
                with torch.no_grad():
                    counts[0] += float((base(x).argmax(1) == y).sum())
                if attack is not None:
                    x_adv = craft(attack, base, x, y)
                    with torch.no_grad():
                        counts[1] += float((base(x_adv).argmax(1) == y).sum())
                counts[2] += len(y)
        finally:
            for m, training in modes:
                m.training = training
    dist_utils.all_reduce_(counts, ctx)
    n = max(float(counts[2]), 1.0)
    out = {"eval_clean_acc": float(counts[0]) / n}
    if attack is not None:
        out["eval_adv_acc"] = float(counts[1]) / n
    return out


def _run_settings(defense, opt: torch.optim.Optimizer, weight_decay: float, batch_size: int, seed: int | None,
                  grad_clip: float | None, precision: str = "fp32") -> dict[str, Any]:
    """What determines the trajectory besides the epochs: a resume must match all of it.

    ``epochs`` is not part of it: resuming with more epochs continues to the new target. ``precision``
    is recorded only when it is not float32 (checkpoints written before it existed stay resumable).
    """
    from ..methods import Method

    extra = {} if precision == "fp32" else {"precision": precision}
    return {**extra, "defense": repr(defense) if isinstance(defense, Method) else type(defense).__qualname__,
            "optimizer": type(opt).__name__, "lr": [float(g["lr"]) for g in opt.param_groups],
            "weight_decay": float(weight_decay), "batch_size": int(batch_size), "seed": seed,
            "grad_clip": grad_clip}


def _stats_text(sums: dict[str, float], n: float) -> str:
    if n <= 0:
        return ""
    names = {"loss": "loss", "clean_acc": "clean", "adv_acc": "adv"}
    return "  ".join(f"{short} {sums[k] / n:.3f}" for k, short in names.items() if k in sums)


def fit(
    model: nn.Module,
    train_data,
    defense=None,
    *,
    epochs: int = 1,
    optimizer: OptimizerSpec = "adam",
    lr: float | None = None,
    weight_decay: float = 0.0,
    batch_size: int = 64,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    seed: int | None = 0,
    device: str | torch.device | None = None,
    eval_data=None,
    eval_attack=None,
    grad_clip: float | None = None,
    progress: bool = True,
    on_batch_end: Callable[[int, int, dict[str, float]], None] | None = None,
    precision: str = "fp32",
) -> History:
    """Train ``model`` on ``train_data`` with the objective of ``defense``; return a :class:`History`.

    Each epoch calls ``defense.start_epoch(epoch, epochs)``, then for every batch
    ``loss, logs = defense.loss(model, x, y)`` with the model in train mode, ``loss.backward()`` and
    an optimizer step; after the epoch (its logs averaged, ``eval_data`` evaluated) it calls
    ``defense.end_epoch(epoch, epochs, metrics, optimizer)`` if the defense has one, which may change
    the optimizer's learning rate and add keys to the epoch's history row
    (:meth:`toolkit_core.methods.Defense.end_epoch`). ``defense=None`` trains on plain cross-entropy; a
    string is created from the catalog (``fit(model, data, "pgd_at")``).

    Data: ``train_data`` is a DataLoader (used as is in one process), a Dataset, or a tuple ``(x, y)``.
    For Datasets and tuples ``batch_size`` is the *global* batch: under DDP each of the N ranks
    loads ``batch_size / N`` samples through a :class:`DistributedSampler` (in one process the same
    sampler gives the same seeded permutation, so one process and N processes see the same global
    batches). A DataLoader under DDP is rebuilt the same way, its ``batch_size`` taken as global.

    Optimizer: ``"adam"`` (default, ``lr=1e-3``), ``"sgd"`` (momentum 0.9, ``lr=0.1``), an Optimizer
    object, or a factory ``f(params, lr=...)``.

    Checkpoints (``checkpoint_dir``): ``last.pt`` is written atomically (temp file + ``os.replace``)
    at the end of every epoch and when SIGINT/SIGTERM arrives (at the end of the running batch; the
    signal is then re-raised with the previous handler, so SIGTERM still terminates the process and
    SIGINT still raises ``KeyboardInterrupt``). It holds the model, the optimizer, the defense's
    ``state_dict()`` if it has one, the RNG states of torch/numpy/python and of the loader's generator
    for every rank, the position (epoch, batch) and the history. With ``resume=True`` training continues
    from it bit-for-bit (CPU, same world size); without a checkpoint it starts fresh. A checkpoint
    written with other settings (defense and its parameters, optimizer, lr, weight decay, batch size,
    seed, grad_clip) is refused with a :class:`~toolkit_core.training.checkpoint.CheckpointError`; a
    larger ``epochs`` continues to the new target, a smaller one than the checkpoint holds is refused.
    Handlers are installed only inside ``fit`` (main thread, and only when ``checkpoint_dir`` is set).

    Determinism: ``seed`` seeds python, numpy and torch (``seed + rank`` under DDP, so each rank draws
    its own attack noise) and the data order; ``seed=None`` leaves the RNGs as they are.

    Distributed: under ``torchrun --nproc_per_node N`` (or with a process group already initialized)
    the model is wrapped in DistributedDataParallel (gloo on CPU, NCCL on GPU); only rank 0 shows the
    progress bar and writes checkpoints; the history is averaged over ranks.

    ``eval_data`` (optional): clean accuracy and, with ``eval_attack`` (default: the defense's
    ``attack`` if it has one), adversarial accuracy after every epoch, computed under a forked RNG so
    that evaluating does not change the training trajectory.
    ``on_batch_end(epoch, batch, logs)`` is called after every optimizer step.

    Mixed precision (``precision``, :mod:`toolkit_core.precision`): ``"fp32"`` (default); ``"bf16"``
    runs every forward pass and loss (adversarial examples included) under :func:`torch.autocast` with
    bfloat16, on CPU or GPU; ``"fp16"`` does the same with float16 and a
    :class:`torch.amp.GradScaler` (CUDA only: refused on a CPU). Weights, gradients and optimizer
    state stay float32, so the model comes back with its dtype.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs checkpoint_dir (the directory that holds last.pt)")
    if grad_clip is not None and not grad_clip > 0:
        raise ValueError(f"grad_clip must be a positive number or None, got {grad_clip!r}")
    amp.check_precision(precision, "cuda")  # the name only; fp16 on a CPU is refused once the device is known

    path = ckpt_io.checkpoint_path(checkpoint_dir) if checkpoint_dir is not None else None
    with Runtime(device, path, ckpt_io.FORMAT_VERSION, "toolkit_core.fit") as rt:
        return _fit(model, train_data, _resolve_defense(defense), rt, epochs=epochs, optimizer=optimizer, lr=lr,
                    weight_decay=weight_decay, batch_size=batch_size, checkpoint_dir=checkpoint_dir, resume=resume,
                    seed=seed, eval_data=eval_data, eval_attack=eval_attack, grad_clip=grad_clip,
                    progress=progress, on_batch_end=on_batch_end, precision=precision)


def _fit(model, train_data, defense, rt: Runtime, *, epochs, optimizer, lr, weight_decay, batch_size, checkpoint_dir,
         resume, seed, eval_data, eval_attack, grad_clip, progress, on_batch_end, precision) -> History:
    ctx = rt.ctx
    precision = amp.check_precision(precision, ctx.device)
    scaler = amp.grad_scaler(precision, ctx.device)
    model.to(ctx.device)
    ckpt = rt.load() if resume else None
    if seed is not None:
        rt.seed(seed)
    loader, sampler = _make_loader(train_data, batch_size, ctx, seed)
    if seed is not None and sampler is None and loader.generator is not None:
        loader.generator.manual_seed(seed)
    generator = loader.generator if sampler is None else None
    net = rt.wrap(model)
    opt = _make_optimizer(optimizer, model.parameters(), lr, weight_decay)
    if eval_attack is None and eval_data is not None:
        eval_attack = getattr(defense, "attack", None)
    history = History(meta={"world_size": ctx.world_size, "seed": seed, "defense": repr(defense)
                            if not isinstance(defense, _PlainCE) else "none", "precision": precision})
    start_epoch, start_batch = 0, 0
    settings = _run_settings(defense, opt, weight_decay, batch_size, seed, grad_clip, precision)
    if ckpt is not None:
        ckpt_io.check_settings(ckpt.get("settings"), settings, ckpt_io.checkpoint_path(checkpoint_dir))
        if int(ckpt["epoch"]) > epochs:
            raise ckpt_io.CheckpointError(
                f"the checkpoint in {checkpoint_dir} already holds {int(ckpt['epoch'])} epoch(s), more than the "
                f"epochs={epochs} asked for; pass epochs >= {int(ckpt['epoch'])} to continue, or resume=False to "
                "start afresh"
            )
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        if ckpt.get("defense") is not None and hasattr(defense, "load_state_dict"):
            defense.load_state_dict(ckpt["defense"])
        if scaler is not None and ckpt.get("scaler") is not None:
            scaler.load_state_dict(ckpt["scaler"])
        history = History.from_dict(ckpt["history"])
        start_epoch, start_batch = int(ckpt["epoch"]), int(ckpt["batch"])
        if start_batch == 0:
            ckpt_io.restore_rng(ckpt["rng"][ctx.rank], generator)
    n_batches = len(loader)

    def save(epoch: int, batch: int, sums: dict[str, float], epoch_rng: dict) -> None:
        if checkpoint_dir is None:
            return
        epoch_rngs = rt.gather(epoch_rng)
        rt.save({
            "epoch": epoch, "batch": batch, "epochs": epochs, "settings": settings, "model": model.state_dict(),
            "optimizer": opt.state_dict(), "defense": defense.state_dict() if hasattr(defense, "state_dict") else None,
            "history": history.to_dict(), "sums": dict(sums), "epoch_rng": epoch_rngs,
            "scaler": scaler.state_dict() if scaler is not None else None,
        }, generator)

    guard = _SignalGuard(enabled=checkpoint_dir is not None)
    stop_signal = 0
    with guard, rt.progress("fit", epochs * n_batches, progress) as bar:
        bar.advance(start_epoch * n_batches)
        for epoch in range(start_epoch, epochs):
            t0 = time.perf_counter()
            defense.start_epoch(epoch, epochs)
            if sampler is not None:
                sampler.set_epoch(epoch)
            first, interrupted = 0, False
            sums: dict[str, float] = {}
            if ckpt is not None and epoch == start_epoch and start_batch > 0:
                # mid-epoch resume: replay the loader from the epoch's start, skip the done batches
                epoch_rng = ckpt["epoch_rng"][ctx.rank]
                ckpt_io.restore_rng(epoch_rng, generator)
                it = iter(loader)
                for _ in range(start_batch):
                    next(it)
                ckpt_io.restore_rng(ckpt["rng"][ctx.rank], generator)
                first, sums = start_batch, dict(ckpt["sums"])
            else:
                epoch_rng = ckpt_io.capture_rng(generator)
                it = iter(loader)
            bar.update(description=f"epoch {epoch + 1}/{epochs}", info=_stats_text(sums, sums.get("_n", 0.0)))
            bar.advance(first)
            net.train()
            for b in range(first, n_batches):
                x, y = next(it)[:2]
                x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
                with amp.autocast(precision, ctx.device):
                    loss, logs = defense.loss(net, x, y)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"the training loss became {float(loss)} at epoch {epoch}, batch {b}; lower the learning "
                        "rate or check the data"
                    )
                opt.zero_grad(set_to_none=True)
                if scaler is None:
                    loss.backward()
                    if grad_clip is not None:
                        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                    opt.step()
                else:  # fp16: scaled loss; a step with inf/NaN gradients is skipped and the scale lowered
                    scaler.scale(loss).backward()
                    if grad_clip is not None:
                        scaler.unscale_(opt)
                        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                    scaler.step(opt)
                    scaler.update()
                n = float(len(y))
                for k, v in logs.items():
                    sums[k] = sums.get(k, 0.0) + float(v) * n
                sums["_n"] = sums.get("_n", 0.0) + n
                if on_batch_end is not None:
                    on_batch_end(epoch, b, dict(logs))
                bar.update(info=_stats_text(sums, sums["_n"]))
                bar.advance()
                if guard.enabled:
                    flag = torch.tensor([float(guard.received)])
                    stop_signal = int(dist_utils.all_reduce_(flag, ctx, op="max").item())
                    if stop_signal and b + 1 < n_batches:
                        save(epoch, b + 1, sums, epoch_rng)
                        interrupted = True
                        break
            if interrupted:
                break
            # epoch end: average over ranks, evaluate, checkpoint
            keys = sorted(sums)
            tot = dist_utils.all_reduce_(torch.tensor([sums[k] for k in keys], dtype=torch.float64), ctx)
            total_n = float(tot[keys.index("_n")])
            row: dict[str, float] = {"epoch": float(epoch)}
            row.update({k: float(v) / total_n for k, v in zip(keys, tot.tolist()) if k != "_n"})
            if eval_data is not None:
                row.update(_evaluate(net, eval_data, eval_attack, ctx, seed=(seed or 0) + 10_000 + epoch,
                                     precision=precision))
                net.train()
            end_epoch = getattr(defense, "end_epoch", None)
            if end_epoch is not None:
                extra = end_epoch(epoch, epochs, dict(row), opt)
                if extra:
                    row.update({str(k): float(v) for k, v in extra.items()})
            row["time_s"] = time.perf_counter() - t0
            history.epochs.append(row)
            if ctx.is_main and progress:
                print(
                    f"epoch {epoch + 1}/{epochs}: " + "  ".join(
                        f"{k} {v:.4f}" for k, v in row.items() if k not in ("epoch", "time_s") and math.isfinite(v)
                    ) + f"  ({row['time_s']:.1f}s)"
                )
            save(epoch + 1, 0, {}, ckpt_io.capture_rng(generator))
            if stop_signal:
                break
    if stop_signal:
        signal.raise_signal(stop_signal)  # the previous handler decides: SIGTERM exits, SIGINT raises
        raise KeyboardInterrupt(f"training stopped by signal {stop_signal}; checkpoint in {checkpoint_dir}")
    return history
