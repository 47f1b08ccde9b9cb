//! `Tensor<T>`: a dense, contiguous, row-major array with a shape. Plain data: no
//! gradient bookkeeping (that lives in [`crate::Var`]). The buffer is shared between
//! clones (copy on write), so clones and reshapes cost no copy.
//!
//! A tensor lives on a [`Device`]: host memory, or (feature `cuda`, f32 only) GPU memory.
//! Ops dispatch on where their inputs are and need them all on one device; moving is
//! explicit ([`Tensor::to_device`]). Reading a GPU tensor's elements with
//! [`Tensor::data`] panics with a message saying so; copy it to the CPU first.

use crate::Float;
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use std::sync::Arc;

/// Where a tensor's data lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Device {
    /// Host memory; ops run on the CPU kernels (SIMD, threads).
    Cpu,
    /// GPU memory (feature `cuda`, f32); ops run on latflow's CUDA kernels.
    Cuda,
}

impl Device {
    /// Parses `cpu` or `cuda` (the CLI's `--device`).
    pub fn parse(s: &str) -> Result<Device, String> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" | "gpu" => Ok(Device::Cuda),
            _ => Err(format!("unknown device {s:?}: expected cpu or cuda")),
        }
    }

    /// `cpu` or `cuda`.
    pub fn name(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
        }
    }

    /// Checks that tensors can be put on this device: always for the CPU; for CUDA, the
    /// binary must be built with the `cuda` feature and a GPU (driver, NVRTC) found. The
    /// error says which is missing.
    pub fn check(self) -> Result<(), String> {
        match self {
            Device::Cpu => Ok(()),
            #[cfg(feature = "cuda")]
            Device::Cuda => latflow_cuda_kernels::gpu().map(|_| ()).map_err(|e| e.to_string()),
            #[cfg(not(feature = "cuda"))]
            Device::Cuda => {
                Err("this binary was built without the `cuda` feature (cargo build --release --features cuda)".into())
            }
        }
    }
}

/// The buffer behind a tensor.
#[derive(Clone, Debug)]
pub(crate) enum Storage<T> {
    Host(Arc<Vec<T>>),
    #[cfg(feature = "cuda")]
    Cuda(Arc<latflow_cuda_kernels::DeviceBuf>),
}

/// Most dimensions a [`Shape`] holds inline.
const INLINE_DIMS: usize = 6;

/// A tensor's extents: inline up to [`INLINE_DIMS`] axes (every tensor of the flows), on
/// the heap beyond. A step creates tens of thousands of tensors; an allocation for each
/// shape was a visible share of its time.
#[derive(Clone)]
enum Shape {
    Inline(u8, [usize; INLINE_DIMS]),
    Heap(Vec<usize>),
}

impl Shape {
    fn new(dims: &[usize]) -> Self {
        if dims.len() <= INLINE_DIMS {
            let mut a = [0; INLINE_DIMS];
            a[..dims.len()].copy_from_slice(dims);
            Shape::Inline(dims.len() as u8, a)
        } else {
            Shape::Heap(dims.to_vec())
        }
    }
    fn as_slice(&self) -> &[usize] {
        match self {
            Shape::Inline(n, a) => &a[..*n as usize],
            Shape::Heap(v) => v,
        }
    }
}

impl std::fmt::Debug for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_slice().fmt(f)
    }
}

/// A dense row-major array. Layout conventions: NCHW for fields, (batch, mu, x, y) for
/// U(1) links (docs/architecture.md, "Conventions").
#[derive(Clone, Debug)]
pub struct Tensor<T: Float> {
    shape: Shape,
    data: Storage<T>,
}

/// Equal shapes and elements (a GPU tensor is copied to the host to compare).
impl<T: Float> PartialEq for Tensor<T> {
    fn eq(&self, other: &Self) -> bool {
        self.shape() == other.shape() && self.to_host_vec() == other.to_host_vec()
    }
}

