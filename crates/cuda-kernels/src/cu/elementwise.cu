// Elementwise kernels: y = f(x), the chain rule through f, binary ops, masks, biases,
// accumulation, fills, and Adam. Grid-stride loops, so any launch size covers n.

extern "C" __global__ void unary_fwd(const float* __restrict__ x, float* __restrict__ y, i64 n, int op, float p) {
    for (i64 i = GID; i < n; i += GSTRIDE) y[i] = unary_f(op, x[i], p);
}

// dx = g f'(x), f' from x and y = f(x)
extern "C" __global__ void unary_bwd(const float* __restrict__ x, const float* __restrict__ y,
                                     const float* __restrict__ g, float* __restrict__ dx, i64 n, int op, float p) {
    for (i64 i = GID; i < n; i += GSTRIDE) dx[i] = g[i] * unary_df(op, x[i], y[i], p);
}

// Binary op codes, in the order of latflow_tensor::elementwise::Binary.
#define B_ADD 0
#define B_SUB 1
#define B_MUL 2
#define B_DIV 3

extern "C" __global__ void binary_fwd(const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ y,
                                      i64 n, int op) {
    for (i64 i = GID; i < n; i += GSTRIDE) {
        float u = a[i], v = b[i];
        y[i] = op == B_ADD ? u + v : op == B_SUB ? u - v : op == B_MUL ? u * v : u / v;
    }
}

// d f(a, b) = f_a da + f_b db; da or db may be null (no gradient wanted)
extern "C" __global__ void binary_bwd(const float* __restrict__ a, const float* __restrict__ b,
                                      const float* __restrict__ g, float* __restrict__ da, float* __restrict__ db,
                                      i64 n, int op) {
    for (i64 i = GID; i < n; i += GSTRIDE) {
        float u = a[i], v = b[i], gi = g[i];
        if (da) da[i] = op == B_MUL ? gi * v : op == B_DIV ? gi / v : gi;
        if (db) db[i] = op == B_ADD ? gi : op == B_SUB ? -gi : op == B_MUL ? gi * u : -gi * u / (v * v);
    }
}

// y = x * m with m repeated over x's leading axes (n a multiple of mlen)
extern "C" __global__ void mul_mask(const float* __restrict__ x, const float* __restrict__ m, float* __restrict__ y,
                                    i64 n, i64 mlen) {
    for (i64 i = GID; i < n; i += GSTRIDE) y[i] = x[i] * m[i % mlen];
}

// y = x + b[c], x of shape (outer, c, inner)
extern "C" __global__ void add_bias(const float* __restrict__ x, const float* __restrict__ b, float* __restrict__ y,
                                    i64 n, i64 inner, int c) {
    for (i64 i = GID; i < n; i += GSTRIDE) y[i] = x[i] + b[(i / inner) % c];
}

// acc += x
extern "C" __global__ void accumulate(float* __restrict__ acc, const float* __restrict__ x, i64 n) {
    for (i64 i = GID; i < n; i += GSTRIDE) acc[i] += x[i];
}

extern "C" __global__ void fill(float* __restrict__ y, i64 n, float v) {
    for (i64 i = GID; i < n; i += GSTRIDE) y[i] = v;
}

// *flag = 1 if any element is NaN or infinite (flag zeroed by the caller)
extern "C" __global__ void any_nonfinite(const float* __restrict__ x, i64 n, unsigned int* flag) {
    bool bad = false;
    for (i64 i = GID; i < n; i += GSTRIDE) bad |= !isfinite(x[i]);
    if (__any_sync(0xffffffffu, bad) && (threadIdx.x & 31) == 0) atomicOr(flag, 1u);
}

// Multi-tensor ops: blockIdx.y selects the tensor; table[t] holds its device pointers
// and lens[t] its length.

// flags[t] = 1 if tensor t (table entry t: one pointer) holds a NaN or an infinity
extern "C" __global__ void nonfinite_multi(const unsigned long long* __restrict__ table,
                                           const i64* __restrict__ lens, unsigned int* flags) {
    int t = blockIdx.y;
    const float* x = (const float*)table[t];
    i64 n = lens[t];
    bool bad = false;
    for (i64 i = GID; i < n; i += GSTRIDE) bad |= !isfinite(x[i]);
    if (__any_sync(0xffffffffu, bad) && (threadIdx.x & 31) == 0) atomicOr(flags + t, 1u);
}

// Adam on every tensor at once: table[4 t .. 4 t + 3] = (p, g, m, v) of tensor t
extern "C" __global__ void adam_multi(const unsigned long long* __restrict__ table, const i64* __restrict__ lens,
                                      float b1, float b2, float ob1, float ob2, float step_size, float inv_sqrt_bc2,
                                      float eps) {
    int t = blockIdx.y;
    float* p = (float*)table[4 * t];
    const float* g = (const float*)table[4 * t + 1];
    float* m = (float*)table[4 * t + 2];
    float* v = (float*)table[4 * t + 3];
    i64 n = lens[t];
    for (i64 i = GID; i < n; i += GSTRIDE) {
        float gi = g[i];
        float mi = b1 * m[i] + ob1 * gi;
        float vi = b2 * v[i] + ob2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] -= step_size * mi / (sqrtf(vi) * inv_sqrt_bc2 + eps);
    }
}
