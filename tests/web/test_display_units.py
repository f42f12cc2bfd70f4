"""Issue #15 item 8 in a real headless Chromium against a real server and store, signed in as the demo clinician:
the screens showed "37 Cel", "mm[Hg]", "2.9 {INR}" and "INR in Platelet poor plasma by Coagulation assay".
Now every unit a person reads is a display unit and every LOINC-coded value has its short name (one mapping,
vocab.display, served at /vocabulary), with the full name and the codes kept in the tooltip."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from tests.web.test_dashboard import api, fixed, open_patient, shot, text, wait
from tests.web.test_warfarin_whatif import sign_in

World = Any  # tests/web/conftest.py: World (base_url, store, users, patients, heavy)
pytestmark = pytest.mark.slow
#: what a person must never read: UCUM annotations and brackets, the UCUM code of degrees Celsius, long LOINC names
RAW = re.compile(r"\{[^}]*\}|\[(?:Hg|H2O|degF|in_i|lb_av|IU|ID)\]|\bCel\b|Platelet poor plasma|\[Mass/volume\]"
                 r"|\((?:disorder|finding)\)")


def test_record_and_live_show_display_units_and_short_names(world: World, browser: WebDriver) -> None:
    client = api(world)
    try:
        mine = world.patients[::2]  # the demo clinician's care team
        summaries = {pid: client.get(f"/patients/{pid}").json()["summary"] for pid in mine}
        patient = next(pid for pid, s in summaries.items() if any(lab["code"] == "6301-6" for lab in s["labs"]))
        inr = next(lab for lab in summaries[patient]["labs"] if lab["code"] == "6301-6")
        assert inr["unit"] == "{INR}" and inr["display"].startswith("INR in Platelet poor plasma")  # as coded
        at = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=2)
        r = client.post(f"/patients/{patient}/samples", json=[
            {"metric": "body_temperature", "unit": "Cel", "value": 37.4, "time": at.isoformat(), "id": "u-temp"},
            {"metric": "systolic_bp", "unit": "mm[Hg]", "value": 121, "time": at.isoformat(), "id": "u-sbp"},
            {"metric": "diastolic_bp", "unit": "mm[Hg]", "value": 79, "time": at.isoformat(), "id": "u-dbp"}])
        assert r.status_code == 200, r.text
    finally:
        client.close()

    sign_in(browser, world)
    open_patient(browser, world, patient, "record")
    wait(browser, lambda d: "observations on file" in text(d, "#panel-record"), message="the record tab")
    shot(browser, "display-units-record")
    record = text(browser, "#panel-record")
    assert not RAW.findall(record), RAW.findall(record)
    assert f"INR: {fixed(inr['value'], 1)}" in record, record[:2000]
    assert re.search(r"Temperature: \d+(\.\d)? °C", record) and re.search(r"Systolic BP: \d+ mmHg", record)
    button = browser.find_element(By.XPATH, "//section[contains(@class,'card')]//button[normalize-space()='INR']")
    title = button.get_attribute("title") or ""
    assert "INR in Platelet poor plasma by Coagulation assay" in title and "LOINC 6301-6" in title, title
    assert "UCUM {INR}" in title
    button.click()
    wait(browser, lambda d: "INR: history" in text(d, "#lab-detail h3"), message="the INR history")
    assert not RAW.findall(text(browser, "#lab-detail")), text(browser, "#lab-detail")

    open_patient(browser, world, patient, "live")
    wait(browser, lambda d: "°C" in text(d, "#tile-temp"), message="the temperature tile")
    shot(browser, "display-units-live")
    tiles = text(browser, "#panel-live")
    assert "37.4 °C" in " ".join(text(browser, "#tile-temp").split()) and "mmHg" in tiles
    assert not RAW.findall(tiles), RAW.findall(tiles)
    header = text(browser, ".pt-head")
    assert "Atrial fibrillation" in header and not RAW.findall(header), header
