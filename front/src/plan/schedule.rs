//! Learning-rate rules as pure functions of the global step.
//!
//! Invariant: the factor depends only on `(schedule, step, total_steps)`, never on the depth or
//! segment, so the LR is continuous across a growth by construction (no restart, no re-warmup).
//! Conventions: warmup ramps `(s+1)/warmup` so step 0 trains; the decay phase covers the last
//! `decay_steps` steps and reaches `floor` exactly at the last step `total - 1`.

use super::spec::{DecayShape, ScheduleSpec};

/// Multiplier of the peak LR at global `step` of a run of `total` steps.
pub fn lr_factor(schedule: &ScheduleSpec, step: u64, total: u64) -> f64 {
    let warm = |w: u64| -> Option<f64> { (step < w).then(|| (step + 1) as f64 / w as f64) };
    match *schedule {
        ScheduleSpec::Constant { warmup_steps } => warm(warmup_steps).unwrap_or(1.0),
        ScheduleSpec::Wsd {
            warmup_steps,
            decay_steps,
            shape,
            floor,
        } => {
            let decay_start = total.saturating_sub(decay_steps);
            if step >= decay_start && decay_steps > 0 {
                let p = (step - decay_start + 1) as f64 / decay_steps as f64;
                floor + (1.0 - floor) * (1.0 - decay_progress(shape, p.min(1.0)))
            } else {
                warm(warmup_steps).unwrap_or(1.0)
            }
        }
        ScheduleSpec::Cosine {
            warmup_steps,
            floor,
        } => {
            if let Some(f) = warm(warmup_steps) {
                return f;
            }
            let span = total.saturating_sub(warmup_steps).max(1);
            let p = ((step - warmup_steps + 1) as f64 / span as f64).min(1.0);
            floor + (1.0 - floor) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
        }
    }
}

/// Fraction of the way from the peak to the floor after progress `p` in [0, 1] of the decay.
fn decay_progress(shape: DecayShape, p: f64) -> f64 {
    match shape {
        DecayShape::Linear => p,
        DecayShape::Cosine => 0.5 * (1.0 - (std::f64::consts::PI * p).cos()),
        DecayShape::Sqrt => p.sqrt(),
    }
}

/// First step of the decay phase (WSD only); `None` for schedules without one.
pub fn decay_start(schedule: &ScheduleSpec, total: u64) -> Option<u64> {
    match *schedule {
        ScheduleSpec::Wsd { decay_steps, .. } if decay_steps > 0 => {
            Some(total.saturating_sub(decay_steps))
        }
        _ => None,
    }
}

/// Share of the run's total LR mass (sum of factors over all steps) that falls on steps
/// `>= from`. The paper's schedule-independent reading: growth still mixes when this stays
/// above about 0.16.
pub fn lr_mass_after(schedule: &ScheduleSpec, from: u64, total: u64) -> f64 {
    let (mut after, mut all) = (0.0, 0.0);
    for s in 0..total {
        let f = lr_factor(schedule, s, total);
        all += f;
        if s >= from {
            after += f;
        }
    }
    if all > 0.0 { after / all } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wsd(warmup: u64, decay: u64) -> ScheduleSpec {
        ScheduleSpec::Wsd {
            warmup_steps: warmup,
            decay_steps: decay,
            shape: DecayShape::Linear,
            floor: 0.0,
        }
    }

    #[test]
    fn wsd_has_three_phases_and_ends_at_floor() {
        let s = wsd(10, 100);
        assert!((lr_factor(&s, 0, 1000) - 0.1).abs() < 1e-12);
        assert_eq!(lr_factor(&s, 9, 1000), 1.0);
        assert_eq!(lr_factor(&s, 500, 1000), 1.0);
        assert_eq!(lr_factor(&s, 899, 1000), 1.0);
        assert!(lr_factor(&s, 900, 1000) < 1.0);
        assert_eq!(lr_factor(&s, 999, 1000), 0.0);
    }

    #[test]
    fn cosine_reaches_floor_at_last_step() {
        let s = ScheduleSpec::Cosine {
            warmup_steps: 0,
            floor: 0.1,
        };
        assert!((lr_factor(&s, 999, 1000) - 0.1).abs() < 1e-9);
        assert!(lr_factor(&s, 0, 1000) > 0.99);
    }

    #[test]
    fn lr_mass_matches_the_papers_reading() {
        // WSD 2%/10% at 0.8T leaves ~0.16 of the LR mass; cosine at 0.5T about 0.5 of steps
        // but much less mass.
        let t = 10_000;
        let m = lr_mass_after(&wsd(200, 1000), 8000, t);
        assert!((m - 0.158).abs() < 0.01, "wsd mass {m}");
        let c = ScheduleSpec::Cosine {
            warmup_steps: 200,
            floor: 0.0,
        };
        let mc = lr_mass_after(&c, 5000, t);
        assert!(mc > 0.15 && mc < 0.25, "cosine mass {mc}");
    }
}
