"""Issue #15 "a clinician can trust every number on the screen", in a real headless Chromium against a real
server and store, signed in as the demo clinician:

* the glucose tile and the forecast sentence quote one reading: a reading that lands after the forecast was
  issued used to show "131" on the tile beside "CGM 120 mg/dL, ...; forecast ..." from the older reading. Now
  the forecast speaks beside the tile only while it was issued from the reading the tile shows; otherwise
  the tile says the forecast is updating and from which reading the last one was issued;
* the kidney panel of a patient whose record has creatinine and no eGFR shows eGFR calculated by CKD-EPI
  2021, labelled as calculated (never as a measurement), on the chart and on the tile;
* creatinine recorded under three codes in two units is one chart in the newest reading's unit (it drew one
  chart per code, each captioned "latest" for its own code), each point saying what was recorded; eGFR reported
  on some days and only creatinine on others draws the reported points and the calculated ones as two labelled
  series (it calculated nothing once any eGFR was reported), and the tile says which its value is.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from tests.web.test_dashboard import api, css, fixed, open_patient, shot, text, wait
from tests.web.test_live_forecast_anchor import forecast_at
from tests.web.test_warfarin_whatif import sign_in

from medtwin.alerts.repository import AlertCandidate, AlertRepository
from medtwin.record.sources import RawUnit
from medtwin.security import accounts
from medtwin.store.samples import SampleRepository
from medtwin.twin.build import import_units
from medtwin.vocab import CANONICAL_UNITS, Sample
from medtwin.vocab.renal import ckd_epi_2021, creatinine_mg_dl

World = Any  # tests/web/conftest.py: World (base_url, store, users, patients, heavy)
pytestmark = pytest.mark.slow


def _post(client: httpx.Client, patient: str, readings: list[tuple[datetime, float]]) -> None:
    body = [{"metric": "glucose", "unit": "mg/dL", "value": v, "id": f"trust-{t.isoformat()}", "time": t.isoformat()}
            for t, v in readings]
    r = client.post(f"/patients/{patient}/samples", json=body)
    assert r.status_code == 200 and r.json()["accepted"] == len(readings), r.text


def _tile(driver: WebDriver) -> dict[str, str]:
    """The glucose tile's value, forecast sentence and pending note, read in one call."""
    found: dict[str, str] = driver.execute_script(
        "const q = (s) => document.querySelector(s);"
        "return {value: q('#glucose-now') ? q('#glucose-now').textContent : '',"
        " sentence: q('#tile-glucose #forecast-30') ? q('#tile-glucose #forecast-30').textContent : '',"
        " pending: q('#tile-glucose #forecast-pending') ? q('#tile-glucose #forecast-pending').textContent : '',"
        " issued: (q('#tile-glucose #forecast-pending') || q('#tile-glucose #forecast-30') || {dataset: {}}).dataset.issuedAt || ''}")
    return found


