// reduce.cu: sums over the last dim, sums of squares and dot products (two passes).
//
// Conventions (llm.c style): forward kernels overwrite their outputs; backward kernels
// accumulate (+=) into the gradient buffers. Whole-tensor reductions are two passes: pass 1
// writes one float64 partial per block (a fixed-shape block tree over a grid-stride slice),
// pass 2 (one block) sums the partials in a fixed order. No atomics: every result here is
// deterministic run to run.
#include "common.cuh"

// y [rows] = Σ_j x [rows, n] (÷ n when mean). One block per row.
template <typename T> __device__ __forceinline__ void sum_last(const T* x, T* y, i64 rows, int n, int mean) {
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* row = x + r * n;
        T s = (T)0;
        for (int j = threadIdx.x; j < n; j += blockDim.x) s += row[j];
        s = block_sum(s);
        if (threadIdx.x == 0) y[r] = mean ? s / (T)n : s;
    }
}
extern "C" __global__ void sum_last_f32(const float* x, float* y, i64 rows, int n, int mean) { sum_last(x, y, rows, n, mean); }
extern "C" __global__ void sum_last_f64(const double* x, double* y, i64 rows, int n, int mean) { sum_last(x, y, rows, n, mean); }

// dx [rows, n] += dy [rows] (÷ n when mean)
template <typename T> __device__ __forceinline__ void sum_last_backward(const T* dy, T* dx, i64 rows, int n, int mean) {
    GRID_STRIDE_LOOP(i, rows * n) {
        T g = dy[i / n];
        dx[i] += mean ? g / (T)n : g;
    }
}
extern "C" __global__ void sum_last_backward_f32(const float* dy, float* dx, i64 rows, int n, int mean) { sum_last_backward(dy, dx, rows, n, mean); }
extern "C" __global__ void sum_last_backward_f64(const double* dy, double* dx, i64 rows, int n, int mean) { sum_last_backward(dy, dx, rows, n, mean); }

// Pass 1 of Σ x[i]² over x [n]: partials [gridDim.x] in float64.
template <typename T> __device__ __forceinline__ void sum_squares_partials(const T* x, i64 n, double* partials) {
    double s = 0;
    GRID_STRIDE_LOOP(i, n) { double v = (double)x[i]; s += v * v; }
    s = block_sum(s);
    if (threadIdx.x == 0) partials[blockIdx.x] = s;
}
extern "C" __global__ void sum_squares_partials_f32(const float* x, i64 n, double* partials) { sum_squares_partials(x, n, partials); }
extern "C" __global__ void sum_squares_partials_f64(const double* x, i64 n, double* partials) { sum_squares_partials(x, n, partials); }

// Pass 1 of Σ a[i]·b[i] over a, b [n]: partials [gridDim.x] in float64.
template <typename T> __device__ __forceinline__ void dot_partials(const T* a, const T* b, i64 n, double* partials) {
    double s = 0;
    GRID_STRIDE_LOOP(i, n) s += (double)a[i] * (double)b[i];
    s = block_sum(s);
    if (threadIdx.x == 0) partials[blockIdx.x] = s;
}
extern "C" __global__ void dot_partials_f32(const float* a, const float* b, i64 n, double* partials) { dot_partials(a, b, n, partials); }
extern "C" __global__ void dot_partials_f64(const double* a, const double* b, i64 n, double* partials) { dot_partials(a, b, n, partials); }

// Pass 2 (launch with one block): total = Σ partials [count], then
//   out[0] = total · factor        (accumulate = 0), or
//   out[0] += total · factor       (accumulate = 1).
// The float64 copy of the total goes to total_out when it is not null.
template <typename T> __device__ __forceinline__ void finish_sum(const double* partials, int count, double factor, T* out, int accumulate, double* total_out) {
    double s = 0;
    for (int i = threadIdx.x; i < count; i += blockDim.x) s += partials[i];
    s = block_sum(s);
    if (threadIdx.x == 0) {
        if (total_out) total_out[0] = s;
        if (out) {
            if (accumulate) out[0] += (T)(s * factor); else out[0] = (T)(s * factor);
        }
    }
}
extern "C" __global__ void finish_sum_f32(const double* partials, int count, double factor, float* out, int accumulate, double* total_out) { finish_sum(partials, count, factor, out, accumulate, total_out); }
extern "C" __global__ void finish_sum_f64(const double* partials, int count, double factor, double* out, int accumulate, double* total_out) { finish_sum(partials, count, factor, out, accumulate, total_out); }

// Column sums in two passes, for parameter gradients summed over rows (norm weights, biases).
// Pass 1: partials [chunks, n] with partials[c, j] = Σ_{r in chunk c} x[r, j], where chunk c
// is rows [c·chunk_rows, (c+1)·chunk_rows). Grid: (ceil(n / blockDim.x), chunks).
// Pass 2: out [n] += Σ_c partials [c, j], chunks summed in order.
template <typename T> __device__ __forceinline__ void column_sum_finish(const T* partials, i64 chunks, int n, T* out) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n) return;
    T s = (T)0;
    for (i64 c = 0; c < chunks; c++) s += partials[c * n + j];
    out[j] += s;
}
extern "C" __global__ void column_sum_finish_f32(const float* partials, i64 chunks, int n, float* out) { column_sum_finish(partials, chunks, n, out); }
extern "C" __global__ void column_sum_finish_f64(const double* partials, i64 chunks, int n, double* out) { column_sum_finish(partials, chunks, n, out); }
