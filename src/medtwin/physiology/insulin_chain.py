"""UVA/Padova's insulin chain in closed form, for the compiled engine (:mod:`medtwin.solve.kernels`, ``exact``).

Subcutaneous insulin ``Isc1 -> Isc2`` feeding plasma and liver insulin ``Ip <-> Il`` is linear with constant
coefficients and, between two input steps, a constant infusion (the equations of
:func:`medtwin.physiology.uva_padova.derivatives`)::

    Isc1' = v - a Isc1                     a = ka1 + kd, v the infusion in pmol/kg/min
    Isc2' = kd Isc1 - b Isc2               b = ka2
    Ip'   = -(m2 + m4) Ip + m1 Il + ka1 Isc1 + ka2 Isc2
    Il'   = m2 Ip - (m1 + m30) Il

Deviations from this infusion's steady state decay as ``x1 e^{-a s}`` (Isc1), ``x2 e^{-b s} + kd x1 f[-b, -a]``
(Isc2) and through the two modes ``mu1, mu2`` of the plasma/liver pair (Sylvester's formula; the pair's
eigenvalues are real and distinct), forced by ``ka1 Isc1 + ka2 Isc2``; ``f[x0, x1](s)``, ``f[x0, x1, x2](s)`` are
divided differences of ``x -> e^{x s}`` (exponentials convolved over ``[0, s]``), exact also when ``a = b``.
Why: the pair's fast mode (-0.46 to -1.24 /min for the 30 patients) caps an explicit step at 3-7 minutes,
while glucose after the first hours needs 15; in closed form the chain has no stability limit and no
truncation error.

Per-patient constants (rates, steady-state gains, inverse gaps) are computed once per run, vectorised, by
:func:`derived_columns` and appended to the kernel's parameter rows at ``base``; the per-step work is then four
exponentials (their powers give all five Dormand-Prince stage offsets) and products.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

from medtwin.arrays import Array
from medtwin.solve.kernels import STAGE_OFFSETS

PMOL_PER_UNIT = 6000.0  # pmol of insulin per international unit (simulator convention; uva_padova reads it here)
#: state positions of Ip, Il, Isc1, Isc2 in UVA/Padova's state vector (checked by name in uva_padova)
IP, IL, ISC1, ISC2 = 5, 9, 10, 11
STATES = (IP, IL, ISC1, ISC2)
#: gaps between two rates below this (1/min) use expm1 instead of a difference quotient
GAP_MIN = 1e-3
# derived columns, relative to ``base``
(_RA, _RB, _R1, _R2, _CS1, _KDB, _CP, _CL, _KA1, _KA2, _KD, _M1, _M2, _A, _C, _IBA, _I1A, _I1B, _I2A, _I2B, _W,
 _CH1, _CH2, _SP1, _SP2, _FAST) = range(26)
N_DERIVED = 26
FAST_COLUMN = _FAST  # 1: the sum-of-exponentials form (per patient); 0: the divided differences at every offset
_OFFSETS = np.array(STAGE_OFFSETS)


def _inverse_gap(x0: Array, x1: Array) -> Array:
    gap = x0 - x1
    return np.where(np.abs(gap) >= GAP_MIN, 1.0 / np.where(gap == 0.0, 1.0, gap), 0.0)


def derived_columns(bw: Array, ka1: Array, kd: Array, ka2: Array, m1: Array, m2: Array, m4: Array,
                    m30: Array) -> Array:
    """(n, ``N_DERIVED``) per-patient constants of the chain from its parameters (each (n,))."""
    alpha, beta = ka1 + kd, ka2
    a, c = m2 + m4, m1 + m30
    root = np.sqrt((a - c) ** 2 + 4.0 * m1 * m2)
    ra, rb, r1, r2 = -alpha, -beta, -(a + c + root) / 2.0, -(a + c - root) / 2.0
    cols = [ra, rb, r1, r2, PMOL_PER_UNIT / (bw * alpha), kd / beta, c / (a * c - m1 * m2), m2 / c,
            ka1, ka2, kd, m1, m2, a, c, _inverse_gap(rb, ra), _inverse_gap(r1, ra), _inverse_gap(r1, rb),
            _inverse_gap(r2, ra), _inverse_gap(r2, rb), 1.0 / (r1 - r2)]
    # f[mu, -b, -a]: divided by the widest gap of its nodes (0: mu/-a, 1: mu/-b, 2: -b/-a), and that gap
    gaps = [np.stack([np.abs(mu - ra), np.abs(mu - rb), np.abs(rb - ra)]) for mu in (r1, r2)]
    cols += [np.argmax(g, axis=0).astype(float) for g in gaps]
    cols += [np.max(g, axis=0) for g in gaps]
    # both plasma/liver modes at least GAP_MIN from both subcutaneous rates (every patient of the shipped set:
    # >= 0.07 /min): the solution is a sum of exponentials with coefficients computed once per step
    cols.append(np.all(np.stack(cols[_I1A:_I2B + 1]) != 0.0, axis=0).astype(float))
    return np.column_stack(cols)


@njit(cache=True)
def _conv(s: float, x0: float, x1: float, e0: float, e1: float, inverse: float) -> float:
    """``f[x0, x1](s) = (e0 - e1) / (x0 - x1)``; with a gap below ``GAP_MIN`` (``inverse`` 0) via expm1."""
    if inverse != 0.0:
        return (e0 - e1) * inverse
    d = x0 - x1
    return e1 * math.expm1(d * s) / d if d != 0.0 else s * e1


@njit(cache=True)
def _dd2(s: float, g: Any, base: int, mode: int, f01: float, f12: float, f02: float, e1: float) -> float:
    """``f[mu, -b, -a](s)`` from ``f01 = f[mu, -b]``, ``f12 = f[-b, -a]``, ``f02 = f[mu, -a]``: divided by the
    widest gap, or by a series about ``-b`` when all three nodes lie within ``1e-3 / s``."""
    mu: float = g[base + _R1 + mode]
    ra: float = g[base + _RA]
    rb: float = g[base + _RB]
    if g[base + _SP1 + mode] * s > 1e-3:
        choice = g[base + _CH1 + mode]  # the widest gap: not 0 here, and at most ~1e3 x rounding lost
        if choice == 0.0:
            return (f01 - f12) / (mu - ra)
        if choice == 1.0:
            return (f02 - f12) / (mu - rb)
        return (f01 - f02) / (rb - ra)
    p, q = (mu - rb) * s, (ra - rb) * s
    h2 = p * p + p * q + q * q
    return e1 * s * s * (0.5 + (p + q) / 6.0 + h2 / 24.0 + (p * h2 + q * q * q) / 120.0)


@njit(cache=True)
def _start(y0: Any, g: Any, base: int, insulin_u_per_min: float) -> Any:
    """The infusion's steady state and the start's deviations from it."""
    s1 = insulin_u_per_min * g[base + _CS1]
    s2 = s1 * g[base + _KDB]
    p_ss = (g[base + _KA1] * s1 + g[base + _KA2] * s2) * g[base + _CP]
    l_ss = p_ss * g[base + _CL]
    return s1, s2, p_ss, l_ss, y0[ISC1] - s1, y0[ISC2] - s2, y0[IP] - p_ss, y0[IL] - l_ss


@njit(cache=True)
def _at(s: float, g: Any, base: int, start: Any, ea: float, eb: float, e1: float, e2: float, out: Any,
        row: int) -> None:
    """The chain at ``s`` given ``e* = e^{r* s}``: writes ``out[row + Ip, Il, Isc1, Isc2]``."""
    s1, s2, p_ss, l_ss, x1, x2, zp, zl = start
    ra, rb, r1, r2 = g[base + _RA], g[base + _RB], g[base + _R1], g[base + _R2]
    ka1, ka2, kd, m1, m2 = g[base + _KA1], g[base + _KA2], g[base + _KD], g[base + _M1], g[base + _M2]
    a, c = g[base + _A], g[base + _C]
    fba = _conv(s, rb, ra, eb, ea, g[base + _IBA])
    f1a, f1b = _conv(s, r1, ra, e1, ea, g[base + _I1A]), _conv(s, r1, rb, e1, eb, g[base + _I1B])
    f2a, f2b = _conv(s, r2, ra, e2, ea, g[base + _I2A]), _conv(s, r2, rb, e2, eb, g[base + _I2B])
    out[row + ISC1] = s1 + x1 * ea
    out[row + ISC2] = s2 + x2 * eb + kd * x1 * fba
    # each mode's projector (L - other I) / (mu - other), L = [[-a, m1], [m2, -c]], applied to the start's
    # deviation and to the forcing ka1 Isc1 + ka2 Isc2 convolved with the mode
    forced1 = ka1 * x1 * f1a + ka2 * x2 * f1b + ka2 * kd * x1 * _dd2(s, g, base, 0, f1b, fba, f1a, eb)
    forced2 = ka1 * x1 * f2a + ka2 * x2 * f2b + ka2 * kd * x1 * _dd2(s, g, base, 1, f2b, fba, f2a, eb)
    w = g[base + _W]
    out[row + IP] = p_ss + w * (e1 * ((-a - r2) * zp + m1 * zl) + (-a - r2) * forced1
                                - e2 * ((-a - r1) * zp + m1 * zl) - (-a - r1) * forced2)
    out[row + IL] = l_ss + w * (e1 * (m2 * zp + (-c - r2) * zl) + m2 * forced1
                                - e2 * (m2 * zp + (-c - r1) * zl) - m2 * forced2)


@njit(cache=True)
def _coefficients(g: Any, base: int, start: Any) -> Any:
    """Ip and Il as ``const + K1 e^{mu1 s} + K2 e^{mu2 s} + Ka e^{-a s} + Kb e^{-b s} + Kab f[-b, -a](s)``: the
    divided differences of :func:`_at` expanded where their nodes are >= ``GAP_MIN`` apart (``_FAST``), so a
    stage costs a few products. Returns ``(K1, K2, Ka, Kb, Kab)`` for Ip, then the same for Il."""
    _, _, _, _, x1, x2, zp, zl = start
    ka1, ka2, kd, m1, m2 = g[base + _KA1], g[base + _KA2], g[base + _KD], g[base + _M1], g[base + _M2]
    r1, r2, w = g[base + _R1], g[base + _R2], g[base + _W]
    ap1, ap2 = -g[base + _A] - r2, -g[base + _A] - r1
    cl1, cl2 = -g[base + _C] - r2, -g[base + _C] - r1
    # forcing ka1 Isc1 + ka2 Isc2 convolved with mode k: Fk e^{mu_k s} + Fa e^{-a s} + Fb e^{-b s} + Fab f[-b, -a]
    d1a, d1b, d2a, d2b = g[base + _I1A], g[base + _I1B], g[base + _I2A], g[base + _I2B]
    f1k = ka1 * x1 * d1a + ka2 * x2 * d1b + ka2 * kd * x1 * d1a * d1b
    f1a, f1b, f1ab = -ka1 * x1 * d1a, -ka2 * x2 * d1b - ka2 * kd * x1 * d1a * d1b, -ka2 * kd * x1 * d1a
    f2k = ka1 * x1 * d2a + ka2 * x2 * d2b + ka2 * kd * x1 * d2a * d2b
    f2a, f2b, f2ab = -ka1 * x1 * d2a, -ka2 * x2 * d2b - ka2 * kd * x1 * d2a * d2b, -ka2 * kd * x1 * d2a
    ip = (w * (ap1 * zp + m1 * zl + ap1 * f1k), -w * (ap2 * zp + m1 * zl + ap2 * f2k), w * (ap1 * f1a - ap2 * f2a),
          w * (ap1 * f1b - ap2 * f2b), w * (ap1 * f1ab - ap2 * f2ab))
    il = (w * (m2 * zp + cl1 * zl + m2 * f1k), -w * (m2 * zp + cl2 * zl + m2 * f2k), w * m2 * (f1a - f2a),
          w * m2 * (f1b - f2b), w * m2 * (f1ab - f2ab))
    return ip, il


@njit(cache=True)
def _fast_at(s: float, g: Any, base: int, start: Any, k: Any, ea: float, eb: float, e1: float, e2: float,
             out: Any, row: int) -> None:
    """:func:`_at` from the coefficients of :func:`_coefficients`."""
    s1, s2, p_ss, l_ss, x1, x2, _, _ = start
    fba = _conv(s, g[base + _RB], g[base + _RA], eb, ea, g[base + _IBA])
    ip, il = k
    out[row + ISC1] = s1 + x1 * ea
    out[row + ISC2] = s2 + x2 * eb + g[base + _KD] * x1 * fba
    out[row + IP] = p_ss + ip[0] * e1 + ip[1] * e2 + ip[2] * ea + ip[3] * eb + ip[4] * fba
    out[row + IL] = l_ss + il[0] * e1 + il[1] * e2 + il[2] * ea + il[3] * eb + il[4] * fba


@njit(cache=True)
def chain(s: float, y0: Any, g: Any, base: int, insulin_u_per_min: float, out: Any) -> None:
    """Ip, Il, Isc1, Isc2 at ``s`` minutes after the state ``y0`` under a constant infusion (U/min) into
    ``out`` (nothing else written); ``g`` a parameter row with :func:`derived_columns` at ``base``."""
    start = _start(y0, g, base, insulin_u_per_min)
    ea, eb = math.exp(g[base + _RA] * s), math.exp(g[base + _RB] * s)
    e1, e2 = math.exp(g[base + _R1] * s), math.exp(g[base + _R2] * s)
    if g[base + _FAST] != 0.0:
        _fast_at(s, g, base, start, _coefficients(g, base, start), ea, eb, e1, e2, out, 0)
    else:
        _at(s, g, base, start, ea, eb, e1, e2, out, 0)


@njit(cache=True)
def _stage_exp(r: float, h: float) -> Any:
    """``e^{r c h}`` at the stage offsets ``c = 18, 27, 72, 80, 90 / 90`` (1/5, 3/10, 4/5, 8/9, 1) from one
    ``exp(r h / 90)`` by products."""
    w = math.exp(r * h / 90.0)
    w2 = w * w
    w4 = w2 * w2
    w8 = w4 * w4
    w9 = w8 * w
    w18 = w9 * w9
    w36 = w18 * w18
    w72 = w36 * w36
    return w18, w18 * w9, w72, w72 * w8, w72 * w18


@njit(cache=True)
def chain_stages(h: float, y0: Any, g: Any, base: int, insulin_u_per_min: float, out: Any,
                 width: int) -> None:
    """:func:`chain` at the Dormand-Prince stage offsets ``STAGE_OFFSETS * h`` into rows of ``width`` of
    ``out`` (5 rows): one exponential per rate instead of five."""
    start = _start(y0, g, base, insulin_u_per_min)
    ea, eb = _stage_exp(g[base + _RA], h), _stage_exp(g[base + _RB], h)
    e1, e2 = _stage_exp(g[base + _R1], h), _stage_exp(g[base + _R2], h)
    if g[base + _FAST] != 0.0:
        k = _coefficients(g, base, start)
        for row in range(5):
            _fast_at(_OFFSETS[row] * h, g, base, start, k, ea[row], eb[row], e1[row], e2[row], out, row * width)
        return
    for row in range(5):
        _at(_OFFSETS[row] * h, g, base, start, ea[row], eb[row], e1[row], e2[row], out, row * width)
