"""Exact Euclidean distance transform in millimetres on an anisotropic grid, compiled and parallel.

Felzenszwalb & Huttenlocher, "Distance transforms of sampled functions" (Theory of Computing 8:415-428,
2012): the squared distance is separable, one pass per axis, each pass the lower envelope of parabolas
``(x - x_p)^2 + f(p)`` along a line, with ``x = index * spacing`` so that the result is in mm^2 whatever the
voxel size. Same values as ``scipy.ndimage.distance_transform_edt(~mask, sampling=spacing)`` (tested to
1e-9 mm), but without the feature transform scipy builds first and with the lines of each pass shared
between threads: the planner's distance maps are the bulk of its time on a brain-sized grid.
"""

from __future__ import annotations

import numba
import numpy as np
from numpy.typing import NDArray


@numba.njit(cache=True)
def _envelope(f: NDArray[np.float64], w: float, out: NDArray[np.float64], v: NDArray[np.int64],
              z: NDArray[np.float64]) -> None:
    """``out[q] = min_p (w (q - p))^2 + f[p]`` over the finite ``f[p]`` (inf where there is none)."""
    n = f.shape[0]
    k = -1
    for q in range(n):
        if f[q] == np.inf:
            continue
        fq = f[q] + (q * w) ** 2
        s = -np.inf
        while k >= 0:
            p = v[k]
            s = (fq - (f[p] + (p * w) ** 2)) / (2.0 * w * (q - p))
            if s <= z[k]:
                k -= 1
                s = -np.inf
            else:
                break
        k += 1
        v[k] = q
        z[k] = s
    if k < 0:
        out[:] = np.inf
        return
    z[k + 1] = np.inf
    j = 0
    for q in range(n):
        x = q * w
        while z[j + 1] < x:
            j += 1
        out[q] = (x - v[j] * w) ** 2 + f[v[j]]


@numba.njit(parallel=True, cache=True)
def _squared(mask: NDArray[np.bool_], spacing: NDArray[np.float64]) -> NDArray[np.float64]:
    ni, nj, nk = mask.shape
    d = np.empty((ni, nj, nk))
    for i in numba.prange(ni):  # along k (contiguous): from the structure's voxels
        f, out, v, z = np.empty(nk), np.empty(nk), np.empty(nk, np.int64), np.empty(nk + 1)
        for j in range(nj):
            for k in range(nk):
                f[k] = 0.0 if mask[i, j, k] else np.inf
            _envelope(f, spacing[2], out, v, z)
            d[i, j, :] = out
    for i in numba.prange(ni):  # along j
        f, out, v, z = np.empty(nj), np.empty(nj), np.empty(nj, np.int64), np.empty(nj + 1)
        for k in range(nk):
            f[:] = d[i, :, k]
            _envelope(f, spacing[1], out, v, z)
            d[i, :, k] = out
    for j in numba.prange(nj):  # along i
        f, out, v, z = np.empty(ni), np.empty(ni), np.empty(ni, np.int64), np.empty(ni + 1)
        for k in range(nk):
            f[:] = d[:, j, k]
            _envelope(f, spacing[0], out, v, z)
            d[:, j, k] = out
    return d


def distance_mm(mask: NDArray[np.bool_], spacing_mm: NDArray[np.float64]) -> NDArray[np.float64]:
    """Distance (mm) from every voxel centre to the nearest ``True`` voxel centre (0 on them; inf everywhere
    when ``mask`` is empty), voxels ``spacing_mm`` apart along (i, j, k)."""
    m = np.ascontiguousarray(mask, dtype=np.bool_)
    if m.ndim != 3:
        raise ValueError(f"mask must be 3-D, got {m.ndim} dimensions")
    return np.sqrt(_squared(m, np.asarray(spacing_mm, dtype=np.float64)))


@numba.njit(parallel=True, cache=True)
def _clearance(squared: NDArray[np.float64], offset: float, out: NDArray[np.float32]) -> None:
    flat, res = squared.reshape(-1), out.reshape(-1)
    for n in numba.prange(flat.shape[0]):
        res[n] = max(np.sqrt(flat[n]) - offset, 0.0)


def clearance_mm(mask: NDArray[np.bool_], spacing_mm: NDArray[np.float64], offset_mm: float,
                 out: NDArray[np.float32] | None = None) -> NDArray[np.float32]:
    """``max(distance_mm(mask) - offset_mm, 0)`` as float32, in one parallel pass (into ``out`` if given)."""
    m = np.ascontiguousarray(mask, dtype=np.bool_)
    result = np.empty(m.shape, np.float32) if out is None else out
    _clearance(_squared(m, np.asarray(spacing_mm, dtype=np.float64)), float(offset_mm), result)
    return result
