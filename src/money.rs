//! Money as integer micro-dollars: exact sums, never `f64`.

use std::fmt;

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};

/// An amount in US dollars, stored as micro-dollars (1 USD = 1,000,000).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Usd(pub i64);

impl Usd {
    /// Parses a decimal amount such as "12", "0.5" or "0.000125" (at most six decimals).
    pub fn parse(text: &str) -> Result<Usd, String> {
        let text = text.trim();
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let (whole, fraction) = text.split_once('.').unwrap_or((text, "0"));
        if !digits(whole) || !digits(fraction) {
            return Err(format!("not a dollar amount: {text:?}"));
        }
        if fraction.len() > 6 {
            return Err("at most six decimals (micro-dollars)".into());
        }
        let whole: i64 = whole.parse().map_err(|_| "amount too large".to_string())?;
        let fraction: i64 = format!("{fraction:0<6}").parse().unwrap_or(0);
        whole
            .checked_mul(1_000_000)
            .and_then(|w| w.checked_add(fraction))
            .map(Usd)
            .ok_or_else(|| "amount too large".into())
    }
}

impl fmt::Display for Usd {
    /// "12.50", "0.000125": at least two decimals, trailing zeros beyond them trimmed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let mut fraction = format!("{:06}", abs % 1_000_000);
        while fraction.len() > 2 && fraction.ends_with('0') {
            fraction.pop();
        }
        write!(f, "{sign}{}.{fraction}", abs / 1_000_000)
    }
}

/// A dollar amount as a decimal string ("12.50"), exact to the micro-dollar. Input also accepts
/// a whole number of dollars as an Int.
#[Scalar(name = "Usd")]
impl ScalarType for Usd {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => Usd::parse(s).map_err(InputValueError::custom),
            Value::Number(n) => n
                .as_i64()
                .and_then(|d| d.checked_mul(1_000_000))
                .map(Usd)
                .ok_or_else(|| InputValueError::custom("give fractional amounts as a string")),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::Usd;

    #[test]
    fn parses_and_prints_exactly() {
        for (text, micros, shown) in [
            ("12", 12_000_000, "12.00"),
            ("0.5", 500_000, "0.50"),
            ("0.000125", 125, "0.000125"),
            ("1234.567891", 1_234_567_891, "1234.567891"),
        ] {
            assert_eq!(Usd::parse(text), Ok(Usd(micros)), "{text}");
            assert_eq!(Usd(micros).to_string(), shown);
        }
        for bad in [
            "",
            "-1",
            "1.2345678",
            "abc",
            "1.",
            ".5",
            "1e3",
            "99999999999999999999",
        ] {
            assert!(Usd::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
