"""Named-allele matching in the manner of PharmCAT's NamedAlleleMatcher, vectorised over allele pairs.

A named allele is a haplotype: its allele (or IUPAC set) where it is defining, the reference elsewhere.
A diplotype (a, b) fits the genotypes when, at every observed position, the two observed alleles can be
given one to ``a`` and one to ``b``; within a phase set (``PS``) the same assignment must hold at every
position (that is the enumeration of phase assignments, done for all pairs at once with numpy). Missing
positions fit anything. When an IUPAC code makes two alleles fit the same data, the more specific one
(the one accepting fewer alleles at the observed positions) wins, as PharmCAT's scoring does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from medtwin.pharmaco.pgx.definitions import GeneDefinition
from medtwin.pharmaco.pgx.genotypes import UNRECOGNISED, Observed

_MISSING = -2
_UNKNOWN = -1
BoolArray = npt.NDArray[np.bool_]


@dataclass
class MatchResult:
    diplotypes: list[tuple[str, str]]
    missing: list[Observed] = field(default_factory=list)
    unexplained: list[Observed] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)


def _masks(gene: GeneDefinition) -> npt.NDArray[np.int64]:
    masks = np.zeros((len(gene.alleles), len(gene.positions)), dtype=np.int64)
    for a, allele in enumerate(gene.alleles):
        for j, position in enumerate(gene.positions):
            allowed = allele.allowed(position)
            masks[a, j] = sum(1 << k for k, seq in enumerate(position.alleles) if seq in allowed)
    return masks


_MASK_CACHE: dict[str, npt.NDArray[np.int64]] = {}


def masks_for(gene: GeneDefinition) -> npt.NDArray[np.int64]:
    if gene.gene not in _MASK_CACHE:
        _MASK_CACHE[gene.gene] = _masks(gene)
    return _MASK_CACHE[gene.gene]


def _codes(observed: list[Observed], ignored: frozenset[int]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    codes = np.full((2, len(observed)), _MISSING, dtype=np.int64)
    for j, obs in enumerate(observed):
        if obs.alleles is None or obs.position.position in ignored:
            continue
        for h, allele in enumerate(obs.alleles):
            codes[h, j] = _UNKNOWN if allele.startswith(UNRECOGNISED) else obs.position.alleles.index(allele)
    return codes[0], codes[1]


def _fits(masks: npt.NDArray[np.int64], code: npt.NDArray[np.int64]) -> BoolArray:
    shifted = (masks >> np.maximum(code, 0)[None, :]) & 1
    out: BoolArray = np.where(code[None, :] == _MISSING, True, np.where(code[None, :] == _UNKNOWN, False, shifted == 1))
    return out


def _groups(observed: list[Observed]) -> tuple[list[int], list[list[int]]]:
    """Positions matched independently (unphased or homozygous) and phase sets of heterozygous positions."""
    single: list[int] = []
    sets: dict[str, list[int]] = {}
    for j, obs in enumerate(observed):
        if obs.phase_set is not None and obs.heterozygous:
            sets.setdefault(obs.phase_set, []).append(j)
        else:
            single.append(j)
    return single, list(sets.values())


def _failures(o0: BoolArray, o1: BoolArray, single: list[int], sets: list[list[int]]) -> npt.NDArray[np.int64]:
    """Number of positions each pair fails to explain (0 = fits)."""
    fail: npt.NDArray[np.int64] = (~(o0[:, :, single] | o1[:, :, single])).sum(axis=2).astype(np.int64)
    for g in sets:
        fail += np.minimum((~o0[:, :, g]).sum(axis=2), (~o1[:, :, g]).sum(axis=2))
    return fail


def _more_specific(masks: npt.NDArray[np.int64], observed_mask: BoolArray) -> BoolArray:
    """[x, y]: allele x accepts a strict subset of what y accepts at observed positions, and the same elsewhere."""
    x, y = masks[:, None, :], masks[None, :, :]
    subset = ((x & ~y) == 0)
    same_unobserved = np.where(observed_mask[None, None, :], True, x == y).all(axis=2)
    strict = ((x != y) & observed_mask[None, None, :]).any(axis=2)
    out: BoolArray = subset.all(axis=2) & same_unobserved & strict
    return out


def _prune(fit: BoolArray, specific: BoolArray) -> BoolArray:
    """Drop (a, b) when (a', b) or (a, b') fits with a' (b') more specific than a (b)."""
    # better_a[a, b] = any a' with specific[a', a] and fit[a', b]
    better_a = (specific.T.astype(np.int64) @ fit.astype(np.int64)) > 0
    better_b = (fit.astype(np.int64) @ specific.astype(np.int64)) > 0
    out: BoolArray = fit & ~better_a & ~better_b
    return out


def _pairs(names: list[str], matrix: BoolArray) -> list[tuple[str, str]]:
    rows, cols = np.nonzero(np.triu(matrix))
    pairs: set[tuple[str, str]] = set()
    for i, j in zip(rows.tolist(), cols.tolist(), strict=True):
        a, b = sorted((names[i], names[j]), key=allele_sort_key)
        pairs.add((a, b))
    return sorted(pairs, key=lambda p: (allele_sort_key(p[0]), allele_sort_key(p[1])))


def allele_sort_key(name: str) -> tuple[int, int, str]:
    """Reference-like alleles first, then star alleles by number, then the rest by name."""
    digits = ""
    for ch in name.removeprefix("*"):
        if not ch.isdigit():
            break
        digits += ch
    return (0 if name.startswith("*") else 1, int(digits) if digits else 0, name)


def match(gene: GeneDefinition, observed: list[Observed]) -> MatchResult:
    masks = masks_for(gene)
    g0, g1 = _codes(observed, gene.ignored_positions)
    m0, m1 = _fits(masks, g0), _fits(masks, g1)
    missing = [o for o in observed if o.alleles is None and o.position.position not in gene.ignored_positions]
    single, sets = _groups(observed)
    # an allele in a fitting pair carries one of the two observed alleles everywhere: pair only those
    keep = np.flatnonzero((m0 | m1).all(axis=1))
    if keep.size:
        k0, k1 = m0[keep], m1[keep]
        fit = _failures(k0[:, None, :] & k1[None, :, :], k1[:, None, :] & k0[None, :, :], single, sets) == 0
        if fit.any():
            pruned = _prune(fit, _more_specific(masks[keep], g0 != _MISSING))
            return MatchResult(_pairs([gene.alleles[i].name for i in keep.tolist()], pruned), missing)
    o0 = m0[:, None, :] & m1[None, :, :]
    o1 = m1[:, None, :] & m0[None, :, :]
    return _not_callable(gene, observed, _failures(o0, o1, single, sets), o0, o1, missing)


def _failing_positions(o0: BoolArray, o1: BoolArray, i: int, j: int, observed: list[Observed]) -> set[int]:
    bad = set()
    for k, obs in enumerate(observed):
        if obs.alleles is None:
            continue
        if obs.phase_set is not None and obs.heterozygous:
            continue
        if not (o0[i, j, k] or o1[i, j, k]):
            bad.add(k)
    for g in _groups(observed)[1]:
        f0 = {k for k in g if not o0[i, j, k]}
        f1 = {k for k in g if not o1[i, j, k]}
        bad |= f0 if len(f0) <= len(f1) else f1
    return bad


def _not_callable(gene: GeneDefinition, observed: list[Observed], failures: npt.NDArray[np.int64],
                  o0: BoolArray, o1: BoolArray, missing: list[Observed]) -> MatchResult:
    best = int(failures.min())
    rows, cols = np.nonzero(np.triu(failures == best))
    common: set[int] | None = None
    partial: list[str] = []
    for i, j in list(zip(rows.tolist(), cols.tolist(), strict=True))[:50]:
        bad = _failing_positions(o0, o1, i, j, observed)
        common = bad if common is None else common & bad
        if len(partial) < 5:
            partial.append(_partial(gene, observed, gene.alleles[i].name, gene.alleles[j].name, bad))
    unknown = {k for k, o in enumerate(observed) if o.alleles and any(a.startswith(UNRECOGNISED) for a in o.alleles)}
    chosen = sorted((common or set()) | unknown)
    if not chosen:  # every best partial leaves a different position unexplained: name them all
        chosen = sorted({k for k, o in enumerate(observed) if o.non_reference})
    return MatchResult([], missing, [observed[k] for k in chosen], partial)


def _partial(gene: GeneDefinition, observed: list[Observed], a: str, b: str, bad: set[int]) -> str:
    """'a/b + the variants left over', naming a combination when the leftover is exactly one named allele."""
    left = {k: a2 for k in bad for a2 in (observed[k].alleles or ()) if a2 != observed[k].position.ref}
    for allele in gene.alleles:
        variants = {k: v for k, v in allele.defining.items() if v != gene.positions[k].ref}
        if variants and variants == left:
            return f"{a}/{b} + {allele.name} (combination: [{a} + {allele.name}]/{b} or {a}/[{b} + {allele.name}])"
    return f"{a}/{b} + " + ", ".join(_describe(observed[k]) for k in sorted(bad))


def _describe(obs: Observed) -> str:
    alleles = "/".join(a.removeprefix(UNRECOGNISED) for a in obs.alleles or ())
    return f"{obs.position.label} {alleles}"
