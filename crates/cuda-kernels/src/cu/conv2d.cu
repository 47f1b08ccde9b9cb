// conv2d with circular padding (PyTorch Conv2d(padding=k//2, padding_mode="circular"),
// cross-correlation, stride 1, odd k <= H, W): x (N, Cin, H, W), w (Cout, Cin, k, k).
//
//   y[n, co, r, c]  = b[co] + sum_{ci, a, d} w[co, ci, a, d] x[n, ci, r + a - p, c + d - p]
//   dx[n, ci, r, c] = sum_{co, a, d} w[co, ci, a, d] g[n, co, r - a + p, c - d + p]
//   dw[co, ci, a, d] = sum_{n, r, c} g[n, co, r, c] x[n, ci, r + a - p, c + d - p]
// (indices mod H and W, p = k / 2).

// Output channels one thread accumulates in registers.
#define CONV_TILE 8

// The dimensions: compile-time constants when the module is specialized for one shape
// (NVRTC -D flags, see ops.rs), else the kernels' run-time arguments. With constants the
// tap and channel loops unroll and the index arithmetic becomes shifts and adds.
#ifdef CONV_SPECIALIZED
#define CIN_ CONV_CIN
#define COUT_ CONV_COUT
#define H_ CONV_H
#define W_ CONV_W
#define K_ CONV_K
// weight gradient: 4 output channels per thread when there are at most 4 (less padding)
#define WTILE (CONV_COUT <= 4 ? 4 : CONV_TILE)
#else
#define WTILE CONV_TILE
#define CIN_ Cin
#define COUT_ Cout
#define H_ H
#define W_ W
#define K_ K
#endif

// Where the gradient of (co, unit) goes in a chunk's partial row: the weights first in
// their (co, ci, a, d) order, then the Cout biases (unit == Cin K K), so that the row sums
// split into dw and db.
__device__ __forceinline__ int wslot(int co, int unit, int units_w, int cout) {
    return unit == units_w ? cout * units_w + co : co * units_w + unit;
}

__device__ __forceinline__ int wrap(int i, int n) {
    // |i| < 2n here (k <= n), so one correction suffices
    return i < 0 ? i + n : (i >= n ? i - n : i);
}

// One thread per (sample, pixel) and tile of CONV_TILE output channels (grid.y); the
// bias and the activation are applied in registers (act: 0 none, U_LEAKY, U_TANH).
extern "C" __global__ void conv2d_fwd(const float* __restrict__ x, const float* __restrict__ w,
                                      const float* __restrict__ b, float* __restrict__ y, int N, int Cin, int Cout,
                                      int H, int W, int K, int act, float slope) {
    const int HW = H_ * W_, KK = K_ * K_, pad = K_ / 2;
    i64 pix = GID;
    if (pix >= (i64)N * HW) return;
    int n = (int)(pix / HW), r = (int)(pix % HW);
    int py = r / W_, px = r % W_;
    int co0 = blockIdx.y * CONV_TILE;
    float acc[CONV_TILE];
#pragma unroll
    for (int j = 0; j < CONV_TILE; j++) acc[j] = (b && co0 + j < COUT_) ? b[co0 + j] : 0.0f;
    const float* xn = x + (i64)n * CIN_ * HW;
#pragma unroll
    for (int a = 0; a < K_; a++) {
        int row = wrap(py + a - pad, H_) * W_;
#pragma unroll
        for (int d = 0; d < K_; d++) {
            int off = row + wrap(px + d - pad, W_);
            int tap = a * K_ + d;
#pragma unroll
            for (int ci = 0; ci < CIN_; ci++) {
                float v = xn[ci * HW + off];
                const float* wc = w + (co0 * CIN_ + ci) * KK + tap;
#pragma unroll
                for (int j = 0; j < CONV_TILE; j++)
                    if (co0 + j < COUT_) acc[j] = fmaf(__ldg(wc + j * CIN_ * KK), v, acc[j]);
            }
        }
    }
    float* yn = y + (i64)n * COUT_ * HW + r;
#pragma unroll
    for (int j = 0; j < CONV_TILE; j++)
        if (co0 + j < COUT_) yn[(i64)(co0 + j) * HW] = act_f(act, acc[j], slope);
}

