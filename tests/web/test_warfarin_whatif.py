"""Issue #15 item 4 in a real headless Chromium against a real server and store, signed in as the demo clinician:
the demo's warfarin patient has no PGx report (the demo stores none), and the warfarin what-if used to fail with
"patient.cyp2c9: required by the Hamberg2007 model of warfarin (patient.cyp2c9: required by ...)". Now it answers
with the genotype-unknown model and says so in one sentence, offers the IWPC clinical dose, uses a stored genotype
naming its pgx version, and an error (individualising without a genotype) appears once, in the result box."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from tests.web.test_dashboard import api as dashboard_api
from tests.web.test_dashboard import fixed, shot
from tests.web.test_pgx_chips import wait

from medtwin.security import accounts
from medtwin.synthetic import archetype_keys, generate_bundles

World = Any  # tests/web/conftest.py: World (base_url, store, users, patients, heavy)
pytestmark = pytest.mark.slow
AF = archetype_keys().index("atrial_fibrillation")


def api(world: World) -> httpx.Client:
    """A client signed in as the demo admin with the what-if's long timeout (use it in a ``with`` block)."""
    return dashboard_api(world, timeout=120)


def text(driver: WebDriver, selector: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, selector).text)


@pytest.fixture(scope="module")
def ungenotyped(world: World) -> str:
    """A second AF-on-warfarin patient as the demo creates them: record only, no PGx report, in the demo
    clinician's care team."""
    bundle = generate_bundles(n_patients=AF + 6)[AF + 5]  # the archetypes cycle: the next AF patient
    with api(world) as client:
        response = client.post("/record", content=json.dumps(bundle).encode(),
                               headers={"content-type": "application/fhir+json"})
        assert response.status_code == 201, response.text
        (patient_id,) = response.json()["units"][0]["patients"]
        assert client.get(f"/twins/{patient_id}/drugs/pgx").status_code == 404  # no genotype stored
    with world.store.begin() as connection:
        accounts.add_to_care_team(connection, "demo-clinician", patient_id)
    return str(patient_id)


def sign_in(driver: WebDriver, world: World) -> None:
    driver.get(world.base_url + "/")
    wait(driver, lambda d: d.find_element(By.ID, "login-view").is_displayed()
         or d.find_elements(By.CSS_SELECTOR, "#patients tbody tr[data-id]"), message="the sign-in form or patients")
    if not driver.find_element(By.ID, "login-view").is_displayed():
        return  # still signed in (this tab's session)
    driver.find_element(By.ID, "username").send_keys("demo-clinician")
    driver.find_element(By.ID, "password").send_keys(world.users["demo-clinician"])
    driver.find_element(By.CSS_SELECTOR, "#login-form button").click()
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#patients tbody tr[data-id]"), message="patients")


def run_warfarin(driver: WebDriver, world: World, patient_id: str) -> None:
    driver.get(f"{world.base_url}/#/patients/{patient_id}/whatif")
    wait(driver, lambda d: d.find_elements(By.ID, "wi-drug"), message="the drug form")
    driver.execute_script("const s = document.getElementById('wi-drug'); s.value = 'warfarin';"
                          "s.dispatchEvent(new Event('change'));")
    driver.find_element(By.ID, "run-drug").click()
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#drug-compare, #drug-result .error"), timeout=120,
         message="the warfarin answer")


def visible_on_top(driver: WebDriver, selector: str) -> bool:
    """The element is shown and the topmost element at its centre (no toast over it)."""
    return bool(driver.execute_script(
        "const e = document.querySelector(arguments[0]); if (!e) return false; e.scrollIntoView({block: 'center'});"
        "const r = e.getBoundingClientRect(); const top = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);"
        "return r.width > 0 && r.height > 0 && (top === e || e.contains(top));", selector))


def test_warfarin_what_if_without_a_stored_genotype_answers_and_says_so(world: World, browser: WebDriver,
                                                                         ungenotyped: str) -> None:
    sign_in(browser, world)
    run_warfarin(browser, world, ungenotyped)

    assert not browser.find_elements(By.CSS_SELECTOR, "#drug-result .error"), text(browser, "#drug-result")
    note = text(browser, "#drug-genotype-note")
    assert note == ("No CYP2C9 or VKORC1 genotype stored: simulated over population genotype frequencies (European "
                    "ancestry; 1000 Genomes European MAFs in Shendre 2018, Table 1), so the bands include the genotype "
                    "uncertainty.")
    assert "INR" in text(browser, "#drug-compare")
    # the IWPC clinical dose the server computed for this patient, shown as the genotype-free alternative
    with api(world) as client:
        versions = client.get(f"/patients/{ungenotyped}/versions").json()
        latest = versions[-1]
        assert latest["kind"] == "drug-simulation"
        body = {"drug": "warfarin", "regimens": [{"dose": "5 mg", "route": "oral", "interval_h": 24, "n_doses": 7}],
                "horizon_h": 168, "n_samples": 20}
        dose = client.post(f"/twins/{ungenotyped}/drugs/compare", json=body).json()["clinical_dose"]
    shown = text(browser, "#drug-clinical-dose")
    assert shown.startswith(f"Genotype-free alternative: {fixed(dose['daily_dose_mg'], 1)} mg/day "
                            f"({fixed(dose['weekly_dose_mg'], 1)} mg/week) by the IWPC 2009 clinical algorithm"), shown
    assert visible_on_top(browser, "#drug-genotype-note")
    shot(browser, "warfarin-genotype-unknown")


def test_individualising_without_a_genotype_shows_the_error_once_in_the_result_box(
        world: World, browser: WebDriver, ungenotyped: str) -> None:
    sign_in(browser, world)
    run_warfarin(browser, world, ungenotyped)
    browser.find_element(By.CSS_SELECTOR, "details.individualise summary").click()
    level = browser.find_elements(By.CSS_SELECTOR, "#dose-form table.rows")[1].find_element(
        By.CSS_SELECTOR, "input[aria-label=Value]")
    level.send_keys("1.6")
    browser.find_element(By.ID, "run-individualise").click()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#dose-result .error"), timeout=60, message="the error")
    error = text(browser, "#dose-result .error")
    assert error == ("patient.cyp2c9: No CYP2C9 genotype stored; a dose from measured levels is fitted for one "
                     "genotype: give it in the request or upload a PGx report"), error
    assert error.count("patient.cyp2c9") == 1  # was "...(patient.cyp2c9: required by ...)"
    assert visible_on_top(browser, "#dose-result .error")


def test_stored_genotype_is_used_and_named_with_its_pgx_version(world: World, browser: WebDriver) -> None:
    patient = world.patients[AF]  # genotyped by the world fixture (CYP2C9 *1/*3, VKORC1 G/A)
    with api(world) as client:
        version = client.get(f"/twins/{patient}/drugs/pgx").json()["version"]
    sign_in(browser, world)
    run_warfarin(browser, world, patient)
    assert text(browser, "#drug-genotype-note") == (f"Genotype used: CYP2C9 *1/*3 (pgx v{version}: CYP2C9) and "
                                                    f"VKORC1 G/A (pgx v{version}: VKORC1).")
    assert not browser.find_elements(By.ID, "drug-clinical-dose")
