//! Latency histograms and the small statistics the reports need.
//!
//! Latencies are recorded in microseconds into an HDR histogram (3
//! significant figures, 1 µs to 10 minutes), so percentiles stay exact to
//! 0.1 % however many samples there are, and histograms of several tasks
//! merge without losing anything.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Longest latency recorded exactly; longer ones are clamped to it.
const HIGHEST_MICROS: u64 = 600_000_000;

/// One latency histogram (microseconds).
#[derive(Debug, Clone)]
pub struct Latency {
    hist: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Latency {
        Latency::new()
    }
}

impl Latency {
    pub fn new() -> Latency {
        Latency {
            // Bounds are constants that hdrhistogram accepts.
            hist: Histogram::new_with_bounds(1, HIGHEST_MICROS, 3)
                .unwrap_or_else(|_| unreachable!("valid histogram bounds")),
        }
    }

    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.record_micros(micros);
    }

    /// Records a latency in microseconds; 0 counts as 1 µs and anything
    /// beyond ten minutes as ten minutes.
    pub fn record_micros(&mut self, micros: u64) {
        let value = micros.clamp(1, HIGHEST_MICROS);
        // In bounds by construction.
        let _ = self.hist.record(value);
    }

    pub fn merge(&mut self, other: &Latency) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.hist.add(&other.hist);
    }

    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    pub fn summary(&self) -> LatencySummary {
        if self.hist.is_empty() {
            return LatencySummary::default();
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        LatencySummary {
            count: self.hist.len(),
            mean_ms: self.hist.mean() / 1000.0,
            p50_ms: ms(self.hist.value_at_quantile(0.50)),
            p90_ms: ms(self.hist.value_at_quantile(0.90)),
            p99_ms: ms(self.hist.value_at_quantile(0.99)),
            p999_ms: ms(self.hist.value_at_quantile(0.999)),
            max_ms: ms(self.hist.max()),
        }
    }
}

/// Percentiles of one latency histogram, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

/// The median of some measurements (the mean of the middle two for an even
/// count); `None` when there are none. NaNs are ignored.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    })
}

/// Events per second; 0 when no time passed.
pub fn per_second(count: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// The element-wise median of several latency summaries (each percentile
/// on its own). Counts are summed: they say how many samples stand behind
/// the figures.
pub fn median_summary(summaries: &[LatencySummary]) -> LatencySummary {
    let pick = |f: fn(&LatencySummary) -> f64| {
        median(&summaries.iter().map(f).collect::<Vec<_>>()).unwrap_or(0.0)
    };
    LatencySummary {
        count: summaries.iter().map(|s| s.count).sum(),
        mean_ms: pick(|s| s.mean_ms),
        p50_ms: pick(|s| s.p50_ms),
        p90_ms: pick(|s| s.p90_ms),
        p99_ms: pick(|s| s.p99_ms),
        p999_ms: pick(|s| s.p999_ms),
        max_ms: pick(|s| s.max_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut latency = Latency::new();
        // 1 ms .. 100 ms, one each.
        for ms in 1..=100u64 {
            latency.record(Duration::from_millis(ms));
        }
        let summary = latency.summary();
        assert_eq!(summary.count, 100);
        assert!((summary.p50_ms - 50.0).abs() < 0.1, "{summary:?}");
        assert!((summary.p90_ms - 90.0).abs() < 0.1, "{summary:?}");
        assert!((summary.p99_ms - 99.0).abs() < 0.1, "{summary:?}");
        assert!((summary.max_ms - 100.0).abs() < 0.1, "{summary:?}");
        assert!((summary.mean_ms - 50.5).abs() < 0.1, "{summary:?}");
    }

    #[test]
    fn merging_adds_the_samples() {
        let mut a = Latency::new();
        let mut b = Latency::new();
        a.record_micros(1_000);
        b.record_micros(3_000);
        b.record_micros(3_000);
        a.merge(&b);
        assert_eq!(a.count(), 3);
        assert!((a.summary().p50_ms - 3.0).abs() < 0.01);
        assert!((a.summary().max_ms - 3.0).abs() < 0.01);
    }

    #[test]
    fn extremes_are_clamped_not_dropped() {
        let mut latency = Latency::new();
        latency.record_micros(0);
        latency.record(Duration::from_secs(3600));
        assert_eq!(latency.count(), 2);
        assert!(latency.summary().max_ms >= 599_000.0);
    }

    #[test]
    fn an_empty_histogram_summarises_to_zeros() {
        assert_eq!(Latency::new().summary(), LatencySummary::default());
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 5.0]), Some(5.0));
    }

    #[test]
    fn rate_per_second() {
        assert_eq!(per_second(500, Duration::from_millis(250)), 2000.0);
        assert_eq!(per_second(5, Duration::ZERO), 0.0);
    }

    #[test]
    fn median_summary_takes_each_percentile_on_its_own() {
        let s = |p50, p99| LatencySummary {
            count: 10,
            p50_ms: p50,
            p99_ms: p99,
            ..LatencySummary::default()
        };
        let m = median_summary(&[s(1.0, 30.0), s(2.0, 10.0), s(3.0, 20.0)]);
        assert_eq!(m.count, 30);
        assert_eq!(m.p50_ms, 2.0);
        assert_eq!(m.p99_ms, 20.0);
    }
}