/// Number of elements of a shape (1 for the scalar shape `[]`).
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// The last owner of a buffer hands it to [`crate::pool`] for the next op's output.
impl<T: Float> Drop for Tensor<T> {
    #[allow(irrefutable_let_patterns)] // without the `cuda` feature there is only Host
    fn drop(&mut self) {
        if let Storage::Host(data) = &mut self.data {
            if let Some(v) = Arc::get_mut(data) {
                crate::pool::recycle(std::mem::take(v));
            }
        }
    }
}

impl<T: Float> Tensor<T> {
    /// A tensor from its shape and row-major data.
    ///
    /// # Panics
    /// If `data.len()` is not the product of `shape`.
    #[track_caller]
    pub fn from_vec(shape: &[usize], data: Vec<T>) -> Self {
        assert_eq!(
            numel(shape),
            data.len(),
            "Tensor::from_vec: shape {shape:?} holds {} elements, data has {}",
            numel(shape),
            data.len()
        );
        Tensor { shape: Shape::new(shape), data: Storage::Host(Arc::new(data)) }
    }

    /// A tensor filled with `value`.
    pub fn full(shape: &[usize], value: T) -> Self {
        Tensor { shape: Shape::new(shape), data: Storage::Host(Arc::new(vec![value; numel(shape)])) }
    }

    /// A tensor of zeros.
    pub fn zeros(shape: &[usize]) -> Self {
        Self::full(shape, T::ZERO)
    }

    /// A tensor of ones.
    pub fn ones(shape: &[usize]) -> Self {
        Self::full(shape, T::ONE)
    }

    /// A 0-dimensional tensor holding one value.
    pub fn scalar(value: T) -> Self {
        Tensor { shape: Shape::new(&[]), data: Storage::Host(Arc::new(vec![value])) }
    }

    /// Standard normal entries from `rng`.
    pub fn randn<R: Rng + ?Sized>(shape: &[usize], rng: &mut R) -> Self {
        let data = (0..numel(shape)).map(|_| T::from_f64(StandardNormal.sample(rng))).collect();
        Tensor { shape: Shape::new(shape), data: Storage::Host(Arc::new(data)) }
    }

