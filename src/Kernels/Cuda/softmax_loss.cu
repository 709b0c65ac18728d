// softmax_loss.cu: softmax over the last dim, cross-entropy, mean squared error and binary
// cross-entropy on logits, forward and backward.
//
// Conventions (llm.c style): forward kernels overwrite their outputs (a loss is a scalar
// [1]); backward kernels accumulate (+=) into the gradient buffers. One block per row for
// row-wise work. Mean losses are two passes without atomics: pass 1 writes per-row (or
// per-block) float64 terms, pass 2 sums them in a fixed order. Every kernel here is deterministic.
#include "common.cuh"

// ---------------------------------------------------------------- softmax

// y [rows, n] = softmax(x [rows, n]) over the last dim, max-subtracted; a row of −∞ gives NaN.
template <typename T> __device__ __forceinline__ void softmax(const T* x, T* y, i64 rows, int n) {
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* xr = x + r * n; T* yr = y + r * n;
        T m = negative_infinity<T>();
        for (int j = threadIdx.x; j < n; j += blockDim.x) m = fmax(m, xr[j]);
        m = block_max(m);
        T s = (T)0;
        for (int j = threadIdx.x; j < n; j += blockDim.x) { T e = exp(xr[j] - m); yr[j] = e; s += e; }
        s = block_sum(s);
        for (int j = threadIdx.x; j < n; j += blockDim.x) yr[j] = yr[j] / s;
    }
}
extern "C" __global__ void softmax_f32(const float* x, float* y, i64 rows, int n) { softmax(x, y, rows, n); }
extern "C" __global__ void softmax_f64(const double* x, double* y, i64 rows, int n) { softmax(x, y, rows, n); }

// dx [rows, n] += y ⊙ (dy − Σ_j y·dy)
template <typename T> __device__ __forceinline__ void softmax_backward(const T* y, const T* dy, T* dx, i64 rows, int n) {
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* yr = y + r * n; const T* dyr = dy + r * n;
        T d = (T)0;
        for (int j = threadIdx.x; j < n; j += blockDim.x) d += yr[j] * dyr[j];
        d = block_sum(d);
        for (int j = threadIdx.x; j < n; j += blockDim.x) dx[r * n + j] += yr[j] * (dyr[j] - d);
    }
}
extern "C" __global__ void softmax_backward_f32(const float* y, const float* dy, float* dx, i64 rows, int n) { softmax_backward(y, dy, dx, rows, n); }
extern "C" __global__ void softmax_backward_f64(const double* y, const double* dy, double* dx, i64 rows, int n) { softmax_backward(y, dy, dx, rows, n); }

// ---------------------------------------------------------------- cross-entropy

// Pass 1. logits [rows, c], targets [rows] (int32) → lse [rows] (log-sum-exp of every row) and
// terms [rows] (float64): lse − logit[target], or 0 for a row whose target is ignore_index.
// A target outside 0..c−1 gives a NaN term (so the loss is NaN).
template <typename T>
__device__ __forceinline__ void cross_entropy_rows(const T* logits, const int* targets, int ignore_index, T* lse, double* terms, i64 rows, int c) {
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* xr = logits + r * c;
        T m = negative_infinity<T>();
        for (int j = threadIdx.x; j < c; j += blockDim.x) m = fmax(m, xr[j]);
        m = block_max(m);
        T s = (T)0;
        for (int j = threadIdx.x; j < c; j += blockDim.x) s += exp(xr[j] - m);
        s = block_sum(s);
        if (threadIdx.x == 0) {
            T l = m + log(s);
            lse[r] = l;
            int t = targets[r];
            if (t == ignore_index) terms[r] = 0;
            else if (t < 0 || t >= c) terms[r] = quiet_nan<double>();
            else terms[r] = (double)(l - xr[t]);
        }
    }
}
extern "C" __global__ void cross_entropy_rows_f32(const float* logits, const int* targets, int ignore_index, float* lse, double* terms, i64 rows, int c) { cross_entropy_rows(logits, targets, ignore_index, lse, terms, rows, c); }
extern "C" __global__ void cross_entropy_rows_f64(const double* logits, const int* targets, int ignore_index, double* lse, double* terms, i64 rows, int c) { cross_entropy_rows(logits, targets, ignore_index, lse, terms, rows, c); }

// Counts the rows whose target is not ignore_index: count [1] (one block).
extern "C" __global__ void count_targets(const int* targets, i64 rows, int ignore_index, int* count) {
    int k = 0;
    for (i64 r = threadIdx.x; r < rows; r += blockDim.x) k += targets[r] != ignore_index;
    k = block_sum(k);
    if (threadIdx.x == 0) count[0] = k;
}

// Pass 2 (one block): loss [1] = Σ terms / count, NaN when every row is ignored (as PyTorch).
template <typename T> __device__ __forceinline__ void cross_entropy_finish(const double* terms, i64 rows, const int* count, T* loss) {
    double s = 0;
    for (i64 r = threadIdx.x; r < rows; r += blockDim.x) s += terms[r];
    s = block_sum(s);
    if (threadIdx.x == 0) loss[0] = count[0] == 0 ? quiet_nan<T>() : (T)(s / count[0]);
}
extern "C" __global__ void cross_entropy_finish_f32(const double* terms, i64 rows, const int* count, float* loss) { cross_entropy_finish(terms, rows, count, loss); }
extern "C" __global__ void cross_entropy_finish_f64(const double* terms, i64 rows, const int* count, double* loss) { cross_entropy_finish(terms, rows, count, loss); }

