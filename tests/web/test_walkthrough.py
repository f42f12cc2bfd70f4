"""The scripted walkthrough (scripts/walkthrough.py) runs on a small store, so it cannot rot: it signs in as
the demo clinician and leaves one full-page screenshot per screen (list, alerts, each tab of each patient)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.remote.webdriver import WebDriver

World = Any  # tests/web/conftest.py: World
pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "walkthrough.py"


def load_walkthrough() -> Any:
    spec = importlib.util.spec_from_file_location("walkthrough", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_walkthrough_screenshots_every_screen(world: World, browser: WebDriver, tmp_path: Path) -> None:
    walkthrough = load_walkthrough()
    out = tmp_path / "walkthrough"
    result = walkthrough.walk(browser, world.base_url, "demo-clinician", world.users["demo-clinician"], out,
                              tabs=("live", "record", "cgm"), settle_s=0.1)
    # the demo clinician's care team (cli/server.py demo_users): the type 1 patient (live, record, CGM report)
    # and the atrial fibrillation patient (no CGM: no CGM report tab)
    assert len(world.patients[::2]) == 2
    names = [p.name for p in result.shots]
    assert names[:2] == ["01-patients.png", "02-alerts.png"]
    assert len(names) == 2 + 3 + 2 and sum(name.endswith("-cgm.png") for name in names) == 1
    for path in result.shots:
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, path
    index = (out / "index.txt").read_text(encoding="utf-8").splitlines()
    assert len(index) == 1 + len(names)
    assert all(line.split("\t")[3] == "-" for line in index[1:]), index  # no error shown on any screen
