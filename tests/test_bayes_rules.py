"""Bayesian go/no-go rules for a normal effect (designs.bayes_rules).

Expectations are hand-worked (arithmetic in the comments) or computed directly with
scipy.stats.norm, never with the function under test. Monte Carlo checks are seeded and use
four Monte Carlo standard errors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from designs.bayes_rules import (
    CONSIDER,
    GO,
    NO_GO,
    TvLrvRule,
    analytic_probability_threshold,
    calibrate_probability_threshold,
    effect_from_arms,
    effect_std_error,
    normal_update,
    posterior_probability,
    predictive_probability,
    predictive_probability_mc,
    success_probability,
    tv_lrv_decision,
    tv_lrv_operating_characteristics,
)

# PHQ-9 style rule: lower is better; LRV a 2-point, TV a 5-point reduction. Cut-offs are
# GNGTools' defaults (tau.lrv 0.8, tau.tv 0.1, tau.ng 0.65).
PHQ9 = TvLrvRule(lrv=-2.0, tv=-5.0, p_lrv=0.8, p_tv=0.1, p_nogo=0.65, direction="lower")


# ---------------------------------------------------------------------------- conjugate update
def test_conjugate_update_hand_worked():
    # Prior N(0, 2^2): precision 1/4. Data y = -3, SE 1: precision 1.
    # Posterior precision 1.25 -> variance 0.8, SD 0.894427191; mean 0.8 * (0 + -3) = -2.4.
    post = normal_update(-3.0, 1.0, prior_mean=0.0, prior_sd=2.0)
    assert post.mean == pytest.approx(-2.4, abs=1e-12)
    assert post.sd == pytest.approx(0.894427191, abs=1e-9)


def test_conjugate_update_hand_worked_nonzero_prior_mean():
    # Prior N(1, 1): precision 1. Data y = 3, SE 0.5: precision 4.
    # Posterior precision 5 -> variance 0.2, SD 0.447213595; mean (1*1 + 4*3) / 5 = 2.6.
    post = normal_update(3.0, 0.5, prior_mean=1.0, prior_sd=1.0)
    assert post.mean == pytest.approx(2.6, abs=1e-12)
    assert post.sd == pytest.approx(0.447213595, abs=1e-9)


def test_flat_prior_returns_the_likelihood():
    post = normal_update(-1.7, 0.6)
    assert post.mean == pytest.approx(-1.7, abs=1e-12)
    assert post.sd == pytest.approx(0.6, abs=1e-12)


def test_update_is_vectorised():
    y = np.array([-3.0, 3.0, 0.5])
    se = np.array([1.0, 0.5, 2.0])
    post = normal_update(y, se, prior_mean=np.array([0.0, 1.0, 0.0]),
                         prior_sd=np.array([2.0, 1.0, np.inf]))
    np.testing.assert_allclose(post.mean, [-2.4, 2.6, 0.5], atol=1e-12)
    np.testing.assert_allclose(post.sd, [math.sqrt(0.8), math.sqrt(0.2), 2.0], atol=1e-12)


def test_effect_from_arm_summaries():
    # PHQ-9 8.0 vs 11.0, SD 5, 50 per arm: -3, SE sqrt(25/50 + 25/50) = 1.
    est, se = effect_from_arms(8.0, 11.0, 5.0, 50, 50)
    assert est == pytest.approx(-3.0, abs=1e-12)
    assert se == pytest.approx(1.0, abs=1e-12)
    # Unequal SDs and sizes: 16/32 + 36/72 = 0.5 + 0.5 -> SE 1.
    assert effect_std_error(4.0, 32, 72, sd_control=6.0) == pytest.approx(1.0, abs=1e-12)


# ---------------------------------------------------------------------------- posterior
def test_posterior_probability_against_scipy():
    mean = np.array([-2.4, 0.3, 1.5, -0.2])
    sd = np.array([0.894427191, 1.0, 0.4, 2.5])
    delta = np.array([0.0, -1.0, 2.0, 0.5])
    lower = posterior_probability(mean, sd, delta, direction="lower")
    higher = posterior_probability(mean, sd, delta, direction="higher")
    np.testing.assert_allclose(lower, stats.norm.cdf(delta, loc=mean, scale=sd), atol=1e-12)
    np.testing.assert_allclose(higher, stats.norm.sf(delta, loc=mean, scale=sd), atol=1e-12)


def test_posterior_probability_of_worked_update():
    # P(theta < 0 | N(-2.4, 0.8)) = Phi(2.4 / 0.894427191) = Phi(2.683282) = 0.996355.
    post = normal_update(-3.0, 1.0, prior_mean=0.0, prior_sd=2.0)
    p = posterior_probability(*post, threshold=0.0, direction="lower")
    assert p == pytest.approx(stats.norm.cdf(0.0, loc=-2.4, scale=math.sqrt(0.8)), abs=1e-12)
    assert p == pytest.approx(0.996355, abs=1e-6)


# ---------------------------------------------------------------------------- predictive
def test_predictive_probability_matches_monte_carlo():
    # Four interim situations per call (PP from 0.003 to 0.78), both directions, informative
    # and flat priors.
    est = np.array([-1.5, -0.4, 0.8, 2.0])
    se = np.array([1.0, 0.8, 1.2, 1.5])
    final = np.array([0.5, 0.4, 0.7, 0.6])
    delta = np.array([0.0, 0.0, -0.5, 1.0])
    for direction, prior_sd in (("lower", 3.0), ("higher", 3.0), ("lower", np.inf)):
        kw = dict(prior_mean=0.5, prior_sd=prior_sd, direction=direction)
        exact = predictive_probability(est, se, final, delta, 0.95, **kw)
        mc = predictive_probability_mc(est, se, final, delta, 0.95, n_draws=100_000, seed=11,
                                       **kw)
        tol = 4 * np.sqrt(np.maximum(exact * (1 - exact), 1e-4) / mc.n_draws)
        assert np.all(np.abs(exact - mc.estimate) <= tol), (direction, exact, mc.estimate)


def test_predictive_probability_flat_prior_is_predictive_power():
    # Flat prior, delta = 0, alpha = 0.025: PP = Phi((Z1 - z sqrt(t)) / sqrt(1 - t)),
    # Spiegelhalter, Abrams & Myles (2004) section 6.6. Interim SE 1, final SE 0.6:
    # t = (1/1) / (1/0.36) = 0.36; Z1 = 1.2 -> (1.2 - 1.959964 * 0.6) / 0.8 = 0.030027.
    z = stats.norm.ppf(0.975)
    expected = stats.norm.cdf((1.2 - z * 0.6) / 0.8)
    assert predictive_probability(1.2, 1.0, 0.6, 0.0, 0.975) == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(0.511977, abs=1e-6)
    # Lower is better: the mirror image gives the same number.
    pp_lower = predictive_probability(-1.2, 1.0, 0.6, 0.0, 0.975, direction="lower")
    assert pp_lower == pytest.approx(expected, abs=1e-12)


def test_predictive_probability_limits_at_final_information():
    # Interim posterior N(-2.4, 0.8): P(theta < 0) = 0.996 meets 0.975 -> PP -> 1;
    # it fails 0.999 -> PP -> 0.
    kw = dict(prior_mean=0.0, prior_sd=2.0, direction="lower")
    assert predictive_probability(-3.0, 1.0, 1.0, 0.0, 0.975, **kw) == 1.0
    assert predictive_probability(-3.0, 1.0, 1.0, 0.0, 0.999, **kw) == 0.0
    # Approaching the final information continuously.
    almost = 1.0 / math.sqrt(1.0 + 1e-6)
    assert predictive_probability(-3.0, 1.0, almost, 0.0, 0.975, **kw) > 1 - 1e-6
    assert predictive_probability(-3.0, 1.0, almost, 0.0, 0.999, **kw) < 1e-6
    # And the Monte Carlo version agrees when no data are left.
    assert predictive_probability_mc(-3.0, 1.0, 1.0, 0.0, 0.975, n_draws=1000, **kw).estimate == 1


def test_predictive_probability_with_unlimited_final_information():
    # As I_F -> infinity the final posterior is a point mass at theta, so PP -> P(theta beyond
    # delta | interim) = Phi(2.4 / sqrt(0.8)) for the worked update.
    pp = predictive_probability(-3.0, 1.0, 1e-5, 0.0, 0.975, prior_mean=0.0, prior_sd=2.0,
                                direction="lower")
    assert pp == pytest.approx(stats.norm.cdf(2.4 / math.sqrt(0.8)), abs=1e-4)


def test_predictive_probability_increases_with_interim_benefit():
    est = np.linspace(-4.0, 2.0, 25)
    pp = predictive_probability(est, 1.0, 0.5, 0.0, 0.975, direction="lower")
    assert np.all(np.diff(pp) < 0)


def test_predictive_probability_rejects_final_se_above_interim():
    with pytest.raises(ValueError, match="final_std_error"):
        predictive_probability(0.0, 0.5, 0.6)


# ---------------------------------------------------------------------------- TV / LRV
@pytest.mark.parametrize(
    ("mean", "sd", "zone"),
    [
        # P(<-2) = Phi(3) = 0.99865 >= 0.8; P(<-5) = 0.5 >= 0.1 -> GO.
        (-5.0, 1.0, GO),
        # P(<-2) = Phi(0.5) = 0.6915: < 0.8, not < 0.65; P(<-5) = Phi(-2.5) = 0.0062 -> CONSIDER.
        (-2.5, 1.0, CONSIDER),
        # P(<-2) = Phi(-1) = 0.1587 < 0.65; P(<-5) = Phi(-4) = 3.2e-5 < 0.1 -> NO-GO.
        (-1.0, 1.0, NO_GO),
        # Wide: P(<-2) = Phi(0.75) = 0.7734 < 0.8; P(<-5) = Phi(-0.75) = 0.2266 -> CONSIDER.
        (-3.5, 2.0, CONSIDER),
        # P(<-2) = Phi(-0.25) = 0.4013 < 0.65 but P(<-5) = Phi(-1) = 0.1587 >= 0.1: TV still
        # plausible, so not NO-GO -> CONSIDER.
        (-1.0, 4.0, CONSIDER),
        # P(<-2) = Phi(1.5) = 0.9332 >= 0.8 but P(<-5) = Phi(-1.5) = 0.0668 < 0.1 -> CONSIDER.
        (-3.5, 1.0, CONSIDER),
    ],
)
def test_tv_lrv_zones_worked_cases(mean, sd, zone):
    decision = tv_lrv_decision(mean, sd, PHQ9)
    assert decision.zone == zone
    assert decision.p_beyond_lrv == pytest.approx(stats.norm.cdf(-2.0, mean, sd), abs=1e-12)
    assert decision.p_beyond_tv == pytest.approx(stats.norm.cdf(-5.0, mean, sd), abs=1e-12)
    # Higher is better: the mirror image of the same rule gives the same zone.
    mirror = TvLrvRule(lrv=2.0, tv=5.0, p_lrv=0.8, p_tv=0.1, p_nogo=0.65, direction="higher")
    assert tv_lrv_decision(-mean, sd, mirror).zone == zone


def test_tv_lrv_decision_is_vectorised():
    d = tv_lrv_decision([-5.0, -2.5, -1.0], 1.0, PHQ9)
    assert list(d.zone) == [GO, CONSIDER, NO_GO]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(lrv=-2.0, tv=-1.0), "tv"),  # lower is better: TV -1 is short of LRV -2
        (dict(p_nogo=0.9), "p_nogo"),
        (dict(p_tv=1.0), "p_tv"),
        (dict(direction="down"), "direction"),
    ],
)
def test_tv_lrv_rule_validation(kwargs, message):
    spec = dict(lrv=-2.0, tv=-5.0, p_lrv=0.8, p_tv=0.1, p_nogo=0.65, direction="lower")
    with pytest.raises(ValueError, match=message):
        TvLrvRule(**{**spec, **kwargs})


def test_tv_lrv_operating_characteristics_match_simulated_decisions():
    theta = np.array([1.0, -1.0, -2.0, -3.5, -5.0, -7.0])
    se, prior = 1.3, dict(prior_mean=0.0, prior_sd=4.0)
    oc = tv_lrv_operating_characteristics(theta, se, PHQ9, **prior)
    np.testing.assert_allclose(oc.go + oc.consider + oc.no_go, 1.0, atol=1e-12)
    assert np.all(np.diff(oc.go) > 0) and np.all(np.diff(oc.no_go) < 0)
    # Simulate estimates, apply the decision function, count the zones.
    n = 40_000
    y = theta + se * np.random.default_rng(5).standard_normal((n, theta.size))
    zone = tv_lrv_decision(*normal_update(y, se, **prior), PHQ9).zone
    for name, p in (("go", oc.go), ("consider", oc.consider), ("no_go", oc.no_go)):
        sim = (zone == name).mean(axis=0)
        mc_se = np.sqrt(np.maximum(p * (1 - p), 1e-4) / n)
        assert np.all(np.abs(sim - p) <= 4 * mc_se), (name, sim, p)


def test_success_probability_is_alpha_at_null_under_flat_prior():
    # Flat prior, theta = delta: P(P(theta > delta | y) >= 0.975) = P(Z >= 1.96) = 0.025.
    assert success_probability(0.0, 0.7, 0.0, 0.975) == pytest.approx(0.025, abs=1e-12)
    # Power at theta = 2.8 SE: Phi(2.8 - 1.959964) = 0.79955 (the familiar 80% design).
    power = success_probability(-2.8 * 0.7, 0.7, 0.0, 0.975, direction="lower")
    assert power == pytest.approx(stats.norm.cdf(2.8 - stats.norm.ppf(0.975)), abs=1e-12)


# ---------------------------------------------------------------------------- calibration
def test_calibrated_threshold_flat_prior_is_one_minus_alpha():
    alpha, n_sim = 0.025, 200_000
    cal = calibrate_probability_threshold(alpha, np.array([1.0, 0.4]), n_sim=n_sim, seed=3)
    assert np.all(np.abs(cal.probability - (1 - alpha)) <= 4 * cal.mc_se)
    # Under the flat prior the posterior probability is Uniform(0, 1) at the null, so the MC SE
    # of its quantile is sqrt(alpha (1 - alpha) / n) = 3.49e-4.
    np.testing.assert_allclose(cal.mc_se, math.sqrt(alpha * (1 - alpha) / n_sim), rtol=0.15)
    # The exact answer.
    assert analytic_probability_threshold(alpha, 1.0) == pytest.approx(1 - alpha, abs=1e-12)
    assert analytic_probability_threshold(alpha, 1.0, direction="lower") == pytest.approx(
        1 - alpha, abs=1e-12)


def test_calibrated_threshold_informative_prior_matches_exact_value():
    # Sceptical prior N(0, 1.5^2), SE 1, lower is better. y* = -1.959964;
    # posterior precision 1/2.25 + 1 = 1.444444 -> mean -1.959964 / 1.444444 = -1.356898,
    # SD 0.832050; gamma = Phi(1.356898 / 0.832050) = Phi(1.630789) = 0.948533.
    kw = dict(prior_mean=0.0, prior_sd=1.5, direction="lower")
    exact = analytic_probability_threshold(0.025, 1.0, **kw)
    assert exact == pytest.approx(0.948533, abs=1e-6)
    cal = calibrate_probability_threshold(0.025, 1.0, n_sim=100_000, seed=9, **kw)
    assert abs(cal.probability - exact) <= 4 * cal.mc_se
    # The calibrated rule has type-I error alpha, read off the analytic operating characteristic.
    assert success_probability(0.0, 1.0, 0.0, exact, **kw) == pytest.approx(0.025, abs=1e-9)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: normal_update(0.0, -1.0), "std_error"),
        (lambda: normal_update(0.0, 1.0, prior_sd=0.0), "prior_sd"),
        (lambda: posterior_probability(0.0, 1.0, direction="up"), "direction"),
        (lambda: predictive_probability(0.0, 1.0, 0.5, probability=1.0), "probability"),
        (lambda: calibrate_probability_threshold(0.0, 1.0), "alpha"),
    ],
)
def test_invalid_inputs_name_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()
