from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medtwin.security.scopes import (
    PERMISSION_ORDER,
    ROLE_CEILING,
    Scope,
    ScopeError,
    clamp_to_role,
    format_scopes,
    parse_scope,
    parse_scopes,
    scope_allows,
)

contexts = st.sampled_from(["patient", "user", "system"])
resources = st.one_of(st.just("*"), st.from_regex(r"[A-Z][A-Za-z]{0,20}", fullmatch=True))
permissions = st.sets(st.sampled_from(list(PERMISSION_ORDER)), min_size=1).map(
    lambda s: "".join(p for p in PERMISSION_ORDER if p in s))
scopes = st.builds(Scope, contexts, resources, permissions)


@given(scopes)
def test_round_trip(scope: Scope) -> None:
    assert parse_scope(str(scope)) == scope


@given(st.frozensets(scopes, max_size=6))
def test_round_trip_many(many: frozenset[Scope]) -> None:
    assert parse_scopes(format_scopes(many)) == many


@given(st.text(max_size=40))
def test_parser_never_crashes_and_only_accepts_valid(text: str) -> None:
    try:
        scope = parse_scope(text)
    except ScopeError as exc:
        assert repr(text) in str(exc)  # the message names the bad scope
    else:
        assert str(scope) == text or text.endswith((".read", ".write", ".*"))


@pytest.mark.parametrize("bad", ["patient/Observation.sr", "patient/Observation.rr", "patient/Observation.",
                                 "clinic/Observation.r", "patient/observation.r", "patient/Obs.rx",
                                 "patient/Observation.rs?category=laboratory", "Observation.rs"])
def test_rejects(bad: str) -> None:
    with pytest.raises(ScopeError):
        parse_scope(bad)


def test_v1_suffixes() -> None:
    assert parse_scope("patient/*.read") == Scope("patient", "*", "rs")
    assert parse_scope("user/Observation.write") == Scope("user", "Observation", "cud")
    assert parse_scope("system/*.*") == Scope("system", "*", "cruds")
    assert parse_scopes("openid fhirUser launch/patient patient/Patient.r") == {Scope("patient", "Patient", "r")}


def test_scope_allows() -> None:
    granted = parse_scopes("user/Observation.rs patient/Condition.r")
    assert scope_allows(granted, "Observation", "r")
    assert not scope_allows(granted, "Observation", "c")
    assert not scope_allows(granted, "Patient", "r")
    assert scope_allows(granted, "Condition", "r", context="patient")
    assert not scope_allows(granted, "Condition", "r", context="user")
    with pytest.raises(ValueError, match="interaction"):
        scope_allows(granted, "Observation", "x")


@given(st.frozensets(scopes, max_size=5), st.sampled_from(sorted(ROLE_CEILING)))
def test_clamp_never_exceeds_role(requested: frozenset[Scope], role: str) -> None:
    granted = clamp_to_role(requested, role)
    ceiling = ROLE_CEILING[role]
    for scope in granted:
        for p in scope.permissions:
            assert scope_allows(ceiling, scope.resource_type, p, context=scope.context)
    # nothing is granted that was not asked for
    for scope in granted:
        assert any(r.context == scope.context and r.resource_type == scope.resource_type
                   and set(scope.permissions) <= set(r.permissions) for r in requested)


def test_clamp_examples() -> None:
    assert clamp_to_role(parse_scopes("user/*.cruds"), "patient") == frozenset()
    assert clamp_to_role(parse_scopes("patient/*.cruds"), "patient") == {Scope("patient", "*", "rs")}
    assert clamp_to_role(parse_scopes("patient/Observation.crs"), "device") == {Scope("patient", "Observation", "c")}
    assert clamp_to_role(None, "clinician") == ROLE_CEILING["clinician"]
    with pytest.raises(ValueError, match="role"):
        clamp_to_role(None, "superuser")
