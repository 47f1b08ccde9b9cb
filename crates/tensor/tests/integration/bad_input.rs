//! Bad input is rejected loudly: shape mismatches panic at the caller
//! (`#[track_caller]`) with a message naming both shapes; even kernels, kernels wider
//! than the lattice and parameters that would make NaNs are refused with a message
//! saying what is wrong.

use latflow_tensor::layers::{Conv2d, Linear};
use latflow_tensor::{gradcheck, Adam, AdamConfig, GradcheckConfig, Tensor, Var};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

fn v(shape: &[usize]) -> Var<f64> {
    Var::param(Tensor::ones(shape))
}

// ---- shape mismatches name both shapes -------------------------------------------------

#[test]
#[should_panic(expected = "add: shape mismatch, [2, 3] vs [3, 2]")]
fn add_shape_mismatch() {
    v(&[2, 3]).add(&v(&[3, 2]));
}

#[test]
#[should_panic(expected = "sub: shape mismatch, [2, 3] vs [2]")]
fn sub_shape_mismatch() {
    v(&[2, 3]).sub(&v(&[2]));
}

#[test]
#[should_panic(expected = "mul: shape mismatch, [4] vs [1, 4]")]
fn mul_shape_mismatch() {
    v(&[4]).mul(&v(&[1, 4]));
}

#[test]
#[should_panic(expected = "div: shape mismatch, [2, 2] vs []")]
fn div_shape_mismatch() {
    v(&[2, 2]).div(&v(&[]));
}

#[test]
#[should_panic(expected = "matmul: shape mismatch, [2, 3] vs [4, 5]")]
fn matmul_inner_mismatch() {
    v(&[2, 3]).matmul(&v(&[4, 5]));
}

#[test]
#[should_panic(expected = "matmul: shape mismatch, [2, 2, 3] vs [3, 3, 4]")]
fn matmul_batch_mismatch() {
    v(&[2, 2, 3]).matmul(&v(&[3, 3, 4]));
}

#[test]
#[should_panic(expected = "add_bias: shape mismatch, [2, 3, 4, 4] vs [4]")]
fn add_bias_mismatch() {
    v(&[2, 3, 4, 4]).add_bias(&v(&[4]));
}

#[test]
#[should_panic(expected = "mul_const: shape mismatch, [2, 3] vs [2]")]
fn mul_const_mismatch() {
    v(&[2, 3]).mul_const(&Rc::new(Tensor::ones(&[2])));
}

#[test]
#[should_panic(expected = "reshape: shape mismatch, [2, 3] vs [4]")]
fn reshape_mismatch() {
    v(&[2, 3]).reshape(&[4]);
}

#[test]
#[should_panic(expected = "broadcast: shape mismatch, [3] vs [2, 4]")]
fn broadcast_mismatch() {
    v(&[3]).broadcast_to(&[2, 4]);
}

#[test]
#[should_panic(expected = "concat along axis 0: shape mismatch, [2, 3] vs [2, 4]")]
fn concat_mismatch() {
    Var::concat(&[v(&[2, 3]), v(&[2, 4])], 0);
}

#[test]
#[should_panic(expected = "shape mismatch, [1, 2, 3] vs [1, 3, 2]")]
fn stack_mismatch() {
    Var::stack(&[v(&[2, 3]), v(&[3, 2])], 0);
}

#[test]
#[should_panic(expected = "conv2d: shape mismatch, input [1, 2, 5, 5] vs weight [3, 1, 3, 3]")]
fn conv2d_channel_mismatch() {
    v(&[1, 2, 5, 5]).conv2d(&v(&[3, 1, 3, 3]), None);
}

#[test]
#[should_panic(expected = "conv2d: shape mismatch, input [2, 5, 5] vs weight [3, 2, 3, 3]")]
fn conv2d_input_rank() {
    v(&[2, 5, 5]).conv2d(&v(&[3, 2, 3, 3]), None);
}

#[test]
#[should_panic(expected = "conv2d: shape mismatch, weight [3, 2, 3, 3] vs bias [2]")]
fn conv2d_bias_mismatch() {
    v(&[1, 2, 5, 5]).conv2d(&v(&[3, 2, 3, 3]), Some(&v(&[2])));
}

#[test]
#[should_panic(expected = "Linear: shape mismatch, input [2, 3] vs weight [4, 5]")]
fn linear_mismatch() {
    Linear::forward(&v(&[2, 3]), &v(&[4, 5]), &v(&[4]));
}

#[test]
#[should_panic(expected = "Adam::step: shape mismatch, [3] vs [4]")]
fn adam_step_gradient_shape() {
    let mut p = Tensor::<f64>::ones(&[3]);
    Adam::new(AdamConfig::default(), &[3]).step(&mut [&mut p], &[&Tensor::ones(&[4])]);
}

#[test]
#[should_panic(expected = "backward() needs a scalar, got shape [2]")]
fn backward_of_non_scalar() {
    v(&[2]).exp().backward();
}

