//! The whole LSTM sequence as one candle operation with a hand-written backward pass.
//!
//! Why: candle's cost at this model size is per-operation overhead (docs/CANDLE.md), and
//! `candle_nn::LSTM::seq` spends ≈15 graph ops per time step. Here one op runs all steps,
//! the way cuDNN and PyTorch's CPU LSTM do:
//! - forward, per step: one product `[x_t | h_{t-1}] · [W_ih | W_hh]ᵀ + b` straight into the
//!   gate buffer (the input projection rides along in the same register-blocked kernel, so
//!   there is no `X·W_ihᵀ` buffer to write and re-read), then one fused element-wise pass
//!   (non-linearities, cell and hidden update);
//! - backward (BPTT), per step: one element-wise pass for the gate gradients `dz_t` and one
//!   product `dz_t · W_hh` for `dh_{t-1}`; after the loop, the weight gradients of all steps
//!   as two long products `Xᵀ·dZ` and `H_inᵀ·dZ`, and the bias gradient as a column sum.
//!
//! All products go through [`crate::small_gemm`] (AVX-512 or AVX2/FMA, chosen at run time)
//! on operands packed once per pass from the current weights (never cached across passes:
//! AdamW updates the weights in place). The element-wise parts are plain Rust compiled for
//! the same ISA through `pulp`'s runtime dispatch. The large per-pass buffers come from a
//! small pool, so a training step neither allocates nor zero-fills megabytes.
//!
//! Operands: `x` `[batch, steps, inputs]` (contiguous f32, no gradient) and the packed
//! parameters `w` `[4H, inputs + H + 2]` = `[W_ih | W_hh | b_ih | b_hh]` (gate order i, f,
//! g, o as PyTorch). Result: the last hidden state `[batch, H]`. Packing is done with
//! `Tensor::cat` in the graph, so the gradient of `w` flows back to the four variables.
//! Internally every per-step buffer is step-major (`[T, B, ·]`), so a step's rows are
//! contiguous.

use std::sync::Mutex;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, Device, Layout, Shape, Tensor, bail};

use crate::kernels;
use crate::small_gemm::{self, Init, Packed, Src};

/// Sizes of one application of the op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Dims {
    batch: usize,
    steps: usize,
    inputs: usize,
    hidden: usize,
}

impl Dims {
    fn gates(&self) -> usize {
        4 * self.hidden
    }
    fn packed_cols(&self) -> usize {
        self.inputs + self.hidden + 2
    }
}

/// Reusable f32 buffers: a training step needs ≈10 MB of activations at the default shape,
/// and fresh allocations of that size are page-faulted and zero-filled every time.
static POOL: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());
const POOL_MAX: usize = 24;

/// A buffer of `len` floats with unspecified contents (callers overwrite or zero it).
fn take(len: usize) -> Vec<f32> {
    let reused = POOL.lock().ok().and_then(|mut pool| {
        // The smallest pooled buffer that is large enough.
        let best = pool
            .iter()
            .enumerate()
            .filter(|(_, v)| v.capacity() >= len)
            .min_by_key(|(_, v)| v.capacity())
            .map(|(i, _)| i)?;
        Some(pool.swap_remove(best))
    });
    let mut v = reused.unwrap_or_default();
    v.resize(len, 0.0);
    v.truncate(len);
    v
}

fn give(v: Vec<f32>) {
    if v.capacity() == 0 {
        return;
    }
    if let Ok(mut pool) = POOL.lock()
        && pool.len() < POOL_MAX
    {
        pool.push(v);
    }
}

