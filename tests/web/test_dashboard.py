"""The clinician's dashboard in a real headless Chromium against a real server and store.

Runs in file order on one browser: sign in, the patient list, opening a patient with 30 days of CGM and
per-minute heart rate (timed), a live CGM point and forecast arriving without a reload, acknowledging an
alert, the record / CGM report / history tabs, a what-if comparison, the PDF report, keyboard use, token
refresh and sign out. Every screen is checked with axe-core (no critical violations) and saved as a
screenshot in test-artifacts/.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
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
        return WebDriverWait(driver, timeout, poll_frequency=0.1,
                             ignored_exceptions=(StaleElementReferenceException,)).until(condition)
    except TimeoutException:
        shot(driver, "failure")
        logs = "\n".join(e["message"][:300] for e in driver.get_log("browser"))
        raise AssertionError(f"timed out: {message}\nbrowser log:\n{logs}") from None


def css(driver: WebDriver, selector: str) -> Any:
    return driver.find_element(By.CSS_SELECTOR, selector)


def fixed(value: float, digits: int = 0) -> str:
    """What the page shows for ``value``: JavaScript's ``toFixed`` rounds the exact binary value half up, where
    Python's format rounds an exact tie to even (124.5 is '125' on the page, '124' from ``f"{124.5:.0f}"``)."""
    return str(Decimal(value).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


def text(driver: WebDriver, selector: str) -> str:
    """The rendered text of the first match ('' if none), read in one call (parts of the page re-render)."""
    found: str = driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.innerText : ''", selector)
    return found


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
    """Run axe-core on the page; fail on critical violations; keep the report in test-artifacts/. Also fail on
    anything the Content Security Policy refused since the last check (an inline script or style)."""
    refused = [e["message"] for e in driver.get_log("browser") if "Content Security Policy" in e["message"]]
    assert not refused, f"CSP violations on {name}: {refused}"
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


def api(world: World, user: str = "demo-admin", timeout: float = 30) -> httpx.Client:
    """A client of the running server's API signed in as ``user`` (use it in a ``with`` block to close it)."""
    token = httpx.post(world.base_url + "/api/v1/auth/token", timeout=30, data={
        "grant_type": "password", "username": user, "password": world.users[user]})
    assert token.status_code == 200, token.text
    return httpx.Client(base_url=world.base_url + "/api/v1", timeout=timeout,
                        headers={"Authorization": f"Bearer {token.json()['access_token']}"})


def list_rows(driver: WebDriver) -> list[dict[str, str]]:
    """The patient list's rows (id, name, text), read atomically."""
    rows: list[dict[str, str]] = driver.execute_script(
        "return [...document.querySelectorAll('#patients tbody tr[data-id]')].map(r => ({id: r.dataset.id,"
        " name: r.querySelector('th a').textContent, text: r.innerText}))")
    return rows


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
    rows = list_rows(browser)  # the list re-renders on live events: read it in one go
    assert [r["id"] for r in rows] == [world.patients[2], world.patients[0]]  # care team = patients[::2]; alerted first
    assert "1 high" in rows[0]["text"] and "glucose above 250" in rows[0]["text"]
    heavy = rows[1]["text"]
    latest = api(world).get(f"/patients/{world.heavy}/samples/latest").json()["latest"]
    assert fixed(latest['glucose']['value']) in heavy and fixed(latest['heart_rate']['value']) in heavy
    axe(browser, "patients")
    shot(browser, "patients")

    # sort by name, then search
    css(browser, "th[data-sort=name] button").click()
    names = [r["name"] for r in list_rows(browser)]
    assert names == sorted(names, key=str.lower)
    assert css(browser, "th[data-sort=name]").get_attribute("aria-sort") == "ascending"
    full_name = api(world).get(f"/patients/{world.heavy}").json()["summary"]["name"]
    css(browser, "#search").send_keys(full_name)
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#patients tbody tr[data-id]")) == 1,
         message="the search to narrow the list")
    assert [r["id"] for r in list_rows(browser)] == [world.heavy]
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
    # the last 24 h is drawn: 288 CGM points a day and 1,440 heart-rate points, less what the window has slid
    # past since the world was seeded 25 min before "now" (12 CGM points an hour: room for an hour's delay)
    assert t["glucose_points"] >= 270 and t["heart_rate_points"] >= 1300

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
    assert css(browser, "#glucose-now").text == fixed(latest['glucose']['value'])
    assert f"latest {fixed(latest['glucose']['value'])} mg/dL" in text(browser, "#chart-glucose .readout")

    # the whole 30 days: 8,640 CGM and 43,200 heart-rate readings, downsampled by the API to the chart width
    switches = []
    for _ in range(3):
        browser.execute_script("delete window.medtwinTimings.window_720h_ms; delete window.medtwinTimings.window_24h_ms")
        css(browser, ".segmented button:last-child").click()
        wait(browser, lambda d: "window_720h_ms" in timings(d), message="the 30-day window")
        switches.append(timings(browser)["window_720h_ms"])
        if len(switches) < 3:
            css(browser, ".segmented button:nth-child(2)").click()
            wait(browser, lambda d: "window_24h_ms" in timings(d))
    record_timing("switch_to_30_days_ms (load + draw 8,640 CGM + 43,200 HR, 3 runs)", switches)
    found = re.search(r"Showing 30 d · (\d+) CGM readings, (\d+) heart-rate readings", text(browser, ".live-note"))
    assert found, text(browser, ".live-note")
    assert int(found.group(1)) > 8600 and int(found.group(2)) > 43000  # the stored 30 days (less the minutes since)
    shot(browser, "patient-30-days")
    css(browser, ".segmented button:nth-child(2)").click()
    wait(browser, lambda d: "window_24h_ms" in timings(d))
    axe(browser, "patient-live")
    shot(browser, "patient-live")


