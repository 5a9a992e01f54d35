//! The per-step products of the LSTM (`[B, H]·[H, 4H]` forward, `[B, 4H]·[4H, H]` backward)
//! as a register-blocked AVX2/FMA kernel on a pre-packed weight matrix: no per-step packing,
//! no allocation, strided rows in and out, and the forward product accumulates straight into
//! the gate buffer.
//!
//! Why not candle's matmul here: for these small shapes the general GEMM spends much of its
//! time re-packing the same weights at every step and allocating and zeroing the output.
//! The large weight-gradient products still go through candle (there packing pays off).
//! Why pack at all: weight rows are a power-of-two number of floats apart, so walking down a
//! column block of the unpacked matrix maps to a handful of L1 sets and thrashes them.

#[cfg(target_arch = "x86_64")]
use pulp::{Simd, f32x8, x86::V3};

/// Columns per block: two AVX2 vectors.
const NB: usize = 16;

/// A `k × n` matrix stored as column blocks of 16 (`[block][k][16]`, zero-padded), packed
/// once per forward/backward pass and read by every step.
#[derive(Debug, Clone)]
pub struct Packed {
    k: usize,
    n: usize,
    data: Vec<f32>,
}

impl Packed {
    /// Packs a row-major `k × n` matrix.
    pub fn new(b: &[f32], k: usize, n: usize) -> Packed {
        let blocks = n.div_ceil(NB);
        let mut data = vec![0f32; blocks * k * NB];
        for jb in 0..blocks {
            let cols = NB.min(n - jb * NB);
            for kk in 0..k {
                let dst = (jb * k + kk) * NB;
                data[dst..dst + cols]
                    .copy_from_slice(&b[kk * n + jb * NB..kk * n + jb * NB + cols]);
            }
        }
        Packed { k, n, data }
    }

    fn block(&self, jb: usize) -> &[f32] {
        &self.data[jb * self.k * NB..(jb + 1) * self.k * NB]
    }
}

/// `c[i·c_rs + j] (+)= Σ_kk a[i·a_rs + kk] · b[kk, j]` for `i < m`, `j < b.n`: `a` rows are
/// `b.k` long with stride `a_rs`, `c` rows have stride `c_rs`. `accumulate` adds to `c`,
/// otherwise overwrites it.
pub fn gemm(
    m: usize,
    a: &[f32],
    a_rs: usize,
    b: &Packed,
    c: &mut [f32],
    c_rs: usize,
    accumulate: bool,
) {
    if m == 0 || b.n == 0 {
        return;
    }
    // Slicing below is bounds-checked anyway; this states the contract.
    debug_assert!(a.len() >= (m - 1) * a_rs + b.k && c.len() >= (m - 1) * c_rs + b.n);
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = V3::try_new() {
        Simd::vectorize(
            simd,
            Avx2Op {
                simd,
                m,
                a,
                a_rs,
                b,
                c,
                c_rs,
                accumulate,
            },
        );
        return;
    }
    for i in 0..m {
        let arow = &a[i * a_rs..i * a_rs + b.k];
        let crow = &mut c[i * c_rs..i * c_rs + b.n];
        for (jb, cblock) in crow.chunks_mut(NB).enumerate() {
            let mut acc = [0f32; NB];
            for (kk, &av) in arow.iter().enumerate() {
                let brow = &b.block(jb)[kk * NB..(kk + 1) * NB];
                for (x, bv) in acc.iter_mut().zip(brow) {
                    *x += av * bv;
                }
            }
            for (dst, v) in cblock.iter_mut().zip(acc) {
                *dst = if accumulate { *dst + v } else { v };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
struct Avx2Op<'a> {
    simd: V3,
    m: usize,
    a: &'a [f32],
    a_rs: usize,
    b: &'a Packed,
    c: &'a mut [f32],
    c_rs: usize,
    accumulate: bool,
}

#[cfg(target_arch = "x86_64")]
impl pulp::WithSimd for Avx2Op<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        let Avx2Op {
            simd,
            m,
            a,
            a_rs,
            b,
            c,
            c_rs,
            accumulate,
        } = self;
        let ctx = Ctx {
            simd,
            a,
            a_rs,
            b,
            c_rs,
            accumulate,
        };
        let mut i = 0;
        while i + 4 <= m {
            rows::<4>(&ctx, i, c);
            i += 4;
        }
        while i < m {
            rows::<1>(&ctx, i, c);
            i += 1;
        }
    }
}

#[cfg(target_arch = "x86_64")]
struct Ctx<'a> {
    simd: V3,
    a: &'a [f32],
    a_rs: usize,
    b: &'a Packed,
    c_rs: usize,
    accumulate: bool,
}