// The gradient at the conv's pre-activation: g act'(z), act' from the output y (act 0:
// g itself; y may then be null).
__device__ __forceinline__ float grad_z(const float* __restrict__ g, const float* __restrict__ y, i64 i, int act,
                                        float slope) {
    return act ? g[i] * act_df_from_y(act, y[i], slope) : g[i];
}

// Input gradient: one thread per (sample, pixel) and tile of input channels (grid.y); the
// activation's derivative is applied to g on the fly.
extern "C" __global__ void conv2d_bwd_input(const float* __restrict__ g, const float* __restrict__ y,
                                            const float* __restrict__ w, float* __restrict__ dx, int N, int Cin,
                                            int Cout, int H, int W, int K, int act, float slope) {
    const int HW = H_ * W_, KK = K_ * K_, pad = K_ / 2;
    i64 pix = GID;
    if (pix >= (i64)N * HW) return;
    int n = (int)(pix / HW), r = (int)(pix % HW);
    int py = r / W_, px = r % W_;
    int ci0 = blockIdx.y * CONV_TILE;
    float acc[CONV_TILE];
#pragma unroll
    for (int j = 0; j < CONV_TILE; j++) acc[j] = 0.0f;
    const i64 gbase = (i64)n * COUT_ * HW;
#pragma unroll
    for (int a = 0; a < K_; a++) {
        int row = wrap(py - a + pad, H_) * W_;
#pragma unroll
        for (int d = 0; d < K_; d++) {
            int off = row + wrap(px - d + pad, W_);
            int tap = a * K_ + d;
#pragma unroll
            for (int co = 0; co < COUT_; co++) {
                float v = grad_z(g, y, gbase + co * HW + off, act, slope);
                const float* wc = w + (co * CIN_ + ci0) * KK + tap;
#pragma unroll
                for (int j = 0; j < CONV_TILE; j++)
                    if (ci0 + j < CIN_) acc[j] = fmaf(__ldg(wc + j * KK), v, acc[j]);
            }
        }
    }
    float* dn = dx + (i64)n * CIN_ * HW + r;
#pragma unroll
    for (int j = 0; j < CONV_TILE; j++)
        if (ci0 + j < CIN_) dn[(i64)(ci0 + j) * HW] = acc[j];
}

