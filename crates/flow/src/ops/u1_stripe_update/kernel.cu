// The gauge-equivariant coupling's stripe update on U(1) links (N, 2, H, W) (see cpu.rs),
// compiled by NVRTC after latflow-cuda-kernels' common.cuh (i64, GID, GSTRIDE).

// out = links, with the direction-mu links at the stripe sites (offset off) replaced by
// (links + s (ya - xa)) mod 2 pi, s = +1 for mu = 0, -1 for mu = 1; ya, xa (N, A, B)
extern "C" __global__ void u1_stripe_update(const float* __restrict__ links, const float* __restrict__ ya,
                                            const float* __restrict__ xa, float* __restrict__ out, i64 n, int h,
                                            int w, int mu, int off) {
    i64 hw = (i64)h * w;
    int sb = mu == 0 ? w / 4 : w;
    for (i64 j = GID; j < n * 2 * hw; j += GSTRIDE) {
        i64 b = j / (2 * hw);
        int m = (int)((j / hw) % 2), r = (int)(j % hw), x = r / w, y = r % w;
        float v = links[j];
        bool on = m == mu && (mu == 0 ? (y % 4 == off) : (x % 4 == off));
        if (on) {
            int a = mu == 0 ? x : x / 4, c = mu == 0 ? y / 4 : y;
            i64 s = b * (hw / 4) + (i64)a * sb + c;
            float d = ya[s] - xa[s];
            float dlv = mu == 0 ? d : -d;
            float t = fmodf(dlv + v, 6.283185307179586f);
            v = t < 0.0f ? t + 6.283185307179586f : t;
        }
        out[j] = v;
    }
}

// dya = +- g at the stripe (mu = 0: +, mu = 1: -), dxa = -dya
extern "C" __global__ void u1_stripe_update_bwd(const float* __restrict__ g, float* __restrict__ dya,
                                                float* __restrict__ dxa, i64 n, int h, int w, int mu, int off) {
    i64 hw = (i64)h * w, per = hw / 4;
    int sb = mu == 0 ? w / 4 : w;
    for (i64 j = GID; j < n * per; j += GSTRIDE) {
        i64 b = j / per;
        int s = (int)(j % per), a = s / sb, c = s % sb;
        int x = mu == 0 ? a : 4 * a + off, y = mu == 0 ? 4 * c + off : c;
        float v = g[(b * 2 + mu) * hw + x * w + y];
        float d = mu == 0 ? v : -v;
        dya[j] = d;
        dxa[j] = -d;
    }
}
