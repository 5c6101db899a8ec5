//! Latency statistics: exact percentiles over every measured request.

/// The nearest-rank percentile `p` (0 < p <= 100) of `sorted` (ascending): the smallest value
/// that at least `p`% of the values do not exceed. `None` when there are no values.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    assert!(p > 0.0 && p <= 100.0, "percentile {p} out of (0, 100]");
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Latency percentiles of one query, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Latencies {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latencies {
    /// The percentiles of `micros` (sorted in place); `None` when empty.
    pub fn of(micros: &mut [u64]) -> Option<Latencies> {
        micros.sort_unstable();
        let ms = |p: f64| percentile(micros, p).map(|us| us as f64 / 1000.0);
        Some(Latencies {
            p50_ms: ms(50.0)?,
            p95_ms: ms(95.0)?,
            p99_ms: ms(99.0)?,
            max_ms: ms(100.0)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let hundred: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&hundred, 50.0), Some(50));
        assert_eq!(percentile(&hundred, 95.0), Some(95));
        assert_eq!(percentile(&hundred, 99.0), Some(99));
        assert_eq!(percentile(&hundred, 100.0), Some(100));
        assert_eq!(percentile(&hundred, 0.5), Some(1));

        let ten: Vec<u64> = (1..=10).map(|x| x * 10).collect();
        assert_eq!(percentile(&ten, 50.0), Some(50));
        assert_eq!(percentile(&ten, 95.0), Some(100));
        assert_eq!(percentile(&ten, 99.0), Some(100));

        assert_eq!(percentile(&[7], 50.0), Some(7));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn latencies_sort_and_convert_to_milliseconds() {
        let mut micros: Vec<u64> = (1..=1000).rev().map(|x| x * 1000).collect();
        let l = Latencies::of(&mut micros).unwrap();
        assert_eq!(l.p50_ms, 500.0);
        assert_eq!(l.p95_ms, 950.0);
        assert_eq!(l.p99_ms, 990.0);
        assert_eq!(l.max_ms, 1000.0);
        let mut one = vec![1_500];
        assert_eq!(Latencies::of(&mut one).unwrap().p99_ms, 1.5);
        assert_eq!(Latencies::of(&mut []), None);
    }
}
