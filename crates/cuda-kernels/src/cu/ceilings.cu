// Ceilings measured on the device: a tight FMA loop (8 independent chains per thread,
// operands in registers) and a device-to-device copy. The benches print achieved rates
// next to these.

extern "C" __global__ void fma_peak(float* __restrict__ out, int iters, float a, float b) {
    float x0 = threadIdx.x * 1e-7f, x1 = x0 + 1e-7f, x2 = x0 + 2e-7f, x3 = x0 + 3e-7f;
    float x4 = x0 + 4e-7f, x5 = x0 + 5e-7f, x6 = x0 + 6e-7f, x7 = x0 + 7e-7f;
    for (int i = 0; i < iters; i++) {
        x0 = fmaf(x0, a, b); x1 = fmaf(x1, a, b); x2 = fmaf(x2, a, b); x3 = fmaf(x3, a, b);
        x4 = fmaf(x4, a, b); x5 = fmaf(x5, a, b); x6 = fmaf(x6, a, b); x7 = fmaf(x7, a, b);
    }
    out[GID] = x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7;  // keeps the chains alive
}

extern "C" __global__ void copy_f32(const float4* __restrict__ x, float4* __restrict__ y, i64 n4) {
    for (i64 i = GID; i < n4; i += GSTRIDE) y[i] = x[i];
}
