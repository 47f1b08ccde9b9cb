//! Values and gradients checked against PyTorch 2.11 (CPU, float64). The numbers below
//! were printed by this snippet (`python3 gen.py`, torch 2.11.0, numpy 2.4.6); inputs are
//! literals or integer patterns (`(arange(n) * a % m - c) / d`, exact in binary), so the
//! Rust side rebuilds them bit for bit. Gradients are those of `sum(r * y)` for the
//! projection `r` given in the snippet.
//!
//! ```text
//! import torch
//! import torch.nn.functional as F
//! torch.set_default_dtype(torch.float64)
//!
//! def out(name, t):
//!     v = [float(x) for x in t.detach().reshape(-1)]
//!     print(f"const {name}: [f64; {len(v)}] = [{', '.join(repr(x) for x in v)}];")
//!
//! def leaf(v):
//!     return torch.tensor(v, requires_grad=True)
//!
//! # Elementwise ops: y = f(x), gradient of sum(r * y).
//! x = [-1.3, -0.2, 0.4, 1.1]
//! xp = [0.3, 0.7, 1.5, 2.4]
//! r = torch.tensor([0.5, -1.0, 2.0, 0.25])
//! unary = {
//!     "EXP": (x, torch.exp), "LOG": (xp, torch.log), "TANH": (x, torch.tanh),
//!     "LEAKY_RELU": (x, lambda t: F.leaky_relu(t, 0.01)), "SIN": (x, torch.sin),
//!     "COS": (x, torch.cos), "TAN": (x, torch.tan), "ATAN": (x, torch.atan),
//!     "CUBE": (x, lambda t: t**3), "POW_M2": (x, lambda t: t**-2),
//!     "REM": (x, lambda t: torch.remainder(t, 0.7)),
//! }
//! for name, (xv, f) in unary.items():
//!     t = leaf(xv)
//!     y = f(t)
//!     (r * y).sum().backward()
//!     out(name + "_Y", y)
//!     out(name + "_DX", t.grad)
//!
//! # Binary ops with a per-channel broadcast: a (2,3,2) op b (3,) viewed as (1,3,1).
//! a = leaf([[[0.5, -1.5], [2.0, 0.25], [-0.75, 1.0]], [[1.25, -0.5], [0.0, 3.0], [-2.0, 0.5]]])
//! b = leaf([0.5, -2.0, 1.5])
//! rb = torch.arange(12.0).reshape(2, 3, 2) % 5 - 2
//! for name, f in {"ADD": torch.add, "SUB": torch.sub, "MUL": torch.mul, "DIV": torch.div}.items():
//!     a.grad = None; b.grad = None
//!     y = f(a, b.view(1, 3, 1))
//!     (rb * y).sum().backward()
//!     out(name + "_Y", y); out(name + "_DA", a.grad); out(name + "_DB", b.grad)
//!
//! # logsumexp over axis 1, roll, matmul.
//! m = leaf([[0.5, -1.0, 2.0], [3.0, 0.0, -0.5]])
//! y = torch.logsumexp(m, dim=1)
//! (torch.tensor([1.5, -0.5]) * y).sum().backward()
//! out("LSE_Y", y); out("LSE_DX", m.grad)
//! a = leaf([[1.0, 2.0, -1.0], [0.5, -0.5, 3.0]])
//! b = leaf([[2.0, -1.0], [0.0, 1.5], [1.0, 0.25]])
//! y = a @ b
//! (torch.tensor([[1.0, -2.0], [0.5, 3.0]]) * y).sum().backward()
//! out("MM_Y", y); out("MM_DA", a.grad); out("MM_DB", b.grad)
//!
//! # Linear layer: x (2,3), weight (2,3), bias (2).
//! xl = leaf([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]])
//! wl = leaf([[0.1, -0.2, 0.3], [0.4, 0.5, -0.6]])
//! bl = leaf([0.05, -0.1])
//! y = F.linear(xl, wl, bl)
//! (torch.tensor([[1.0, -1.0], [2.0, 0.5]]) * y).sum().backward()
//! out("LIN_Y", y); out("LIN_DX", xl.grad); out("LIN_DW", wl.grad); out("LIN_DB", bl.grad)
//!
//! # Circular conv2d (PyTorch Conv2d(padding=k//2, padding_mode="circular")), exact inputs.
//! def conv_case(name, n, cin, cout, h, w, k, bias):
//!     x = ((torch.arange(n * cin * h * w) * 7 % 11 - 5) / 4).reshape(n, cin, h, w).requires_grad_()
//!     wt = ((torch.arange(cout * cin * k * k) * 5 % 13 - 6) / 8).reshape(cout, cin, k, k).requires_grad_()
//!     b = ((torch.arange(cout) * 3 % 5 - 2) / 4).requires_grad_() if bias else None
//!     conv = torch.nn.Conv2d(cin, cout, k, padding=k // 2, padding_mode="circular", bias=bias)
//!     with torch.no_grad():
//!         conv.weight.copy_(wt)
//!         if bias: conv.bias.copy_(b)
//!     y = conv(x)
//!     rr = (torch.arange(y.numel()) * 3 % 7 - 3).reshape(y.shape) / 2
//!     (rr * y).sum().backward()
//!     out(name + "_Y", y); out(name + "_DX", x.grad); out(name + "_DW", conv.weight.grad)
//!     if bias: out(name + "_DB", conv.bias.grad)
//! conv_case("CONV3", 1, 2, 2, 4, 5, 3, True)
//! conv_case("CONV5", 2, 1, 1, 5, 6, 5, False)
//! conv_case("CONV1", 1, 2, 3, 3, 2, 1, True)
//!
//! # Composite: logsumexp(sin(x) * mask) over the last axis, checkerboard mask.
//! xc = ((torch.arange(12) * 5 % 9 - 4) / 3).reshape(3, 4).requires_grad_()
//! mask = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0]])
//! y = torch.logsumexp(torch.sin(xc) * mask, dim=-1)
//! (torch.tensor([1.0, -0.5, 2.0]) * y).sum().backward()
//! out("COMP_Y", y); out("COMP_DX", xc.grad)
//!
//! # Adam: three steps on known gradients, default and custom hyper-parameters.
//! grads = [[0.1, -0.2, 0.0, 3.0], [0.05, 0.4, -1.0, -3.0], [-0.3, 0.1, 0.5, 2.5]]
//! for name, kw in {"ADAM_DEFAULT": {}, "ADAM_CUSTOM": dict(lr=0.05, betas=(0.8, 0.95), eps=1e-6)}.items():
//!     p = torch.nn.Parameter(torch.tensor([0.5, -1.0, 2.0, 0.0]))
//!     opt = torch.optim.Adam([p], **kw)
//!     steps = []
//!     for g in grads:
//!         p.grad = torch.tensor(g)
//!         opt.step()
//!         steps.append(p.detach().clone())
//!     out(name, torch.stack(steps))
//! ```

