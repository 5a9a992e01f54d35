//! The whole LSTM sequence as one candle operation with a hand-written backward pass.
//!
//! Why: candle's cost at this model size is per-operation overhead (CANDLE.md), and
//! `candle_nn::LSTM::seq` spends ≈15 graph ops per time step. Here one op runs all steps:
//! the input projection of every step is one GEMM, each step is one recurrent product
//! accumulated into the gates plus a fused element-wise pass, and the backward pass (BPTT) is
//! one product per step plus two GEMMs for the weight gradients. The large GEMMs go through
//! candle's CPU GEMM (`BackendStorage::matmul`, runtime AVX dispatch); the per-step products
//! use [`crate::small_gemm`] on weights packed once per pass; the element-wise parts are
//! plain Rust compiled for AVX2/FMA through `pulp`'s runtime dispatch.
//!
//! Operands: `x` `[batch, steps, inputs]` (contiguous f32, no gradient) and the packed
//! parameters `w` `[4H, inputs + H + 2]` = `[W_ih | W_hh | b_ih | b_hh]` (gate order i, f,
//! g, o as PyTorch). Result: the last hidden state `[batch, H]`. Packing is done with
//! `Tensor::cat` in the graph, so the gradient of `w` flows back to the four variables.

use std::sync::Mutex;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, Device, Layout, Shape, Tensor, bail};

use crate::kernels;
use crate::small_gemm::{self, Packed};

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

