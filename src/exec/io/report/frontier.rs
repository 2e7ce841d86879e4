//! Speedup at matched loss: how much less compute a run needed than the reference recipe needs
//! to reach the same final validation loss.
//!
//! The reference recipe trained to several lengths, each with its own full schedule (its decay
//! included), gives final loss against compute: the frontier. A run's final loss is located on
//! it, log-linear in compute between the two frontier points around it, and that compute
//! divided by the run's is its speedup. The run's own curve is never compared with the
//! reference's mid-run points: under WSD those are undecayed, and a decayed loss against an
//! undecayed one inflates the figure several times over.
//!
//! Invariants:
//! - frontier points are taken in order of length (steps), and every convention (three FLOP
//!   counts and wall-clock seconds) is interpolated between the same two points;
//! - the first crossing from the shortest point on is used: the least compute at which the
//!   frontier reaches the loss;
//! - never extrapolated: below the frontier's lowest loss the figure is a lower bound
//!   (`bound`, the lowest point's compute over the run's); above its highest loss, or with no
//!   frontier, there is no figure.

use serde::{Deserialize, Serialize};

use crate::plan::flops::Flops;

/// One frontier point: a length of the reference recipe, trained with its own schedule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    pub steps: u64,
    pub flops: Flops,
    pub wall_s: f64,
    pub loss: f64,
}

/// The compute the reference needs to reach a run's loss, over the run's compute.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Speedup {
    pub exact: f64,
    pub six_n_embedding: f64,
    pub six_n_non_embedding: f64,
    pub wall: f64,
    /// The run ended below every frontier point: each figure is a lower bound (`>=`).
    pub bound: bool,
}

/// Where a run's final loss falls on the frontier.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Matched {
    Speedup(Speedup),
    /// Higher than every frontier point: the reference reaches it before its shortest length.
    Above,
    /// Not enough finite points (fewer than two, or a diverged run).
    Undefined,
}

/// The four compute figures of a point, in a fixed order.
fn compute(p: &Point) -> [f64; 4] {
    [
        p.flops.exact,
        p.flops.six_n_embedding,
        p.flops.six_n_non_embedding,
        p.wall_s,
    ]
}

fn speedup(reference: [f64; 4], run: [f64; 4], bound: bool) -> Speedup {
    let ratio = |i: usize| reference[i] / run[i];
    Speedup {
        exact: ratio(0),
        six_n_embedding: ratio(1),
        six_n_non_embedding: ratio(2),
        wall: ratio(3),
        bound,
    }
}