use latflow_tensor::layers::Linear;
use latflow_tensor::{Adam, AdamConfig, Tensor, Var};
use std::rc::Rc;

// ---- printed by the snippet ----
#[rustfmt::skip]
mod torch_values {
    pub const EXP_Y: [f64; 4] = [0.2725317930340126, 0.8187307530779818, 1.4918246976412703, 3.0041660239464334];
    pub const EXP_DX: [f64; 4] = [0.1362658965170063, -0.8187307530779818, 2.9836493952825407, 0.7510415059866083];
    pub const LOG_Y: [f64; 4] = [-1.2039728043259361, -0.35667494393873245, 0.4054651081081644, 0.8754687373538999];
    pub const LOG_DX: [f64; 4] = [1.6666666666666667, -1.4285714285714286, 1.3333333333333333, 0.10416666666666667];
    pub const TANH_Y: [f64; 4] = [-0.8617231593133063, -0.197375320224904, 0.3799489622552249, 0.8004990217606297];
    pub const TANH_DX: [f64; 4] = [0.12871659835154703, -0.9610429829661166, 1.7112775721623554, 0.08980032904006872];
    pub const LEAKY_RELU_Y: [f64; 4] = [-0.013000000000000001, -0.002, 0.4, 1.1];
    pub const LEAKY_RELU_DX: [f64; 4] = [0.005, -0.01, 2.0, 0.25];
    pub const SIN_Y: [f64; 4] = [-0.963558185417193, -0.19866933079506122, 0.3894183423086505, 0.8912073600614354];
    pub const SIN_DX: [f64; 4] = [0.13374941431229367, -0.9800665778412416, 1.8421219880057702, 0.11339903035639433];
    pub const COS_Y: [f64; 4] = [0.26749882862458735, 0.9800665778412416, 0.9210609940028851, 0.4535961214255773];
    pub const COS_DX: [f64; 4] = [0.4817790927085965, -0.19866933079506122, -0.778836684617301, -0.22280184001535885];
    pub const TAN_Y: [f64; 4] = [-3.6021024479679786, -0.2027100355086725, 0.4227932187381618, 1.9647596572486523];
    pub const TAN_DX: [f64; 4] = [6.987571022828452, -1.0410913584959274, 2.3575082116219503, 1.2150701276879605];
    pub const ATAN_Y: [f64; 4] = [-0.9151007005533605, -0.19739555984988078, 0.3805063771123649, 0.8329812666744317];
    pub const ATAN_DX: [f64; 4] = [0.18587360594795535, -0.9615384615384615, 1.7241379310344827, 0.11312217194570136];
    pub const CUBE_Y: [f64; 4] = [-2.1970000000000005, -0.008000000000000002, 0.06400000000000002, 1.3310000000000004];
    pub const CUBE_DX: [f64; 4] = [2.535, -0.12000000000000002, 0.9600000000000002, 0.9075000000000002];
    pub const POW_M2_Y: [f64; 4] = [0.5917159763313609, 24.999999999999996, 6.249999999999999, 0.8264462809917354];
    pub const POW_M2_DX: [f64; 4] = [0.45516613563950836, -249.99999999999997, -62.49999999999999, -0.37565740045078877];
    pub const REM_Y: [f64; 4] = [0.09999999999999987, 0.49999999999999994, 0.4, 0.40000000000000013];
    pub const REM_DX: [f64; 4] = [0.5, -1.0, 2.0, 0.25];
    pub const ADD_Y: [f64; 12] = [1.0, -1.0, 0.0, -1.75, 0.75, 2.5, 1.75, 0.0, -2.0, 1.0, -0.5, 2.0];
    pub const ADD_DA: [f64; 12] = [-2.0, -1.0, 0.0, 1.0, 2.0, -2.0, -1.0, 0.0, 1.0, 2.0, -2.0, -1.0];
    pub const ADD_DB: [f64; 3] = [-4.0, 4.0, -3.0];
    pub const SUB_Y: [f64; 12] = [0.0, -2.0, 4.0, 2.25, -2.25, -0.5, 0.75, -1.0, 2.0, 5.0, -3.5, -1.0];
    pub const SUB_DA: [f64; 12] = [-2.0, -1.0, 0.0, 1.0, 2.0, -2.0, -1.0, 0.0, 1.0, 2.0, -2.0, -1.0];
    pub const SUB_DB: [f64; 3] = [4.0, -4.0, 3.0];
    pub const MUL_Y: [f64; 12] = [0.25, -0.75, -4.0, -0.5, -1.125, 1.5, 0.625, -0.25, -0.0, -6.0, -3.0, 0.75];
    pub const MUL_DA: [f64; 12] = [-1.0, -0.5, -0.0, -2.0, 3.0, -3.0, -0.5, 0.0, -2.0, -4.0, -3.0, -1.5];
    pub const MUL_DB: [f64; 3] = [-0.75, 6.25, 0.0];
    pub const DIV_Y: [f64; 12] = [1.0, -3.0, -1.0, -0.125, -0.5, 0.6666666666666666, 2.5, -1.0, -0.0, -1.5, -1.3333333333333333, 0.3333333333333333];
    pub const DIV_DA: [f64; 12] = [-4.0, -2.0, -0.0, -0.5, 1.3333333333333333, -1.3333333333333333, -2.0, 0.0, -0.5, -1.0, -1.3333333333333333, -0.6666666666666666];
    pub const DIV_DB: [f64; 3] = [3.0, -1.5625, 0.0];
    pub const LSE_Y: [f64; 2] = [2.241311296657157, 3.076946644541926];
    pub const LSE_DX: [f64; 6] = [0.262935588210055, 0.05866885990603117, 1.1783955518839138, -0.46296962810084896, -0.02304990052650151, -0.013980471372649537];
    pub const MM_Y: [f64; 4] = [1.0, 1.75, 4.0, -0.5];
    pub const MM_DA: [f64; 6] = [4.0, -3.0, 0.5, -2.0, 4.5, 1.25];
    pub const MM_DB: [f64; 6] = [1.25, -0.5, 1.75, -5.5, 0.5, 11.0];
    pub const LIN_Y: [f64; 4] = [0.9, -1.6, -0.07499999999999996, 1.075];
    pub const LIN_DX: [f64; 6] = [-0.30000000000000004, -0.7, 0.8999999999999999, 0.4, -0.15000000000000002, 0.3];
    pub const LIN_DW: [f64; 6] = [3.5, -0.5, 0.5, 0.25, 1.125, -2.375];
    pub const LIN_DB: [f64; 2] = [3.0, -0.5];
    pub const CONV3_Y: [f64; 40] = [-3.1875, 2.40625, 2.8125, -4.34375, 1.09375, 0.8125, -0.46875, -0.75, -0.6875, -2.8125, 1.125, -1.875, -0.78125, 3.0625, -2.5, -4.0, 1.25, 0.625, -2.40625, 0.625, -3.125, 3.09375, 0.09375, -1.1875, 0.875, 3.75, -1.03125, -0.25, 0.875, -0.15625, 1.125, -1.25, 1.25, 1.6875, -2.4375, -2.0, 3.875, -0.15625, -2.125, 2.34375];
    pub const CONV3_DX: [f64; 40] = [-0.1875, 1.25, -3.4375, -1.125, 2.0625, -0.75, 2.0, 0.8125, -0.8125, 0.1875, -2.75, 1.3125, 0.5625, 2.0, -0.5, -0.9375, -3.4375, 1.5, -0.125, 2.625, 2.3125, -1.5, -1.0625, 0.6875, -0.75, 2.125, -0.375, 0.9375, -1.25, -2.25, 0.8125, -0.375, 1.375, -0.375, 0.8125, -2.0625, -1.5, 2.875, -1.9375, 1.875];
    pub const CONV3_DW: [f64; 36] = [0.75, -1.375, 1.875, 0.875, -1.25, 2.0, -2.75, 4.75, -1.625, -0.25, 3.125, -6.0, 2.625, -3.625, 6.5, -3.75, -0.375, 0.125, 0.625, 0.25, -2.625, 2.5, 2.125, -0.75, 0.625, 0.25, -2.625, 2.625, -1.875, 2.125, -2.375, 2.75, -2.875, 2.625, -1.875, 2.125];
    pub const CONV3_DB: [f64; 2] = [-0.5, 1.0];
    pub const CONV5_Y: [f64; 60] = [0.25, -1.8125, 0.21875, 0.8125, -2.0, 3.5, -4.5, 2.03125, 0.625, -3.59375, 1.84375, 3.90625, -1.78125, 1.65625, -0.4375, -0.53125, 1.46875, -1.625, 2.46875, 1.09375, -1.6875, 2.34375, 0.90625, -2.875, 2.09375, -4.09375, 1.375, 2.3125, -4.28125, 0.1875, 2.9375, -4.28125, 2.90625, -0.28125, -2.0625, 1.71875, -2.5, -1.46875, 2.28125, -1.25, 1.09375, 1.4375, -3.21875, 3.3125, 1.90625, -1.96875, 0.03125, 1.40625, 0.34375, 3.4375, -3.125, 1.59375, 0.5, -3.28125, 3.75, -2.78125, -1.09375, 0.53125, -0.90625, -0.90625];
    pub const CONV5_DX: [f64; 60] = [3.1875, 1.1875, -1.0, 1.25, -1.25, -3.125, -2.6875, 0.125, 2.75, -0.6875, -1.875, 1.0625, 0.3125, -1.25, 0.5, 2.75, 0.6875, -0.75, -2.75, 0.5, -2.125, 0.125, 2.875, 0.5625, 0.375, -0.75, 1.4375, -2.0, -3.625, 4.5625, -0.1875, 0.875, -2.1875, -2.125, 4.125, -0.375, -2.125, 0.25, 1.5625, -3.625, -1.75, 4.25, 1.3125, 2.8125, -0.6875, 0.25, 1.25, -2.8125, -1.3125, -0.6875, 2.375, 1.5625, -1.8125, -1.0625, 2.25, -1.5, 0.25, -0.125, 1.3125, -2.3125];
    pub const CONV5_DW: [f64; 25] = [3.75, 1.0, -5.0, 4.875, -1.875, 2.0, -0.75, 2.875, -6.5, 6.0, -1.75, -4.5, -0.875, 9.0, -7.375, 3.25, 0.5, 4.125, -5.25, 7.25, -5.125, 1.75, -4.25, -4.0, -1.125];
    pub const CONV1_Y: [f64; 18] = [0.3125, -0.875, 0.0, -1.53125, -0.65625, 0.21875, -0.875, 0.5, 0.5, 0.5, 0.5, 0.5, 0.34375, -0.1875, -1.0625, 0.46875, -0.40625, -1.28125];
    pub const CONV1_DX: [f64; 12] = [1.25, -0.6875, -1.3125, 1.125, -0.8125, 1.1875, -0.8125, 1.125, -1.3125, -0.6875, 1.25, -0.75];
    pub const CONV1_DW: [f64; 6] = [1.5, -2.375, -0.375, 0.5, 3.0, 0.75];
    pub const CONV1_DB: [f64; 3] = [-0.5, 1.0, -1.0];
    pub const COMP_Y: [f64; 3] = [1.0329798626147404, 1.9405871953526068, 1.4786619223181874];
    pub const COMP_DX: [f64; 12] = [0.03167976629051128, 0.0, 0.08290355640605507, 0.0, -0.0, -0.09000501738435937, -0.0, -0.04464755198940323, 0.4558849783445343, 0.0, 0.5975388616078412, 0.0];
    pub const ADAM_DEFAULT: [f64; 12] = [0.4990000001, -0.99900000005, 2.0, -0.0009999999966666666, 0.49806782057911875, -0.9993661035654604, 2.000744136813046, -0.0009473684178947372, 0.4984150440673039, -0.9997817547496384, 2.000972777185266, -0.0012368126964604172];
    pub const ADAM_CUSTOM: [f64; 12] = [0.450000499995, -0.95000024999875, 2.0, -0.04999998333333888, 0.40396827173980715, -0.9709217148244187, 2.038789501510545, -0.04444442962963457, 0.4252706354271037, -0.9936272618907797, 2.0482676381791123, -0.059046459418422084];
}
use torch_values::*;

