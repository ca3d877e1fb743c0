"""Approximately shortest open Hamiltonian path through N points (Euclidean, any dimension).

The solver behind the ``mmc`` prior. A shortest open Hamiltonian path is a shortest tour through the
N points plus one *dummy* node at distance 0 from every point: cutting the tour at the dummy gives the
path, and every tour move that touches the dummy's two edges is a move of the path's free ends. The
pipeline (Johnson & McGeoch, "The traveling salesman problem: a case study in local optimization",
1997; Bentley, "Fast algorithms for geometric traveling salesman problems", ORSA J. Comput. 1992):

1. **Candidate edges**: the ``k`` nearest neighbours of every point (scipy's cKDTree for dimension
   <= 8; otherwise a blocked exact search, the op ``torchtrust_mmc::knn``, that never holds more
   than a ``block x N`` distance matrix).
2. **Construction**: greedy edge matching -- candidate edges by increasing length, an edge is taken
   when both ends have degree < 2 and it closes no cycle (union-find); the fragments are then chained
   by nearest free endpoint.
3. **Local search**: 2-opt and Or-opt (moving a segment of 1-3 points, possibly reversed, between two
   neighbours) restricted to the neighbour lists, with don't-look bits (a FIFO queue of active nodes).
   The tour is an array with positions; a 2-opt move reverses the shorter side.
4. **Perturbation** (optional, ``kicks``): iterated local search with *segment-local double bridges*
   (three adjacent segments of <= 30 points swapped), each followed by the local search on the touched
   nodes; a kick that does not shorten the path is undone move by move (every move is a 2-opt
   reversal, which is its own inverse).

Exact solver for tests: :func:`held_karp_path` (dynamic programming over subsets, N <= 12).

The inner loops are compiled with numba: neighbour-list 2-opt/Or-opt is a sequence of data-dependent
scalar moves (each one depends on the tour left by the previous one) that cannot be vectorized with
numpy, and a pure-Python loop is ~100x too slow for the 100,000-point target.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = [
    "held_karp_path",
    "improve_path",
    "knn_graph",
    "path_length",
    "shortest_path",
]

_EPS = 1e-12


# --------------------------------------------------------------------------- validation / helpers


def _as_points(X) -> np.ndarray:
    """(N, D) float64 C-contiguous array; clear errors for bad input."""
    try:
        import torch

        if isinstance(X, torch.Tensor):
            X = X.detach().cpu().double().numpy()
    except ImportError:  # pragma: no cover
        pass
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"points must have shape (N, D), got an array of shape {X.shape}; flatten each point first")
    if X.shape[0] < 2:
        raise ValueError(f"a path needs at least 2 points, got {X.shape[0]}")
    if X.shape[1] < 1:
        raise ValueError("points must have at least one coordinate (D >= 1)")
    if not np.isfinite(X).all():
        raise ValueError("points contain NaN or infinite values; remove or impute them first")
    return np.ascontiguousarray(X)


def path_length(X, path) -> float:
    """Euclidean length of the open path ``X[path[0]] -> X[path[1]] -> ... -> X[path[-1]]``."""
    X = np.asarray(X.detach().cpu() if hasattr(X, "detach") else X, dtype=np.float64)
    p = np.asarray(path, dtype=np.int64)
    if len(p) < 2:
        return 0.0
    return float(np.linalg.norm(np.diff(X[p], axis=0), axis=1).sum())


def knn_graph(X, k: int, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest neighbours of every point, self excluded: ``(idx (N, k), dist (N, k))``.

    Sorted by distance. Dimension <= 8: ``scipy.spatial.cKDTree``. Higher dimension: the blocked exact
    search :data:`torchtrust_mmc.knn.knn` (``block`` query rows at a time), so memory stays
    ``O(block * N)``, never ``O(N^2)``.
    """
    X = _as_points(X)
    n, dim = X.shape
    k = int(min(k, n - 1))
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if dim <= 8:
        from scipy.spatial import cKDTree

        dist, idx = cKDTree(X).query(X, k=k + 1)
        idx, dist = np.asarray(idx, dtype=np.int64), np.asarray(dist, dtype=np.float64)
    else:
        import torch

        from .knn import knn

        pts = torch.from_numpy(X).float()
        idx_parts, dist_parts = [], []
        for s in range(0, n, block):
            d, i = knn(pts[s : s + block], pts, k + 1)
            idx_parts.append(i.numpy())
            dist_parts.append(d.double().numpy())
        idx, dist = np.concatenate(idx_parts), np.concatenate(dist_parts)
    return _drop_self(idx, dist, k)


