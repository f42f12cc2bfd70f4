"""UCUM (Unified Code for Units of Measure), case-sensitive c/s form: parser and converter.

Grammar (UCUM 2.1, section 2 and the BNF in the appendix)::

    term       := ['/'] component (('.' | '/') component)*
    component  := annotatable [annotation] | annotation | factor | '(' term ')'
    annotatable:= simple_unit [exponent]          exponent := ['+' | '-'] digits
    simple_unit:= atom | prefix atom              (prefix only on metric atoms)
    annotation := '{' printable ASCII except braces '}'

Operators are left-associative with equal precedence, so ``kg/m.s`` means ``(kg/m).s``. An annotation
alone is the unity (``{beats}/min`` is ``/min``). ``^`` is only part of the atom ``10^``.

Atoms and prefixes come from data files in ``record/data/`` (cited there). A unit resolves to a magnitude
factor times a product of base dimensions (``DIMENSIONS``) and arbitrary units (``[IU]`` ...). Special
units with an offset (``Cel``, ``[degF]``, ``[degRe]``) convert with their offset only when they stand
alone; inside a compound (``Cel/h``) they count as their scale (a temperature difference).

Deviation from UCUM, on purpose: ``mol`` is a base dimension, so ``mmol/L`` and ``mg/dL`` are never
commensurable by accident; ``convert`` bridges mass and substance only with an explicit molar mass.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from types import MappingProxyType

__all__ = [
    "DIMENSIONS",
    "IncommensurableUnitsError",
    "UcumError",
    "UcumUnit",
    "atom_codes",
    "metric_atom_codes",
    "convert",
    "is_commensurable",
    "is_valid",
    "parse",
    "prefix_codes",
]

#: Base dimensions, in the order of ``UcumUnit.dimension``: length, mass, time, plane angle,
#: temperature, electric charge, luminous intensity, amount of substance.
DIMENSIONS: tuple[str, ...] = ("L", "M", "T", "A", "K", "Q", "F", "N")
_MASS_PER_SUBSTANCE: tuple[int, ...] = tuple(1 if d == "M" else -1 if d == "N" else 0 for d in DIMENSIONS)


class UcumError(ValueError):
    """A unit code that is not valid UCUM (c/s). ``position`` is a 0-based index into ``code``."""

    def __init__(self, code: str, position: int, reason: str) -> None:
        self.code = code
        self.position = position
        self.reason = reason
        super().__init__(f"invalid UCUM unit {code!r} at position {position}: {reason}")


class IncommensurableUnitsError(ValueError):
    """Two valid units that measure different kinds of quantity."""

    def __init__(self, from_code: str, to_code: str, reason: str = "different dimensions") -> None:
        self.from_code = from_code
        self.to_code = to_code
        super().__init__(f"cannot convert {from_code!r} to {to_code!r}: {reason}")


@dataclass(frozen=True)
class UcumUnit:
    """A parsed unit: ``value_in_base = value * factor + offset``.

    ``dimension`` holds the exponents of ``DIMENSIONS``; ``arbitrary`` the exponents of arbitrary units
    (sorted by code), which are commensurable only with themselves. ``special`` is True for a lone
    offset unit (``Cel``, ``[degF]``); then ``offset`` is the base value (kelvin) of its zero.
    """

    code: str
    factor: float
    dimension: tuple[int, ...]
    arbitrary: tuple[tuple[str, int], ...] = ()
    offset: float = 0.0
    special: bool = False

    @property
    def is_dimensionless(self) -> bool:
        return not any(self.dimension) and not self.arbitrary

    def to_base(self, value: float) -> float:
        return value * self.factor + self.offset

    def from_base(self, value: float) -> float:
        return (value - self.offset) / self.factor


# --------------------------------------------------------------------------------------------------
# Internal quantity algebra: factor times a product of named dimensions with integer exponents.


@dataclass(frozen=True)
class _Q:
    factor: float
    exps: tuple[tuple[str, int], ...] = ()

    def __mul__(self, other: _Q) -> _Q:
        return _Q(self.factor * other.factor, _merge(self.exps, other.exps, 1))

    def __truediv__(self, other: _Q) -> _Q:
        return _Q(self.factor / other.factor, _merge(self.exps, other.exps, -1))

    def __pow__(self, n: int) -> _Q:
        return _Q(self.factor**n, tuple((k, v * n) for k, v in self.exps if v * n))


def _merge(
    a: tuple[tuple[str, int], ...], b: tuple[tuple[str, int], ...], sign: int
) -> tuple[tuple[str, int], ...]:
    out = dict(a)
    for k, v in b:
        out[k] = out.get(k, 0) + sign * v
    return tuple(sorted((k, v) for k, v in out.items() if v))


_UNITY = _Q(1.0)


@dataclass(frozen=True)
class _Atom:
    code: str
    metric: bool
    quantity: _Q
    special: bool
    offset: float


@dataclass(frozen=True)
class _Registry:
    atoms: Mapping[str, _Atom]
    prefixes: Mapping[str, float]
    lower_atoms: Mapping[str, str]


def _read_csv(name: str) -> list[dict[str, str]]:
    text = resources.files("medtwin.record").joinpath("data", name).read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return list(csv.DictReader(lines))


@lru_cache(maxsize=1)
def _registry() -> _Registry:
    prefixes = {row["code"]: float(row["factor"]) for row in _read_csv("ucum_prefixes.csv")}
    rows = {row["code"]: row for row in _read_csv("ucum_atoms.csv")}
    resolved: dict[str, _Atom] = {}
    resolving: set[str] = set()

    def resolve(code: str) -> _Atom | None:
        if code in resolved:
            return resolved[code]
        row = rows.get(code)
        if row is None:
            return None
        if code in resolving:
            raise RuntimeError(f"circular UCUM atom definition: {code}")
        resolving.add(code)
        kind = row["kind"]
        value = float(row["value"])
        if kind == "base":
            quantity = _Q(value, ((row["unit"], 1),))
        elif kind == "arbitrary":
            quantity = _Q(value, ((code, 1),))
        elif kind in ("unit", "special"):
            quantity = _Q(value) * _Parser(row["unit"], resolve, prefixes).parse().quantity
        else:
            raise RuntimeError(f"unknown atom kind {kind!r} for {code}")
        atom = _Atom(code, row["metric"] == "1", quantity, kind == "special", float(row["offset"]))
        resolving.discard(code)
        resolved[code] = atom
        return atom

    for code in rows:
        resolve(code)
    lower: dict[str, str] = {}
    for code in resolved:
        lower.setdefault(code.lower(), code)
    return _Registry(MappingProxyType(resolved), MappingProxyType(prefixes), MappingProxyType(lower))


# --------------------------------------------------------------------------------------------------
# Parser

# Common non-UCUM spellings and their UCUM codes, for error messages only.
_HINTS: Mapping[str, str] = MappingProxyType(
    {
        "mmHg": "mm[Hg]",
        "cmH2O": "cm[H2O]",
        "lb": "[lb_av]",
        "lbs": "[lb_av]",
        "oz": "[oz_av]",
        "in": "[in_i]",
        "ft": "[ft_i]",
        "degF": "[degF]",
        "degC": "Cel",
        "bpm": "{beats}/min",
        "beats": "{beats}",
        "IU": "[IU]",
        "ppm": "[ppm]",
        "hr": "h",
        "sec": "s",
        "mcg": "ug",
    }
)
_EXPONENT = re.compile(r"(.+?)([+-]?[0-9]+)")
_STOP = "./(){}"


@dataclass(frozen=True)
class _Parsed:
    quantity: _Q
    special: _Atom | None  # the lone special atom with exponent 1, when the whole term is just that
    special_factor: float


class _Parser:
    def __init__(
        self,
        code: str,
        lookup: Callable[[str], _Atom | None],
        prefixes: Mapping[str, float],
    ) -> None:
        self.code = code
        self.pos = 0
        self.lookup = lookup
        self.prefixes = prefixes
        self.prefix_order = sorted(prefixes, key=len, reverse=True)
        self.lower_atoms: Mapping[str, str] = {}
        self.n_components = 0
        self.lone: tuple[_Atom, float] | None = None

    def error(self, position: int, reason: str) -> UcumError:
        return UcumError(self.code, position, reason)

    def parse(self) -> _Parsed:
        if not self.code:
            raise self.error(0, "empty unit (use '1' for unity)")
        q = self._term(top=True)
        if self.pos < len(self.code):
            ch = self.code[self.pos]
            reason = "unmatched ')'" if ch == ")" else f"unexpected {ch!r}"
            raise self.error(self.pos, reason)
        lone = self.lone if self.n_components == 1 else None
        if lone is not None:
            return _Parsed(q, lone[0], lone[1])
        return _Parsed(q, None, 1.0)

    def _term(self, top: bool = False) -> _Q:
        s = self.code
        if self.pos < len(s) and s[self.pos] == "/":
            self.pos += 1
            self.n_components += 1  # a leading '/' makes it a compound
            q = _UNITY / self._component(top)
        else:
            q = self._component(top)
        while self.pos < len(s) and s[self.pos] in "./":
            op = s[self.pos]
            self.pos += 1
            self.n_components += 1
            c = self._component(top)
            q = q * c if op == "." else q / c
        return q

    def _component(self, top: bool) -> _Q:
        s = self.code
        if self.pos >= len(s):
            raise self.error(self.pos, "expected a unit after an operator" if self.pos else "empty unit")
        ch = s[self.pos]
        if ch == "(":
            start = self.pos
            self.pos += 1
            self.n_components += 1
            q = self._term()
            if self.pos >= len(s) or s[self.pos] != ")":
                raise self.error(start, "unclosed '('")
            self.pos += 1
            return q
        if ch == "{":
            self._annotation()
            if top:
                self.n_components += 1
            return _UNITY
        if ch in "./)}":
            raise self.error(self.pos, f"expected a unit, found {ch!r}")
        start = self.pos
        token = self._symbol_token()
        q = self._simple(token, start, top)
        if self.pos < len(s) and s[self.pos] == "{":
            if token.isdigit():
                raise self.error(self.pos, "an annotation cannot follow a number")
            self._annotation()
        return q

    def _annotation(self) -> None:
        s = self.code
        start = self.pos
        self.pos += 1
        while self.pos < len(s) and s[self.pos] != "}":
            ch = s[self.pos]
            if ch == "{":
                raise self.error(self.pos, "'{' inside an annotation")
            if not 33 <= ord(ch) <= 126:
                raise self.error(self.pos, f"character {ch!r} not allowed in an annotation")
            self.pos += 1
        if self.pos >= len(s):
            raise self.error(start, "unclosed '{'")
        self.pos += 1

    def _symbol_token(self) -> str:
        s = self.code
        start = self.pos
        while self.pos < len(s):
            ch = s[self.pos]
            if ch == "[":
                end = s.find("]", self.pos)
                if end < 0:
                    raise self.error(self.pos, "unclosed '['")
                inner = s[self.pos + 1 : end]
                bad = next((c for c in inner if not 33 <= ord(c) <= 126 or c in "[{}"), None)
                if bad is not None:
                    raise self.error(
                        self.pos + 1 + inner.index(bad), f"character {bad!r} not allowed in '[...]'"
                    )
                self.pos = end + 1
            elif ch in _STOP:
                break
            elif ch == "]":
                raise self.error(self.pos, "unmatched ']'")
            elif not 33 <= ord(ch) <= 126:
                what = "whitespace" if ch.isspace() else f"character {ch!r}"
                raise self.error(self.pos, f"{what} not allowed in UCUM")
            else:
                self.pos += 1
        return s[start : self.pos]

    def _simple(self, token: str, start: int, top: bool) -> _Q:
        if token.isdigit() and token.isascii():
            number = int(token)
            if number == 0:
                raise self.error(start, "a numeric factor must be positive")
            if len(token) > 300:
                raise self.error(start, "numeric factor out of range")
            return _Q(float(number))
        symbol, exponent = token, 1
        match = _EXPONENT.fullmatch(token)
        if match is not None and not token.endswith("]"):
            symbol, exponent = match.group(1), int(match.group(2))
        elif token[-1:] in "+-":
            raise self.error(start + len(token) - 1, "exponent sign without digits")
        if "^" in symbol and symbol != "10^":
            where = start + symbol.index("^")
            raise self.error(where, "'^' is only valid in '10^'; write exponents as digits (m2, s-1)")
        atom, factor = self._lookup(symbol, start)
        if top:
            self.n_components += 1
            if atom.special and exponent == 1:
                self.lone = (atom, factor)
        try:
            return (_Q(factor) * atom.quantity) ** exponent
        except (OverflowError, ZeroDivisionError):
            raise self.error(start, "magnitude out of range") from None

    def _resolves(self, symbol: str) -> bool:
        try:
            self._lookup(symbol, 0, hints=False)
        except UcumError:
            return False
        return True

    def _lookup(self, symbol: str, start: int, hints: bool = True) -> tuple[_Atom, float]:
        lookup = self.lookup
        atom = lookup(symbol)
        if atom is not None:
            return atom, 1.0
        for prefix in self.prefix_order:
            if symbol.startswith(prefix) and len(symbol) > len(prefix):
                rest = lookup(symbol[len(prefix) :])
                if rest is None:
                    continue
                if not rest.metric:
                    raise self.error(start + len(prefix), f"{rest.code!r} does not take a prefix")
                return rest, self.prefixes[prefix]
        if not symbol:
            raise self.error(start, "expected a unit")
        if not hints:
            raise self.error(start, f"unknown unit {symbol!r}")
        hint = ""
        guess = self.lower_atoms.get(symbol.lower())
        if symbol in _HINTS:
            hint = f" (did you mean {_HINTS[symbol]!r}?)"
        elif guess is not None and guess != symbol:
            hint = f" (UCUM is case-sensitive: did you mean {guess!r}?)"
        elif symbol != symbol.lower() and self._resolves(symbol.lower()):
            hint = f" (UCUM is case-sensitive: did you mean {symbol.lower()!r}?)"
        elif symbol[0] not in "[" and symbol.isalpha() and len(symbol) > 2:
            hint = " (wrap a descriptive word in braces, e.g. {beats})"
        raise self.error(start, f"unknown unit {symbol!r}{hint}")


@lru_cache(maxsize=4096)
def parse(code: str) -> UcumUnit:
    """Parse a UCUM c/s code. Raises ``UcumError`` when it is not valid."""
    if not isinstance(code, str):
        raise TypeError(f"UCUM code must be a str, not {type(code).__name__}")
    reg = _registry()
    parser = _Parser(code, reg.atoms.get, reg.prefixes)
    parser.lower_atoms = reg.lower_atoms
    try:
        parsed = parser.parse()
    except (OverflowError, ZeroDivisionError):
        raise UcumError(code, 0, "magnitude out of range") from None
    q = parsed.quantity
    if not (math.isfinite(q.factor) and q.factor > 0):
        raise UcumError(code, 0, "magnitude out of range")
    dims = dict(q.exps)
    dimension = tuple(dims.pop(d, 0) for d in DIMENSIONS)
    arbitrary = tuple(sorted(dims.items()))
    if parsed.special is not None:
        return UcumUnit(code, q.factor, dimension, arbitrary, parsed.special.offset, True)
    return UcumUnit(code, q.factor, dimension, arbitrary)


def is_valid(code: str | None) -> bool:
    """True if ``code`` is a valid UCUM c/s unit made of known atoms."""
    if not isinstance(code, str):
        return False
    try:
        parse(code)
    except UcumError:
        return False
    return True


def is_commensurable(a: str, b: str) -> bool:
    """True if the two (valid) units measure the same kind of quantity."""
    ua, ub = parse(a), parse(b)
    return ua.dimension == ub.dimension and ua.arbitrary == ub.arbitrary


def convert(
    value: float, from_code: str, to_code: str, *, molar_mass_g_per_mol: float | None = None
) -> float:
    """Convert ``value`` from one UCUM unit to another.

    Offsets apply for lone special units (``Cel``, ``[degF]``). Mass and amount of substance are
    bridged only when ``molar_mass_g_per_mol`` is given (glucose 180.156: 5.5 mmol/L -> 99.09 mg/dL).
    Raises ``UcumError`` for invalid codes and ``IncommensurableUnitsError`` otherwise.
    """
    src, dst = parse(from_code), parse(to_code)
    if src.arbitrary != dst.arbitrary:
        raise IncommensurableUnitsError(from_code, to_code, "different arbitrary units")
    base = src.to_base(value)
    diff = tuple(a - b for a, b in zip(src.dimension, dst.dimension, strict=True))
    if any(diff):
        if molar_mass_g_per_mol is None:
            raise IncommensurableUnitsError(from_code, to_code)
        if not (math.isfinite(molar_mass_g_per_mol) and molar_mass_g_per_mol > 0):
            raise ValueError(f"molar mass must be a positive finite number, got {molar_mass_g_per_mol}")
        if src.special or dst.special:
            raise IncommensurableUnitsError(from_code, to_code)
        if diff == _MASS_PER_SUBSTANCE:  # source has one more mass, one less substance: g -> mol
            base = base / molar_mass_g_per_mol
        elif diff == tuple(-d for d in _MASS_PER_SUBSTANCE):  # mol -> g
            base = base * molar_mass_g_per_mol
        else:
            raise IncommensurableUnitsError(from_code, to_code, "not related by a molar mass")
    return dst.from_base(base)


def atom_codes() -> tuple[str, ...]:
    """Codes of every known atom (for tests and generators)."""
    return tuple(_registry().atoms)


def metric_atom_codes() -> tuple[str, ...]:
    """Codes of the atoms that take prefixes."""
    return tuple(code for code, atom in _registry().atoms.items() if atom.metric)


def prefix_codes() -> Mapping[str, float]:
    """Prefix code -> factor."""
    return _registry().prefixes