/// What the backward pass needs from the forward pass (all batch-major: row = b·T + t).
#[derive(Debug)]
struct Cache {
    dims: Dims,
    /// The input, `[B·T, F]`.
    x: CpuStorage,
    /// Hidden state entering each step, `[B·T, H]` (zeros at t = 0).
    h_in: CpuStorage,
    /// Cell state entering each step, `[B·T, H]`.
    c_in: Vec<f32>,
    /// Gate activations (i, f, g, o after their non-linearities), `[B·T, 4H]`.
    acts: Vec<f32>,
    /// tanh of the cell state leaving each step, `[B·T, H]`.
    tanh_c: Vec<f32>,
    /// `W_hh` as stored, `[4H, H]` (for dh = dz · W_hh).
    w_hh: CpuStorage,
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

fn f32s_mut(s: &mut CpuStorage) -> candle_core::Result<&mut [f32]> {
    match s {
        CpuStorage::F32(v) => Ok(v),
        other => bail!("lstm_seq: expected f32, got {:?}", other.dtype()),
    }
}

/// `lhs (m×k) · rhs (k×n)` with explicit layouts; returns a contiguous `m×n`.
fn gemm(
    lhs: &CpuStorage,
    lhs_l: &Layout,
    rhs: &CpuStorage,
    rhs_l: &Layout,
    (m, n, k): (usize, usize, usize),
) -> candle_core::Result<CpuStorage> {
    lhs.matmul(rhs, (1, m, n, k), lhs_l, rhs_l)
}

/// A strided 2-D view: `rows × cols`, row stride `rs`, starting at `offset`.
fn view(rows: usize, cols: usize, rs: usize, cs: usize, offset: usize) -> Layout {
    Layout::new(Shape::from((rows, cols)), vec![rs, cs], offset)
}

/// Splits the packed parameter matrix into transposed weights and the summed bias.
struct Unpacked {
    /// `W_ihᵀ`, `[F, 4H]`.
    wx_t: CpuStorage,
    /// `W_hhᵀ`, `[H, 4H]`.
    wh_t: CpuStorage,
    /// `W_hh`, `[4H, H]`.
    wh: CpuStorage,
    /// `b_ih + b_hh`, `[4H]` (derived inside every forward: AdamW updates weights in place).
    bias: Vec<f32>,
}

fn unpack(w: &[f32], d: Dims) -> Unpacked {
    let (g, f, h, cols) = (d.gates(), d.inputs, d.hidden, d.packed_cols());
    let mut wx_t = vec![0f32; f * g];
    let mut wh_t = vec![0f32; h * g];
    let mut wh = vec![0f32; g * h];
    let mut bias = vec![0f32; g];
    for r in 0..g {
        let row = &w[r * cols..(r + 1) * cols];
        for k in 0..f {
            wx_t[k * g + r] = row[k];
        }
        for k in 0..h {
            wh_t[k * g + r] = row[f + k];
        }
        wh[r * h..(r + 1) * h].copy_from_slice(&row[f..f + h]);
        bias[r] = row[f + h] + row[f + h + 1];
    }
    Unpacked {
        wx_t: CpuStorage::F32(wx_t),
        wh_t: CpuStorage::F32(wh_t),
        wh: CpuStorage::F32(wh),
        bias,
    }
}

/// The per-step state and outputs of a forward pass.
struct Fwd {
    d: Dims,
    keep: bool,
    /// Hidden state entering each step (`[B·T, H]` when keeping, else `[B, H]`).
    h_in: CpuStorage,
    c_in: Vec<f32>,
    acts: Vec<f32>,
    tanh_c: Vec<f32>,
    /// Cell state entering the current step, `[B, H]`.
    c_cur: Vec<f32>,
    /// Last hidden state, `[B, H]`.
    h_out: Vec<f32>,
}

impl Fwd {
    /// The element-wise part of step `t`: gates = XP + bias + recurrent, non-linearities, the
    /// cell and hidden updates. Inlined into a SIMD-dispatched closure (AVX2/FMA when the
    /// CPU has it), where the compiler vectorises every inner loop.
    #[inline(always)]
    fn step(
        &mut self,
        t: usize,
        xp: &[f32],
        bias: &[f32],
        wh_t: &Packed,
    ) -> candle_core::Result<()> {
        let Dims {
            batch,
            steps,
            hidden: h,
            ..
        } = self.d;
        let g = 4 * h;
        let keep = self.keep;
        // Row of (b, t) in the per-step buffers is b·rs + row0: all steps kept, or one step.
        let (row0, rs) = if keep { (t, steps) } else { (0, 1) };
        for b in 0..batch {
            let arow = b * rs + row0;
            let a = &mut self.acts[arow * g..(arow + 1) * g];
            let x = &xp[(b * steps + t) * g..(b * steps + t + 1) * g];
            for j in 0..g {
                a[j] = x[j] + bias[j];
            }
        }
        let hs = f32s_mut(&mut self.h_in)?;
        if t > 0 {
            // Recurrent part, accumulated straight into the gates: h_{t-1} · W_hhᵀ.
            small_gemm::gemm(
                batch,
                &hs[row0 * h..],
                rs * h,
                wh_t,
                &mut self.acts[row0 * g..],
                rs * g,
                true,
            );
        }
        for b in 0..batch {
            let row = b * steps + t;
            let arow = b * rs + row0;
            let a = &mut self.acts[arow * g..(arow + 1) * g];
            kernels::sigmoid_inplace(&mut a[..2 * h]);
            kernels::tanh_inplace(&mut a[2 * h..3 * h]);
            kernels::sigmoid_inplace(&mut a[3 * h..]);
            let (ig, rest) = a.split_at(h);
            let (fg, rest) = rest.split_at(h);
            let (gg, og) = rest.split_at(h);
            let c = &mut self.c_cur[b * h..(b + 1) * h];
            if keep {
                self.c_in[row * h..(row + 1) * h].copy_from_slice(c);
            }
            for j in 0..h {
                c[j] = fg[j] * c[j] + ig[j] * gg[j];
            }
            // h_t goes to the next step's input slot, or to the output after the last step.
            let dst = if t + 1 == steps {
                &mut self.h_out[b * h..(b + 1) * h]
            } else if keep {
                &mut hs[(row + 1) * h..(row + 2) * h]
            } else {
                &mut hs[b * h..(b + 1) * h]
            };
            dst.copy_from_slice(c);
            kernels::tanh_inplace(dst);
            if keep {
                self.tanh_c[row * h..(row + 1) * h].copy_from_slice(dst);
            }
            for j in 0..h {
                dst[j] *= og[j];
            }
        }
        Ok(())
    }
}

/// One forward step as a `pulp` SIMD op: `with_simd` is always inlined into the
/// target-feature function `dispatch` picks, so the step's loops compile for AVX2/FMA.
/// (A closure would not be inlined there and would stay SSE2-only.)
struct FwdStep<'a> {
    st: &'a mut Fwd,
    t: usize,
    xp: &'a [f32],
    bias: &'a [f32],
    wh_t: &'a Packed,
}