#[test]
#[should_panic(expected = "narrow: 2..5 out of range for axis 1 of [2, 4]")]
fn narrow_out_of_range() {
    v(&[2, 4]).narrow(1, 2, 3);
}

#[test]
#[should_panic(expected = "axis 2 out of range for shape [2, 4]")]
fn roll_axis_out_of_range() {
    v(&[2, 4]).roll(2, 1);
}

#[test]
#[should_panic(expected = "mean_axes: axes [3] out of range for shape [2, 4]")]
fn mean_axes_out_of_range() {
    v(&[2, 4]).mean_axes(&[3]);
}

// ---- kernels ----------------------------------------------------------------------------

#[test]
#[should_panic(expected = "conv2d: kernel size 2 must be odd")]
fn conv2d_even_kernel() {
    v(&[1, 1, 6, 6]).conv2d(&v(&[1, 1, 2, 2]), None);
}

#[test]
#[should_panic(expected = "conv2d: kernel size 0 must be odd")]
fn conv2d_empty_kernel() {
    v(&[1, 1, 6, 6]).conv2d(&v(&[1, 1, 0, 0]), None);
}

#[test]
#[should_panic(expected = "conv2d: shape mismatch, input [1, 1, 6, 6] vs weight [1, 1, 3, 5]")]
fn conv2d_non_square_kernel() {
    v(&[1, 1, 6, 6]).conv2d(&v(&[1, 1, 3, 5]), None);
}

#[test]
#[should_panic(expected = "conv2d: kernel 5x5 is wider than the 3x8 lattice")]
fn conv2d_kernel_wider_than_lattice() {
    v(&[1, 1, 3, 8]).conv2d(&v(&[1, 1, 5, 5]), None);
}

#[test]
#[should_panic(expected = "conv2d: kernel 3x3 is wider than the 8x2 lattice")]
fn conv2d_kernel_wider_than_lattice_second_axis() {
    v(&[1, 1, 8, 2]).conv2d(&v(&[1, 1, 3, 3]), None);
}

#[test]
#[should_panic(expected = "Conv2d: kernel size 4 must be odd")]
fn conv2d_layer_even_kernel() {
    Conv2d::<f32>::new(1, 8, 4, &mut StdRng::seed_from_u64(0));
}

#[test]
#[should_panic(expected = "Conv2d: channel counts must be positive, got 0 -> 8")]
fn conv2d_layer_zero_channels() {
    Conv2d::<f32>::new(0, 8, 3, &mut StdRng::seed_from_u64(0));
}

#[test]
#[should_panic(expected = "Linear: sizes must be positive, got 3 -> 0")]
fn linear_layer_zero_size() {
    Linear::<f32>::new(3, 0, &mut StdRng::seed_from_u64(0));
}

#[test]
#[should_panic(expected = "rem_euclid: modulus must be positive and finite, got 0")]
fn rem_euclid_zero_modulus() {
    v(&[2]).rem_euclid(0.0);
}

#[test]
#[should_panic(expected = "rem_euclid: modulus must be positive and finite, got NaN")]
fn rem_euclid_nan_modulus() {
    v(&[2]).rem_euclid(f64::NAN);
}

// ---- Adam refuses hyper-parameters that produce NaN -------------------------------------

fn adam(c: AdamConfig) -> Adam<f32> {
    Adam::new(c, &[2])
}

#[test]
#[should_panic(expected = "Adam: lr must be finite and >= 0, got NaN")]
fn adam_nan_lr() {
    adam(AdamConfig { lr: f64::NAN, ..AdamConfig::default() });
}

#[test]
#[should_panic(expected = "Adam: lr must be finite and >= 0, got -0.001")]
fn adam_negative_lr() {
    adam(AdamConfig { lr: -1e-3, ..AdamConfig::default() });
}

#[test]
#[should_panic(expected = "Adam: lr must be finite and >= 0, got inf")]
fn adam_infinite_lr() {
    adam(AdamConfig { lr: f64::INFINITY, ..AdamConfig::default() });
}

#[test]
#[should_panic(expected = "Adam: beta1 must be in [0, 1), got 1")]
fn adam_beta1_one() {
    adam(AdamConfig { beta1: 1.0, ..AdamConfig::default() });
}

#[test]
#[should_panic(expected = "Adam: beta1 must be in [0, 1), got -0.1")]
fn adam_beta1_negative() {
    adam(AdamConfig { beta1: -0.1, ..AdamConfig::default() });
}

#[test]
#[should_panic(expected = "Adam: beta2 must be in [0, 1), got 1.5")]
fn adam_beta2_above_one() {
    adam(AdamConfig { beta2: 1.5, ..AdamConfig::default() });
}

#[test]
#[should_panic(expected = "Adam: beta2 must be in [0, 1), got NaN")]
fn adam_beta2_nan() {
    adam(AdamConfig { beta2: f64::NAN, ..AdamConfig::default() });
}

#[test]
#[should_panic(expected = "Adam: eps must be finite and > 0, got 0")]
fn adam_zero_eps() {
    adam(AdamConfig { eps: 0.0, ..AdamConfig::default() });
}

