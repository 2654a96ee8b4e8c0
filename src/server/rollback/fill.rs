//! Filling `dose` from `insulin_short` so legacy clients still see the short dose after the
//! downgrade (issue 33, item 2; an opt-in step). The guide's rule is that `dose` means the short
//! dose: a split row whose `dose` is empty gets its `insulin_short`, never its `insulin_long`, never
//! over a `dose` that is set, and never where the two parts are equal (the row would then read as
//! the forbidden doubled dose). Where both parts are set and differ, the dose shows the short part
//! only: filled, and counted and named apart. "Empty" is NULL: 0 is a dose.
//!
//! Each rule is decided from the row's own values, so the archive (which keeps the values from
//! before the fill) knows which rows were filled, and the roll-forward can undo it.

/// What the fill does with a row, by its values; disjoint and exhaustive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FillRule {
    /// Empty dose, a short part, no long part: the dose becomes the short part.
    FillShortOnly,
    /// Empty dose, both parts, different: the dose becomes the short part (flagged: the long
    /// part is only in the archive and in `insulin_long` until the downgrade).
    FillBothDiffer,
    /// Empty dose, both parts equal: never (it would read as a doubled dose).
    SkipPartsEqual,
    /// Empty dose, only a long part: never (dose is the short dose).
    SkipLongOnly,
    /// A split row whose dose is set (the doubled rows are here): never overwritten.
    SkipDoseSet,
    /// Neither part: not a split row.
    NotSplit,
}

impl FillRule {
    pub const ALL: [FillRule; 6] = [
        FillRule::FillShortOnly,
        FillRule::FillBothDiffer,
        FillRule::SkipPartsEqual,
        FillRule::SkipLongOnly,
        FillRule::SkipDoseSet,
        FillRule::NotSplit,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FillRule::FillShortOnly => "fill_short_only",
            FillRule::FillBothDiffer => "fill_both_differ",
            FillRule::SkipPartsEqual => "skip_parts_equal",
            FillRule::SkipLongOnly => "skip_long_only",
            FillRule::SkipDoseSet => "skip_dose_set",
            FillRule::NotSplit => "not_split",
        }
    }

    /// Whether the fill writes the row's dose.
    pub fn fills(self) -> bool {
        matches!(self, FillRule::FillShortOnly | FillRule::FillBothDiffer)
    }

    /// What it does, as the plan and the step's output say it.
    pub fn describe(self) -> &'static str {
        match self {
            FillRule::FillShortOnly => "short part only, dose empty: dose := insulin_short",
            FillRule::FillBothDiffer => {
                "both parts, different, dose empty: dose := insulin_short (FLAGGED: legacy clients will see the short part only)"
            }
            FillRule::SkipPartsEqual => "both parts equal, dose empty: not filled (it would read as a doubled dose)",
            FillRule::SkipLongOnly => "long part only, dose empty: not filled (dose is never the long dose)",
            FillRule::SkipDoseSet => "dose already set: never overwritten",
            FillRule::NotSplit => "no split part: not a split row",
        }
    }

    /// The rule's predicate over `dose`, `insulin_short`, `insulin_long` (SQL).
    pub fn predicate(self) -> &'static str {
        match self {
            FillRule::FillShortOnly => "(dose IS NULL AND insulin_short IS NOT NULL AND insulin_long IS NULL)",
            FillRule::FillBothDiffer => {
                "(dose IS NULL AND insulin_short IS NOT NULL AND insulin_long IS NOT NULL AND insulin_short <> insulin_long)"
            }
            FillRule::SkipPartsEqual => {
                "(dose IS NULL AND insulin_short IS NOT NULL AND insulin_long IS NOT NULL AND insulin_long = insulin_short)"
            }
            FillRule::SkipLongOnly => "(dose IS NULL AND insulin_short IS NULL AND insulin_long IS NOT NULL)",
            FillRule::SkipDoseSet => "(dose IS NOT NULL AND (insulin_short IS NOT NULL OR insulin_long IS NOT NULL))",
            FillRule::NotSplit => "(insulin_short IS NULL AND insulin_long IS NULL)",
        }
    }

    /// The same decision in Rust (tested against the SQL over every combination).
    pub fn of(dose: Option<f64>, short: Option<f64>, long: Option<f64>) -> FillRule {
        match (dose, short, long) {
            (_, None, None) => FillRule::NotSplit,
            (Some(_), _, _) => FillRule::SkipDoseSet,
            (None, None, Some(_)) => FillRule::SkipLongOnly,
            (None, Some(_), None) => FillRule::FillShortOnly,
            (None, Some(s), Some(l)) if s == l => FillRule::SkipPartsEqual,
            (None, Some(_), Some(_)) => FillRule::FillBothDiffer,
        }
    }
}

/// The rows the fill writes (SQL).
pub fn fills_sql() -> String {
    let rules: Vec<&str> = FillRule::ALL.iter().filter(|r| r.fills()).map(|r| r.predicate()).collect();
    format!("({})", rules.join(" OR "))
}

/// A row's dose after the fill (SQL over its values before).
pub fn filled_dose_sql() -> String {
    format!("CASE WHEN {} THEN insulin_short ELSE dose END", fills_sql())
}

/// One count per rule over `from` (a table or subquery with the three columns), in
/// [`FillRule::ALL`]'s order.
pub fn counts_sql(from: &str) -> String {
    let counts: Vec<String> =
        FillRule::ALL.iter().map(|r| format!("count(*) FILTER (WHERE {})", r.predicate())).collect();
    format!("SELECT ARRAY[{}]::bigint[] FROM {from}", counts.join(", "))
}

/// How many rows each rule touches, by name, as the archive's header records them.
pub fn counts_json(counts: &[i64]) -> serde_json::Value {
    let m: serde_json::Map<String, serde_json::Value> =
        named_counts(counts).iter().map(|(r, n)| (r.name().to_string(), (*n).into())).collect();
    m.into()
}

/// How many rows each rule touches, by name.
pub fn named_counts(counts: &[i64]) -> Vec<(FillRule, i64)> {
    FillRule::ALL.iter().copied().zip(counts.iter().copied()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::categories::{classify, Category};

    const VALUES: [Option<f64>; 4] = [None, Some(0.0), Some(4.0), Some(8.0)];

    #[test]
    fn no_fill_makes_a_doubled_dose_and_none_reads_the_long_part() {
        for dose in VALUES {
            for short in VALUES {
                for long in VALUES {
                    let rule = FillRule::of(dose, short, long);
                    if !rule.fills() {
                        continue;
                    }
                    assert_eq!(dose, None, "only an empty dose is filled");
                    let after = classify(short, short, long);
                    assert_ne!(after, Category::Doubled, "{rule:?} {short:?} {long:?}");
                }
            }
        }
    }

    #[test]
    fn the_rules_fill_only_the_two_fill_rules() {
        let filling: Vec<&str> = FillRule::ALL.iter().filter(|r| r.fills()).map(|r| r.name()).collect();
        assert_eq!(filling, ["fill_short_only", "fill_both_differ"]);
        assert_eq!(FillRule::of(None, Some(4.0), Some(4.0)), FillRule::SkipPartsEqual);
        assert_eq!(FillRule::of(None, None, Some(12.0)), FillRule::SkipLongOnly);
        assert_eq!(FillRule::of(Some(0.0), Some(4.0), None), FillRule::SkipDoseSet, "0 is a dose");
        assert_eq!(FillRule::of(None, Some(4.0), Some(12.0)), FillRule::FillBothDiffer);
    }
}