// Weight and bias gradients, partial sums over a chunk of samples: block (chunk =
// blockIdx.x, output-channel tile = blockIdx.y, unit range = blockIdx.z). A unit is
// (ci, a, d), or the bias (the last unit, index Cin*K*K, input 1); a thread holds
// CONV_TILE output channels of one unit in registers and takes every S-th pixel; the
// sample's planes are staged in shared memory (g with the activation's derivative
// applied). Writes partial[chunk][slot(co, unit)] (see wslot); the caller sums over chunks.
// `stage` samples are staged per synchronization.
// Dynamic shared memory: stage * (WTILE + Cin) * H * W floats + K * (H + W) ints + blockDim.x * WTILE floats.
extern "C" __global__ void conv2d_bwd_weight_smem(const float* __restrict__ g, const float* __restrict__ y,
                                                  const float* __restrict__ x, float* __restrict__ partial, int N,
                                                  int Cin, int Cout, int H, int W, int K, int act, float slope,
                                                  int samples_per_chunk, int stage) {
    extern __shared__ float smem[];
    const int HW = H_ * W_, KK = K_ * K_, pad = K_ / 2, U = CIN_ * KK + 1;
    const int co0 = blockIdx.y * WTILE;
    const int ncot = min(WTILE, COUT_ - co0);
    float* gs = smem;                         // stage * HW * WTILE, [sample][p][j] (16-byte aligned rows)
    float* xs = gs + stage * WTILE * HW;      // stage * Cin * HW
    int* rowy = (int*)(xs + stage * CIN_ * HW);  // K * H
    int* colx = rowy + K_ * H_;               // K * W
    float* red = (float*)(colx + K_ * W_);    // blockDim.x * WTILE
    for (int t = threadIdx.x; t < K_ * H_; t += blockDim.x) rowy[t] = wrap(t % H_ + t / H_ - pad, H_) * W_;
    for (int t = threadIdx.x; t < K_ * W_; t += blockDim.x) colx[t] = wrap(t % W_ + t / W_ - pad, W_);

    const int u0 = blockIdx.z * blockDim.x;
    const int ublk = min((int)blockDim.x, U - u0);
    const int S = blockDim.x / ublk;
    const int s = threadIdx.x / ublk;
    const int u = u0 + threadIdx.x % ublk;
    const bool active = s < S;
    const bool bias = u == U - 1;
    const int ci = bias ? 0 : u / KK, tap = bias ? 0 : u % KK, a = tap / K_, d = tap % K_;
    float acc[WTILE];
#pragma unroll
    for (int j = 0; j < WTILE; j++) acc[j] = 0.0f;

    const int n0 = blockIdx.x * samples_per_chunk;
    const int n1 = min(N, n0 + samples_per_chunk);
    for (int n = n0; n < n1; n += stage) {
        const int ns = min(stage, n1 - n);
        __syncthreads();  // the previous stage's planes are no longer read
        const float* xn = x + (i64)n * CIN_ * HW;
        for (int t = threadIdx.x; t < ns * CIN_ * HW; t += blockDim.x) xs[t] = xn[t];
        for (int t = threadIdx.x; t < ns * WTILE * HW; t += blockDim.x) {
            int sl = t / (WTILE * HW), r = t % (WTILE * HW), j = r / HW, p = r % HW;  // coalesced reads
            gs[(sl * HW + p) * WTILE + j] =
                j < ncot ? grad_z(g, y, ((i64)(n + sl) * COUT_ + co0 + j) * HW + p, act, slope) : 0.0f;
        }
        __syncthreads();
        if (active) {
            const int* ry = rowy + a * H_;
            const int* cx = colx + d * W_;
            for (int q = s; q < ns * HW; q += S) {
                const int sl = q / HW, p = q % HW;
                float v = bias ? 1.0f : xs[(sl * CIN_ + ci) * HW + ry[p / W_] + cx[p % W_]];
                const float4* g4 = (const float4*)(gs + q * WTILE);
#pragma unroll
                for (int j4 = 0; j4 < WTILE / 4; j4++) {
                    float4 q = g4[j4];
                    acc[4 * j4] = fmaf(q.x, v, acc[4 * j4]);
                    acc[4 * j4 + 1] = fmaf(q.y, v, acc[4 * j4 + 1]);
                    acc[4 * j4 + 2] = fmaf(q.z, v, acc[4 * j4 + 2]);
                    acc[4 * j4 + 3] = fmaf(q.w, v, acc[4 * j4 + 3]);
                }
            }
        }
    }
    // sum the S pixel subsets of each unit in a fixed order
#pragma unroll
    for (int j = 0; j < WTILE; j++) red[threadIdx.x * WTILE + j] = acc[j];
    __syncthreads();
    const i64 plen = (i64)COUT_ * U;
    for (int t = threadIdx.x; t < ublk * WTILE; t += blockDim.x) {
        int uu = t / WTILE, j = t % WTILE;
        if (j >= ncot) continue;
        float sum = 0.0f;
        for (int q = 0; q < S; q++) sum += red[(q * ublk + uu) * WTILE + j];
        partial[blockIdx.x * plen + wslot(co0 + j, u0 + uu, U - 1, COUT_)] = sum;
    }
}