def test_live_cgm_point_and_forecast_without_reload(world: World, browser: WebDriver) -> None:
    open_patient(browser, world, world.heavy)
    wait(browser, lambda d: "Live" in text(d, "#live-status"), message="the event stream to connect")
    browser.execute_script("window.__sameDocument = 'yes'")
    client = api(world)
    forecast_before = text(browser, "#forecast-30")
    draws_before = browser.execute_script("return document.querySelector('#chart-glucose canvas') && 1")
    assert draws_before == 1
    now = datetime.now(UTC).replace(microsecond=0)
    values = [176.0, 181.0, 187.0]
    for i, value in enumerate(values):  # three new readings, 5 min apart, the last one just now
        t = now - timedelta(minutes=5 * (len(values) - 1 - i))
        r = client.post(f"/patients/{world.heavy}/samples", json=[
            {"metric": "glucose", "time": t.isoformat(), "value": value, "unit": "mg/dL", "id": f"live-{i}"}])
        assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
        wait(browser, lambda d, v=value: text(d, "#glucose-now") == fixed(v), timeout=15,
             message=f"the tile to show {value}")
    wait(browser, lambda d: "latest 187 mg/dL" in text(d, "#chart-glucose .readout"), timeout=10,
         message="the chart's latest reading")
    wait(browser, lambda d: text(d, "#forecast-30") not in ("", forecast_before), timeout=20,
         message="the 30-min forecast to appear or move")

    def shows_the_apis_forecast(d: WebDriver) -> bool:  # a newer forecast may land between page and API reads
        forecast = client.get(f"/patients/{world.heavy}/forecast").json()
        return fixed(forecast["mean_mg_dl"][forecast["horizons_min"].index(30)]) in text(d, "#forecast-30")

    wait(browser, shows_the_apis_forecast, timeout=20, message="the page's 30-min forecast to be the API's")
    assert browser.execute_script("return window.__sameDocument") == "yes"  # no reload happened
    shot(browser, "patient-live-update")


def test_alert_arrives_and_is_acknowledged(world: World, browser: WebDriver) -> None:
    from medtwin.alerts.engine import publish_alert

    open_patient(browser, world, world.heavy)
    wait(browser, lambda d: "Live" in text(d, "#live-status"))
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#alert-list li"), message="the alerts panel")
    with world.store.begin() as connection:
        alert, how = AlertRepository(connection, world.store.codec, lambda: datetime.now(UTC)).open(AlertCandidate(
            patient_id=world.heavy, rule="predicted-hypo", severity="high", dedupe_key=f"{world.heavy}:predicted-hypo",
            time=datetime.now(UTC), message="glucose predicted below 70 mg/dL in 25 min", score=25.0))
    publish_alert(world.server.config.app.state.services.hub, how, alert)  # as the alert engine does after its commit
    item = f"#alert-list li[data-id='{alert.id}']"
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, item), timeout=15, message="the new alert in the panel")
    wait(browser, lambda d: "predicted below 70" in d.execute_script(
        "return document.getElementById('announcer').textContent"), message="the live-region announcement")
    assert "Predicted hypoglycaemia" in text(browser, item)
    axe(browser, "patient-alert")
    shot(browser, "patient-alert")
    css(browser, f"{item} button[aria-label^='Acknowledge']").click()
    wait(browser, lambda d: css(d, item).get_attribute("data-status") == "acknowledged", message="acknowledged")
    stored = api(world).get(f"/alerts/{alert.id}").json()
    assert stored["status"] == "acknowledged" and stored["acknowledged_by"] == "demo-clinician"
    css(browser, f"{item} button[aria-label^='Resolve']").click()
    wait(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, item), message="the resolved alert to leave the list")
    assert api(world).get(f"/alerts/{alert.id}").json()["status"] == "resolved"