/// Largest accepted `|ours - torch| / max(1, |torch|)` in f64: the two compute the same
/// formulas with sums in different orders, a few ulps apart.
const PYTORCH_F64_TOL: f64 = 1e-12;
/// The same for our f32 kernels against PyTorch's f64 numbers.
const PYTORCH_F32_TOL: f64 = 1e-5;

#[track_caller]
fn close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs() / w.abs().max(1.0);
        assert!(err <= tol, "{what}[{i}]: got {g}, PyTorch {w}, rel err {err:e} > {tol:e}");
    }
}

fn t(shape: &[usize], v: &[f64]) -> Tensor<f64> {
    Tensor::from_vec(shape, v.to_vec())
}

/// `(i * mul % modulus - off) / div` for `i` in `0..n`, as `torch.arange` builds it.
fn pattern(n: usize, mul: usize, modulus: usize, off: f64, div: f64) -> Vec<f64> {
    (0..n).map(|i| ((i * mul % modulus) as f64 - off) / div).collect()
}

/// Value of `f(inputs)` and the gradients of `sum(r * f(inputs))` for each input.
fn value_and_grads(
    f: impl Fn(&[Var<f64>]) -> Var<f64>,
    inputs: &[Tensor<f64>],
    r: &[f64],
) -> (Vec<f64>, Vec<Vec<f64>>) {
    let vars: Vec<Var<f64>> = inputs.iter().map(|x| Var::param(x.clone())).collect();
    let y = f(&vars);
    let g = y.mul(&Var::constant(t(y.shape(), r))).sum().backward();
    (y.value().data().to_vec(), vars.iter().map(|v| g.get_or_zeros(v).data().to_vec()).collect())
}

