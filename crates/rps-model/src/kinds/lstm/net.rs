//! The network: one LSTM layer over a window of standardised inputs, then a linear head that
//! predicts the standardised next-hour log return. Two forms of the same weights:
//! [`LstmNet`] (candle variables, for training through the fused op) and [`LstmWeights`]
//! (plain f32, for saving, loading and the allocation-light inference path).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::seq_op::LstmSeq;
use crate::small_gemm::{Init, Packed, Src, gemm};
use crate::{ModelError, Result, kernels};

/// Tensor names in `model.safetensors`; they match `torch.nn.LSTM` (prefix `lstm.`) and
/// `torch.nn.Linear` (prefix `head.`), so the file loads into PyTorch for cross-checks.
pub mod names {
    /// Input-to-hidden weights, `[4H, F]`.
    pub const W_IH: &str = "lstm.weight_ih_l0";
    /// Hidden-to-hidden weights, `[4H, H]`.
    pub const W_HH: &str = "lstm.weight_hh_l0";
    /// Input-to-hidden bias, `[4H]`.
    pub const B_IH: &str = "lstm.bias_ih_l0";
    /// Hidden-to-hidden bias, `[4H]`.
    pub const B_HH: &str = "lstm.bias_hh_l0";
    /// Head weight, `[1, H]`.
    pub const HEAD_W: &str = "head.weight";
    /// Head bias, `[1]`.
    pub const HEAD_B: &str = "head.bias";
}

/// The weights as plain row-major f32 arrays (PyTorch shapes and gate order i, f, g, o).
#[derive(Debug, Clone, PartialEq)]
pub struct LstmWeights {
    /// Model inputs per time step (`F`).
    pub inputs: usize,
    /// Hidden units (`H`).
    pub hidden: usize,
    /// `[4H, F]`
    pub w_ih: Vec<f32>,
    /// `[4H, H]`
    pub w_hh: Vec<f32>,
    /// `[4H]`
    pub b_ih: Vec<f32>,
    /// `[4H]`
    pub b_hh: Vec<f32>,
    /// `[H]` (the `[1, H]` head weight)
    pub head_w: Vec<f32>,
    /// The head's bias (its `[1]` tensor).
    pub head_b: f32,
}

impl LstmWeights {
    /// Initial weights from a seeded ChaCha8 stream: uniform ±1/√H like PyTorch (candle's
    /// own CPU generator cannot be seeded, so this is what makes training reproducible).
    /// The forget-gate bias starts at 1 (a common LSTM practice) so early gradients flow
    /// through the cell state.
    pub fn init(inputs: usize, hidden: usize, seed: u64) -> LstmWeights {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let bound = 1.0 / (hidden as f32).sqrt();
        let mut draw =
            |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-bound..bound)).collect() };
        let g = 4 * hidden;
        let w_ih = draw(g * inputs);
        let w_hh = draw(g * hidden);
        let mut b_ih = draw(g);
        let b_hh = draw(g);
        for b in &mut b_ih[hidden..2 * hidden] {
            *b += 1.0;
        }
        let head_w = draw(hidden);
        let head_b = 0.0;
        LstmWeights {
            inputs,
            hidden,
            w_ih,
            w_hh,
            b_ih,
            b_hh,
            head_w,
            head_b,
        }
    }

    /// The weights as named tensors (see [`names`]).
    pub fn to_tensors(&self) -> Result<HashMap<String, Tensor>> {
        let (g, f, h) = (4 * self.hidden, self.inputs, self.hidden);
        let dev = Device::Cpu;
        let t = |v: &[f32], shape: &[usize]| {
            Tensor::from_slice(v, shape, &dev)
                .map_err(ModelError::candle("building weight tensors"))
        };
        Ok(HashMap::from([
            (names::W_IH.to_string(), t(&self.w_ih, &[g, f])?),
            (names::W_HH.to_string(), t(&self.w_hh, &[g, h])?),
            (names::B_IH.to_string(), t(&self.b_ih, &[g])?),
            (names::B_HH.to_string(), t(&self.b_hh, &[g])?),
            (names::HEAD_W.to_string(), t(&self.head_w, &[1, h])?),
            (names::HEAD_B.to_string(), t(&[self.head_b], &[1])?),
        ]))
    }

    /// Reads weights from named tensors, checking every shape against `inputs`/`hidden`.
    pub fn from_tensors(
        map: &HashMap<String, Tensor>,
        inputs: usize,
        hidden: usize,
        path: &Path,
    ) -> Result<LstmWeights> {
        let (g, f, h) = (4 * hidden, inputs, hidden);
        let get = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
            let bad = |reason: String| ModelError::BadPackage {
                path: path.to_path_buf(),
                reason,
            };
            let t = map
                .get(name)
                .ok_or_else(|| bad(format!("tensor '{name}' is missing")))?;
            if t.dims() != shape {
                return Err(bad(format!(
                    "tensor '{name}' has shape {:?}, expected {shape:?}",
                    t.dims()
                )));
            }
            t.to_dtype(DType::F32)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(|e| bad(format!("tensor '{name}': {e}")))
        };
        Ok(LstmWeights {
            inputs,
            hidden,
            w_ih: get(names::W_IH, &[g, f])?,
            w_hh: get(names::W_HH, &[g, h])?,
            b_ih: get(names::B_IH, &[g])?,
            b_hh: get(names::B_HH, &[g])?,
            head_w: get(names::HEAD_W, &[1, h])?,
            head_b: get(names::HEAD_B, &[1])?[0],
        })
    }

    /// Writes `model.safetensors`.
    pub fn save(&self, path: &Path) -> Result<()> {
        candle_core::safetensors::save(&self.to_tensors()?, path)
            .map_err(ModelError::candle(format!("writing {}", path.display())))
    }

    /// Reads `model.safetensors` (fully into memory: the file may be replaced while serving).
    pub fn load(path: &Path, inputs: usize, hidden: usize) -> Result<LstmWeights> {
        let map = candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| {
            ModelError::BadPackage {
                path: path.to_path_buf(),
                reason: format!("unreadable weights: {e}"),
            }
        })?;
        LstmWeights::from_tensors(&map, inputs, hidden, path)
    }

    /// Whether every weight is finite (a diverged run is refused rather than packaged).
    pub fn all_finite(&self) -> bool {
        [&self.w_ih, &self.w_hh, &self.b_ih, &self.b_hh, &self.head_w]
            .iter()
            .all(|v| v.iter().all(|x| x.is_finite()))
            && self.head_b.is_finite()
    }
}

