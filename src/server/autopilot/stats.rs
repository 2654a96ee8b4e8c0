//! The sample-ratio test: do the writes split as the flag says they should?

/// The complementary error function (Numerical Recipes' `erfcc`, relative error under 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// The p-value of a one-sample chi-square goodness-of-fit test (one degree of freedom) of
/// `split` successes out of `total` against the expected share `p`. A share of 0 or 1 admits no
/// other outcome: any write on the wrong side gives 0.
pub fn sample_ratio_p_value(split: f64, total: f64, p: f64) -> f64 {
    if total <= 0.0 {
        return 1.0;
    }
    let legacy = total - split;
    if p <= 0.0 {
        return if split > 0.5 { 0.0 } else { 1.0 };
    }
    if p >= 1.0 {
        return if legacy > 0.5 { 0.0 } else { 1.0 };
    }
    let (e_split, e_legacy) = (total * p, total * (1.0 - p));
    let chi2 = (split - e_split).powi(2) / e_split + (legacy - e_legacy).powi(2) / e_legacy;
    // With one degree of freedom, P(X² > c) = erfc(sqrt(c / 2)).
    erfc((chi2 / 2.0).sqrt())
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, nine coefficients: relative error under 1e-13).
pub fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 − x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let sum = G.iter().enumerate().skip(1).fold(G[0], |acc, (i, g)| acc + g / (x + i as f64));
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// The sample-ratio mismatch test on **users**, anytime-valid: the Dirichlet-multinomial
/// mixture sequential probability ratio test of Lindon & Malek ("Anytime-valid inference for
/// multinomial count data", NeurIPS 2022), here with two arms (split, legacy).
///
/// Under the null hypothesis that each user is split with probability `p`, the Bayes factor
/// against a Dirichlet(`concentration` · (p, 1 − p)) mixture of alternatives is a nonnegative
/// martingale with mean 1, so by Ville's inequality P(it ever reaches 1/α) ≤ α: looking at the
/// growing sample every round keeps the false-alarm rate of a whole step at α or below.
/// Returns ln of the Bayes factor; the test rejects when it reaches ln(1/α).
pub fn srm_log_bayes_factor(split: u64, legacy: u64, p: f64, concentration: f64) -> f64 {
    if !(0.0 < p && p < 1.0) {
        return 0.0;
    }
    let (x1, x2, n) = (split as f64, legacy as f64, (split + legacy) as f64);
    let (a1, a2) = (concentration * p, concentration * (1.0 - p));
    ln_gamma(concentration) - ln_gamma(concentration + n) + ln_gamma(a1 + x1) - ln_gamma(a1) + ln_gamma(a2 + x2)
        - ln_gamma(a2)
        - x1 * p.ln()
        - x2 * (1.0 - p).ln()
}

/// The test's judgement of one look: users split and legacy only, the flag's share `p`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SrmLook {
    pub log_bayes_factor: f64,
    /// The observed split share minus the expected one, in points.
    pub gap_points: f64,
    /// The evidence reached 1/α and the gap is at least the effect floor.
    pub mismatch: bool,
}