def test_alert_worklist_across_patients(world: World, browser: WebDriver) -> None:
    from medtwin.alerts.engine import publish_alert

    browser.get(world.base_url + "/#/alerts")
    wait(browser, lambda d: "most urgent first" in text(d, "#alerts-view"), message="the worklist")
    client = api(world)
    open_before = client.get("/alerts", params={"status": "open", "limit": 1}).json()["total"]
    with world.store.begin() as connection:
        alert, how = AlertRepository(connection, world.store.codec, lambda: datetime.now(UTC)).open(AlertCandidate(
            patient_id=world.patients[2], rule="news2", severity="critical", dedupe_key=f"{world.patients[2]}:news2",
            time=datetime.now(UTC), message="NEWS2 8: high clinical risk", score=8.0))
    publish_alert(world.server.config.app.state.services.hub, how, alert)
    item = f"#worklist li[data-id='{alert.id}']"
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, item), timeout=15, message="the alert in the worklist")
    name = client.get(f"/patients/{world.patients[2]}").json()["summary"]["name"]
    assert name in text(browser, item) and text(browser, "#worklist li .badge") == "critical"  # most severe first
    wait(browser, lambda d: text(d, "#alert-count") == str(open_before + 1), message="the header count")
    wait(browser, lambda d: f"critical alert for {name}" in d.execute_script(
        "return document.getElementById('announcer').textContent"), message="the announcement with the patient's name")
    axe(browser, "alerts")
    shot(browser, "alerts")
    css(browser, f"{item} button[aria-label^='Acknowledge']").click()
    wait(browser, lambda d: text(d, "#alert-count") == str(open_before) or (open_before == 0 and not css(
        d, "#alert-count").is_displayed()), message="the count after acknowledging")
    assert client.get(f"/alerts/{alert.id}").json()["status"] == "acknowledged"
    css(browser, f"{item} .alert-patient a").click()
    wait(browser, lambda d: d.execute_script(
        "const p = document.getElementById('panel-live'); return p && p.dataset.ready === 'true'"))
    assert text(browser, "#patient-title") == name

def test_record_cgm_report_and_history_tabs(world: World, browser: WebDriver) -> None:
    open_patient(browser, world, world.heavy, "record")
    wait(browser, lambda d: "observations on file" in text(d, "#panel-record"), message="the record tab")
    entries = browser.find_elements(By.CSS_SELECTOR, "#timeline li")
    assert len(entries) > 10 and any("Lab" in e.text for e in entries) and any("Encounter" in e.text for e in entries)
    dates = [e.find_element(By.TAG_NAME, "time").get_attribute("datetime") for e in entries[:20]]
    assert dates == sorted(dates, reverse=True)
    css(browser, "#panel-record .card button.link").click()  # a lab's history
    wait(browser, lambda d: "history" in text(d, "#lab-detail h3"))
    axe(browser, "patient-record")
    shot(browser, "patient-record")

    css(browser, "#tab-cgm").click()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#agp canvas"), message="the AGP chart")
    report = api(world).get(f"/patients/{world.heavy}/cgm-report", params={"days": 14}).json()
    tir = report["metrics"]["time_in_range_70_180_percent"]
    assert f"In range 70–180: {fixed(tir, 1)} %" in text(browser, "#panel-cgm")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#panel-cgm table.targets tbody tr")) == len(report["targets"])
    axe(browser, "patient-cgm")
    shot(browser, "patient-cgm")

    css(browser, "#tab-history").click()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#panel-history table.versions tbody tr"))
    versions = api(world).get(f"/patients/{world.heavy}/versions").json()
    rows = browser.find_elements(By.CSS_SELECTOR, "#panel-history table.versions tbody tr")
    assert len(rows) == len(versions) and rows[0].text.startswith(f"v{versions[-1]['version']}")
    axe(browser, "patient-history")
    shot(browser, "patient-history")


