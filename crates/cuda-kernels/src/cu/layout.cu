// Axis-wise kernels. Every axis op sees its tensor as (outer, n, inner) around the axis.

// y[o, i] = sum_k x[o, k, i]: one warp per output (lanes stride over k), fixed order.
extern "C" __global__ void reduce_axis_warp(const float* __restrict__ x, float* __restrict__ y, i64 outer, i64 n,
                                            i64 inner) {
    i64 w = GID >> 5;
    int lane = threadIdx.x & 31;
    if (w >= outer * inner) return;  // whole warps leave together
    i64 o = w / inner, i = w % inner;
    const float* base = x + o * n * inner + i;
    float s = 0.0f;
    for (i64 k = lane; k < n; k += 32) s += base[k * inner];
    s = warp_sum(s);
    if (lane == 0) y[w] = s;
}

// The same with one block (blockDim.x a multiple of 32, at most 1024) per output, for long axes.
extern "C" __global__ void reduce_axis_block(const float* __restrict__ x, float* __restrict__ y, i64 outer, i64 n,
                                             i64 inner) {
    __shared__ float part[32];
    i64 w = blockIdx.x;
    i64 o = w / inner, i = w % inner;
    const float* base = x + o * n * inner + i;
    float s = 0.0f;
    for (i64 k = threadIdx.x; k < n; k += blockDim.x) s += base[k * inner];
    s = warp_sum(s);
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    if (lane == 0) part[wid] = s;
    __syncthreads();
    if (wid == 0) {
        int nw = blockDim.x >> 5;
        s = lane < nw ? part[lane] : 0.0f;
        s = warp_sum(s);
        if (lane == 0) y[w] = s;
    }
}

// y[o, k, i] = g[o, i] (the adjoint of the sum over k)
extern "C" __global__ void expand_axis(const float* __restrict__ g, float* __restrict__ y, i64 outer, i64 n,
                                       i64 inner) {
    i64 total = outer * n * inner;
    for (i64 j = GID; j < total; j += GSTRIDE) {
        i64 i = j % inner, o = j / (n * inner);
        y[j] = g[o * inner + i];
    }
}

// torch.roll: y[o, (k + shift) mod n, i] = x[o, k, i]; shift already in [0, n)
extern "C" __global__ void roll_axis(const float* __restrict__ x, float* __restrict__ y, i64 outer, i64 n, i64 inner,
                                     i64 shift) {
    i64 total = outer * n * inner;
    for (i64 j = GID; j < total; j += GSTRIDE) {
        i64 i = j % inner, k = (j / inner) % n, o = j / (n * inner);
        i64 src = k - shift;
        if (src < 0) src += n;
        y[j] = x[(o * n + src) * inner + i];
    }
}

// dst[o, dst_start + k, i] = src[o, src_start + k, i] for k < len (narrow, concat, their adjoints)
extern "C" __global__ void copy_block(const float* __restrict__ src, float* __restrict__ dst, i64 outer, i64 n_src,
                                      i64 src_start, i64 n_dst, i64 dst_start, i64 len, i64 inner) {
    i64 total = outer * len * inner;
    for (i64 j = GID; j < total; j += GSTRIDE) {
        i64 i = j % inner, k = (j / inner) % len, o = j / (len * inner);
        dst[(o * n_dst + dst_start + k) * inner + i] = src[(o * n_src + src_start + k) * inner + i];
    }
}

// The adjoint of narrow in one pass: y[o, k, i] = g[o, k - start, i] for start <= k <
// start + len, else 0; y is (outer, n, inner), g is (outer, len, inner).
extern "C" __global__ void unnarrow(const float* __restrict__ g, float* __restrict__ y, i64 outer, i64 n, i64 start,
                                    i64 len, i64 inner) {
    i64 total = outer * n * inner;
    for (i64 j = GID; j < total; j += GSTRIDE) {
        i64 i = j % inner, k = (j / inner) % n, o = j / (n * inner);
        i64 q = k - start;
        y[j] = (q >= 0 && q < len) ? g[(o * len + q) * inner + i] : 0.0f;
    }
}

// y1[o] = sum_k x[k, o] for o < split, y2[o - split] = the same for o >= split: the sum
// over chunks of the conv weight-gradient partials, into the weight and bias gradients.
// One warp per output.
extern "C" __global__ void reduce_rows_split(const float* __restrict__ x, float* __restrict__ y1,
                                             float* __restrict__ y2, i64 n, i64 inner, i64 split) {
    i64 w = GID >> 5;
    int lane = threadIdx.x & 31;
    if (w >= inner) return;
    float s = 0.0f;
    for (i64 k = lane; k < n; k += 32) s += x[k * inner + w];
    s = warp_sum(s);
    if (lane == 0) {
        if (w < split) y1[w] = s;
        else y2[w - split] = s;
    }
}

// y[b, j, i] = x[b, i, j] for (batch, m, n) -> (batch, n, m)
extern "C" __global__ void transpose_last2(const float* __restrict__ x, float* __restrict__ y, i64 batch, i64 m,
                                           i64 n) {
    i64 total = batch * m * n;
    for (i64 t = GID; t < total; t += GSTRIDE) {
        i64 i = t % m, j = (t / m) % n, b = t / (m * n);
        y[t] = x[(b * m + i) * n + j];
    }
}

// c[b] = a[b] (m x k) b[b] (k x n): one thread per output (small matrices only)
extern "C" __global__ void matmul_naive(const float* __restrict__ a, const float* __restrict__ bm, float* __restrict__ c,
                                        i64 batch, i64 m, i64 k, i64 n) {
    i64 total = batch * m * n;
    for (i64 t = GID; t < total; t += GSTRIDE) {
        i64 j = t % n, i = (t / n) % m, b = t / (m * n);
        const float* ar = a + (b * m + i) * k;
        const float* bc = bm + b * k * n + j;
        float s = 0.0f;
        for (i64 q = 0; q < k; q++) s += ar[q] * bc[q * n];
        c[t] = s;
    }
}

// y[o, i] = max_k x + log sum_k exp(x - max) (one thread per output; the axes are short)
extern "C" __global__ void logsumexp_fwd(const float* __restrict__ x, float* __restrict__ y, i64 outer, i64 n,
                                         i64 inner) {
    i64 total = outer * inner;
    for (i64 t = GID; t < total; t += GSTRIDE) {
        i64 i = t % inner, o = t / inner;
        const float* b = x + o * n * inner + i;
        float m = __int_as_float(0xff800000);  // -inf
        for (i64 k = 0; k < n; k++) m = fmaxf(m, b[k * inner]);
        float s = 0.0f;
        for (i64 k = 0; k < n; k++) s += expf(b[k * inner] - m);
        y[t] = isfinite(m) ? m + logf(s) : m;
    }
}

// dx[o, k, i] = g[o, i] exp(x[o, k, i] - y[o, i])
extern "C" __global__ void logsumexp_bwd(const float* __restrict__ x, const float* __restrict__ y,
                                         const float* __restrict__ g, float* __restrict__ dx, i64 outer, i64 n,
                                         i64 inner) {
    i64 total = outer * n * inner;
    for (i64 j = GID; j < total; j += GSTRIDE) {
        i64 i = j % inner, o = j / (n * inner);
        dx[j] = g[o * inner + i] * expf(x[j] - y[o * inner + i]);
    }
}
