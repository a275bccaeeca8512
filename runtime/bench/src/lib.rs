//! What warden's benchmarks share: latency samples and the lines they
//! print. The benchmarks themselves are in `benches/` (`cargo bench -p
//! warden-bench`); they live in this crate rather than beside the crates
//! they measure so that a release build of them leaves out LanceDB, which
//! the other crates' test dependencies bring in.

use std::time::Duration;

/// Latencies in µs, sorted.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample(Vec<f64>);

impl Sample {
    /// A sample of `micros` in any order.
    pub fn new(mut micros: Vec<f64>) -> Sample {
        micros.sort_by(f64::total_cmp);
        Sample(micros)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The latency below which a share `p` (0 to 1) of the sample lies;
    /// NaN for an empty sample.
    pub fn percentile(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let at = ((self.0.len() - 1) as f64 * p).round() as usize;
        self.0[at]
    }

    /// `what`, then calls per second over `elapsed` and p50/p99.
    pub fn line(&self, what: &str, elapsed: Duration) -> String {
        format!(
            "{what:<34} {:>9.0} calls/s   p50 {:>8.1} µs   p99 {:>8.1} µs   ({} calls)",
            self.0.len() as f64 / elapsed.as_secs_f64(),
            self.percentile(0.50),
            self.percentile(0.99),
            self.0.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_sorted_sample() {
        let sample = Sample::new((1..=100).rev().map(f64::from).collect());
        assert_eq!(sample.percentile(0.0), 1.0);
        assert_eq!(sample.percentile(0.5), 51.0);
        assert_eq!(sample.percentile(0.99), 99.0);
        assert!(Sample::new(Vec::new()).percentile(0.5).is_nan());
        assert!(
            sample
                .line("x", Duration::from_secs(2))
                .contains("50 calls/s")
        );
    }
}
