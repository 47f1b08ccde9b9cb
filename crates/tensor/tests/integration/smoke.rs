//! Smoke tests of the tape: accumulation, conv2d gradient, no recording for constants.
use latflow_tensor::{gradcheck, GradcheckConfig, Tensor, Var};
use rand::rngs::StdRng;
use rand::SeedableRng;

#[test]
fn gradients_accumulate_when_a_value_is_reused() {
    let x = Var::param(Tensor::from_vec(&[1], vec![3.0f64]));
    // y = x * x + x  => dy/dx = 2x + 1 = 7
    let y = x.mul(&x).add(&x).sum();
    assert_eq!(y.backward().get(&x).unwrap().data(), &[7.0]);
}

#[test]
fn conv2d_gradcheck_small() {
    let mut rng = StdRng::seed_from_u64(1);
    let x = Tensor::<f64>::randn(&[2, 3, 5, 4], &mut rng);
    let w = Tensor::<f64>::randn(&[2, 3, 3, 3], &mut rng);
    let b = Tensor::<f64>::randn(&[2], &mut rng);
    let r = gradcheck(|v: &[Var<f64>]| v[0].conv2d(&v[1], Some(&v[2])), &[x, w, b], GradcheckConfig::default());
    assert!(r.passed(), "{r:?}");
}

#[test]
fn constants_record_nothing() {
    let x = Var::constant(Tensor::from_vec(&[2], vec![1.0f64, 2.0]));
    let y = x.exp().sum();
    assert!(!y.requires_grad());
}
