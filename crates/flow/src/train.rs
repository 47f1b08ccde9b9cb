//! Reverse-KL self-training (arXiv:2101.08176 section III.D): minimize
//! `KL(q || p) = E_{x~q}[log q(x) - log p(x)]` up to `log Z`, estimated on each batch
//! of flow samples as `loss = mean(log q - log p)`, `log p = -S`.

use crate::model::{Flow, Record};
use latflow_comm::wire::{Reader, Writer};
use latflow_comm::{Comm, SingleProcess};
use latflow_tensor::tensor::first_nonfinite;
use latflow_tensor::{Adam, AdamConfig, AdamSnapshot, Device, Float, Tensor, Var};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rayon::prelude::*;
use std::fmt;

/// An action `S(x)` on a batch, differentiable through the tape: `(N, ...) -> (N,)` (the
/// training loss's `log p = -S`). The slice form with its analytic force, for HMC, is
/// `latflow_physics::Action`.
pub trait TapeAction<T: Float>: Sync {
    /// `S(x)` per sample.
    fn action(&self, x: &Var<T>) -> Var<T>;
}

impl<T: Float, F: Fn(&Var<T>) -> Var<T> + Sync> TapeAction<T> for F {
    fn action(&self, x: &Var<T>) -> Var<T> {
        self(x)
    }
}

/// What a training step minimizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Objective {
    /// `KL(q || p)`: `loss = mean(log q(x) + S(x))` over flow samples `x`. The default.
    #[default]
    Flow,
    /// `KL(q_mix || p)` of the flow's Z2 mixture `q_mix(x) = (q(x) + q(-x)) / 2`
    /// ([`crate::z2`], arXiv:2107.00734): `loss = mean(log q_mix(x) + (S(x) + S(-x)) / 2)`
    /// over flow samples `x` (exact for any action, since `q_mix` is even; for an even action
    /// the second term is `S(x)`). `log q(-x)` is the flow's reverse pass on the tape, so a
    /// step costs about twice a [`Objective::Flow`] step; the prior needs a tape form
    /// ([`crate::prior::Prior::log_prob_var`]). The metrics (`logq`, ESS) are those of `q_mix`.
    Z2Mixture,
}

impl Objective {
    /// Whether `flow` can be trained with this objective: [`Objective::Z2Mixture`] needs the
    /// prior's tape form ([`crate::prior::Prior::log_prob_var`]; the normal and free-field
    /// priors have one, the U(1) Haar prior not). Callers check this before training, since a
    /// step would panic.
    ///
    /// # Errors
    /// A message naming what is missing.
    pub fn check<T: Float>(&self, flow: &Flow<T>) -> Result<(), String> {
        if *self == Objective::Z2Mixture {
            let mut shape = vec![1];
            shape.extend(flow.prior.shape());
            if flow.prior.log_prob_var(&Var::constant(Tensor::zeros(&shape))).is_none() {
                return Err("training through the Z2 mixture needs a prior with a tape form of log r \
                            (the normal or free-field prior)"
                    .into());
            }
        }
        Ok(())
    }
}

/// `(S, log q)` per sample of the step's objective, from flow samples `x` with `log q(x)`.
fn objective_terms<T: Float, A: TapeAction<T> + ?Sized>(
    objective: Objective,
    flow: &Flow<T>,
    action: &A,
    x: &Var<T>,
    logq: Var<T>,
    params: &[Var<T>],
) -> (Var<T>, Var<T>) {
    match objective {
        Objective::Flow => (action.action(x), logq),
        Objective::Z2Mixture => {
            let s = action.action(x).add(&action.action(&x.neg())).mul_scalar(0.5);
            (s, crate::z2::mixture_log_prob_var(flow, x, &logq, params))
        }
    }
}

