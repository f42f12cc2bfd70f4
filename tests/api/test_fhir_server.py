"""The /fhir REST API driven over HTTP by a real FHIR client (fhirclient, SMART on FHIR's Python client) on a
running uvicorn server: capability statement, read, vread, search with paging, history; the same reach
rules as /api/v1 (outside reach answers as missing); decimals as written."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from fhirclient import client as fhir_client
from fhirclient.models.bundle import Bundle
from fhirclient.models.observation import Observation
from fhirclient.models.patient import Patient

from medtwin.api.app import create_app
from medtwin.config import Settings
from medtwin.record import exactjson
from medtwin.record.errors import RecordError
from medtwin.record.prepare import uuid5
from medtwin.record.sources import RawUnit, read_units, unit_from_bytes
from medtwin.security import accounts
from medtwin.security.crypto import AesGcmCodec, KeyRing
from medtwin.store.database import Store
from medtwin.twin.build import import_units

PASSWORD = "correct horse battery staple"
P1, P2 = "fhir-p1", "fhir-p2"


def _observation(oid: str, patient: str, day: int, value: str) -> bytes:
    return (f'{{"resourceType":"Observation","id":"{oid}","status":"final","code":{{"coding":[{{"system":'
            f'"http://loinc.org","code":"2339-0"}}]}},"subject":{{"reference":"Patient/{patient}"}},'
            f'"effectiveDateTime":"2024-01-{day:02d}T08:00:00Z","valueQuantity":{{"value":{value},'
            f'"unit":"mg/dL","system":"http://unitsofmeasure.org","code":"mg/dL"}}}}').encode()


def _collection(*resources: bytes) -> bytes:
    return b'{"resourceType":"Bundle","type":"collection","entry":[' + b",".join(
        b'{"resource":' + r + b"}" for r in resources) + b"]}"


@dataclass
class Server:
    base: str
    tokens: dict[str, str]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def live_server(tmp_path_factory: pytest.TempPathFactory, name: str, *bodies: bytes) -> Iterator[tuple[Server, Store]]:
    """A fresh store holding ``bodies`` (imported in order), an admin and a clinician whose care team is P1,
    served over HTTP (the FHIR test modules' fixture)."""
    units = [unit_from_bytes(body, source=f"{name}-{number}.json") for number, body in enumerate(bodies)]
    store, ring, folder = seeded_store(tmp_path_factory, name, units)
    with _serving(store, ring, folder) as served:
        yield served, store


def seeded_store(tmp_path_factory: pytest.TempPathFactory, name: str,
                 units: Iterable[RawUnit | RecordError]) -> tuple[Store, KeyRing, Path]:
    """A fresh SQLite store (AES-GCM codec) in its own folder with ``units`` imported (each must succeed), an
    admin, and a clinician whose care team is P1."""
    folder: Path = tmp_path_factory.mktemp(name)
    ring = KeyRing.generate()
    store = Store(f"sqlite:///{folder / 'fhir.db'}", AesGcmCodec(ring))
    store.migrate()
    with store.begin() as connection:
        accounts.create_user(connection, "admin", PASSWORD, "admin")
        accounts.create_user(connection, "clinician", PASSWORD, "clinician")
        accounts.add_to_care_team(connection, "clinician", P1)
    report = import_units(store, units)
    assert report.ok, [u.error for u in report.errors]
    return store, ring, folder


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    first = [b'{"resourceType":"Patient","id":"' + p.encode() + b'","gender":"female","identifier":[{"system":'
             b'"urn:mrn","value":"MRN-' + p.encode() + b'"}]}' for p in (P1, P2)]
    first += [_observation(f"g{day}", P1, day, f"{100 + day}.10") for day in range(1, 8)]
    first.append(_observation("other", P2, 1, "99.0"))
    second = _collection(_observation("g1", P1, 1, "140.20"))  # g1 version 2
    with live_server(tmp_path_factory, "fhir", _collection(*first), second) as (served, _):
        yield served


@contextmanager
def _serving(store: Store, ring: KeyRing, folder: Path) -> Iterator[Server]:
    """``store`` served by uvicorn on a free loopback port in a thread; admin and clinician tokens."""
    import uvicorn

    settings = Settings(data_dir=folder, rate_limit_per_minute=100_000, login_attempts_per_minute=1000)
    app = create_app(settings, store=store, keyring=ring)
    port = _free_port()
    instance = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                             access_log=False, lifespan="on"))
    thread = threading.Thread(target=instance.run, name="fhir-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not instance.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the test server did not start"
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    tokens = {}
    for user in ("admin", "clinician"):
        answer = requests.post(f"{base}/api/v1/auth/token", timeout=30,
                               data={"grant_type": "password", "username": user, "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        tokens[user] = answer.json()["access_token"]
    try:
        yield Server(f"{base}/fhir", tokens)
    finally:
        instance.should_exit = True
        thread.join(timeout=30)
        store.dispose()


def _client(server: Server, user: str) -> Any:
    smart = fhir_client.FHIRClient(settings={"app_id": "medtwin-test", "api_base": server.base + "/"})
    smart.server.session.headers["Authorization"] = f"Bearer {server.tokens[user]}"
    return smart


def test_capability_statement_read_by_the_client(server: Server) -> None:
    smart = _client(server, "admin")
    smart.server.get_capability(force=True)
    capability = smart.server.capabilityStatement
    assert capability.fhirVersion == "4.0.1" and capability.format == ["json"]
    observation = next(r for r in capability.rest[0].resource if r.type == "Observation")
    assert {i.code for i in observation.interaction} == {"read", "vread", "create", "update", "history-instance",
                                                          "history-type", "search-type"}
    assert {i.code for i in capability.rest[0].interaction} == {"transaction", "batch"}
    assert {p.name for p in observation.searchParam} >= {"_id", "patient", "code", "date", "_lastUpdated"}


def test_read_and_vread_with_versions_and_decimals(server: Server) -> None:
    smart = _client(server, "admin")
    current = Observation.read("g1", smart.server)
    assert current.meta.versionId == "2" and current.valueQuantity.value == pytest.approx(140.2)
    raw = requests.get(f"{server.base}/Observation/g1", timeout=30,
                       headers={"Authorization": f"Bearer {server.tokens['admin']}"})
    assert b'"value":140.20' in raw.content and raw.headers["etag"] == 'W/"2"'
    first = requests.get(f"{server.base}/Observation/g1/_history/1", timeout=30,
                         headers={"Authorization": f"Bearer {server.tokens['admin']}"})
    assert first.status_code == 200 and b'"value":101.10' in first.content
    assert first.json()["meta"]["versionId"] == "1"
    patient = Patient.read(P1, smart.server)
    assert patient.gender == "female"
    found = Patient.where(struct={"identifier": f"urn:mrn|MRN-{P2}"}).perform(smart.server)
    assert [e.resource.id for e in found.entry] == [P2]
    assert Bundle.read_from(f"Patient?identifier=urn:other|MRN-{P2}", smart.server).total == 0


def test_history_of_an_instance(server: Server) -> None:
    smart = _client(server, "admin")
    history = Bundle.read_from("Observation/g1/_history", smart.server)
    assert history.type == "history" and history.total == 2
    assert [e.resource.meta.versionId for e in history.entry] == ["2", "1"]
    assert history.entry[1].request.method == "POST" and history.entry[0].request.method == "PUT"


def test_history_of_a_type_within_reach(server: Server) -> None:
    smart = _client(server, "admin")
    history = Bundle.read_from("Observation/_history?_count=100", smart.server)
    assert history.type == "history" and history.total == 9  # 8 Observations now, and g1 version 1
    versions = sorted((e.resource.id, e.resource.meta.versionId) for e in history.entry)
    assert ("g1", "1") in versions and ("g1", "2") in versions and ("other", "1") in versions
    headers = {"Authorization": f"Bearer {server.tokens['clinician']}"}
    mine = requests.get(f"{server.base}/Observation/_history", headers=headers, params={"_count": "2"},
                        timeout=30).json()
    assert mine["total"] == 8 and len(mine["entry"]) == 2  # P1's 7 Observations, g1 in two versions
    assert any(link["relation"] == "next" for link in mine["link"])


def test_search_with_paging_follows_next_links(server: Server) -> None:
    smart = _client(server, "admin")
    page = Observation.where(struct={"patient": P1, "code": "http://loinc.org|2339-0", "_count": "3"}) \
        .perform(smart.server)
    seen: list[str] = []
    pages = 0
    while True:
        pages += 1
        assert page.total == 7
        seen.extend(e.resource.id for e in page.entry or [])
        following = next((link.url for link in page.link if link.relation == "next"), None)
        if following is None:
            break
        page = Bundle.read_from(following.split("/fhir/", 1)[1], smart.server)
    assert pages == 3 and sorted(seen) == sorted(f"g{d}" for d in range(1, 8))
    dated = Bundle.read_from(f"Observation?patient={P1}&date=ge2024-01-03&date=lt2024-01-05", smart.server)
    assert sorted(e.resource.id for e in dated.entry) == ["g3", "g4"]
    day = Observation.where(struct={"date": "2024-01-02"}).perform(smart.server)
    assert [e.resource.id for e in day.entry] == ["g2"]
    assert Bundle.read_from("Observation?status=final", smart.server).total == 8
    assert Bundle.read_from("Observation?status=amended", smart.server).total == 0
    by_id = Observation.where(struct={"_id": "g5,other"}).perform(smart.server)
    assert sorted(e.resource.id for e in by_id.entry) == ["g5", "other"]


def test_everything_pages_the_record(server: Server) -> None:
    smart = _client(server, "admin")
    page = Bundle.read_from(f"Patient/{P1}/$everything?_count=3", smart.server)
    ids: list[str] = []
    while True:
        assert page.total == 8  # the patient and 7 Observations
        ids.extend(f"{e.resource.resource_type}/{e.resource.id}" for e in page.entry or [])
        following = next((link.url for link in page.link if link.relation == "next"), None)
        if following is None:
            break
        page = Bundle.read_from(following.split("/fhir/", 1)[1], smart.server)
    assert ids[0] == f"Patient/{P1}" and len(ids) == len(set(ids)) == 8
    whole = Bundle.read_from(f"Patient/{P1}/$everything", smart.server)  # default page: the whole record here
    assert len(whole.entry) == 8 and not any(link.relation == "next" for link in whole.link)
    headers = {"Authorization": f"Bearer {server.tokens['clinician']}"}
    assert requests.get(f"{server.base}/Patient/{P2}/$everything", headers=headers, timeout=30).status_code == 404
    assert requests.get(f"{server.base}/Patient/nobody/$everything", headers=headers, timeout=30).status_code == 404


def test_outside_reach_looks_like_missing(server: Server) -> None:
    headers = {"Authorization": f"Bearer {server.tokens['clinician']}"}
    other = requests.get(f"{server.base}/Observation/other", headers=headers, timeout=30)
    missing = requests.get(f"{server.base}/Observation/nothing-here", headers=headers, timeout=30)
    assert other.status_code == missing.status_code == 404
    assert other.json()["resourceType"] == "OperationOutcome"
    assert other.json()["issue"][0]["diagnostics"].replace("other", "X") == \
        missing.json()["issue"][0]["diagnostics"].replace("nothing-here", "X")
    own = requests.get(f"{server.base}/Observation/g2", headers=headers, timeout=30)
    assert own.status_code == 200
    everything = requests.get(f"{server.base}/Observation", headers=headers, params={"_count": "100"},
                              timeout=30).json()
    assert everything["total"] == 7 and all(e["resource"]["subject"]["reference"] == f"Patient/{P1}"
                                            for e in everything["entry"])
    assert requests.get(f"{server.base}/Observation", headers=headers, params={"patient": P2},
                        timeout=30).json()["total"] == 0
    assert requests.get(f"{server.base}/Observation/other/_history", headers=headers, timeout=30).status_code == 404


def test_errors_are_operation_outcomes(server: Server) -> None:
    unauthenticated = requests.get(f"{server.base}/Observation/g1", timeout=30)
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["resourceType"] == "OperationOutcome"
    headers = {"Authorization": f"Bearer {server.tokens['admin']}"}
    bad = requests.get(f"{server.base}/Observation", headers=headers, params={"date": "someday"}, timeout=30)
    assert bad.status_code == 400 and bad.json()["issue"][0]["expression"] == ["date"]
    unsupported = requests.get(f"{server.base}/Observation", headers=headers, params={"value-quantity": "5"},
                               timeout=30)
    assert unsupported.status_code == 400 and "value-quantity" in unsupported.json()["issue"][0]["diagnostics"]
    unknown = requests.get(f"{server.base}/Nonsense/1", headers=headers, timeout=30)
    assert unknown.status_code == 404 and orjson.loads(unknown.content)["resourceType"] == "OperationOutcome"


def _normalised(resource: dict[str, Any]) -> bytes:
    """The resource without what the server manages (id, meta.versionId/lastUpdated) and with references
    blanked (urn:uuid: ones become Type/id on import), as sorted JSON with decimals as written."""
    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: "REF" if k == "reference" else walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    copy = {k: v for k, v in resource.items() if k != "id"}
    meta = {k: v for k, v in (copy.pop("meta", None) or {}).items() if k not in ("versionId", "lastUpdated")}
    if meta:
        copy["meta"] = meta
    return exactjson.dumps(walk(copy), sort_keys=True)


def _count_decimal_texts(node: Any) -> int:
    """How many numbers a float would have changed (kept as written by ``exactjson``)."""
    if isinstance(node, dict):
        return sum(_count_decimal_texts(v) for v in node.values())
    if isinstance(node, list):
        return sum(_count_decimal_texts(v) for v in node)
    return int(isinstance(node, exactjson.DecimalText))


@pytest.mark.slow
def test_every_shared_synthea_resource_reads_back_identically(tmp_path_factory: pytest.TempPathFactory,
                                                              synthea_dir: Path) -> None:
    """Import the shared Synthea patients, read every resource back through /fhir (type searches, paged):
    identical after normalising server-managed fields; decimals byte-identical."""
    store, ring, folder = seeded_store(tmp_path_factory, "synthea-fhir", read_units([synthea_dir]))
    expected: dict[tuple[str, str], bytes] = {}
    decimals = 0
    for path in synthea_dir.glob("*.json"):
        if path.name == "MANIFEST.json":
            continue
        text = path.read_bytes()
        for entry in exactjson.loads(text)["entry"]:
            resource = entry["resource"]
            server_id = uuid5(entry["fullUrl"]) if entry.get("fullUrl") else resource["id"]
            expected.setdefault((resource["resourceType"], server_id), _normalised(resource))
            decimals += _count_decimal_texts(resource)
    with _serving(store, ring, folder) as served:
        headers = {"Authorization": f"Bearer {served.tokens['admin']}"}
        got: dict[tuple[str, str], bytes] = {}
        for rtype in sorted({t for t, _ in expected}):
            url: str | None = f"{served.base}/{rtype}?_count=500"
            while url:
                page = exactjson.loads(requests.get(url, headers=headers, timeout=60).content)
                for entry in page.get("entry", []):
                    got[(rtype, entry["resource"]["id"])] = _normalised(entry["resource"])
                url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
    assert set(got) == set(expected)
    different = [key for key in expected if got[key] != expected[key]]
    assert different == [], different[:3]
    assert len(expected) > 7000 and decimals > 100  # numbers like 840.20 came back with their digits
