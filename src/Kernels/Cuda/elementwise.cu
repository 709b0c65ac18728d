// elementwise.cu: fills, scalar updates, broadcasting binary ops, activations, dropout, casts,
// bf16 packing of GEMM operands.
//
// Conventions (llm.c style): forward kernels overwrite their outputs; backward kernels
// accumulate (+=) into the gradient buffers. All buffers are contiguous; pointers arrive
// offset to the tensor's view. One thread per element (grid-stride loops). Every kernel here
// is deterministic: each output element is written by exactly one thread.
#include "common.cuh"

// ---------------------------------------------------------------- memory-like updates

// x [n] = value
template <typename T> __device__ __forceinline__ void fill(T* x, i64 n, T value) {
    GRID_STRIDE_LOOP(i, n) x[i] = value;
}
extern "C" __global__ void fill_f64(double* x, i64 n, double value) { fill(x, n, value); }

// x [n] += value
template <typename T> __device__ __forceinline__ void add_scalar(T* x, i64 n, T value) {
    GRID_STRIDE_LOOP(i, n) x[i] += value;
}
extern "C" __global__ void add_scalar_f32(float* x, i64 n, float value) { add_scalar(x, n, value); }
extern "C" __global__ void add_scalar_f64(double* x, i64 n, double value) { add_scalar(x, n, value); }

// y [n] += alpha · x [n]
template <typename T> __device__ __forceinline__ void axpy(const T* x, T* y, i64 n, T alpha) {
    GRID_STRIDE_LOOP(i, n) y[i] += alpha * x[i];
}
extern "C" __global__ void axpy_f32(const float* x, float* y, i64 n, float alpha) { axpy(x, y, n, alpha); }
extern "C" __global__ void axpy_f64(const double* x, double* y, i64 n, double alpha) { axpy(x, y, n, alpha); }

// y [n] += w[l] · x [n], the weight read from device memory (weighted sums over layers).
template <typename T> __device__ __forceinline__ void axpy_indexed(const T* x, T* y, i64 n, const T* w, int l) {
    T alpha = w[l];
    GRID_STRIDE_LOOP(i, n) y[i] += alpha * x[i];
}
extern "C" __global__ void axpy_indexed_f32(const float* x, float* y, i64 n, const float* w, int l) { axpy_indexed(x, y, n, w, l); }
extern "C" __global__ void axpy_indexed_f64(const double* x, double* y, i64 n, const double* w, int l) { axpy_indexed(x, y, n, w, l); }

// y [n] = alpha · x [n]
template <typename T> __device__ __forceinline__ void scale(const T* x, T* y, i64 n, T alpha) {
    GRID_STRIDE_LOOP(i, n) y[i] = alpha * x[i];
}
extern "C" __global__ void scale_f32(const float* x, float* y, i64 n, float alpha) { scale(x, y, n, alpha); }
extern "C" __global__ void scale_f64(const double* x, double* y, i64 n, double alpha) { scale(x, y, n, alpha); }

// ---------------------------------------------------------------- binary ops with broadcasting

// Operation codes, as Engine.Backend.BinaryOp: 0 add, 1 sub, 2 mul, 3 div.
template <typename T> __device__ __forceinline__ T apply_binary(int op, T a, T b) {
    switch (op) {
        case 0: return a + b;
        case 1: return a - b;
        case 2: return a * b;
        default: return a / b;
    }
}

// Offsets of output element i in the two operands (layout.stride0 / stride1, 0 where broadcast).
__device__ __forceinline__ void broadcast_offsets(const Layout& L, i64 i, i64& oa, i64& ob) {
    oa = 0; ob = 0;
    for (int d = L.rank - 1; d >= 0; d--) {
        i64 c = i % L.shape[d];
        i /= L.shape[d];
        oa += c * L.stride0[d];
        ob += c * L.stride1[d];
    }
}

// y [out shape] = a op b; a and b are read through their broadcast strides.
template <typename T> __device__ __forceinline__ void binary(int op, const T* a, const T* b, T* y, i64 n, Layout L) {
    GRID_STRIDE_LOOP(i, n) {
        i64 oa, ob;
        broadcast_offsets(L, i, oa, ob);
        y[i] = apply_binary(op, a[oa], b[ob]);
    }
}
extern "C" __global__ void binary_f32(int op, const float* a, const float* b, float* y, i64 n, Layout L) { binary(op, a, b, y, n, L); }
extern "C" __global__ void binary_f64(int op, const double* a, const double* b, double* y, i64 n, Layout L) { binary(op, a, b, y, n, L); }

