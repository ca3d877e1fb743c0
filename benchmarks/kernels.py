"""Every Triton kernel the toolkit keeps, timed against its PyTorch reference on a CUDA GPU.

    python benchmarks/kernels.py            # CUDA: one row per kernel; CPU: says so and exits 0

For each kernel: the Triton time as a ratio to the PyTorch reference (< 1: the kernel pays), and the
kernel's achieved bandwidth (bytes of its tensor arguments read plus its output written, divided by
its time) as a share of a plain device copy's bandwidth measured in the same run. The kernel policy
(docs/architecture.md, "Kernel policy"): a Triton kernel exists only where it fuses real work --
several passes over memory into one -- and must show it here.
"""

from __future__ import annotations

import sys

import torch

SIZE = 1 << 24  # elements of the large elementwise inputs (64 MiB in float32)


def _inputs(name: str, device: str) -> tuple | None:
    """Realistic, large inputs for each kernel (None: use its declared examples)."""
    g = torch.Generator(device=device).manual_seed(0)
    rand = lambda *s: torch.rand(*s, generator=g, device=device)  # noqa: E731
    randn = lambda *s: torch.randn(*s, generator=g, device=device)  # noqa: E731
    if name == "torchtrust_gbp::guided_relu_grad":
        return randn(64, 256, 32, 32), rand(64, 256, 32, 32) > 0.5
    if name == "torchtrust_lrp::stabilized_divide":
        return randn(64, 256, 32, 32), randn(64, 256, 32, 32), 1e-6
    if name == "torchtrust_rectgrad::rectify":
        return randn(64, 256, 32, 32).clamp(min=0), randn(64, 256, 32, 32), 98.0
    if name in ("torchtrust_pgd::linf_step", "torchtrust_pgd::l2_step"):
        x0 = rand(256, 3, 224, 224)
        return (x0 + (rand(256, 3, 224, 224) - 0.5) * 0.03).clamp(0, 1), randn(256, 3, 224, 224), x0, 2 / 255, 8 / 255
    if name == "torchtrust_alp::weighted_pair_loss":
        z = randn(4096, 1000)
        return z, z + 0.5 * randn(4096, 1000), rand(4096) + 0.1
    if name == "torchtrust_mmc::knn":
        return rand(4096, 64), rand(16384, 64), 16
    if name == "torchtrust_features::class_scatter":
        return randn(65536, 512), torch.randint(0, 100, (65536,), generator=g, device=device), 100
    return None


def _nbytes(obj) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, (tuple, list)):
        return sum(_nbytes(o) for o in obj)
    return 0


def _time(fn, reps: int = 20) -> float:
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    best = float("inf")
    for _ in range(3):
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        torch.cuda.synchronize()
        best = min(best, start.elapsed_time(end) / reps / 1e3)
    return best


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device: the kernel benchmark needs a GPU (Triton kernels are checked on CPU by the "
              "interpreter test, tests/test_kernels.py). Nothing to measure.")
        return 0
    import toolkit_core as tt
    from toolkit_core import kernels

    for kind in ("attribution", "attack", "defense", "prior", "metric"):
        for name in tt.list_methods(kind):
            try:
                _ = tt.get_info(name).cls  # importing the plugin declares its kernels
            except Exception:
                pass
    import toolkit_core.features  # noqa: F401 - declares the core's kernel

    device = "cuda"
    src = torch.empty(SIZE * 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    copy_t = _time(lambda: dst.copy_(src))
    copy_bw = 2 * src.numel() * 4 / copy_t
    print(f"device: {torch.cuda.get_device_name()}; plain copy {copy_bw / 1e9:.0f} GB/s")
    print(f"{'kernel':40s} {'reference ms':>12s} {'triton ms':>10s} {'ratio':>7s} {'bandwidth share':>16s}")
    for name, k in sorted(kernels.all_kernels().items()):
        if not k.has_triton or name.startswith("tt_test::"):
            continue
        args = _inputs(name, device)
        if args is None:
            args = k.examples(torch.float32, device)[0]
        try:
            ref_t = _time(lambda k=k, args=args: k.reference(*args))
            tri_t = _time(lambda k=k, args=args: k.triton(*args))
        except Exception as e:  # report, keep going
            print(f"{name:40s} failed: {type(e).__name__}: {e}")
            continue
        out = k.triton(*args)
        moved = _nbytes(args) + _nbytes(out)
        share = moved / tri_t / copy_bw
        print(f"{name:40s} {ref_t * 1e3:12.3f} {tri_t * 1e3:10.3f} {tri_t / ref_t:7.2f} {share:16.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