/// The speedup at matched loss of a run that used `run` compute (`flops`, `wall_s`) to reach
/// `run.loss`, against `frontier` (any order; sorted by steps here).
pub fn matched(frontier: &[Point], run: &Point) -> Matched {
    let mut points: Vec<Point> = frontier
        .iter()
        .filter(|p| p.loss.is_finite() && compute(p).iter().all(|c| *c > 0.0))
        .copied()
        .collect();
    if points.len() < 2 || points.len() < frontier.len() || !run.loss.is_finite() {
        return Matched::Undefined;
    }
    points.sort_by_key(|p| p.steps);
    let loss = run.loss;
    let own = compute(run);
    for w in points.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        if a.loss == loss {
            return Matched::Speedup(speedup(compute(a), own, false));
        }
        if (a.loss - loss) * (b.loss - loss) <= 0.0 {
            // Log-linear in compute: loss falls by equal steps per doubling of compute.
            let t = (a.loss - loss) / (a.loss - b.loss);
            let (ca, cb) = (compute(a), compute(b));
            let at = std::array::from_fn(|i| (ca[i].ln() + t * (cb[i].ln() - ca[i].ln())).exp());
            return Matched::Speedup(speedup(at, own, false));
        }
    }
    let lowest = points
        .iter()
        .min_by(|a, b| a.loss.total_cmp(&b.loss))
        .copied();
    match lowest {
        Some(p) if loss < p.loss => Matched::Speedup(speedup(compute(&p), own, true)),
        _ => Matched::Above,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A point whose FLOPs in every convention are `c`, `2c`, `c / 2` and wall `10c` s.
    fn p(steps: u64, c: f64, loss: f64) -> Point {
        Point {
            steps,
            flops: Flops {
                exact: c,
                six_n_embedding: 2.0 * c,
                six_n_non_embedding: 0.5 * c,
            },
            wall_s: 10.0 * c,
            loss,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * b.abs().max(1.0)
    }

    /// The pilot's three-point frontier: 1,400, 2,400 and 4,000 steps.
    fn pilot() -> Vec<Point> {
        vec![
            p(4000, 69.7, 1.677),
            p(1400, 24.4, 1.876),
            p(2400, 41.8, 1.746),
        ]
    }

    #[test]
    fn a_loss_on_a_frontier_point_is_that_points_compute() {
        let Matched::Speedup(s) = matched(&pilot(), &p(0, 20.9, 1.746)) else {
            panic!("on the frontier")
        };
        assert!(close(s.exact, 2.0) && close(s.six_n_embedding, 2.0) && close(s.wall, 2.0));
        assert!(!s.bound);
    }

    #[test]
    fn between_two_points_it_is_log_linear_in_compute() {
        // Halfway in loss between 1.746 (41.8) and 1.677 (69.7): the geometric mean.
        let Matched::Speedup(s) = matched(&pilot(), &p(0, 10.0, (1.746 + 1.677) / 2.0)) else {
            panic!("inside")
        };
        let expected = (41.8f64 * 69.7).sqrt() / 10.0;
        assert!(close(s.exact, expected), "{} vs {expected}", s.exact);
        assert!(close(s.six_n_non_embedding, expected) && close(s.wall, expected));
        // The pilot's 1 -> 6 copy run: 24.3T to 1.778, against a frontier at 24.4T..41.8T.
        let Matched::Speedup(c) = matched(&pilot(), &p(0, 24.3, 1.778)) else {
            panic!("inside")
        };
        let t = (1.876 - 1.778) / (1.876 - 1.746);
        let at = (24.4f64.ln() + t * (41.8f64.ln() - 24.4f64.ln())).exp();
        assert!(close(c.exact, at / 24.3));
        assert!((c.exact - 1.51).abs() < 0.01, "{}", c.exact);
    }

    #[test]
    fn below_the_lowest_point_is_a_lower_bound() {
        let Matched::Speedup(s) = matched(&pilot(), &p(0, 35.0, 1.60)) else {
            panic!("below")
        };
        assert!(s.bound);
        assert!(close(s.exact, 69.7 / 35.0));
    }

    #[test]
    fn above_the_highest_point_is_never_extrapolated() {
        assert_eq!(matched(&pilot(), &p(0, 5.0, 2.1)), Matched::Above);
    }

    #[test]
    fn no_frontier_or_a_diverged_point_gives_nothing() {
        assert_eq!(matched(&[], &p(0, 5.0, 1.8)), Matched::Undefined);
        assert_eq!(
            matched(&[p(4000, 69.7, 1.677)], &p(0, 5.0, 1.8)),
            Matched::Undefined
        );
        let mut broken = pilot();
        broken[1].loss = f64::NAN;
        assert_eq!(matched(&broken, &p(0, 5.0, 1.8)), Matched::Undefined);
        assert_eq!(matched(&pilot(), &p(0, 5.0, f64::NAN)), Matched::Undefined);
    }

    #[test]
    fn a_noisy_frontier_uses_its_first_crossing() {
        // The middle point is lower than the longest: 1.70 is first reached between the first
        // two points, not between the last two.
        let f = vec![p(1000, 10.0, 1.9), p(2000, 20.0, 1.65), p(4000, 40.0, 1.68)];
        let Matched::Speedup(s) = matched(&f, &p(0, 5.0, 1.70)) else {
            panic!("inside")
        };
        let t = (1.9 - 1.70) / (1.9 - 1.65);
        let at = (10f64.ln() + t * (20f64.ln() - 10f64.ln())).exp();
        assert!(close(s.exact, at / 5.0) && !s.bound);
        // Below every point: bounded by the lowest one, not the longest.
        let Matched::Speedup(b) = matched(&f, &p(0, 5.0, 1.6)) else {
            panic!("below")
        };
        assert!(b.bound && close(b.exact, 4.0));
    }
}
