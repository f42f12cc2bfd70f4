"""Issue #15 item 3 in a real headless Chromium against a real server, store and alert engine, signed in as the
demo clinician: a level 2 hypoglycaemia (CGM 39 mg/dL) that recovered used to be auto-resolved by "system"
within about a minute and hidden by the worklist's default filter. Now it stays on the default worklist,
marked "condition cleared at HH:MM", until the clinician acknowledges it (which closes it, in their name),
and the worklist's "Resolved" filter shows it afterwards."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.select import Select
from tests.web.test_dashboard import api, axe, shot, text, wait
from tests.web.test_warfarin_whatif import sign_in

World = Any  # tests/web/conftest.py: World (base_url, store, users, patients, heavy)
pytestmark = pytest.mark.slow


def level_2_hypo_that_recovers(world: World, patient_id: str) -> dict[str, Any]:
    """CGM 39 mg/dL for 15 min, then 110 mg/dL for 15 min, posted as a device would; the server's alert
    engine decides. Returns the hypo-l2 alert once the engine has seen the recovery. (The low readings and
    the recovery are posted as two uploads, the second after the alert opened: an episode that begins and
    ends within one engine pass opens no alert at all, a separate defect, see the report of #15 item 3.)"""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    points = [(now - timedelta(minutes=40 - 5 * i), 39.0 if i < 4 else 110.0) for i in range(8)]
    client = api(world)

    def post(part: list[tuple[int, tuple[datetime, float]]]) -> None:
        r = client.post(f"/patients/{patient_id}/samples", json=[
            {"metric": "glucose", "time": t.isoformat(), "value": v, "unit": "mg/dL", "id": f"hypo-{i}"}
            for i, (t, v) in part])
        assert r.status_code == 200 and r.json()["accepted"] == len(part), r.text

    def hypo_l2() -> dict[str, Any] | None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            items = client.get("/alerts", params={"patient": patient_id, "status": "all", "rule": "hypo-l2"}).json()
            if items["items"]:
                found: dict[str, Any] = items["items"][0]
                return found
            time.sleep(0.2)
        return None

    try:
        post(list(enumerate(points))[:4])
        opened = hypo_l2()
        assert opened is not None and opened["condition_cleared_at"] is None, opened
        post(list(enumerate(points))[4:])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            cleared = hypo_l2()
            if cleared is not None and cleared["condition_cleared_at"]:
                return cleared
            time.sleep(0.2)
    finally:
        client.close()
    raise AssertionError(f"the hypo-l2 alert of {patient_id} was not marked condition cleared")


def hh_mm(driver: WebDriver, iso: str) -> str:
    """The time as the browser's clock shows it (its own time zone)."""
    shown: str = driver.execute_script(
        "const d = new Date(arguments[0]); return [d.getHours(), d.getMinutes()]"
        ".map(n => String(n).padStart(2, '0')).join(':')", iso)
    return shown


def test_a_recovered_level_2_hypo_stays_on_the_worklist_until_acknowledged(world: World, browser: WebDriver) -> None:
    patient = world.patients[2]  # in the demo clinician's care team (patients[::2])
    sign_in(browser, world)
    alert = level_2_hypo_that_recovers(world, patient)
    assert (alert["severity"], alert["status"], alert["resolved_by"], alert["needs_person"]) == (
        "critical", "open", None, True)

    browser.get(world.base_url + "/#/alerts")
    wait(browser, lambda d: "most urgent first" in text(d, "#alerts-view"), message="the worklist")
    assert Select(browser.find_element(By.ID, "worklist-status")).first_selected_option.text == "Unresolved"
    item = f"#worklist li[data-id='{alert['id']}']"
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, item), message="the cleared alert on the default worklist")
    shown = text(browser, item)
    assert f"condition cleared at {hh_mm(browser, alert['condition_cleared_at'])}" in shown, shown
    assert "awaiting acknowledgement" in shown and "critical" in shown
    assert browser.find_element(By.CSS_SELECTOR, item).get_attribute("data-cleared") == "true"
    open_now = api(world, "demo-clinician").get("/alerts", params={"status": "open", "limit": 1}).json()["total"]
    wait(browser, lambda d: text(d, "#alert-count") == str(open_now), message="the header count with the cleared alert")
    axe(browser, "alerts-cleared")
    shot(browser, "alerts-cleared")

    Select(browser.find_element(By.ID, "worklist-status")).select_by_visible_text("Resolved")
    wait(browser, lambda d: "alert" in text(d, "#alerts-view [role=status]") and not d.find_elements(
        By.CSS_SELECTOR, item), message="the resolved filter without the open alert")
    Select(browser.find_element(By.ID, "worklist-status")).select_by_visible_text("Unresolved")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, item), message="the alert back on the default filter")

    browser.find_element(By.CSS_SELECTOR, f"{item} button[aria-label^='Acknowledge']").click()
    wait(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, item), message="the acknowledged alert to leave")
    wait(browser, lambda d: "Alert acknowledged and closed" in d.execute_script(
        "return document.getElementById('announcer').textContent"), message="the announcement that it closed")
    stored = api(world).get(f"/alerts/{alert['id']}").json()
    assert (stored["status"], stored["acknowledged_by"], stored["resolved_by"]) == (
        "resolved", "demo-clinician", "demo-clinician")

    Select(browser.find_element(By.ID, "worklist-status")).select_by_visible_text("Resolved")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, item), message="the closed alert under Resolved")
    assert "resolved by demo-clinician" in text(browser, item)
    assert "condition cleared at" not in text(browser, item)  # closed: no longer awaiting anyone
    shot(browser, "alerts-resolved")
