"""Benchmark: TWFE on a 1,000,000-row patient-level panel, aggregated by DuckDB versus not.

Usage: ``.venv/bin/python benchmarks/bench_did.py [--rows 1000000 --units 200 --periods 60]``.

A seeded panel (clinics x months x Poisson(rows / cells) patients per clinic-month, about 83;
staggered adoption) is
written to Parquet in a temporary folder. Each timed run is a fresh child process that reads the
file and fits TWFE with unit and month effects and SEs clustered by clinic:

- ``aggregated``: :func:`analysis.panel_data.aggregate_panel` (DuckDB group-by to cells) then
  :func:`analysis.did.fit_did` on the 12,000 cell means weighted by cell counts;
- ``patient``: the baseline, the Parquet file read into pandas and the same fit on every row.

Reported per run: wall time, and peak resident memory of that child (``ru_maxrss``). The two
estimates and SEs must agree (to 1e-8), and the aggregated run must meet the goal: <= 10 s and
< 4 GB peak on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GOAL_SECONDS = 10.0
GOAL_MB = 4096.0


def write_panel(path: Path, units: int, periods: int, per_cell: float, seed: int) -> int:
    """Write the seeded patient-level panel to ``path``; return the number of rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    adopt = rng.choice(np.r_[np.arange(12, periods - 6, 6), 10**6], units)
    size = rng.poisson(per_cell, units * periods)
    cell_unit = np.repeat(np.arange(units), periods)
    cell_period = np.tile(np.arange(1, periods + 1), units)
    unit, period = np.repeat(cell_unit, size), np.repeat(cell_period, size)
    treated = (period >= adopt[unit]).astype(np.int8)
    y = (rng.normal(0, 2, units)[unit] + 0.02 * period - 1.0 * treated
         + np.repeat(rng.normal(0, 0.5, cell_unit.size), size) + rng.normal(0, 4, unit.size))
    labels = np.array([f"clinic{u:04d}" for u in range(units)])
    table = pa.table({"clinic": labels[unit],
                      "month": period.astype(np.int32), "phq9": y, "ai_triage": treated})
    pq.write_table(table, path, row_group_size=250_000)
    return int(unit.size)


def run_phase(phase: str, path: str) -> dict:
    from analysis.did import DidSpec, fit_did

    start = time.perf_counter()
    if phase == "aggregated":
        from analysis.panel_data import aggregate_panel

        frame = aggregate_panel(path, unit="clinic", period="month", outcome="phq9",
                                treated="ai_triage")
    else:
        import pandas as pd

        frame = pd.read_parquet(path).rename(columns={"clinic": "unit", "month": "period",
                                                      "phq9": "y", "ai_triage": "treated"})
    est = fit_did(frame, DidSpec("bench", phase)).estimate
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"phase": phase, "seconds": seconds, "peak_mb": peak_mb, "rows_fitted": len(frame),
            "estimate": est.estimate, "std_error": est.std_error, "n_analysed": est.n_analysed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=200)
    parser.add_argument("--periods", type=int, default=60)
    parser.add_argument("--rows", type=int, default=1_000_000, help="expected patient rows")
    parser.add_argument("--seed", type=int, default=20261127)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(run_phase(args.phase, args.path)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "panel.parquet"
        t0 = time.perf_counter()
        per_cell = args.rows / (args.units * args.periods)
        n = write_panel(path, args.units, args.periods, per_cell, args.seed)
        print(f"panel: {n:,} rows ({args.units} clinics x {args.periods} months), "
              f"written in {time.perf_counter() - t0:.1f} s, "
              f"{path.stat().st_size / 2**20:.0f} MB Parquet")
        results = {}
        for phase in ("aggregated", "patient"):
            out = subprocess.run([sys.executable, __file__, "--phase", phase, "--path",
                                  str(path)], capture_output=True, text=True, check=True)
            results[phase] = json.loads(out.stdout.strip().splitlines()[-1])
    for r in results.values():
        print(f"{r['phase']:>10}: {r['seconds']:6.2f} s  peak {r['peak_mb']:7.0f} MB  "
              f"rows fitted {r['rows_fitted']:>9,}  estimate {r['estimate']:.6f}  "
              f"SE {r['std_error']:.6f}")
    a, b = results["aggregated"], results["patient"]
    same = (abs(a["estimate"] - b["estimate"]) < 1e-8 and abs(a["std_error"] - b["std_error"])
            < 1e-8 and a["n_analysed"] == b["n_analysed"])
    goal = a["seconds"] <= GOAL_SECONDS and a["peak_mb"] < GOAL_MB
    print(f"same estimate and SE: {same}; speed-up {b['seconds'] / a['seconds']:.1f}x; "
          f"goal (<= {GOAL_SECONDS:g} s, < {GOAL_MB:g} MB): {'met' if goal else 'MISSED'}")
    if args.json:
        args.json.write_text(json.dumps({"rows": n, **results, "same": same, "goal_met": goal},
                                        indent=2))
    return 0 if same and goal else 1


if __name__ == "__main__":
    raise SystemExit(main())
