// The fused affine coupling and its log-Jacobian (see cpu.rs for the formulas), compiled
// by NVRTC after latflow-cuda-kernels' common.cuh (i64, GID, GSTRIDE, warp_sum).

// Fused affine coupling (x (N, S), st (N, 2, S), mask m (S)):
// forward y = m x + (1-m)(x e^s + t); reverse y = m x + (1-m)(x - t) e^-s.
extern "C" __global__ void affine_couple(const float* __restrict__ x, const float* __restrict__ st,
                                         const float* __restrict__ m, float* __restrict__ y, i64 total, i64 sites,
                                         int reverse) {
    for (i64 i = GID; i < total; i += GSTRIDE) {
        i64 n = i / sites, p = i % sites;
        float s = st[2 * n * sites + p], t = st[(2 * n + 1) * sites + p], mk = m[p], xv = x[i];
        float active = reverse ? (xv - t) * expf(-s) : xv * expf(s) + t;
        y[i] = mk * xv + (1.0f - mk) * active;
    }
}

// Its gradients: dx (N, S) and dst (N, 2, S) from gy (N, S).
extern "C" __global__ void affine_couple_bwd(const float* __restrict__ x, const float* __restrict__ st,
                                             const float* __restrict__ m, const float* __restrict__ gy,
                                             float* __restrict__ dx, float* __restrict__ dst, i64 total, i64 sites,
                                             int reverse) {
    for (i64 i = GID; i < total; i += GSTRIDE) {
        i64 n = i / sites, p = i % sites;
        i64 is = 2 * n * sites + p, it = is + sites;
        float s = st[is], t = st[it], mk = m[p], g = gy[i], a = 1.0f - mk;
        float e = expf(reverse ? -s : s);
        dx[i] = g * (mk + a * e);
        if (reverse) {
            dst[is] = -(g * a * (x[i] - t) * e);
            dst[it] = -(g * a * e);
        } else {
            dst[is] = g * a * x[i] * e;
            dst[it] = g * a;
        }
    }
}

// out[n] = sum_p m[p] st[n, channel, p] for st (N, C, S): one warp per sample.
extern "C" __global__ void masked_channel_sum(const float* __restrict__ st, const float* __restrict__ m,
                                              float* __restrict__ out, i64 n, i64 channels, i64 channel, i64 sites) {
    i64 w = GID >> 5;
    int lane = threadIdx.x & 31;
    if (w >= n) return;
    const float* row = st + (w * channels + channel) * sites;
    float s = 0.0f;
    for (i64 p = lane; p < sites; p += 32) s += row[p] * m[p];
    s = warp_sum(s);
    if (lane == 0) out[w] = s;
}

// Its adjoint: dst[n, c, p] = g[n] m[p] on channel `channel`, 0 elsewhere.
extern "C" __global__ void masked_channel_sum_bwd(const float* __restrict__ g, const float* __restrict__ m,
                                                  float* __restrict__ dst, i64 n, i64 channels, i64 channel,
                                                  i64 sites) {
    i64 total = n * channels * sites;
    for (i64 i = GID; i < total; i += GSTRIDE) {
        i64 p = i % sites, c = (i / sites) % channels, s = i / (sites * channels);
        dst[i] = c == channel ? g[s] * m[p] : 0.0f;
    }
}
