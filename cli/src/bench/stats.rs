//! What a benchmark run counts: a latency histogram with percentiles, and outcome counters.
//! Each worker keeps its own [`Tally`]; they are merged at the end, so recording never contends.

use std::collections::BTreeMap;
use std::time::Duration;

use super::workload::{End, Outcome};

/// Values below this (in µs) get a bucket each; above it every power of two is split into
/// `EXACT_BELOW / 2` buckets, so a bucket is never wider than 1/64 of its values (< 1.6 %).
const EXACT_BELOW: u64 = 128;
/// `log2(EXACT_BELOW / 2)`: the bits of a value kept below its highest set bit.
const SUB_BUCKET_BITS: u32 = 6;
const SUB_BUCKETS: u64 = 1 << SUB_BUCKET_BITS;

/// Latencies in microseconds, in log-linear buckets: constant memory whatever the run length.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// Count per bucket; grown on demand up to the bucket of the largest value seen.
    counts: Vec<u64>,
    total: u64,
    sum_us: u64,
    max_us: u64,
}

impl LatencyHistogram {
    /// Adds one latency.
    pub fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let bucket = bucket_of(us);
        if self.counts.len() <= bucket {
            self.counts.resize(bucket + 1, 0);
        }
        self.counts[bucket] += 1;
        self.total += 1;
        self.sum_us = self.sum_us.saturating_add(us);
        self.max_us = self.max_us.max(us);
    }

    /// Adds every latency of `other`.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
        self.max_us = self.max_us.max(other.max_us);
    }

    /// How many latencies were recorded.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// The latency that `quantile` (0.0–1.0) of the recorded ones do not exceed, in µs: the
    /// top of the bucket holding that rank (never above the true maximum), 0 when empty.
    pub fn quantile_us(&self, quantile: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        // The rank (1-based) of the value asked for: p99 of 1000 values is the 990th.
        let rank = ((quantile.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return highest_in_bucket(bucket).min(self.max_us);
            }
        }
        self.max_us
    }

    /// The largest latency recorded, in µs.
    pub fn max_us(&self) -> u64 {
        self.max_us
    }

    /// The mean latency in µs, 0 when empty.
    pub fn mean_us(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum_us as f64 / self.total as f64
        }
    }
}

fn bucket_of(us: u64) -> usize {
    if us < EXACT_BELOW {
        return us as usize;
    }
    let highest_bit = 63 - us.leading_zeros();
    let shift = highest_bit - SUB_BUCKET_BITS;
    // `us >> shift` lies in SUB_BUCKETS..2*SUB_BUCKETS.
    let sub_bucket = (us >> shift) - SUB_BUCKETS;
    (EXACT_BELOW + u64::from(shift - 1) * SUB_BUCKETS + sub_bucket) as usize
}

fn highest_in_bucket(bucket: usize) -> u64 {
    let bucket = bucket as u64;
    if bucket < EXACT_BELOW {
        return bucket;
    }
    let shift = (bucket - EXACT_BELOW) / SUB_BUCKETS + 1;
    let lowest = ((bucket - EXACT_BELOW) % SUB_BUCKETS + SUB_BUCKETS) << shift;
    lowest.saturating_add((1 << shift) - 1)
}

/// Everything counted over the measured interval.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Latencies (begin to commit answer) of the committed transactions.
    pub committed: LatencyHistogram,
    /// Branch registrations refused with `LockKeyConflict` (each retry counts).
    pub lock_conflicts: u64,
    /// Transactions rolled back because their row locks stayed taken.
    pub rolled_back: u64,
    /// Failed transactions by what failed.
    pub errors: BTreeMap<String, u64>,
}

impl Tally {
    /// Counts one finished transaction.
    pub fn record(&mut self, outcome: Outcome, latency: Duration) {
        self.lock_conflicts += u64::from(outcome.lock_conflicts);
        match outcome.end {
            End::Committed => self.committed.record(latency),
            End::RolledBack => self.rolled_back += 1,
            End::Failed(kind) => *self.errors.entry(kind).or_default() += 1,
        }
    }

    /// Adds everything `other` counted.
    pub fn merge(&mut self, other: &Tally) {
        self.committed.merge(&other.committed);
        self.lock_conflicts += other.lock_conflicts;
        self.rolled_back += other.rolled_back;
        for (kind, count) in &other.errors {
            *self.errors.entry(kind.clone()).or_default() += count;
        }
    }