/// Weights laid out for batch-1 inference: `W_ihᵀ` and `W_hhᵀ` packed for the SIMD kernel
/// of [`crate::small_gemm`] (the one training runs), biases pre-summed. Built once per loaded
/// model (serving weights never change in place, unlike training weights under AdamW).
///
/// The input projection of all steps is one `[T, F]·[F, 4H]` product (four rows share each
/// weight load); the recurrence is then one `[1, H]·[H, 4H]` product per step added onto
/// that step's row. Measured at the serving shape (48 steps, 39 inputs, hidden 64;
/// `cargo run --release -p rps-model --example infer_speed`): 130–140 µs per window with
/// auto-vectorised axpys per weight row, 44–67 µs like this (the range is this shared
/// machine's variation between runs; the old path, timed alongside, did not improve).
#[derive(Debug, Clone)]
pub struct InferenceWeights {
    inputs: usize,
    hidden: usize,
    /// `W_ihᵀ`, `[F, 4H]`, packed.
    wx: Packed,
    /// `W_hhᵀ`, `[H, 4H]`, packed.
    wh: Packed,
    bias: Vec<f32>,
    head_w: Vec<f32>,
    head_b: f32,
}

impl InferenceWeights {
    /// Packs the weights for inference (transposed, biases summed).
    pub fn new(w: &LstmWeights) -> InferenceWeights {
        let (f, h) = (w.inputs, w.hidden);
        let bias = w.b_ih.iter().zip(&w.b_hh).map(|(a, b)| a + b).collect();
        InferenceWeights {
            inputs: f,
            hidden: h,
            wx: Packed::from_fn(f, 4 * h, |kk, r| w.w_ih[r * f + kk]),
            wh: Packed::from_fn(h, 4 * h, |kk, r| w.w_hh[r * h + kk]),
            bias,
            head_w: w.head_w.clone(),
            head_b: w.head_b,
        }
    }

    /// Model inputs per time step (`F`).
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// Runs the network over one window (`steps × F`, row-major, standardised) and returns
    /// the standardised prediction. `scratch` is reused across calls to avoid allocation.
    pub fn predict(&self, window: &[f32], scratch: &mut Scratch) -> f32 {
        // Runs with AVX2/FMA code when the CPU has it (runtime dispatch, see `kernels`).
        pulp::Arch::new().dispatch(Predict {
            w: self,
            window,
            scratch,
        })
    }

