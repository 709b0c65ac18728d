// norm.cu: layer norm and RMS norm over the last dim, forward and backward.
//
// Conventions (llm.c style): forward kernels overwrite y and the saved statistics; backward
// kernels accumulate (+=) into dx, dw, db. One block per row for the row-wise work. The
// parameter gradients (dw, db: sums over all rows) are two passes without atomics: pass 1
// here writes per-chunk column partials, pass 2 is column_sum_finish in reduce.cu. Every
// kernel here is deterministic.
#include "common.cuh"

// ---------------------------------------------------------------- layer norm

// x [rows, n], w [n], b [n] → y [rows, n] = (x − μ)·rstd·w + b; mean [rows], rstd [rows]
// with rstd = 1/√(var + eps), var the biased variance (two passes over the row, as the CPU).
template <typename T>
__device__ __forceinline__ void layer_norm(const T* x, const T* w, const T* b, T* y, T* mean, T* rstd, i64 rows, int n, T eps) {
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* xr = x + r * n;
        T s = (T)0;
        for (int j = threadIdx.x; j < n; j += blockDim.x) s += xr[j];
        T mu = block_sum(s) / (T)n;
        T v = (T)0;
        for (int j = threadIdx.x; j < n; j += blockDim.x) { T d = xr[j] - mu; v += d * d; }
        T var = block_sum(v) / (T)n;
        T rs = (T)1 / sqrt(var + eps);
        for (int j = threadIdx.x; j < n; j += blockDim.x) y[r * n + j] = (xr[j] - mu) * rs * w[j] + b[j];
        if (threadIdx.x == 0) { mean[r] = mu; rstd[r] = rs; }
    }
}
extern "C" __global__ void layer_norm_f32(const float* x, const float* w, const float* b, float* y, float* mean, float* rstd, i64 rows, int n, float eps) { layer_norm(x, w, b, y, mean, rstd, rows, n, eps); }
extern "C" __global__ void layer_norm_f64(const double* x, const double* w, const double* b, double* y, double* mean, double* rstd, i64 rows, int n, double eps) { layer_norm(x, w, b, y, mean, rstd, rows, n, eps); }

// dx [rows, n] += rstd · (g − mean(g) − x̂ · mean(g ⊙ x̂)) with x̂ = (x − μ)·rstd, g = dy ⊙ w.
template <typename T>
__device__ __forceinline__ void layer_norm_backward_input(const T* x, const T* w, const T* mean, const T* rstd, const T* dy, T* dx, i64 rows, int n) {
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* xr = x + r * n; const T* dyr = dy + r * n;
        T mu = mean[r], rs = rstd[r];
        T sg = (T)0, sgx = (T)0;
        for (int j = threadIdx.x; j < n; j += blockDim.x) {
            T g = dyr[j] * w[j];
            sg += g;
            sgx += g * (xr[j] - mu) * rs;
        }
        sg = block_sum(sg);
        sgx = block_sum(sgx);
        T inv = (T)1 / (T)n;
        for (int j = threadIdx.x; j < n; j += blockDim.x) {
            T xh = (xr[j] - mu) * rs;
            dx[r * n + j] += rs * (dyr[j] * w[j] - sg * inv - xh * sgx * inv);
        }
    }
}
extern "C" __global__ void layer_norm_backward_input_f32(const float* x, const float* w, const float* mean, const float* rstd, const float* dy, float* dx, i64 rows, int n) { layer_norm_backward_input(x, w, mean, rstd, dy, dx, rows, n); }
extern "C" __global__ void layer_norm_backward_input_f64(const double* x, const double* w, const double* mean, const double* rstd, const double* dy, double* dx, i64 rows, int n) { layer_norm_backward_input(x, w, mean, rstd, dy, dx, rows, n); }

