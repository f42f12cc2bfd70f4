"""The dashboard's Tumour tab (issue #18 item 4) in a real headless Chromium against a real server and store.

A patient is imported as a FHIR transaction (POST /record) with six longest-diameter readings of one lesion
(LOINC 21889-1, mm); a patient without such readings gets no Tumour tab. The tab shows the readings, and on
"Fit and forecast" the fitted law with its AIC and the forecast with its 80 % band at the next assessment:
the same numbers the API answers. The comparison shows continue / stop / switch and two radiotherapy schemes
side by side with BED/EQD2 and RECIST ("not callable" after radiotherapy, and why) and the stated assumptions.
Checked with axe-core; screenshot in test-artifacts/dashboard-tumour.png.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from tests.web.test_dashboard import axe, fixed, open_patient, shot, wait
from tests.web.test_warfarin_whatif import api, sign_in

from medtwin.api.routers.tumour import TUMOUR_SIZE_CODES
from medtwin.oncology.measurements import DIAMETER_MM, ELLIPSOID, VOLUME_MM3
from medtwin.security import accounts

World = Any  # tests/web/conftest.py: World (base_url, store, users, patients, heavy)
pytestmark = pytest.mark.slow
JS = resources.files("medtwin.web").joinpath("static", "js", "tumour.js").read_text(encoding="utf-8")
DIAMETERS_MM = [(0, 20.0), (42, 22.0), (84, 25.0), (126, 27.5), (168, 31.0), (210, 34.0)]  # day, longest diameter
AHEAD_DAYS = 56.0  # the tab's default next assessment
REGIMENS = [{"name": "stop", "log_kill_per_day": 0, "cycle_days": 21, "days_on": 1},
            {"name": "dose-dense q14d", "log_kill_per_day": 0.05, "cycle_days": 14, "days_on": 1}]
SCHEMES = [{"name": "60 Gy / 30 fx", "total_gy": 60, "fractions": 30, "overall_days": 39},
           {"name": "55 Gy / 20 fx", "total_gy": 55, "fractions": 20, "overall_days": 26}]
CURRENT = {"name": "current", "log_kill_per_day": 0.05, "cycle_days": 21, "days_on": 1}


def tumour_bundle(first: datetime) -> dict[str, Any]:
    patient = str(uuid.uuid4())
    entries: list[dict[str, Any]] = [{"fullUrl": f"urn:uuid:{patient}", "resource": {
        "resourceType": "Patient", "id": patient, "name": [{"family": "Tumour", "given": ["Lesion"]}],
        "gender": "female", "birthDate": "1961-03-04"}, "request": {"method": "POST", "url": "Patient"}}]
    for days, size in DIAMETERS_MM:
        oid = str(uuid.uuid4())
        entries.append({"fullUrl": f"urn:uuid:{oid}", "resource": {
            "resourceType": "Observation", "id": oid, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "21889-1", "display": "Size Tumor"}]},
            "subject": {"reference": f"urn:uuid:{patient}"},
            "effectiveDateTime": (first + timedelta(days=days)).isoformat(),
            "valueQuantity": {"value": size, "unit": "mm", "system": "http://unitsofmeasure.org", "code": "mm"}},
            "request": {"method": "POST", "url": "Observation"}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


@pytest.fixture(scope="module")
def lesion_patient(world: World) -> str:
    first = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0) - timedelta(days=230)
    with api(world) as client:
        response = client.post("/record", content=json.dumps(tumour_bundle(first)).encode(),
                               headers={"content-type": "application/fhir+json"})
        assert response.status_code == 201, response.text
        (patient_id,) = response.json()["units"][0]["patients"]
    with world.store.begin() as connection:
        accounts.add_to_care_team(connection, "demo-clinician", patient_id)
    return str(patient_id)


def inner(driver: WebDriver, selector: str) -> str:
    found: str = driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.innerText : ''", selector)
    return found


def tabs(driver: WebDriver) -> list[str]:
    found: list[str] = driver.execute_script(
        "return [...document.querySelectorAll('[role=tab]')].map(t => t.textContent)")
    return found


def test_the_js_copies_match_the_python() -> None:
    """tumour.js keeps the record codes and the size -> volume rule only to list and plot the readings."""
    codes = re.search(r"TUMOUR_SIZE_CODES = \[([^\]]*)\]", JS)
    assert codes and re.findall(r'"([^"]+)"', codes.group(1)) == list(TUMOUR_SIZE_CODES)
    assert f"ELLIPSOID = {ELLIPSOID};" in JS
    for name, table in (("DIAMETER_MM", DIAMETER_MM), ("VOLUME_MM3", VOLUME_MM3)):
        found = re.search(name + r" = \{([^}]*)\}", JS)
        assert found, name
        assert {k: float(v) for k, v in re.findall(r"(\w+): ([\d.]+)", found.group(1))} == table


def test_no_tumour_tab_without_readings(world: World, browser: WebDriver) -> None:
    sign_in(browser, world)
    open_patient(browser, world, world.heavy)
    assert "Tumour" not in tabs(browser) and "What-if" in tabs(browser)
    browser.get(f"{world.base_url}/#/patients/{world.heavy}/tumour")  # asked for anyway: the Live tab
    wait(browser, lambda d: d.execute_script(
        "const t = document.getElementById('tab-live'); return t && t.getAttribute('aria-selected') === 'true'"),
        message="the live tab instead")


def test_tumour_tab_shows_the_api_fit_forecast_and_comparison(world: World, browser: WebDriver,
                                                              lesion_patient: str) -> None:
    sign_in(browser, world)
    open_patient(browser, world, lesion_patient, "tumour")
    # no CGM report tab: the lesion patient has no CGM (the panels answer; issue #15 item 9)
    assert tabs(browser) == ["Live", "Record", "What-if", "Tumour", "History"]
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#tumour-readings tbody tr"), message="the readings")
    rows = browser.find_elements(By.CSS_SELECTOR, "#tumour-readings tbody tr")
    assert len(rows) == len(DIAMETERS_MM)
    cells = rows[-1].find_elements(By.TAG_NAME, "td")
    assert [c.text for c in cells[1:4]] == ["210", "34 mm", fixed(ELLIPSOID * 34.0 ** 3)]

    browser.find_element(By.ID, "run-tumour-fit").click()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#tumour-model, #tumour-fit-result .error"), timeout=60,
         message="the fit")
    assert not browser.find_elements(By.CSS_SELECTOR, "#tumour-fit-result .error"), inner(browser, "#tumour-fit-result")
    with api(world) as client:
        fitted = client.post(f"/patients/{lesion_patient}/tumour/fit", json={"model": "auto"}).json()
        ahead = client.post(f"/patients/{lesion_patient}/tumour/forecast",
                            json={"model": "auto", "horizon_days": [AHEAD_DAYS], "level": 0.8}).json()
        body = {"model": "auto", "assessment_day": AHEAD_DAYS, "current": CURRENT, "regimens": REGIMENS, "radiotherapy": SCHEMES}
        compared = client.post(f"/patients/{lesion_patient}/tumour/compare", json=body).json()
    lesion = fitted["lesions"][0]
    assert fitted["source"] == "record" and lesion["readings"] == len(DIAMETERS_MM)
    model = lesion["model"]
    shown = inner(browser, "#tumour-model")
    assert shown.startswith("Fitted: ") and f"({model}) · AIC {lesion['laws'][model]['aic']:.2f} · 6 readings" in shown
    assert re.search(r"saved as twin version \d+$", shown), shown
    law_rows = browser.find_elements(By.CSS_SELECTOR, "#tumour-laws tbody tr")
    assert [r.get_attribute("data-law") for r in law_rows] == list(lesion["laws"])
    point = ahead["lesions"][0]["points"][0]
    assert point["interval"] == "calibrated"
    forecast = inner(browser, "#tumour-forecast")
    assert (f"(56 days after the last reading): {fixed(point['volume_mm3'])} mm³ (80 % interval "
            f"{fixed(point['lower_mm3'])}–{fixed(point['upper_mm3'])} mm³)") in forecast, forecast
    drawn = browser.execute_script(
        "return [...document.querySelectorAll('#panel-tumour .legend li')].map(l => l.textContent)")
    assert drawn[:2] == ["Readings (volume from size)", "80 % forecast interval"] and "Forecast" in drawn

    browser.find_element(By.ID, "run-tumour-compare").click()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#tumour-compare, #tumour-compare-result .error"),
         timeout=60, message="the comparison")
    assert not browser.find_elements(By.CSS_SELECTOR, "#tumour-compare-result .error"), inner(
        browser, "#tumour-compare-result")
    scenarios = compared["lesions"][0]["scenarios"]
    heads = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "#tumour-compare thead th")]
    assert heads == ["Scenario", "continue", "stop", "dose-dense q14d", "60 Gy / 30 fx", "55 Gy / 20 fx"]
    table = {r.find_element(By.TAG_NAME, "th").text: [c.text for c in r.find_elements(By.TAG_NAME, "td")]
             for r in browser.find_elements(By.CSS_SELECTOR, "#tumour-compare tbody tr")}
    assert table["RECIST"] == [s["recist"] for s in scenarios]
    assert table["RECIST"][3:] == ["not callable", "not callable"]
    assert table["Volume"][:3] == [f"{fixed(s['volume_mm3'])} mm³" for s in scenarios[:3]]
    assert table["Longest diameter"][:3] == [f"{fixed(s['diameter_mm'], 1)} mm" for s in scenarios[:3]]
    assert table["BED (Gy)"] == ["—", "—", "—", "72.0", fixed(scenarios[4]['bed_gy'], 1)]  # 60/30 at α/β 10
    assert table["EQD2 (Gy)"][3:] == ["60.0", "58.4"]  # the LQ figures
    assert table["Cell kill (log₁₀)"][3:] == [f"{s['log10_cell_kill']:.2f}" for s in scenarios[3:]]
    reason = inner(browser, ".tu-reason")
    assert reason == f"Volume and RECIST after radiotherapy: not callable, because {scenarios[3]['reason']}."
    assumptions = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#tumour-assumptions li")]
    assert assumptions == compared["assumptions"]
    legend = browser.execute_script(
        "return [...document.querySelectorAll('#panel-tumour .legend li')].map(l => l.textContent)")
    assert legend[-3:] == [f"{s['name']}: {s['recist']}" for s in scenarios[:3]]  # chemotherapy at the assessment
    axe(browser, "tumour")
    shot(browser, "tumour")


def test_a_refused_comparison_says_which_field_in_the_result_box(world: World, browser: WebDriver,
                                                                 lesion_patient: str) -> None:
    sign_in(browser, world)
    open_patient(browser, world, lesion_patient, "tumour")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#tumour-rt input[aria-label=Fractions]"),
         message="the compare form")
    fractions = browser.find_elements(By.CSS_SELECTOR, "#tumour-rt input[aria-label=Fractions]")[0]
    fractions.clear()  # left blank (the browser checks the 1-60 range itself; a blank is the API's to refuse)
    browser.find_element(By.ID, "run-tumour-compare").click()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#tumour-compare-result .error, #tumour-compare"),
         timeout=60, message="the refusal")
    error = inner(browser, "#tumour-compare-result .error")
    assert "radiotherapy.0.fractions" in error and not browser.find_elements(By.ID, "tumour-compare"), error
