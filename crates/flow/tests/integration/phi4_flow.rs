//! Audits of the phi^4 flow (arXiv:2101.08176 section IV), in f64 unless said:
//! invertibility, the log-Jacobian against a finite-difference Jacobian, equivariance
//! under parity-preserving translations, gradcheck of the training loss, and checkpoint
//! round trips and failures.

use latflow_flow::checkpoint::{self, load_params, save};
use latflow_flow::model::Flow;
use latflow_flow::model::Record;
use latflow_flow::phi4::{AffineCoupling, Phi4FlowConfig};
use latflow_io::safetensors::{CheckpointError, SafeTensors};
use latflow_physics::phi4_action_var;
use latflow_tensor::{gradcheck, Float, GradcheckConfig, Tensor, Var};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::common;
use common::log_abs_det;

/// `reverse(forward(z))` vs `z`, `log q` of the two passes, and per-layer log-Jacobians of
/// the forward pass and of the reverse pass at its image: O(100) roundings of O(1) values
/// per layer over 16 layers, far below this.
const ROUNDTRIP_TOL: f64 = 1e-8;
/// Sum of log-Jacobians vs log|det| of the central-difference Jacobian (step
/// `FD_STEP`: truncation ~h^2 f''' ~ 1e-10 and rounding ~1e-16/h ~ 1e-11 per entry, a
/// 16x16 determinant compounds it to ~1e-9).
const FD_LOGDET_TOL: f64 = 1e-6;
/// Central-difference step of the Jacobian.
const FD_STEP: f64 = 1e-5;
/// f(roll z) vs roll f(z) and their log q: the same arithmetic on permuted sites, up to
/// the summation order of the log-Jacobian over sites.
const EQUIVARIANCE_TOL: f64 = 1e-10;
/// The tutorial's couplings.
const M2: f64 = -4.0;
/// The tutorial's quartic coupling.
const LAM: f64 = 8.0;

/// A flow whose parameters are the PyTorch init plus N(0, sigma^2) noise, so that the
/// scale and shift of every coupling are O(1) (a fresh flow is close to the identity,
/// which would make the audits weak).
fn perturbed_flow(config: &Phi4FlowConfig, seed: u64, sigma: f64) -> Flow<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut flow = config.build::<f64>(&mut rng);
    for p in flow.params_mut() {
        let noise = Tensor::<f64>::randn(p.shape(), &mut rng);
        for (v, e) in p.data_mut().iter_mut().zip(noise.data()) {
            *v += sigma * e;
        }
    }
    flow
}

/// Prior samples `z` (n, l, l) and `log r(z)`.
fn latent(flow: &Flow<f64>, n: usize, seed: u64) -> (Tensor<f64>, Tensor<f64>) {
    let z: Tensor<f64> = flow.prior.sample(n, &mut StdRng::seed_from_u64(seed));
    let log_r = flow.prior.log_prob(&z);
    (z, log_r)
}