    /// Entries uniform in `[lo, hi)` from `rng`.
    pub fn uniform<R: Rng + ?Sized>(shape: &[usize], lo: f64, hi: f64, rng: &mut R) -> Self {
        let data = (0..numel(shape)).map(|_| T::from_f64(rng.gen_range(lo..hi))).collect();
        Tensor { shape: Shape::new(shape), data: Storage::Host(Arc::new(data)) }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        self.shape.as_slice()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match &self.data {
            Storage::Host(v) => v.len(),
            #[cfg(feature = "cuda")]
            Storage::Cuda(b) => b.len(),
        }
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where the data lives.
    pub fn device(&self) -> Device {
        match &self.data {
            Storage::Host(_) => Device::Cpu,
            #[cfg(feature = "cuda")]
            Storage::Cuda(_) => Device::Cuda,
        }
    }

    /// Whether the data lives on the GPU.
    pub fn is_cuda(&self) -> bool {
        self.device() == Device::Cuda
    }

    /// The row-major data.
    ///
    /// # Panics
    /// If the tensor lives on the GPU (copy it with [`Tensor::to_device`] first).
    #[track_caller]
    pub fn data(&self) -> &[T] {
        match &self.data {
            Storage::Host(v) => v,
            #[cfg(feature = "cuda")]
            Storage::Cuda(_) => panic!(
                "tensor of shape {:?} lives on the GPU: copy it with .to_device(Device::Cpu) before reading its elements",
                self.shape
            ),
        }
    }

    /// The row-major data, mutable.
    ///
    /// # Panics
    /// If the tensor lives on the GPU.
    #[track_caller]
    pub fn data_mut(&mut self) -> &mut [T] {
        match &mut self.data {
            Storage::Host(v) => Arc::make_mut(v).as_mut_slice(),
            #[cfg(feature = "cuda")]
            Storage::Cuda(_) => {
                panic!("tensor of shape {:?} lives on the GPU: it cannot be written from the host", self.shape)
            }
        }
    }

    /// The data, consuming the tensor (copied from the GPU when it lives there).
    pub fn into_vec(mut self) -> Vec<T> {
        match &mut self.data {
            Storage::Host(v) => match Arc::get_mut(v) {
                Some(v) => std::mem::take(v),
                None => (**v).clone(),
            },
            #[cfg(feature = "cuda")]
            Storage::Cuda(_) => self.to_host_vec(),
        }
    }

    /// The elements as a host vector (a copy; from the GPU when the tensor lives there).
    pub fn to_host_vec(&self) -> Vec<T> {
        match &self.data {
            Storage::Host(v) => (**v).clone(),
            #[cfg(feature = "cuda")]
            Storage::Cuda(b) => b.to_host().into_iter().map(|x| T::from_f64(x as f64)).collect(),
        }
    }

    /// The tensor on `device`: the same tensor (no copy) if it is there already, else a
    /// copy. Moving to the GPU needs f32 and the `cuda` feature.
    ///
    /// # Errors
    /// If the device is not usable ([`Device::check`]) or the dtype is not f32 on CUDA.
    pub fn to_device(&self, device: Device) -> Result<Tensor<T>, String> {
        if self.device() == device {
            return Ok(self.clone());
        }
        device.check()?;
        match device {
            Device::Cpu => Ok(Tensor::from_vec(self.shape(), self.to_host_vec())),
            #[cfg(feature = "cuda")]
            Device::Cuda => {
                if T::NAME != "f32" {
                    return Err(format!("CUDA tensors are f32; this tensor is {}", T::NAME));
                }
                let host: Vec<f32> = self.data().iter().map(|x| x.to_f64() as f32).collect();
                Ok(Tensor::from_device_buf(self.shape(), latflow_cuda_kernels::DeviceBuf::from_host(&host)))
            }
            #[cfg(not(feature = "cuda"))]
            Device::Cuda => unreachable!("Device::check fails for CUDA without the cuda feature"),
        }
    }

    /// A tensor filled with `value` on `device`.
    ///
    /// # Panics
    /// If the device is not usable (see [`Device::check`]).
    #[track_caller]
    pub fn full_on(shape: &[usize], value: T, device: Device) -> Self {
        match device {
            Device::Cpu => Self::full(shape, value),
            #[cfg(feature = "cuda")]
            Device::Cuda => {
                let mut b = latflow_cuda_kernels::DeviceBuf::uninit(numel(shape));
                latflow_cuda_kernels::ops::fill(&mut b, value.to_f64() as f32);
                Tensor::from_device_buf(shape, b)
            }
            #[cfg(not(feature = "cuda"))]
            Device::Cuda => panic!("{}", Device::Cuda.check().unwrap_err()),
        }
    }

    /// The single value of a one-element tensor (copied from the GPU when it lives there).
    ///
    /// # Panics
    /// If the tensor has more than one element.
    #[track_caller]
    pub fn item(&self) -> T {
        assert_eq!(self.len(), 1, "item() on a tensor of shape {:?}", self.shape);
        match &self.data {
            Storage::Host(v) => v[0],
            #[cfg(feature = "cuda")]
            Storage::Cuda(_) => self.to_host_vec()[0],
        }
    }

    /// The same data under another shape with the same number of elements.
    ///
    /// # Panics
    /// If the element counts differ.
    #[track_caller]
    pub fn reshape(mut self, shape: &[usize]) -> Self {
        assert_eq!(numel(shape), self.len(), "reshape: cannot view shape {:?} as {shape:?}", self.shape);
        self.shape = Shape::new(shape);
        self
    }

    /// Elementwise map into a new tensor (host tensors).
    pub fn map(&self, f: impl Fn(T) -> T) -> Self {
        Tensor::from_vec(self.shape(), self.data().iter().map(|&x| f(x)).collect())
    }

    /// Elementwise combination of two host tensors of the same shape.
    ///
    /// # Panics
    /// If the shapes differ.
    #[track_caller]
    pub fn zip_map(&self, other: &Self, f: impl Fn(T, T) -> T) -> Self {
        assert_same_shape("zip_map", self.shape(), other.shape());
        let data = self.data().iter().zip(other.data().iter()).map(|(&a, &b)| f(a, b)).collect();
        Tensor::from_vec(self.shape(), data)
    }

    /// Converts the element type (through f64), on the host.
    pub fn cast<U: Float>(&self) -> Tensor<U> {
        Tensor::from_vec(self.shape(), self.to_host_vec().iter().map(|x| U::from_f64(x.to_f64())).collect())
    }

    /// Whether every element is finite.
    pub fn all_finite(&self) -> bool {
        match &self.data {
            Storage::Host(v) => v.iter().all(|x| x.is_finite()),
            #[cfg(feature = "cuda")]
            Storage::Cuda(b) => latflow_cuda_kernels::ops::all_finite(b),
        }
    }
}

#[cfg(feature = "cuda")]
impl<T: Float> Tensor<T> {
    /// A tensor over a device buffer (f32 data, whatever `T` says: only f32 tensors are
    /// ever moved to the GPU). The output of a custom op's CUDA half.
    ///
    /// # Panics
    /// If the buffer does not hold exactly the shape's element count.
    #[track_caller]
    pub fn from_device_buf(shape: &[usize], buf: latflow_cuda_kernels::DeviceBuf) -> Self {
        assert_eq!(numel(shape), buf.len(), "from_device_buf: shape {shape:?} vs {} floats", buf.len());
        Tensor { shape: Shape::new(shape), data: Storage::Cuda(Arc::new(buf)) }
    }

