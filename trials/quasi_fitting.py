"""From a quasi-experimental protocol's analyses and falsification checks to the estimators of
:mod:`analysis` (difference-in-differences, event study, Callaway–Sant'Anna, interrupted time
series, regression discontinuity, synthetic control).

The protocol's ``options`` mapping of each analysis is passed to the estimator's specification
object; an unknown option is a one-line :class:`~trials.errors.ProtocolError` naming the field.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pandas as pd

from trials.errors import ProtocolError
from trials.fitting import FitOutput
from trials.quasi_intake import PanelIntake
from trials.quasi_protocol import Falsification, QuasiAnalysis, QuasiProtocol


def _spec(kind: type, analysis: QuasiAnalysis, fixed: dict[str, Any], where: str) -> Any:
    names = {f.name for f in dataclasses.fields(kind)}
    opts = dict(analysis.options)
    for key in opts:
        if key not in names or key in fixed:
            allowed = sorted(names - set(fixed) - {"estimand", "analysis"})
            raise ProtocolError(f"{where}.options.{key}: not an option of model "
                                f"{analysis.model} (options: {', '.join(allowed)})")
    try:
        return kind(**{**opts, **fixed})
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"{where}.options: {exc}") from None


def series(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per period: the patient-weighted mean over units (an interrupted time series of
    the whole service)."""
    g = cells.assign(wy=cells["y"] * cells["weight"]).groupby("period", sort=True)
    out = pd.DataFrame({"y": g["wy"].sum() / g["weight"].sum(), "weight": g["weight"].sum()})
    return out.reset_index()


def quasi_frame(protocol: QuasiProtocol, intake: PanelIntake,
                analysis: QuasiAnalysis) -> pd.DataFrame:
    """The frame an analysis is fitted to."""
    outcome = protocol.outcome(protocol.estimand(analysis.estimand).outcome)
    if analysis.model == "rd":
        assert intake.rows is not None
        return intake.rows.rename(columns={outcome.column: "y"})
    cells = intake.cells[outcome.id]
    if analysis.model == "its":
        return series(cells)
    return cells.assign(cluster=cells["unit"])


def fit_quasi(protocol: QuasiProtocol, intake: PanelIntake, analysis: QuasiAnalysis,
              where: str) -> tuple[FitOutput, Any]:
    """Fit one analysis; returns the output and the estimator's result (for falsification)."""
    frame = quasi_frame(protocol, intake, analysis)
    fixed: dict[str, Any] = {"estimand": analysis.estimand, "analysis": analysis.id,
                             "interval_level": analysis.interval_level}
    model = analysis.model
    if analysis.engine == "bayesian":
        return _fit_bayes(protocol, analysis, frame, fixed, where)
    if model == "did":
        from analysis.did import DidSpec, fit_did
        res = fit_did(frame, _spec(DidSpec, analysis, fixed, where))
    elif model == "event_study":
        from analysis.event_study import EventStudySpec, fit_event_study
        res = fit_event_study(frame, _spec(EventStudySpec, analysis, fixed, where))
    elif model == "staggered_did":
        from analysis.staggered import StaggeredSpec, fit_staggered
        res = fit_staggered(frame, _spec(StaggeredSpec, analysis, fixed, where))
    elif model == "its":
        from analysis.its import ItsSpec, fit_its
        res = fit_its(frame, _spec(ItsSpec, analysis, fixed, where))
    elif model == "rd":
        from analysis.rd import RdSpec, fit_rd
        d = protocol.data
        fixed.update(running=d.running, fuzzy=d.received)
        res = fit_rd(frame, _spec(RdSpec, analysis, fixed, where))
    else:
        from analysis.synthetic_control import SyntheticControlSpec, fit_synthetic_control
        res = fit_synthetic_control(frame, _spec(SyntheticControlSpec, analysis, fixed, where))
    extra = res.to_dict()
    extra.pop("estimate", None)
    return FitOutput(res.estimate, extra=extra), res


def _fit_bayes(protocol: QuasiProtocol, analysis: QuasiAnalysis, frame: pd.DataFrame,
               fixed: dict[str, Any], where: str) -> tuple[FitOutput, Any]:
    from analysis.bayes_ancova import DiagnosticsGate, SamplerSettings

    s, g = analysis.sampler, analysis.diagnostics
    fixed = {**fixed,
             "sampler": SamplerSettings(**s.model_dump()) if s else SamplerSettings(),
             "gate": DiagnosticsGate(**g.model_dump()) if g else DiagnosticsGate()}
    wanted = tuple(sorted({(c.comparator.value, c.threshold) for c in protocol.criteria
                           if c.analysis == analysis.id and c.probability is not None}))
    if wanted:
        fixed["probabilities"] = wanted
    if analysis.prior is not None:
        fixed["prior_effect_sd"] = analysis.prior.treatment_effect.sd
    if analysis.model == "did":
        from analysis.bayes_did import BayesDidSpec as Spec
        from analysis.bayes_did import fit_bayes_did as fit
    elif analysis.model == "its":
        from analysis.bayes_its import BayesItsSpec as Spec
        from analysis.bayes_its import fit_bayes_its as fit
    else:
        from analysis.bayes_rd import BayesRdSpec as Spec
        from analysis.bayes_rd import fit_bayes_rd as fit
    names = {f.name for f in dataclasses.fields(Spec)}
    res = fit(frame, _spec(Spec, analysis, {k: v for k, v in fixed.items() if k in names},
                           where))
    return FitOutput(res.estimate, getattr(res, "idata", None)), res


