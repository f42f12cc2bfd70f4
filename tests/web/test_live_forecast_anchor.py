"""Issue #15 item 1 in a real headless Chromium against a real server and store, signed in as the demo clinician:
the live chart's forecast started about 20 mg/dL below the last CGM point and a predicted-hypoglycaemia alert
quoted the filter's estimate ("Glucose 66 mg/dL is below 70 mg/dL") beside a list reading 85. Now the drawn
forecast starts at the last reading, the tile says "CGM <reading> mg/dL, ...; forecast ..." and the alert text
names the CGM reading.

The readings are those of ``tests/twin/test_live_anchor.py``: 2 h at 100 mg/dL, a fall to 55 held for an hour,
then a quick rise to 87, which leaves the filter's sensor-corrected estimate well below the reading."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from tests.twin.test_live_anchor import READINGS
from tests.web.test_dashboard import api, fixed, open_patient, shot, text, wait
from tests.web.test_warfarin_whatif import sign_in

World = Any  # tests/web/conftest.py: World (base_url, store, users, patients, heavy)
pytestmark = pytest.mark.slow
LOW_END = len(READINGS) - 5  # the readings up to the end of the low spell (55 mg/dL), then the rise


def post(client: httpx.Client, patient: str, values: list[float], start: datetime, first: int) -> None:
    body = [{"metric": "glucose", "unit": "mg/dL", "value": v, "id": f"anchor-{first + k}",
             "time": (start + timedelta(minutes=5 * (first + k))).isoformat()} for k, v in enumerate(values)]
    r = client.post(f"/patients/{patient}/samples", json=body)
    assert r.status_code == 200 and r.json()["accepted"] == len(values), r.text


def forecast_at(client: httpx.Client, patient: str, when: datetime) -> dict[str, Any] | None:
    r = client.get(f"/patients/{patient}/forecast")
    if r.status_code != 200 or datetime.fromisoformat(r.json()["issued_at"]) < when:
        return None
    found: dict[str, Any] = r.json()
    return found


def test_the_forecast_starts_at_the_last_reading_and_the_alert_names_the_cgm_value(
        world: World, browser: WebDriver) -> None:
    patient = world.patients[2]  # in the demo clinician's care team; no CGM until now
    client = api(world)
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(minutes=5 * (len(READINGS) - 1))
    sign_in(browser, world)

    # the low spell: the CGM reads 55 mg/dL, so the rule says so with the reading
    assert READINGS[LOW_END - 1] == 55.0 and READINGS[-1] == 87.0
    post(client, patient, READINGS[:LOW_END], start, 0)
    low_end = start + timedelta(minutes=5 * (LOW_END - 1))
    low = wait(browser, lambda d: forecast_at(client, patient, low_end), timeout=60, message="the low forecast")
    assert low["last_reading_mg_dl"] == 55.0
    open_patient(browser, world, patient)
    wait(browser, lambda d: "CGM 55 mg/dL" in text(d, "#alert-list"), timeout=30,
         message="the predicted-hypoglycaemia alert naming the CGM reading")
    alert_text = text(browser, "#alert-list")
    assert "CGM below 70 mg/dL: CGM 55 mg/dL" in alert_text and "Glucose " not in alert_text
    stored = client.get("/alerts", params={"patient": patient, "rule": "predicted-hypo"}).json()["items"]
    assert stored and stored[0]["details"]["cgm_mg_dl"] == 55.0
    # a new patient: the twin has not yet shown skill, so the flat line is the last reading held and the legend
    # and the caption say so in the forecast's own words (never "Forecast (mean)" as if the twin drew it)
    assert set(low["twin_share"]) == {0.0} and low["basis_label"] == "Forecast: last reading held", low["twin_share"]
    wait(browser, lambda d: low["basis_label"] in text(d, "#chart-near .legend").splitlines(), timeout=30,
         message="the forecast line's legend naming its basis")
    assert "Forecast (mean)" not in text(browser, "#chart-near .legend")
    assert text(browser, "#forecast-basis").startswith("Forecast: last reading held (issued from the CGM reading at")

    # the quick rise to 87: the filter's estimate lags below it; the chart starts at the reading regardless
    post(client, patient, READINGS[LOW_END:], start, LOW_END)
    last = wait(browser, lambda d: forecast_at(client, patient, now), timeout=60, message="the final forecast")
    assert last["last_reading_mg_dl"] == 87.0
    wait(browser, lambda d: "CGM 87 mg/dL" in text(d, "#forecast-30"), timeout=30,
         message="the tile's forecast sentence with the reading")
    near = "#chart-near"
    wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, near).get_attribute("data-last-cgm") == "87",
         timeout=20, message="the chart's last CGM point")
    drawn_start = float(browser.find_element(By.CSS_SELECTOR, near).get_attribute("data-forecast-start") or "nan")
    assert abs(drawn_start - 87.0) <= 1.0, (drawn_start, last["glucose_now_mg_dl"])
    assert last["basis_label"] in text(browser, "#chart-near .legend").splitlines()  # the newer forecast's basis
    summary = text(browser, "#forecast-30")
    assert summary == last["summary"] and summary.startswith("CGM 87 mg/dL")
    if last["material_offset"]:  # the twin holds a sensor offset: both values are shown
        assert f"(glucose {last['glucose_now_mg_dl']:.0f} mg/dL)" in summary
    # the twin's box shows the same estimate as the forecast, beside the reading, never as one
    wait(browser, lambda d: "last CGM reading 87" in text(d, "#live-twin"), timeout=30, message="the twin box")
    assert f"{fixed(last['glucose_now_mg_dl'])} mg/dL" in text(browser, "#live-twin")
    shot(browser, "live-forecast-anchor")
