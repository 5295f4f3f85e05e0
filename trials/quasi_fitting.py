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
    model = analysis.model
    if analysis.engine == "bayesian":
        return _fit_bayes(protocol, analysis, frame, where)
    spec = analysis_spec(protocol, analysis, where)
    if model == "did":
        from analysis.did import fit_did as fit
    elif model == "event_study":
        from analysis.event_study import fit_event_study as fit
    elif model == "staggered_did":
        from analysis.staggered import fit_staggered as fit
    elif model == "its":
        from analysis.its import fit_its as fit
    elif model == "rd":
        from analysis.rd import fit_rd as fit
    else:
        from analysis.synthetic_control import fit_synthetic_control as fit
    res = fit(frame, spec)
    extra = res.to_dict()
    extra.pop("estimate", None)
    return FitOutput(res.estimate, extra=extra), res


def _fit_bayes(protocol: QuasiProtocol, analysis: QuasiAnalysis, frame: pd.DataFrame,
               where: str) -> tuple[FitOutput, Any]:
    spec, fit = bayes_spec(protocol, analysis, where)
    note = None
    if analysis.model == "its" and "weight" in frame.columns:
        # The Bayesian ITS takes no weights: each period's mean counts once.
        if frame["weight"].nunique() > 1:
            note = ("each period's mean counts equally (the Bayesian ITS takes no patient-count "
                    "weights; the frequentist ITS weights periods by patients)")
        frame = frame.drop(columns="weight")
    res = fit(frame, spec)
    if note is not None:
        res = dataclasses.replace(res, estimate=dataclasses.replace(
            res.estimate, warnings=(*res.estimate.warnings, note)))
    return FitOutput(res.estimate, getattr(res, "idata", None)), res


def _family_prior(analysis: QuasiAnalysis, where: str) -> Any:
    """The protocol's stated prior as the Bayesian family's prior object.

    Notes
    -----
    DiD: every part maps (``coefficients.sd`` also for the unit and period effects). ITS puts
    one Normal(0, sd) prior on every coefficient, the effect included, so ``treatment_effect``
    must equal ``coefficients`` there. RD states only the effect prior on the outcome's scale
    (the nuisance priors are on standardised units).
    """
    p = analysis.prior
    assert p is not None
    te, co, ic, rs = p.treatment_effect, p.coefficients, p.intercept, p.residual_sd
    if analysis.model == "did":
        from analysis.bayes_did import DidPrior
        return DidPrior(effect_mean=te.mean, effect_sd=te.sd, intercept_mean=ic.mean,
                        intercept_sd=ic.sd, fixed_effect_sd=co.sd, coef_sd=co.sd,
                        sigma_sd=rs.sd)
    if analysis.model == "its":
        from analysis.bayes_its import BayesItsPrior
        if (te.mean, te.sd) != (co.mean, co.sd) or co.mean != 0:
            raise ProtocolError(f"{where}.prior.treatment_effect: the bayesian its puts one "
                                "Normal(0, sd) prior on every coefficient, the effect "
                                "included; state treatment_effect equal to coefficients, mean 0")
        return BayesItsPrior(coef_sd=co.sd, intercept_sd=ic.sd, sigma_sd=rs.sd)
    from analysis.bayes_rd import BayesRdPrior
    return BayesRdPrior(effect_mean=te.mean, effect_sd=te.sd)


def bayes_spec(protocol: QuasiProtocol, analysis: QuasiAnalysis,
               where: str = "analyses") -> tuple[Any, Any]:
    """The specification object and fit function of a Bayesian analysis: its ``options``, the
    protocol's prior, sampler and diagnostics gate, and the posterior probabilities the criteria
    read. A one-line :class:`ProtocolError` naming the field when they do not fit."""
    from analysis.bayes_ancova import DiagnosticsGate, SamplerSettings

    s, g = analysis.sampler, analysis.diagnostics
    fixed: dict[str, Any] = {
        "estimand": analysis.estimand, "analysis": analysis.id,
        "interval_level": analysis.interval_level,
        "sampler": SamplerSettings(**s.model_dump()) if s else SamplerSettings(),
        "gate": DiagnosticsGate(**g.model_dump()) if g else DiagnosticsGate(),
        "prior": _family_prior(analysis, where)}
    wanted = tuple(sorted({(c.comparator.value, c.threshold) for c in protocol.criteria
                           if c.analysis == analysis.id and c.probability is not None}))
    if wanted:
        fixed["probabilities"] = wanted
    if analysis.model == "did":
        from analysis.bayes_did import BayesDidSpec as Spec
        from analysis.bayes_did import fit_bayes_did as fit
    elif analysis.model == "its":
        from analysis.bayes_its import BayesItsSpec as Spec
        from analysis.bayes_its import fit_bayes_its as fit
    else:
        from analysis.bayes_rd import BayesRdSpec as Spec
        from analysis.bayes_rd import fit_bayes_rd as fit
        if protocol.data.received is not None:
            raise ProtocolError(f"{where}.engine: the bayesian rd is sharp; data.received "
                                "makes the design fuzzy (use engine frequentist)")
        fixed["running"] = protocol.data.running
    return _spec(Spec, analysis, fixed, where), fit


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
        p = float(_first(pre, "f_p_value", "p_value"))
        stat = float(_first(pre, "f_stat", "chi2", "statistic"))
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
        f = sc_placebo_in_time(frame, spec, opts["period"], alpha=check.alpha)
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


def analysis_spec(protocol: QuasiProtocol, analysis: QuasiAnalysis,
                  where: str = "analyses") -> Any:
    """The specification object of a frequentist analysis, built from its ``options``; a
    one-line :class:`ProtocolError` naming ``<where>.options`` when they do not fit it (also
    called when the protocol is read, so a bad option never reaches a lock)."""
    fixed: dict[str, Any] = {"estimand": analysis.estimand, "analysis": analysis.id,
                             "interval_level": analysis.interval_level}
    model = analysis.model
    if model == "did":
        from analysis.did import DidSpec as kind
    elif model == "event_study":
        from analysis.event_study import EventStudySpec as kind
    elif model == "staggered_did":
        from analysis.staggered import StaggeredSpec as kind
    elif model == "its":
        from analysis.its import ItsSpec as kind
        opts = analysis.options
        if "errors" not in opts and not opts.get("comparison") and "hac_lags" not in opts:
            # A protocol's single-series ITS defaults to AR(1) errors by REML GLS: Newey-West
            # intervals under-cover in series of a few dozen periods, and its placebo check
            # raises false alarms in about a third of null series (tests/reference/its_sc.md).
            fixed["errors"] = "ar1"
    elif model == "rd":
        from analysis.rd import RdSpec as kind
        fixed.update(running=protocol.data.running, fuzzy=protocol.data.received)
    else:
        from analysis.synthetic_control import SyntheticControlSpec as kind
    return _spec(kind, analysis, fixed, where)


def _first(obj: Any, *names: str) -> float:
    """The first of ``names`` that ``obj`` has and is not None (a p-value of exactly 0 is a
    value, not a missing one)."""
    for name in names:
        value = getattr(obj, name, None)
        if value is not None:
            return float(value)
    return float("nan")


def result_spec(protocol: QuasiProtocol, analysis: QuasiAnalysis) -> Any:
    return analysis_spec(protocol, analysis)
