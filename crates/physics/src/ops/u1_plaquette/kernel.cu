// The (0, 1) plaquette of U(1) links (N, 2, H, W) and its adjoint (see cpu.rs), compiled
// by NVRTC after latflow-cuda-kernels' common.cuh (i64, GID, GSTRIDE).

// P(x, y) = t0(x, y) + t1(x+1, y) - t0(x, y+1) - t1(x, y)
extern "C" __global__ void u1_plaq01(const float* __restrict__ links, float* __restrict__ p, i64 n, int h, int w) {
    i64 hw = (i64)h * w;
    for (i64 j = GID; j < n * hw; j += GSTRIDE) {
        i64 b = j / hw;
        int r = (int)(j % hw), x = r / w, y = r % w;
        int xp = x + 1 == h ? 0 : x + 1, yp = y + 1 == w ? 0 : y + 1;
        const float* t0 = links + 2 * b * hw;
        const float* t1 = t0 + hw;
        p[j] = t0[r] + t1[xp * w + y] - t0[x * w + yp] - t1[r];
    }
}

// dt0(x, y) = g(x, y) - g(x, y-1), dt1(x, y) = g(x-1, y) - g(x, y)
extern "C" __global__ void u1_plaq01_bwd(const float* __restrict__ g, float* __restrict__ dl, i64 n, int h, int w) {
    i64 hw = (i64)h * w;
    for (i64 j = GID; j < n * 2 * hw; j += GSTRIDE) {
        i64 b = j / (2 * hw);
        int mu = (int)((j / hw) % 2), r = (int)(j % hw), x = r / w, y = r % w;
        const float* gb = g + b * hw;
        if (mu == 0) {
            int ym = y == 0 ? w - 1 : y - 1;
            dl[j] = gb[r] - gb[x * w + ym];
        } else {
            int xm = x == 0 ? h - 1 : x - 1;
            dl[j] = gb[xm * w + y] - gb[r];
        }
    }
}
