"""CLI start-up: median wall time of whole ``medtwin`` processes, against baselines measured in the same run.

    .venv/bin/python benchmarks/bench_cli.py            (7 runs of each; about a minute)
    .venv/bin/python benchmarks/bench_cli.py --quick    (3 runs; what the test runs)

Each figure is a new process started with ``subprocess`` (interpreter start-up, imports, Typer, the command's
work, exit), as a user would see it. Baselines: ``python -c pass`` (the interpreter alone) and ``python -c
"import medtwin.api.app"`` (what every command paid when importing the CLI imported the API app). Targets
(issue #12): ``medtwin --help`` <= 0.5 s, ``medtwin drug pgx`` on a small VCF <= 1.5 s. The VCF is written
here: three GRCh38 variants (CYP2C19*2 rs4244285, CYP2C9*3 rs1057910, VKORC1 rs9923231).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine  # noqa: E402

PYTHON = sys.executable
MEDTWIN = str(Path(sys.executable).parent / "medtwin")
TARGETS = {"medtwin --help": 0.5, "medtwin drug pgx small.vcf": 1.5}
SMALL_VCF = "\n".join([
    "##fileformat=VCFv4.2", "##reference=GRCh38",
    '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
    "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1",
    "chr10\t94781859\trs4244285\tG\tA\t.\tPASS\t.\tGT\t0/1",
    "chr10\t94981296\trs1057910\tA\tC\t.\tPASS\t.\tGT\t0/1",
    "chr16\t31096368\trs9923231\tC\tT\t.\tPASS\t.\tGT\t1/1",
]) + "\n"


def median_seconds(argv: Sequence[str], runs: int, env: dict[str, str], cwd: Path) -> float:
    """Median wall time of ``runs`` processes; a failing command stops the benchmark with its output."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(list(argv), env=env, cwd=cwd, capture_output=True, timeout=300)
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): "
                             f"{done.stderr.decode(errors='replace')[-2000:]}")
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 runs of each (for the test)")
    args = parser.parse_args()
    runs = 3 if args.quick else 7
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDTWIN_")}
    env["COLUMNS"] = "120"
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f} (other processes share these cores); "
          f"median of {runs} runs, each a new process")
    with tempfile.TemporaryDirectory(prefix="medtwin-bench-cli-") as tmp:
        cwd = Path(tmp)
        (cwd / "small.vcf").write_text(SMALL_VCF, encoding="utf-8")
        env["MEDTWIN_DATA_DIR"] = str(cwd / "data")
        cases = [
            ("baseline: python -c pass", [PYTHON, "-c", "pass"]),
            ("baseline: python -c 'import medtwin.api.app'", [PYTHON, "-c", "import medtwin.api.app"]),
            ("medtwin --help", [MEDTWIN, "--help"]),
            ("medtwin drug --help", [MEDTWIN, "drug", "--help"]),
            ("medtwin drug pgx small.vcf", [MEDTWIN, "drug", "pgx", "small.vcf"]),
            ("medtwin drug warfarin-dose", [MEDTWIN, "drug", "warfarin-dose", "--age", "60", "--weight", "80",
                                            "--height", "175", "--vkorc1", "G/A", "--cyp2c9", "*1/*3"]),
            ("medtwin glucose --help", [MEDTWIN, "glucose", "--help"]),
        ]
        results: dict[str, float] = {}
        for label, argv in cases:
            results[label] = median_seconds(argv, runs, env, cwd)
    bare = results["baseline: python -c pass"]
    app_import = results["baseline: python -c 'import medtwin.api.app'"]
    for label, seconds in results.items():
        line = f"  {label:<48} {seconds:6.3f} s median  ({seconds / bare:5.1f}x python -c pass"
        line += f", {seconds / app_import:4.2f}x importing the API app)" if not label.startswith("baseline") else ")"
        target = TARGETS.get(label)
        if target is not None:
            line += f"  target <= {target:.1f} s: {seconds / target:.2f}x the target" + (
                "" if seconds <= target else "  OVER")
        print(line)
    print(f"load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
