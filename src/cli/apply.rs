//! `latflow apply`: pushes given latent samples through a trained phi^4 flow, or pulls
//! given field configurations back to the latent space.
//!
//! ```text
//! latflow apply --checkpoint FILE --input IN.safetensors --output OUT.safetensors [--reverse]
//! ```
//!
//! Forward (default): reads `z` of shape `(N, L, L)` (F32 or F64) and writes `x = f(z)`,
//! `z` and `logq = log q(x) = log r(z) - sum_layers log|det J|` (shape `(N,)`).
//! Reverse: reads `x` and writes `z = f^{-1}(x)`, `x` and `logq` through `Flow::reverse`.
//! The computation and the output use the input's dtype (an F64 input runs the flow in
//! f64 with the checkpoint's parameters widened exactly).

use super::phi4run;
use super::{Args, CliError, CliResult};
use latflow::flow::checkpoint::{load_params, tensor_data};
use latflow::flow::model::Record;
use latflow::flow::phi4::{Phi4Flow, Phi4FlowConfig};
use latflow::flow::prior::Prior;
use latflow::flow::safetensors::{Dtype, SafeTensors, TensorData};
use latflow::tensor::{Float, Tensor, Var};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::path::{Path, PathBuf};

/// Usage line of `latflow apply`.
pub const USAGE: &str = "latflow apply --checkpoint FILE --input IN.safetensors --output OUT.safetensors [--reverse]";

/// `latflow apply ...`.
pub fn run(args: &[String]) -> CliResult<()> {
    let a = Args::parse(args, &["checkpoint", "input", "output"], &["reverse"])?;
    if let Some(p) = a.positional.first() {
        return Err(CliError(format!("apply: unexpected argument {p:?}\nusage: {USAGE}")));
    }
    let required = |name: &str| -> CliResult<PathBuf> {
        a.opt(name)?.ok_or_else(|| CliError(format!("apply: --{name} FILE is required\nusage: {USAGE}")))
    };
    let (ckpt, input, output) = (required("checkpoint")?, required("input")?, required("output")?);
    let reverse = a.has("reverse");
    let (flow32, _, _) = phi4run::load(&ckpt)?;
    let (name_in, names_out) = if reverse { ("x", ["z", "x"]) } else { ("z", ["x", "z"]) };
    let file_err = |p: &Path, e: latflow::flow::safetensors::CheckpointError| CliError(format!("{}: {e}", p.display()));
    let st_in = SafeTensors::read(&input).map_err(|e| file_err(&input, e))?;
    let t = st_in.tensor(name_in).map_err(|e| file_err(&input, e))?;
    let l = Prior::<f32>::shape(&flow32.prior).to_vec();
    if t.shape.len() != 3 || t.shape[1..] != l[..] || t.shape[0] == 0 {
        return Err(CliError(format!(
            "{}: tensor '{name_in}' has shape {:?}, expected (N, {}, {}) with N >= 1 for the checkpoint's {}x{} lattice",
            input.display(),
            t.shape,
            l[0],
            l[1],
            l[0],
            l[1]
        )));
    }
    let values = t.to_f64();
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(CliError(format!(
            "{}: tensor '{name_in}' has a non-finite value at flat index {i}",
            input.display()
        )));
    }
    let shape = t.shape.clone();
    let [a_out, b_out, logq] = match t.dtype {
        Dtype::F32 => transform(&flow32, &shape, &values, reverse),
        Dtype::F64 => {
            // the same model in f64: the checkpoint's parameters, widened exactly
            let st = SafeTensors::read(&ckpt).map_err(|e| file_err(&ckpt, e))?;
            let mut flow64 = config_of(&flow32).build::<f64, _>(&mut StdRng::seed_from_u64(0));
            load_params(&st, &mut flow64).map_err(|e| file_err(&ckpt, e))?;
            transform(&flow64, &shape, &values, reverse)
        }
    };
    let mut out = SafeTensors::default();
    out.insert(names_out[0].into(), a_out);
    out.insert(names_out[1].into(), b_out);
    out.insert("logq".into(), logq);
    out.metadata.insert("direction".into(), if reverse { "reverse" } else { "forward" }.into());
    out.metadata.insert("checkpoint".into(), ckpt.display().to_string());
    out.write(&output).map_err(|e| file_err(&output, e))?;
    eprintln!(
        "apply: {} {} configurations of {}x{} ({}) -> {}",
        if reverse { "pulled back" } else { "pushed forward" },
        shape[0],
        l[0],
        l[1],
        t.dtype,
        output.display()
    );
    Ok(())
}

/// The architecture of a built phi^4 flow.
fn config_of(flow: &Phi4Flow<f32>) -> Phi4FlowConfig {
    let net = &flow.layers[0].net.config;
    Phi4FlowConfig {
        l: Prior::<f32>::shape(&flow.prior)[0],
        layers: flow.layers.len(),
        hidden: net.hidden.clone(),
        kernel: net.kernel,
        final_tanh: net.final_tanh,
    }
}

/// Forward: `z -> [x, z, logq]`; reverse: `x -> [z, x, logq]`, in `T`.
fn transform<T: Float>(flow: &Phi4Flow<T>, shape: &[usize], values: &[f64], reverse: bool) -> [TensorData; 3] {
    let input: Tensor<T> = Tensor::from_vec(shape, values.iter().map(|&v| T::from_f64(v)).collect());
    if reverse {
        let (z, logq) = flow.reverse(&input);
        [tensor_data(&z), tensor_data(&input), tensor_data(&logq)]
    } else {
        let log_r = Var::constant(flow.prior.log_prob(&input));
        let params = flow.param_vars(Record::Off);
        let (x, logq) = flow.forward(Var::constant(input.clone()), log_r, &params);
        [tensor_data(x.value()), tensor_data(&input), tensor_data(logq.value())]
    }
}
