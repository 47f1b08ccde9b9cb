//! Data-movement kernels on whole tensors: roll, narrow / pad-back, concat, broadcast,
//! axis sums, transpose. Each is its own adjoint's building block (roll by -s undoes
//! roll by s; narrow's adjoint is `unnarrow`; broadcast's is `sum_to`).

use crate::tensor::{numel, split_at_axis, strides};
use crate::{Float, Tensor};

/// Periodic shift along `axis`, `torch.roll` semantics: `out[.., (i + shift) mod n, ..] = t[.., i, ..]`.
///
/// # Panics
/// If `axis` is out of range.
#[track_caller]
pub fn roll<T: Float>(t: &Tensor<T>, axis: usize, shift: isize) -> Tensor<T> {
    let (outer, n, inner) = split_at_axis(t.shape(), axis);
    let s = shift.rem_euclid(n as isize) as usize;
    let src = t.data();
    let mut out = crate::pool::buffer(src.len());
    // each outer block rotates by s * inner elements: two contiguous copies
    let (block, cut) = (n * inner, (n - s) * inner);
    for (o, dst) in out.chunks_exact_mut(block.max(1)).enumerate().take(outer) {
        let src = &src[o * block..(o + 1) * block];
        copy_run(&mut dst[s * inner..], &src[..cut]);
        copy_run(&mut dst[..s * inner], &src[cut..]);
    }
    Tensor::from_vec(t.shape(), out)
}

/// The slice `start..start+len` along `axis`.
#[track_caller]
pub fn narrow<T: Float>(t: &Tensor<T>, axis: usize, start: usize, len: usize) -> Tensor<T> {
    let (outer, n, inner) = split_at_axis(t.shape(), axis);
    assert!(start + len <= n, "narrow: {start}..{} out of range for axis {axis} of {:?}", start + len, t.shape());
    let mut out = crate::pool::buffer(outer * len * inner);
    if len * inner == 1 {
        // one element per outer index (a select on the last axis): a strided gather
        let td = t.data();
        for (o, d) in out.iter_mut().enumerate() {
            *d = td[o * n + start];
        }
    } else {
        for (o, dst) in out.chunks_exact_mut((len * inner).max(1)).enumerate().take(outer) {
            copy_run(dst, &t.data()[(o * n + start) * inner..(o * n + start + len) * inner]);
        }
    }
    let mut shape = t.shape().to_vec();
    shape[axis] = len;
    Tensor::from_vec(&shape, out)
}

/// `dst.copy_from_slice(src)`, with short runs copied by a plain loop: a `memcpy` call per
/// element dominated gathers along the last axis (the U(1) stripes select one column in 4).
#[inline]
fn copy_run<T: Copy>(dst: &mut [T], src: &[T]) {
    if src.len() <= 16 {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = s;
        }
    } else {
        dst.copy_from_slice(src);
    }
}

/// Adjoint of [`narrow`]: places `t` at `start` along `axis` of a zero tensor whose
/// axis has size `n`.
pub fn unnarrow<T: Float>(t: &Tensor<T>, axis: usize, start: usize, n: usize) -> Tensor<T> {
    let (outer, len, inner) = split_at_axis(t.shape(), axis);
    let mut shape = t.shape().to_vec();
    shape[axis] = n;
    let mut out = crate::pool::buffer(numel(&shape));
    out.fill(T::ZERO);
    if len * inner == 1 {
        // a strided scatter (the adjoint of a select on the last axis)
        for (o, &v) in t.data().iter().enumerate() {
            out[o * n + start] = v;
        }
        return Tensor::from_vec(&shape, out);
    }
    for o in 0..outer {
        copy_run(
            &mut out[(o * n + start) * inner..(o * n + start + len) * inner],
            &t.data()[o * len * inner..(o + 1) * len * inner],
        );
    }
    Tensor::from_vec(&shape, out)
}

/// Concatenation along `axis`; all other dimensions must agree.
#[track_caller]
pub fn concat<T: Float>(ts: &[&Tensor<T>], axis: usize) -> Tensor<T> {
    assert!(!ts.is_empty(), "concat of no tensors");
    let first = ts[0].shape();
    for t in ts {
        let ok = t.shape().len() == first.len()
            && t.shape().iter().zip(first).enumerate().all(|(d, (a, b))| d == axis || a == b);
        assert!(ok, "concat along axis {axis}: shape mismatch, {first:?} vs {:?}", t.shape());
    }
    let (outer, _, inner) = split_at_axis(first, axis);
    let total: usize = ts.iter().map(|t| t.shape()[axis]).sum();
    let mut out = crate::pool::buffer(outer * total * inner);
    let mut at = 0;
    for o in 0..outer {
        for t in ts {
            let m = t.shape()[axis] * inner;
            copy_run(&mut out[at..at + m], &t.data()[o * m..(o + 1) * m]);
            at += m;
        }
    }
    let mut shape = first.to_vec();
    shape[axis] = total;
    Tensor::from_vec(&shape, out)
}

/// Expands `t` to `shape` (numpy rules: missing leading dims and size-1 dims repeat).
#[track_caller]
pub fn broadcast_to<T: Float>(t: &Tensor<T>, shape: &[usize]) -> Tensor<T> {
    let dims = merged_dims(&aligned_shape(t.shape(), shape), shape);
    let mut out = crate::pool::buffer(numel(shape));
    walk(&dims, 0, 0, &mut |src, dst, len, repeat| {
        if repeat {
            out[dst..dst + len].fill(t.data()[src]);
        } else {
            out[dst..dst + len].copy_from_slice(&t.data()[src..src + len]);
        }
    });
    Tensor::from_vec(shape, out)
}

