//! The record categories of `history_records`, defined once: the Rust rule for one row, and the
//! SQL predicate of each category, used by the counters (overview, guards, rollback), the
//! doubled-record list and the reports.
//!
//! Every row is in exactly one category (the migration guide's rule: `dose` means the short
//! dose, and a `dose` copied into both parts is a defect):
//! doubled (`dose` = `insulin_short` = `insulin_long`), both (both parts, not doubled),
//! short only, long only, legacy only (`dose` alone), empty. The overview's `with_short`,
//! `with_long` and `with_both` are not categories but "has" counters: `with_both` counts every
//! row with both parts, doubled ones included.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Doubled,
    Both,
    ShortOnly,
    LongOnly,
    LegacyOnly,
    Empty,
}

impl Category {
    pub const ALL: [Category; 6] = [
        Category::Doubled,
        Category::Both,
        Category::ShortOnly,
        Category::LongOnly,
        Category::LegacyOnly,
        Category::Empty,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Doubled => "doubled",
            Category::Both => "both",
            Category::ShortOnly => "short_only",
            Category::LongOnly => "long_only",
            Category::LegacyOnly => "legacy_only",
            Category::Empty => "empty",
        }
    }

    /// The SQL condition for a row of this category, true for its rows and for no other's
    /// (each stands on its own; no order is needed). `split_columns`: whether `insulin_short`
    /// and `insulin_long` exist; without them every row with a dose is legacy only.
    pub fn predicate(self, split_columns: bool) -> &'static str {
        if !split_columns {
            return match self {
                Category::LegacyOnly => "dose IS NOT NULL",
                Category::Empty => "dose IS NULL",
                _ => "FALSE",
            };
        }
        match self {
            Category::Doubled => DOUBLED,
            Category::Both => {
                "insulin_short IS NOT NULL AND insulin_long IS NOT NULL \
                 AND NOT (dose IS NOT NULL AND insulin_short = dose AND insulin_long = dose)"
            }
            Category::ShortOnly => "insulin_short IS NOT NULL AND insulin_long IS NULL",
            Category::LongOnly => "insulin_short IS NULL AND insulin_long IS NOT NULL",
            Category::LegacyOnly => "dose IS NOT NULL AND insulin_short IS NULL AND insulin_long IS NULL",
            Category::Empty => "dose IS NULL AND insulin_short IS NULL AND insulin_long IS NULL",
        }
    }

    /// `CASE ... END`: the category's name of each row, for a GROUP BY or a FILTER.
    pub fn case_sql(split_columns: bool) -> String {
        let whens: Vec<String> = Category::ALL
            .iter()
            .map(|c| format!("WHEN {} THEN '{}'", c.predicate(split_columns), c.as_str()))
            .collect();
        format!("CASE {} END", whens.join(" "))
    }
}

/// A `dose` copied into both parts: the defect the guide forbids.
pub const DOUBLED: &str = "dose IS NOT NULL AND insulin_short = dose AND insulin_long = dose";

/// A record written through the split path (either part set): the sample-ratio test's split
/// users are those with one in the window; the others wrote legacy records only.
pub const SPLIT_WRITE: &str = "(insulin_short IS NOT NULL OR insulin_long IS NOT NULL)";

/// The category of one row (what the SQL predicates say, for the worked examples and the tests).
pub fn classify(dose: Option<f64>, short: Option<f64>, long: Option<f64>) -> Category {
    match (dose, short, long) {
        (Some(d), Some(s), Some(l)) if s == d && l == d => Category::Doubled,
        (_, Some(_), Some(_)) => Category::Both,
        (_, Some(_), None) => Category::ShortOnly,
        (_, None, Some(_)) => Category::LongOnly,
        (Some(_), None, None) => Category::LegacyOnly,
        (None, None, None) => Category::Empty,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Evaluates a predicate of this module on one row the way PostgreSQL would, for the few
    /// forms the predicates use (three-valued logic: NULL = x is unknown, NOT unknown is unknown).
    fn holds(predicate: &str, row: (Option<f64>, Option<f64>, Option<f64>)) -> bool {
        let (d, s, l) = row;
        let v = |name: &str| match name {
            "dose" => d,
            "insulin_short" => s,
            "insulin_long" => l,
            other => panic!("unknown column {other}"),
        };
        // conjunctions of: X IS NULL, X IS NOT NULL, X = Y, NOT (conjunction), TRUE/FALSE
        fn conj(p: &str, v: &dyn Fn(&str) -> Option<f64>) -> Option<bool> {
            let p = p.trim();
            if let Some(inner) = p.strip_prefix("NOT (").and_then(|r| r.strip_suffix(')')) {
                return conj(inner, v).map(|b| !b);
            }
            let mut acc = Some(true);
            let mut rest = p;
            loop {
                let (term, tail) = split_and(rest);
                let t = term.trim();
                let val = if let Some(inner) = t.strip_prefix("NOT (").and_then(|r| r.strip_suffix(')')) {
                    conj(inner, v).map(|b| !b)
                } else if t == "FALSE" {
                    Some(false)
                } else if let Some(c) = t.strip_suffix(" IS NOT NULL") {
                    Some(v(c).is_some())
                } else if let Some(c) = t.strip_suffix(" IS NULL") {
                    Some(v(c).is_none())
                } else if let Some((a, b)) = t.split_once(" = ") {
                    match (v(a.trim()), v(b.trim())) {
                        (Some(x), Some(y)) => Some(x == y),
                        _ => None,
                    }
                } else {
                    panic!("unknown term {t}")
                };
                acc = match (acc, val) {
                    (Some(false), _) | (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                };
                match tail {
                    Some(t) => rest = t,
                    None => return acc,
                }
            }
        }
        /// Splits at the first top-level " AND ".
        fn split_and(p: &str) -> (&str, Option<&str>) {
            let mut depth = 0;
            let bytes = p.as_bytes();
            for i in 0..p.len() {
                match bytes[i] {
                    b'(' => depth += 1,
                    b')' => depth -= 1,
                    _ if depth == 0 && p[i..].starts_with(" AND ") => return (&p[..i], Some(&p[i + 5..])),
                    _ => {}
                }
            }
            (p, None)
        }
        conj(predicate, &v) == Some(true)
    }

    #[test]
    fn every_row_is_in_exactly_one_category_and_the_sql_agrees_with_classify() {
        let values = [None, Some(0.0), Some(4.0), Some(8.0)];
        for d in values {
            for s in values {
                for l in values {
                    let row = (d, s, l);
                    let matching: Vec<Category> =
                        Category::ALL.into_iter().filter(|c| holds(c.predicate(true), row)).collect();
                    assert_eq!(matching, vec![classify(d, s, l)], "{row:?}");
                    let without: Vec<Category> =
                        Category::ALL.into_iter().filter(|c| holds(c.predicate(false), row)).collect();
                    let expected = if d.is_some() { Category::LegacyOnly } else { Category::Empty };
                    assert_eq!(without, vec![expected], "{row:?} without the split columns");
                }
            }
        }
        assert!(holds(DOUBLED, (Some(4.0), Some(4.0), Some(4.0))));
        assert!(!holds(DOUBLED, (Some(4.0), Some(4.0), None)));
    }

    #[test]
    fn the_case_names_every_category() {
        let case = Category::case_sql(true);
        for c in Category::ALL {
            assert!(case.contains(&format!("THEN '{}'", c.as_str())), "{case}");
        }
    }
}
