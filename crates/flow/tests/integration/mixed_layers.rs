//! A flow mixes layer kinds: a layer defined here (a global affine map) before and after the
//! tutorial's affine couplings. Parameters are handed to each layer by the offsets the flow
//! computes from `Layer::n_params`; checkpoint names follow the layer order; the flow
//! inverts with cancelling log-Jacobians.

use latflow_flow::model::{Flow, Layer, Record};
use latflow_flow::phi4::AffineCoupling;
use latflow_flow::prior::NormalPrior;
use latflow_tensor::{Float, Tensor, Var};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// `reverse(forward(z))` against `z` in f64 through 4 layers.
const ROUNDTRIP_TOL: f64 = 1e-12;

/// `y = e^a x + b` on every site, `log|det J| = V a`; parameters `a`, `b` of shape `(1,)`.
#[derive(Clone)]
struct GlobalAffine<T: Float> {
    a: Tensor<T>,
    b: Tensor<T>,
}

impl<T: Float> Layer<T> for GlobalAffine<T> {
    fn forward(&self, x: &Var<T>, p: &[Var<T>]) -> (Var<T>, Var<T>) {
        let shape = x.shape().to_vec();
        let scale = p[0].exp().broadcast_to(&shape);
        let y = x.mul(&scale).add(&p[1].broadcast_to(&shape));
        let v = (shape[1..].iter().product::<usize>()) as f64;
        (y, p[0].mul_scalar(v).broadcast_to(&[shape[0]]))
    }
    fn reverse(&self, y: &Var<T>, p: &[Var<T>]) -> (Var<T>, Var<T>) {
        let shape = y.shape().to_vec();
        let x = y.sub(&p[1].broadcast_to(&shape)).mul(&p[0].neg().exp().broadcast_to(&shape));
        let v = (shape[1..].iter().product::<usize>()) as f64;
        (x, p[0].mul_scalar(v).broadcast_to(&[shape[0]]))
    }
    fn n_params(&self) -> usize {
        2
    }
    fn params(&self) -> Vec<&Tensor<T>> {
        vec![&self.a, &self.b]
    }
    fn params_mut(&mut self) -> Vec<&mut Tensor<T>> {
        vec![&mut self.a, &mut self.b]
    }
    fn param_names(&self) -> Vec<String> {
        vec!["a".into(), "b".into()]
    }
    fn constants_mut(&mut self) -> Vec<&mut Tensor<T>> {
        Vec::new()
    }
    fn box_clone(&self) -> Box<dyn Layer<T>> {
        Box::new(self.clone())
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

fn global(a: f64, b: f64) -> Box<dyn Layer<f64>> {
    Box::new(GlobalAffine { a: Tensor::from_vec(&[1], vec![a]), b: Tensor::from_vec(&[1], vec![b]) })
}

#[test]
fn layers_of_different_kinds_share_one_flow() {
    let l = 4;
    let mut rng = StdRng::seed_from_u64(3);
    let layers: Vec<Box<dyn Layer<f64>>> = vec![
        global(0.3, -0.2),
        Box::new(AffineCoupling::new(l, l, 0, &[4], 3, true, &mut rng)),
        Box::new(AffineCoupling::new(l, l, 1, &[4], 3, true, &mut rng)),
        global(-0.1, 0.5),
    ];
    let flow = Flow::new(Box::new(NormalPrior::new(&[l, l])), layers);
    assert_eq!(flow.n_params(), 2 + 4 + 4 + 2);
    let names: Vec<String> = flow.named_params().into_iter().map(|(n, _)| n).collect();
    assert_eq!(&names[..3], ["0.a", "0.b", "1.net.0.weight"]);
    assert_eq!(&names[10..], ["3.a", "3.b"]);
    let params = flow.param_vars(Record::Off);
    assert_eq!(flow.layer_params(3, &params)[0].value().data(), &[-0.1]);

    let z: Tensor<f64> = flow.prior.sample(5, &mut StdRng::seed_from_u64(4));
    let log_r = flow.prior.log_prob(&z);
    let (x, logq) = flow.forward(Var::constant(z.clone()), Var::constant(log_r.clone()), &params);
    let (z_back, logq_back) = flow.reverse(x.value());
    let dz = z_back.data().iter().zip(z.data()).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(dz < ROUNDTRIP_TOL, "round trip {dz:e}");
    for (a, b) in logq.value().data().iter().zip(logq_back.data()) {
        assert!((a - b).abs() < ROUNDTRIP_TOL, "log q {a} vs {b}");
    }
    // the global layers alone contribute V (a_0 + a_3) to log|det J|
    let only_global = Flow::new(Box::new(NormalPrior::new(&[l, l])), vec![global(0.3, -0.2), global(-0.1, 0.5)]);
    let p = only_global.param_vars(Record::Off);
    let (_, lq) = only_global.forward(Var::constant(z.clone()), Var::constant(log_r.clone()), &p);
    for (q, r) in lq.value().data().iter().zip(log_r.data()) {
        assert!((r - q - 16.0 * 0.2).abs() < 1e-12, "log|det J| {} vs {}", r - q, 16.0 * 0.2);
    }
}