/// What the backward pass needs from the forward pass (step-major).
#[derive(Debug)]
struct Cache {
    dims: Dims,
    /// The input, `[T, B, F]`.
    xs: Vec<f32>,
    /// Hidden states, `[T + 1, B, H]`: slot `t` enters step `t` (slot 0 is zeros).
    hs: Vec<f32>,
    /// Cell states, `[T + 1, B, H]`, slots as for `hs`.
    cs: Vec<f32>,
    /// Gate activations (i, f, g, o after their non-linearities), `[T, B, 4H]`.
    acts: Vec<f32>,
    /// tanh of the cell state leaving each step, `[T, B, H]`.
    tanh_c: Vec<f32>,
    /// The packed parameters as they were in the forward pass, `[4H, F + H + 2]`.
    w: Vec<f32>,
}

impl Drop for Cache {
    fn drop(&mut self) {
        for v in [
            &mut self.xs,
            &mut self.hs,
            &mut self.cs,
            &mut self.acts,
            &mut self.tanh_c,
            &mut self.w,
        ] {
            give(std::mem::take(v));
        }
    }
}

/// The fused LSTM sequence op. Create a fresh one per forward pass: it keeps the forward
/// activations for its own backward pass.
#[derive(Debug, Default)]
pub struct LstmSeq {
    keep: bool,
    cache: Mutex<Option<Cache>>,
}

impl LstmSeq {
    /// An op for training (keeps activations for backward).
    pub fn training() -> LstmSeq {
        LstmSeq {
            keep: true,
            cache: Mutex::new(None),
        }
    }

    /// An op for inference (keeps nothing).
    pub fn inference() -> LstmSeq {
        LstmSeq {
            keep: false,
            cache: Mutex::new(None),
        }
    }
}

fn f32s(s: &CpuStorage) -> candle_core::Result<&[f32]> {
    match s {
        CpuStorage::F32(v) => Ok(v),
        other => bail!("lstm_seq: expected f32, got {:?}", other.dtype()),
    }
}

/// The per-step state of a forward pass. Slots: with `keep`, every step has its own slot;
/// without, `hs`/`cs` alternate between two slots and `acts`/`tanh_c` reuse one.
struct Fwd<'a> {
    d: Dims,
    keep: bool,
    xs: &'a [f32],
    hs: Vec<f32>,
    cs: Vec<f32>,
    acts: Vec<f32>,
    tanh_c: Vec<f32>,
}

impl Fwd<'_> {
    fn state_slot(&self, t: usize) -> usize {
        if self.keep { t } else { t % 2 }
    }
    fn step_slot(&self, t: usize) -> usize {
        if self.keep { t } else { 0 }
    }

    /// Step `t`: gates = bias + x_t·W_ihᵀ + h_{t-1}·W_hhᵀ, one kernel call.
    fn gates(&mut self, t: usize, w: &Packed, bias: &[f32]) {
        let Dims {
            batch: b,
            inputs: f,
            hidden: h,
            ..
        } = self.d;
        let g = 4 * h;
        let (hi, ai) = (self.state_slot(t), self.step_slot(t));
        let srcs = [
            Src::rows(&self.xs[t * b * f..(t + 1) * b * f], f, f),
            Src::rows(&self.hs[hi * b * h..(hi + 1) * b * h], h, h),
        ];
        small_gemm::gemm(
            b,
            &srcs,
            w,
            &mut self.acts[ai * b * g..(ai + 1) * b * g],
            g,
            Init::Bias(bias),
        );
    }

    /// Step `t`'s element-wise part: non-linearities, c_t and h_t. Inlined into a
    /// SIMD-dispatched op (see [`FwdStep`]) so the loops compile for AVX-512 or AVX2.
    #[inline(always)]
    fn cell(&mut self, t: usize) {
        let Dims {
            batch, hidden: h, ..
        } = self.d;
        let g = 4 * h;
        let bh = batch * h;
        let (si, so, ai) = (
            self.state_slot(t),
            self.state_slot(t + 1),
            self.step_slot(t),
        );
        let acts = &mut self.acts[ai * batch * g..(ai + 1) * batch * g];
        let tcs = &mut self.tanh_c[ai * bh..(ai + 1) * bh];
        // c_{t-1} and c_t live in different slots of the same buffer (likewise h).
        let (c_prev, c_next) = two_slots(&mut self.cs, si, so, bh);
        let (_, h_next) = two_slots(&mut self.hs, si, so, bh);
        for b in 0..batch {
            let a = &mut acts[b * g..(b + 1) * g];
            kernels::sigmoid_inplace(&mut a[..2 * h]);
            kernels::tanh_inplace(&mut a[2 * h..3 * h]);
            kernels::sigmoid_inplace(&mut a[3 * h..]);
            // Every slice re-cut to `[..h]` so the compiler sees equal lengths, drops the
            // bounds checks and vectorises the loop.
            let (ig, rest) = a.split_at(h);
            let (fg, rest) = rest.split_at(h);
            let (gg, og) = rest.split_at(h);
            let og = &og[..h];
            let cp = &c_prev[b * h..][..h];
            let cn = &mut c_next[b * h..][..h];
            let tc = &mut tcs[b * h..][..h];
            let hn = &mut h_next[b * h..][..h];
            for j in 0..h {
                cn[j] = fg[j] * cp[j] + ig[j] * gg[j];
                tc[j] = kernels::tanh(cn[j]);
                hn[j] = og[j] * tc[j];
            }
        }
    }
}