// The gradient of ONE operand (which = 0: a, 1: b), without atomics: one thread per element of
// that operand's gradient [grad_n]; it loops over every output element that read it (the
// output dims along which the operand is broadcast) in row-major order and adds
// ∂y/∂operand · dy. L holds the output shape and both operands' broadcast strides.
template <typename T>
__device__ __forceinline__ void binary_backward(int op, int which, const T* a, const T* b, const T* dy, T* grad, i64 grad_n, Layout L) {
    const i64* own = which == 0 ? L.stride0 : L.stride1;
    GRID_STRIDE_LOOP(g, grad_n) {
        // Coordinates of this gradient element along the dims where the operand is not broadcast.
        i64 reduced = 1, rem = g;
        i64 coord[MAX_RANK];
        for (int d = L.rank - 1; d >= 0; d--) {
            if (own[d] != 0) { coord[d] = rem % L.shape[d]; rem /= L.shape[d]; }
            else { coord[d] = 0; reduced *= L.shape[d]; }
        }
        T acc = (T)0;
        for (i64 r = 0; r < reduced; r++) {
            // Expand r over the broadcast dims (row-major), combine with the fixed coordinates.
            i64 out = 0, oa = 0, ob = 0, rr = r, mul = 1;
            i64 full[MAX_RANK];
            for (int d = L.rank - 1; d >= 0; d--) {
                if (own[d] == 0) { full[d] = rr % L.shape[d]; rr /= L.shape[d]; }
                else full[d] = coord[d];
            }
            for (int d = L.rank - 1; d >= 0; d--) {
                out += full[d] * mul; mul *= L.shape[d];
                oa += full[d] * L.stride0[d];
                ob += full[d] * L.stride1[d];
            }
            T gy = dy[out];
            switch (op) {
                case 0: acc += gy; break;
                case 1: acc += which == 0 ? gy : -gy; break;
                case 2: acc += gy * (which == 0 ? b[ob] : a[oa]); break;
                default: acc += which == 0 ? gy / b[ob] : -gy * a[oa] / (b[ob] * b[ob]); break;
            }
        }
        grad[g] += acc;
    }
}
extern "C" __global__ void binary_backward_f32(int op, int which, const float* a, const float* b, const float* dy, float* grad, i64 grad_n, Layout L) { binary_backward(op, which, a, b, dy, grad, grad_n, L); }
extern "C" __global__ void binary_backward_f64(int op, int which, const double* a, const double* b, const double* dy, double* grad, i64 grad_n, Layout L) { binary_backward(op, which, a, b, dy, grad, grad_n, L); }

// ---------------------------------------------------------------- activations

// Operation codes, as Engine.Backend.UnaryOp: 0 relu, 1 tanh, 2 silu, 3 gelu (erf), 4 gelu (tanh).
// The smooth ones are evaluated in double, as the CPU reference does, then rounded to T.
#define SQRT_2_OVER_PI 0.7978845608028654
#define GELU_COEF 0.044715
#define INV_SQRT_2 0.7071067811865476
#define INV_SQRT_2PI 0.3989422804014327

// y [n] = f(x [n])
template <typename T> __device__ __forceinline__ void unary(int op, const T* x, T* y, i64 n) {
    GRID_STRIDE_LOOP(i, n) {
        double v = (double)x[i], r;
        switch (op) {
            case 0: r = v > 0 ? v : 0; break;
            case 1: r = tanh(v); break;
            case 2: r = v / (1 + exp(-v)); break;
            case 3: r = 0.5 * v * (1 + erf(v * INV_SQRT_2)); break;
            default: r = 0.5 * v * (1 + tanh(SQRT_2_OVER_PI * (v + GELU_COEF * v * v * v))); break;
        }
        y[i] = (T)r;
    }
}
extern "C" __global__ void unary_f32(int op, const float* x, float* y, i64 n) { unary(op, x, y, n); }
extern "C" __global__ void unary_f64(int op, const double* x, double* y, i64 n) { unary(op, x, y, n); }

