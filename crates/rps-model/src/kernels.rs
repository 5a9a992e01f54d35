//! Element-wise kernels (the LSTM's activations) in plain f32 Rust, written so the compiler
//! auto-vectorises them: branch-free loops over slices, no libm calls in hot loops. Callers
//! run them inside a `pulp` SIMD dispatch (a `WithSimd` op with `#[inline(always)]`), so the
//! same source compiles to AVX2/FMA code on CPUs that have it and to SSE2 elsewhere.
//!
//! Why not libm's `expf`/`tanhf`: an LSTM step evaluates `4·H` activations per window per
//! step, and scalar libm calls (≈10–20 ns each) would cost more than the matrix products.

/// 1.5·2²³: adding it to an f32 in [-2²², 2²²] rounds to the nearest integer in the low
/// mantissa bits (the classic "magic number" rounding, vectorisable without SSE4.1).
const ROUND_MAGIC: f32 = 12_582_912.0;

/// `e^x` with a relative error below 5e-7 over the clamped range [-87, 88].
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // ln 2 split in a short head (exact products with small k) and a tail (Cody–Waite), so
    // the reduced argument keeps full precision even for large |x|.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * std::f32::consts::LOG2_E + ROUND_MAGIC;
    let k = shifted - ROUND_MAGIC; // round(x / ln 2)
    let ki = (shifted.to_bits() as i32).wrapping_sub(0x4B40_0000); // the same integer
    let r = x - k * LN2_HI - k * LN2_LO; // in about [-ln2/2, ln2/2]
    // Taylor series of e^r to degree 6: truncation error (ln2/2)^7/7! ≈ 1.2e-7.
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let scale = f32::from_bits(((ki + 127) as u32) << 23);
    p * scale
}

/// The logistic function `1 / (1 + e^-x)`.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `tanh(x) = 1 - 2 / (1 + e^{2x})`; absolute error below 3e-7.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / (1.0 + exp(2.0 * x))
}

/// Applies the sigmoid in place.
#[inline(always)]
pub fn sigmoid_inplace(v: &mut [f32]) {
    for x in v.iter_mut() {
        *x = sigmoid(*x);
    }
}

/// Applies tanh in place.
#[inline(always)]
pub fn tanh_inplace(v: &mut [f32]) {
    for x in v.iter_mut() {
        *x = tanh(*x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_matches_std_to_float_precision() {
        let mut worst = 0f32;
        let mut x = -80.0f32;
        while x < 80.0 {
            let rel = ((exp(x) - x.exp()) / x.exp()).abs();
            worst = worst.max(rel);
            x += 0.0137;
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
    }

    #[test]
    fn activations_match_std_and_saturate_without_nan() {
        for &x in &[
            -200.0f32, -30.0, -3.0, -0.5, -1e-4, 0.0, 1e-4, 0.7, 4.0, 30.0, 200.0,
        ] {
            assert!((tanh(x) - x.tanh()).abs() < 5e-7, "tanh({x})");
            let s = 1.0 / (1.0 + (-x).exp());
            assert!((sigmoid(x) - s).abs() < 5e-7, "sigmoid({x})");
        }
        assert_eq!(tanh(1e6), 1.0);
        assert_eq!(tanh(-1e6), -1.0);
    }
}
