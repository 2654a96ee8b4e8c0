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

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut uniform = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
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
}