/// Training hyper-parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Samples per step.
    pub batch: usize,
    /// Adam settings (learning rate at the start).
    pub adam: AdamConfig,
    /// Learning rate at the last step; in between it follows a cosine from
    /// `adam.lr`. `None` keeps it constant.
    pub lr_final: Option<f64>,
    /// Total number of steps (for the schedule).
    pub steps: usize,
    /// Seed; step `k` draws its prior samples from an RNG seeded by `(seed, k)`, so a
    /// resumed run continues exactly.
    pub seed: u64,
}

/// What one training step measured (on its batch).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepMetrics {
    /// Step number, from 1.
    pub step: usize,
    /// `mean(log q - log p)`.
    pub loss: f64,
    /// Effective sample size fraction of the batch, `(sum w)^2 / (N sum w^2)`, `w = p/q`.
    pub ess: f64,
    /// `mean(log p)` = `-mean(S)`.
    pub logp: f64,
    /// `mean(log q)`.
    pub logq: f64,
    /// Learning rate used.
    pub lr: f64,
}

/// Why training stopped early.
#[derive(Clone, Debug, PartialEq)]
pub enum TrainError {
    /// The loss, a gradient, or (on the CPU) a parameter after the update was NaN or
    /// infinite at this step; the trainer holds the parameters and Adam's state of step
    /// `kept`, the last whose loss and parameters were finite.
    NonFinite {
        /// Step at which it happened.
        step: usize,
        /// What was non-finite.
        what: String,
        /// The step whose parameters the trainer now holds.
        kept: usize,
    },
    /// A parameter on the GPU was non-finite after this step's update; it cannot be undone
    /// there, so the flow must not be saved.
    Diverged {
        /// Step at which it happened.
        step: usize,
        /// What was non-finite.
        what: String,
    },
}

impl fmt::Display for TrainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrainError::NonFinite { step, what, kept } => {
                write!(f, "non-finite {what} at step {step}; parameters of step {kept} kept")
            }
            TrainError::Diverged { step, what } => write!(
                f,
                "non-finite {what} at step {step}; the parameters on the GPU cannot be restored, \
                 so the checkpoint of the last era is kept"
            ),
        }
    }
}

impl std::error::Error for TrainError {}

/// Effective sample size fraction from log weights `lw = log p - log q`:
/// `ESS/N = exp(2 logsumexp(lw) - logsumexp(2 lw)) / N`.
pub fn ess(lw: &[f64]) -> f64 {
    let lse = |v: &mut dyn Iterator<Item = f64>| {
        let v: Vec<f64> = v.collect();
        let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
    };
    let a = lse(&mut lw.iter().copied());
    let b = lse(&mut lw.iter().map(|x| 2.0 * x));
    (2.0 * a - b).exp() / lw.len() as f64
}

/// A flow with its optimizer state.
pub struct Trainer<T: Float> {
    /// The model being trained.
    pub flow: Flow<T>,
    /// Adam state.
    pub adam: Adam<T>,
    /// Hyper-parameters.
    pub config: TrainConfig,
    /// Steps taken.
    pub step: usize,
    /// What each step minimizes. [`Trainer::new`] sets [`Objective::Flow`] (the tutorial's).
    pub objective: Objective,
    /// (CPU) the parameters and Adam's state before the last update (`Some(step)` when they
    /// hold a state): when the next loss is non-finite, the last update made the flow produce
    /// it, and these are the last parameters whose loss was finite. Buffers reused each step.
    previous: Option<usize>,
    prev_params: Vec<Vec<T>>,
    prev_adam: AdamSnapshot<T>,
    /// The state before the current update (swapped with the `prev_` buffers on success).
    cur_params: Vec<Vec<T>>,
    cur_adam: AdamSnapshot<T>,
}

impl<T: Float> Trainer<T> {
    /// A trainer at step 0 with fresh Adam state.
    pub fn new(flow: Flow<T>, config: TrainConfig) -> Self {
        let lens: Vec<usize> = flow.params().iter().map(|t| t.len()).collect();
        let adam = Adam::new(config.adam, &lens);
        Trainer {
            flow,
            adam,
            config,
            step: 0,
            objective: Objective::Flow,
            previous: None,
            prev_params: Vec::new(),
            prev_adam: AdamSnapshot::default(),
            cur_params: Vec::new(),
            cur_adam: AdamSnapshot::default(),
        }
    }

