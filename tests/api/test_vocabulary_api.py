"""``GET /api/v1/vocabulary`` (one vocabulary, cached by ETag, any signed-in principal) and the episode example
through the API: the CGM report counts the consensus episodes the alerts count."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from medtwin.synthetic import generate_bundles
from medtwin.vocab.glucose import HYPER_L1, HYPO_L1, HYPO_L2

#: the issue's example: 15 min below 70, one reading (5 min) back at 75, 15 min below 70 again
EXAMPLE_MG_DL = (65, 65, 65, 75, 65, 65, 65)


def test_the_vocabulary_serves_metrics_thresholds_episode_forecast_and_rules(client: TestClient) -> None:
    response = client.get("/api/v1/vocabulary")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    body = response.json()
    metrics = {m["name"]: m for m in body["metrics"]}
    assert metrics["body_temperature"]["unit"] == "Cel" and metrics["body_temperature"]["display_unit"] == "°C"
    assert metrics["systolic_bp"]["display_unit"] == "mmHg" and "8480-6" in metrics["systolic_bp"]["loinc"]
    levels = {lv["name"]: lv["threshold_mg_dl"] for lv in body["glucose"]["levels"]}
    assert levels == {"hypo-l2": HYPO_L2, "hypo-l1": HYPO_L1, "hyper-l2": 250.0, "hyper-l1": HYPER_L1}
    assert body["episode"]["begins_after_min"] == 15.0 and "2023" in body["episode"]["source"]
    assert [f["name"] for f in body["forecast_fields"]][:3] == ["patient_id", "issued_at", "glucose_now_mg_dl"]
    assert len(body["forecast_fields"]) == 16  # with the measured reading, trend, expected reading, offset, twin share
    kinds = {k["name"]: k["label"] for r in body["alert_rules"] for k in r["alerts"]}
    assert kinds["predicted-hypo"] == "Predicted hypoglycaemia" and set(kinds) >= {"hypo-l1", "news2", "hr-deviation"}
    assert body["news2"]["risk"]["high_aggregate"] == 7


def test_the_vocabulary_is_cached_by_etag_and_needs_a_signed_in_caller(client: TestClient) -> None:
    first = client.get("/api/v1/vocabulary")
    etag = first.headers["etag"]
    assert etag.startswith('"') and first.headers["cache-control"] == "private, max-age=300"
    again = client.get("/api/v1/vocabulary", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    other = client.get("/api/v1/vocabulary", headers={"If-None-Match": '"not-it"'})
    assert other.status_code == 200 and other.headers["etag"] == etag
    anonymous = client.get("/api/v1/vocabulary", headers={"Authorization": ""})
    assert anonymous.status_code == 401


def test_the_cgm_report_counts_the_example_as_one_episode(client: TestClient) -> None:
    bundle = generate_bundles(n_patients=1)[0]
    assert client.post("/api/v1/record", content=json.dumps(bundle).encode(),
                       headers={"content-type": "application/fhir+json"}).status_code == 201
    patient = str(client.get("/api/v1/patients").json()["items"][0]["id"])
    t0 = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
    samples = [{"metric": "glucose", "time": (t0 + timedelta(minutes=5 * i)).isoformat(), "value": v,
                "unit": "mg/dL", "id": f"g{i}"} for i, v in enumerate(EXAMPLE_MG_DL)]
    posted = client.post(f"/api/v1/patients/{patient}/samples", json=samples)
    assert posted.status_code in (200, 201, 202) and posted.json()["accepted"] == 7, posted.text
    report = client.get(f"/api/v1/patients/{patient}/cgm-report", params={"days": 1})
    assert report.status_code == 200, report.text
    metrics = report.json()["metrics"]
    assert metrics["hypo_episodes_below_70"] == 1 and metrics["hypo_episodes_below_54"] == 0
    assert metrics["hyper_episodes_above_180"] == 0


def test_a_rule_registered_at_run_time_changes_the_document_and_its_etag(client: TestClient) -> None:
    from medtwin.alerts import registry
    from medtwin.alerts.rule import AlertKind, RuleInfo
    from medtwin.alerts.rules.news2 import News2Rule

    class Renamed(News2Rule):
        info = RuleInfo(name="test-news2-copy", label="NEWS2 (copy)", description="A test-only copy.",
                        alerts=(AlertKind("test-news2-copy", "NEWS2 copy", "Test only.", ("high",)),),
                        metrics=("spo2",))

    before = client.get("/api/v1/vocabulary")
    registry.register("test-news2-copy", Renamed)
    try:
        after = client.get("/api/v1/vocabulary", headers={"If-None-Match": before.headers["etag"]})
        assert after.status_code == 200 and after.headers["etag"] != before.headers["etag"]
        assert "test-news2-copy" in {r["name"] for r in after.json()["alert_rules"]}
    finally:
        registry.unregister("test-news2-copy")
    assert client.get("/api/v1/vocabulary").headers["etag"] == before.headers["etag"]