// dx [n] += f'(x) · dy (tanh uses the saved output y: 1 − y²)
template <typename T> __device__ __forceinline__ void unary_backward(int op, const T* x, const T* y, const T* dy, T* dx, i64 n) {
    GRID_STRIDE_LOOP(i, n) {
        double v = (double)x[i], d;
        switch (op) {
            case 0: d = v > 0 ? 1 : 0; break;
            case 1: d = 1 - (double)(y[i] * y[i]); break;
            case 2: { double s = 1 / (1 + exp(-v)); d = s * (1 + v * (1 - s)); break; }
            case 3: d = 0.5 * (1 + erf(v * INV_SQRT_2)) + v * INV_SQRT_2PI * exp(-0.5 * v * v); break;
            default: {
                double t = tanh(SQRT_2_OVER_PI * (v + GELU_COEF * v * v * v));
                d = 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * SQRT_2_OVER_PI * (1 + 3 * GELU_COEF * v * v);
                break;
            }
        }
        dx[i] += dy[i] * (T)d;
    }
}
extern "C" __global__ void unary_backward_f32(int op, const float* x, const float* y, const float* dy, float* dx, i64 n) { unary_backward(op, x, y, dy, dx, n); }
extern "C" __global__ void unary_backward_f64(int op, const double* x, const double* y, const double* dy, double* dx, i64 n) { unary_backward(op, x, y, dy, dx, n); }

// ---------------------------------------------------------------- dropout

// y [n] (=, or += when accumulate) x[i] · scale where rng_uniform(seed, i) ≥ p, else 0.
// The mask is the host's Rng.Uniform bit for bit, so CPU and GPU drop the same elements;
// the backward regenerates it from the same seed (accumulate = 1).
template <typename T> __device__ __forceinline__ void dropout(const T* x, T* y, i64 n, float p, T scale, u64 seed, int accumulate) {
    GRID_STRIDE_LOOP(i, n) {
        T v = rng_uniform(seed, (u64)i) >= p ? x[i] * scale : (T)0;
        if (accumulate) y[i] += v; else y[i] = v;
    }
}
extern "C" __global__ void dropout_f32(const float* x, float* y, i64 n, float p, float scale, u64 seed, int accumulate) { dropout(x, y, n, p, scale, seed, accumulate); }
extern "C" __global__ void dropout_f64(const double* x, double* y, i64 n, float p, double scale, u64 seed, int accumulate) { dropout(x, y, n, p, scale, seed, accumulate); }

// Writes the raw 24-bit uniform draws u[i] = rng_uniform(seed, i) (a test hook: the host
// compares them with Rng.Uniform).
extern "C" __global__ void rng_uniform_f32(float* u, i64 n, u64 seed) {
    GRID_STRIDE_LOOP(i, n) u[i] = rng_uniform(seed, (u64)i);
}

// ---------------------------------------------------------------- casts

// Element-type conversion dst [n] = (D) src [n]. Type codes: 0 f32, 1 f64, 2 bf16, 3 f16, 4 i32, 5 i64.
// Values pass through double; bf16 and f16 round to nearest even.
__device__ __forceinline__ double load_as_double(const void* p, int type, i64 i) {
    switch (type) {
        case 0: return ((const float*)p)[i];
        case 1: return ((const double*)p)[i];
        case 2: return bf16_to_float(((const unsigned short*)p)[i]);
        case 3: return f16_to_float(((const unsigned short*)p)[i]);
        case 4: return ((const int*)p)[i];
        default: return (double)((const i64*)p)[i];
    }
}
__device__ __forceinline__ void store_from_double(void* p, int type, i64 i, double v) {
    switch (type) {
        case 0: ((float*)p)[i] = (float)v; break;
        case 1: ((double*)p)[i] = v; break;
        case 2: ((unsigned short*)p)[i] = float_to_bf16((float)v); break;
        case 3: ((unsigned short*)p)[i] = float_to_f16((float)v); break;
        case 4: ((int*)p)[i] = (int)v; break;
        default: ((i64*)p)[i] = (i64)v; break;
    }
}
extern "C" __global__ void cast(const void* src, int src_type, void* dst, int dst_type, i64 n) {
    GRID_STRIDE_LOOP(i, n) store_from_double(dst, dst_type, i, load_as_double(src, src_type, i));
}

// GEMM operands in bf16 mixed precision (MixedPrecision.Bf16 on the host): packs the matrices a
// product reads into one dense bf16 buffer for cublasGemmStridedBatchedEx.
// src: float32, matrix b (b < batch) at src + b·stride, count elements each;
// dst [batch, count] = bf16(src[b·stride + i]), rounded to nearest even (NaN stays NaN).
// A stride-0 operand (one matrix shared by the batch) is packed once: the host passes batch 1.
extern "C" __global__ void pack_bf16(const float* src, i64 stride, i64 count, int batch, unsigned short* dst) {
    GRID_STRIDE_LOOP(i, count * batch) {
        i64 b = i / count, j = i - b * count;
        dst[i] = float_to_bf16(src[b * stride + j]);
    }
}