    /// Learning rate of step `k` (from 1) under the cosine schedule.
    pub fn lr_at(&self, k: usize) -> f64 {
        let lr0 = self.config.adam.lr;
        match self.config.lr_final {
            None => lr0,
            Some(lr1) => {
                let frac = (k.saturating_sub(1)) as f64 / (self.config.steps.max(2) - 1) as f64;
                lr1 + 0.5 * (lr0 - lr1) * (1.0 + (std::f64::consts::PI * frac.min(1.0)).cos())
            }
        }
    }

    /// One step: sample a batch, `loss = mean(log q + S)`, backward, Adam update.
    /// A non-finite loss or gradient returns an error and leaves the parameters as they were.
    ///
    /// The batch is split into [`shard_count`] shards, each sampled (RNG seeded by the run seed,
    /// the step and the shard), pushed through the flow and differentiated on its own tape
    /// as one rayon task; their gradients are added in shard order. Data parallelism keeps
    /// both cores busy through the whole step, and the fixed shard count makes the result
    /// independent of the number of threads.
    pub fn step<A: TapeAction<T> + ?Sized>(&mut self, action: &A) -> Result<StepMetrics, TrainError> {
        self.step_over(action, &SingleProcess)
    }

    /// [`Trainer::step`] with the batch's shards spread over the ranks of `comm` (data
    /// parallelism across processes): rank `r` of `p` computes the contiguous shards
    /// [`latflow_comm::share`]`(shards, p, r)`, every rank receives every shard's loss,
    /// gradients, `S` and `log q` ([`Comm::all_gather`]) and adds them in shard order, as
    /// one process does, then takes the same Adam update. So the parameters (and the metrics)
    /// are bit for bit those of one process, for any number of ranks and threads, and every
    /// rank holds them. Each rank sends its shards' gradients, `shards / p` times the
    /// parameter count in values (`docs/scaling.md`).
    ///
    /// # Panics
    /// With more than one rank on the GPU (the device path has no shards to spread).
    pub fn step_over<A: TapeAction<T> + ?Sized>(
        &mut self,
        action: &A,
        comm: &dyn Comm,
    ) -> Result<StepMetrics, TrainError> {
        if self.flow.device() == Device::Cuda {
            assert_eq!(comm.size(), 1, "Trainer::step_over: training on the GPU runs on one rank");
            return self.step_gpu(action);
        }
        let k = self.step + 1;
        let n = self.config.batch;
        let shards = shard_count(n);
        let base = step_seed(self.config.seed, k);
        let flow = &self.flow;
        let objective = self.objective;
        // rayon::scope runs the loop on a worker thread even when this rank has one shard
        // (a one-item parallel loop would otherwise run on the calling thread, where the
        // conv kernels split the shard over threads and add its gradient in another order).
        // One task per shard (`with_max_len(1)`): rayon's adaptive splitting otherwise stops
        // at runs of several shards that one thread works through in order while the other,
        // done with its own, idles (phi^4 at batch 1024, 2 cores: single-thread stretches of
        // up to ~70 ms at the end of a step before, about one shard after; perf, 2026-12-02)
        let mine = latflow_comm::share(shards, comm.size(), comm.rank());
        let outs: Vec<Shard<T>> = rayon::scope(|_| {
            mine.into_par_iter()
                .with_max_len(1)
                .map(|i| {
                    let size = shard_size(n, i);
                    let mut rng = StdRng::seed_from_u64(step_seed(base, i));
                    let params = flow.param_vars(Record::Params);
                    let (_, x, logq) = flow.sample_vars(size, &mut rng, &params);
                    let (s, logq) = objective_terms(objective, flow, action, &x, logq, &params);
                    // this shard's part of mean(log q + S) over the whole batch
                    let loss = logq.add(&s).sum().mul_scalar(1.0 / n as f64);
                    let loss_v = loss.value().item().to_f64();
                    let grads = if loss_v.is_finite() { Some(loss.backward()) } else { None };
                    Shard {
                        loss: loss_v,
                        grads: grads.map(|g| params.iter().map(|p| g.get_or_zeros(p)).collect()),
                        s: s.value().data().iter().map(|v| v.to_f64()).collect(),
                        logq: logq.value().data().iter().map(|v| v.to_f64()).collect(),
                    }
                })
                .collect()
        });
        let outs = if comm.size() == 1 { outs } else { Shard::exchange(comm, &outs, &self.flow) };
        let loss_v: f64 = outs.iter().map(|o| o.loss).sum();
        if !loss_v.is_finite() {
            return Err(self.roll_back(k, "loss".into()));
        }
        let mut shards_grads = outs.iter().map(|o| o.grads.as_ref().expect("finite loss has gradients"));
        let mut gs: Vec<Tensor<T>> = shards_grads.next().expect("at least one shard").clone();
        for g in shards_grads {
            for (acc, gi) in gs.iter_mut().zip(g) {
                for (a, b) in acc.data_mut().iter_mut().zip(gi.data()) {
                    *a += *b;
                }
            }
        }
        let s: Vec<f64> = outs.iter().flat_map(|o| o.s.iter().copied()).collect();
        let logq: Vec<f64> = outs.iter().flat_map(|o| o.logq.iter().copied()).collect();
        self.finish_step(k, loss_v, gs, &s, &logq)
    }

