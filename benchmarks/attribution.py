"""Speed and memory of the modified-backprop attributions, as ratios to plain gradient saliency.

For VGG-16 and ResNet-50 (torchvision, weights=None, eval) at 224x224, batch 4, on the CPU (add
``--models vit_b_16 convnext_tiny`` for the transformer/modern-CNN rows; methods a model has no rule
for are reported as refused):

* time: median of ``--repeats`` (default 5) calls after one warm-up, for the saliency reference
  ``torch.autograd.grad(logits[target].sum(), x)`` and for every method, in the same process, the
  methods taking turns in each round; printed as ``method / saliency``. ``/lowmem`` rows run LRP
  with ``low_memory=True`` (recompute layer outputs in the backward pass).
* memory: peak resident-set-size increase during one call, measured in a fresh child process per
  (model, method) -- a thread samples ``/proc/self/statm`` every 0.5 ms while the call runs. The
  child sets ``MALLOC_MMAP_THRESHOLD_=65536`` so that glibc serves large tensors with ``mmap`` and
  returns them on free; otherwise the allocator's dynamic threshold keeps freed memory in the heap and
  the baseline drifts. (``tracemalloc`` does not see torch's allocations; the CPU has no
  ``max_memory_allocated``.) Printed as ``method peak / saliency peak``.

Run: ``python benchmarks/attribution.py`` (add ``--models resnet50 --repeats 3`` for less time).
``--device cuda``: model and batch on the GPU, the clock read after ``torch.cuda.synchronize``;
memory is then the peak of ``torch.cuda.max_memory_allocated`` above what was allocated before the
call, measured in the same process (benchmarks/gpu.py runs it with a small budget).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

METHODS: dict[str, tuple[str, dict]] = {
    "saliency": ("saliency", {}),
    "gbp": ("gbp", {}),
    "deconvnet": ("deconvnet", {}),
    "rectgrad": ("rectgrad", {}),
    "lrp_epsilon": ("lrp", {}),
    "epsilon_plus_flat": ("lrp", {"composite": "epsilon_plus_flat"}),
    "epsilon_gamma_box": ("lrp", {"composite": "epsilon_gamma_box", "low": 0.0, "high": 1.0}),
    "lrp_epsilon/lowmem": ("lrp", {"low_memory": True}),
    "epsilon_plus_flat/lowmem": ("lrp", {"composite": "epsilon_plus_flat", "low_memory": True}),
    "epsilon_gamma_box/lowmem": ("lrp", {"composite": "epsilon_gamma_box", "low_memory": True, "low": 0.0,
                                         "high": 1.0}),
}
#: the issue's targets apply to the default modes; the /lowmem rows show the option's trade-off
TARGETS = {"gbp": 1.3, "deconvnet": 1.3, "rectgrad": 1.3, "lrp_epsilon": 2.0, "epsilon_plus_flat": 2.0,
           "epsilon_gamma_box": 2.5}


def _setup(model_name: str, batch: int, size: int, device: str = "cpu"):
    import torch
    import torchvision

    torch.manual_seed(0)
    model = getattr(torchvision.models, model_name)(weights=None).eval().to(device)
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    return model, x


def _sync(x) -> None:
    import torch

    if x.is_cuda:
        torch.cuda.synchronize(x.device)


def cuda_memory(model, x, key: str) -> int:
    """Peak CUDA memory (bytes) one call allocates above what was allocated before it."""
    import torch

    run = _runner(key)
    _sync(x)
    base = torch.cuda.memory_allocated(x.device)
    torch.cuda.reset_peak_memory_stats(x.device)
    run(model, x, 0)
    _sync(x)
    return torch.cuda.max_memory_allocated(x.device) - base


def _runner(key: str):
    import torch

    import toolkit_core as tt

    name, params = METHODS[key]
    if name == "saliency":
        def saliency(model, x, target):
            xr = x.detach().requires_grad_(True)
            logits = model(xr)
            (g,) = torch.autograd.grad(logits[:, target].sum(), xr)
            return g
        return saliency
    method = tt.create(name, **params)
    return lambda model, x, target: method(model, x, target)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_child(model_name: str, key: str, batch: int, size: int) -> None:
    """Entry point of the child process: print the peak RSS increase of one call (bytes)."""
    model, x = _setup(model_name, batch, size)
    run = _runner(key)
    small = x[:1].clone()  # (full size: ViT accepts only its image size)
    run(model, small, 0)  # import and initialize lazily loaded code on a tiny input
    peak, stop = [0], threading.Event()
    base = _rss()

    def poll():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.0005)

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    run(model, x, 0)
    stop.set()
    t.join()
    print("PEAK" + json.dumps(max(peak[0], _rss()) - base))


def measure_memory(model_name: str, key: str, batch: int, size: int) -> int:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    code = (f"import sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); "
            f"import attribution as b; b.memory_child({model_name!r}, {key!r}, {batch}, {size})")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("PEAK")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"memory child failed for {model_name}/{key}:\n{proc.stderr[-2000:]}")
    return int(json.loads(lines[-1][4:]))


def measure_times(model, x, keys: list[str], repeats: int) -> dict[str, float]:
    """Median time per method; the methods take turns in every round so that load drift on a shared
    machine hits all of them alike."""
    runners = {k: _runner(k) for k in keys}
    for k in keys:
        runners[k](model, x, 0)  # warm-up
    times: dict[str, list[float]] = {k: [] for k in keys}
    for _ in range(repeats):
        for k in keys:
            _sync(x)
            t0 = time.perf_counter()
            runners[k](model, x, 0)
            _sync(x)
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["vgg16", "resnet50"])
    p.add_argument("--methods", nargs="+", default=list(METHODS))
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    args = p.parse_args(argv)
    import torch

    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: CUDA is not available here")

    all_keys = ["saliency"] + [k for k in args.methods if k != "saliency"]
    where = torch.cuda.get_device_name(args.device) if cuda else f"{torch.get_num_threads()} threads, CPU"
    print(f"torch {torch.__version__}, {where}, batch {args.batch}, "
          f"{args.size}x{args.size}, median of {args.repeats} after 1 warm-up")
    rows = []
    for model_name in args.models:
        model, x = _setup(model_name, args.batch, args.size, args.device)
        usable = []
        for k in all_keys:
            try:
                _runner(k)(model, x[:1], 0)
                usable.append(k)
            except Exception as e:  # e.g. RectGrad has no rule for a GELU
                print(f"{model_name}/{k}: refused ({str(e).split('. To add')[0][:150]})")
        keys = usable
        times = measure_times(model, x, keys, args.repeats)
        if args.no_memory:
            mems = {}
        elif cuda:
            mems = {k: cuda_memory(model, x, k) for k in keys}
        else:
            mems = {k: measure_memory(model_name, k, args.batch, args.size) for k in keys}
        print(f"\n{model_name}: saliency {times['saliency']:.3f} s"
              + ("" if args.no_memory else f", peak +{mems['saliency'] / 2**20:.0f} MiB"))
        print(f"{'method':<26}{'time':>9}{'ratio':>8}{'target':>8}{'mem MiB':>9}{'mem ratio':>11}")
        for k in keys:
            ratio = times[k] / times["saliency"]
            mem = mems.get(k)
            mratio = mem / mems["saliency"] if mem is not None else float("nan")
            row = {"model": model_name, "method": k, "time_s": times[k], "time_ratio": ratio,
                   "mem_mib": None if mem is None else mem / 2**20, "mem_ratio": mratio}
            rows.append(row)
            target = TARGETS.get(k)
            print(f"{k:<26}{times[k]:>9.3f}{ratio:>8.2f}{'<=' + str(target) if target else '':>8}"
                  f"{'' if mem is None else f'{mem / 2**20:.0f}':>9}{mratio:>11.2f}")
    return rows


if __name__ == "__main__":
    main()
