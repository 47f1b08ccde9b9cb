// Shared helpers of latflow's CUDA kernels. All kernels are f32, row-major, and
// compiled together by NVRTC into one module (see lib.rs for the options: no fast-math).
typedef long long i64;

// Global thread index and grid stride of a 1-D launch.
#define GID ((i64)blockIdx.x * blockDim.x + threadIdx.x)
#define GSTRIDE ((i64)gridDim.x * blockDim.x)

// Unary op codes, in the order of latflow_tensor::elementwise::Unary.
#define U_NEG 0
#define U_ADD_SCALAR 1
#define U_MUL_SCALAR 2
#define U_EXP 3
#define U_LOG 4
#define U_TANH 5
#define U_LEAKY 6
#define U_SIN 7
#define U_COS 8
#define U_TAN 9
#define U_ATAN 10
#define U_POWI 11
#define U_REM_EUCLID 12

// x^n by repeated squaring (Rust's powi); n may be negative.
__device__ __forceinline__ float powi_f(float x, int n) {
    unsigned int e = n < 0 ? (unsigned int)(-n) : (unsigned int)n;
    float r = 1.0f, b = x;
    while (e) {
        if (e & 1u) r *= b;
        b *= b;
        e >>= 1;
    }
    return n < 0 ? 1.0f / r : r;
}

__device__ __forceinline__ float unary_f(int op, float x, float p) {
    switch (op) {
    case U_NEG: return -x;
    case U_ADD_SCALAR: return x + p;
    case U_MUL_SCALAR: return p * x;
    case U_EXP: return expf(x);
    case U_LOG: return logf(x);
    case U_TANH: return tanhf(x);
    case U_LEAKY: return x > 0.0f ? x : p * x;
    case U_SIN: return sinf(x);
    case U_COS: return cosf(x);
    case U_TAN: return tanf(x);
    case U_ATAN: return atanf(x);
    case U_POWI: return powi_f(x, (int)p);
    case U_REM_EUCLID: {
        // Rust's f32::rem_euclid: r = x % m; r < 0 ? r + |m| : r
        float r = fmodf(x, p);
        return r < 0.0f ? r + fabsf(p) : r;
    }
    default: return __int_as_float(0x7fc00000);  // NaN: unknown op
    }
}

// dy/dx given the input x and the output y = f(x).
__device__ __forceinline__ float unary_df(int op, float x, float y, float p) {
    switch (op) {
    case U_NEG: return -1.0f;
    case U_ADD_SCALAR: return 1.0f;
    case U_MUL_SCALAR: return p;
    case U_EXP: return y;
    case U_LOG: return 1.0f / x;
    case U_TANH: return 1.0f - y * y;
    case U_LEAKY: return x > 0.0f ? 1.0f : p;
    case U_SIN: return cosf(x);
    case U_COS: return -sinf(x);
    case U_TAN: return 1.0f + y * y;
    case U_ATAN: return 1.0f / (1.0f + x * x);
    case U_POWI: {
        int n = (int)p;
        return n == 0 ? 0.0f : (float)n * powi_f(x, n - 1);
    }
    case U_REM_EUCLID: return 1.0f;
    default: return __int_as_float(0x7fc00000);
    }
}

// Activation of a fused conv (0 none, U_LEAKY, U_TANH) and its derivative from the output.
__device__ __forceinline__ float act_f(int act, float z, float slope) {
    if (act == U_LEAKY) return z > 0.0f ? z : slope * z;
    if (act == U_TANH) return tanhf(z);
    return z;
}
__device__ __forceinline__ float act_df_from_y(int act, float y, float slope) {
    // leaky with slope > 0: y > 0 exactly where z > 0; tanh: 1 - y^2
    if (act == U_LEAKY) return y > 0.0f ? 1.0f : slope;
    if (act == U_TANH) return 1.0f - y * y;
    return 1.0f;
}

// Sum over a warp; every lane gets the total.
__device__ __forceinline__ float warp_sum(float s) {
    for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
    return s;
}
__device__ __forceinline__ float warp_max(float s) {
    for (int off = 16; off > 0; off >>= 1) s = fmaxf(s, __shfl_xor_sync(0xffffffffu, s, off));
    return s;
}