impl pulp::WithSimd for FwdStep<'_> {
    type Output = candle_core::Result<()>;
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> Self::Output {
        self.st.step(self.t, self.xp, self.bias, self.wh_t)
    }
}

/// One backward step as a `pulp` SIMD op (see [`FwdStep`]).
struct BwdStep<'a> {
    c: &'a Cache,
    t: usize,
    dh_next: &'a [f32],
    dc_next: &'a mut [f32],
    dz: &'a mut [f32],
}

impl pulp::WithSimd for BwdStep<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        backward_step(self.c, self.t, self.dh_next, self.dc_next, self.dz)
    }
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
    if g % 4 != 0 || cols != inputs + g / 4 + 2 || steps == 0 {
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
    let h = d.hidden;
    let w_all = f32s(w)?;
    let w_all = &w_all[wl.start_offset()..wl.start_offset() + g * cols];
    let u = unpack(w_all, d);

    let rows = batch * steps;
    // Input projection of every step at once: XP = X · W_ihᵀ, [B·T, 4H].
    let x_view = Layout::contiguous_with_offset((rows, inputs), xl.start_offset());
    let xp = gemm(
        x,
        &x_view,
        &u.wx_t,
        &Layout::contiguous((inputs, g)),
        (rows, g, inputs),
    )?;
    let xp = f32s(&xp)?;

    let mut st = Fwd {
        d,
        keep,
        h_in: CpuStorage::F32(vec![0f32; if keep { rows * h } else { batch * h }]),
        c_in: if keep {
            vec![0f32; rows * h]
        } else {
            Vec::new()
        },
        acts: vec![0f32; if keep { rows * g } else { batch * g }],
        tanh_c: if keep {
            vec![0f32; rows * h]
        } else {
            Vec::new()
        },
        c_cur: vec![0f32; batch * h],
        h_out: vec![0f32; batch * h],
    };
    let arch = pulp::Arch::new();
    // Packed once: every step reads the same recurrent weights.
    let wh_t = &Packed::new(f32s(&u.wh_t)?, h, g);
    for t in 0..steps {
        arch.dispatch(FwdStep {
            st: &mut st,
            t,
            xp,
            bias: &u.bias,
            wh_t,
        })?;
    }
    let cache = if keep {
        let xs = f32s(x)?;
        let start = xl.start_offset();
        Some(Cache {
            dims: d,
            x: CpuStorage::F32(xs[start..start + rows * inputs].to_vec()),
            h_in: st.h_in,
            c_in: st.c_in,
            acts: st.acts,
            tanh_c: st.tanh_c,
            w_hh: u.wh,
        })
    } else {
        None
    };
    Ok((st.h_out, cache))
}

/// The element-wise part of BPTT at step `t`: gate pre-activation gradients `dz` from the
/// incoming `dh`, and the cell gradient carried to step `t - 1`.
#[inline(always)]
fn backward_step(c: &Cache, t: usize, dh_next: &[f32], dc_next: &mut [f32], dzs: &mut [f32]) {
    let Dims {
        batch,
        steps,
        hidden: h,
        ..
    } = c.dims;
    let g = 4 * h;
    for b in 0..batch {
        let row = b * steps + t;
        let a = &c.acts[row * g..(row + 1) * g];
        let (ig, rest) = a.split_at(h);
        let (fg, rest) = rest.split_at(h);
        let (gg, og) = rest.split_at(h);
        let tc = &c.tanh_c[row * h..(row + 1) * h];
        let cp = &c.c_in[row * h..(row + 1) * h];
        let dh = &dh_next[b * h..(b + 1) * h];
        let dcn = &mut dc_next[b * h..(b + 1) * h];
        let z = &mut dzs[row * g..(row + 1) * g];
        let (zi, rest) = z.split_at_mut(h);
        let (zf, rest) = rest.split_at_mut(h);
        let (zg, zo) = rest.split_at_mut(h);
        for j in 0..h {
            let dc = dcn[j] + dh[j] * og[j] * (1.0 - tc[j] * tc[j]);
            let d_o = dh[j] * tc[j];
            zi[j] = dc * gg[j] * ig[j] * (1.0 - ig[j]);
            zf[j] = dc * cp[j] * fg[j] * (1.0 - fg[j]);
            zg[j] = dc * ig[j] * (1.0 - gg[j] * gg[j]);
            zo[j] = d_o * og[j] * (1.0 - og[j]);
            dcn[j] = dc * fg[j];
        }
    }
}

