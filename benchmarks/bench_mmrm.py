"""Benchmark the in-house MMRM: unstructured REML on 2,000 participants x 5 visits.

Run with the project's virtual environment::

    .venv/bin/python benchmarks/bench_mmrm.py [--repeat N] [--r-repeat N] [--no-r]

Data: tests/reference/mmrm_bench_data.csv (seeded simulation, ~13% monotone dropout by the last
visit, from tests/reference/mmrm_make_data.py). Prints the median wall time of ``--repeat`` fits
(after one untimed warm-up), checks the treatment-by-visit estimates, their SEs and the REML
log-likelihood against the committed nlme::gls reference (tests/reference/mmrm_bench_*.csv) and,
when ``Rscript`` is on PATH, times ``nlme::gls`` with its default control settings on the same
data in the same run (fastest of ``--r-repeat``; R start-up, data reading and output excluded)
and prints the ratio. Goal: <= 2 s on 2 cores.
Always exits 0 when the fit runs (benchmarks report, they do not fail CI).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis.mmrm import MmrmSpec, fit_mmrm  # noqa: E402

REF = ROOT / "tests" / "reference"
GOAL_SECONDS = 2.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--r-repeat", type=int, default=1)
    parser.add_argument("--no-r", action="store_true", help="do not time nlme::gls")
    args = parser.parse_args()

    frame = pd.read_csv(REF / "mmrm_bench_data.csv")
    spec = MmrmSpec("bench", "mmrm_bench", visit=12, covariance="unstructured", method="reml")
    result = fit_mmrm(frame, spec)  # warm-up (imports, caches)
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        result = fit_mmrm(frame, spec)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    n_obs = int(frame["y"].notna().sum())
    print(f"MMRM unstructured REML, {frame['participant'].nunique()} participants, "
          f"{n_obs} observations")
    print(f"  python fit: median {median:.3f} s over {args.repeat} (min {min(times):.3f} s); "
          f"goal <= {GOAL_SECONDS} s: {'met' if median <= GOAL_SECONDS else 'NOT met'}")
    print(f"  converged {result.estimate.diagnostics['converged']}, iterations "
          f"{result.estimate.diagnostics['iterations']}")

    coefs = pd.read_csv(REF / "mmrm_bench_coefs.csv").set_index("term")
    info = pd.read_csv(REF / "mmrm_bench_info.csv").iloc[0]
    visits = result.visits
    r_est = coefs.loc[[f"visit{v}:armai_cbt" for v in visits]]
    est = np.array([c.estimate for c in result.contrasts])
    se = np.array([c.se for c in result.contrasts])
    d_est = float(np.max(np.abs(est - r_est["estimate"].to_numpy())))
    d_se = float(np.max(np.abs(se / r_est["std_error"].to_numpy() - 1)))
    d_ll = abs(result.estimate.diagnostics["log_likelihood"] - float(info["log_likelihood"]))
    ok = d_est < 1e-4 and d_se < 1e-3 and d_ll < 1e-4
    print(f"  vs nlme::gls reference: max |d estimate| {d_est:.2e}, max rel d SE {d_se:.2e}, "
          f"|d logLik| {d_ll:.2e} -> {'agree' if ok else 'DISAGREE'}")

    if args.no_r or shutil.which("Rscript") is None:
        print("  nlme::gls not timed (Rscript not on PATH or --no-r)")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(["Rscript", str(REF / "mmrm_bench.R"), tmp, str(args.r_repeat),
                               "default"], cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            print("  nlme::gls failed:\n" + proc.stderr[-2000:])
            return 0
        r_time = float(pd.read_csv(Path(tmp) / "mmrm_bench_time.csv")["seconds"].min())
    print(f"  nlme::gls (default glsControl): {r_time:.2f} s; "
          f"ratio R / python {r_time / median:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