/// Adjoint of [`broadcast_to`]: sums `g` (of the broadcast shape) down to `shape`.
pub fn sum_to<T: Float>(g: &Tensor<T>, shape: &[usize]) -> Tensor<T> {
    let dims = merged_dims(&aligned_shape(shape, g.shape()), g.shape());
    let mut out = vec![T::ZERO; numel(shape)];
    walk(&dims, 0, 0, &mut |src, dst, len, repeat| {
        let gd = &g.data()[dst..dst + len];
        if repeat {
            out[src] += gd.iter().copied().sum::<T>();
        } else {
            for (o, &v) in out[src..src + len].iter_mut().zip(gd) {
                *o += v;
            }
        }
    });
    Tensor::from_vec(shape, out)
}

/// One merged axis of a broadcast: its size in the big shape, the small tensor's stride
/// along it (0 when repeated) and the big tensor's stride.
#[derive(Clone, Copy, Debug)]
struct BDim {
    size: usize,
    src_stride: usize,
    dst_stride: usize,
}

/// Axes of a broadcast `small -> big` (small already aligned to big's rank) with
/// neighbouring axes of the same kind (both repeated, or both kept) merged, so that
/// the innermost loop runs over one long contiguous stretch.
fn merged_dims(small: &[usize], big: &[usize]) -> Vec<BDim> {
    let ss = strides(small);
    let bs = strides(big);
    let mut dims: Vec<BDim> = Vec::new();
    for d in 0..big.len() {
        if big[d] == 1 {
            continue;
        }
        let rep = small[d] == 1;
        let cur = BDim { size: big[d], src_stride: if rep { 0 } else { ss[d] }, dst_stride: bs[d] };
        if let Some(last) = dims.last_mut() {
            let same_kind = (last.src_stride == 0) == rep;
            if same_kind
                && last.dst_stride == cur.dst_stride * cur.size
                && (rep || last.src_stride == cur.src_stride * cur.size)
            {
                last.size *= cur.size;
                last.dst_stride = cur.dst_stride;
                last.src_stride = cur.src_stride;
                continue;
            }
        }
        dims.push(cur);
    }
    dims
}

/// Visits the innermost merged axis as contiguous stretches: `f(src_offset,
/// dst_offset, len, repeated)`.
fn walk(dims: &[BDim], src: usize, dst: usize, f: &mut dyn FnMut(usize, usize, usize, bool)) {
    match dims {
        [] => f(src, dst, 1, false),
        [last] => f(src, dst, last.size, last.src_stride == 0),
        [first, rest @ ..] => {
            for i in 0..first.size {
                walk(rest, src + i * first.src_stride, dst + i * first.dst_stride, f);
            }
        }
    }
}

/// `small` left-padded with 1s to the rank of `big`, checked to broadcast to it.
#[track_caller]
fn aligned_shape(small: &[usize], big: &[usize]) -> Vec<usize> {
    assert!(small.len() <= big.len(), "broadcast: shape mismatch, {small:?} vs {big:?}");
    let mut s = vec![1; big.len() - small.len()];
    s.extend_from_slice(small);
    for (a, b) in s.iter().zip(big) {
        assert!(*a == *b || *a == 1, "broadcast: shape mismatch, {small:?} vs {big:?}");
    }
    s
}

/// Sum over the given axes (removed from the shape).
#[track_caller]
pub fn sum_axes<T: Float>(t: &Tensor<T>, axes: &[usize]) -> Tensor<T> {
    let mut keep = t.shape().to_vec();
    for &a in axes {
        assert!(a < keep.len(), "sum over axis {a} of shape {:?}", t.shape());
        keep[a] = 1;
    }
    let s = sum_to(t, &keep);
    let shape: Vec<usize> = t.shape().iter().enumerate().filter(|(d, _)| !axes.contains(d)).map(|(_, &n)| n).collect();
    s.reshape(&shape)
}

/// Swaps the last two axes.
#[track_caller]
pub fn transpose_last2<T: Float>(t: &Tensor<T>) -> Tensor<T> {
    let r = t.shape().len();
    assert!(r >= 2, "transpose needs rank >= 2, got {:?}", t.shape());
    let (m, n) = (t.shape()[r - 2], t.shape()[r - 1]);
    let batch = t.len() / (m * n).max(1);
    let mut out = crate::pool::buffer(t.len());
    for b in 0..batch {
        let src = &t.data()[b * m * n..(b + 1) * m * n];
        let dst = &mut out[b * m * n..(b + 1) * m * n];
        for i in 0..m {
            for j in 0..n {
                dst[j * m + i] = src[i * n + j];
            }
        }
    }
    let mut shape = t.shape().to_vec();
    shape.swap(r - 2, r - 1);
    Tensor::from_vec(&shape, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `roll` against its definition `out[.., (i + s) mod n, ..] = t[.., i, ..]`, every axis
    /// and shift (negative, zero, beyond n) of a 3-axis tensor.
    #[test]
    fn roll_matches_its_index_formula() {
        let shape = [3, 4, 5];
        let t = Tensor::from_vec(&shape, (0..60).map(|v| v as f64).collect());
        for axis in 0..3 {
            let n = shape[axis] as isize;
            for shift in -7..=7 {
                let r = roll(&t, axis, shift);
                for a in 0..3 {
                    for b in 0..4 {
                        for c in 0..5 {
                            let mut idx = [a, b, c];
                            let src = t.data()[(a * 4 + b) * 5 + c];
                            idx[axis] = ((idx[axis] as isize + shift).rem_euclid(n)) as usize;
                            assert_eq!(r.data()[(idx[0] * 4 + idx[1]) * 5 + idx[2]], src, "axis {axis} shift {shift}");
                        }
                    }
                }
            }
        }
    }
}
