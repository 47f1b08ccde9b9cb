//! `latflow apply`: pushes given latent samples through a trained flow of any theory, or
//! pulls given configurations back to the latent space.
//!
//! ```text
//! latflow apply --checkpoint FILE --input IN.safetensors --output OUT.safetensors [--reverse]
//! ```
//!
//! Forward (default): reads `z` of shape `(N, S...)` with `S` the prior's per-sample shape
//! (`(L, L)` for phi^4, `(2, L, L)` for U(1)), F32 or F64, and writes `x = f(z)`, `z` and
//! `logq = log q(x) = log r(z) - sum_layers log|det J|` (shape `(N,)`). Reverse: reads `x`
//! and writes `z = f^{-1}(x)`, `x` and `logq` through `Flow::reverse`. The computation and
//! the output use the input's dtype (an F64 input runs the flow in f64 with the
//! checkpoint's parameters widened exactly). `--L` runs the flow at another lattice size
//! than the checkpoint's (a multiple of its masks' period: [`checkpoints::open_at`]).

use super::{checkpoints, Args, CliError, CliResult};
use crate::flow::checkpoint::tensor_data;
use crate::flow::model::{Flow, Record};
use crate::io::safetensors::{CheckpointError, Dtype, SafeTensors, TensorData};
use crate::tensor::{Float, Tensor, Var};
use crate::theory::Theory;
use std::path::{Path, PathBuf};

/// Usage line of `latflow apply`.
pub const USAGE: &str =
    "latflow apply --checkpoint FILE --input IN.safetensors --output OUT.safetensors [--reverse] [--force] [--L L]";

/// `latflow apply ...`.
pub fn run(theories: &[&dyn Theory], args: &[String]) -> CliResult<()> {
    let a = Args::parse(args, &["checkpoint", "input", "output", "L"], &["reverse", "force"])?;
    if let Some(p) = a.positional.first() {
        return Err(CliError(format!("apply: unexpected argument {p:?}\nusage: {USAGE}")));
    }
    let required = |name: &str| -> CliResult<PathBuf> {
        a.opt(name)?.ok_or_else(|| CliError(format!("apply: --{name} FILE is required\nusage: {USAGE}")))
    };
    let (ckpt, input, output) = (required("checkpoint")?, required("input")?, required("output")?);
    for (what, p) in [("checkpoint", &ckpt), ("input", &input)] {
        if same_file(p, &output) {
            return Err(CliError(format!(
                "apply: --output {} is the {what}; apply never writes over its inputs",
                output.display()
            )));
        }
    }
    if let Ok(m) = std::fs::symlink_metadata(&output) {
        if !m.file_type().is_file() {
            return Err(CliError(format!("apply: --output {} exists and is not a regular file", output.display())));
        }
        if !a.has("force") {
            return Err(CliError(format!(
                "apply: --output {} exists; choose another name, or pass --force to replace it",
                output.display()
            )));
        }
    }
    let reverse = a.has("reverse");
    let theory = checkpoints::theory_of(theories, &ckpt)?;
    let ck = checkpoints::open_at(theory, &ckpt, a.opt("L")?)?;
    let flow32 = ck.flow_f32()?;
    super::sample::note_size(&ck);
    let (name_in, names_out) = if reverse { ("x", ["z", "x"]) } else { ("z", ["x", "z"]) };
    let file_err = |p: &Path, e: CheckpointError| CliError(format!("{}: {e}", p.display()));
    let st_in = SafeTensors::read(&input).map_err(|e| file_err(&input, e))?;
    let t = st_in.tensor(name_in).map_err(|e| file_err(&input, e))?;
    if !t.is_float() {
        return Err(CliError(format!(
            "{}: tensor '{name_in}' is {}; apply reads F32 or F64 configurations",
            input.display(),
            t.dtype
        )));
    }
    let per = flow32.prior.shape().to_vec();
    if t.shape.len() != per.len() + 1 || t.shape[1..] != per[..] || t.shape[0] == 0 {
        let dims: Vec<String> = per.iter().map(|d| d.to_string()).collect();
        let lattice: Vec<String> = per[per.len().saturating_sub(2)..].iter().map(|d| d.to_string()).collect();
        return Err(CliError(format!(
            "{}: tensor '{name_in}' has shape {:?}, expected (N, {}) with N >= 1 for the {} lattice (--L runs \
             the flow at another size)",
            input.display(),
            t.shape,
            dims.join(", "),
            lattice.join("x")
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
        // the same model in f64: the checkpoint's parameters, widened exactly
        Dtype::F64 => transform(&ck.flow_f64()?, &shape, &values, reverse),
        Dtype::I64 => unreachable!("integer inputs are refused above"),
    };
    for (name, t) in names_out.iter().zip([&a_out, &b_out]).chain([(&"logq", &logq)]) {
        if let Some(i) = t.to_f64().iter().position(|v| !v.is_finite()) {
            let per = t.numel() / shape[0];
            return Err(CliError(format!(
                "apply: the flow gives a non-finite {name} for configuration {} of {} (inputs far outside the \
                 range the flow was trained on?); nothing written",
                i / per.max(1),
                input.display()
            )));
        }
    }
    let mut out = SafeTensors::default();
    out.insert(names_out[0].into(), a_out);
    out.insert(names_out[1].into(), b_out);
    out.insert("logq".into(), logq);
    out.metadata.insert("direction".into(), if reverse { "reverse" } else { "forward" }.into());
    out.metadata.insert("checkpoint".into(), ckpt.display().to_string());
    let sizes = checkpoints::size_metadata(&ck);
    if !sizes.is_empty() {
        out.metadata.insert("L".into(), checkpoints::run_size(&ck));
        out.metadata.extend(sizes);
    }
    out.write(&output).map_err(|e| file_err(&output, e))?;
    eprintln!(
        "apply: {} {} configurations of shape {:?} ({}) -> {}",
        if reverse { "pulled back" } else { "pushed forward" },
        shape[0],
        per,
        t.dtype,
        output.display()
    );
    Ok(())
}

/// Whether two paths name one existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

/// Forward: `z -> [x, z, logq]`; reverse: `x -> [z, x, logq]`, in `T`.
fn transform<T: Float>(flow: &Flow<T>, shape: &[usize], values: &[f64], reverse: bool) -> [TensorData; 3] {
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