/// `(f(z), log q)` with the parameters as constants.
fn push(flow: &Flow<f64>, z: &Tensor<f64>, log_r: &Tensor<f64>) -> (Tensor<f64>, Tensor<f64>) {
    let params = flow.param_vars(Record::Off);
    let (x, logq) = flow.forward(Var::constant(z.clone()), Var::constant(log_r.clone()), &params);
    (x.value().clone(), logq.value().clone())
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

#[test]
fn reverse_inverts_forward_and_log_jacobians_cancel() {
    let flow = perturbed_flow(&Phi4FlowConfig::default(), 1, 0.3);
    let (z, log_r) = latent(&flow, 8, 2);
    let (x, logq) = push(&flow, &z, &log_r);
    let (z_back, logq_back) = flow.reverse(&x);
    let dz = max_abs_diff(z_back.data(), z.data());
    let dq = max_abs_diff(logq_back.data(), logq.data());
    let moved = max_abs_diff(x.data(), z.data());
    let sum_logj = max_abs_diff(logq.data(), log_r.data());
    println!(
        "round trip: max |dz| {dz:.2e}, max |d log q| {dq:.2e}; max |x - z| {moved:.2}, max |sum log J| {sum_logj:.2}"
    );
    assert!(dz < ROUNDTRIP_TOL, "reverse(forward(z)) - z = {dz:e}");
    assert!(dq < ROUNDTRIP_TOL, "log q forward vs reverse differ by {dq:e}");
    // the flow is far from the identity, so the audit is not trivially true
    assert!(moved > 1.0 && sum_logj > 1.0, "flow too close to the identity: {moved}, {sum_logj}");

    // per layer: forward then reverse, log|det J| of both passes cancel
    let params = flow.param_vars(Record::Off);
    let mut at = 0;
    let mut h = Var::constant(z.clone());
    for (i, layer) in flow.layers().iter().enumerate() {
        let np = layer.n_params();
        let p = &params[at..at + np];
        at += np;
        let (y, lj) = layer.forward(&h, p);
        let (back, lj_back) = layer.reverse(&y, p);
        let dx = max_abs_diff(back.value().data(), h.value().data());
        let net: Vec<f64> = lj.value().data().iter().zip(lj_back.value().data()).map(|(a, b)| a - b).collect();
        let dl = net.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(dx < ROUNDTRIP_TOL, "layer {i}: reverse(forward(x)) - x = {dx:e}");
        assert!(dl < ROUNDTRIP_TOL, "layer {i}: log J forward + log J^-1 reverse = {dl:e}");
        h = y;
    }
}

#[test]
fn log_jacobian_equals_finite_difference_log_det_on_4x4() {
    let (l, nb) = (4, 3);
    let config = Phi4FlowConfig { l, layers: 4, kernel: 3, ..Phi4FlowConfig::default() };
    let flow = perturbed_flow(&config, 11, 0.3);
    let (z, log_r) = latent(&flow, nb, 12);
    let (_, logq) = push(&flow, &z, &log_r);
    // log q = log r - sum log J
    let logj: Vec<f64> = log_r.data().iter().zip(logq.data()).map(|(r, q)| r - q).collect();
    let dof = l * l;
    // jac[b][i][j] = d x_i / d z_j for sample b; samples are independent, so perturb
    // site j of every sample at once
    let mut jac = vec![vec![vec![0.0; dof]; dof]; nb];
    for j in 0..dof {
        let (mut zp, mut zm) = (z.clone(), z.clone());
        for b in 0..nb {
            zp.data_mut()[b * dof + j] += FD_STEP;
            zm.data_mut()[b * dof + j] -= FD_STEP;
        }
        let (xp, _) = push(&flow, &zp, &log_r);
        let (xm, _) = push(&flow, &zm, &log_r);
        for b in 0..nb {
            for i in 0..dof {
                let k = b * dof + i;
                jac[b][i][j] = (xp.data()[k] - xm.data()[k]) / (2.0 * FD_STEP);
            }
        }
    }
    for b in 0..nb {
        let fd = log_abs_det(jac[b].clone());
        println!("sample {b}: sum log J {:.10} vs FD log|det| {fd:.10}", logj[b]);
        assert!((fd - logj[b]).abs() < FD_LOGDET_TOL, "sample {b}: sum log J {} vs FD {fd}", logj[b]);
        assert!(logj[b].abs() > 0.5, "the audit needs a non-trivial Jacobian, got {}", logj[b]);
    }
}

#[test]
fn translation_by_two_sites_commutes_with_the_flow() {
    let flow = perturbed_flow(&Phi4FlowConfig::default(), 21, 0.3);
    let (z, log_r) = latent(&flow, 4, 22);
    let (x, logq) = push(&flow, &z, &log_r);
    let roll = |t: &Tensor<f64>, axis: usize, shift: isize| Var::constant(t.clone()).roll(axis, shift).value().clone();
    for (axis, shift) in [(1, 2), (2, 2), (1, -2), (2, 4)] {
        let zr = roll(&z, axis, shift);
        let (xr, logqr) = push(&flow, &zr, &log_r); // log r is translation invariant
        let dx = max_abs_diff(xr.data(), roll(&x, axis, shift).data());
        let dq = max_abs_diff(logqr.data(), logq.data());
        println!("roll axis {axis} by {shift}: max |f(roll z) - roll f(z)| {dx:.2e}, max |d log q| {dq:.2e}");
        assert!(dx < EQUIVARIANCE_TOL, "axis {axis} shift {shift}: {dx:e}");
        assert!(dq < EQUIVARIANCE_TOL * logq.data()[0].abs().max(1.0), "axis {axis} shift {shift}: log q {dq:e}");
    }
    // a one-site shift swaps the checkerboard parities: no symmetry, so the check has teeth
    let (x1, _) = push(&flow, &roll(&z, 1, 1), &log_r);
    let d1 = max_abs_diff(x1.data(), roll(&x, 1, 1).data());
    println!("roll by one site (parity-changing): {d1:.2e}");
    assert!(d1 > 1e-2, "a one-site shift should not commute with the checkerboard couplings ({d1:e})");
}

/// The training loss `mean(log q + S)` less `mean(log r(z))`, a constant of the
/// parameters (z is fixed): same gradient, and dropping it keeps the rounding noise of the
/// central differences (~1e-16 |loss| / h) small.
fn loss(flow: &Flow<f64>, z: &Tensor<f64>, params: &[Var<f64>]) -> Var<f64> {
    let log_r = Var::constant(Tensor::zeros(&[z.shape()[0]]));
    let (x, logq) = flow.forward(Var::constant(z.clone()), log_r, params);
    logq.add(&phi4_action_var(&x, M2, LAM)).mean()
}

/// Smallest |input| of any LeakyReLU of the flow on `z`: central differences with step
/// `h` are only valid where no such input lies within ~`2h |d input / d theta|` of the kink.
fn kink_margin(flow: &Flow<f64>, z: &Tensor<f64>) -> f64 {
    let params = flow.param_vars(Record::Off);
    let l = z.shape()[1];
    let mut x = Var::constant(z.clone());
    let mut at = 0;
    let mut margin = f64::INFINITY;
    for layer in flow.layers() {
        let np = layer.n_params();
        let p = &params[at..at + np];
        let full = layer;
        let layer = layer.as_any().downcast_ref::<AffineCoupling<f64>>().expect("phi^4 flows hold affine couplings");
        let mask = std::rc::Rc::new(latflow_flow::phi4::masks::checkerboard::<f64>(l, l, layer.parity));
        let mut h = x.mul_const(&mask).unsqueeze(1);
        for c in 0..layer.net.convs.len() - 1 {
            h = h.conv2d(&p[2 * c], Some(&p[2 * c + 1]));
            margin = h.value().data().iter().fold(margin, |m, v| m.min(v.abs()));
            let latflow_flow::net::Activation::LeakyRelu(slope) = layer.net.config.activation else {
                panic!("the tutorial's nets use LeakyReLU")
            };
            h = h.leaky_relu(slope);
        }
        x = full.forward(&x, p).0;
        at += np;
    }
    margin
}

#[test]
fn gradcheck_loss_wrt_a_sample_of_every_layer() {
    // 8 layers on 8x8: every parameter of the first and last layer, one tensor of each
    // other layer (cycling through the weights and biases of the three convolutions).
    let config = Phi4FlowConfig { layers: 8, ..Phi4FlowConfig::default() };
    let flow = perturbed_flow(&config, 56, 0.05);
    // narrow latent samples (0.3 z) keep the fields O(0.5) and the loss O(10): the central
    // differences' rounding noise is ~1e-16 |loss| / h ~ 1e-9, below the 1e-3 floor x 1e-6
    let z = latent(&flow, 1, 1056).0.map(|v| 0.3 * v);
    // For most seeds one of the 8192 LeakyReLU inputs (8 layers x 2 x 8 channels x 64
    // sites; density ~1 at 0) lies within 1e-4 of the kink, where central differences
    // are wrong; this seed keeps them all beyond 10 h.
    let margin = kink_margin(&flow, &z);
    let gc = GradcheckConfig::default();
    println!("loss {:.4}, kink margin {margin:.2e}", loss(&flow, &z, &flow.param_vars(Record::Off)).value().item());
    assert!(margin > 10.0 * gc.step, "a LeakyReLU input lies {margin:e} from the kink: pick another seed");
    let named = flow.named_params();
    let all: Vec<Tensor<f64>> = named.iter().map(|(_, t)| (*t).clone()).collect();
    let per_layer = 6;
    let nl = flow.layers().len();
    let mut audited: Vec<usize> = (0..per_layer).chain((nl - 1) * per_layer..nl * per_layer).collect();
    for i in 1..nl - 1 {
        audited.push(i * per_layer + (i - 1) % per_layer);
    }
    audited.sort_unstable();
    let names: Vec<&str> = audited.iter().map(|&i| named[i].0.as_str()).collect();
    println!("audited: {names:?}");
    let inputs: Vec<Tensor<f64>> = audited.iter().map(|&i| all[i].clone()).collect();
    let f = |v: &[Var<f64>]| {
        let mut params: Vec<Var<f64>> = all.iter().map(|t| Var::constant(t.clone())).collect();
        for (k, &i) in audited.iter().enumerate() {
            params[i] = v[k].clone();
        }
        loss(&flow, &z, &params)
    };
    let report = gradcheck(f, &inputs, gc);
    for (n, e) in names.iter().zip(&report.inputs) {
        println!("{n:>16}: max rel {:.2e}, max abs {:.2e}", e.max_rel, e.max_abs);
    }
    assert!(report.passed(), "{report:?}");
}

/// A path in a temp directory of its own per test (`dir`) and process.
fn temp_path(dir: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("latflow-phi4-flow-{dir}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn metadata(config: &Phi4FlowConfig) -> BTreeMap<String, String> {
    BTreeMap::from([("theory".to_string(), "phi4".to_string()), ("L".to_string(), config.l.to_string())])
}

/// Saves `flow`, reads it back into a fresh flow of the same architecture, and checks
/// that both draw bit-identical samples from the same seed.
fn checkpoint_round_trip<T: Float>(config: &Phi4FlowConfig, name: &str) {
    let mut trained = config.build::<T>(&mut StdRng::seed_from_u64(41));
    // move the parameters off their init so that a silently skipped load would show
    for p in trained.params_mut() {
        for (k, v) in p.data_mut().iter_mut().enumerate() {
            *v = T::from_f64(v.to_f64() * 1.5 + 0.01 * (k % 7) as f64);
        }
    }
    let path = temp_path("roundtrip", name);
    save(&path, &trained, &metadata(config)).unwrap();
    let st = SafeTensors::read(&path).unwrap();
    assert_eq!(st.metadata.get("L").map(String::as_str), Some("8"));
    assert_eq!(st.metadata.get(checkpoint::FORMAT_KEY).map(String::as_str), Some(checkpoint::FORMAT_VERSION));
    let mut loaded = config.build::<T>(&mut StdRng::seed_from_u64(999));
    assert_ne!(loaded, trained);
    load_params(&st, &mut loaded).unwrap();
    assert_eq!(loaded, trained);
    let (xa, qa) = trained.sample(16, &mut StdRng::seed_from_u64(7));
    let (xb, qb) = loaded.sample(16, &mut StdRng::seed_from_u64(7));
    let bits = |t: &Tensor<T>| t.data().iter().map(|v| v.to_f64().to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&xa), bits(&xb), "samples differ after the checkpoint round trip ({})", T::NAME);
    assert_eq!(bits(&qa), bits(&qb), "log q differs after the checkpoint round trip ({})", T::NAME);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn checkpoint_round_trip_gives_bit_identical_samples() {
    let config = Phi4FlowConfig { layers: 4, ..Phi4FlowConfig::default() };
    checkpoint_round_trip::<f64>(&config, "roundtrip64.safetensors");
    checkpoint_round_trip::<f32>(&config, "roundtrip32.safetensors");
}

/// Loads `path` into a flow of `config` the way the CLI does (read, then load_params).
fn try_load(path: &std::path::Path, config: &Phi4FlowConfig) -> Result<Flow<f64>, CheckpointError> {
    let st = SafeTensors::read(path)?;
    let mut flow = config.build::<f64>(&mut StdRng::seed_from_u64(0));
    let before = flow.clone();
    let r = load_params(&st, &mut flow);
    if r.is_err() {
        assert_eq!(flow, before, "a failed load must leave the flow unchanged");
    }
    r.map(|()| flow)
}

#[test]
fn bad_checkpoints_give_clear_errors_not_panics() {
    let config = Phi4FlowConfig { layers: 4, ..Phi4FlowConfig::default() };
    let flow = config.build::<f64>(&mut StdRng::seed_from_u64(51));
    let path = temp_path("bad", "good.safetensors");
    save(&path, &flow, &metadata(&config)).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert!(try_load(&path, &config).is_ok());

    // truncated anywhere: in the length prefix, the header, or the data
    for cut in [0, 3, 8, 20, bytes.len() / 2, bytes.len() - 1] {
        let p = temp_path("bad", &format!("truncated{cut}.safetensors"));
        std::fs::write(&p, &bytes[..cut]).unwrap();
        let e = try_load(&p, &config).unwrap_err();
        println!("truncated at {cut}: {e}");
        assert!(matches!(e, CheckpointError::Format(_)), "{e:?}");
        assert!(e.to_string().contains(&p.display().to_string()), "the message names the file: {e}");
    }
    // corrupt header bytes and a garbage file
    let mut corrupt = bytes.clone();
    for b in &mut corrupt[8..40] {
        *b = b'#';
    }
    let p = temp_path("bad", "corrupt.safetensors");
    std::fs::write(&p, &corrupt).unwrap();
    let e = try_load(&p, &config).unwrap_err();
    println!("corrupt header: {e}");
    assert!(matches!(e, CheckpointError::Format(_)), "{e:?}");
    let p = temp_path("bad", "garbage.safetensors");
    std::fs::write(&p, b"this is not a checkpoint at all, just some text\n").unwrap();
    let e = try_load(&p, &config).unwrap_err();
    println!("garbage: {e}");
    assert!(matches!(e, CheckpointError::Format(_)), "{e:?}");
    // missing file
    let e = try_load(&temp_path("bad", "does-not-exist.safetensors"), &config).unwrap_err();
    assert!(matches!(e, CheckpointError::Io(_)), "{e:?}");

    // other architectures: hidden size, more layers, fewer layers, kernel size
    let cases = [
        ("hidden [4, 4]", Phi4FlowConfig { hidden: vec![4, 4], ..config.clone() }),
        ("hidden [8, 8, 8]", Phi4FlowConfig { hidden: vec![8, 8, 8], ..config.clone() }),
        ("6 layers", Phi4FlowConfig { layers: 6, ..config.clone() }),
        ("2 layers", Phi4FlowConfig { layers: 2, ..config.clone() }),
        ("kernel 5", Phi4FlowConfig { kernel: 5, ..config.clone() }),
    ];
    for (what, other) in cases {
        let e = try_load(&path, &other).unwrap_err();
        println!("model with {what}: {e}");
        assert!(matches!(e, CheckpointError::Mismatch(_) | CheckpointError::Missing(_)), "{what}: {e:?}");
    }

    // other lattice size: the conv parameters do not depend on L (the nets are
    // translation-equivariant and size-agnostic), so only the metadata tells; a loader
    // must compare it, as the CLI does with `meta_get(&meta, "L")`.
    let st = SafeTensors::read(&path).unwrap();
    let stored_l: usize = checkpoint::meta_get(&st.metadata, "L").unwrap();
    let other_l = Phi4FlowConfig { l: 4, ..config.clone() };
    assert_ne!(stored_l, other_l.l);
    let e = checkpoint::meta_get::<usize>(&BTreeMap::new(), "L").unwrap_err();
    assert!(matches!(e, CheckpointError::Format(ref m) if m == "missing metadata entry \"L\""), "{e:?}");
    let bad = BTreeMap::from([("L".to_string(), "eight".to_string())]);
    let e = checkpoint::meta_get::<usize>(&bad, "L").unwrap_err();
    println!("unparsable L: {e}");
    assert!(matches!(e, CheckpointError::Format(_)), "{e:?}");
    std::fs::remove_dir_all(path.parent().unwrap()).ok();
}