/// Slots `a` (shared) and `b` (mutable) of `len` floats each from one buffer, `a != b`.
fn two_slots(buf: &mut [f32], a: usize, b: usize, len: usize) -> (&[f32], &mut [f32]) {
    if a < b {
        let (lo, hi) = buf.split_at_mut(b * len);
        (&lo[a * len..(a + 1) * len], &mut hi[..len])
    } else {
        let (lo, hi) = buf.split_at_mut(a * len);
        (&hi[..len], &mut lo[b * len..(b + 1) * len])
    }
}

/// One forward step's element-wise part as a `pulp` SIMD op: `with_simd` is always inlined
/// into the target-feature function `dispatch` picks. (A closure would not be inlined there
/// and would stay SSE2-only.)
struct FwdStep<'a, 'b> {
    st: &'a mut Fwd<'b>,
    t: usize,
}

impl pulp::WithSimd for FwdStep<'_, '_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        self.st.cell(self.t)
    }
}

/// One backward step as a `pulp` SIMD op (see [`FwdStep`]).
struct BwdStep<'a> {
    c: &'a Cache,
    t: usize,
    dh: &'a [f32],
    dc: &'a mut [f32],
    dz: &'a mut [f32],
    db: &'a mut [f32],
}

impl pulp::WithSimd for BwdStep<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        backward_step(simd, self.c, self.t, self.dh, self.dc, self.dz, self.db)
    }
}

/// The weights as the kernel reads them: `[W_ih | W_hh]ᵀ` packed (`[F + H, 4H]`) and the
/// summed bias (both derived inside every pass: AdamW updates weights in place).
fn forward_weights(w: &[f32], d: Dims) -> (Packed, Vec<f32>) {
    let (g, f, h, cols) = (d.gates(), d.inputs, d.hidden, d.packed_cols());
    let packed = Packed::from_fn(f + h, g, |kk, j| w[j * cols + kk]);
    let bias = (0..g)
        .map(|r| w[r * cols + f + h] + w[r * cols + f + h + 1])
        .collect();
    (packed, bias)
}

