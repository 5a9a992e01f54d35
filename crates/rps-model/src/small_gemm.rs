//! The LSTM's matrix products as one register-blocked SIMD kernel on a pre-packed right-hand
//! side: the per-step products (`[B, F+H]·[F+H, 4H]` forward, `[B, 4H]·[4H, H]` backward)
//! and the weight gradients over all steps (`[F+H, B·T]·[B·T, 4H]`).
//!
//! The micro-kernel keeps `R = 4` rows × `V` vectors of accumulators in registers; per `k` it
//! loads `V` vectors of the packed block, broadcasts `R` values of `A` and issues `R·V` FMAs.
//! With AVX-512 (`pulp::x86::V4`) a block is 64 columns (`V = 4` × 16 lanes, 16 accumulators
//! of the 32 registers); with AVX2/FMA (`V3`) it is 16 columns (`V = 2` × 8 lanes, 8 of 16
//! registers). The ISA is picked at run time, and a [`Packed`] matrix is laid out for it.
//!
//! Why not candle's matmul: for these small shapes the general GEMM re-packs the same weights
//! at every step and allocates and zeroes the output; its CPU build has no AVX-512 path.
//! Why pack at all: weight rows are a power-of-two number of floats apart, so walking down a
//! column block of the unpacked matrix maps to a handful of L1 sets and thrashes them.
//! `A` may be split into several sources (the forward product reads `x_t` and `h_{t-1}` from
//! their own buffers, so the input projection needs no concatenation and no separate pass).

use pulp::Simd;

/// `k` rows of `B` per pass over the column blocks, so a block's slice stays in L1 while all
/// row groups of `A` stream past it (matters for the long weight-gradient products).
const KC: usize = 128;

/// The instruction set the kernel runs with, fixed per process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isa {
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Scalar,
}

fn isa() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if pulp::x86::V4::try_new().is_some() {
            return Isa::Avx512;
        }
        if pulp::x86::V3::try_new().is_some() {
            return Isa::Avx2;
        }
    }
    Isa::Scalar
}

/// Columns per packed block for the detected ISA.
fn block_width(isa: Isa) -> usize {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => 64,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => 16,
        Isa::Scalar => 16,
    }
}

/// A `k × n` matrix stored as column blocks (`[block][k][nb]`, zero-padded to `nb` columns).
#[derive(Debug, Clone)]
pub struct Packed {
    k: usize,
    n: usize,
    nb: usize,
    isa: Isa,
    data: Vec<f32>,
}

impl Packed {
    /// A packed matrix with `B[kk, j] = f(kk, j)`.
    pub fn from_fn(k: usize, n: usize, f: impl Fn(usize, usize) -> f32) -> Packed {
        let mut p = Packed::zeroed(k, n, Vec::new());
        let nb = p.nb;
        for jb in 0..n.div_ceil(nb) {
            let cols = nb.min(n - jb * nb);
            for kk in 0..k {
                let dst = (jb * k + kk) * nb;
                for (c, d) in p.data[dst..dst + cols].iter_mut().enumerate() {
                    *d = f(kk, jb * nb + c);
                }
            }
        }
        p
    }

    /// Packs a row-major `k × n` matrix.
    pub fn new(b: &[f32], k: usize, n: usize) -> Packed {
        Packed::from_fn(k, n, |kk, j| b[kk * n + j])
    }

    /// [`Packed::new`] for a given ISA (tests cover every kernel the CPU can run).
    #[cfg(test)]
    fn new_for(isa: Isa, b: &[f32], k: usize, n: usize) -> Packed {
        let mut p = Packed::from_fn(k, n, |kk, j| b[kk * n + j]);
        if p.isa != isa {
            let dense: Vec<f32> = b.to_vec();
            let mut q = Packed::zeroed_for(isa, k, n, Vec::new());
            q.set_rows(0, &dense);
            p = q;
        }
        p
    }

    /// A zero `k × n` matrix in `buf`'s storage (reused to avoid allocating per pass).
    pub fn zeroed(k: usize, n: usize, buf: Vec<f32>) -> Packed {
        Packed::zeroed_for(isa(), k, n, buf)
    }

    fn zeroed_for(isa: Isa, k: usize, n: usize, mut buf: Vec<f32>) -> Packed {
        let nb = block_width(isa);
        buf.clear();
        buf.resize(n.div_ceil(nb) * k * nb, 0.0);
        Packed {
            k,
            n,
            nb,
            isa,
            data: buf,
        }
    }