#[test]
fn elementwise_ops_match_pytorch() {
    type F = fn(&Var<f64>) -> Var<f64>;
    let x = [-1.3, -0.2, 0.4, 1.1];
    let xp = [0.3, 0.7, 1.5, 2.4];
    let r = [0.5, -1.0, 2.0, 0.25];
    /// (name, input, op, PyTorch value, PyTorch gradient)
    type Case<'a> = (&'a str, &'a [f64; 4], F, &'a [f64; 4], &'a [f64; 4]);
    let cases: [Case; 11] = [
        ("exp", &x, |v| v.exp(), &EXP_Y, &EXP_DX),
        ("log", &xp, |v| v.log(), &LOG_Y, &LOG_DX),
        ("tanh", &x, |v| v.tanh(), &TANH_Y, &TANH_DX),
        ("leaky_relu", &x, |v| v.leaky_relu(0.01), &LEAKY_RELU_Y, &LEAKY_RELU_DX),
        ("sin", &x, |v| v.sin(), &SIN_Y, &SIN_DX),
        ("cos", &x, |v| v.cos(), &COS_Y, &COS_DX),
        ("tan", &x, |v| v.tan(), &TAN_Y, &TAN_DX),
        ("atan", &x, |v| v.atan(), &ATAN_Y, &ATAN_DX),
        ("powi(3)", &x, |v| v.powi(3), &CUBE_Y, &CUBE_DX),
        ("powi(-2)", &x, |v| v.powi(-2), &POW_M2_Y, &POW_M2_DX),
        ("rem_euclid(0.7)", &x, |v| v.rem_euclid(0.7), &REM_Y, &REM_DX),
    ];
    for (name, input, f, y, dx) in cases {
        let (got, g) = value_and_grads(|v| f(&v[0]), &[t(&[4], input)], &r);
        close(&got, y, PYTORCH_F64_TOL, name);
        close(&g[0], dx, PYTORCH_F64_TOL, name);
    }
}