def test_the_tile_and_the_forecast_sentence_quote_the_same_reading(world: World, browser: WebDriver) -> None:
    patient = world.patients[2]  # in the demo clinician's care team; no CGM until now
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    readings = [(now - timedelta(minutes=5 * (24 - k)), round(120 + 6 * math.sin(k / 3), 1)) for k in range(24)]
    last_at, last_value = readings[-1]
    with api(world) as client:
        _post(client, patient, readings)
        issued = wait(browser, lambda d: forecast_at(client, patient, last_at), timeout=60,
                      message="the forecast issued from the last posted reading")
        assert issued["last_reading_mg_dl"] == last_value and issued["summary"].startswith(f"CGM {last_value:.0f} mg/dL")

        # a reading lands after the forecast: stored as a bulk import does (no listener runs, so the live twin
        # has not folded it in and no forecast is issued from it)
        later = last_at + timedelta(minutes=5)
        unit = CANONICAL_UNITS["glucose"]
        with world.store.begin() as connection:
            SampleRepository(connection).insert_ignore([Sample(patient, "glucose", later, 131.0, unit, 131.0, unit,
                                                               "seed", "fhir", f"trust:{patient}:{later.isoformat()}")],
                                                       received_at=later)
        with world.store.begin() as connection:  # a glucose alert quoting the forecast's reading, as the rule does
            AlertRepository(connection, world.store.codec, lambda: datetime.now(UTC)).open(AlertCandidate(
                patient_id=patient, rule="predicted-hypo", severity="medium", dedupe_key=f"{patient}:trust",
                time=last_at, message=f"Hypoglycaemia possible within 30 min: {issued['summary']}",
                details={"cgm_mg_dl": last_value, "cgm_time": last_at.isoformat()}))
        sign_in(browser, world)
        open_patient(browser, world, patient)
        tile = wait(browser, lambda d: (t := _tile(d))["value"] == "131" and t, timeout=30,
                    message="the tile showing the reading that landed after the forecast")
        assert tile["sentence"] == "", f"the tile quotes an older reading's forecast beside 131: {tile}"
        assert tile["pending"].startswith("Forecast updating for this reading") and tile["issued"] == issued["issued_at"]
        assert f"CGM {last_value:.0f}" not in text(browser, "#tile-glucose")
        # the twin's box quotes the reading it last folded in with that reading's time, not as the newest
        wait(browser, lambda d: "last CGM reading" in text(d, "#live-twin"), timeout=20, message="the twin box")
        issued_clock = browser.execute_script(
            "const d = new Date(arguments[0]); return `${String(d.getHours()).padStart(2, '0')}:"
            "${String(d.getMinutes()).padStart(2, '0')}`", issued["issued_at"])
        assert f"last CGM reading {fixed(last_value)} at {issued_clock})" in text(browser, "#live-twin")
        assert f"issued from the reading at {issued_clock})" in tile["pending"]
        # the alert quoting that reading says which reading, with its time
        wait(browser, lambda d: "from the CGM reading at" in text(d, "#alert-list"), timeout=20, message="the alert")
        assert f"from the CGM reading at {issued_clock}" in text(browser, "#alert-list .alert-basis")
        shot(browser, "trust-forecast-pending")

        # the next reading goes through the live twin: a forecast issued from it, and both quote it again
        newest = later + timedelta(minutes=5)
        _post(client, patient, [(newest, 128.0)])
        fresh = wait(browser, lambda d: forecast_at(client, patient, newest), timeout=60,
                     message="the forecast issued from the newest reading")
        assert fresh["last_reading_mg_dl"] == 128.0
        tile = wait(browser, lambda d: (t := _tile(d))["sentence"] and t, timeout=30,
                    message="the tile's forecast sentence for the newest reading")
        assert tile["value"] == "128" and tile["sentence"] == fresh["summary"] and tile["pending"] == ""
        assert tile["sentence"].startswith("CGM 128 mg/dL") and tile["issued"] == fresh["issued_at"]


