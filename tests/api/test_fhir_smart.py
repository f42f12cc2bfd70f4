"""SMART discovery: the document names endpoints that exist (a token obtained through the announced token
endpoint reads /fhir; the announced revocation endpoint revokes it) and exactly the scopes the roles can be
granted."""

from __future__ import annotations

import requests
from fastapi.testclient import TestClient
from tests.api.test_fhir_server import PASSWORD, Server, server  # noqa: F401 (the fixture)

from medtwin.api.routers import auth
from medtwin.security.scopes import ROLE_CEILING, parse_scopes


def test_discovery_document_describes_working_endpoints(client: TestClient) -> None:
    for path in ("/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration"):
        answer = client.get(path, headers={"Authorization": ""})
        assert answer.status_code == 200, path
        document = answer.json()
        assert document["grant_types_supported"] == ["password", "refresh_token"] == list(auth.GRANT_TYPES)
        assert document["capabilities"] == ["permission-v2", "permission-v1"]
        assert "authorization_endpoint" not in document  # no launch flow exists
    granted = {str(s) for ceiling in ROLE_CEILING.values() for s in ceiling}
    assert set(document["scopes_supported"]) == granted and "user/*.cruds" in granted
    assert parse_scopes(" ".join(document["scopes_supported"]))  # each one parses
    token_url = document["token_endpoint"]
    assert token_url.endswith("/api/v1/auth/token")
    token = client.post(token_url, data={"grant_type": "password", "username": "admin",
                                         "password": "correct horse battery staple", "scope": "system/Patient.rs"})
    assert token.status_code == 200 and token.json()["scope"] == "system/Patient.rs"
    bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
    assert client.get("/fhir/Patient", headers=bearer).status_code == 200
    assert client.get("/fhir/Observation", headers=bearer).status_code == 403  # the scope is honoured
    revoked = client.post(document["revocation_endpoint"], data={"token": token.json()["refresh_token"]})
    assert revoked.status_code == 200
    assert client.get("/fhir/Patient", headers=bearer).status_code == 401


def test_discovery_needs_no_token_over_http(server: Server) -> None:  # noqa: F811 (the imported fixture)
    root = server.base.rsplit("/fhir", 1)[0]
    document = requests.get(f"{server.base}/.well-known/smart-configuration", timeout=30).json()
    assert document["token_endpoint"] == f"{root}/api/v1/auth/token"
    answer = requests.post(document["token_endpoint"], timeout=30,
                           data={"grant_type": "password", "username": "clinician", "password": PASSWORD})
    assert answer.status_code == 200