fn forward(
    x: &CpuStorage,
    xl: &Layout,
    w: &CpuStorage,
    wl: &Layout,
    keep: bool,
) -> candle_core::Result<(Vec<f32>, Option<Cache>)> {
    let (batch, steps, inputs) = match xl.dims() {
        &[b, t, f] => (b, t, f),
        other => bail!("lstm_seq: x must be [batch, steps, inputs], got {other:?}"),
    };
    let (g, cols) = match wl.dims() {
        &[g, c] => (g, c),
        other => bail!("lstm_seq: packed weights must be 2-D, got {other:?}"),
    };
    if g % 4 != 0 || cols != inputs + g / 4 + 2 || steps == 0 || batch == 0 {
        bail!("lstm_seq: packed weights {g}x{cols} do not fit {inputs} inputs (steps {steps})");
    }
    if !xl.is_contiguous() || !wl.is_contiguous() {
        bail!("lstm_seq: operands must be contiguous");
    }
    let d = Dims {
        batch,
        steps,
        inputs,
        hidden: g / 4,
    };
    let (h, f) = (d.hidden, inputs);
    let w_all = f32s(w)?;
    let w_all = &w_all[wl.start_offset()..wl.start_offset() + g * cols];
    let (wp, bias) = forward_weights(w_all, d);

    // The input, step-major.
    let x_all = f32s(x)?;
    let x_all = &x_all[xl.start_offset()..xl.start_offset() + batch * steps * f];
    let mut xs = take(steps * batch * f);
    for (b, window) in x_all.chunks_exact(steps * f).enumerate() {
        for (t, row) in window.chunks_exact(f).enumerate() {
            xs[(t * batch + b) * f..(t * batch + b + 1) * f].copy_from_slice(row);
        }
    }
    let (state_slots, step_slots) = if keep { (steps + 1, steps) } else { (2, 1) };
    let mut st = Fwd {
        d,
        keep,
        xs: &xs,
        hs: take(state_slots * batch * h),
        cs: take(state_slots * batch * h),
        acts: take(step_slots * batch * g),
        tanh_c: take(step_slots * batch * h),
    };
    // The states entering step 0 are zeros.
    st.hs[..batch * h].fill(0.0);
    st.cs[..batch * h].fill(0.0);
    let arch = pulp::Arch::new();
    for t in 0..steps {
        st.gates(t, &wp, &bias);
        arch.dispatch(FwdStep { st: &mut st, t });
    }
    let last = st.state_slot(steps);
    let h_out = st.hs[last * batch * h..(last + 1) * batch * h].to_vec();
    let Fwd {
        hs,
        cs,
        acts,
        tanh_c,
        ..
    } = st;
    let cache = if keep {
        let mut wcopy = take(g * cols);
        wcopy.copy_from_slice(w_all);
        Some(Cache {
            dims: d,
            xs,
            hs,
            cs,
            acts,
            tanh_c,
            w: wcopy,
        })
    } else {
        for v in [xs, hs, cs, acts, tanh_c] {
            give(v);
        }
        None
    };
    Ok((h_out, cache))
}

/// The element-wise part of BPTT at step `t`: gate pre-activation gradients `dz` (`[B, 4H]`)
/// from the incoming `dh`, the cell gradient carried to step `t - 1`, and the bias gradient.
#[inline(always)]
fn backward_step<S: pulp::Simd>(
    simd: S,
    c: &Cache,
    t: usize,
    dh: &[f32],
    dc: &mut [f32],
    dzs: &mut [f32],
    db: &mut [f32],
) {
    let Dims {
        batch, hidden: h, ..
    } = c.dims;
    let g = 4 * h;
    let acts = &c.acts[t * batch * g..(t + 1) * batch * g];
    let tcs = &c.tanh_c[t * batch * h..(t + 1) * batch * h];
    let cps = &c.cs[t * batch * h..(t + 1) * batch * h];
    for b in 0..batch {
        let a = &acts[b * g..(b + 1) * g];
        let (ig, rest) = a.split_at(h);
        let (fg, rest) = rest.split_at(h);
        let (gg, og) = rest.split_at(h);
        let z = &mut dzs[b * g..][..g];
        let (zi, rest) = z.split_at_mut(h);
        let (zf, rest) = rest.split_at_mut(h);
        let (zg, zo) = rest.split_at_mut(h);
        let ins = [
            ig,
            fg,
            gg,
            &og[..h],
            &tcs[b * h..][..h],
            &cps[b * h..][..h],
            &dh[b * h..][..h],
        ];
        let outs = [zi, zf, zg, &mut zo[..h]];
        bwd_cell(simd, ins, outs, &mut dc[b * h..][..h]);
        for (acc, v) in db.iter_mut().zip(z.iter()) {
            *acc += v;
        }
    }
}

