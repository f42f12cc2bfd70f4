"""Issue #15 item 2 in a real headless Chromium against a real server, store and alert engine, signed in as the
demo clinician: a "critical" badge with the text "NEWS2 5: medium clinical risk" beside a tile reading NEWS2 2.

Vital signs are posted as a device would: a complete set scoring 7 (high), five minutes later one scoring 5
(medium), then 90 min later an incomplete set (respiration and pulse only) scoring 2. Before the fix the
alert kept "critical" (severity only went up) beside its medium text, and nothing said which 5 and which 2.
Now the severity follows the band (RCP 2017 Chart 2, vocab.news2: medium -> high), the alert shows its own
score, band and time with its history 7 -> 5, and the tile and the list show the current score, labelled."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from tests.web.test_alert_lifecycle import hh_mm
from tests.web.test_dashboard import api, open_patient, shot, text, wait
from tests.web.test_warfarin_whatif import sign_in

World = Any  # tests/web/conftest.py: World (base_url, store, users, patients, heavy)
pytestmark = pytest.mark.slow
UNITS = {"respiratory_rate": "/min", "spo2": "%", "supplemental_oxygen": "1", "systolic_bp": "mm[Hg]",
         "heart_rate": "/min", "consciousness": "1", "body_temperature": "Cel"}
NORMAL = {"respiratory_rate": 16, "spo2": 97, "supplemental_oxygen": 0, "systolic_bp": 120, "heart_rate": 70,
          "consciousness": 0, "body_temperature": 37.0}


def post_set(client: httpx.Client, patient: str, at: datetime, values: dict[str, float]) -> None:
    body = [{"metric": k, "unit": UNITS[k], "value": v, "time": at.isoformat(), "id": f"n2-{k}-{at:%H%M}"}
            for k, v in values.items()]
    r = client.post(f"/patients/{patient}/samples", json=body)
    assert r.status_code == 200 and r.json()["accepted"] == len(body), r.text


def news2_alert(client: httpx.Client, patient: str, score: float) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        items = client.get("/alerts", params={"patient": patient, "rule": "news2"}).json()["items"]
        if items and items[0]["score"] == score:
            found: dict[str, Any] = items[0]
            return found
        time.sleep(0.2)
    raise AssertionError(f"no NEWS2 alert with score {score} for {patient}")


def current_news2(client: httpx.Client, patient: str, score: int) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r = client.get(f"/patients/{patient}/news2")
        if r.status_code == 200 and r.json().get("aggregate") == score:
            found: dict[str, Any] = r.json()
            return found
        time.sleep(0.2)
    raise AssertionError(f"the current NEWS2 of {patient} is not {score}")


def test_badge_text_and_tile_agree_and_are_labelled(world: World, browser: WebDriver) -> None:
    patient = world.patients[2]  # in the demo clinician's care team
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    first, second, latest = now - timedelta(minutes=100), now - timedelta(minutes=95), now - timedelta(minutes=5)
    client = api(world)
    try:
        post_set(client, patient, first, {**NORMAL, "respiratory_rate": 22, "heart_rate": 135,
                                          "body_temperature": 39.5})  # 2 + 3 + 2 = 7: high
        assert news2_alert(client, patient, 7.0)["severity"] == "critical"
        post_set(client, patient, second, {**NORMAL, "respiratory_rate": 22, "heart_rate": 115,
                                           "body_temperature": 38.5})  # 2 + 2 + 1 = 5: medium
        alert = news2_alert(client, patient, 5.0)
        post_set(client, patient, latest, {"respiratory_rate": 16, "heart_rate": 115})  # 0 + 2, incomplete
        now_score = current_news2(client, patient, 2)
        bands = {b["name"]: b for b in client.get("/vocabulary").json()["news2"].get("risk_bands", [])}
    finally:
        client.close()
    assert now_score["complete"] is False and now_score["risk"] == "low"
    # the alert: its own score, the band's severity from the one mapping, never critical for a medium band
    assert alert["message"] == "NEWS2 5: medium clinical risk" and alert["details"]["risk"] == "medium"
    assert alert["severity"] == "high", alert["severity"]  # was "critical" beside "NEWS2 5: medium clinical risk"
    assert bands["medium"]["alert_severity"] == "high"
    assert alert["details"]["peak_severity"] == "critical" and alert["needs_person"] is True
    assert [(h[1], h[2]) for h in alert["details"]["history"]] == [(7, "high"), (5, "medium")]

    sign_in(browser, world)
    open_patient(browser, world, patient)
    item = "#alert-list li.alert-item"
    wait(browser, lambda d: "NEWS2 5" in text(d, item) and text(d, "#tile-news2 .badge"), message="alert and tile")
    shot(browser, "news2-consistency")
    shown = text(browser, item)
    badge = text(browser, f"{item} .alert-top .badge")
    assert badge == "high", shown  # the alert's severity, as the mapping says for a medium band
    assert "critical" not in badge
    title = browser.execute_script("return document.querySelector(arguments[0]).title", f"{item} .alert-top .badge")
    assert title == "high alert: NEWS2 medium clinical risk (RCP 2017: urgent response)", title
    score_line = text(browser, f"{item} .alert-score")
    assert score_line.startswith("Alert's score:") and "5" in score_line, score_line
    assert f"medium clinical risk at {hh_mm(browser, second.isoformat())}" in score_line, score_line
    history = browser.execute_script(
        "return [...document.querySelectorAll(arguments[0] + ' .alert-history .hist')].map(e => e.dataset.score)", item)
    assert history == ["7", "5"]
    assert f"7 (high) {hh_mm(browser, first.isoformat())}" in text(browser, f"{item} .alert-history")
    # the tile: the current score, labelled as such, with its band and time
    tile = text(browser, "#tile-news2")
    assert text(browser, "#tile-news2 h3") == "NEWS2 now (latest set)"
    assert text(browser, "#tile-news2 .badge").split()[0] == "2"
    assert "low clinical risk" in tile and "incomplete set" in tile and f"at {hh_mm(browser, latest.isoformat())}" in tile
    # the patient list: the current score, coloured by its band (low raises no alert: no severity colour)
    browser.get(world.base_url + "/#/patients")
    row = f"#patients tbody tr[data-id='{patient}']"
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f"{row} .badge[data-band]"), message="the list row")
    listed = browser.execute_script(  # read at once: the list re-renders on live events
        "const b = document.querySelector(arguments[0]); return [b.innerText, b.dataset.band, b.className]",
        f"{row} .badge[data-band]")
    assert listed[0].split()[0] == "2" and listed[1] == "low" and "sev-" not in listed[2], listed
    assert "NEWS2 5: medium clinical risk" in text(browser, row)  # the alert's own text beside it
