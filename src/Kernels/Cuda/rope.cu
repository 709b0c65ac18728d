// rope.cu: rotary position embedding, rotate-half convention (Llama, GPT-NeoX).
//
// Shapes: x, y [B, H, T, D] (D even, half = D/2); cos, sin [T, D] or, per batch, [B, T, D].
// Forward, per pair (j, j + half):   y₁ = x₁·c₁ − x₂·s₁,   y₂ = x₂·c₂ + x₁·s₂   (overwrites y).
// Transpose (the backward, x = dy):  y₁ += x₁·c₁ + x₂·s₂,  y₂ += x₂·c₂ − x₁·s₁  (accumulates).
// Conventions (llm.c style): forward overwrites, backward accumulates. One thread per pair;
// deterministic.
#include "common.cuh"

template <typename T>
__device__ __forceinline__ void rope(const T* x, const T* cos, const T* sin, T* y, int B, int H, int Tn, int D, int per_batch, int transpose) {
    int half = D / 2;
    GRID_STRIDE_LOOP(i, (i64)B * H * Tn * half) {
        int j = (int)(i % half);
        i64 item = i / half;                       // (b, h, t) row
        int t = (int)(item % Tn), b = (int)(item / Tn / H);
        i64 tab = ((per_batch ? (i64)b * Tn : 0) + t) * D;
        const T* c = cos + tab; const T* s = sin + tab;
        const T* xr = x + item * D; T* yr = y + item * D;
        T x1 = xr[j], x2 = xr[j + half];
        if (transpose) {
            yr[j] += x1 * c[j] + x2 * s[j + half];
            yr[j + half] += x2 * c[j + half] - x1 * s[j];
        } else {
            yr[j] = x1 * c[j] - x2 * s[j];
            yr[j + half] = x2 * c[j + half] + x1 * s[j + half];
        }
    }
}
extern "C" __global__ void rope_f32(const float* x, const float* cos, const float* sin, float* y, int B, int H, int Tn, int D, int per_batch, int transpose) { rope(x, cos, sin, y, B, H, Tn, D, per_batch, transpose); }
extern "C" __global__ void rope_f64(const double* x, const double* cos, const double* sin, double* y, int B, int H, int Tn, int D, int per_batch, int transpose) { rope(x, cos, sin, y, B, H, Tn, D, per_batch, transpose); }
