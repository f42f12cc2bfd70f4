"""The dashboard's pharmacogenomics chips in a real headless Chromium against a real server and store: a
callable gene shows its CPIC phenotype; a phenotype all candidate diplotypes agree on is marked "inferred (all
candidates agree)"; a gene that cannot be called says "not callable" with the reason as its title."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from medtwin.pharmaco.pgx import build_vcf

World = Any  # tests/web/conftest.py: World (base_url, store, users, patients, heavy)
pytestmark = pytest.mark.slow
CYP2C9_DEFINING_POSITION = 94949217  # left out of the VCF: CYP2C9 *1/*1, *1/*9, *9/*9 all fit (all normal)


def wait(driver: WebDriver, condition: Callable[[WebDriver], Any], timeout: float = 30, message: str = "") -> Any:
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1,
                             ignored_exceptions=(StaleElementReferenceException,)).until(condition)
    except TimeoutException:
        logs = "\n".join(e["message"][:300] for e in driver.get_log("browser"))  # type: ignore[attr-defined]
        raise AssertionError(f"timed out: {message}\nbrowser log:\n{logs}") from None


def upload(world: World, patient_id: str, vcf: str) -> dict[str, Any]:
    with httpx.Client(base_url=world.base_url + "/api/v1", timeout=60) as client:
        token = client.post("/auth/token", data={"grant_type": "password", "username": "demo-admin",
                                                  "password": world.users["demo-admin"]}).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        response = client.post(f"/twins/{patient_id}/drugs/pgx", content=vcf.encode(),
                               headers={**headers, "content-type": "text/x-vcf"})
        assert response.status_code == 201, response.text
        summary = client.get(f"/patients/{patient_id}", headers=headers).json()
    genes: dict[str, Any] = {g["gene"]: g for g in summary["pharmacogenomics"]["genes"]}
    return genes


def chips(driver: WebDriver) -> dict[str, dict[str, str]]:
    found: list[dict[str, str]] = driver.execute_script(
        "return [...document.querySelectorAll('.chip.pgx')].map(c => ({gene: c.dataset.gene, text: c.textContent,"
        " title: c.title, callable: c.dataset.callable || 'true'}))")
    return {c["gene"]: c for c in found}


def test_chips_say_not_callable_and_inferred(world: World, browser: WebDriver) -> None:
    patient = world.heavy  # in the demo clinician's care team
    vcf = build_vcf({"CYP3A5": "*1/*3", "CYP2D6": "*1/*4", "DPYD": "Reference/c.1905+1G>A (*2A)"},
                    omit={CYP2C9_DEFINING_POSITION})
    genes = upload(world, patient, vcf)
    assert genes["CYP2C9"]["inferred"] and not genes["CYP2C9"]["callable"]  # the server's view the chips show
    assert not genes["CYP2D6"]["callable"] and not genes["CYP2D6"]["inferred"]

    browser.get(world.base_url + "/")
    wait(browser, lambda d: d.find_element(By.ID, "login-view").is_displayed(), message="the sign-in form")
    browser.find_element(By.ID, "username").send_keys("demo-clinician")
    browser.find_element(By.ID, "password").send_keys(world.users["demo-clinician"])
    browser.find_element(By.CSS_SELECTOR, "#login-form button").click()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#patients tbody tr[data-id]"), message="patients")
    browser.get(f"{world.base_url}/#/patients/{patient}/record")
    wait(browser, lambda d: len(chips(d)) == len(genes), message="one PGx chip per gene")
    shown = chips(browser)

    # callable: the CPIC phenotype, diplotype (and activity score) in the title
    assert shown["CYP3A5"]["text"] == "CYP3A5 Intermediate Metabolizer" and shown["CYP3A5"]["callable"] == "true"
    assert shown["CYP3A5"]["title"] == "diplotype *1/*3"
    assert shown["DPYD"]["title"] == "diplotype Reference/c.1905+1G>A (*2A), activity score 1"
    # not callable: says so, and why
    assert shown["CYP2D6"]["text"] == "CYP2D6 not callable" and shown["CYP2D6"]["callable"] == "false"
    assert shown["CYP2D6"]["title"] == genes["CYP2D6"]["reason"]
    assert shown["CYP2D6"]["title"].startswith("CYP2D6 not callable because") and "copy number" in shown["CYP2D6"]["title"]
    # all candidates agree: shown as inferred, with the candidates in the title
    assert shown["CYP2C9"]["text"] == "CYP2C9 Normal Metabolizer · inferred (all candidates agree)"
    assert shown["CYP2C9"]["callable"] == "false" and "*1/*9" in shown["CYP2C9"]["title"]