    /// Failed transactions of every kind.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(values_us: impl IntoIterator<Item = u64>) -> LatencyHistogram {
        let mut histogram = LatencyHistogram::default();
        for us in values_us {
            histogram.record(Duration::from_micros(us));
        }
        histogram
    }

    #[test]
    fn buckets_are_contiguous_and_cover_their_values() {
        let mut previous = 0;
        for us in 0..200_000u64 {
            let bucket = bucket_of(us);
            assert!(bucket == previous || bucket == previous + 1, "gap at {us}");
            assert!(highest_in_bucket(bucket) >= us, "{us} above its bucket");
            if bucket > 0 {
                assert!(highest_in_bucket(bucket - 1) < us, "{us} in two buckets");
            }
            previous = bucket;
        }
    }

    #[test]
    fn bucket_width_stays_under_one_in_sixty_four() {
        for us in [128, 1_000, 65_535, 1 << 20, 123_456_789, u64::MAX / 3] {
            let top = highest_in_bucket(bucket_of(us));
            assert!((top - us) as f64 <= us as f64 / 64.0, "{us} → {top}");
        }
        assert_eq!(highest_in_bucket(bucket_of(u64::MAX)), u64::MAX);
    }

    #[test]
    fn small_values_give_exact_percentiles() {
        let h = histogram(1..=100);
        assert_eq!(h.len(), 100);
        assert_eq!(h.quantile_us(0.5), 50);
        assert_eq!(h.quantile_us(0.99), 99);
        assert_eq!(h.quantile_us(0.999), 100);
        assert_eq!(h.quantile_us(1.0), 100);
        assert_eq!(h.quantile_us(0.0), 1, "the lowest rank is the first value");
        assert_eq!(h.max_us(), 100);
        assert!((h.mean_us() - 50.5).abs() < 1e-9);
    }

    #[test]
    fn large_values_are_within_bucket_precision_and_never_above_the_max() {
        // 1 ms … 1000 ms in 1 ms steps.
        let h = histogram((1..=1000).map(|ms| ms * 1000));
        let p50 = h.quantile_us(0.5);
        assert!(
            (500_000..=500_000 + 500_000 / 64).contains(&p50),
            "p50 {p50}"
        );
        assert_eq!(h.quantile_us(1.0), 1_000_000, "capped at the true maximum");
    }

    #[test]
    fn a_tail_shows_in_p999_but_not_p99() {
        let h = histogram(std::iter::repeat_n(200, 998).chain([50_000, 60_000]));
        assert!(h.quantile_us(0.99) <= 202);
        assert!(h.quantile_us(0.999) >= 50_000);
        assert_eq!(h.max_us(), 60_000);
    }

    #[test]
    fn empty_histogram_reports_zero() {
        let h = LatencyHistogram::default();
        assert_eq!(h.quantile_us(0.99), 0);
        assert_eq!(h.mean_us(), 0.0);
    }

    #[test]
    fn merging_equals_recording_everything_in_one() {
        let mut merged = histogram([5, 700, 90_000]);
        merged.merge(&histogram([3, 1_000_000]));
        assert_eq!(merged, histogram([5, 700, 90_000, 3, 1_000_000]));
    }

    #[test]
    fn tallies_count_outcomes_and_merge() {
        let mut first = Tally::default();
        first.record(
            Outcome {
                end: End::Committed,
                lock_conflicts: 2,
            },
            Duration::from_micros(300),
        );
        first.record(
            Outcome {
                end: End::Failed("commit: CommitRetrying".into()),
                lock_conflicts: 0,
            },
            Duration::from_micros(10),
        );
        let mut second = Tally::default();
        second.record(
            Outcome {
                end: End::RolledBack,
                lock_conflicts: 31,
            },
            Duration::from_millis(400),
        );
        second.record(
            Outcome {
                end: End::Failed("commit: CommitRetrying".into()),
                lock_conflicts: 0,
            },
            Duration::from_micros(10),
        );
        first.merge(&second);
        assert_eq!(first.committed.len(), 1, "only commits are timed");
        assert_eq!(first.lock_conflicts, 33);
        assert_eq!(first.rolled_back, 1);
        assert_eq!(first.errors["commit: CommitRetrying"], 2);
        assert_eq!(first.error_count(), 2);
    }
}
