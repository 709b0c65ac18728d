// optimizer.cu: in-place parameter updates (PyTorch semantics), one thread per element.
//
// Conventions (llm.c style elsewhere: forward overwrites, backward accumulates +=): an update is
// neither, it rewrites p, m, v, buf in place; g is read only. The scalar factors that
// depend on the step (bias corrections) are computed on the host in float64 and passed in, as
// the CPU reference does. Deterministic.
#include "common.cuh"

// AdamW, all [n]:
//   p ← p·decay;  m ← β₁m + (1−β₁)g;  v ← β₂v + (1−β₂)g²;  p ← p − step_size·m / (√v / √bc₂ + eps)
// with decay = 1 − lr·wd, step_size = lr / (1 − β₁ᵗ), sqrt_bc2 = √(1 − β₂ᵗ).
template <typename T>
__device__ __forceinline__ void adamw(T* p, const T* g, T* m, T* v, i64 n, T beta1, T beta2, T eps, T decay, T step_size, T sqrt_bc2) {
    GRID_STRIDE_LOOP(i, n) {
        T gi = g[i];
        T pi = p[i] * decay;
        T mi = beta1 * m[i] + ((T)1 - beta1) * gi;
        T vi = beta2 * v[i] + ((T)1 - beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - step_size * mi / (sqrt(vi) / sqrt_bc2 + eps);
    }
}
extern "C" __global__ void adamw_f32(float* p, const float* g, float* m, float* v, i64 n, float beta1, float beta2, float eps, float decay, float step_size, float sqrt_bc2) { adamw(p, g, m, v, n, beta1, beta2, eps, decay, step_size, sqrt_bc2); }
extern "C" __global__ void adamw_f64(double* p, const double* g, double* m, double* v, i64 n, double beta1, double beta2, double eps, double decay, double step_size, double sqrt_bc2) { adamw(p, g, m, v, n, beta1, beta2, eps, decay, step_size, sqrt_bc2); }

// SGD, all [n]: d = g + wd·p; with momentum (buf not null): buf = d on the first step, else
// momentum·buf + damp·d (damp = 1 − dampening); d = nesterov ? d + momentum·buf : buf; p −= lr·d.
template <typename T>
__device__ __forceinline__ void sgd(T* p, const T* g, T* buf, i64 n, T lr, T momentum, T damp, T wd, int nesterov, int first) {
    GRID_STRIDE_LOOP(i, n) {
        T d = g[i] + wd * p[i];
        if (buf) {
            T b = first ? d : momentum * buf[i] + damp * d;
            buf[i] = b;
            d = nesterov ? d + momentum * b : b;
        }
        p[i] -= lr * d;
    }
}
extern "C" __global__ void sgd_f32(float* p, const float* g, float* buf, i64 n, float lr, float momentum, float damp, float wd, int nesterov, int first) { sgd(p, g, buf, n, lr, momentum, damp, wd, nesterov, first); }
extern "C" __global__ void sgd_f64(double* p, const double* g, double* buf, i64 n, double lr, double momentum, double damp, double wd, int nesterov, int first) { sgd(p, g, buf, n, lr, momentum, damp, wd, nesterov, first); }