    /// The device buffer (a custom op's CUDA half passes it to its kernels).
    ///
    /// # Panics
    /// If the tensor lives on the host (mixed devices in one op).
    #[track_caller]
    pub fn device_buf(&self) -> &latflow_cuda_kernels::DeviceBuf {
        match &self.data {
            Storage::Cuda(b) => b,
            Storage::Host(_) => panic!(
                "an op got a CPU tensor of shape {:?} next to GPU tensors: move it with .to_device(Device::Cuda)",
                self.shape
            ),
        }
    }

    /// The device buffer, mutable (copied first if shared).
    #[track_caller]
    pub(crate) fn device_buf_mut(&mut self) -> &mut latflow_cuda_kernels::DeviceBuf {
        let shape = self.shape().to_vec();
        match &mut self.data {
            Storage::Cuda(b) => {
                if Arc::get_mut(b).is_none() {
                    *b = Arc::new(b.duplicate());
                }
                Arc::get_mut(b).expect("unique after the copy")
            }
            Storage::Host(_) => panic!("device_buf_mut on a CPU tensor of shape {shape:?}"),
        }
    }
}

/// The GPU's name and architecture (`NVIDIA H100 80GB HBM3, sm_90`), if one can be used.
pub fn gpu_name() -> Option<String> {
    #[cfg(feature = "cuda")]
    if let Ok(g) = latflow_cuda_kernels::gpu() {
        return Some(format!("{}, {}", g.name(), g.arch()));
    }
    None
}

/// The index of the first tensor holding a NaN or an infinity. GPU tensors are checked
/// together, with one wait for the device.
pub fn first_nonfinite<T: Float>(ts: &[&Tensor<T>]) -> Option<usize> {
    #[cfg(feature = "cuda")]
    if !ts.is_empty() && ts.iter().all(|t| t.is_cuda()) {
        let bufs: Vec<&latflow_cuda_kernels::DeviceBuf> = ts.iter().map(|t| t.device_buf()).collect();
        return latflow_cuda_kernels::ops::nonfinite_flags(&bufs).iter().position(|&bad| bad);
    }
    ts.iter().position(|t| !t.all_finite())
}

/// Panics (at the caller) unless the two shapes are equal, naming both.
#[track_caller]
pub fn assert_same_shape(op: &str, a: &[usize], b: &[usize]) {
    assert!(a == b, "{op}: shape mismatch, {a:?} vs {b:?}");
}

/// Row-major strides of a shape.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Splits a shape around `axis` into (outer, size, inner) element counts, the view
/// every axis-wise op (sum, roll, select, logsumexp, stack) works in.
#[track_caller]
pub fn split_at_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    assert!(axis < shape.len(), "axis {axis} out of range for shape {shape:?}");
    (numel(&shape[..axis]), shape[axis], numel(&shape[axis + 1..]))
}
