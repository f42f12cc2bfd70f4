"""The dashboard's Imaging tab (issue #19 item 6) in a real headless Chromium against a real server and store.

A phantom head (an image and its label map: head, a vessel, a ventricle, an amygdala-like target) is stored for
a patient of the demo clinician. The tab shows the three slice views (I1's slice PNG route, label overlay), the
clinician plans trajectories with the form, and the ranked candidates appear with the API's numbers (risk,
nearest distance, length, angle); the WebGL 3D view has drawn (the canvas reads back painted pixels) and the
rehearsal of the best path lists its steps. A patient without images has no Imaging tab. Screenshot in
test-artifacts/dashboard-imaging.png; axe-core on the tab.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy import ndimage
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from tests.web.test_dashboard import axe, fixed, shot, wait
from tests.web.test_tumour_tab import api
from tests.web.test_warfarin_whatif import sign_in

from medtwin.imaging import phantoms as ph
from medtwin.twin import imaging as images

World = Any  # tests/web/conftest.py: World (base_url, store, users, patients, heavy)
pytestmark = pytest.mark.slow
NAMES = {1: "head", 2: "vessel", 3: "ventricle", 4: "amygdala", 5: "scalp"}


def head_phantom() -> tuple[ph.Volume, ph.Volume]:
    g = ph.grid((64, 72, 60), (1.0, 1.0, 1.0), origin_mm=(-32.0, -36.0, -30.0))
    labels = ph.label_volume([(ph.Ellipsoid([0, 0, 0], [28, 33, 26]), 1),
                              (ph.Tube(np.array([[-30.0, -20.0, 8.0], [-6.0, 0.0, 14.0], [-6.0, 30.0, 14.0]]), 1.6), 2),
                              (ph.Ellipsoid([6.0, 4.0, 6.0], [4.0, 10.0, 5.0]), 3),
                              (ph.Sphere([-8.0, -4.0, -10.0], 3.5), 4)], g, names=NAMES)
    data = np.asarray(labels.data).copy()
    shell = (data == 1) & ~ndimage.binary_erosion(data > 0, iterations=2)
    data[shell & (np.arange(60)[None, None, :] >= 34)] = 5  # the scalp over the upper head: where entries go
    labels = labels.with_data(data, units="label", labels=NAMES)
    intensity = ndimage.gaussian_filter(np.choose(data, [0.0, 600.0, 1100.0, 200.0, 750.0, 900.0]), 0.8)
    image = labels.with_data(intensity.astype(np.float32), units="a.u.", labels={})
    return image, labels


def rows(driver: WebDriver) -> list[dict[str, str]]:
    found: list[dict[str, str]] = driver.execute_script(
        "return [...document.querySelectorAll('#im-candidates tbody tr')].map(r => Object.fromEntries("
        "[['rank', r.dataset.rank], ...[...r.querySelectorAll('[data-field]')].map(c => [c.dataset.field, c.innerText])]))")
    return found


def test_imaging_tab_plans_with_the_apis_numbers_and_draws_in_3d(world: World, browser: WebDriver) -> None:
    patient = world.heavy  # in the demo clinician's care team
    image, labels = head_phantom()
    images.import_volume(world.store, patient, image, actor="test")
    images.import_volume(world.store, patient, labels, actor="test")
    sign_in(browser, world)
    browser.get(f"{world.base_url}/#/patients/{patient}/imaging")
    wait(browser, lambda d: d.find_elements(By.ID, "im-plan-form"), timeout=60, message="the imaging tab")
    assert browser.find_element(By.ID, "tab-imaging").get_attribute("aria-selected") == "true"
    wait(browser, lambda d: d.execute_script(
        "const s = [...document.querySelectorAll('img.im-slice')]; return s.length === 3 && "
        "s.every(i => i.complete && i.naturalWidth > 0)"), message="three slice views")
    sizes = browser.execute_script("return [...document.querySelectorAll('img.im-slice')].map(i => "
                                   "[i.dataset.axis, i.naturalWidth, i.naturalHeight])")
    assert sizes == [["axial", 64, 72], ["coronal", 64, 60], ["sagittal", 72, 60]]  # one pixel per voxel

    browser.execute_script("document.getElementById('im-target').value = '4';")  # amygdala
    browser.find_element(By.ID, "im-plan").click()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#im-candidates tbody tr"), timeout=120,
         message="the ranked candidates")
    with api(world) as client:
        listed = client.get(f"/patients/{patient}/trajectory-plans").json()
        plan = client.get(f"/patients/{patient}/trajectory-plans/{listed[0]['version']}").json()
        rehearsal = client.get(f"/patients/{patient}/trajectory-plans/{plan['version']}/rehearsal",
                               params={"rank": 1, "step_mm": 2}).json()
    assert plan["target_structure"] == "amygdala" and {c["label"] for c in plan["request"]["criticals"]} == {2, 3}
    assert plan["request"]["entry_label"] == 5  # the form chose the scalp for entries
    assert all(c["entry_mm"][2] >= 4.0 for c in plan["candidates"])  # z >= 4 mm: over the upper head
    shown = rows(browser)
    assert len(shown) == len(plan["candidates"]) == 10
    for row, c in zip(shown, plan["candidates"], strict=True):
        assert row == {"rank": str(c["rank"]), "risk": fixed(c["risk"], 3),
                       "min_distance_mm": fixed(c["min_distance_mm"], 1), "length_mm": fixed(c["length_mm"], 1),
                       "angle_deg": fixed(c["angle_deg"], 1)}
    assert all(c["min_distance_mm"] >= 2.0 for c in plan["candidates"])  # margins kept (2 mm each)

    wait(browser, lambda d: d.execute_script(
        "return document.getElementById('im-canvas').dataset.drawn === 'true'"), timeout=60, message="the 3D view")
    painted, width, height = browser.execute_script(
        "const c = document.getElementById('im-canvas'); return [Number(c.dataset.painted), c.width, c.height]")
    assert 0.03 * width * height < painted < width * height  # something drawn, and not a blank fill
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#im-rehearsal-steps tbody tr"), message="rehearsal")
    steps = browser.execute_script("return document.querySelectorAll('#im-rehearsal-steps tbody tr').length")
    assert steps == len(rehearsal["steps"])
    depths = browser.execute_script("return [...document.querySelectorAll('#im-rehearsal-steps tbody tr')]"
                                    ".map(r => r.cells[0].innerText)")
    assert depths == [fixed(s["depth_mm"], 1) for s in rehearsal["steps"]]
    best = plan["candidates"][0]["target_mm"]  # the slices move to the chosen path's target (voxel = mm + origin)
    expected = {"axial": round(best[2] + 30.0), "coronal": round(best[1] + 36.0), "sagittal": round(best[0] + 32.0)}
    wait(browser, lambda d: d.execute_script("return Object.fromEntries([...document.querySelectorAll('img.im-slice')]"
                                             ".map(i => [i.dataset.axis, Number(i.dataset.index)]))") == expected,
         message=f"slices through the target {expected}")
    entry = rehearsal["steps"][0]["position_mm"]  # a rehearsal step shows its position on the slices
    browser.find_element(By.CSS_SELECTOR, "#im-rehearsal-steps tbody tr[data-step='0']").click()
    wait(browser, lambda d: d.execute_script("return Number(document.querySelector('img.im-slice[data-axis=axial]')"
                                             ".dataset.index)") == round(entry[2] + 30.0), message="the entry's slice")
    shot(browser, "imaging")
    axe(browser, "imaging")

    with api(world) as client:  # an implantation (two electrodes, kept apart) is listed and shown with names
        volume = next(v for v in client.get(f"/patients/{patient}/images").json() if v["units"] == "label")
        r = client.post(f"/patients/{patient}/images/{volume['volume_id']}/implantation-plans", json={
            "electrodes": [{"name": "LA", "target_label": "amygdala"}, {"name": "LV", "target_mm": [2.0, 4.0, -2.0]}],
            "criticals": [{"label": "vessel", "margin_mm": 2.0}, {"label": "ventricle", "margin_mm": 2.0}],
            "entry_label": "scalp", "min_separation_mm": 4.0, "max_angle_deg": 35.0})
        assert r.status_code == 201, r.text
        implantation = r.json()
    browser.refresh()  # the tab opens on the newest plan
    wait(browser, lambda d: [r.get("electrode") for r in rows(d)] == ["LA", "LV"], timeout=60,
         message="the implantation's electrodes")
    assert [r["risk"] for r in rows(browser)] == [fixed(c["risk"], 3) for c in implantation["candidates"]]


def test_no_imaging_tab_without_images(world: World, browser: WebDriver) -> None:
    sign_in(browser, world)
    browser.get(f"{world.base_url}/#/patients/{world.patients[2]}/record")
    wait(browser, lambda d: d.find_elements(By.ID, "tab-record"), message="the patient page")
    assert not browser.find_elements(By.ID, "tab-imaging")