def test_what_if_two_regimens_side_by_side(world: World, browser: WebDriver) -> None:
    open_patient(browser, world, world.heavy, "whatif")
    wait(browser, lambda d: d.find_elements(By.ID, "run-glucose"), message="the what-if form")
    axe(browser, "patient-whatif-form")
    basis = api(world).get(f"/twins/{world.heavy}/glucose/basis").json()  # the live twin once CGM streamed
    assert css(browser, "#wi-basis").get_attribute("data-kind") == basis["kind"] != "none"
    assert text(browser, "#wi-basis") == basis["description"] and not browser.find_elements(By.ID, "wi-virtual")
    css(browser, "#run-glucose").click()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#glucose-compare"), timeout=90, message="the comparison")
    assert text(browser, "#glucose-basis").startswith("Basis: the patient's")
    heads = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "#glucose-compare thead th")][1:]
    assert heads == ["Current", "Basal +20 %"]
    tir = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#glucose-compare tbody tr:first-child td")]
    assert len(tir) == 2 and all("%" in c for c in tir)
    saved = text(browser, "#glucose-saved")
    latest = api(world).get(f"/patients/{world.heavy}/versions").json()[-1]
    assert latest["kind"] == "glucose-simulation" and saved.endswith(f"saved as twin version {latest['version']}")
    assert latest["provenance"]["regimens"] == ["Current", "Basal +20 %"]

    browser.execute_script("const s = document.getElementById('wi-drug'); s.value = 'theophylline';"
                           "s.dispatchEvent(new Event('change'));")
    css(browser, "#run-drug").click()  # theophylline: 300 mg vs 450 mg every 12 h
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#drug-compare"), timeout=90, message="the drug comparison")
    cols = browser.find_elements(By.CSS_SELECTOR, "#drug-compare thead th")[1:]
    assert [c.text.split(" ")[0] for c in cols] == ["300", "450"]
    assert "P(target)" in text(browser, "#drug-compare")

    # the suggested dose from a measured level (MAP individualisation on the twin)
    css(browser, "details.individualise summary").click()
    level = browser.find_elements(By.CSS_SELECTOR, "#dose-form table.rows")[1].find_element(
        By.CSS_SELECTOR, "input[aria-label=Value]")
    level.send_keys("6.5")
    css(browser, "#run-individualise").click()
    wait(browser, lambda d: d.find_elements(By.ID, "dose-suggestion"), timeout=120, message="the dose suggestion")
    suggestion = text(browser, "#dose-suggestion")
    versions = api(world).get(f"/patients/{world.heavy}/versions").json()
    assert versions[-1]["kind"] == "drug-simulation"
    assert suggestion.startswith(("Suggested: ", "No dose meets")) and "P(target)" in suggestion
    axe(browser, "patient-whatif")
    shot(browser, "patient-whatif")


def test_pdf_and_html_report_download(world: World, browser: WebDriver, downloads: Path) -> None:
    open_patient(browser, world, world.heavy)
    for kind, magic in (("pdf", b"%PDF"), ("html", b"<!")):
        css(browser, f"#report-{kind}").click()
        wait(browser, lambda d, k=kind: f"{k.upper()} report downloaded" in text(d, ".report-status"), timeout=60,
             message=f"the {kind} report")
        deadline = time.monotonic() + 20
        files: list[Path] = []
        while time.monotonic() < deadline:
            files = [f for f in downloads.glob(f"*.{kind}")]
            if files and not list(downloads.glob("*.crdownload")):
                break
            time.sleep(0.2)
        assert files, f"no .{kind} file in {list(downloads.iterdir())}"
        head = files[0].read_bytes()[:64]
        assert head.lstrip().upper().startswith(magic.upper()), head