    /// The step on the GPU: the same prior samples as on the CPU (shard `i` drawn from the
    /// RNG of shard `i` on the host, in parallel, then concatenated), pushed through the flow as one batch on
    /// the device, one backward pass, Adam on the device. The host waits for the device
    /// three times: the loss, the per-sample `S` and `log q` (metrics), the finiteness of
    /// the gradients.
    fn step_gpu<A: TapeAction<T> + ?Sized>(&mut self, action: &A) -> Result<StepMetrics, TrainError> {
        let k = self.step + 1;
        let n = self.config.batch;
        let shards = shard_count(n);
        let base = step_seed(self.config.seed, k);
        let prior = &self.flow.prior;
        let parts: Vec<(Tensor<T>, Tensor<T>)> = (0..shards)
            .into_par_iter()
            .map(|i| {
                let size = shard_size(n, i);
                let mut rng = StdRng::seed_from_u64(step_seed(base, i));
                let z = prior.sample(size, &mut rng);
                let log_r = prior.log_prob(&z);
                (z, log_r)
            })
            .collect();
        let mut shape = parts[0].0.shape().to_vec();
        shape[0] = n;
        let mut z = Vec::with_capacity(n * parts[0].0.len() / parts[0].0.shape()[0].max(1));
        let mut log_r = Vec::with_capacity(n);
        for (zi, li) in parts {
            z.extend_from_slice(zi.data());
            log_r.extend_from_slice(li.data());
        }
        let (z, log_r) = (Tensor::from_vec(&shape, z), Tensor::from_vec(&[n], log_r));
        let to_gpu = |t: Tensor<T>| t.to_device(Device::Cuda).unwrap_or_else(|e| panic!("{e}"));
        // the tape (and its references to the parameters) is gone at the end of this block,
        // so Adam updates the parameters in place
        let (loss_v, gs, s, logq) = {
            let params = self.flow.param_vars(Record::Params);
            let (x, logq) = self.flow.forward(Var::constant(to_gpu(z)), Var::constant(to_gpu(log_r)), &params);
            let (s, logq) = objective_terms(self.objective, &self.flow, action, &x, logq, &params);
            let loss = logq.add(&s).sum().mul_scalar(1.0 / n as f64);
            let loss_v = loss.value().item().to_f64();
            if !loss_v.is_finite() {
                return Err(self.roll_back(k, "loss".into()));
            }
            let grads = loss.backward();
            let gs: Vec<Tensor<T>> = params.iter().map(|p| grads.get_or_zeros(p)).collect();
            let host = |v: &Var<T>| v.value().to_host_vec().iter().map(|x| x.to_f64()).collect::<Vec<f64>>();
            (loss_v, gs, host(&s), host(&logq))
        };
        self.finish_step(k, loss_v, gs, &s, &logq)
    }