/// The BPTT cell formulas for one window: inputs `[i, f, g, o, tanh c_t, c_{t-1}, dh_t]`,
/// outputs `[dz_i, dz_f, dz_g, dz_o]`, and `dc` (in: from step t + 1, out: to step t - 1).
/// Written with explicit SIMD vectors: with this many streams LLVM keeps the plain loop
/// scalar.
#[inline(always)]
fn bwd_cell<S: pulp::Simd>(simd: S, ins: [&[f32]; 7], outs: [&mut [f32]; 4], dc: &mut [f32]) {
    let [ig, fg, gg, og, tc, cp, dh] = ins;
    let [zi, zf, zg, zo] = outs;
    let (v_ig, s_ig) = S::as_simd_f32s(ig);
    let (v_fg, s_fg) = S::as_simd_f32s(fg);
    let (v_gg, s_gg) = S::as_simd_f32s(gg);
    let (v_og, s_og) = S::as_simd_f32s(og);
    let (v_tc, s_tc) = S::as_simd_f32s(tc);
    let (v_cp, s_cp) = S::as_simd_f32s(cp);
    let (v_dh, s_dh) = S::as_simd_f32s(dh);
    let (v_zi, s_zi) = S::as_mut_simd_f32s(zi);
    let (v_zf, s_zf) = S::as_mut_simd_f32s(zf);
    let (v_zg, s_zg) = S::as_mut_simd_f32s(zg);
    let (v_zo, s_zo) = S::as_mut_simd_f32s(zo);
    let (v_dc, s_dc) = S::as_mut_simd_f32s(dc);
    let one = simd.splat_f32s(1.0);
    for j in 0..v_ig.len() {
        let (i, f, g, o) = (v_ig[j], v_fg[j], v_gg[j], v_og[j]);
        let (tc, dh) = (v_tc[j], v_dh[j]);
        // dc = dc_next + dh·o·(1 - tanh²c)
        let dtanh = simd.sub_f32s(one, simd.mul_f32s(tc, tc));
        let dcj = simd.mul_add_f32s(simd.mul_f32s(dh, o), dtanh, v_dc[j]);
        v_zi[j] = simd.mul_f32s(
            simd.mul_f32s(dcj, g),
            simd.mul_f32s(i, simd.sub_f32s(one, i)),
        );
        v_zf[j] = simd.mul_f32s(
            simd.mul_f32s(dcj, v_cp[j]),
            simd.mul_f32s(f, simd.sub_f32s(one, f)),
        );
        v_zg[j] = simd.mul_f32s(
            simd.mul_f32s(dcj, i),
            simd.sub_f32s(one, simd.mul_f32s(g, g)),
        );
        v_zo[j] = simd.mul_f32s(
            simd.mul_f32s(dh, tc),
            simd.mul_f32s(o, simd.sub_f32s(one, o)),
        );
        v_dc[j] = simd.mul_f32s(dcj, f);
    }
    for j in 0..s_ig.len() {
        let dcj = s_dc[j] + s_dh[j] * s_og[j] * (1.0 - s_tc[j] * s_tc[j]);
        s_zi[j] = dcj * s_gg[j] * s_ig[j] * (1.0 - s_ig[j]);
        s_zf[j] = dcj * s_cp[j] * s_fg[j] * (1.0 - s_fg[j]);
        s_zg[j] = dcj * s_ig[j] * (1.0 - s_gg[j] * s_gg[j]);
        s_zo[j] = s_dh[j] * s_tc[j] * s_og[j] * (1.0 - s_og[j]);
        s_dc[j] = dcj * s_fg[j];
    }
}