#[test]
fn channel_broadcast_binary_ops_match_pytorch() {
    type F = fn(&Var<f64>, &Var<f64>) -> Var<f64>;
    let a = t(&[2, 3, 2], &[0.5, -1.5, 2.0, 0.25, -0.75, 1.0, 1.25, -0.5, 0.0, 3.0, -2.0, 0.5]);
    let b = t(&[3], &[0.5, -2.0, 1.5]);
    let r = pattern(12, 1, 5, 2.0, 1.0);
    /// (name, op, PyTorch value, d/da, d/db)
    type Case<'a> = (&'a str, F, &'a [f64; 12], &'a [f64; 12], &'a [f64; 3]);
    let cases: [Case; 4] = [
        ("add", |a, b| a.add(b), &ADD_Y, &ADD_DA, &ADD_DB),
        ("sub", |a, b| a.sub(b), &SUB_Y, &SUB_DA, &SUB_DB),
        ("mul", |a, b| a.mul(b), &MUL_Y, &MUL_DA, &MUL_DB),
        ("div", |a, b| a.div(b), &DIV_Y, &DIV_DA, &DIV_DB),
    ];
    for (name, f, y, da, db) in cases {
        let g = |v: &[Var<f64>]| f(&v[0], &v[1].reshape(&[1, 3, 1]).broadcast_to(&[2, 3, 2]));
        let (got, grads) = value_and_grads(g, &[a.clone(), b.clone()], &r);
        close(&got, y, PYTORCH_F64_TOL, name);
        close(&grads[0], da, PYTORCH_F64_TOL, name);
        close(&grads[1], db, PYTORCH_F64_TOL, name);
    }
}