#[test]
#[should_panic(expected = "Adam: eps must be finite and > 0, got NaN")]
fn adam_nan_eps() {
    adam(AdamConfig { eps: f64::NAN, ..AdamConfig::default() });
}

#[test]
#[should_panic(expected = "Adam: lr must be finite and >= 0, got NaN")]
fn adam_step_after_lr_set_to_nan() {
    let mut opt = adam(AdamConfig::default());
    opt.config.lr = f64::NAN;
    let mut p = Tensor::<f32>::ones(&[2]);
    opt.step(&mut [&mut p], &[&Tensor::ones(&[2])]);
}

#[test]
fn adam_validate_returns_the_message() {
    assert!(AdamConfig::default().validate().is_ok());
    assert!(AdamConfig { lr: 0.0, beta1: 0.0, beta2: 0.0, eps: 1e-8 }.validate().is_ok());
    let e = AdamConfig { eps: -1.0, ..AdamConfig::default() }.validate().unwrap_err();
    assert_eq!(e, "Adam: eps must be finite and > 0, got -1");
}

#[test]
fn adam_zero_gradient_gives_no_nan() {
    // eps > 0 is what keeps 0 / 0 out of the very first step.
    let mut opt = adam(AdamConfig::default());
    let mut p = Tensor::<f32>::from_vec(&[2], vec![1.0, -2.0]);
    opt.step(&mut [&mut p], &[&Tensor::zeros(&[2])]);
    assert_eq!(p.data(), &[1.0, -2.0]);
}

// ---- gradcheck never passes a NaN -------------------------------------------------------

#[test]
fn gradcheck_fails_on_nan_gradients() {
    // log of a negative number: both gradients are NaN, which f64::max would ignore.
    let x = Tensor::from_vec(&[2], vec![-1.0, 2.0]);
    let r = gradcheck(|v: &[Var<f64>]| v[0].log(), &[x], GradcheckConfig::default());
    assert!(!r.passed(), "{r:?}");
    assert_eq!(r.max_rel(), f64::INFINITY);
    assert_eq!(r.inputs[0].worst, 0);
}

#[test]
fn gradcheck_fails_on_a_wrong_gradient() {
    // rem_euclid across its jump: the tape says 1, the difference quotient is huge.
    let x = Tensor::from_vec(&[1], vec![1.0]);
    let r = gradcheck(|v: &[Var<f64>]| v[0].rem_euclid(1.0), &[x], GradcheckConfig::default());
    assert!(!r.passed(), "{r:?}");
}

// ---- the panic points at the caller (#[track_caller]) -----------------------------------

/// The file a panic of `f` is reported at.
fn panic_file(f: impl FnOnce()) -> String {
    use std::sync::{Arc, Mutex};
    let file = Arc::new(Mutex::new(String::new()));
    let seen = Arc::clone(&file);
    let me = std::thread::current().id();
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() == me {
            *seen.lock().unwrap() = info.location().map(|l| l.file().to_string()).unwrap_or_default();
        }
    }));
    let r = catch_unwind(AssertUnwindSafe(f));
    std::panic::set_hook(prev);
    assert!(r.is_err(), "expected a panic");
    let f = file.lock().unwrap().clone();
    f
}

#[test]
fn panics_point_at_the_caller() {
    let here = file!();
    type Case = (&'static str, Box<dyn FnOnce()>);
    let cases: Vec<Case> = vec![
        ("add", Box::new(|| drop(v(&[2]).add(&v(&[3]))))),
        ("matmul", Box::new(|| drop(v(&[2, 3]).matmul(&v(&[2, 3]))))),
        ("add_bias", Box::new(|| drop(v(&[2, 3]).add_bias(&v(&[2]))))),
        ("broadcast_to", Box::new(|| drop(v(&[3]).broadcast_to(&[4])))),
        ("concat", Box::new(|| drop(Var::concat(&[v(&[2, 3]), v(&[3, 3])], 1)))),
        ("stack", Box::new(|| drop(Var::stack(&[v(&[2]), v(&[3])], 0)))),
        ("reshape", Box::new(|| drop(v(&[2, 3]).reshape(&[5])))),
        ("roll", Box::new(|| drop(v(&[2]).roll(1, 1)))),
        ("conv2d even", Box::new(|| drop(v(&[1, 1, 4, 4]).conv2d(&v(&[1, 1, 2, 2]), None)))),
        ("conv2d wide", Box::new(|| drop(v(&[1, 1, 4, 4]).conv2d(&v(&[1, 1, 5, 5]), None)))),
        ("Linear", Box::new(|| drop(Linear::forward(&v(&[2, 3]), &v(&[4, 2]), &v(&[4]))))),
        ("Conv2d::new", Box::new(|| drop(Conv2d::<f32>::new(1, 1, 2, &mut StdRng::seed_from_u64(0))))),
        ("Adam::new", Box::new(|| drop(adam(AdamConfig { beta1: 1.0, ..AdamConfig::default() })))),
    ];
    for (name, f) in cases {
        assert_eq!(panic_file(f), here, "{name} should panic at the caller");
    }
}
