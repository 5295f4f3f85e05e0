"""Reference values for analysis.rd from the rdrobust / rddensity Python packages.

rdrobust 2.1.1 and rddensity 3.0 (Calonico, Cattaneo, Farrell, Titiunik; PyPI) are an
independent implementation. They are NOT project dependencies: run this script in a throwaway
virtual environment, from the repository root:

    python3 -m venv /tmp/rdref && /tmp/rdref/bin/pip install rdrobust==2.1.1 rddensity==3.0
    /tmp/rdref/bin/python tests/reference/rd_reference.py > tests/reference/rd_reference.out

It exports rdrobust's bundled US Senate data (Cattaneo, Frandsen and Titiunik 2015) to
rd_senate.csv, reads rd_senate.csv and rd_fuzzy_data.csv back, and writes rd_rdrobust.csv (one
row per case) and rd_rddensity.csv, numbers with 15 significant digits.
"""

import csv
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
from rddensity import rddensity
from rdrobust import rdrobust, rdrobust_RDsenate

HERE = Path(__file__).parent
print("rdrobust", version("rdrobust"), "rddensity", version("rddensity"),
      "python", sys.version.split()[0])

rdrobust_RDsenate().to_csv(HERE / "rd_senate.csv", index=False)
senate = pd.read_csv(HERE / "rd_senate.csv")
# A running variable with mass points (floor of the margin) exercises masspoints="adjust".
senate["margin_floor"] = np.floor(senate["margin"])
fuzzy = pd.read_csv(HERE / "rd_fuzzy_data.csv")


def g(v):
    return f"{float(v):.15g}"


SEN = dict(data=senate, y="vote", x="margin")
FUZ = dict(data=fuzzy, y="y", x="score")
cases = [
    ("senate_default", SEN, {}),
    ("senate_uniform", SEN, {"kernel": "uniform"}),
    ("senate_epanechnikov", SEN, {"kernel": "epanechnikov"}),
    ("senate_h15_nn", SEN, {"h": 15}),
    ("senate_h15_hc0", SEN, {"h": 15, "vce": "hc0"}),
    ("senate_h15_hc1", SEN, {"h": 15, "vce": "hc1"}),
    ("senate_h15_b25", SEN, {"h": 15, "b": 25}),
    ("senate_level90", SEN, {"level": 90}),
    ("senate_covariate", SEN, {"covs": ["demvoteshlag1"]}),
    ("senate_cutoff10", SEN, {"c": 10}),
    ("senate_masspoints", dict(data=senate, y="vote", x="margin_floor"), {}),
    ("fuzzy_default", FUZ, {"fuzzy": "treated"}),
    ("fuzzy_h05_hc0", FUZ, {"fuzzy": "treated", "h": 0.5, "vce": "hc0"}),
    ("fuzzy_covariate", FUZ, {"fuzzy": "treated", "covs": ["z"]}),
]
rows = []
for name, src, opts in cases:
    d = src["data"]
    cols = [src["y"], src["x"], *([opts["fuzzy"]] if "fuzzy" in opts else []),
            *opts.get("covs", [])]
    d = d[cols].dropna()
    kw = dict(opts)
    if "fuzzy" in kw:
        kw["fuzzy"] = d[kw["fuzzy"]]
    if "covs" in kw:
        kw["covs"] = d[kw["covs"]]
    r = rdrobust(d[src["y"]], d[src["x"]], **kw)
    print("=" * 30, name, opts)
    print(r)
    coef, se, ci = r.coef.values.ravel(), r.se.values.ravel(), r.ci.values
    pv = r.pv.values.ravel()
    bws = r.bws.values
    rows.append({
        "case": name, "level": opts.get("level", 95),
        "h_left": g(bws[0, 0]), "h_right": g(bws[0, 1]),
        "b_left": g(bws[1, 0]), "b_right": g(bws[1, 1]),
        "n_h_left": int(r.N_h[0]), "n_h_right": int(r.N_h[1]),
        "estimate": g(coef[0]), "estimate_bc": g(coef[1]),
        "se_conventional": g(se[0]), "se_robust": g(se[2]),
        "ci_conventional_lower": g(ci[0, 0]), "ci_conventional_upper": g(ci[0, 1]),
        "ci_robust_lower": g(ci[2, 0]), "ci_robust_upper": g(ci[2, 1]),
        "p_conventional": g(pv[0]), "p_robust": g(pv[2]),
    })
with open(HERE / "rd_rdrobust.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)

# Cattaneo-Jansson-Ma density test: fixed bandwidths (both sides), p = 2, q = 3, triangular,
# unrestricted fit, jackknife variance; plus the package's own data-driven bandwidth for context.
dens = []
for name, x, c, h in [("senate_h20", senate["margin"], 0, 20.0),
                      ("senate_h10", senate["margin"], 0, 10.0),
                      ("senate_h20_c10", senate["margin"], 10, 20.0),
                      ("fuzzy_h05", fuzzy["score"], 0, 0.5),
                      ("senate_datadriven", senate["margin"], 0, None)]:
    x = np.asarray(x.dropna(), dtype=float)
    r = rddensity(x, c=c, h=[] if h is None else [h, h])
    print("=" * 30, "rddensity", name)
    print(r)
    dens.append({"case": name, "cutoff": c, "h_left": g(r.h["left"]), "h_right": g(r.h["right"]),
                 "n_h_left": int(r.n["eff_left"]), "n_h_right": int(r.n["eff_right"]),
                 "f_left": g(r.hat["left"]), "f_right": g(r.hat["right"]),
                 "se_left": g(r.sd_jk["left"]), "se_right": g(r.sd_jk["right"]),
                 "t_jk": g(r.test["t_jk"]), "p_jk": g(r.test["p_jk"])})
with open(HERE / "rd_rddensity.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(dens[0]))
    w.writeheader()
    w.writerows(dens)