// Pass 1 of dw [n] += Σ_rows dy ⊙ x̂ and db [n] += Σ_rows dy: per chunk of chunk_rows rows,
// partial_w [chunks, n] and partial_b [chunks, n] (either may be null). Grid (ceil(n/block), chunks).
template <typename T>
__device__ __forceinline__ void layer_norm_backward_params(const T* x, const T* mean, const T* rstd, const T* dy, T* partial_w, T* partial_b, i64 rows, int n, int chunk_rows) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n) return;
    i64 c = blockIdx.y, r0 = c * chunk_rows, r1 = min(rows, r0 + chunk_rows);
    T sw = (T)0, sb = (T)0;
    for (i64 r = r0; r < r1; r++) {
        T g = dy[r * n + j];
        sw += g * (x[r * n + j] - mean[r]) * rstd[r];
        sb += g;
    }
    if (partial_w) partial_w[c * n + j] = sw;
    if (partial_b) partial_b[c * n + j] = sb;
}
extern "C" __global__ void layer_norm_backward_params_f32(const float* x, const float* mean, const float* rstd, const float* dy, float* partial_w, float* partial_b, i64 rows, int n, int chunk_rows) { layer_norm_backward_params(x, mean, rstd, dy, partial_w, partial_b, rows, n, chunk_rows); }
extern "C" __global__ void layer_norm_backward_params_f64(const double* x, const double* mean, const double* rstd, const double* dy, double* partial_w, double* partial_b, i64 rows, int n, int chunk_rows) { layer_norm_backward_params(x, mean, rstd, dy, partial_w, partial_b, rows, n, chunk_rows); }

// ---------------------------------------------------------------- RMS norm

// x [rows, n], w [n] → y [rows, n] = x·rstd·w with rstd = 1/√(mean(x²) + eps); rstd [rows].
template <typename T>
__device__ __forceinline__ void rms_norm(const T* x, const T* w, T* y, T* rstd, i64 rows, int n, T eps) {
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* xr = x + r * n;
        T s = (T)0;
        for (int j = threadIdx.x; j < n; j += blockDim.x) s += xr[j] * xr[j];
        T rs = (T)1 / sqrt(block_sum(s) / (T)n + eps);
        for (int j = threadIdx.x; j < n; j += blockDim.x) y[r * n + j] = xr[j] * rs * w[j];
        if (threadIdx.x == 0) rstd[r] = rs;
    }
}
extern "C" __global__ void rms_norm_f32(const float* x, const float* w, float* y, float* rstd, i64 rows, int n, float eps) { rms_norm(x, w, y, rstd, rows, n, eps); }
extern "C" __global__ void rms_norm_f64(const double* x, const double* w, double* y, double* rstd, i64 rows, int n, double eps) { rms_norm(x, w, y, rstd, rows, n, eps); }

// dx [rows, n] += rstd · (g − x · rstd² · mean(g ⊙ x)) with g = dy ⊙ w.
template <typename T>
__device__ __forceinline__ void rms_norm_backward_input(const T* x, const T* w, const T* rstd, const T* dy, T* dx, i64 rows, int n) {
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* xr = x + r * n; const T* dyr = dy + r * n;
        T rs = rstd[r];
        T d = (T)0;
        for (int j = threadIdx.x; j < n; j += blockDim.x) d += dyr[j] * w[j] * xr[j];
        T c = rs * rs * block_sum(d) / (T)n;
        for (int j = threadIdx.x; j < n; j += blockDim.x) dx[r * n + j] += rs * (dyr[j] * w[j] - xr[j] * c);
    }
}
extern "C" __global__ void rms_norm_backward_input_f32(const float* x, const float* w, const float* rstd, const float* dy, float* dx, i64 rows, int n) { rms_norm_backward_input(x, w, rstd, dy, dx, rows, n); }
extern "C" __global__ void rms_norm_backward_input_f64(const double* x, const double* w, const double* rstd, const double* dy, double* dx, i64 rows, int n) { rms_norm_backward_input(x, w, rstd, dy, dx, rows, n); }

// Pass 1 of dw [n] += Σ_rows dy ⊙ x · rstd: partial_w [chunks, n]. Grid (ceil(n/block), chunks).
template <typename T>
__device__ __forceinline__ void rms_norm_backward_weight(const T* x, const T* rstd, const T* dy, T* partial_w, i64 rows, int n, int chunk_rows) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n) return;
    i64 c = blockIdx.y, r0 = c * chunk_rows, r1 = min(rows, r0 + chunk_rows);
    T s = (T)0;
    for (i64 r = r0; r < r1; r++) s += dy[r * n + j] * x[r * n + j] * rstd[r];
    partial_w[c * n + j] = s;
}
extern "C" __global__ void rms_norm_backward_weight_f32(const float* x, const float* rstd, const float* dy, float* partial_w, i64 rows, int n, int chunk_rows) { rms_norm_backward_weight(x, rstd, dy, partial_w, rows, n, chunk_rows); }
extern "C" __global__ void rms_norm_backward_weight_f64(const double* x, const double* rstd, const double* dy, double* partial_w, i64 rows, int n, int chunk_rows) { rms_norm_backward_weight(x, rstd, dy, partial_w, rows, n, chunk_rows); }
