from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from medtwin.record.ucum import (
    DIMENSIONS,
    IncommensurableUnitsError,
    UcumError,
    atom_codes,
    convert,
    is_commensurable,
    is_valid,
    metric_atom_codes,
    parse,
    prefix_codes,
)

SYNTHEA = Path("/work/shared/data/synthea-r4")
GLUCOSE = 180.156


def dim(**exps: int) -> tuple[int, ...]:
    return tuple(exps.get(d, 0) for d in DIMENSIONS)


# ---------------------------------------------------------------------------------------------- parse


@pytest.mark.parametrize(
    ("code", "factor", "dimension"),
    [
        ("kg/m2", 1000.0, dim(M=1, L=-2)),
        ("mm[Hg]", 133322.0, dim(M=1, L=-1, T=-2)),
        ("/min", 1 / 60, dim(T=-1)),
        ("{beats}/min", 1 / 60, dim(T=-1)),
        ("%", 0.01, dim()),
        ("mg/dL", 10.0, dim(M=1, L=-3)),  # g per m3
        ("mg/dl", 10.0, dim(M=1, L=-3)),  # 'l' is also litre
        ("mmol/L", 1.0, dim(N=1, L=-3)),
        ("10*3/uL", 1e12, dim(L=-3)),
        ("10^3", 1e3, dim()),
        ("10*-3", 1e-3, dim()),
        ("m2", 1.0, dim(L=2)),
        ("cm2", 1e-4, dim(L=2)),
        ("s-1", 1.0, dim(T=-1)),
        ("m+2", 1.0, dim(L=2)),
        ("dam", 10.0, dim(L=1)),
        ("mL/min/{1.73_m2}", 1e-6 / 60, dim(L=3, T=-1)),
        ("[in_i]", 0.0254, dim(L=1)),
        ("[ft_i]", 0.3048, dim(L=1)),
        ("[lb_av]", 453.59237, dim(M=1)),
        ("[oz_av]", 453.59237 / 16, dim(M=1)),
        ("[ppm]", 1e-6, dim()),
        ("{score}", 1.0, dim()),
        ("1", 1.0, dim()),
        ("100", 100.0, dim()),
        ("mg{total}", 1e-3, dim(M=1)),
        ("kg.m/s2", 1000.0, dim(M=1, L=1, T=-2)),
        ("kg/m.s", 1000.0, dim(M=1, L=-1, T=1)),  # left-associative: (kg/m).s
        ("kg/(m.s)", 1000.0, dim(M=1, L=-1, T=-1)),
        ("atm", 101325e3, dim(M=1, L=-1, T=-2)),
        ("bar", 1e8, dim(M=1, L=-1, T=-2)),
        ("h", 3600.0, dim(T=1)),
        ("d", 86400.0, dim(T=1)),
        ("wk", 7 * 86400.0, dim(T=1)),
        ("a", 365.25 * 86400, dim(T=1)),
        ("mo", 365.25 * 86400 / 12, dim(T=1)),
        ("kat", 1.0, dim(N=1, T=-1)),
        ("U", 1e-6 / 60, dim(N=1, T=-1)),
        ("meq/L", 1.0, dim(N=1, L=-3)),
        ("/[HPF]", 1.0, dim()),
        ("Pa", 1000.0, dim(M=1, L=-1, T=-2)),  # g-based: 1 Pa = 1000 g/(m.s2)
        ("cd", 1.0, dim(F=1)),  # candela, not centi-day
    ],
)
def test_parse_factor_and_dimension(code: str, factor: float, dimension: tuple[int, ...]) -> None:
    unit = parse(code)
    assert math.isclose(unit.factor, factor, rel_tol=1e-12)
    assert unit.dimension == dimension
    assert unit.arbitrary == ()
    assert not unit.special


def test_arbitrary_units_have_their_own_dimension() -> None:
    iu = parse("[IU]/L")
    assert iu.arbitrary == (("[iU]", 1),)
    assert iu.dimension == dim(L=-3)
    assert convert(1.0, "m[IU]/mL", "[IU]/L") == pytest.approx(1.0)
    assert convert(2.0, "[iU]", "[IU]") == pytest.approx(2.0)
    with pytest.raises(IncommensurableUnitsError):
        convert(1.0, "[IU]", "1")
    with pytest.raises(IncommensurableUnitsError):
        convert(1.0, "[IU]", "[arb'U]")