@numba.njit(cache=True)
def _drop_self(idx, dist, k):
    n = idx.shape[0]
    out_i = np.empty((n, k), np.int64)
    out_d = np.empty((n, k), np.float64)
    for i in range(n):
        t = 0
        for j in range(idx.shape[1]):
            if idx[i, j] == i or t == k:
                continue
            out_i[i, t] = idx[i, j]
            out_d[i, t] = dist[i, j]
            t += 1
    return out_i, out_d


# --------------------------------------------------------------------------- numba core


@numba.njit(cache=True, inline="always")
def _dist(X, i, j, dummy):
    if i == dummy or j == dummy:
        return 0.0
    s = 0.0
    for t in range(X.shape[1]):
        u = X[i, t] - X[j, t]
        s += u * u
    return math.sqrt(s)


@numba.njit(cache=True)
def _find(parent, i):
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:
        nxt = parent[i]
        parent[i] = root
        i = nxt
    return root


@numba.njit(cache=True)
def _greedy_path(X, nbr, nd):
    """Greedy edge matching on the candidate edges, fragments chained by nearest free endpoint."""
    n, k = nbr.shape
    ei = np.empty(n * k, np.int64)
    ej = np.empty(n * k, np.int64)
    el = np.empty(n * k, np.float64)
    m = 0
    for i in range(n):
        for t in range(k):
            j = nbr[i, t]
            if i < j:
                keep = True
            else:  # keep j->i only if i is not in j's list (else it was added from j)
                keep = True
                for s in range(k):
                    if nbr[j, s] == i:
                        keep = False
                        break
            if keep:
                ei[m] = min(i, j)
                ej[m] = max(i, j)
                el[m] = nd[i, t]
                m += 1
    order = np.argsort(el[:m], kind="mergesort")
    adj = -np.ones((n, 2), np.int64)
    deg = np.zeros(n, np.int64)
    parent = np.arange(n)
    for e in order:
        a, b = ei[e], ej[e]
        if deg[a] >= 2 or deg[b] >= 2:
            continue
        ra, rb = _find(parent, a), _find(parent, b)
        if ra == rb:
            continue
        parent[ra] = rb
        adj[a, deg[a]] = b
        deg[a] += 1
        adj[b, deg[b]] = a
        deg[b] += 1
    # fragments: walk from every endpoint (degree < 2) not yet visited
    visited = np.zeros(n, np.bool_)
    frag_nodes = np.empty(n, np.int64)
    frag_start = np.empty(n + 1, np.int64)
    nf = 0
    pos = 0
    for s in range(n):
        if deg[s] >= 2 or visited[s]:
            continue
        frag_start[nf] = pos
        nf += 1
        prev, cur = -1, s
        while cur != -1:
            visited[cur] = True
            frag_nodes[pos] = cur
            pos += 1
            nxt = -1
            for t in range(deg[cur]):
                if adj[cur, t] != prev:
                    nxt = adj[cur, t]
            prev, cur = cur, nxt
    frag_start[nf] = pos
    # chain fragments: from the end of the current path, go to the nearest free fragment endpoint
    used = np.zeros(nf, np.bool_)
    path = np.empty(n, np.int64)
    used[0] = True
    length = frag_start[1] - frag_start[0]
    path[:length] = frag_nodes[frag_start[0] : frag_start[1]]
    for _ in range(nf - 1):
        end = path[length - 1]
        best, best_f, best_rev = np.inf, -1, False
        for f in range(nf):
            if used[f]:
                continue
            a = frag_nodes[frag_start[f]]
            b = frag_nodes[frag_start[f + 1] - 1]
            da = _dist(X, end, a, -1)
            if da < best:
                best, best_f, best_rev = da, f, False
            db = _dist(X, end, b, -1)
            if db < best:
                best, best_f, best_rev = db, f, True
        used[best_f] = True
        s0, s1 = frag_start[best_f], frag_start[best_f + 1]
        if best_rev:
            for t in range(s1 - 1, s0 - 1, -1):
                path[length] = frag_nodes[t]
                length += 1
        else:
            for t in range(s0, s1):
                path[length] = frag_nodes[t]
                length += 1
    return path