    /// A `k × n` matrix in `buf`'s storage whose every row the caller overwrites with
    /// [`Packed::set_rows`]: only the padding columns are zeroed (none when `nb` divides `n`).
    pub fn for_rows(k: usize, n: usize, mut buf: Vec<f32>) -> Packed {
        let nb = block_width(isa());
        if !n.is_multiple_of(nb) {
            return Packed::zeroed(k, n, buf);
        }
        buf.resize(n / nb * k * nb, 0.0);
        buf.truncate(n / nb * k * nb);
        let mut p = Packed::zeroed(0, n, Vec::new());
        p.k = k;
        p.data = buf;
        p
    }

    /// Overwrites rows `k0..k0 + rows.len() / n` with a row-major block of rows.
    pub fn set_rows(&mut self, k0: usize, rows: &[f32]) {
        let (n, nb, k) = (self.n, self.nb, self.k);
        for (r, row) in rows.chunks_exact(n).enumerate() {
            for (jb, src) in row.chunks(nb).enumerate() {
                let dst = (jb * k + k0 + r) * nb;
                self.data[dst..dst + src.len()].copy_from_slice(src);
            }
        }
    }

    /// Gives the storage back (for reuse).
    pub fn into_buf(self) -> Vec<f32> {
        self.data
    }

    fn block(&self, jb: usize) -> &[f32] {
        &self.data[jb * self.k * self.nb..(jb + 1) * self.k * self.nb]
    }
}

/// One part of the left operand: `A[i, kk] = data[i·rs + kk·cs]` for `i < m`, `kk < k`,
/// covering the next `k` rows of `B`. `cs = 1` is a row-major block; `rs = 1` reads a
/// row-major matrix transposed (the weight gradients read `Xᵀ` and `H_inᵀ` that way).
#[derive(Debug, Clone, Copy)]
pub struct Src<'a> {
    /// The values the block is read from.
    pub data: &'a [f32],
    /// Distance in `data` between two rows `i`.
    pub rs: usize,
    /// Distance in `data` between two columns `kk`.
    pub cs: usize,
    /// Columns of the block (rows of `B` it covers).
    pub k: usize,
}

impl<'a> Src<'a> {
    /// A row-major block: rows `rs` apart, `k` values each.
    pub fn rows(data: &'a [f32], rs: usize, k: usize) -> Src<'a> {
        Src { data, rs, cs: 1, k }
    }

    /// The transpose of a row-major `k × m` matrix with rows `row_len` apart.
    pub fn transposed(data: &'a [f32], row_len: usize, k: usize) -> Src<'a> {
        Src {
            data,
            rs: 1,
            cs: row_len,
            k,
        }
    }
}

/// What the product starts from.
#[derive(Debug, Clone, Copy)]
pub enum Init<'a> {
    /// `C = A·B`.
    Zero,
    /// `C += A·B`.
    Accumulate,
    /// `C = bias + A·B`, `bias` broadcast down the rows (`n` values).
    Bias(&'a [f32]),
}

/// `C[i·c_rs + j] = init + Σ_kk A[i, kk] · B[kk, j]` for `i < m`, `j < b.n`, where `A` is the
/// sources side by side (their `k`s sum to `b.k`).
pub fn gemm(m: usize, srcs: &[Src<'_>], b: &Packed, c: &mut [f32], c_rs: usize, init: Init<'_>) {
    if m == 0 || b.n == 0 {
        return;
    }
    assert_eq!(
        srcs.iter().map(|s| s.k).sum::<usize>(),
        b.k,
        "small_gemm: sources do not cover k"
    );
    assert!(
        c.len() >= (m - 1) * c_rs + b.n,
        "small_gemm: output too short"
    );
    if let Init::Bias(bias) = init {
        assert!(bias.len() >= b.n, "small_gemm: bias too short");
    }
    for s in srcs {
        assert!(
            s.k == 0 || s.data.len() > (m - 1) * s.rs + (s.k - 1) * s.cs,
            "small_gemm: source too short"
        );
    }
    let job = Job {
        m,
        srcs,
        b,
        c,
        c_rs,
        init,
    };
    match b.isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => {
            if let Some(simd) = pulp::x86::V4::try_new() {
                Simd::vectorize(simd, Kernel::<4> { job });
                return;
            }
            job.scalar();
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            if let Some(simd) = pulp::x86::V3::try_new() {
                Simd::vectorize(simd, Kernel::<2> { job });
                return;
            }
            job.scalar();
        }
        Isa::Scalar => job.scalar(),
    }
}

struct Job<'a, 'b> {
    m: usize,
    srcs: &'a [Src<'b>],
    b: &'a Packed,
    c: &'a mut [f32],
    c_rs: usize,
    init: Init<'a>,
}

impl Job<'_, '_> {
    /// The portable path (no SIMD dispatch available).
    fn scalar(self) {
        let Job {
            m,
            srcs,
            b,
            c,
            c_rs,
            init,
        } = self;
        for i in 0..m {
            for j in 0..b.n {
                let (jb, jc) = (j / b.nb, j % b.nb);
                let block = b.block(jb);
                let mut acc = 0f32;
                let mut k0 = 0;
                for s in srcs {
                    for kk in 0..s.k {
                        acc += s.data[i * s.rs + kk * s.cs] * block[(k0 + kk) * b.nb + jc];
                    }
                    k0 += s.k;
                }
                let dst = &mut c[i * c_rs + j];
                *dst = match init {
                    Init::Zero => acc,
                    Init::Accumulate => *dst + acc,
                    Init::Bias(bias) => bias[j] + acc,
                };
            }
        }
    }
}

/// The SIMD kernel with `V` vectors per column block.
struct Kernel<'a, 'b, const V: usize> {
    job: Job<'a, 'b>,
}

impl<const V: usize> pulp::WithSimd for Kernel<'_, '_, V> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Job {
            m,
            srcs,
            b,
            c,
            c_rs,
            init,
        } = self.job;
        debug_assert_eq!(b.nb, V * S::F32_LANES);
        let mut k0 = 0;
        while k0 < b.k {
            let k1 = (k0 + KC).min(b.k);
            // Later k-chunks add to what the earlier ones stored.
            let init = if k0 == 0 { init } else { Init::Accumulate };
            for jb in 0..b.n.div_ceil(b.nb) {
                let mut i = 0;
                while i + 4 <= m {
                    rows::<S, V, 4>(simd, srcs, b, jb, (k0, k1), i, c, c_rs, init);
                    i += 4;
                }
                while i < m {
                    rows::<S, V, 1>(simd, srcs, b, jb, (k0, k1), i, c, c_rs, init);
                    i += 1;
                }
            }
            k0 = k1;
        }
    }
}

