"""The byte-level shortcuts of the export (``Patient/$everything``, search pages, Bulk files) give exactly
what parsing would: the references of a resource, and the resource stamped with the server's meta."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from medtwin.record import exactjson
from medtwin.record.export import references_in_raw, references_of, stamped, with_version

_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
_reference = st.one_of(
    st.builds(lambda t, i: f"{t}/{i}", st.sampled_from(["Patient", "Encounter", "Organization"]),
              st.from_regex(r"[A-Za-z0-9\-.]{1,12}", fullmatch=True)),
    st.sampled_from(["#c1", "urn:uuid:1", "http://x/Patient/1", "Patient?identifier=a|b"]), _text)
_number = st.sampled_from(["840.20", "0.00", "1e5", "-0", "12345678901234567890.123", "123456789012345678901234"]).map(exactjson.DecimalText)
_leaf = st.one_of(_text, st.integers(-(2**63), 2**63 - 1), st.booleans(), _number, st.builds(lambda r: {"reference": r}, _reference))
_json = st.recursive(_leaf, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                    st.dictionaries(_text, inner, max_size=3)), max_leaves=12)
_meta = st.one_of(st.none(), st.just({}), st.builds(lambda p: {"profile": [p]}, _text),
                  st.builds(lambda n: {"tag": [{"code": "x", "version": n}]}, _number))


def _resource(body: dict[str, Any], meta: dict[str, Any] | None, contained_meta: bool) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Observation", "id": "o1", **body}
    if contained_meta and meta is not None:
        resource["contained"] = [{"resourceType": "Patient", "id": "c1", "meta": meta}]
    if meta is not None:
        resource["meta"] = meta
    resource.pop("reference", None)
    return resource


@settings(max_examples=300)
@given(st.dictionaries(_text.filter(lambda k: k not in ("resourceType", "id", "meta", "contained")), _json,
                       max_size=4), _meta, st.booleans(), st.integers(1, 10**6))
def test_byte_shortcuts_match_the_parsed_route(body: dict[str, Any], meta: dict[str, Any] | None,
                                               contained_meta: bool, version: int) -> None:
    resource = _resource(body, meta, contained_meta)
    raw = exactjson.dumps(resource)
    assert references_in_raw(raw) == references_of(exactjson.loads(raw))
    when = datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)
    assert stamped(raw, version, when) == exactjson.dumps(with_version(exactjson.loads(raw), version, when))