@numba.njit(cache=True, inline="always")
def _succ(tour, pos, v):
    return tour[(pos[v] + 1) % tour.shape[0]]


@numba.njit(cache=True, inline="always")
def _pred(tour, pos, v):
    m = tour.shape[0]
    return tour[(pos[v] - 1 + m) % m]


@numba.njit(cache=True)
def _reverse(tour, pos, x, sx, y, sy):
    """Tour order x -> sx ... y -> sy: reverse sx..y (or, if longer, sy..x: the same cycle)."""
    m = tour.shape[0]
    i, j = pos[sx], pos[y]
    inner = (j - i) % m + 1
    if 2 * inner > m:
        i, j = pos[sy], pos[x]
        inner = m - inner
    for _ in range(inner // 2):
        a, b = tour[i], tour[j]
        tour[i] = b
        pos[b] = i
        tour[j] = a
        pos[a] = j
        i += 1
        if i == m:
            i = 0
        j -= 1
        if j < 0:
            j = m - 1


@numba.njit(cache=True)
def _move(tour, pos, a, b, c, d, log, nlog):
    """2-opt: remove edges (a, b), (c, d), add (a, c), (b, d); b, d adjacent to a, c on the same side.

    Logged as (a, b, c, d) when ``nlog[0] >= 0`` (undo: ``_move(a, c, b, d)``).
    """
    if _succ(tour, pos, a) == b:
        _reverse(tour, pos, a, b, c, d)
    else:
        _reverse(tour, pos, b, a, d, c)
    k = nlog[0]
    if k >= 0:
        if k < log.shape[0]:
            log[k, 0] = a
            log[k, 1] = b
            log[k, 2] = c
            log[k, 3] = d
            nlog[0] = k + 1
        else:
            nlog[1] = 1  # overflow: this kick cannot be undone


@numba.njit(cache=True)
def _push(queue, inq, head_tail, v):
    if v < 0 or inq[v]:
        return
    m = queue.shape[0]
    queue[head_tail[1]] = v
    head_tail[1] = (head_tail[1] + 1) % m
    head_tail[2] += 1
    inq[v] = True


@numba.njit(cache=True)
def _try_2opt(X, tour, pos, nbr, nd, a, dummy, log, nlog, queue, inq, ht):
    for direction in range(2):
        b = _succ(tour, pos, a) if direction == 0 else _pred(tour, pos, a)
        dab = _dist(X, a, b, dummy)
        for t in range(nbr.shape[1]):
            c = nbr[a, t]
            g1 = dab - nd[a, t]
            if g1 <= _EPS:
                break
            d = _succ(tour, pos, c) if direction == 0 else _pred(tour, pos, c)
            if c == b or d == a:
                continue
            delta = g1 + _dist(X, c, d, dummy) - _dist(X, b, d, dummy)
            if delta > _EPS:
                if direction == 0:
                    _move(tour, pos, a, b, c, d, log, nlog)
                else:
                    _move(tour, pos, b, a, d, c, log, nlog)
                _push(queue, inq, ht, a)
                _push(queue, inq, ht, b)
                _push(queue, inq, ht, c)
                _push(queue, inq, ht, d)
                return delta
    return 0.0


@numba.njit(cache=True)
def _insert(tour, pos, p, s1, s2, n, x, y, flip, log, nlog):
    """Move segment s1..s2 (between p and n) between x and y (x -> y); ``flip``: x-s1..s2-y."""
    if y == p:
        _move(tour, pos, x, p, s2, n, log, nlog)
        if flip:
            _move(tour, pos, x, s2, s1, p, log, nlog)
    elif x == n:
        _move(tour, pos, p, s1, n, y, log, nlog)
        if flip:
            _move(tour, pos, n, s2, s1, y, log, nlog)
    else:
        _move(tour, pos, p, s1, x, y, log, nlog)
        _move(tour, pos, p, x, n, s2, log, nlog)
        if flip:
            _move(tour, pos, x, s2, s1, y, log, nlog)


@numba.njit(cache=True)
def _try_oropt(X, tour, pos, nbr, nd, a, dummy, log, nlog, queue, inq, ht):
    m = tour.shape[0]
    if m < 8:
        return 0.0
    for seg in range(1, 4):
        for variant in range(2 if seg > 1 else 1):
            start = pos[a] if variant == 0 else (pos[a] - seg + 1 + m) % m
            has_dummy = False
            for t in range(seg):
                if tour[(start + t) % m] == dummy:
                    has_dummy = True
            if has_dummy:
                continue
            s1 = tour[start]
            s2 = tour[(start + seg - 1) % m]
            p = tour[(start - 1 + m) % m]
            n = tour[(start + seg) % m]
            g_rem = _dist(X, p, s1, dummy) + _dist(X, s2, n, dummy) - _dist(X, p, n, dummy)
            if g_rem <= _EPS:
                continue
            for end in range(2):
                e = s1 if end == 0 else s2
                for t in range(nbr.shape[1]):
                    c = nbr[e, t]
                    if nd[e, t] >= g_rem:
                        break
                    if (pos[c] - start + m) % m < seg:
                        continue
                    for side in range(2):
                        if side == 0:
                            x, y = c, _succ(tour, pos, c)
                        else:
                            x, y = _pred(tour, pos, c), c
                        if (pos[x] - start + m) % m < seg or (pos[y] - start + m) % m < seg:
                            continue
                        dxy = _dist(X, x, y, dummy)
                        add_r = _dist(X, x, s2, dummy) + _dist(X, s1, y, dummy)
                        add_f = _dist(X, x, s1, dummy) + _dist(X, s2, y, dummy)
                        flip = add_f < add_r
                        delta = g_rem + dxy - (add_f if flip else add_r)
                        if delta > _EPS:
                            _insert(tour, pos, p, s1, s2, n, x, y, flip, log, nlog)
                            _push(queue, inq, ht, p)
                            _push(queue, inq, ht, n)
                            _push(queue, inq, ht, s1)
                            _push(queue, inq, ht, s2)
                            _push(queue, inq, ht, x)
                            _push(queue, inq, ht, y)
                            return delta
    return 0.0


@numba.njit(cache=True)
def _local_search(X, tour, pos, nbr, nd, dummy, or_opt, log, nlog, queue, inq, ht):
    """Run 2-opt (+ Or-opt) from the queued nodes until no queued node improves; returns the gain."""
    gain = 0.0
    m = tour.shape[0]
    while ht[2] > 0:
        a = queue[ht[0]]
        ht[0] = (ht[0] + 1) % m
        ht[2] -= 1
        inq[a] = False
        if a == dummy:
            continue
        g = _try_2opt(X, tour, pos, nbr, nd, a, dummy, log, nlog, queue, inq, ht)
        if g <= 0.0 and or_opt:
            g = _try_oropt(X, tour, pos, nbr, nd, a, dummy, log, nlog, queue, inq, ht)
        gain += g
    return gain


@numba.njit(cache=True)
def _tour_length(X, tour, dummy):
    m = tour.shape[0]
    s = 0.0
    for i in range(m):
        s += _dist(X, tour[i], tour[(i + 1) % m], dummy)
    return s


@numba.njit(cache=True)
def _optimize(X, path, nbr, nd, or_opt, kicks, seed, max_seg):
    """Local search on the path, then ``kicks`` segment-local double-bridge kicks (iterated LS)."""
    n = path.shape[0]
    dummy = n
    m = n + 1
    tour = np.empty(m, np.int64)
    tour[:n] = path
    tour[n] = dummy
    pos = np.empty(m, np.int64)
    for i in range(m):
        pos[tour[i]] = i
    queue = np.empty(m, np.int64)
    inq = np.zeros(m, np.bool_)
    ht = np.zeros(3, np.int64)  # head, tail, size
    log = np.empty((4 * m + 1024, 4), np.int64)
    nlog = np.array([-1, 0], np.int64)  # -1: not logging
    for i in range(n):
        _push(queue, inq, ht, path[i])
    _local_search(X, tour, pos, nbr, nd, dummy, or_opt, log, nlog, queue, inq, ht)
    current = _tour_length(X, tour, dummy)
    if kicks > 0 and m >= 12:
        np.random.seed(seed)
        lmax = max(1, min(max_seg, (m - 3) // 3))
        no_log = np.array([-1, 0], np.int64)
        for _ in range(kicks):
            i = np.random.randint(m)
            l1 = 1 + np.random.randint(lmax)
            l2 = 1 + np.random.randint(lmax)
            a = tour[i]
            b1 = tour[(i + 1) % m]
            b2 = tour[(i + l1) % m]
            c1 = tour[(i + l1 + 1) % m]
            c2 = tour[(i + l1 + l2) % m]
            d = tour[(i + l1 + l2 + 1) % m]
            delta = (_dist(X, a, c1, dummy) + _dist(X, c2, b1, dummy) + _dist(X, b2, d, dummy)
                     - _dist(X, a, b1, dummy) - _dist(X, b2, c1, dummy) - _dist(X, c2, d, dummy))
            nlog[0] = 0
            nlog[1] = 0
            _move(tour, pos, a, b1, c2, d, log, nlog)  # a c2..c1 b2..b1 d
            _move(tour, pos, a, c2, c1, b2, log, nlog)  # a c1..c2 b2..b1 d
            _move(tour, pos, c2, b2, b1, d, log, nlog)  # a c1..c2 b1..b2 d
            for v in (a, b1, b2, c1, c2, d):
                _push(queue, inq, ht, v)
            gain = _local_search(X, tour, pos, nbr, nd, dummy, or_opt, log, nlog, queue, inq, ht)
            new = current + delta - gain
            if new < current - 1e-10 or nlog[1] == 1:
                current = new
            else:
                for r in range(nlog[0] - 1, -1, -1):
                    _move(tour, pos, log[r, 0], log[r, 2], log[r, 1], log[r, 3], log, no_log)
        nlog[0] = -1
    out = np.empty(n, np.int64)
    start = pos[dummy] + 1
    for i in range(n):
        out[i] = tour[(start + i) % m]
    return out


# --------------------------------------------------------------------------- public API


def held_karp_path(X) -> np.ndarray:
    """Exact shortest open Hamiltonian path (Held & Karp 1962 dynamic programming), N <= 12.

    ``dp[S, j]`` = shortest path visiting exactly the set ``S`` and ending at ``j``;
    ``dp[{j}, j] = 0``, ``dp[S + {k}, k] = min_j dp[S, j] + |x_j - x_k|``. O(2^N N^2); the test oracle.
    """
    X = _as_points(X)
    n = len(X)
    if n > 12:
        raise ValueError(f"held_karp_path is exponential; use it for N <= 12 points, got {n}")
    D = np.linalg.norm(X[:, None] - X[None], axis=-1)
    full = 1 << n
    dp = np.full((full, n), np.inf)
    parent = np.full((full, n), -1, np.int64)
    for j in range(n):
        dp[1 << j, j] = 0.0
    bits = 1 << np.arange(n)
    for mask in range(1, full):
        ends = np.flatnonzero((mask & bits) != 0)
        free = np.flatnonzero((mask & bits) == 0)
        if len(free) == 0:
            continue
        cand = dp[mask, ends][:, None] + D[np.ix_(ends, free)]  # (ends, free)
        arg = np.argmin(cand, axis=0)
        best = cand[arg, np.arange(len(free))]
        nm = mask | bits[free]
        better = best < dp[nm, free]
        dp[nm[better], free[better]] = best[better]
        parent[nm[better], free[better]] = ends[arg[better]]
    mask, j = full - 1, int(np.argmin(dp[full - 1]))
    path = []
    while j != -1:
        path.append(j)
        mask, j = mask ^ (1 << j), parent[mask, j]
    return np.array(path[::-1], dtype=np.int64)


def improve_path(X, path, k: int = 10, or_opt: bool = True) -> np.ndarray:
    """Run neighbour-list 2-opt (and Or-opt) from ``path``; the result is never longer."""
    X = _as_points(X)
    p = np.asarray(path, dtype=np.int64)
    if sorted(p.tolist()) != list(range(len(X))):
        raise ValueError("path must be a permutation of range(N)")
    nbr, nd = knn_graph(X, k)
    return _optimize(X, np.ascontiguousarray(p), nbr, nd, or_opt, 0, 0, 30)


def shortest_path(
    X,
    k: int = 10,
    kicks: int | None = None,
    seed: int = 0,
    or_opt: bool = True,
    exact_below: int = 9,
    return_graph: bool = False,
    restarts: int | None = None,
):
    """An approximately shortest open Hamiltonian path through the rows of ``X`` (a permutation).

    ``k``: neighbour-list size; ``kicks``: iterated-local-search kicks after the first local optimum
    (default ``min(20 N, 200000)``; 0 = plain greedy + 2-opt + Or-opt); ``seed`` makes the kicks
    reproducible; ``exact_below``: solve exactly with :func:`held_karp_path` when ``N`` is below it.
    ``restarts``: extra runs from random permutations, the shortest result kept (default: 30 for
    N <= 64, else 0; small instances have strong local optima that random restarts escape cheaply).
    ``return_graph=True`` returns ``(path, nbr, dist)`` with the neighbour lists (:func:`knn_graph`).
    """
    X = _as_points(X)
    n = len(X)
    if kicks is None:
        kicks = min(20 * n, 200_000)
    if kicks < 0:
        raise ValueError(f"kicks must be >= 0 (or None for the default), got {kicks}")
    if n < exact_below and not return_graph:
        return held_karp_path(X)
    nbr, nd = knn_graph(X, k)
    if n < exact_below:
        path = held_karp_path(X)
    else:
        path = _optimize(X, _greedy_path(X, nbr, nd), nbr, nd, bool(or_opt), int(kicks), int(seed), 30)
        if restarts is None:
            restarts = 30 if n <= 64 else 0
        if restarts:
            best = path_length(X, path)
            rng = np.random.default_rng(seed)
            for r in range(restarts):
                cand = _optimize(X, rng.permutation(n), nbr, nd, bool(or_opt), int(kicks), int(seed) + r + 1, 30)
                length = path_length(X, cand)
                if length < best - 1e-12:
                    path, best = cand, length
    return (path, nbr, nd) if return_graph else path