def test_special_units_carry_offset_only_alone() -> None:
    cel = parse("Cel")
    assert cel.special and cel.offset == pytest.approx(273.15)
    assert parse("[degF]").special
    rate = parse("Cel/h")
    assert not rate.special and rate.offset == 0.0
    assert convert(1.0, "Cel/h", "K/h") == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("code", "position", "fragment"),
    [
        ("MG/DL", 0, "case-sensitive"),
        ("mmHg", 0, "mm[Hg]"),
        ("beats/min", 0, "{beats}"),
        ("kg/m^2", 4, "'^'"),
        ("", 0, "empty"),
        ("kg /m2", 2, "whitespace"),
        ("m-", 1, "exponent"),
        ("(mg", 0, "unclosed '('"),
        ("mg)", 2, "unmatched ')'"),
        ("mg{total", 2, "unclosed '{'"),
        ("[in_i", 0, "unclosed '['"),
        ("mg/", 3, "expected a unit"),
        ("mg//L", 3, "expected a unit"),
        ("k[lb_av]", 1, "does not take a prefix"),
        ("kmin", 1, "does not take a prefix"),
        ("2{x}", 1, "annotation"),
        ("foo", 0, "unknown unit"),
        ("mg/dL{a{b}}", 7, "'{' inside"),
        ("0", 0, "positive"),
        ("m/0", 2, "positive"),
        ("10*999", 0, "out of range"),
        ("10*-999", 0, "out of range"),
    ],
)
def test_invalid_codes_raise_with_position(code: str, position: int, fragment: str) -> None:
    with pytest.raises(UcumError) as info:
        parse(code)
    err = info.value
    assert err.code == code
    assert err.position == position
    assert fragment in str(err)
    assert not is_valid(code)


def test_is_valid_rejects_non_strings() -> None:
    assert not is_valid(None)
    assert is_valid("mg/dL")


