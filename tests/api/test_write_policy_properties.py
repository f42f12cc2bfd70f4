"""Properties of the write policy (security/write_policy.py) over generated units and stores:

* what is stored outside a writer's reach changes nothing of the answer (outside reach = missing);
* a unit that passes never writes to, or over, a patient outside the writer's reach.
"""

from __future__ import annotations

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from medtwin.record.errors import RecordError
from medtwin.record.prepare import PreparedResource
from medtwin.security.scopes import ROLE_CEILING
from medtwin.security.write_policy import Writer, authorise_unit

PATIENTS = ("p1", "p2", "p3", "p4")
REACH = frozenset({"p1", "p2"})
TYPES = ("Observation", "Condition", "Patient", "Organization", "Device")
IDS = ("a", "b", "c")

resource = st.builds(
    lambda rtype, rid, patient, named_by, entry: PreparedResource(
        resource_type=rtype, id=patient if rtype == "Patient" and patient else rid, source={}, raw=b"{}",
        entry=entry, patient_id=patient if rtype not in ("Organization", "Device") else None, named_by=named_by),
    st.sampled_from(TYPES), st.sampled_from(IDS), st.sampled_from((*PATIENTS, None)),
    st.sampled_from(("url", "id", "fullUrl", "content", "criteria")), st.integers(1, 5))
stored_map = st.dictionaries(st.tuples(st.sampled_from(TYPES), st.sampled_from((*IDS, *PATIENTS))),
                             st.sampled_from((*PATIENTS, None)), max_size=12)
role = st.sampled_from(("admin", "clinician", "integration"))


def _writer(name: str) -> Writer:
    reach = None if name == "admin" else REACH if name == "clinician" else frozenset()
    return Writer(name, reach, ROLE_CEILING[name])


def _outcome(writer: Writer, unit: list[PreparedResource], stored: dict[tuple[str, str], str | None]) -> str:
    try:
        authorise_unit(writer, unit, stored)
    except RecordError as error:
        return f"{error.kind} {error.entry} {error.field} {error.message}"
    return "ok"


@settings(max_examples=400, deadline=None)
@given(role, st.lists(resource, min_size=1, max_size=4), stored_map)
def test_what_is_stored_outside_reach_changes_nothing(name: str, unit: list[PreparedResource],
                                                      stored: dict[tuple[str, str], str | None]) -> None:
    writer = _writer(name)
    visible = {k: p for k, p in stored.items() if writer.reaches(p) or k[0] in ("Organization", "Device")}
    # the preparer's part: an id it derives or finds is never one held outside reach (hidden_keys, and
    # ReachLimitedRecords finds nothing there), so only ids the writer named can be
    assume(not any((r.resource_type, r.id) in stored and (r.resource_type, r.id) not in visible
                   for r in unit if r.named_by not in ("url", "id")))
    assert _outcome(writer, unit, stored) == _outcome(writer, unit, visible)


@settings(max_examples=400, deadline=None)
@given(role, st.lists(resource, min_size=1, max_size=4), stored_map)
def test_an_authorised_unit_stays_within_reach(name: str, unit: list[PreparedResource],
                                               stored: dict[tuple[str, str], str | None]) -> None:
    writer = _writer(name)
    if _outcome(writer, unit, stored) != "ok":
        return
    for r in unit:
        if r.resource_type in ("Organization", "Device"):
            assert name in ("admin", "integration")
            continue
        assert r.patient_id is not None and writer.reaches(r.patient_id)
        key = (r.resource_type, r.id)
        if key in stored:
            assert writer.reaches(stored[key])
            assert name == "admin" or stored[key] == r.patient_id  # no move but by an admin