    /// A non-finite loss or gradient at step `k`: the parameters of step `k - 1` produced it,
    /// so (on the CPU) the state goes back to the one before the last update, the last whose
    /// loss was finite. On the GPU, or before any update, the state stays.
    fn roll_back(&mut self, k: usize, what: String) -> TrainError {
        match self.previous.take() {
            Some(step) => {
                self.restore_previous(step);
                TrainError::NonFinite { step: k, what, kept: step }
            }
            None => TrainError::NonFinite { step: k, what, kept: self.step },
        }
    }

    /// Puts the `prev_` state back, as the state of `step`.
    fn restore_previous(&mut self, step: usize) {
        for (p, old) in self.flow.params_mut().into_iter().zip(&self.prev_params) {
            p.data_mut().copy_from_slice(old);
        }
        self.adam.restore_from(&self.prev_adam);
        self.step = step;
        self.previous = None;
    }

    /// The end of a step on either device: gradient check, Adam update, metrics.
    fn finish_step(
        &mut self,
        k: usize,
        loss_v: f64,
        gs: Vec<Tensor<T>>,
        s: &[f64],
        logq: &[f64],
    ) -> Result<StepMetrics, TrainError> {
        let grefs: Vec<&Tensor<T>> = gs.iter().collect();
        if let Some(i) = first_nonfinite(&grefs) {
            let name = self.flow.named_params()[i].0.clone();
            return Err(self.roll_back(k, format!("gradient of {name}")));
        }
        let lr = self.lr_at(k);
        self.adam.config.lr = lr;
        // On the CPU the update is undone if it leaves a non-finite parameter (a huge learning
        // rate): the snapshot shares the buffers until Adam writes (copy on write).
        let on_cpu = self.flow.device() == Device::Cpu;
        let before = self.step;
        if on_cpu {
            copy_params(&self.flow, &mut self.cur_params);
            self.adam.snapshot_into(&mut self.cur_adam);
        }
        let mut ps = self.flow.params_mut();
        self.adam.step(&mut ps, &grefs);
        let after: Vec<&Tensor<T>> = self.flow.params();
        if let Some(i) = first_nonfinite(&after) {
            let name = self.flow.named_params()[i].0.clone();
            let what = format!("parameter {name} after the update (learning rate {lr})");
            if !on_cpu {
                return Err(TrainError::Diverged { step: k, what });
            }
            std::mem::swap(&mut self.cur_params, &mut self.prev_params);
            std::mem::swap(&mut self.cur_adam, &mut self.prev_adam);
            self.restore_previous(before);
            return Err(TrainError::NonFinite { step: k, what, kept: before });
        }
        if on_cpu {
            std::mem::swap(&mut self.cur_params, &mut self.prev_params);
            std::mem::swap(&mut self.cur_adam, &mut self.prev_adam);
            self.previous = Some(before);
        }
        self.step = k;
        let lw: Vec<f64> = s.iter().zip(logq).map(|(s, q)| -s - q).collect();
        let nf = s.len() as f64;
        Ok(StepMetrics {
            step: k,
            loss: loss_v,
            ess: ess(&lw),
            logp: -s.iter().sum::<f64>() / nf,
            logq: logq.iter().sum::<f64>() / nf,
            lr,
        })
    }
}