/// Rows `i..i+R` × every column block: `2R` accumulators; per `k`, two loads of the packed
/// block, `R` broadcasts of `a` and `2R` FMAs.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn rows<const R: usize>(x: &Ctx<'_>, i: usize, c: &mut [f32]) {
    let (simd, k, n) = (x.simd, x.b.k, x.b.n);
    let arows: [&[f32]; R] = std::array::from_fn(|r| &x.a[(i + r) * x.a_rs..(i + r) * x.a_rs + k]);
    let zero = simd.splat_f32s(0.0);
    for jb in 0..n.div_ceil(NB) {
        let block = x.b.block(jb);
        let (pairs, _) = pulp::as_arrays::<NB, f32>(block);
        let mut acc = [[zero; 2]; R];
        for (kk, pair) in pairs.iter().enumerate() {
            let (halves, _) = pulp::as_arrays::<8, f32>(pair);
            let (b0, b1): (f32x8, f32x8) = (pulp::cast(halves[0]), pulp::cast(halves[1]));
            for r in 0..R {
                let av = simd.splat_f32s(arows[r][kk]);
                acc[r][0] = simd.mul_add_f32s(av, b0, acc[r][0]);
                acc[r][1] = simd.mul_add_f32s(av, b1, acc[r][1]);
            }
        }
        let cols = NB.min(n - jb * NB);
        for (r, acc_r) in acc.iter().enumerate() {
            let start = (i + r) * x.c_rs + jb * NB;
            let dst = &mut c[start..start + cols];
            let v: [f32; NB] = pulp::cast(*acc_r);
            if x.accumulate {
                for (d, v) in dst.iter_mut().zip(v) {
                    *d += v;
                }
            } else {
                dst.copy_from_slice(&v[..cols]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(m: usize, n: usize, k: usize, a: &[f32], a_rs: usize, b: &[f32]) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|kk| a[i * a_rs + kk] * b[kk * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn the_kernel_matches_a_naive_product_including_edges_and_strides() {
        for &(m, n, k) in &[
            (64, 256, 64),
            (7, 20, 5),
            (4, 16, 1),
            (3, 8, 9),
            (65, 33, 17),
        ] {
            let a_rs = k + 3;
            let a: Vec<f32> = (0..m * a_rs)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0)
                .collect();
            let b: Vec<f32> = (0..k * n)
                .map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0)
                .collect();
            let want = reference(m, n, k, &a, a_rs, &b);
            let packed = Packed::new(&b, k, n);
            let c_rs = n + 2;
            let mut c = vec![1f32; m * c_rs];
            gemm(m, &a, a_rs, &packed, &mut c, c_rs, true);
            for i in 0..m {
                for j in 0..n {
                    assert!(
                        (c[i * c_rs + j] - 1.0 - want[i * n + j]).abs() < 1e-4,
                        "acc {m}x{n}x{k} at {i},{j}"
                    );
                }
                assert_eq!(c[i * c_rs + n], 1.0, "padding untouched");
            }
            gemm(m, &a, a_rs, &packed, &mut c, c_rs, false);
            for i in 0..m {
                for j in 0..n {
                    assert!(
                        (c[i * c_rs + j] - want[i * n + j]).abs() < 1e-4,
                        "overwrite {m}x{n}x{k}"
                    );
                }
            }
        }
    }
}