// dlogits [rows, c] += (softmax − onehot(target)) · dloss / count for rows not ignored; with
// accumulate = 0 every element is written instead (ignored rows, or all when none counts, 0).
template <typename T>
__device__ __forceinline__ void cross_entropy_backward(const T* logits, const int* targets, int ignore_index, const T* lse, const T* dloss, const int* count, T* dlogits, i64 rows, int c, int accumulate) {
    int k = count[0];
    if (k == 0 && accumulate) return;
    T g = k == 0 ? (T)0 : dloss[0] / (T)k;
    GRID_STRIDE_LOOP(i, rows * c) {
        i64 r = i / c; int j = (int)(i % c);
        int t = targets[r];
        if (k == 0 || t == ignore_index) {
            if (!accumulate) dlogits[i] = (T)0;
            continue;
        }
        T d = g * exp(logits[i] - lse[r]);
        if (j == t) d -= g;
        dlogits[i] = accumulate ? dlogits[i] + d : d;
    }
}
extern "C" __global__ void cross_entropy_backward_f32(const float* logits, const int* targets, int ignore_index, const float* lse, const float* dloss, const int* count, float* dlogits, i64 rows, int c, int accumulate) { cross_entropy_backward(logits, targets, ignore_index, lse, dloss, count, dlogits, rows, c, accumulate); }
extern "C" __global__ void cross_entropy_backward_f64(const double* logits, const int* targets, int ignore_index, const double* lse, const double* dloss, const int* count, double* dlogits, i64 rows, int c, int accumulate) { cross_entropy_backward(logits, targets, ignore_index, lse, dloss, count, dlogits, rows, c, accumulate); }

// ---------------------------------------------------------------- mean squared error

// Pass 1 of mean((pred − target)²) over [n]: partials [gridDim.x] in float64; pass 2 is
// finish_sum in reduce.cu with factor 1/n.
template <typename T> __device__ __forceinline__ void mse_partials(const T* pred, const T* target, i64 n, double* partials) {
    double s = 0;
    GRID_STRIDE_LOOP(i, n) { T d = pred[i] - target[i]; s += (double)(d * d); }
    s = block_sum(s);
    if (threadIdx.x == 0) partials[blockIdx.x] = s;
}
extern "C" __global__ void mse_partials_f32(const float* pred, const float* target, i64 n, double* partials) { mse_partials(pred, target, n, partials); }
extern "C" __global__ void mse_partials_f64(const double* pred, const double* target, i64 n, double* partials) { mse_partials(pred, target, n, partials); }

// dpred [n] += 2 · dloss / n · (pred − target)
template <typename T> __device__ __forceinline__ void mse_backward(const T* pred, const T* target, const T* dloss, T* dpred, i64 n) {
    T g = (T)2 * dloss[0] / (T)n;
    GRID_STRIDE_LOOP(i, n) dpred[i] += g * (pred[i] - target[i]);
}
extern "C" __global__ void mse_backward_f32(const float* pred, const float* target, const float* dloss, float* dpred, i64 n) { mse_backward(pred, target, dloss, dpred, n); }
extern "C" __global__ void mse_backward_f64(const double* pred, const double* target, const double* dloss, double* dpred, i64 n) { mse_backward(pred, target, dloss, dpred, n); }

// ---------------------------------------------------------------- binary cross-entropy on logits

// Pass 1 of mean(max(x, 0) − x·y + log(1 + e^−|x|)) over [n]: partials [gridDim.x] (float64).
template <typename T> __device__ __forceinline__ void bce_partials(const T* x, const T* y, i64 n, double* partials) {
    double s = 0;
    GRID_STRIDE_LOOP(i, n) {
        T v = x[i];
        s += (double)(fmax(v, (T)0) - v * y[i] + log1p(exp(-fabs(v))));
    }
    s = block_sum(s);
    if (threadIdx.x == 0) partials[blockIdx.x] = s;
}
extern "C" __global__ void bce_partials_f32(const float* x, const float* y, i64 n, double* partials) { bce_partials(x, y, n, partials); }
extern "C" __global__ void bce_partials_f64(const double* x, const double* y, i64 n, double* partials) { bce_partials(x, y, n, partials); }

// dx [n] += (σ(x) − y) · dloss / n
template <typename T> __device__ __forceinline__ void bce_backward(const T* x, const T* y, const T* dloss, T* dx, i64 n) {
    T g = dloss[0] / (T)n;
    GRID_STRIDE_LOOP(i, n) dx[i] += g * ((T)1 / ((T)1 + exp(-x[i])) - y[i]);
}
extern "C" __global__ void bce_backward_f32(const float* x, const float* y, const float* dloss, float* dx, i64 n) { bce_backward(x, y, dloss, dx, n); }
extern "C" __global__ void bce_backward_f64(const double* x, const double* y, const double* dloss, double* dx, i64 n) { bce_backward(x, y, dloss, dx, n); }
