"""Group-sequential boundaries for a one-sided test of H0: theta <= 0 against theta > 0.

A :class:`GroupSequentialDesign` holds the specification (looks, error rates, boundary
families); :meth:`GroupSequentialDesign.compute` returns a frozen :class:`Boundaries` record,
either at the planned information fractions or recomputed at the fractions observed so far.
Probabilities come from the recursive integration in :mod:`designs.gs_integration`.

Boundary families use rpact's names and one-sided definitions (``sided = 1``): classic
``"OF"`` (c_k = C / sqrt(t_k)) and ``"P"`` (c_k = C), with C found by root finding; alpha
spending ``"asOF"``, ``"asP"``, ``"asKD"`` (parameter rho) and ``"asHSD"`` (parameter gamma);
beta spending for futility ``"bsOF"``, ``"bsP"``, ``"bsKD"``, ``"bsHSD"``, binding or not.

Harm convention
---------------
``harm_z[k]`` is a lower boundary on the same Z scale (a negative number): stop for harm at look
k when Z_k <= harm_z[k]. It is either constant (``HarmBoundary(z=c)`` gives -c at every look) or
the mirror image of an alpha-spending boundary at its own one-sided level
(``HarmBoundary(alpha=..., spending=...)``), i.e. a group-sequential test of theta >= 0 against
theta < 0. It is computed and reported on its own: ignoring the efficacy and futility boundaries,
which in turn ignore it (power, inflation factor, expected sizes and stopping probabilities do
not include harm stops). Its crossing probabilities are therefore upper bounds on the chance of
stopping for harm in the full design; harm is checked before futility at each look.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri

from designs import gs_integration as gi
from trials.errors import TrialsError

CLASSIC = ("OF", "P")
ALPHA_SPENDING = ("asOF", "asP", "asKD", "asHSD")
BETA_SPENDING = ("bsOF", "bsP", "bsKD", "bsHSD")


class BoundaryError(TrialsError, ValueError):
    """A design specification or an observed path that cannot be used; one line naming the
    field."""


def spending(kind: str, level: float, t: Sequence[float] | np.ndarray | float,
             gamma: float | None = None) -> np.ndarray:
    """Cumulative error spent by information fraction t (rpact's one-sided definitions).

    Parameters
    ----------
    kind
        ``"asOF"``, ``"asP"``, ``"asKD"``, ``"asHSD"`` or the ``"bs..."`` twins.
    level
        Total error to spend (alpha, or beta for futility).
    t
        Information fractions; values above 1 spend ``level``.
    gamma
        rho of ``asKD`` (> 0) or gamma of ``asHSD``.

    Notes
    -----
    With z_q the standard-normal quantile and level a:

    - OF (Lan & DeMets 1983): :math:`2 - 2\\Phi(z_{1-a/2} / \\sqrt{t})`
    - P (Lan & DeMets 1983): :math:`a \\log(1 + (e - 1) t)`
    - KD (Kim & DeMets 1987): :math:`a t^{\\rho}`
    - HSD (Hwang, Shih & DeCani 1990): :math:`a (1 - e^{-\\gamma t}) / (1 - e^{-\\gamma})`,
      and :math:`a t` for gamma = 0.
    """
    family = kind[2:]
    t = np.clip(np.asarray(t, dtype=float), 0.0, 1.0)
    if family == "OF":
        with np.errstate(divide="ignore"):
            return np.where(t > 0, 2.0 * ndtr(-ndtri(1.0 - level / 2.0) / np.sqrt(t)), 0.0)
    if family == "P":
        return level * np.log1p((math.e - 1.0) * t)
    if family == "KD":
        return level * t ** float(gamma)  # type: ignore[arg-type]
    if family == "HSD":
        g = float(gamma)  # type: ignore[arg-type]
        return level * t if g == 0 else level * -np.expm1(-g * t) / -math.expm1(-g)
    raise BoundaryError(f"spending function {kind!r}: use one of {ALPHA_SPENDING + BETA_SPENDING}")


@dataclass(frozen=True)
class HarmBoundary:
    """Stopping for harm: constant ``z`` (stop when Z_k <= -z) or alpha spending at ``alpha``."""

    z: float | None = None
    alpha: float | None = None
    spending: str = "asOF"
    gamma: float | None = None

    def __post_init__(self) -> None:
        if (self.z is None) == (self.alpha is None):
            raise BoundaryError("harm: give exactly one of z (constant) or alpha (spending)")
        if self.z is not None and not self.z > 0:
            raise BoundaryError(f"harm.z: must be > 0 (stop when Z <= -z), got {self.z}")
        if self.alpha is not None:
            if not 0 < self.alpha < 0.5:
                raise BoundaryError(f"harm.alpha: must be in (0, 0.5), got {self.alpha}")
            _check_family("harm.spending", self.spending, ALPHA_SPENDING, self.gamma)


def _check_family(name: str, kind: str, allowed: tuple[str, ...], gamma: float | None) -> None:
    if kind not in allowed:
        raise BoundaryError(f"{name}: {kind!r} is not one of {', '.join(allowed)}")
    if kind.endswith(("KD", "HSD")) and (gamma is None or not math.isfinite(gamma)):
        raise BoundaryError(f"{name}: {kind} needs its parameter (gamma_a / gamma_b / gamma)")
    if kind.endswith("KD") and not gamma > 0:  # type: ignore[operator]
        raise BoundaryError(f"{name}: the rho of {kind} must be > 0, got {gamma}")


@dataclass(frozen=True)
class GroupSequentialDesign:
    """Specification of a one-sided group-sequential design (no computation happens here).

    Parameters
    ----------
    information_rates
        Planned information fractions t_1 < ... < t_K = 1.
    alpha, beta
        One-sided type-I error and type-II error at the alternative.
    efficacy, gamma_a
        Efficacy family (``"OF"``, ``"P"``, ``"asOF"``, ``"asP"``, ``"asKD"``, ``"asHSD"``) and
        the parameter of ``asKD`` / ``asHSD``.
    futility, gamma_b
        Beta-spending futility family (``None`` for none) and its parameter.
    binding_futility
        Binding futility: efficacy bounds account for futility stops. Non-binding: efficacy
        bounds are computed ignoring futility, so type-I error holds whether or not it is obeyed.
    harm
        Optional :class:`HarmBoundary`.
    effect, n_fixed
        Optional alternative theta_1 (gives information on its own scale) and the fixed-design
        sample size at the same alpha, beta and theta_1 (gives sample sizes).
    grid
        Grid-size parameter r of the numerical integration.
    """

    information_rates: tuple[float, ...]
    alpha: float = 0.025
    beta: float = 0.2
    efficacy: str = "asOF"
    gamma_a: float | None = None
    futility: str | None = None
    gamma_b: float | None = None
    binding_futility: bool = False
    harm: HarmBoundary | None = None
    effect: float | None = None
    n_fixed: float | None = None
    grid: int = gi.DEFAULT_GRID

    def __post_init__(self) -> None:
        rates = tuple(float(x) for x in self.information_rates)
        object.__setattr__(self, "information_rates", rates)
        _check_rates("information_rates", rates)
        if not math.isclose(rates[-1], 1.0, abs_tol=1e-12):
            raise BoundaryError(f"information_rates: the last planned rate must be 1, got "
                                f"{rates[-1]}")
        if not 0 < self.alpha < 0.5:
            raise BoundaryError(f"alpha: must be in (0, 0.5), got {self.alpha}")
        if not 0 < self.beta < 1 - self.alpha:
            raise BoundaryError(f"beta: must be in (0, 1 - alpha), got {self.beta}")
        _check_family("efficacy", self.efficacy, CLASSIC + ALPHA_SPENDING, self.gamma_a)
        if self.futility is not None:
            _check_family("futility", self.futility, BETA_SPENDING, self.gamma_b)
            if self.binding_futility and self.efficacy in CLASSIC:
                raise BoundaryError("binding_futility: needs an alpha-spending efficacy family")
        elif self.binding_futility:
            raise BoundaryError("binding_futility: there is no futility boundary")
        for name in ("effect", "n_fixed"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise BoundaryError(f"{name}: must be a positive number, got {value}")
        if not 4 <= int(self.grid) <= 400:
            raise BoundaryError(f"grid: must be between 4 and 400, got {self.grid}")

    @property
    def looks(self) -> int:
        return len(self.information_rates)

    def compute(self, observed_rates: Sequence[float] | None = None) -> Boundaries:
        """Boundaries and operating characteristics, planned or at the observed information.

        Parameters
        ----------
        observed_rates
            Information fractions I_k / I_max observed at the looks held so far (m <= K
            values). They replace the first m planned fractions; later looks stay as planned.
            With m = K the last look is the final analysis and spends all that is left of
            alpha whatever its fraction (over- or under-running).

        Notes
        -----
        Spending functions are evaluated at min(t_k, 1). At observed fractions the drift
        eta = theta_1 sqrt(I_max) stays the planned one, so beta-spending futility bounds are
        re-derived under the planned alternative (as gsDesign does) and the power reported is
        the power at the observed fractions; classic OF / P constants are re-solved for the
        new fractions.
        """
        if observed_rates is None:
            return _finish(self, np.array(self.information_rates), 0, None)
        obs = tuple(float(x) for x in observed_rates)
        if not 1 <= len(obs) <= self.looks:
            raise BoundaryError(f"observed_rates: give 1 to {self.looks} fractions, got "
                                f"{len(obs)}")
        rates = obs + self.information_rates[len(obs):]
        _check_rates("observed_rates", rates, allow_above_one=True)
        planned_drift = _bounds(self, np.array(self.information_rates), None)[2]
        return _finish(self, np.array(rates), len(obs), planned_drift)


def _check_rates(name: str, rates: Sequence[float], allow_above_one: bool = False) -> None:
    r = np.asarray(rates, dtype=float)
    if r.size == 0 or r.size > 20:
        raise BoundaryError(f"{name}: give 1 to 20 looks, got {r.size}")
    if not np.all(np.isfinite(r)) or r[0] <= 0 or np.any(np.diff(r) <= 0):
        raise BoundaryError(f"{name}: fractions must be positive and strictly increasing, "
                            f"got {list(rates)}")
    if not allow_above_one and r[-1] > 1 + 1e-12:
        raise BoundaryError(f"{name}: fractions must not exceed 1, got {list(rates)}")


def _bounds(design: GroupSequentialDesign, rates: np.ndarray,
            drift: float | None) -> tuple[np.ndarray, np.ndarray, float]:
    """Efficacy c, futility f (K entries, f_K = -inf) and drift; drift solved when None."""
    r, k_max = int(design.grid), rates.size
    s = np.minimum(rates, 1.0)
    s[-1] = 1.0  # the final analysis spends what is left
    if design.efficacy in CLASSIC:
        c = gi.classic_bounds(design.efficacy, rates, design.alpha, r)
        cum_alpha = None
    else:
        cum_alpha = spending(design.efficacy, design.alpha, s, design.gamma_a)
        c = gi.spending_bounds(rates, cum_alpha, None, r)
    if design.futility is None:
        if drift is None:
            drift = gi.power_drift(rates, c, 1.0 - design.beta, r)
        return c, np.full(k_max, -math.inf), drift
    cum_beta = spending(design.futility, design.beta, s, design.gamma_b)
    fixed_c = None if design.binding_futility else c
    if drift is None:
        def gap(d: float) -> float:
            cc, ff = gi.beta_spending_pass(rates, cum_alpha, fixed_c, cum_beta, d, r)
            return float(np.clip(ff[-1], -gi.BIG, gi.BIG) - cc[-1])

        drift = gi.solve(gap, 0.0, 3.0 * (ndtri(1 - design.alpha) + ndtri(1 - design.beta)))
    c, f = gi.beta_spending_pass(rates, cum_alpha, fixed_c, cum_beta, drift, r)
    if np.any(c == -math.inf):
        raise BoundaryError("futility: no boundaries spend alpha and beta as specified")
    f[-1] = -math.inf
    return c, f, drift


def _harm_bounds(design: GroupSequentialDesign, rates: np.ndarray) -> np.ndarray | None:
    harm = design.harm
    if harm is None:
        return None
    if harm.z is not None:
        return np.full(rates.size, -harm.z)
    s = np.minimum(rates, 1.0)
    s[-1] = 1.0
    cum = spending(harm.spending, harm.alpha, s, harm.gamma)  # type: ignore[arg-type]
    return -gi.spending_bounds(rates, cum, None, int(design.grid))


def _finish(design: GroupSequentialDesign, rates: np.ndarray, observed: int,
            drift: float | None) -> Boundaries:
    c, f, drift = _bounds(design, rates, drift)
    r, k_max = int(design.grid), rates.size
    top = np.full(k_max, math.inf)
    none = np.full(k_max, -math.inf)
    a0, b0 = gi.crossing_probabilities(rates, f, c, 0.0, r)
    a1, b1 = gi.crossing_probabilities(rates, f, c, drift, r)
    ah, bh = gi.crossing_probabilities(rates, f, c, drift / 2.0, r)
    alpha_spent = a0 if design.binding_futility else gi.crossing_probabilities(
        rates, none, c, 0.0, r)[0]
    not_rejected = np.cumsum(b1)
    not_rejected[-1] = 1.0 - a1.sum()  # at the last look every non-rejection counts
    n_fixed_z = (ndtri(1 - design.alpha) + ndtri(1 - design.beta)) ** 2

    def expected(a: np.ndarray, b: np.ndarray) -> float:
        stop = (a + b)[:-1]
        return float((stop @ rates[:-1] + (1.0 - stop.sum()) * rates[-1]) * drift**2 / n_fixed_z)

    e0, e1, eh = expected(a0, b0), expected(a1, b1), expected(ah, bh)
    inflation = drift**2 / n_fixed_z
    hz = _harm_bounds(design, rates)
    if hz is not None and np.any(hz >= c):
        raise BoundaryError("harm: the harm boundary must lie below the efficacy boundary")
    harm_h0 = None if hz is None else gi.crossing_probabilities(rates, hz, top, 0.0, r)[1]
    harm_h1 = None if hz is None else gi.crossing_probabilities(rates, hz, top, drift, r)[1]
    info = None if design.effect is None else n_fixed_z / design.effect**2  # I_fixed
    n_fix = design.n_fixed

    def scaled(base: float | None, ratio: float) -> float | None:
        return None if base is None else base * ratio

    return Boundaries(
        design=design, information_rates=_t(rates), observed_looks=observed,
        efficacy_z=_t(c), efficacy_p=_t(ndtr(-c)), alpha_spent=_t(np.cumsum(alpha_spent)),
        futility_z=_t(f), futility_p=_t(ndtr(-f)), beta_spent=_t(not_rejected),
        harm_z=None if hz is None else _t(hz), harm_p=None if hz is None else _t(ndtr(hz)),
        harm_alpha_spent=None if harm_h0 is None else _t(np.cumsum(harm_h0)),
        harm_crossing_h1=None if harm_h1 is None else _t(harm_h1),
        drift=float(drift), inflation_factor=float(inflation), power=_t(np.cumsum(a1)),
        stop_efficacy_h0=_t(a0), stop_futility_h0=_t(b0),
        stop_efficacy_h1=_t(a1), stop_futility_h1=_t(b1),
        expected_ratio_h0=e0, expected_ratio_h1=e1, expected_ratio_half=eh,
        max_information=scaled(info, inflation * rates[-1]),
        expected_information_h0=scaled(info, e0), expected_information_h1=scaled(info, e1),
        max_sample_size=scaled(n_fix, inflation * rates[-1]),
        expected_sample_size_h0=scaled(n_fix, e0), expected_sample_size_h1=scaled(n_fix, e1),
    )


def _t(x: np.ndarray) -> tuple[float, ...]:
    return tuple(float(v) for v in np.asarray(x, dtype=float))


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


@dataclass(frozen=True)
class Boundaries:
    """Computed boundaries and operating characteristics of a :class:`GroupSequentialDesign`.

    Per-look tuples have K entries. Efficacy: reject H0 at look k when Z_k >= efficacy_z[k]
    (nominal one-sided p-value <= efficacy_p[k]). Futility: stop when Z_k < futility_z[k]
    (-inf where there is none, always at the final look, where not crossing efficacy is the
    failure to reject). Harm: see the module notes. ``alpha_spent`` is cumulative P0(reject),
    with futility stops only if binding; ``beta_spent`` and ``power`` are cumulative
    probabilities of futility stops and rejection under H1. ``stop_*`` are per-look
    probabilities of stopping for each reason, futility obeyed (as in rpact's expected sample
    size). ``drift`` is eta = theta_1 sqrt(I_max) (rpact's shift is eta^2); ``inflation_factor``
    is I_max / I_fixed and ``expected_ratio_*`` are E[I] / I_fixed under H0, H1 and
    theta_1 / 2. Absolute information and sample sizes are given when the design states
    ``effect`` and ``n_fixed``; maximum sizes scale with the last fraction.
    """

    design: GroupSequentialDesign
    information_rates: tuple[float, ...]
    observed_looks: int
    efficacy_z: tuple[float, ...]
    efficacy_p: tuple[float, ...]
    alpha_spent: tuple[float, ...]
    futility_z: tuple[float, ...]
    futility_p: tuple[float, ...]
    beta_spent: tuple[float, ...]
    harm_z: tuple[float, ...] | None
    harm_p: tuple[float, ...] | None
    harm_alpha_spent: tuple[float, ...] | None
    harm_crossing_h1: tuple[float, ...] | None
    drift: float
    inflation_factor: float
    power: tuple[float, ...]
    stop_efficacy_h0: tuple[float, ...]
    stop_futility_h0: tuple[float, ...]
    stop_efficacy_h1: tuple[float, ...]
    stop_futility_h1: tuple[float, ...]
    expected_ratio_h0: float
    expected_ratio_h1: float
    expected_ratio_half: float
    max_information: float | None
    expected_information_h0: float | None
    expected_information_h1: float | None
    max_sample_size: float | None
    expected_sample_size_h0: float | None
    expected_sample_size_h1: float | None

    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON-serialisable: tuples become lists and non-finite numbers None."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["design"] = asdict(self.design)
        return _json_safe(out)

    def to_frame(self) -> pd.DataFrame:
        """One row per look with every per-look quantity."""
        per_look = [f.name for f in fields(self)
                    if isinstance(getattr(self, f.name), tuple) and f.name != "design"]
        frame = pd.DataFrame({name: getattr(self, name) for name in per_look})
        frame.insert(0, "look", np.arange(1, len(self.information_rates) + 1))
        return frame

    def repeated_confidence_intervals(self, z: Sequence[float],
                                      information: Sequence[float]) -> pd.DataFrame:
        """Repeated confidence intervals for theta along an observed path (J&T ch. 9).

        Parameters
        ----------
        z
            Observed Z_1, ..., Z_m (m <= K) at the looks held so far.
        information
            Observed information I_k = 1 / SE(theta_hat_k)^2 at those looks.

        Returns
        -------
        pandas.DataFrame
            Columns ``look``, ``z``, ``information``, ``estimate``, ``critical_z``, ``lower``,
            ``upper``; ``attrs["level"]`` is the simultaneous two-sided level 1 - 2 alpha.

        Notes
        -----
        With efficacy bounds c_k computed ignoring futility (so that they hold for every theta),

        .. math:: \\hat\\theta_k \\pm c_k / \\sqrt{I_k}, \\qquad \\hat\\theta_k = Z_k / \\sqrt{I_k},

        cover theta at all looks simultaneously with probability at least 1 - 2 alpha (the
        lower limits alone with 1 - alpha). Compute the boundaries at the observed information
        (:meth:`GroupSequentialDesign.compute` with ``observed_rates``) first.
        """
        zz, info = np.asarray(z, dtype=float), np.asarray(information, dtype=float)
        m = zz.size
        if m == 0 or m > len(self.efficacy_z) or info.size != m:
            raise BoundaryError(f"z, information: give 1 to {len(self.efficacy_z)} looks of "
                                f"equal length, got {zz.size} and {info.size}")
        if not (np.all(np.isfinite(zz)) and np.all(np.isfinite(info)) and np.all(info > 0)):
            raise BoundaryError("z, information: must be finite, information positive")
        crit = np.asarray(self.efficacy_z)
        if self.design.binding_futility:
            rates = np.array(self.information_rates)
            s = np.minimum(rates, 1.0)
            s[-1] = 1.0
            cum = spending(self.design.efficacy, self.design.alpha, s, self.design.gamma_a)
            crit = gi.spending_bounds(rates, cum, None, int(self.design.grid))
        crit = crit[:m]
        root = np.sqrt(info)
        frame = pd.DataFrame({
            "look": np.arange(1, m + 1), "z": zz, "information": info,
            "estimate": zz / root, "critical_z": crit,
            "lower": (zz - crit) / root, "upper": (zz + crit) / root,
        })
        frame.attrs["level"] = 1.0 - 2.0 * self.design.alpha
        return frame