def test_every_unit_in_the_synthea_bundles_parses() -> None:
    files = sorted(SYNTHEA.glob("*.json"))
    if not files:
        pytest.skip("shared Synthea sample not present")
    codes: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if node.get("system") == "http://unitsofmeasure.org" and isinstance(node.get("code"), str):
                codes.add(node["code"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for path in files:
        walk(json.loads(path.read_text(encoding="utf-8")))
    assert {"kg/m2", "mm[Hg]", "/min", "mg/dL", "mmol/L", "10*3/uL", "{score}", "Cel"} <= codes
    bad = {code: str(_error(code)) for code in codes if not is_valid(code)}
    assert bad == {}


def _error(code: str) -> UcumError | None:
    try:
        parse(code)
    except UcumError as err:
        return err
    return None


# ---------------------------------------------------------------------------------------------- convert


@pytest.mark.parametrize(
    ("value", "src", "dst", "expected"),
    [
        (1.0, "[lb_av]", "kg", 0.45359237),
        (1.0, "[in_i]", "cm", 2.54),
        (1.0, "[ft_i]", "[in_i]", 12.0),
        (98.6, "[degF]", "Cel", 37.0),
        (-40.0, "[degF]", "Cel", -40.0),
        (100.0, "Cel", "[degF]", 212.0),
        (0.0, "Cel", "K", 273.15),
        (1.0, "mm[Hg]", "kPa", 0.133322),
        (120.0, "mm[Hg]", "Pa", 15998.64),
        (1.0, "h", "min", 60.0),
        (72.0, "/min", "/s", 1.2),
        (0.97, "1", "%", 97.0),
        (1.0, "L", "[foz_us]", 33.814022701843),
        (1.0, "g/dL", "g/L", 10.0),
        (1.0, "10*3/uL", "10*9/L", 1.0),
        (1.0, "kcal", "kJ", 4.184),
        (1.0, "[Cal]", "J", 4184.0),
    ],
)
def test_known_conversions(value: float, src: str, dst: str, expected: float) -> None:
    assert convert(value, src, dst) == pytest.approx(expected, rel=1e-6, abs=1e-9)


def test_atm_is_close_to_760_mmhg() -> None:
    # 101325 / 133.322 = 760.0021: the UCUM value of m[Hg] (133.3220 kPa) is rounded.
    assert convert(1.0, "atm", "mm[Hg]") == pytest.approx(760.0021, abs=1e-4)


def test_glucose_mass_substance_with_molar_mass() -> None:
    assert convert(5.5, "mmol/L", "mg/dL", molar_mass_g_per_mol=GLUCOSE) == pytest.approx(99.0858, rel=1e-9)
    assert round(convert(5.5, "mmol/L", "mg/dL", molar_mass_g_per_mol=GLUCOSE), 1) == 99.1
    assert convert(180.156, "mg/dL", "mmol/L", molar_mass_g_per_mol=GLUCOSE) == pytest.approx(10.0)
    # creatinine 1 mg/dL = 88.4 umol/L
    assert convert(1.0, "mg/dL", "umol/L", molar_mass_g_per_mol=113.12) == pytest.approx(88.40169, rel=1e-5)


def test_mass_substance_needs_molar_mass() -> None:
    with pytest.raises(IncommensurableUnitsError):
        convert(5.5, "mmol/L", "mg/dL")
    with pytest.raises(IncommensurableUnitsError):
        convert(5.5, "mmol/L", "mg", molar_mass_g_per_mol=GLUCOSE)  # not just mass vs substance
    with pytest.raises(ValueError, match="molar mass"):
        convert(5.5, "mmol/L", "mg/dL", molar_mass_g_per_mol=-1.0)


@pytest.mark.parametrize(
    ("src", "dst"), [("kg", "m"), ("mm[Hg]", "kg"), ("Cel", "kg"), ("/min", "min"), ("%", "g")]
)
def test_incommensurable(src: str, dst: str) -> None:
    assert not is_commensurable(src, dst)
    with pytest.raises(IncommensurableUnitsError):
        convert(1.0, src, dst)


def test_convert_rejects_invalid() -> None:
    with pytest.raises(UcumError):
        convert(1.0, "mmHg", "kPa")


# ---------------------------------------------------------------------------------------------- hypothesis

COMMENSURABLE_GROUPS: list[list[str]] = [
    ["kg", "g", "mg", "ug", "[lb_av]", "[oz_av]", "[gr]", "[stone_av]", "t"],
    ["m", "cm", "mm", "km", "[in_i]", "[ft_i]", "[yd_i]", "[mi_i]", "um"],
    ["Cel", "K", "[degF]", "[degRe]"],
    ["mm[Hg]", "kPa", "Pa", "bar", "atm", "cm[H2O]", "[in_i'Hg]", "mbar"],
    ["mg/dL", "g/L", "ug/mL", "kg/m3", "g%", "ng/mL"],
    ["mmol/L", "umol/L", "mol/m3", "meq/L", "nmol/mL"],
    ["s", "min", "h", "d", "wk", "mo", "a", "ms"],
    ["/min", "/s", "Hz", "/h", "{beats}/min"],
    ["%", "1", "[ppm]", "[ppth]", "10*-3", "{ratio}"],
    ["L", "mL", "dL", "[foz_us]", "[gal_us]", "[cup_us]", "[tsp_m]", "cm3"],
    ["mL/min", "L/h", "mL/min/{1.73_m2}", "mL/s"],
    ["[IU]/L", "m[IU]/mL", "[iU]/dL"],
    ["kg/m2", "g/cm2", "[lb_av]/[in_i]2"],
]

pairs = st.sampled_from(COMMENSURABLE_GROUPS).flatmap(
    lambda g: st.tuples(st.sampled_from(g), st.sampled_from(g))
)
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@given(pairs, finite)
def test_round_trip(pair: tuple[str, str], value: float) -> None:
    a, b = pair
    back = convert(convert(value, a, b), b, a)
    assert back == pytest.approx(value, rel=1e-9, abs=1e-6)


@given(pairs, finite, finite)
def test_conversion_is_affine(pair: tuple[str, str], x: float, y: float) -> None:
    a, b = pair
    # differences scale by the factor ratio even for offset units
    ua, ub = parse(a), parse(b)
    lhs = convert(x, a, b) - convert(y, a, b)
    assert lhs == pytest.approx((x - y) * ua.factor / ub.factor, rel=1e-9, abs=1e-6)


metric_atoms = st.sampled_from(sorted(c for c in metric_atom_codes() if not parse(c).special))
decimal_prefixes = st.sampled_from(sorted(p for p in prefix_codes() if p not in {"Ki", "Mi", "Gi", "Ti"}))


@given(metric_atoms, decimal_prefixes, st.integers(min_value=-3, max_value=3))
def test_prefix_scaling_law(atom: str, prefix: str, exponent: int) -> None:
    base = parse(f"{atom}{exponent}")
    prefixed = parse(f"{prefix}{atom}{exponent}")
    assert prefixed.dimension == base.dimension
    assert prefixed.arbitrary == base.arbitrary
    assert prefixed.factor == pytest.approx(base.factor * prefix_codes()[prefix] ** exponent, rel=1e-12)


@given(metric_atoms, decimal_prefixes, decimal_prefixes)
def test_prefix_conversion(atom: str, p: str, q: str) -> None:
    expected = prefix_codes()[p] / prefix_codes()[q]
    assert convert(1.0, p + atom, q + atom) == pytest.approx(expected, rel=1e-12)


def _simple_unit() -> st.SearchStrategy[str]:
    atoms = sorted(a for a in atom_codes() if not parse(a).special)
    plain = st.sampled_from(atoms)
    prefixed = st.tuples(decimal_prefixes, metric_atoms).map("".join)
    exponent = st.sampled_from(["", "2", "3", "-1", "-2", "+2"])
    annotation = st.sampled_from(["", "{total}", "{1.73_m2}", "{#}"])
    return st.tuples(st.one_of(plain, prefixed), exponent, annotation).map("".join)


def _term(depth: int) -> st.SearchStrategy[str]:
    component: st.SearchStrategy[str] = st.one_of(
        _simple_unit(), st.sampled_from(["{beats}", "{score}", "1", "10*3", "10^6", "100"])
    )
    if depth > 0:
        component = st.one_of(component, _term(depth - 1).map(lambda t: f"({t})"))
    return st.tuples(
        st.sampled_from(["", "/"]),
        component,
        st.lists(st.tuples(st.sampled_from([".", "/"]), component), max_size=3),
    ).map(lambda t: t[0] + t[1] + "".join(op + c for op, c in t[2]))


@given(_term(2))
def test_generated_valid_units_parse(code: str) -> None:
    unit = parse(code)
    assert unit.factor > 0 and math.isfinite(unit.factor)
    assert len(unit.dimension) == len(DIMENSIONS)


@given(_simple_unit(), _simple_unit())
def test_product_and_quotient_compose(a: str, b: str) -> None:
    ua, ub = parse(a), parse(b)
    prod, quot = parse(f"{a}.{b}"), parse(f"{a}/{b}")
    assert prod.factor == pytest.approx(ua.factor * ub.factor, rel=1e-12)
    assert quot.factor == pytest.approx(ua.factor / ub.factor, rel=1e-12)
    assert prod.dimension == tuple(x + y for x, y in zip(ua.dimension, ub.dimension, strict=True))
    assert quot.dimension == tuple(x - y for x, y in zip(ua.dimension, ub.dimension, strict=True))


@settings(max_examples=300)
@given(st.text(alphabet=st.sampled_from(list("mgLdkKs/.()[]{}^*+-0123456789_ %'Hx\t")), max_size=20))
def test_junk_never_crashes_with_anything_but_ucum_error(code: str) -> None:
    try:
        unit = parse(code)
    except UcumError as err:
        assert 0 <= err.position <= len(code)
        return
    assert unit.factor > 0


@settings(max_examples=200)
@given(st.text(max_size=15))
def test_arbitrary_text_never_crashes(code: str) -> None:
    assume(code != "")
    try:
        parse(code)
    except UcumError as err:
        assert 0 <= err.position <= len(code)
