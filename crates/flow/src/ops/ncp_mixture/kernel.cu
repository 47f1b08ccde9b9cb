// The fused NCP mixture of the U(1) flows and its log-Jacobian (see cpu.rs for the
// formulas): x (N, S), s (N, n, S), t (N, S); one thread per (sample, site). Compiled by
// NVRTC after latflow-cuda-kernels' common.cuh (i64, GID, GSTRIDE, warp_sum).

#define TWO_PI_F 6.283185307179586f

__device__ __forceinline__ float rem_2pi(float v) {
    float r = fmodf(v, TWO_PI_F);
    return r < 0.0f ? r + TWO_PI_F : r;
}

// y = ((1/n) sum_i mod(2 atan(e^{s_i} tan(x/2)), 2 pi) + t) mod 2 pi
extern "C" __global__ void ncp_mix_fwd(const float* __restrict__ x, const float* __restrict__ s,
                                       const float* __restrict__ t, float* __restrict__ y, i64 batch, int n,
                                       i64 sites) {
    for (i64 j = GID; j < batch * sites; j += GSTRIDE) {
        i64 b = j / sites, p = j % sites;
        float tn = tanf(0.5f * x[j]);
        float acc = 0.0f;
        for (int i = 0; i < n; i++) acc += rem_2pi(2.0f * atanf(expf(s[(b * n + i) * sites + p]) * tn));
        y[j] = rem_2pi((1.0f / n) * acc + t[j]);
    }
}

// dx = g (1/n) sum_i e_i / (c^2 + e_i^2 r^2), ds_i = g (1/n) 2 e_i r c / (c^2 + e_i^2 r^2)
extern "C" __global__ void ncp_mix_bwd(const float* __restrict__ x, const float* __restrict__ s,
                                       const float* __restrict__ g, float* __restrict__ dx, float* __restrict__ ds,
                                       i64 batch, int n, i64 sites) {
    for (i64 j = GID; j < batch * sites; j += GSTRIDE) {
        i64 b = j / sites, p = j % sites;
        float c, r;
        sincosf(0.5f * x[j], &r, &c);
        float gv = g[j] * (1.0f / n), d = 0.0f;
        for (int i = 0; i < n; i++) {
            i64 k = (b * n + i) * sites + p;
            float e = expf(s[k]);
            float den = c * c + e * e * r * r;
            d += e / den;
            ds[k] = gv * 2.0f * e * r * c / den;
        }
        dx[j] = gv * d;
    }
}

// q_i = -log(e_i^{-1} c^2 + e_i r^2) for at most NCP_MAX components
#define NCP_MAX 16

// q_i of the n components at site p of sample b into q; returns logsumexp_i q_i
__device__ __forceinline__ float ncp_q(const float* __restrict__ s, i64 b, int n, i64 sites, i64 p, float c, float r,
                                       float* q) {
    float m = __int_as_float(0xff800000);  // -inf
    for (int i = 0; i < n; i++) {
        float si = s[(b * n + i) * sites + p];
        q[i] = -logf(expf(-si) * c * c + expf(si) * r * r);
        m = fmaxf(m, q[i]);
    }
    float z = 0.0f;
    for (int i = 0; i < n; i++) z += expf(q[i] - m);
    return m + logf(z);
}

// log J[b] = sum_sites (logsumexp_i q_i - ln n): one warp per sample
extern "C" __global__ void ncp_logj_fwd(const float* __restrict__ x, const float* __restrict__ s,
                                        float* __restrict__ out, i64 batch, int n, i64 sites) {
    i64 b = GID >> 5;
    int lane = threadIdx.x & 31;
    if (b >= batch) return;
    float acc = 0.0f;
    for (i64 p = lane; p < sites; p += 32) {
        float c, r;
        sincosf(0.5f * x[b * sites + p], &r, &c);
        float q[NCP_MAX];
        acc += ncp_q(s, b, n, sites, p, c, r, q) - logf((float)n);
    }
    acc = warp_sum(acc);
    if (lane == 0) out[b] = acc;
}

// dx = g[b] sum_i w_i (e_i^{-1} - e_i) r c / D_i, ds_i = g[b] w_i (e_i^{-1} c^2 - e_i r^2) / D_i
extern "C" __global__ void ncp_logj_bwd(const float* __restrict__ x, const float* __restrict__ s,
                                        const float* __restrict__ g, float* __restrict__ dx, float* __restrict__ ds,
                                        i64 batch, int n, i64 sites) {
    for (i64 j = GID; j < batch * sites; j += GSTRIDE) {
        i64 b = j / sites, p = j % sites;
        float c, r;
        sincosf(0.5f * x[j], &r, &c);
        float q[NCP_MAX];
        float l = ncp_q(s, b, n, sites, p, c, r, q), gb = g[b], d = 0.0f;
        for (int i = 0; i < n; i++) {
            i64 k = (b * n + i) * sites + p;
            float e = expf(s[k]), ei = expf(-s[k]);
            float den = ei * c * c + e * r * r;
            float w = expf(q[i] - l);
            d += w * (ei - e) * r * c / den;
            ds[k] = gb * w * (ei * c * c - e * r * r) / den;
        }
        dx[j] = gb * d;
    }
}