# --------------------------------------------------------------------------- falsification


def run_check(protocol: QuasiProtocol, intake: PanelIntake, check: Falsification,
              result: Any) -> dict[str, Any]:
    """Evaluate one pre-specified falsification check; a plain record for results and the
    decision (``id, analysis, check, passed, statistic, p_value, threshold, detail``)."""
    analysis = protocol.analysis(check.analysis)
    opts = dict(check.options)
    base = {"id": check.id, "analysis": check.analysis, "check": check.check}
    if check.check == "pre_trends":
        pre = getattr(result, "pretrend", None)
        if pre is None:
            return {**base, "passed": False, "statistic": None, "p_value": None,
                    "threshold": check.alpha,
                    "detail": "no pre-adoption periods to test, so parallel trends are untested"}
        p = float(getattr(pre, "f_p_value", None) or pre.p_value)
        stat = float(getattr(pre, "f_stat", None) or getattr(pre, "chi2", None)
                     or getattr(pre, "statistic", float("nan")))
        passed = p >= check.alpha
        detail = (f"joint test that every pre-adoption effect is zero: p = {p:.3f} "
                  f"({'no evidence against' if passed else 'evidence against'} parallel trends "
                  f"at alpha {check.alpha:g})")
        return {**base, "passed": passed, "statistic": stat, "p_value": p,
                "threshold": check.alpha, "detail": detail}
    frame = quasi_frame(protocol, intake, analysis)
    spec = result_spec(protocol, analysis)
    if analysis.model == "its" and check.check == "placebo_dates":
        from analysis.its import its_placebo
        f = its_placebo(frame, spec, tuple(opts.get("periods", ())), alpha=check.alpha)
    elif analysis.model == "synthetic_control" and check.check == "placebo_dates":
        from analysis.synthetic_control import sc_placebo_in_time
        f = sc_placebo_in_time(frame, spec, opts["period"])
    elif check.check == "density":
        from analysis.rd_checks import density_test
        f = density_test(frame, spec, alpha=check.alpha)
    elif check.check == "covariate_balance":
        from analysis.rd_checks import covariate_balance
        parts = covariate_balance(frame, spec, tuple(opts.get("covariates",
                                                             protocol.data.covariates)),
                                  alpha=check.alpha)
        failed = [x for x in parts if not x.passed]
        return {**base, "passed": not failed, "statistic": None,
                "p_value": min((x.p_value for x in parts if x.p_value is not None),
                               default=None), "threshold": check.alpha,
                "detail": "; ".join(x.detail for x in (failed or parts))}
    elif check.check == "bandwidth_sensitivity":
        from analysis.rd_checks import bandwidth_sensitivity
        f = bandwidth_sensitivity(frame, spec, **({"multipliers": tuple(opts["multipliers"])}
                                                  if "multipliers" in opts else {}))
    elif check.check == "placebo_cutoffs":
        from analysis.rd_checks import placebo_cutoffs
        f = placebo_cutoffs(frame, spec, tuple(opts["cutoffs"]), alpha=check.alpha)
    else:
        raise ProtocolError(f"falsification {check.id}: check {check.check} is not available "
                            f"for model {analysis.model}")
    return {**base, **{k: v for k, v in f.to_dict().items() if k != "check"}}


def result_spec(protocol: QuasiProtocol, analysis: QuasiAnalysis) -> Any:
    fixed: dict[str, Any] = {"estimand": analysis.estimand, "analysis": analysis.id,
                             "interval_level": analysis.interval_level}
    where = "analyses"
    if analysis.model == "its":
        from analysis.its import ItsSpec
        return _spec(ItsSpec, analysis, fixed, where)
    if analysis.model == "rd":
        from analysis.rd import RdSpec
        fixed.update(running=protocol.data.running, fuzzy=protocol.data.received)
        return _spec(RdSpec, analysis, fixed, where)
    from analysis.synthetic_control import SyntheticControlSpec
    return _spec(SyntheticControlSpec, analysis, fixed, where)