/// Copies the flow's (host) parameters into `buf`, reusing its buffers.
fn copy_params<T: Float>(flow: &Flow<T>, buf: &mut Vec<Vec<T>>) {
    let ps = flow.params();
    buf.resize_with(ps.len(), Vec::new);
    for (b, p) in buf.iter_mut().zip(ps) {
        b.clear();
        b.extend_from_slice(p.data());
    }
}

/// Largest number of samples in one shard of a training step (see [`Trainer::step`]):
/// small enough that a shard's activations stay in the core's L2 cache.
pub const SHARD_SIZE: usize = 64;

/// Shards of a batch of `n`: at least 2 (both cores busy at small batches), at most
/// [`SHARD_SIZE`] samples each. Depends only on `n`, never on the thread count.
pub fn shard_count(n: usize) -> usize {
    n.div_ceil(SHARD_SIZE).max(2).min(n.max(1))
}

/// Samples in shard `i` of a batch of `n` cut into [`shard_count`]`(n)` shards: the first
/// `n % shards` shards hold one more than the others.
pub fn shard_size(n: usize, i: usize) -> usize {
    let shards = shard_count(n);
    n / shards + usize::from(i < n % shards)
}

/// What one shard of a step returns.
struct Shard<T: Float> {
    loss: f64,
    grads: Option<Vec<Tensor<T>>>,
    s: Vec<f64>,
    logq: Vec<f64>,
}

impl<T: Float> Shard<T> {
    /// Every rank's shards, in shard order, on every rank (`mine` are this rank's): the
    /// gradients travel as `T` (4 bytes a value for `f32`), bit for bit.
    fn exchange(comm: &dyn Comm, mine: &[Shard<T>], flow: &Flow<T>) -> Vec<Shard<T>> {
        let shapes: Vec<Vec<usize>> = flow.params().iter().map(|t| t.shape().to_vec()).collect();
        let mut w = Writer::default();
        w.u64(mine.len() as u64);
        for sh in mine {
            w.f64s(&[sh.loss]);
            w.u64(sh.s.len() as u64);
            w.f64s(&sh.s);
            w.f64s(&sh.logq);
            w.u64(u64::from(sh.grads.is_some()));
            for g in sh.grads.iter().flatten() {
                put_values(&mut w, g.data());
            }
        }
        let mut all = Vec::new();
        for bytes in comm.all_gather(&w.into_bytes()) {
            let mut r = Reader::new(&bytes);
            for _ in 0..r.u64() {
                let loss = r.f64s(1)[0];
                let len = r.u64() as usize;
                let (s, logq) = (r.f64s(len), r.f64s(len));
                let grads = (r.u64() == 1).then(|| {
                    shapes.iter().map(|sh| Tensor::from_vec(sh, get_values(&mut r, sh.iter().product()))).collect()
                });
                all.push(Shard { loss, grads, s, logq });
            }
            r.finish();
        }
        all
    }
}

/// `v` onto the wire as `T`'s own bits (f32 as 4 bytes, f64 as 8).
fn put_values<T: Float>(w: &mut Writer, v: &[T]) {
    if std::mem::size_of::<T>() == 4 {
        w.f32s(&v.iter().map(|x| x.to_f64() as f32).collect::<Vec<f32>>());
    } else {
        w.f64s(&v.iter().map(|x| x.to_f64()).collect::<Vec<f64>>());
    }
}

/// `n` values written by [`put_values`] (f32 -> f64 -> f32 is exact).
fn get_values<T: Float>(r: &mut Reader, n: usize) -> Vec<T> {
    if std::mem::size_of::<T>() == 4 {
        r.f32s(n).into_iter().map(|x| T::from_f64(f64::from(x))).collect()
    } else {
        r.f64s(n).into_iter().map(T::from_f64).collect()
    }
}

/// The seed of step `k`'s RNG (splitmix64 of the run seed and the step).
pub fn step_seed(seed: u64, k: usize) -> u64 {
    let mut z = seed ^ (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