// Weight and bias gradients without shared memory (planes too large for it): one thread
// per (co, unit) entry, units as above, and chunk of samples (blockIdx.y); writes
// partial[chunk][slot(co, unit)].
extern "C" __global__ void conv2d_bwd_weight_direct(const float* __restrict__ g, const float* __restrict__ y,
                                                    const float* __restrict__ x, float* __restrict__ partial, int N,
                                                    int Cin, int Cout, int H, int W, int K, int act, float slope,
                                                    int samples_per_chunk) {
    const int HW = H_ * W_, KK = K_ * K_, pad = K_ / 2, U = CIN_ * KK + 1;
    const i64 plen = (i64)COUT_ * U;
    i64 wi = GID;
    if (wi >= plen) return;
    int co = (int)(wi / U), u = (int)(wi % U);
    bool bias = u == U - 1;
    int ci = bias ? 0 : u / KK, tap = bias ? 0 : u % KK;
    int a = tap / K_, d = tap % K_;
    int n0 = blockIdx.y * samples_per_chunk, n1 = min(N, n0 + samples_per_chunk);
    float acc = 0.0f;
    for (int n = n0; n < n1; n++) {
        const i64 gc = ((i64)n * COUT_ + co) * HW;
        const float* xc = x + ((i64)n * CIN_ + ci) * HW;
        for (int py = 0; py < H_; py++) {
            int row = wrap(py + a - pad, H_) * W_;
            for (int px = 0; px < W_; px++) {
                float v = bias ? 1.0f : xc[row + wrap(px + d - pad, W_)];
                acc = fmaf(grad_z(g, y, gc + py * W_ + px, act, slope), v, acc);
            }
        }
    }
    partial[blockIdx.y * plen + wslot(co, u, U - 1, COUT_)] = acc;
}

#ifdef CONV_SPECIALIZED
// ---- Tiled kernels, compiled only for one shape (all dimensions constants): a block
// stages SPB whole samples and the weights in shared memory; a thread computes one pixel
// for every output channel, reading the weights of one (input channel, tap) as float4s
// laid out [ci][tap][co] (forward) or [co][tap][ci] (input gradient).
#define HW_ (H_ * W_)
#define KK_ (K_ * K_)
#define PAD_ (K_ / 2)
#define R4(c) (((c) + 3) / 4 * 4)
#define SPB (HW_ >= 256 ? 1 : 256 / HW_)
// Dynamic shared memory of the two kernels (floats), also computed by ops.rs.
#define FWD_SMEM (CIN_ * KK_ * R4(COUT_) + SPB * CIN_ * HW_)
#define BWD_SMEM (COUT_ * KK_ * R4(CIN_) + SPB * COUT_ * HW_)

extern "C" __global__ void conv2d_fwd_tiled(const float* __restrict__ x, const float* __restrict__ w,
                                            const float* __restrict__ b, float* __restrict__ y, int N, int act,
                                            float slope) {
    extern __shared__ float4 smem4[];
    float* ws = (float*)smem4;                    // [ci][tap][co4]
    float* xs = ws + CIN_ * KK_ * R4(COUT_);      // [sample][ci][p]
    const int n0 = blockIdx.x * SPB;
    const int ns = min(SPB, N - n0);
    for (int t = threadIdx.x; t < CIN_ * KK_ * R4(COUT_); t += blockDim.x) {
        int co = t % R4(COUT_), r = t / R4(COUT_), tap = r % KK_, ci = r / KK_;
        ws[t] = co < COUT_ ? w[(co * CIN_ + ci) * KK_ + tap] : 0.0f;
    }
    const float* xb = x + (i64)n0 * CIN_ * HW_;
    for (int t = threadIdx.x; t < ns * CIN_ * HW_; t += blockDim.x) xs[t] = xb[t];
    __syncthreads();
    for (int q = threadIdx.x; q < ns * HW_; q += blockDim.x) {
        const int sl = q / HW_, r = q % HW_, py = r / W_, px = r % W_;
        float acc[R4(COUT_)];
#pragma unroll
        for (int c = 0; c < R4(COUT_); c++) acc[c] = (b && c < COUT_) ? b[c] : 0.0f;
        const float* xn = xs + sl * CIN_ * HW_;
        int off[KK_];
#pragma unroll
        for (int a = 0; a < K_; a++)
#pragma unroll
            for (int d = 0; d < K_; d++) off[a * K_ + d] = wrap(py + a - PAD_, H_) * W_ + wrap(px + d - PAD_, W_);
        // channels outermost and not unrolled: bounded register use (a full unroll of
        // channels x taps spilled and ran 2x slower than the generic kernel at 8 -> 8)
#pragma unroll 1
        for (int ci = 0; ci < CIN_; ci++) {
            const float* xc = xn + ci * HW_;
            const float4* w4 = (const float4*)(ws + ci * KK_ * R4(COUT_));
#pragma unroll
            for (int tap = 0; tap < KK_; tap++) {
                const float v = xc[off[tap]];
#pragma unroll
                for (int c4 = 0; c4 < R4(COUT_) / 4; c4++) {
                    const float4 q4 = w4[tap * (R4(COUT_) / 4) + c4];
                    acc[4 * c4] = fmaf(q4.x, v, acc[4 * c4]);
                    acc[4 * c4 + 1] = fmaf(q4.y, v, acc[4 * c4 + 1]);
                    acc[4 * c4 + 2] = fmaf(q4.z, v, acc[4 * c4 + 2]);
                    acc[4 * c4 + 3] = fmaf(q4.w, v, acc[4 * c4 + 3]);
                }
            }
        }
        float* yn = y + (i64)(n0 + sl) * COUT_ * HW_ + r;
#pragma unroll
        for (int c = 0; c < COUT_; c++) yn[c * HW_] = act_f(act, acc[c], slope);
    }
}