    #[inline(always)]
    fn predict_inner(&self, window: &[f32], scratch: &mut Scratch) -> f32 {
        let (f, h) = (self.inputs, self.hidden);
        let steps = window.len() / f;
        scratch.resize(h, steps);
        let Scratch { gates, hs, cs } = scratch;
        hs.fill(0.0);
        cs.fill(0.0);
        gemm(
            steps,
            &[Src::rows(window, f, f)],
            &self.wx,
            gates,
            4 * h,
            Init::Bias(&self.bias),
        );
        for gates in gates.chunks_exact_mut(4 * h) {
            gemm(
                1,
                &[Src::rows(hs, h, h)],
                &self.wh,
                gates,
                4 * h,
                Init::Accumulate,
            );
            kernels::sigmoid_inplace(&mut gates[..2 * h]);
            kernels::tanh_inplace(&mut gates[2 * h..3 * h]);
            kernels::sigmoid_inplace(&mut gates[3 * h..]);
            let (ig, rest) = gates.split_at(h);
            let (fg, rest) = rest.split_at(h);
            let (gg, og) = rest.split_at(h);
            // Zipped iterators rather than indexing: no bounds checks, so these vectorise.
            for (((c, &f), &i), &g) in cs.iter_mut().zip(fg).zip(ig).zip(gg) {
                *c = f * *c + i * g;
            }
            for ((hj, &c), &o) in hs.iter_mut().zip(cs.iter()).zip(og) {
                *hj = kernels::tanh(c) * o;
            }
        }
        self.head_b + hs.iter().zip(&self.head_w).map(|(a, b)| a * b).sum::<f32>()
    }
}

/// [`InferenceWeights::predict`] as a `pulp` SIMD op, so its loops compile for AVX2/FMA.
struct Predict<'a> {
    w: &'a InferenceWeights,
    window: &'a [f32],
    scratch: &'a mut Scratch,
}

impl pulp::WithSimd for Predict<'_> {
    type Output = f32;
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> f32 {
        self.w.predict_inner(self.window, self.scratch)
    }
}

/// Reusable buffers for [`InferenceWeights::predict`].
#[derive(Debug, Default, Clone)]
pub struct Scratch {
    gates: Vec<f32>,
    hs: Vec<f32>,
    cs: Vec<f32>,
}

impl Scratch {
    fn resize(&mut self, hidden: usize, steps: usize) {
        self.gates.resize(steps * 4 * hidden, 0.0);
        self.hs.resize(hidden, 0.0);
        self.cs.resize(hidden, 0.0);
    }
}

/// The network as candle variables, for training.
#[derive(Debug)]
pub struct LstmNet {
    inputs: usize,
    hidden: usize,
    w_ih: Var,
    w_hh: Var,
    b_ih: Var,
    b_hh: Var,
    head_w: Var,
    head_b: Var,
}

impl LstmNet {
    /// Variables initialised from `w`.
    pub fn new(w: &LstmWeights) -> Result<LstmNet> {
        let t = w.to_tensors()?;
        let var = |name: &str| -> Result<Var> {
            let tensor = t
                .get(name)
                .ok_or_else(|| ModelError::Training(format!("no tensor {name}")))?;
            Var::from_tensor(tensor).map_err(ModelError::candle("creating variables"))
        };
        Ok(LstmNet {
            inputs: w.inputs,
            hidden: w.hidden,
            w_ih: var(names::W_IH)?,
            w_hh: var(names::W_HH)?,
            b_ih: var(names::B_IH)?,
            b_hh: var(names::B_HH)?,
            head_w: var(names::HEAD_W)?,
            head_b: var(names::HEAD_B)?,
        })
    }

    /// All trainable variables.
    pub fn vars(&self) -> Vec<Var> {
        vec![
            self.w_ih.clone(),
            self.w_hh.clone(),
            self.b_ih.clone(),
            self.b_hh.clone(),
            self.head_w.clone(),
            self.head_b.clone(),
        ]
    }

    /// Predictions `[batch]` for windows `x` `[batch, steps, F]`. `train` keeps the
    /// activations the backward pass needs.
    pub fn forward(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        // Packing happens inside forward (never cached): AdamW updates the variables in place.
        let packed = Tensor::cat(
            &[
                self.w_ih.as_tensor(),
                self.w_hh.as_tensor(),
                &self.b_ih.as_tensor().unsqueeze(1)?,
                &self.b_hh.as_tensor().unsqueeze(1)?,
            ],
            1,
        )?;
        let h_last = if train {
            x.apply_op2(&packed, LstmSeq::training())?
        } else {
            x.apply_op2_no_bwd(&packed, &LstmSeq::inference())?
        };
        h_last
            .matmul(&self.head_w.as_tensor().t()?)?
            .broadcast_add(self.head_b.as_tensor())?
            .squeeze(1)
    }

    /// A snapshot of the current weights.
    pub fn weights(&self) -> Result<LstmWeights> {
        let v = |var: &Var| -> Result<Vec<f32>> {
            var.as_tensor()
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(ModelError::candle("reading variables"))
        };
        Ok(LstmWeights {
            inputs: self.inputs,
            hidden: self.hidden,
            w_ih: v(&self.w_ih)?,
            w_hh: v(&self.w_hh)?,
            b_ih: v(&self.b_ih)?,
            b_hh: v(&self.b_hh)?,
            head_w: v(&self.head_w)?,
            head_b: v(&self.head_b)?.first().copied().unwrap_or(0.0),
        })
    }
}