#[test]
fn logsumexp_matmul_linear_match_pytorch() {
    let m = t(&[2, 3], &[0.5, -1.0, 2.0, 3.0, 0.0, -0.5]);
    let (y, g) = value_and_grads(|v| v[0].logsumexp(1), &[m], &[1.5, -0.5]);
    close(&y, &LSE_Y, PYTORCH_F64_TOL, "logsumexp");
    close(&g[0], &LSE_DX, PYTORCH_F64_TOL, "logsumexp grad");

    let a = t(&[2, 3], &[1.0, 2.0, -1.0, 0.5, -0.5, 3.0]);
    let b = t(&[3, 2], &[2.0, -1.0, 0.0, 1.5, 1.0, 0.25]);
    let (y, g) = value_and_grads(|v| v[0].matmul(&v[1]), &[a, b], &[1.0, -2.0, 0.5, 3.0]);
    close(&y, &MM_Y, PYTORCH_F64_TOL, "matmul");
    close(&g[0], &MM_DA, PYTORCH_F64_TOL, "matmul dA");
    close(&g[1], &MM_DB, PYTORCH_F64_TOL, "matmul dB");

    let x = t(&[2, 3], &[0.5, -1.0, 2.0, 1.5, 0.25, -0.75]);
    let w = t(&[2, 3], &[0.1, -0.2, 0.3, 0.4, 0.5, -0.6]);
    let b = t(&[2], &[0.05, -0.1]);
    let (y, g) = value_and_grads(|v| Linear::forward(&v[0], &v[1], &v[2]), &[x, w, b], &[1.0, -1.0, 2.0, 0.5]);
    close(&y, &LIN_Y, PYTORCH_F64_TOL, "linear");
    close(&g[0], &LIN_DX, PYTORCH_F64_TOL, "linear dx");
    close(&g[1], &LIN_DW, PYTORCH_F64_TOL, "linear dw");
    close(&g[2], &LIN_DB, PYTORCH_F64_TOL, "linear db");
}