extern "C" __global__ void conv2d_bwd_input_tiled(const float* __restrict__ g, const float* __restrict__ y,
                                                  const float* __restrict__ w, float* __restrict__ dx, int N,
                                                  int act, float slope) {
    extern __shared__ float4 smem4[];
    float* ws = (float*)smem4;                    // [co][tap][ci4]
    float* gs = ws + COUT_ * KK_ * R4(CIN_);      // [sample][co][p], act' applied
    const int n0 = blockIdx.x * SPB;
    const int ns = min(SPB, N - n0);
    for (int t = threadIdx.x; t < COUT_ * KK_ * R4(CIN_); t += blockDim.x) {
        int ci = t % R4(CIN_), r = t / R4(CIN_), tap = r % KK_, co = r / KK_;
        ws[t] = ci < CIN_ ? w[(co * CIN_ + ci) * KK_ + tap] : 0.0f;
    }
    const i64 gb = (i64)n0 * COUT_ * HW_;
    for (int t = threadIdx.x; t < ns * COUT_ * HW_; t += blockDim.x) gs[t] = grad_z(g, y, gb + t, act, slope);
    __syncthreads();
    for (int q = threadIdx.x; q < ns * HW_; q += blockDim.x) {
        const int sl = q / HW_, r = q % HW_, py = r / W_, px = r % W_;
        float acc[R4(CIN_)];
#pragma unroll
        for (int c = 0; c < R4(CIN_); c++) acc[c] = 0.0f;
        const float* gn = gs + sl * COUT_ * HW_;
        int off[KK_];
#pragma unroll
        for (int a = 0; a < K_; a++)
#pragma unroll
            for (int d = 0; d < K_; d++) off[a * K_ + d] = wrap(py - a + PAD_, H_) * W_ + wrap(px - d + PAD_, W_);
#pragma unroll 1
        for (int co = 0; co < COUT_; co++) {
            const float* gc = gn + co * HW_;
            const float4* w4 = (const float4*)(ws + co * KK_ * R4(CIN_));
#pragma unroll
            for (int tap = 0; tap < KK_; tap++) {
                const float v = gc[off[tap]];
#pragma unroll
                for (int c4 = 0; c4 < R4(CIN_) / 4; c4++) {
                    const float4 q4 = w4[tap * (R4(CIN_) / 4) + c4];
                    acc[4 * c4] = fmaf(q4.x, v, acc[4 * c4]);
                    acc[4 * c4 + 1] = fmaf(q4.y, v, acc[4 * c4 + 1]);
                    acc[4 * c4 + 2] = fmaf(q4.z, v, acc[4 * c4 + 2]);
                    acc[4 * c4 + 3] = fmaf(q4.w, v, acc[4 * c4 + 3]);
                }
            }
        }
        float* dn = dx + (i64)(n0 + sl) * CIN_ * HW_ + r;
#pragma unroll
        for (int c = 0; c < CIN_; c++) dn[c * HW_] = acc[c];
    }
}
#endif
