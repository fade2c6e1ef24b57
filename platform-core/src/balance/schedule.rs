//! Precomputed selection structures of one priority tier: a weighted sampler for P2C and an
//! interleaved weighted round-robin schedule. Built when the endpoint set changes, so a pick
//! costs O(log n) at most.

use rand::Rng;

/// Weights of 0 (allowed in SRV) still get a little traffic, as RFC 2782 asks.
pub(crate) fn effective_weight(weight: u32) -> u64 {
    u64::from(weight.max(1))
}

/// Samples an index in `0..len` with probability proportional to its weight.
#[derive(Debug)]
pub(crate) enum Sampler {
    /// All weights equal.
    Uniform(usize),
    /// Running sums of the weights.
    Cumulative(Vec<u64>),
}

impl Sampler {
    pub(crate) fn new(weights: &[u64]) -> Self {
        if weights.windows(2).all(|pair| pair[0] == pair[1]) {
            return Sampler::Uniform(weights.len());
        }
        let mut total = 0u64;
        Sampler::Cumulative(
            weights
                .iter()
                .map(|weight| {
                    total += weight;
                    total
                })
                .collect(),
        )
    }

    pub(crate) fn sample(&self, rng: &mut impl Rng) -> usize {
        match self {
            Sampler::Uniform(len) => rng.random_range(0..*len),
            Sampler::Cumulative(sums) => {
                let total = sums.last().copied().unwrap_or(1);
                let point = rng.random_range(0..total);
                sums.partition_point(|sum| *sum <= point)
            }
        }
    }
}

/// Largest weight kept in a round-robin schedule: bounds its length at 64 × endpoints.
const MAX_SCHEDULE_WEIGHT: u64 = 64;

/// An interleaved weighted round-robin order of `0..weights.len()`: round `r` lists every index
/// whose (reduced) weight is above `r`, so heavy endpoints are spread out rather than bunched.
pub(crate) fn round_robin_schedule(weights: &[u64]) -> Vec<u32> {
    let divisor = weights.iter().copied().fold(0, gcd).max(1);
    let max = weights.iter().copied().max().unwrap_or(1) / divisor;
    let reduced: Vec<u64> = weights
        .iter()
        .map(|weight| {
            let weight = weight / divisor;
            if max > MAX_SCHEDULE_WEIGHT {
                (weight * MAX_SCHEDULE_WEIGHT).div_ceil(max).max(1)
            } else {
                weight
            }
        })
        .collect();
    let rounds = reduced.iter().copied().max().unwrap_or(0);
    let mut schedule = Vec::with_capacity(reduced.iter().sum::<u64>() as usize);
    for round in 0..rounds {
        for (index, weight) in reduced.iter().enumerate() {
            if *weight > round {
                schedule.push(index as u32);
            }
        }
    }
    schedule
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_follow_weights() {
        let sampler = Sampler::new(&[1, 3]);
        let mut rng = rand::rng();
        let mut counts = [0u32; 2];
        for _ in 0..40_000 {
            counts[sampler.sample(&mut rng)] += 1;
        }
        let share = f64::from(counts[1]) / 40_000.0;
        assert!((share - 0.75).abs() < 0.02, "{share}");
        assert!(matches!(Sampler::new(&[5, 5, 5]), Sampler::Uniform(3)));
    }

    #[test]
    fn round_robin_schedule_honours_and_spreads_weights() {
        assert_eq!(round_robin_schedule(&[2, 1, 1]), [0, 1, 2, 0]);
        assert_eq!(
            round_robin_schedule(&[100, 100]),
            [0, 1],
            "reduced by the gcd"
        );
        let schedule = round_robin_schedule(&[1000, 1]);
        assert_eq!(schedule.len(), 65, "capped at 64 rounds");
        assert_eq!(schedule.iter().filter(|i| **i == 1).count(), 1);
    }
}