/// One conv case of the snippet: inputs from the same integer patterns, checked in f64
/// (value and all gradients) and in f32 (value).
#[allow(clippy::too_many_arguments)]
fn conv_case(
    name: &str,
    [n, cin, cout, h, w, k]: [usize; 6],
    bias: bool,
    y_want: &[f64],
    dx: &[f64],
    dw: &[f64],
    db: Option<&[f64]>,
) {
    let x = Tensor::from_vec(&[n, cin, h, w], pattern(n * cin * h * w, 7, 11, 5.0, 4.0));
    let wt = Tensor::from_vec(&[cout, cin, k, k], pattern(cout * cin * k * k, 5, 13, 6.0, 8.0));
    let b = Tensor::from_vec(&[cout], pattern(cout, 3, 5, 2.0, 4.0));
    let r = pattern(n * cout * h * w, 3, 7, 3.0, 2.0);
    let mut inputs = vec![x.clone(), wt.clone()];
    if bias {
        inputs.push(b.clone());
    }
    let f = |v: &[Var<f64>]| v[0].conv2d(&v[1], v.get(2));
    let (y, g) = value_and_grads(f, &inputs, &r);
    close(&y, y_want, PYTORCH_F64_TOL, name);
    close(&g[0], dx, PYTORCH_F64_TOL, &format!("{name} dx"));
    close(&g[1], dw, PYTORCH_F64_TOL, &format!("{name} dw"));
    if let Some(db) = db {
        close(&g[2], db, PYTORCH_F64_TOL, &format!("{name} db"));
    }
    let b32 = Var::constant(b.cast::<f32>());
    let y32 = Var::constant(x.cast::<f32>()).conv2d(&Var::constant(wt.cast::<f32>()), bias.then_some(&b32));
    let y32: Vec<f64> = y32.value().data().iter().map(|&v| v as f64).collect();
    close(&y32, y_want, PYTORCH_F32_TOL, &format!("{name} f32"));
}

