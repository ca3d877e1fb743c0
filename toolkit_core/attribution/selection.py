"""Per-sample percentiles by selection, and RectGrad's rectifying mask built on them.

``rectify(a, g, q) = where(a * g > tau, g, 0)`` with ``tau_b`` the q-th percentile (linear
interpolation, as :func:`torch.quantile`) of ``a_b * g_b`` over all non-batch dimensions: the step of
RectGrad's rule (:class:`.rules.RectifiedReLU`, Kim et al. 2019). This is the PyTorch reference; the
rectgrad plugin declares it as a kernel with a fused Triton version of the passes around the
selection.
"""

import math

import torch
from torch import Tensor

__all__ = ["SAMPLE_SIZE", "exact_threshold", "percentile_threshold", "rectify", "sample_index"]


def exact_threshold(s: Tensor, q: float) -> Tensor:
    """Per-row q-th percentile of ``s`` (shape (B, N)), linear interpolation, via ``kthvalue``.

    Equals ``torch.quantile(s, q / 100, dim=1)`` without its input-size limit and full sort.
    """
    lo, hi, frac = _ranks(s.shape[1], q)
    v_lo, v_hi = _exact_order_stats(s, lo, hi)
    return v_lo + frac * (v_hi - v_lo) if frac else v_lo


def percentile_threshold(s: Tensor, q: float) -> Tensor:
    """Per-row q-th percentile of ``s`` (shape (B, N)), exactly ``torch.quantile(s, q / 100, dim=1)``.

    Selection by sampling (Floyd and Rivest 1975): the order statistics of a fixed random sample of
    each row give a bound ``L`` that the two wanted order statistics lie above with overwhelming
    probability, so only the values ``>= L`` (a few percent of the row for q = 98) are ranked. The
    bound is verified by counting; rows where it fails take the full selection, so the result is
    always exact (for finite ``s``; the engine rejects non-finite inputs). Percentiles below the
    median run on ``-s``.
    """
    n = s.shape[1]
    lo, hi, frac = _ranks(n, q)
    if n < 4 * SAMPLE_SIZE or not s.dtype.is_floating_point:
        v_lo, v_hi = _exact_order_stats(s, lo, hi)
    elif q >= 50:
        v_lo, v_hi = _top_order_stats(s, lo, hi)
    else:
        neg_hi, neg_lo = _top_order_stats(-s, n - 1 - hi, n - 1 - lo)
        v_lo, v_hi = -neg_lo, -neg_hi
    return v_lo + frac * (v_hi - v_lo) if frac else v_lo


def _ranks(n: int, q: float) -> tuple[int, int, float]:
    """0-based ranks of the two order statistics the q-th percentile interpolates, and the weight."""
    pos = q / 100.0 * (n - 1)
    lo = min(int(pos), n - 1)
    frac = pos - lo
    return lo, min(lo + 1, n - 1) if frac > 0 else lo, frac


def _exact_order_stats(s: Tensor, lo: int, hi: int) -> tuple[Tensor, Tensor]:
    """Order statistics ``lo`` and ``hi = lo or lo + 1`` (0-based) of each row: one selection; the
    next statistic is ``v_lo`` again if tied, else the smallest value above it."""
    v_lo = s.kthvalue(lo + 1, dim=1).values
    if hi == lo:
        return v_lo, v_lo
    not_above = s <= v_lo[:, None]
    tied = not_above.sum(dim=1) >= hi + 1
    above = s.masked_fill(not_above, math.inf).amin(dim=1)
    return v_lo, torch.where(tied, v_lo, above)


#: rows shorter than 4 x this take the full selection; longer rows are sampled first
SAMPLE_SIZE = 4096
_sample_index: dict[tuple[int, str], Tensor] = {}


def sample_index(n: int, device: torch.device) -> Tensor:
    """A fixed pseudo-random set of ``SAMPLE_SIZE`` positions in a row of length ``n`` (cached)."""
    key = (n, str(device))
    if key not in _sample_index:
        gen = torch.Generator().manual_seed(n)
        _sample_index[key] = torch.randint(0, n, (SAMPLE_SIZE,), generator=gen).to(device)
    return _sample_index[key]


def _top_order_stats(s: Tensor, lo: int, hi: int) -> tuple[Tensor, Tensor]:
    """The order statistics of ranks ``lo <= hi`` (0-based, ascending) of each row, for ranks in the
    upper half: rank only the values above a bound taken from a sample, verify by counting."""
    b, n = s.shape
    m = SAMPLE_SIZE
    p = lo / (n - 1)
    i = int(p * (m - 1)) - int(4 * math.sqrt(m * max(p * (1 - p), 1.0 / m))) - 2  # 4 sigma below
    if i < 0:
        return _exact_order_stats(s, lo, hi)
    bound = s.index_select(1, sample_index(n, s.device)).kthvalue(i + 1, dim=1, keepdim=True).values
    where = (s > bound).view(-1).nonzero().squeeze(1)
    above = torch.bincount(where // n, minlength=b)  # per row: values > bound
    width = int(above.max())
    # ranks >= n - above lie in the selected tail; ranks in [n_lt, n - above) equal the bound itself
    # (a tied bound, e.g. most of the row is 0); lower ranks mean the sample misled us
    first_above = n - above
    n_lt = None
    if bool((first_above > lo).any()):
        n_lt = (s < bound).sum(dim=1)
        if bool((n_lt > lo).any()):
            return _exact_order_stats(s, lo, hi)
    k = width - n + lo
    if k >= 0:
        # the tails, left-aligned in a (B, width) matrix padded with -inf: a rank r of the full row
        # is then at position width - n + r in every padded row
        padded = s.new_full((b, width), -math.inf)
        padded.masked_scatter_(torch.arange(width, device=s.device) < above[:, None], s.reshape(-1)[where])
        v_lo, v_hi = _exact_order_stats(padded, k, k + hi - lo)
    else:
        v_lo = v_hi = bound.squeeze(1)
    if n_lt is not None:  # rows whose wanted ranks fall on the tied bound
        v_lo = torch.where(first_above > lo, bound.squeeze(1), v_lo)
        v_hi = torch.where(first_above > hi, bound.squeeze(1), v_hi)
    return v_lo, v_hi


def rectify(a: Tensor, g: Tensor, q: float) -> Tensor:
    """``where(a * g > tau, g, 0)``, ``tau_b`` the q-th percentile of ``a_b * g_b`` (RectGrad's mask)."""
    s = (a * g).reshape(a.shape[0], -1)
    tau = percentile_threshold(s, q)
    # s becomes the 0/1 mask in place and then the output: on the CPU several times faster than a
    # boolean mask and torch.where
    return s.gt_(tau[:, None]).mul_(g.reshape(s.shape)).reshape(g.shape)
