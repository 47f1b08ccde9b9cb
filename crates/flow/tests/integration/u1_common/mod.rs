//! Helpers shared by the U(1) flow audits.
#![allow(dead_code)]

use latflow_flow::model::Flow;
use latflow_flow::model::Record;
use latflow_flow::u1::U1FlowConfig;
use latflow_tensor::{Tensor, Var};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::f64::consts::PI;

/// A flow whose last convolution of every layer is scaled by `scale`, so that the
/// mixture scales and offsets are O(1) (a freshly initialized flow is close to the
/// identity, which would make the audits weak).
pub fn strong_flow(config: &U1FlowConfig, seed: u64, scale: f64) -> Flow<f64> {
    let mut flow = config.build::<f64>(&mut StdRng::seed_from_u64(seed));
    scale_last_convolutions(&mut flow, scale);
    flow
}

/// Scales the last convolution (weight and bias) of every layer's net by `scale`, for a
/// flow of any theory.
pub fn scale_last_convolutions(flow: &mut Flow<f64>, scale: f64) {
    for layer in flow.layers_mut() {
        let ps = layer.params_mut();
        let n = ps.len();
        for p in ps.into_iter().skip(n - 2) {
            for v in p.data_mut() {
                *v *= scale;
            }
        }
    }
}

/// Links uniform in `[0, 2 pi)`, shape `(n, 2, l, l)`.
pub fn random_links(n: usize, l: usize, seed: u64) -> Tensor<f64> {
    Tensor::uniform(&[n, 2, l, l], 0.0, 2.0 * PI, &mut StdRng::seed_from_u64(seed))
}

/// `(f(z), sum_layers log|det J|)` through every layer, without recording.
pub fn push(flow: &Flow<f64>, z: &Tensor<f64>) -> (Tensor<f64>, Vec<f64>) {
    let params: Vec<Var<f64>> = flow.param_vars(Record::Off);
    let mut x = Var::constant(z.clone());
    let mut at = 0;
    let mut sum = vec![0.0; z.shape()[0]];
    for l in flow.layers() {
        let np = l.n_params();
        let (y, lj) = l.forward(&x, &params[at..at + np]);
        at += np;
        for (s, v) in sum.iter_mut().zip(lj.value().data()) {
            *s += v;
        }
        x = y;
    }
    (x.value().clone(), sum)
}
