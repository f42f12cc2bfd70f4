#!/usr/bin/env python3
"""A scripted walkthrough of the clinician's dashboard (issue #15): sign in as the demo clinician, visit
every screen (the patient list, the alerts worklist, and every tab of every patient in the list) and save a
full-page screenshot of each in ``test-artifacts/walkthrough/`` (git-ignored), with an index of what was
seen (``index.txt``: screen, file, the page's title and any error shown).

Run it against a running demo (``medtwin demo`` prints the password of ``demo-clinician``)::

    .venv/bin/python scripts/walkthrough.py --url http://127.0.0.1:8000 --password '<printed password>'

Needs Chromium and chromedriver (``MEDTWIN_TEST_CHROMIUM`` / ``MEDTWIN_TEST_CHROMEDRIVER`` or on PATH), as
the browser tests do. ``tests/web/test_walkthrough.py`` runs it on a small store so it cannot rot.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "test-artifacts" / "walkthrough"


@dataclass
class Walk:
    out: Path
    shots: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # one line per screen: name, file, title, errors


def make_driver(width: int = 1400, height: int = 1000) -> Any:
    """Headless Chromium (as tests/web/conftest.py starts it)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = os.environ.get("MEDTWIN_TEST_CHROMIUM") or shutil.which("chromium") or ""
    driver_path = os.environ.get("MEDTWIN_TEST_CHROMEDRIVER") or shutil.which("chromedriver") or ""
    if not chromium or not driver_path:
        raise SystemExit("walkthrough: Chromium and chromedriver are needed (MEDTWIN_TEST_CHROMIUM/_CHROMEDRIVER)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 f"--window-size={width},{height}", "--lang=en-GB"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver_path), options=options)


def _wait(driver: Any, condition: Callable[[Any], Any], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition(driver):
                return True
        except Exception:  # the page is re-rendering
            pass
        time.sleep(0.15)
    return False


def _js(driver: Any, script: str, *args: Any) -> Any:
    return driver.execute_script(script, *args)


def shoot(driver: Any, walk: Walk, name: str, settle_s: float = 0.4) -> Path:
    """A full-page screenshot: the window grows to the page's height, then back."""
    walk.out.mkdir(parents=True, exist_ok=True)
    # toasts are transient and hidden from screen readers; they covered parts of the screens: not shot
    _js(driver, "const t = document.getElementById('toasts'); if (t) { t.replaceChildren(); t.style.visibility = 'hidden'; }")
    size = driver.get_window_size()
    height = int(_js(driver, "return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight, 900)"))
    driver.set_window_size(size["width"], min(height + 40, 8000))
    time.sleep(settle_s)
    path = walk.out / f"{len(walk.shots) + 1:02d}-{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(size["width"], size["height"])
    _js(driver, "const t = document.getElementById('toasts'); if (t) t.style.visibility = ''")
    errors = _js(driver, "return [...document.querySelectorAll('.error, [role=alert]')].map(e => e.textContent.trim())"
                         ".filter(Boolean).join(' | ')")
    walk.shots.append(path)
    walk.notes.append(f"{name}\t{path.name}\t{driver.title}\t{errors or '-'}")
    return path


def sign_in(driver: Any, base_url: str, user: str, password: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(base_url.rstrip("/") + "/")
    if not _wait(driver, lambda d: d.find_element(By.ID, "login-view").is_displayed()
                 or d.find_elements(By.CSS_SELECTOR, "#patients tbody tr[data-id]")):
        raise SystemExit("walkthrough: the dashboard did not show its sign-in form")
    if driver.find_element(By.ID, "login-view").is_displayed():
        driver.find_element(By.ID, "username").send_keys(user)
        driver.find_element(By.ID, "password").send_keys(password)
        driver.find_element(By.CSS_SELECTOR, "#login-form button").click()
    if not _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#patients tbody tr[data-id]")):
        raise SystemExit(f"walkthrough: signing in as {user} did not show the patient list")


def _tabs(driver: Any) -> list[str]:
    found: list[str] = _js(driver, "return [...document.querySelectorAll('[role=tab]')].map(t => t.id.slice(4))")
    return found


def _ready(driver: Any, tab: str) -> bool:
    """A tab has rendered: the live tab says so; the others have replaced their "Loading…"."""
    if tab == "live":
        return bool(_js(driver, "const p = document.getElementById('panel-live'); return p && p.dataset.ready === 'true'"))
    return bool(_js(driver, "const p = document.getElementById('panel-' + arguments[0]);"
                            "return p && !p.hidden && p.textContent.trim() !== '' && !/^Loading/.test(p.textContent.trim())",
                    tab))


def _ready_for(tab: str) -> Callable[[Any], bool]:
    return lambda d: _ready(d, tab)


def visit_patient(driver: Any, walk: Walk, base_url: str, patient: dict[str, str], tabs: Sequence[str] | None,
                  settle_s: float) -> None:
    slug = "".join(c if c.isalnum() else "-" for c in patient["name"].lower()).strip("-")[:32] or patient["id"][:8]
    driver.get(f"{base_url}/#/")  # via the list: each patient page is built afresh
    _wait(driver, lambda d: not _js(d, "return document.getElementById('panel-live')"))
    driver.get(f"{base_url}/#/patients/{patient['id']}/live")
    _wait(driver, lambda d: _ready(d, "live"))
    for tab in [t for t in _tabs(driver) if tabs is None or t in tabs]:
        driver.get(f"{base_url}/#/patients/{patient['id']}/{tab}")
        _wait(driver, _ready_for(tab))
        shoot(driver, walk, f"{slug}-{tab}", settle_s)


def walk(driver: Any, base_url: str, user: str, password: str, out: Path = DEFAULT_OUT,
         tabs: Sequence[str] | None = None, settle_s: float = 0.8) -> Walk:
    """Sign in, then screenshot the patient list, the alerts worklist and every (or the given) tab of every
    patient in the list; ``index.txt`` in ``out`` says what each file shows."""
    base_url = base_url.rstrip("/")
    result = Walk(out)
    for old in out.glob("*.png") if out.exists() else []:
        old.unlink()
    sign_in(driver, base_url, user, password)
    time.sleep(settle_s)
    shoot(driver, result, "patients", settle_s)
    patients: list[dict[str, str]] = _js(driver, "return [...document.querySelectorAll('#patients tbody tr[data-id]')]"
                                                 ".map(r => ({id: r.dataset.id, name: r.querySelector('th a').textContent}))")
    driver.get(f"{base_url}/#/alerts")
    _wait(driver, lambda d: _js(d, "const v = document.getElementById('alerts-view'); return v && !v.hidden && "
                                   "!/Loading/.test(v.textContent)"))
    shoot(driver, result, "alerts", settle_s)
    for patient in patients:
        visit_patient(driver, result, base_url, patient, tabs, settle_s)
    (out / "index.txt").write_text("screen\tfile\ttitle\terrors shown\n" + "\n".join(result.notes) + "\n",
                                   encoding="utf-8")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the running medtwin server")
    parser.add_argument("--user", default="demo-clinician")
    parser.add_argument("--password", default=os.environ.get("MEDTWIN_WALKTHROUGH_PASSWORD"),
                        help="the password `medtwin demo` printed (or MEDTWIN_WALKTHROUGH_PASSWORD)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--tabs", help="comma-separated tabs to visit (default: every tab a patient has)")
    args = parser.parse_args(argv)
    if not args.password:
        parser.error("--password: give the password `medtwin demo` printed for the user")
    driver = make_driver()
    try:
        result = walk(driver, args.url, args.user, args.password, args.out,
                      tabs=args.tabs.split(",") if args.tabs else None)
    finally:
        driver.quit()
    print(f"{len(result.shots)} screenshots in {args.out} (index.txt lists them)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
