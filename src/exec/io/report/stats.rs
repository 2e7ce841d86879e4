//! Statistics over seeds: the spread of a figure across seeds, and the paired difference of two
//! runs seed by seed with its Student t interval.
//!
//! Invariants:
//! - every function takes the figures in seed order and ignores none of them: a non-finite
//!   figure (a diverged run) makes the result `None` rather than being dropped, so a spread is
//!   never computed over the seeds that happened to survive;
//! - standard deviations are sample standard deviations (`n - 1`); with one seed there is no
//!   spread and no interval (`sd` is `None`, the interval is `None`);
//! - intervals are two-sided at [`LEVEL`], `mean +/- t(1 - (1 - LEVEL) / 2, n - 1) * sd / sqrt(n)`.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

/// Confidence level of every interval in a report.
pub const LEVEL: f64 = 0.95;

/// A figure across seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub n: usize,
    pub mean: f64,
    /// Sample standard deviation (`None` with one seed).
    pub sd: Option<f64>,
    pub min: f64,
    pub max: f64,
}

/// A mean difference and its two-sided interval at [`LEVEL`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub n: usize,
    pub mean: f64,
    pub low: f64,
    pub high: f64,
}

impl Interval {
    /// The interval covers 0: the data cannot tell the sign of the difference.
    pub fn within_noise(&self) -> bool {
        self.low <= 0.0 && 0.0 <= self.high
    }
}

/// Mean, sample standard deviation, min and max (`None` when empty or any figure is not
/// finite).
pub fn spread(xs: &[f64]) -> Option<Spread> {
    if xs.is_empty() || xs.iter().any(|x| !x.is_finite()) {
        return None;
    }
    let n = xs.len();
    let mean = xs.iter().sum::<f64>() / n as f64;
    let sd = (n > 1).then(|| {
        let ss: f64 = xs.iter().map(|x| (x - mean) * (x - mean)).sum();
        (ss / (n - 1) as f64).sqrt()
    });
    Some(Spread {
        n,
        mean,
        sd,
        min: xs.iter().copied().fold(f64::INFINITY, f64::min),
        max: xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    })
}

/// The `p` quantile of Student's t with `df` degrees of freedom.
pub fn t_quantile(p: f64, df: usize) -> f64 {
    // df >= 1 and a standard location/scale are always valid parameters.
    StudentsT::new(0.0, 1.0, df as f64)
        .map(|t| t.inverse_cdf(p))
        .unwrap_or(f64::NAN)
}

/// The interval at [`LEVEL`] for the mean of `xs` (`None` with fewer than two figures, or a
/// non-finite one).
pub fn mean_interval(xs: &[f64]) -> Option<Interval> {
    let s = spread(xs)?;
    let sd = s.sd?;
    let half = t_quantile(1.0 - (1.0 - LEVEL) / 2.0, s.n - 1) * sd / (s.n as f64).sqrt();
    Some(Interval {
        n: s.n,
        mean: s.mean,
        low: s.mean - half,
        high: s.mean + half,
    })
}

/// The paired difference `a[i] - b[i]` over seeds, with its interval (the slices pair seed by
/// seed and must have the same length).
pub fn paired_interval(a: &[f64], b: &[f64]) -> Option<Interval> {
    if a.len() != b.len() {
        return None;
    }
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    mean_interval(&d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn spread_of_known_figures() {
        // 2, 4, 4, 4, 5, 5, 7, 9: mean 5, sum of squares 32, sample sd sqrt(32 / 7).
        let s = spread(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]).expect("finite");
        assert_eq!((s.n, s.mean, s.min, s.max), (8, 5.0, 2.0, 9.0));
        assert!(close(s.sd.expect("n > 1"), (32.0f64 / 7.0).sqrt(), 1e-12));
        let one = spread(&[1.5]).expect("one figure");
        assert_eq!((one.mean, one.sd, one.min, one.max), (1.5, None, 1.5, 1.5));
        assert_eq!(spread(&[]), None);
        assert_eq!(
            spread(&[1.0, f64::NAN]),
            None,
            "a diverged seed is not dropped"
        );
    }

    #[test]
    fn t_quantiles_match_the_tables() {
        // Two-sided 95% critical values: df 1, 2, 4, 9, 29.
        for (df, t) in [
            (1, 12.7062),
            (2, 4.3027),
            (4, 2.7764),
            (9, 2.2622),
            (29, 2.0452),
        ] {
            let q = t_quantile(0.975, df);
            assert!(close(q, t, 5e-4), "df {df}: {q} against {t}");
        }
    }

    #[test]
    fn paired_interval_of_known_differences() {
        // Differences 0.19, 0.20, 0.21: mean 0.2, sd 0.01, half width 4.3027 * 0.01 / sqrt(3).
        let a = [1.19, 1.7, 2.21];
        let b = [1.0, 1.5, 2.0];
        let i = paired_interval(&a, &b).expect("three seeds");
        let half = 4.302_652_7 * 0.01 / 3f64.sqrt();
        assert_eq!(i.n, 3);
        assert!(close(i.mean, 0.2, 1e-12));
        assert!(close(i.low, 0.2 - half, 1e-6) && close(i.high, 0.2 + half, 1e-6));
        assert!(!i.within_noise(), "{i:?}");
        // Pairing removes the seed effect: the unpaired spread (0.51) would swamp a 0.2
        // difference, the paired one does not.
        assert!(spread(&a).and_then(|s| s.sd).expect("sd") > 0.5);
        // Differences 0.1, 0.2, 0.3 (sd 0.1) leave the sign of a 0.2 mean open with 3 seeds.
        let wide = paired_interval(&[1.1, 1.7, 2.3], &b).expect("three seeds");
        assert!(wide.within_noise(), "{wide:?}");
        // Differences of both signs: within noise.
        let j = paired_interval(&[1.0, 2.1, 3.0], &[1.1, 2.0, 3.05]).expect("three seeds");
        assert!(j.within_noise(), "{j:?}");
        // One seed, or mismatched lengths: no interval.
        assert_eq!(paired_interval(&[1.0], &[0.5]), None);
        assert_eq!(paired_interval(&[1.0, 2.0], &[0.5]), None);
    }
}