/// BPTT: the gradient of the packed weights given the gradient of the last hidden state.
fn backward(c: &Cache, grad_h: &[f32]) -> candle_core::Result<Vec<f32>> {
    let d = c.dims;
    let (batch, steps, f, h, g) = (d.batch, d.steps, d.inputs, d.hidden, d.gates());
    let rows = batch * steps;
    let mut dz = CpuStorage::F32(vec![0f32; rows * g]);
    let mut dh_next = grad_h.to_vec();
    let mut dc_next = vec![0f32; batch * h];
    let arch = pulp::Arch::new();
    let w_hh = &Packed::new(f32s(&c.w_hh)?, g, h);
    for t in (0..steps).rev() {
        let dzs = f32s_mut(&mut dz)?;
        arch.dispatch(BwdStep {
            c,
            t,
            dh_next: &dh_next,
            dc_next: &mut dc_next,
            dz: dzs,
        });
        if t > 0 {
            // dh_{t-1} = dz_t · W_hh
            let dzs = f32s(&dz)?;
            small_gemm::gemm(
                batch,
                &dzs[t * g..],
                steps * g,
                w_hh,
                &mut dh_next,
                h,
                false,
            );
        }
    }
    // Weight gradients over all steps at once: dW_ih = dzᵀ · X, dW_hh = dzᵀ · H_in.
    let dz_t = view(g, rows, 1, g, 0);
    let dwx = gemm(
        &dz,
        &dz_t,
        &c.x,
        &Layout::contiguous((rows, f)),
        (g, f, rows),
    )?;
    let dwh = gemm(
        &dz,
        &dz_t,
        &c.h_in,
        &Layout::contiguous((rows, h)),
        (g, h, rows),
    )?;
    let (dwx, dwh, dzs) = (f32s(&dwx)?, f32s(&dwh)?, f32s(&dz)?);
    let mut db = vec![0f32; g];
    for r in 0..rows {
        for (acc, v) in db.iter_mut().zip(&dzs[r * g..(r + 1) * g]) {
            *acc += v;
        }
    }
    let cols = d.packed_cols();
    let mut out = vec![0f32; g * cols];
    for r in 0..g {
        let o = &mut out[r * cols..(r + 1) * cols];
        o[..f].copy_from_slice(&dwx[r * f..(r + 1) * f]);
        o[f..f + h].copy_from_slice(&dwh[r * h..(r + 1) * h]);
        o[f + h] = db[r];
        o[f + h + 1] = db[r];
    }
    Ok(out)
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
        let guard = match self.cache.lock() {
            Ok(g) => g,
            Err(_) => bail!("lstm_seq: activation cache poisoned"),
        };
        let Some(cache) = guard.as_ref() else {
            bail!("lstm_seq: backward without a training forward (use LstmSeq::training)");
        };
        let gw = backward(cache, &grad_h)?;
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

    use crate::net::{LstmNet, LstmWeights, names};

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
        let inf = crate::net::InferenceWeights::new(&w);
        let mut scratch = crate::net::Scratch::default();
        let a = a.to_vec1::<f32>().unwrap();
        for (i, window) in xs.chunks(6 * 3).enumerate() {
            assert!((inf.predict(window, &mut scratch) - a[i]).abs() < 1e-5);
        }
    }
}
