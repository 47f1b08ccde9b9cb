// Fused U(1) ops on links (N, 2, H, W) (see latflow_tensor::kernels::u1): the (0, 1)
// plaquette and its adjoint, and the gauge-equivariant coupling's stripe update.

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