/// BPTT: the gradient of the packed weights given the gradient of the last hidden state.
fn backward(c: &Cache, grad_h: &[f32]) -> Vec<f32> {
    let d = c.dims;
    let (batch, steps, f, h, g) = (d.batch, d.steps, d.inputs, d.hidden, d.gates());
    let cols = d.packed_cols();
    let rows = batch * steps;
    // dh_{t-1} = dz_t · W_hh: W_hh as stored is the `[4H, H]` right-hand side.
    let w_hh = Packed::from_fn(g, h, |kk, j| c.w[kk * cols + f + j]);
    let mut dzp = Packed::for_rows(rows, g, take(rows * g));
    let mut dz = take(batch * g);
    let mut dh = grad_h.to_vec();
    let mut dc = vec![0f32; batch * h];
    let mut db = vec![0f32; g];
    let arch = pulp::Arch::new();
    for t in (0..steps).rev() {
        arch.dispatch(BwdStep {
            c,
            t,
            dh: &dh,
            dc: &mut dc,
            dz: &mut dz,
            db: &mut db,
        });
        dzp.set_rows(t * batch, &dz);
        if t > 0 {
            let src = [Src::rows(&dz, g, g)];
            small_gemm::gemm(batch, &src, &w_hh, &mut dh, h, Init::Zero);
        }
    }
    // Weight gradients over all steps at once: dW_ihᵀ = Xᵀ · dZ, dW_hhᵀ = H_inᵀ · dZ
    // (X and H_in read transposed in place; rows of all three are step-major).
    let mut dwt = take((f + h) * g);
    let xt = Src::transposed(&c.xs[..rows * f], f, rows);
    let ht = Src::transposed(&c.hs[..rows * h], h, rows);
    for (src, m, out) in [(xt, f, 0..f * g), (ht, h, f * g..(f + h) * g)] {
        small_gemm::gemm(m, &[src], &dzp, &mut dwt[out], g, Init::Zero);
    }
    let mut out = vec![0f32; g * cols];
    for (r, o) in out.chunks_exact_mut(cols).enumerate() {
        for (kk, v) in o[..f + h].iter_mut().enumerate() {
            *v = dwt[kk * g + r];
        }
        o[f + h] = db[r];
        o[f + h + 1] = db[r];
    }
    // (The small packed weights are not pooled: only the large per-pass buffers are.)
    for v in [dwt, dz, dzp.into_buf()] {
        give(v);
    }
    out
}

