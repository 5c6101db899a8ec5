//! Timestamps as microseconds since the Unix epoch (UTC), and their text form for COPY.

use chrono::{Datelike, NaiveDate};

/// Microseconds in a day.
pub const DAY: i64 = 86_400_000_000;
/// Microseconds in an hour.
pub const HOUR: i64 = 3_600_000_000;

/// Midnight (UTC) at the start of `date`, in microseconds since the epoch.
pub fn midnight(date: NaiveDate) -> i64 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("the epoch");
    (date - epoch).num_days() * DAY
}

/// The generated data's time window: the `days` whole UTC days ending with `end` (included).
#[derive(Clone, Copy, Debug)]
pub struct Window {
    /// Midnight at the start of the first day.
    pub start: i64,
    /// Midnight after the last day (excluded).
    pub end: i64,
}

impl Window {
    /// The `days` days ending with `end`.
    pub fn ending(end: NaiveDate, days: u32) -> Window {
        let end = midnight(end) + DAY;
        Window {
            start: end - i64::from(days) * DAY,
            end,
        }
    }

    /// Its duration in microseconds.
    pub fn duration(&self) -> i64 {
        self.end - self.start
    }

    /// The `i`th of `n` instants spread evenly over the window, in increasing order, each moved
    /// later by `jitter` (in [0, 1)) of the gap to the next one: strictly increasing in `i`
    /// whenever the window has at least `n` microseconds.
    pub fn spread(&self, i: u64, n: u64, jitter: f64) -> i64 {
        let n = n.max(1) as i128;
        let len = self.duration() as i128;
        let at = len * i as i128 / n;
        let next = len * (i as i128 + 1) / n;
        let gap = (next - at - 1).max(0) as f64;
        self.start + at as i64 + (gap * jitter) as i64
    }
}

/// Appends `micros` as `YYYY-MM-DD HH:MM:SS.ffffff+00`.
pub fn write_timestamp(buf: &mut Vec<u8>, micros: i64) {
    let days = micros.div_euclid(DAY);
    let mut rest = micros.rem_euclid(DAY);
    let date =
        NaiveDate::from_num_days_from_ce_opt(719_163 + days as i32).expect("a date in range");
    let hour = rest / HOUR;
    rest %= HOUR;
    let minute = rest / 60_000_000;
    rest %= 60_000_000;
    let second = rest / 1_000_000;
    let frac = rest % 1_000_000;
    let year = date.year();
    push_digits(buf, year as i64, 4);
    buf.push(b'-');
    push_digits(buf, i64::from(date.month()), 2);
    buf.push(b'-');
    push_digits(buf, i64::from(date.day()), 2);
    buf.push(b' ');
    push_digits(buf, hour, 2);
    buf.push(b':');
    push_digits(buf, minute, 2);
    buf.push(b':');
    push_digits(buf, second, 2);
    buf.push(b'.');
    push_digits(buf, frac, 6);
    buf.extend_from_slice(b"+00");
}

fn push_digits(buf: &mut Vec<u8>, v: i64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut v = v;
    let mut n = 0;
    while v > 0 || n < width {
        digits[n] = b'0' + (v % 10) as u8;
        v /= 10;
        n += 1;
    }
    buf.extend(digits[..n].iter().rev());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(micros: i64) -> String {
        let mut buf = Vec::new();
        write_timestamp(&mut buf, micros);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn formats_utc_timestamps() {
        assert_eq!(text(0), "1970-01-01 00:00:00.000000+00");
        let day = NaiveDate::from_ymd_opt(2025, 3, 9).unwrap();
        assert_eq!(
            text(midnight(day) + 13 * HOUR + 61_000_007),
            "2025-03-09 13:01:01.000007+00"
        );
    }

    #[test]
    fn spreads_in_increasing_order_inside_the_window() {
        let w = Window::ending(NaiveDate::from_ymd_opt(2025, 1, 31).unwrap(), 31);
        assert_eq!(text(w.start), "2025-01-01 00:00:00.000000+00");
        let mut last = i64::MIN;
        for i in 0..1000 {
            let t = w.spread(i, 1000, 0.999);
            assert!(t > last && t >= w.start && t < w.end);
            last = t;
        }
    }
}