#[test]
fn conv2d_k3_with_bias_matches_pytorch() {
    conv_case("conv k=3", [1, 2, 2, 4, 5, 3], true, &CONV3_Y, &CONV3_DX, &CONV3_DW, Some(&CONV3_DB));
}

#[test]
fn conv2d_k5_without_bias_non_square_matches_pytorch() {
    conv_case("conv k=5", [2, 1, 1, 5, 6, 5], false, &CONV5_Y, &CONV5_DX, &CONV5_DW, None);
}

#[test]
fn conv2d_k1_matches_pytorch() {
    conv_case("conv k=1", [1, 2, 3, 3, 2, 1], true, &CONV1_Y, &CONV1_DX, &CONV1_DW, Some(&CONV1_DB));
}

#[test]
fn masked_sin_logsumexp_matches_pytorch() {
    let x = Tensor::from_vec(&[3, 4], pattern(12, 5, 9, 4.0, 3.0));
    let mask = Rc::new(t(&[3, 4], &[1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0]));
    let (y, g) = value_and_grads(|v| v[0].sin().mul_const(&mask).logsumexp(1), &[x], &[1.0, -0.5, 2.0]);
    close(&y, &COMP_Y, PYTORCH_F64_TOL, "composite");
    close(&g[0], &COMP_DX, PYTORCH_F64_TOL, "composite grad");
}

#[test]
fn adam_matches_pytorch() {
    let grads = [[0.1, -0.2, 0.0, 3.0], [0.05, 0.4, -1.0, -3.0], [-0.3, 0.1, 0.5, 2.5]];
    let custom = AdamConfig { lr: 0.05, beta1: 0.8, beta2: 0.95, eps: 1e-6 };
    for (name, config, want) in [("default", AdamConfig::default(), &ADAM_DEFAULT), ("custom", custom, &ADAM_CUSTOM)] {
        let mut p = t(&[4], &[0.5, -1.0, 2.0, 0.0]);
        let mut opt = Adam::<f64>::new(config, &[4]);
        for (s, g) in grads.iter().enumerate() {
            opt.step(&mut [&mut p], &[&t(&[4], g)]);
            close(p.data(), &want[4 * s..4 * s + 4], PYTORCH_F64_TOL, &format!("adam {name} step {}", s + 1));
        }
        // The same in f32, as training runs it.
        let mut p32 = Tensor::<f32>::from_vec(&[4], vec![0.5, -1.0, 2.0, 0.0]);
        let mut opt = Adam::<f32>::new(config, &[4]);
        for g in &grads {
            opt.step(&mut [&mut p32], &[&t(&[4], g).cast::<f32>()]);
        }
        let got: Vec<f64> = p32.data().iter().map(|&v| v as f64).collect();
        close(&got, &want[8..12], PYTORCH_F32_TOL, &format!("adam {name} f32"));
    }
}
