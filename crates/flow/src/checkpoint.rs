//! Flow checkpoints: safetensors files whose tensor names are the PyTorch reference's
//! `model['layers'].state_dict()` keys (`0.net.0.weight`, ...), so a trained model loads
//! into the PyTorch tutorial code and back, plus the run's description (theory,
//! couplings, architecture, step, seed) in the `__metadata__` strings. The layers'
//! constant buffers (masks) are stored too, as in the reference's `state_dict`, and
//! checked on load.

use crate::model::Flow;
use latflow_io::safetensors::{CheckpointError, Dtype, SafeTensors, TensorData};
use latflow_tensor::{Float, Tensor};
use std::collections::BTreeMap;
use std::path::Path;

/// Metadata key naming the checkpoint format version.
pub const FORMAT_KEY: &str = "latflow_format";
/// Current format version. Version 2 (2026-11-30) stores the mask buffers of every layer
/// kind; version 1 files of U(1) flows lack them and still load (the masks are determined
/// by the architecture in the metadata).
pub const FORMAT_VERSION: &str = "2";

/// Writes the flow's parameters (in their own dtype) and `metadata` to `path`
/// atomically (temp file + rename: an interrupted write never destroys the last good
/// checkpoint).
pub fn save<T: Float>(path: &Path, flow: &Flow<T>, metadata: &BTreeMap<String, String>) -> Result<(), CheckpointError> {
    let mut st = SafeTensors::default();
    for (name, t) in flow.named_params().into_iter().chain(flow.named_buffers()) {
        st.insert(name, tensor_data(t));
    }
    st.metadata = metadata.clone();
    st.metadata.insert(FORMAT_KEY.into(), FORMAT_VERSION.into());
    st.metadata.insert("dtype".into(), T::NAME.into());
    st.write(path)
}

/// The stored form of a tensor, in its own dtype.
pub fn tensor_data<T: Float>(t: &Tensor<T>) -> TensorData {
    if T::NAME == "f32" {
        let v: Vec<f32> = t.to_host_vec().iter().map(|x| x.to_f64() as f32).collect();
        TensorData::from_f32(t.shape(), &v)
    } else {
        let v: Vec<f64> = t.to_host_vec().iter().map(|x| x.to_f64()).collect();
        TensorData::from_f64(t.shape(), &v)
    }
}

/// Copies the parameters stored in `st` into `flow`, checking that the names are
/// exactly the model's (no missing, no extra) and that every shape matches. On error
/// the flow is left unchanged.
pub fn load_params<T: Float>(st: &SafeTensors, flow: &mut Flow<T>) -> Result<(), CheckpointError> {
    let mut values = Vec::new();
    for (name, t) in flow.named_params() {
        let stored = st.check_shape(&name, t.shape())?;
        let data: Vec<T> = match stored.dtype {
            Dtype::F32 => stored.to_f32().into_iter().map(|v| T::from_f64(v as f64)).collect(),
            Dtype::F64 => stored.to_f64().into_iter().map(T::from_f64).collect(),
            Dtype::I64 => {
                return Err(CheckpointError::Format(format!("parameter {name:?} is I64; parameters are F32 or F64")))
            }
        };
        if let Some(i) = data.iter().position(|v| !v.to_f64().is_finite()) {
            return Err(CheckpointError::Format(format!(
                "parameter {name:?} has a non-finite value at flat index {i} (a diverged run?)"
            )));
        }
        values.push(data);
    }
    let format = st.metadata.get(FORMAT_KEY).map_or("1", String::as_str);
    if format != "1" && format != FORMAT_VERSION {
        return Err(CheckpointError::Format(format!(
            "checkpoint format version {format:?}; this latflow reads versions \"1\" and {FORMAT_VERSION:?}"
        )));
    }
    let v1 = format == "1";
    for (name, t) in flow.named_buffers() {
        if v1 && !st.tensors.contains_key(&name) {
            continue;
        }
        let stored = st.check_shape(&name, t.shape())?;
        let same = stored.to_f64().iter().zip(t.to_host_vec()).all(|(a, b)| *a == b.to_f64());
        if !same {
            return Err(CheckpointError::Mismatch(format!(
                "buffer {name:?} differs from this model's (other mask layout or layer order?)"
            )));
        }
    }
    let expected: std::collections::BTreeSet<String> =
        flow.named_params().into_iter().chain(flow.named_buffers()).map(|(n, _)| n).collect();
    if let Some(extra) = st.tensors.keys().find(|k| !expected.contains(*k)) {
        return Err(CheckpointError::Mismatch(format!(
            "tensor {extra:?} is not a parameter of this model (other architecture?)"
        )));
    }
    for (p, v) in flow.params_mut().into_iter().zip(values) {
        p.data_mut().copy_from_slice(&v);
    }
    Ok(())
}

/// A metadata value parsed as `V`, with an error naming the key.
pub fn meta_get<V: std::str::FromStr>(meta: &BTreeMap<String, String>, key: &str) -> Result<V, CheckpointError> {
    let s = meta.get(key).ok_or_else(|| CheckpointError::Format(format!("missing metadata entry {key:?}")))?;
    s.parse().map_err(|_| CheckpointError::Format(format!("metadata entry {key:?} = {s:?} cannot be parsed")))
}
