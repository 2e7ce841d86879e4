//! Vector math for the CPU kernels: `exp` and the normal CDF written branch-free in plain f32
//! so that loops over slices vectorize, and [`simd_fn`], which compiles a loop body with
//! AVX2 when the CPU has it (the binary itself targets baseline x86-64).
//!
//! Invariants:
//! - [`exp`] has a relative error below 2e-7 on [-87, 88], returns 0 below -87.3 and is never
//!   NaN for finite input;
//! - [`phi_cdf`] (the standard normal CDF, through the Chebyshev fit of `erfc` of Numerical
//!   Recipes, fractional error below 1.2e-7) has a relative error below 2e-6 on
//!   `[-4, inf)`, below 3e-5 on `[-12, -4)` (rounding `x^2 / 2` in f32 before the
//!   exponential), and is within 1e-36 of the truth further out;
//! - the matrix products of the kernels go through the `gemm` crate, which picks its own
//!   SIMD microkernel at run time; only elementwise code goes through [`simd_fn`].

/// Defines `fn NAME(args) { body }` compiled twice, for baseline x86-64 and for AVX2 + FMA,
/// and picks the AVX2 build at run time when the CPU has it. The body should be loops over
/// slices calling `#[inline(always)]` math: inlined into the AVX2 build, they vectorize 8 wide.
/// (A closure passed to a `#[target_feature]` function is not reliably inlined into it, so the
/// body is a function of its own.)
macro_rules! simd_fn {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the features were detected on this CPU just above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use simd_fn;

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;

/// `e^x` in f32 (Cephes' polynomial after range reduction to `[-ln2/2, ln2/2]`).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23
    let xc = x.clamp(-87.3, 88.3);
    // Round to nearest without a libm call: after adding 1.5 * 2^23 the integer k sits in the
    // low mantissa bits. Reading it back through the bits (not `as i32`, which saturates and
    // does not vectorize) keeps the whole function in vector registers.
    let kf = xc * LOG2E + MAGIC;
    let k = kf - MAGIC;
    let r = xc - k * LN2_HI - k * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5e-1;
    let y = p * r * r + r + 1.0;
    let scale = f32::from_bits(kf.to_bits().wrapping_sub(MAGIC.to_bits()).wrapping_add(127) << 23);
    if x < -87.3 { 0.0 } else { y * scale }
}

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// `1 / sqrt(2 pi)`.
pub const INV_SQRT_2PI: f32 = 0.398_942_3;

/// Standard normal CDF `Phi(x) = erfc(-x / sqrt 2) / 2`.
#[inline(always)]
pub fn phi_cdf(x: f32) -> f32 {
    let z = (x * FRAC_1_SQRT_2).abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let mut p = 0.170_872_77f32;
    p = p * t - 0.822_152_23;
    p = p * t + 1.488_515_9;
    p = p * t - 1.135_204;
    p = p * t + 0.278_868_07;
    p = p * t - 0.186_288_06;
    p = p * t + 0.096_784_18;
    p = p * t + 0.374_091_96;
    p = p * t + 1.000_023_7;
    p = p * t - 1.265_512_2;
    // erfc(z) for z >= 0
    let erfc = t * exp(p - z * z);
    if x < 0.0 {
        0.5 * erfc
    } else {
        1.0 - 0.5 * erfc
    }
}

/// Exact GELU `x Phi(x)` and its derivative `Phi(x) + x phi(x)`.
#[inline(always)]
pub fn gelu_and_grad(x: f32) -> (f32, f32) {
    let cdf = phi_cdf(x);
    let pdf = INV_SQRT_2PI * exp(-0.5 * x * x);
    (x * cdf, cdf + x * pdf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> impl Iterator<Item = f32> {
        (-20_000..=20_000).map(|i| i as f32 * 4.4e-3)
    }

    #[test]
    fn exp_matches_f64_to_two_ulps() {
        let mut worst = 0.0f64;
        for x in (-8_700..=8_800).map(|i| i as f32 * 0.01) {
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 2e-7, "worst relative error {worst}");
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert!(exp(100.0).is_finite());
    }

    #[test]
    fn normal_cdf_and_gelu_match_f64() {
        let mut worst_cdf = 0.0f64;
        let mut worst_grad = 0.0f64;
        let mut worst_tail = 0.0f64;
        for x in grid() {
            let xd = x as f64;
            let cdf = 0.5 * libm::erfc(-xd / std::f64::consts::SQRT_2);
            let pdf = (-0.5 * xd * xd).exp() / (2.0 * std::f64::consts::PI).sqrt();
            let e = ((phi_cdf(x) as f64 - cdf) / cdf).abs();
            if x >= -4.0 {
                worst_cdf = worst_cdf.max(e);
            } else if x >= -12.0 {
                worst_tail = worst_tail.max(e);
            } else {
                // Phi(-12) = 1.8e-33; further out the value leaves f32's normal range.
                assert!((phi_cdf(x) as f64 - cdf).abs() < 1e-36, "Phi({x})");
            }
            let (_, g) = gelu_and_grad(x);
            let want = cdf + xd * pdf;
            // The derivative crosses zero near x = -0.75: measure against its scale there.
            worst_grad = worst_grad.max((g as f64 - want).abs() / want.abs().max(1e-2));
        }
        println!(
            "relative errors: CDF {worst_cdf:e}, tail {worst_tail:e}, derivative {worst_grad:e}"
        );
        assert!(worst_cdf < 2e-6, "normal CDF relative error {worst_cdf}");
        // The tail loses digits to rounding x^2 / 2 in f32 before the exponential.
        assert!(
            worst_tail < 3e-5,
            "normal CDF tail relative error {worst_tail}"
        );
        assert!(worst_grad < 1e-5, "GELU derivative error {worst_grad}");
    }
}
