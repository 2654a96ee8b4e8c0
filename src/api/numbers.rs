//! How numbers read wherever people read them, on the pages and in the charts both: counts with
//! thousands separated by commas ("50,000"), never "50000.0".

/// `digits` (an unsigned run of digits) with a comma between each group of three.
pub fn grouped(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A count: "1,234,567", "-1,500", "0".
pub fn count(n: i64) -> String {
    let digits = grouped(&n.unsigned_abs().to_string());
    if n < 0 {
        format!("-{digits}")
    } else {
        digits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(-1500), "-1,500");
        assert_eq!(count(i64::MIN), "-9,223,372,036,854,775,808");
    }
}
