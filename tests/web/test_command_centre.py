"""The hospital command centre (#/hospital) in a real headless Chromium against a real server, signed in as the
demo's operations account: ADT sent through the API moves the census on the page without a reload, the
forecast draws a band per unit, the what-if table shows the API's own paired answer side by side, and no
patient identifier or name appears anywhere on the page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from tests.web.test_dashboard import shot, text, wait
from tests.web.test_warfarin_whatif import api as admin

World = Any  # tests/web/conftest.py: World (base_url, store, users, patients, heavy)
pytestmark = pytest.mark.slow
MRN, NAME = "MRN-CC-5521", "LAZARILLO^TORMES"


def adt(control: str, event: str, when: datetime, mrn: str, unit: str = "") -> str:
    stamp = when.strftime("%Y%m%d%H%M%S")
    return "\r".join([f"MSH|^~\\&|EPIC|GEN|MEDTWIN|GEN|{stamp}||ADT^{event}|{control}|P|2.5",
                      f"EVN|{event}|{stamp}", f"PID|1||{mrn}^^^GEN^MR||{NAME}", f"PV1|1|E|{unit}^1^1"])


def sign_in_operations(driver: WebDriver, world: World) -> None:
    driver.get(world.base_url + "/#/hospital")
    wait(driver, lambda d: d.find_element(By.ID, "login-view").is_displayed()
         or d.find_elements(By.CSS_SELECTOR, "#cc-census tbody tr"), message="the sign-in form or the census")
    if driver.find_element(By.ID, "login-view").is_displayed():
        driver.find_element(By.ID, "username").send_keys("demo-operations")
        driver.find_element(By.ID, "password").send_keys(world.users["demo-operations"])
        driver.find_element(By.CSS_SELECTOR, "#login-form button").click()
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#cc-census tbody tr[data-unit]"), message="census rows")


def patients_on_page(driver: WebDriver, unit: str) -> int:
    return int(text(driver, f'#cc-census tr[data-unit="{unit}"] td[data-field="patients"]') or -1)


def test_census_moves_as_adt_arrives(world: World, browser: WebDriver) -> None:
    sign_in_operations(browser, world)
    assert "operations" in text(browser, "#who")
    # operations reach no patient: the page opens no patient event stream, so it never says live updates failed
    status = browser.find_element(By.ID, "live-status")
    assert not status.is_displayed() and "unavailable" not in (status.get_attribute("textContent") or "")
    before_ed, before_ward = patients_on_page(browser, "ed_treatment"), patients_on_page(browser, "ward")
    now = datetime.now(UTC).replace(microsecond=0)
    with admin(world) as client:
        for i, (hours, unit) in enumerate([(6, "ed_treatment"), (3, "ed_treatment"), (1, "ed_treatment"),
                                           (30, "ward")]):
            r = client.post("/hospital/adt", content=adt(f"CC{i}", "A01", now - timedelta(hours=hours),
                                                         f"{MRN}{i}", unit).encode())
            assert r.status_code == 200, r.text
    # both counts in one condition: the page may render a census read between the third ED admission and the
    # ward's (then ED is +3 and the ward not yet +1)
    wait(browser, lambda d: (patients_on_page(d, "ed_treatment"), patients_on_page(d, "ward"))
         == (before_ed + 3, before_ward + 1), timeout=30, message="the ED count +3 and the ward +1 without a reload")
    assert int(text(browser, "#cc-ed-count")) == before_ed + 3
    over4 = text(browser, "#cc-ed")
    assert "over 4 h" in over4
    page = browser.find_element(By.TAG_NAME, "body").text.upper()
    assert MRN not in page and "LAZARILLO" not in page and "TORMES" not in page
    with admin(world) as client:
        r = client.post("/hospital/adt", content=adt("CC9", "A03", now, f"{MRN}0").encode())
        assert r.status_code == 200, r.text
    wait(browser, lambda d: patients_on_page(d, "ed_treatment") == before_ed + 2, timeout=30,
         message="the discharge to show")


def test_forecast_bands_and_what_if_side_by_side(world: World, browser: WebDriver) -> None:
    sign_in_operations(browser, world)
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#cc-forecast figure[data-unit]")) == 6,
         timeout=60, message="a forecast figure per unit")
    assert browser.find_elements(By.CSS_SELECTOR, '#cc-forecast figure[data-unit="ward"] polygon.cc-band')
    wait(browser, lambda d: d.find_elements(By.ID, "cc-compare-run"), message="the what-if form")
    browser.find_element(By.ID, "cc-compare-run").click()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#cc-compare, #cc-whatif-result .error"), timeout=90,
         message="the comparison")
    headers = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "#cc-compare thead th")]
    assert headers[2:] == ["A surge: change (95 % CI)", "B staff: change (95 % CI)", "C outage: change (95 % CI)"]
    with admin(world) as client:  # the same request the page made: the page shows the API's numbers
        model = client.get("/hospital/live-model").json()
        role = model["roles"][0]
        body = {"model": model, "replications": 10, "weeks": 4, "warmup_weeks": 1, "seed": 1, "scenarios": [
            {"name": "A surge", "arrival_multiplier": 1.3},
            {"name": "B staff", "staff_by_hour": {role["name"]: [s + 2 for s in role["staff_by_hour"]]}},
            {"name": "C outage", "outages": [{"unit": "icu", "start_h": 168 + 24, "beds": 4, "duration_h": 48}]}]}
        expected = client.post("/hospital/compare", json=body).json()
    wait_h = expected["scenarios"]["A surge"]["difference"]["ed_wait_h"]
    cell = text(browser, '#cc-compare tr[data-metric="ed_wait_h"] td:nth-of-type(2)')
    shown = f"{wait_h['mean']:.3f}" if abs(wait_h["mean"]) < 10 else f"{wait_h['mean']:.1f}"
    assert shown in cell, (cell, wait_h)
    assert wait_h["mean"] > 0  # more arrivals, longer ED waits on the same patients
    icu = expected["scenarios"]["C outage"]["difference"]["wait_h.icu"]
    assert icu["mean"] > 0  # four ICU beds out for two days: a longer wait for ICU
    shot(browser, "command-centre")