def _lab(pid: str, oid: str, code: str, when: str, value: float, unit: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": f"{pid}-{oid}", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": when,
            "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}}


def _ckd_patient(pid: str, *labs: tuple[str, str, float, str], **born: str) -> dict[str, Any]:
    """A woman with CKD stage 3 and the lab results ``labs`` (code, time, value, unit); by default creatinine
    1.3 mg/dL (2160-0) in January 2024 and 115 umol/L (14682-9) in June 2025, no eGFR."""
    labs = labs or (("2160-0", "2024-01-10T08:00:00Z", 1.3, "mg/dL"), ("14682-9", "2025-06-01T08:00:00Z", 115.0, "umol/L"))
    resources = [
        {"resourceType": "Patient", "id": pid, "gender": "female", **born, "name": [{"family": "Renal", "given": ["Ada"]}]},
        {"resourceType": "Condition", "id": f"{pid}-ckd", "subject": {"reference": f"Patient/{pid}"},
         "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                        "code": "active"}]},
         "code": {"coding": [{"system": "http://snomed.info/sct", "code": "433144002",
                              "display": "Chronic kidney disease stage 3 (disorder)"}]}},
        *(_lab(pid, f"lab{k}", *lab) for k, lab in enumerate(labs)),
    ]
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


def _in_care(world: World, *units: RawUnit) -> None:
    assert import_units(world.store, list(units), actor="test").ok
    with world.store.begin() as connection:
        for unit in units:
            accounts.add_to_care_team(connection, "demo-clinician", unit.source.removesuffix(".json"))


def _when(browser: WebDriver, iso: str) -> str:
    """The page's "1 Jun 2025 08:00" for a time (the browser's zone, as the chart writes it)."""
    found: str = browser.execute_script(
        "const d = new Date(arguments[0]); const m = ['Jan','Feb','Mar','Apr','May','Jun','Jul','Aug','Sep','Oct',"
        "'Nov','Dec'][d.getMonth()]; const p = (n) => String(n).padStart(2, '0');"
        "return `${d.getDate()} ${m} ${d.getFullYear()} ${p(d.getHours())}:${p(d.getMinutes())}`", iso)
    return found


def _walk(browser: WebDriver, figure: str, keys: list[str]) -> list[str]:
    """The chart's readout at each cursor stop reached by pressing ``keys`` on its canvas (keyboard cursor)."""
    canvas = css(browser, f"{figure} canvas")
    out: list[str] = []

    def changed(before: str) -> Callable[[WebDriver], str | bool]:
        return lambda d: (t := text(d, f"{figure} .readout")) != before and t

    for key in keys:
        before = text(browser, f"{figure} .readout")
        canvas.send_keys(key)
        out.append(wait(browser, changed(before), timeout=20, message=f"the readout after {key!r}"))
    return out


def test_the_kidney_panel_shows_egfr_calculated_from_creatinine_as_calculated(world: World,
                                                                              browser: WebDriver) -> None:
    pid, unknown_age = "trust-ckd", "trust-ckd-no-birth-date"
    _in_care(world, RawUnit(f"{pid}.json", "json", _ckd_patient(pid, birthDate="1960-05-01")),
             RawUnit(f"{unknown_age}.json", "json", _ckd_patient(unknown_age)))
    # 65 y at the newest creatinine (115 umol/L = 1.30 mg/dL), female: CKD-EPI 2021
    expected = float(ckd_epi_2021(115.0 / 88.4, 65, True))
    assert 44 < expected < 46  # 45: CKD stage G3a
    sign_in(browser, world)
    open_patient(browser, world, pid)
    figure = "#chart-kidney-egfr"
    wait(browser, lambda d: text(d, f"{figure} .readout").startswith("eGFR"), timeout=30,
         message="the calculated eGFR chart")
    caption = text(browser, figure)
    assert "eGFR, calculated (CKD-EPI 2021)" in caption and "not a measurement" in caption
    tile = text(browser, "#tile-kidney-egfr")
    assert "calculated (CKD-EPI 2021)" in tile and "from creatinine 115 \u00b5mol/L" in tile
    shown = browser.execute_script("return document.querySelector('#tile-kidney-egfr .value').firstChild.textContent")
    assert shown == fixed(expected) == "46"  # 45.6, shown to whole mL/min as the vocabulary's rounding says
    assert text(browser, f"{figure} .readout") == (
        f"eGFR: latest {shown} mL/min/1.73 m\u00b2, calculated (CKD-EPI 2021), at "
        f"{_when(browser, '2025-06-01T08:00:00Z')}")
    # the record reports no eGFR, so nothing on the page presents one as measured
    assert "reported" not in text(browser, f"{figure} .legend") and "reported" not in tile
    shot(browser, "trust-egfr-calculated")

    # no birth date: no number, the reason instead, on the tile and under the chart's title
    open_patient(browser, world, unknown_age)
    wait(browser, lambda d: "not callable" in text(d, "#tile-kidney-egfr"), timeout=30,
         message="the not-callable eGFR tile")
    tile = text(browser, "#tile-kidney-egfr")
    assert "—" in tile and "age unknown (no birth date in the record)" in tile
    assert "Not callable for the latest creatinine (115 \u00b5mol/L" in text(browser, figure)
    assert not browser.find_elements("css selector", f"{figure} canvas")


#: creatinine under three codes in two units; eGFR reported on 10 Jan 2024 (with a creatinine that day) and on
#: 1 Feb 2025, only creatinine on 15 Sep 2024 and 1 Jun 2025 (the newest, in umol/L); potassium under two codes
MIXED = (("6298-4", "2024-09-15T08:00:00Z", 4.8, "mEq/L"), ("2823-3", "2025-06-01T08:00:00Z", 5.2, "mmol/L"),
         ("2160-0", "2024-01-10T08:00:00Z", 1.3, "mg/dL"), ("98979-8", "2024-01-10T11:00:00Z", 47.0, "mL/min/{1.73_m2}"),
         ("38483-4", "2024-09-15T08:00:00Z", 1.5, "mg/dL"), ("98979-8", "2025-02-01T08:00:00Z", 40.0, "mL/min/{1.73_m2}"),
         ("14682-9", "2025-06-01T08:00:00Z", 115.0, "umol/L"))


def _figures(browser: WebDriver, title: str) -> list[dict[str, str]]:
    """The kidney panel's figures whose title starts with ``title``: {id, title, readout, legend}."""
    found: list[dict[str, str]] = browser.execute_script(
        "return [...document.querySelectorAll('#ppanel-kidney figure')].filter(f => f.querySelector('h3')"
        ".textContent.startsWith(arguments[0])).map(f => ({id: f.id, title: f.querySelector('h3').textContent,"
        " readout: (f.querySelector('.readout') || {}).textContent || '', legend: (f.querySelector('.legend') || {})"
        ".textContent || ''}))", title)
    return found


def _open_mixed(world: World, browser: WebDriver, pid: str, title: str) -> list[dict[str, str]]:
    _in_care(world, RawUnit(f"{pid}.json", "json", _ckd_patient(pid, *MIXED, birthDate="1960-05-01")))
    sign_in(browser, world)
    open_patient(browser, world, pid)
    return wait(browser, lambda d: (f := _figures(d, title)) and all(x["readout"] for x in f) and f, timeout=30,
                message=f"the kidney panel's {title} chart(s) drawn")


def test_creatinine_under_three_codes_is_one_chart_in_one_unit(world: World, browser: WebDriver) -> None:
    """It drew one chart per code, each captioned "latest" for its own code (1.3 mg/dL, 1.5 mg/dL, 115 umol/L)
    beside a tile of the newest; now one chart in the newest reading's unit, each point saying what was recorded."""
    figures = _open_mixed(world, browser, "trust-ckd-creatinine", "Creatinine")
    newest = _when(browser, "2025-06-01T08:00:00Z")
    assert [(f["title"], f["readout"]) for f in figures] == [
        ("Creatinine (\u00b5mol/L)", f"Creatinine: latest 115 \u00b5mol/L at {newest}")], figures
    creatinine = f"#{figures[0]['id']}"
    per_mg_dl = 1 / creatinine_mg_dl(1.0, "umol/L")  # the domain's 88.4 umol/L per mg/dL
    tile = " ".join(text(browser, "#tile-kidney-creatinine").split())
    assert tile.startswith(f"Creatinine 115 \u00b5mol/L {newest[:-6]} ("), tile  # dated: a lab result
    # every point in umol/L, with what was recorded and its code
    first, second, third = _walk(browser, creatinine, [Keys.HOME, Keys.ARROW_RIGHT, Keys.ARROW_RIGHT])
    assert first == (f"{_when(browser, '2024-01-10T08:00:00Z')} \u00b7 Creatinine {fixed(1.3 * per_mg_dl)} \u00b5mol/L "
                     "(recorded 1.3 mg/dL, LOINC 2160-0)")
    assert second.endswith(f"Creatinine {fixed(1.5 * per_mg_dl)} \u00b5mol/L (recorded 1.5 mg/dL, LOINC 38483-4)")
    assert third == f"{newest} \u00b7 Creatinine 115 \u00b5mol/L (LOINC 14682-9)"
    assert (fixed(1.3 * per_mg_dl), fixed(1.5 * per_mg_dl)) == ("115", "133")
    # potassium (CKD and its drugs raise it) in the same panel, one chart over its two codes
    potassium = wait(browser, lambda d: _figures(d, "Potassium"), timeout=20, message="the potassium chart")
    assert [(f["title"], f["readout"]) for f in potassium] == [
        ("Potassium (mmol/L)", f"Potassium: latest 5.2 mmol/L at {newest}")], potassium
    assert " ".join(text(browser, "#tile-kidney-potassium").split()).startswith("Potassium 5.2 mmol/L")


def test_egfr_reported_and_calculated_are_two_labelled_series(world: World, browser: WebDriver) -> None:
    """It calculated nothing once the record reported any eGFR (15 Sep 2024 and 1 Jun 2025 had no eGFR at all);
    now the reported points and the calculated ones (creatinine without a same-day eGFR) are two series,
    labelled and drawn apart, and the tile says which its value is."""
    figures = _open_mixed(world, browser, "trust-ckd-egfr", "eGFR")
    assert len(figures) == 1, figures
    legend = figures[0]["legend"]
    assert "eGFR, reported" in legend and "eGFR, calculated (CKD-EPI 2021)" in legend, figures
    egfr = f"#{figures[0]['id']}"
    newest = _when(browser, "2025-06-01T08:00:00Z")
    dashed = browser.execute_script(
        "return [...document.querySelectorAll(arguments[0] + ' .legend li')].map(li => [li.textContent,"
        " li.querySelector('.swatch').style.backgroundImage.startsWith('repeating-linear-gradient')])", egfr)
    assert [d for _, d in dashed] == [False, True] and "\u25c6" in dashed[1][0]  # calculated: dashed, diamonds
    # reported 10 Jan 2024 (its creatinine that day is not recalculated), calculated 15 Sep 2024, reported
    # 1 Feb 2025, calculated 1 Jun 2025: four stops, never two values on one day
    stops = _walk(browser, egfr, [Keys.HOME, Keys.ARROW_RIGHT, Keys.ARROW_RIGHT, Keys.ARROW_RIGHT])
    sept = float(ckd_epi_2021(1.5, 64, True))
    june = float(ckd_epi_2021(115.0 / 88.4, 65, True))
    assert stops[0].endswith("eGFR reported 47 mL/min/1.73 m\u00b2 (LOINC 98979-8)") and "calculated" not in stops[0]
    assert stops[1].endswith(f"eGFR, calculated (CKD-EPI 2021) {fixed(sept)} mL/min/1.73 m\u00b2 from creatinine "
                             "1.5 mg/dL (LOINC 38483-4), age 64, female") and "reported" not in stops[1]
    assert stops[2].endswith("eGFR reported 40 mL/min/1.73 m\u00b2 (LOINC 98979-8)")
    assert stops[3].endswith(f"eGFR, calculated (CKD-EPI 2021) {fixed(june)} mL/min/1.73 m\u00b2 from creatinine "
                             "115 \u00b5mol/L (LOINC 14682-9), age 65, female")
    canvas = css(browser, f"{egfr} canvas")
    canvas.send_keys(Keys.ESCAPE)
    wait(browser, lambda d: text(d, f"{egfr} .readout").startswith("eGFR: latest"), timeout=20, message="the caption")
    assert text(browser, f"{egfr} .readout") == (f"eGFR: latest {fixed(june)} mL/min/1.73 m\u00b2, calculated "
                                                 f"(CKD-EPI 2021), at {newest}")
    tile = " ".join(text(browser, "#tile-kidney-egfr").split())
    assert tile.startswith(f"eGFR {fixed(june)} mL/min/1.73 m\u00b2 calculated (CKD-EPI 2021) from creatinine "
                           f"115 \u00b5mol/L KDIGO G3a \u00b7 {newest[:-6]} ("), tile
    shot(browser, "trust-kidney-mixed")


def _lab_rows(browser: WebDriver) -> list[dict[str, str]]:
    """The Record tab's latest labs, read in one call: {name, codes, title, text} per row."""
    found: list[dict[str, str]] = browser.execute_script(
        "const card = [...document.querySelectorAll('#panel-record .card')].find(c => c.querySelector('h3')"
        ".textContent.startsWith('Latest labs')); if (!card) return [];"
        "return [...card.querySelectorAll('li')].map(li => { const b = li.querySelector('button');"
        " return {name: b.textContent, codes: b.dataset.codes, title: b.title, text: li.textContent}; })")
    return found


def test_latest_labs_show_one_row_per_quantity_as_the_kidney_panel_does(world: World, browser: WebDriver) -> None:
    """The Record tab listed creatinine once per code (1.3 mg/dL under 2160-0, 1.5 mg/dL under 38483-4, 115 umol/L
    under 14682-9) beside a kidney panel of one creatinine; now one row per quantity (the vocabulary's, from
    model/panels.py), the newest reading over its codes as recorded, the codes and units in the tooltip."""
    pid = "trust-record-labs"
    _in_care(world, RawUnit(f"{pid}.json", "json", _ckd_patient(pid, *MIXED, birthDate="1960-05-01")))
    sign_in(browser, world)
    open_patient(browser, world, pid, "record")
    rows = wait(browser, lambda d: len(r := _lab_rows(d)) >= 3 and r, timeout=30, message="the latest labs")
    by_name = {r["name"]: r for r in rows}
    assert sorted(by_name) == ["Creatinine", "Potassium", "eGFR"] and len(rows) == 3, rows
    creatinine, potassium = by_name["Creatinine"], by_name["Potassium"]
    assert creatinine["codes"] == "2160-0 38483-4 14682-9"
    assert " ".join(creatinine["text"].split()) == "Creatinine: 115 \u00b5mol/L 2025-06-01"  # as recorded, newest
    assert "LOINC 14682-9" in creatinine["title"] and "UCUM umol/L" in creatinine["title"]
    assert creatinine["title"].endswith("newest of 3 codes; also recorded: LOINC 2160-0 1.3 mg/dL (2024-01-10); "
                                        "LOINC 38483-4 1.5 mg/dL (2024-09-15)"), creatinine["title"]
    assert " ".join(potassium["text"].split()) == "Potassium: 5.2 mmol/L 2025-06-01"
    assert "LOINC 2823-3" in potassium["title"] and "LOINC 6298-4 4.8 mEq/L (2024-09-15)" in potassium["title"]
    assert " ".join(by_name["eGFR"]["text"].split()).startswith("eGFR: 40 mL/min/1.73 m\u00b2 2025-02-01")
    wait(browser, lambda d: "observations on file" in text(d, "#panel-record"), timeout=30,
         message="the observations behind the histories")
    browser.execute_script("[...document.querySelectorAll('#panel-record .card button.link')]"
                           ".find(b => b.textContent === 'Creatinine').click()")
    readout = wait(browser, lambda d: text(d, "#lab-detail h3") == "Creatinine: history"
                   and "latest" in (r := text(d, "#lab-detail .readout")) and r, timeout=20,
                   message="the creatinine history")
    # drawn in the unit of the newest reading; the mg/dL readings are named, not converted on the page
    assert readout.startswith("Creatinine: latest 115 \u00b5mol/L at 1 Jun"), readout
    assert text(browser, "#lab-not-drawn") == ("Not drawn in \u00b5mol/L: 2 readings recorded in another unit "
                                               "(mg/dL, LOINC 2160-0; mg/dL, LOINC 38483-4).")
    shot(browser, "trust-record-latest-labs")
