//! Invoice lines: one per tenant for a calendar month (UTC), with the hosted markup already in
//! the billed cost (bring-your-own-key calls bill nothing), as CSV or JSON.

use chrono::{Datelike, NaiveDate};

use crate::platform::{PlatformDb, PlatformError, TenantUsage};

/// A month, `YYYY-MM`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Month {
    first: NaiveDate,
}

impl Month {
    /// Parses `YYYY-MM`.
    pub fn parse(text: &str) -> Result<Month, String> {
        NaiveDate::parse_from_str(&format!("{text}-01"), "%Y-%m-%d")
            .map(|first| Month { first })
            .map_err(|_| format!("not a month (YYYY-MM): {text:?}"))
    }

    /// Its first day.
    pub fn first_day(&self) -> NaiveDate {
        self.first
    }

    /// Its last day.
    pub fn last_day(&self) -> NaiveDate {
        let (y, m) = if self.first.month() == 12 {
            (self.first.year() + 1, 1)
        } else {
            (self.first.year(), self.first.month() + 1)
        };
        NaiveDate::from_ymd_opt(y, m, 1)
            .and_then(|d| d.pred_opt())
            .unwrap_or(self.first)
    }

    /// `YYYY-MM`.
    pub fn label(&self) -> String {
        self.first.format("%Y-%m").to_string()
    }
}

/// The invoice lines of `month`.
pub async fn invoice_lines(
    db: &PlatformDb,
    month: Month,
) -> Result<Vec<TenantUsage>, PlatformError> {
    db.per_tenant(month.first_day(), month.last_day()).await
}

/// Writes `lines` as CSV with a header row.
pub fn write_csv(month: Month, lines: &[TenantUsage], out: impl std::io::Write) -> csv::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record([
        "month",
        "tenant_id",
        "slug",
        "name",
        "events",
        "input_tokens",
        "cached_tokens",
        "output_tokens",
        "thinking_tokens",
        "base_cost_usd",
        "billed_cost_usd",
    ])?;
    for l in lines {
        w.write_record([
            month.label(),
            l.tenant_id.to_string(),
            l.slug.clone(),
            l.name.clone(),
            l.events.to_string(),
            l.input_tokens.to_string(),
            l.cached_tokens.to_string(),
            l.output_tokens.to_string(),
            l.thinking_tokens.to_string(),
            l.base_cost.to_string(),
            l.billed_cost.to_string(),
        ])?;
    }
    w.flush()?;
    Ok(())
}

/// Writes `lines` as one JSON document.
pub fn write_json(
    month: Month,
    lines: &[TenantUsage],
    out: impl std::io::Write,
) -> serde_json::Result<()> {
    serde_json::to_writer_pretty(
        out,
        &serde_json::json!({ "month": month.label(), "lines": lines }),
    )
}

#[cfg(test)]
mod tests {
    use super::Month;

    #[test]
    fn months() {
        let m = Month::parse("2026-02").unwrap();
        assert_eq!(m.last_day().to_string(), "2026-02-28");
        assert_eq!(
            Month::parse("2026-12").unwrap().last_day().to_string(),
            "2026-12-31"
        );
        assert!(Month::parse("2026-13").is_err());
        assert!(Month::parse("last month").is_err());
    }
}