/// Rows `i..i+R` × column block `jb` over `k` in `k0..k1`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn rows<S: Simd, const V: usize, const R: usize>(
    simd: S,
    srcs: &[Src<'_>],
    b: &Packed,
    jb: usize,
    (k0, k1): (usize, usize),
    i: usize,
    c: &mut [f32],
    c_rs: usize,
    init: Init<'_>,
) {
    let nb = b.nb;
    let cols = nb.min(b.n - jb * nb);
    let zero = simd.splat_f32s(0.0);
    // Starting values: zero, the current C, or the bias row (through a padded buffer when
    // the block is narrower than `nb`).
    let mut acc = [[zero; V]; R];
    let mut tmp = [0f32; 64];
    match init {
        Init::Zero => {}
        Init::Bias(bias) => {
            tmp[..cols].copy_from_slice(&bias[jb * nb..jb * nb + cols]);
            let (v, _) = S::as_simd_f32s(&tmp[..nb]);
            for acc_r in acc.iter_mut() {
                acc_r.copy_from_slice(&v[..V]);
            }
        }
        Init::Accumulate => {
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let start = (i + r) * c_rs + jb * nb;
                tmp[..cols].copy_from_slice(&c[start..start + cols]);
                let (v, _) = S::as_simd_f32s(&tmp[..nb]);
                acc_r.copy_from_slice(&v[..V]);
            }
        }
    }
    let block = b.block(jb);
    let mut s0 = 0;
    for s in srcs {
        // This source covers B rows s0..s0+s.k; take its overlap with the chunk.
        let (lo, hi) = (s0.max(k0), (s0 + s.k).min(k1));
        s0 += s.k;
        if lo >= hi {
            continue;
        }
        let len = hi - lo;
        let (bv, _) = S::as_simd_f32s(&block[lo * nb..hi * nb]);
        let bv = &bv[..len * V];
        let first = lo - (s0 - s.k);
        if s.cs == 1 {
            let a: [&[f32]; R] = std::array::from_fn(|r| {
                let start = (i + r) * s.rs + first;
                &s.data[start..start + len]
            });
            for kk in 0..len {
                let bk: [S::f32s; V] = std::array::from_fn(|v| bv[kk * V + v]);
                for r in 0..R {
                    let av = simd.splat_f32s(a[r][kk]);
                    for v in 0..V {
                        acc[r][v] = simd.mul_add_f32s(av, bk[v], acc[r][v]);
                    }
                }
            }
        } else {
            let a = &s.data[i * s.rs + first * s.cs..];
            for kk in 0..len {
                let bk: [S::f32s; V] = std::array::from_fn(|v| bv[kk * V + v]);
                let ak = &a[kk * s.cs..];
                for r in 0..R {
                    let av = simd.splat_f32s(ak[r * s.rs]);
                    for v in 0..V {
                        acc[r][v] = simd.mul_add_f32s(av, bk[v], acc[r][v]);
                    }
                }
            }
        }
    }
    for (r, acc_r) in acc.iter().enumerate() {
        let start = (i + r) * c_rs + jb * nb;
        let dst = &mut c[start..start + cols];
        if cols == nb {
            let (dv, _) = S::as_mut_simd_f32s(dst);
            dv[..V].copy_from_slice(acc_r);
        } else {
            let (tv, _) = S::as_mut_simd_f32s(&mut tmp[..nb]);
            tv[..V].copy_from_slice(acc_r);
            dst.copy_from_slice(&tmp[..cols]);
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

    /// The ISAs this CPU can run, best first.
    fn available() -> Vec<Isa> {
        let mut v = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if pulp::x86::V4::try_new().is_some() {
                v.push(Isa::Avx512);
            }
            if pulp::x86::V3::try_new().is_some() {
                v.push(Isa::Avx2);
            }
        }
        v.push(Isa::Scalar);
        v
    }

    #[test]
    fn the_kernel_matches_a_naive_product_including_edges_strides_and_split_sources() {
        for &(m, n, k) in &[
            (64, 256, 64),
            (7, 20, 5),
            (4, 16, 1),
            (3, 8, 9),
            (65, 33, 17),
            (6, 70, 600), // more than one k-chunk
        ] {
            let a_rs = k + 3;
            let a: Vec<f32> = (0..m * a_rs)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0)
                .collect();
            let b: Vec<f32> = (0..k * n)
                .map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0)
                .collect();
            let bias: Vec<f32> = (0..n).map(|j| j as f32 * 0.25).collect();
            let want = reference(m, n, k, &a, a_rs, &b);
            for isa in available() {
                let packed = Packed::new_for(isa, &b, k, n);
                let c_rs = n + 2;
                let whole = [Src::rows(&a, a_rs, k)];
                let mut c = vec![1f32; m * c_rs];
                gemm(m, &whole, &packed, &mut c, c_rs, Init::Accumulate);
                for i in 0..m {
                    for j in 0..n {
                        assert!(
                            (c[i * c_rs + j] - 1.0 - want[i * n + j]).abs() < 1e-3,
                            "acc {m}x{n}x{k} at {i},{j}"
                        );
                    }
                    assert_eq!(c[i * c_rs + n], 1.0, "padding untouched");
                }
                gemm(m, &whole, &packed, &mut c, c_rs, Init::Zero);
                for i in 0..m {
                    for j in 0..n {
                        assert!(
                            (c[i * c_rs + j] - want[i * n + j]).abs() < 1e-3,
                            "overwrite {m}x{n}x{k}"
                        );
                    }
                }
                // The same product with A split in two sources (a copy of the tail columns
                // elsewhere, different stride) and a bias.
                let k1 = k / 2;
                let tail_rs = k - k1 + 1;
                let mut tail = vec![0f32; m * tail_rs];
                for i in 0..m {
                    tail[i * tail_rs..i * tail_rs + k - k1]
                        .copy_from_slice(&a[i * a_rs + k1..i * a_rs + k]);
                }
                let split = [Src::rows(&a, a_rs, k1), Src::rows(&tail, tail_rs, k - k1)];
                gemm(m, &split, &packed, &mut c, c_rs, Init::Bias(&bias));
                for i in 0..m {
                    for j in 0..n {
                        assert!(
                            (c[i * c_rs + j] - bias[j] - want[i * n + j]).abs() < 1e-3,
                            "split {m}x{n}x{k} at {i},{j}"
                        );
                    }
                }
                // And A read transposed from a row-major k × m matrix with padded rows.
                let at_rs = m + 1;
                let mut at = vec![0f32; k * at_rs];
                for i in 0..m {
                    for kk in 0..k {
                        at[kk * at_rs + i] = a[i * a_rs + kk];
                    }
                }
                gemm(
                    m,
                    &[Src::transposed(&at, at_rs, k)],
                    &packed,
                    &mut c,
                    c_rs,
                    Init::Zero,
                );
                for i in 0..m {
                    for j in 0..n {
                        assert!(
                            (c[i * c_rs + j] - want[i * n + j]).abs() < 1e-3,
                            "transposed {m}x{n}x{k} at {i},{j}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn set_rows_fills_the_packed_layout() {
        let (k, n) = (5, 70);
        let b: Vec<f32> = (0..k * n).map(|i| i as f32).collect();
        let mut p = Packed::zeroed(k, n, Vec::new());
        p.set_rows(0, &b[..2 * n]);
        p.set_rows(2, &b[2 * n..]);
        assert_eq!(p.data, Packed::new(&b, k, n).data);
    }
}