impl CustomOp2 for LstmSeq {
    fn name(&self) -> &'static str {
        "lstm_seq"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (out, cache) = forward(s1, l1, s2, l2, self.keep)?;
        let (batch, hidden) = (l1.dims()[0], l2.dims()[0] / 4);
        if let Some(c) = cache {
            match self.cache.lock() {
                Ok(mut slot) => *slot = Some(c),
                Err(_) => bail!("lstm_seq: activation cache poisoned"),
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((batch, hidden))))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad_h = grad_res.flatten_all()?.to_vec1::<f32>()?;
        // Taken out of the op: the activations go back to the pool as soon as the
        // gradient is computed, not when the graph is dropped.
        let cache = match self.cache.lock() {
            Ok(mut g) => g.take(),
            Err(_) => bail!("lstm_seq: activation cache poisoned"),
        };
        let Some(cache) = cache else {
            bail!(
                "lstm_seq: backward without a training forward (use LstmSeq::training; \
                 backward runs once per forward)"
            );
        };
        if grad_h.len() != cache.dims.batch * cache.dims.hidden {
            bail!("lstm_seq: gradient has {} values", grad_h.len());
        }
        let gw = backward(&cache, &grad_h);
        let gw = Tensor::from_vec(gw, w.shape(), &Device::Cpu)?;
        // The input is data, not a parameter: no gradient for it.
        Ok((None, Some(gw)))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor, Var};
    use candle_nn::rnn::{LSTM, LSTMConfig, RNN};
    use candle_nn::{VarBuilder, VarMap};

    use crate::kinds::lstm::net::{LstmNet, LstmWeights, names};

    /// The reference: candle-nn's own LSTM (ordinary autograd ops) with the same weights.
    fn reference(w: &LstmWeights, x: &Tensor) -> (Tensor, Vec<Var>) {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let lstm: LSTM =
            candle_nn::rnn::lstm(w.inputs, w.hidden, LSTMConfig::default(), vb.pp("lstm")).unwrap();
        let t = w.to_tensors().unwrap();
        let data = varmap.data().lock().unwrap();
        let mut vars = Vec::new();
        for n in [names::W_IH, names::W_HH, names::B_IH, names::B_HH] {
            let v = data.get(n).unwrap();
            v.set(&t[n]).unwrap();
            vars.push(v.clone());
        }
        drop(data);
        let states = lstm.seq(x).unwrap();
        let h = states.last().unwrap().h().clone();
        (h, vars)
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    #[test]
    fn the_fused_op_matches_candle_nn_lstm_forward_and_gradients() {
        let (b, t, f, h) = (5, 7, 3, 4);
        let w = LstmWeights::init(f, h, 7);
        let xs: Vec<f32> = (0..b * t * f)
            .map(|i| ((i * 37 % 23) as f32 / 11.0) - 1.0)
            .collect();
        let x = Tensor::from_vec(xs, (b, t, f), &Device::Cpu).unwrap();

        let (h_ref, ref_vars) = reference(&w, &x);
        let net = LstmNet::new(&w).unwrap();
        let vars = net.vars();
        let packed = Tensor::cat(
            &[
                vars[0].as_tensor(),
                vars[1].as_tensor(),
                &vars[2].as_tensor().unsqueeze(1).unwrap(),
                &vars[3].as_tensor().unsqueeze(1).unwrap(),
            ],
            1,
        )
        .unwrap();
        let h_op = x.apply_op2(&packed, super::LstmSeq::training()).unwrap();
        assert!(max_abs_diff(&h_op, &h_ref) < 1e-5, "forward differs");

        // A loss that weighs every output differently, so every gradient path is exercised.
        let weights = Tensor::arange(1f32, (b * h) as f32 + 1.0, &Device::Cpu)
            .unwrap()
            .reshape((b, h))
            .unwrap();
        let g_ref = (h_ref * &weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g_op = (h_op * &weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for (r, o) in ref_vars.iter().zip(&vars[..4]) {
            let gr = g_ref.get(r.as_tensor()).unwrap();
            let go = g_op.get(o.as_tensor()).unwrap();
            let scale = gr
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(
                max_abs_diff(gr, go) < 1e-4 * scale.max(1.0),
                "gradient differs for {:?}",
                r.shape()
            );
        }
    }

    #[test]
    fn inference_mode_gives_the_training_forward() {
        let w = LstmWeights::init(3, 8, 1);
        let net = LstmNet::new(&w).unwrap();
        let xs: Vec<f32> = (0..4 * 6 * 3).map(|i| (i as f32 * 0.37).sin()).collect();
        let x = Tensor::from_vec(xs.clone(), (4, 6, 3), &Device::Cpu).unwrap();
        let a = net.forward(&x, true).unwrap();
        let b = net.forward(&x, false).unwrap();
        assert!(max_abs_diff(&a, &b) < 1e-6);
        // And the batch-1 plain-Rust path agrees with the batched op.
        let inf = crate::kinds::lstm::net::InferenceWeights::new(&w);
        let mut scratch = crate::kinds::lstm::net::Scratch::default();
        let a = a.to_vec1::<f32>().unwrap();
        for (i, window) in xs.chunks(6 * 3).enumerate() {
            assert!((inf.predict(window, &mut scratch) - a[i]).abs() < 1e-5);
        }
    }
}