/// One look of the sequential test: a mismatch needs both the evidence (Bayes factor ≥ 1/α) and
/// an effect of at least `floor_points` (a smaller gap never fails, however sure).
pub fn srm_look(split: u64, legacy: u64, p: f64, alpha: f64, concentration: f64, floor_points: f64) -> SrmLook {
    let n = (split + legacy) as f64;
    let lbf = srm_log_bayes_factor(split, legacy, p, concentration);
    let gap_points = if n > 0.0 { 100.0 * (split as f64 / n - p) } else { 0.0 };
    SrmLook {
        log_bayes_factor: lbf,
        gap_points,
        mismatch: lbf >= (1.0 / alpha).ln() && gap_points.abs() >= floor_points,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed-seed generator of uniform numbers in [0, 1): the same numbers every run.
    fn xorshift(mut seed: u64) -> impl FnMut() -> f64 {
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    #[test]
    fn erfc_matches_known_values() {
        for (x, want) in
            [(0.0, 1.0), (0.5, 0.479_500_122), (1.0, 0.157_299_207), (2.0, 0.004_677_735), (3.0, 2.209_05e-5)]
        {
            assert!((erfc(x) - want).abs() <= want * 2e-6 + 1e-12, "erfc({x}) = {} not {want}", erfc(x));
        }
    }

    #[test]
    fn a_matching_split_passes_and_a_stale_writer_fails() {
        // 25 % of 10,000 writes split: exactly as expected.
        assert!(sample_ratio_p_value(2500.0, 10_000.0, 0.25) > 0.9);
        // The critical value at p = 0.001 is X² = 10.83.
        let chi2_at = |split: f64| {
            let (n, p) = (10_000.0, 0.25);
            (split - n * p).powi(2) / (n * p) + ((n - split) - n * (1.0 - p)).powi(2) / (n * (1.0 - p))
        };
        assert!((sample_ratio_p_value(2500.0 + 142.5, 10_000.0, 0.25) - 0.001).abs() < 0.0002, "{}", chi2_at(2642.5));
        // Writers that stayed at 5 % while the flag says 25 %.
        assert!(sample_ratio_p_value(500.0, 10_000.0, 0.25) < 1e-12);
        assert_eq!(sample_ratio_p_value(3.0, 100.0, 0.0), 0.0);
        assert_eq!(sample_ratio_p_value(100.0, 100.0, 1.0), 1.0);
    }

    /// False alarms over 1,000 healthy windows at 5 % and 50 %, drawn from a fixed-seed
    /// generator: about one expected at p < 0.001.
    #[test]
    fn healthy_windows_rarely_alarm() {
        let mut uniform = xorshift(0x9E37_79B9_7F4A_7C15);
        for p in [0.05, 0.5] {
            let mut alarms = 0;
            for _ in 0..1000 {
                let n = 2000;
                let split = (0..n).filter(|_| uniform() < p).count() as f64;
                if sample_ratio_p_value(split, n as f64, p) < 0.001 {
                    alarms += 1;
                }
            }
            assert!(alarms <= 4, "{alarms} false alarms in 1,000 healthy windows at {p}");
        }
    }

    #[test]
    fn ln_gamma_matches_factorials() {
        for (n, fact) in [(1.0, 1.0f64), (2.0, 1.0), (5.0, 24.0), (11.0, 3_628_800.0)] {
            assert!((ln_gamma(n) - fact.ln()).abs() < 1e-10, "lnΓ({n})");
        }
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-10);
    }

    /// A fair sample gives little evidence; a stale writer at 20 % of users under a 25 % flag
    /// gives overwhelming evidence at 5,000 users; a 1-point gap never fails (the floor).
    #[test]
    fn the_sequential_test_needs_evidence_and_an_effect() {
        let fair = srm_look(1250, 3750, 0.25, 0.001, 100.0, 2.0);
        assert!(!fair.mismatch && fair.log_bayes_factor < 0.0, "{fair:?}");
        let stale = srm_look(1000, 4000, 0.25, 0.001, 100.0, 2.0);
        assert!(stale.mismatch && stale.log_bayes_factor > 20.0, "{stale:?}");
        let small = srm_look(240_000, 760_000, 0.25, 0.001, 100.0, 2.0);
        assert!(small.log_bayes_factor > 6.9 && !small.mismatch, "{small:?}");
    }

    /// A step of 24 h with 5,000 users bucketed by the flag (each split with probability `p`
    /// unless `stale` users stay legacy), writing at skewed rates (log-normal: a few heavy users,
    /// many light ones, 6 a day at the median), split users `lift` times as often. Looks every
    /// 15 minutes at the distinct users seen since the step began; true when any look fails.
    fn step_alarms(rng: &mut dyn FnMut() -> f64, p: f64, lift: f64, stale: f64) -> bool {
        let mut first: Vec<(f64, bool)> = (0..5000)
            .map(|_| {
                let normal = (-2.0 * rng().max(1e-12).ln()).sqrt() * (std::f64::consts::TAU * rng()).cos();
                let split = rng() < p && rng() >= stale;
                let rate = 6.0 * normal.exp() * if split { lift } else { 1.0 } / 86_400.0;
                (-rng().max(1e-12).ln() / rate, split)
            })
            .collect();
        first.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (mut i, mut split, mut legacy) = (0, 0u64, 0u64);
        for look in 1..=96 {
            let t = f64::from(look) * 900.0;
            while i < first.len() && first[i].0 <= t {
                if first[i].1 {
                    split += 1
                } else {
                    legacy += 1
                }
                i += 1;
            }
            // A mismatch fails from 12 hours of users on (`sample_ratio_min_window_secs`), by at
            // least 2 points (`sample_ratio_floor_points`): the defaults.
            if t >= 12.0 * 3600.0 && split + legacy >= 100 && srm_look(split, legacy, p, 0.001, 100.0, 2.0).mismatch {
                return true;
            }
        }
        false
    }

    /// The figures the README states (printed with `--nocapture`): false pauses per whole plan
    /// (the default plan's partial steps, 5, 10, 25 and 50 %, 24 h each; at 100 % the legacy share
    /// decides) under repeated looks, with and without a split path that makes people write 1.3
    /// times as often, and the power against writers stuck on the legacy path for 5 points.
    #[test]
    fn user_level_sequential_test_false_alarms_and_power_by_simulation() {
        let mut rng = xorshift(0x2545_F491_4F6C_DD1D);
        // 500 plans in every test run; AUTOPILOT_SIM_PLANS=10000 for the README's figure (minutes).
        let plans: usize = std::env::var("AUTOPILOT_SIM_PLANS").ok().and_then(|v| v.parse().ok()).unwrap_or(500);
        let plan_rate = |rng: &mut dyn FnMut() -> f64, lift: f64| {
            let paused =
                (0..plans).filter(|_| [0.05, 0.10, 0.25, 0.50].iter().any(|&p| step_alarms(rng, p, lift, 0.0))).count();
            paused as f64 / plans as f64
        };
        let healthy = plan_rate(&mut rng, 1.0);
        let busier_split = plan_rate(&mut rng, 1.3);
        // 20 % of the users bucketed at 25 % stuck on legacy: 20 % of users split, 5 points.
        let steps = plans.min(1000);
        let caught = (0..steps).filter(|_| step_alarms(&mut rng, 0.25, 1.0, 0.2)).count() as f64 / steps as f64;
        println!(
            "sample ratio on users, 5,000 users, a look every 15 min, {plans} plans of 4 partial 24 h steps: false \
             pauses per plan {:.1} % (same write rates), {:.1} % (split users write 1.3 times as often); a 5-point \
             stale writer at 25 % caught within the step in {:.1} % of {steps} steps",
            100.0 * healthy,
            100.0 * busier_split,
            100.0 * caught
        );
        assert!(healthy <= 0.01, "false pauses per plan {healthy}");
        assert!(busier_split <= 0.01, "false pauses per plan when split users write more {busier_split}");
        assert!(caught >= 0.95, "power {caught}");
    }
}
