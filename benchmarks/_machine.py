"""One line describing the machine a benchmark ran on."""

from __future__ import annotations

import os
import platform


def machine() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            model = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), "?")
    except OSError:
        model = platform.processor() or "?"
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, {model}, Python {platform.python_version()}"