def test_keyboard_only(world: World, browser: WebDriver) -> None:
    browser.get(world.base_url + "/#/")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#patients tbody tr[data-id]"))
    body = css(browser, "body")
    body.click()
    for _ in range(40):  # Tab through the page until the link to the patient with data has the focus
        browser.switch_to.active_element.send_keys(Keys.TAB)
        if browser.execute_script("const r = document.activeElement.closest('#patients tbody tr');"
                                  "return r ? r.dataset.id : null") == world.heavy:
            break
    else:
        raise AssertionError("the patient link is not reachable with Tab")
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#tab-live[aria-selected=true]"))
    css(browser, "#tab-live").send_keys(Keys.ARROW_RIGHT)
    wait(browser, lambda d: css(d, "#tab-record").get_attribute("aria-selected") == "true")
    assert not css(browser, "#panel-record").get_attribute("hidden") and css(browser, "#panel-live").get_attribute("hidden")
    browser.switch_to.active_element.send_keys(Keys.ARROW_LEFT)
    wait(browser, lambda d: d.execute_script(
        "const p = document.getElementById('panel-live'); return !p.hidden && p.dataset.ready === 'true'"))
    canvas = css(browser, "#chart-glucose canvas")
    canvas.send_keys(Keys.END)
    canvas.send_keys(Keys.ARROW_LEFT)
    wait(browser, lambda d: "CGM glucose" in text(d, "#chart-glucose .readout") and "latest" not in text(d, "#chart-glucose .readout"))
    assert "mg/dL" in text(browser, "#chart-glucose .readout")


def test_pharmacogenomics_drive_the_warfarin_what_if(world: World, browser: WebDriver) -> None:
    patient = world.patients[2]  # atrial fibrillation on warfarin, genotyped (CYP2C9 *1/*3, VKORC1 G/A)
    open_patient(browser, world, patient, "whatif")
    wait(browser, lambda d: d.find_elements(By.ID, "wi-drug"), message="the drug form")
    # no diabetes, no CGM: no insulin regimens (#15 item 9), and the form opens on his own drug
    assert browser.find_elements(By.ID, "wi-no-glucose") and not browser.find_elements(By.ID, "wi-basis")
    assert browser.execute_script("return document.getElementById('wi-drug').value") == "warfarin"
    chips = [c.text for c in browser.find_elements(By.CSS_SELECTOR, ".chip.pgx")]
    genes = {g["gene"]: g["phenotype"] for g in api(world).get(f"/patients/{patient}").json()["pharmacogenomics"]["genes"]}
    assert f"CYP2C9 {genes['CYP2C9']}" in chips and len(chips) == len(genes)
    wait(browser, lambda d: d.find_elements(By.ID, "wi-drug"), message="the drug form")
    browser.execute_script("const s = document.getElementById('wi-drug'); s.value = 'warfarin';"
                           "s.dispatchEvent(new Event('change'));")
    assert css(browser, "#drug-form .regimen input").get_attribute("value") == "5 mg"
    css(browser, "#run-drug").click()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#drug-compare"), timeout=120, message="warfarin")
    assert "INR" in text(browser, "#drug-result")  # the response chart of a PK/PD model
    basis = browser.execute_script("return document.querySelector('#drug-result details').textContent")
    assert "*1/*3" in basis and "pgx" in basis.lower()  # CYP2C9 came from the stored genotype
    shot(browser, "patient-warfarin")


def test_token_refresh_and_sign_out(world: World, browser: WebDriver) -> None:
    browser.get(world.base_url + "/#/")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#patients tbody tr[data-id]"))
    before = browser.execute_script("return JSON.parse(sessionStorage.getItem('medtwin.session'))")
    browser.execute_script("const s = JSON.parse(sessionStorage.getItem('medtwin.session')); s.access = 'expired.or.revoked';"
                           "sessionStorage.setItem('medtwin.session', JSON.stringify(s));")
    browser.refresh()  # the first call answers 401; the page refreshes the token and carries on
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#patients tbody tr[data-id]"), message="the list after refresh")
    after = browser.execute_script("return JSON.parse(sessionStorage.getItem('medtwin.session'))")
    assert after["access"] not in (before["access"], "expired.or.revoked") and after["refresh"] != before["refresh"]
    css(browser, "#logout").click()
    wait(browser, lambda d: css(d, "#login-view").is_displayed())
    assert browser.execute_script("return sessionStorage.getItem('medtwin.session')") is None
    reuse = httpx.post(world.base_url + "/api/v1/auth/token",
                       data={"grant_type": "refresh_token", "refresh_token": after["refresh"]})
    assert reuse.status_code == 400  # revoked on sign-out
