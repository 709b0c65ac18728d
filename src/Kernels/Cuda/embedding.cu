// embedding.cu: table lookup and its scatter-add, one-position gathers, block copies (concat,
// slice), permutes.
//
// Conventions (llm.c style): forward kernels overwrite their outputs; backward kernels (and
// copies with accumulate = 1) accumulate (+=). Every kernel here is deterministic: the
// embedding scatter-add gives each (id, column) to one thread, which adds that id's rows in token
// order (so repeated ids add in the CPU's order, no atomics).
#include "common.cuh"

// ids [n] (int32), w [vocab, d] → y [n, d] = w[ids[i], :]. An id outside the vocabulary gives a
// row of NaN (the host reference throws; a kernel cannot).
template <typename T>
__device__ __forceinline__ void embedding(const int* ids, const T* w, T* y, i64 n, int vocab, int d) {
    GRID_STRIDE_LOOP(i, n * d) {
        i64 r = i / d; int j = (int)(i % d);
        int id = ids[r];
        y[i] = (id >= 0 && id < vocab) ? w[(i64)id * d + j] : quiet_nan<T>();
    }
}
extern "C" __global__ void embedding_f32(const int* ids, const float* w, float* y, i64 n, int vocab, int d) { embedding(ids, w, y, n, vocab, d); }
extern "C" __global__ void embedding_f64(const int* ids, const double* w, double* y, i64 n, int vocab, int d) { embedding(ids, w, y, n, vocab, d); }

// dw [vocab, d] += scatter of dy [n, d] by ids [n], grouped on the host (CudaBackend.EmbeddingBackward,
// EmbeddingSegments): the tokens sorted by id (stable) in order[0..m), segment s holding the
// tokens of id seg_ids[s] at order[starts[s] .. starts[s + 1]). Block (s, column chunk) gives
// each thread one column j of one id, which adds that id's rows in token order: parallel over
// distinct ids × columns, no atomics, and the same order of additions as the CPU.
template <typename T>
__device__ __forceinline__ void embedding_backward(const int* order, const int* starts, const int* seg_ids, const T* dy, T* dw, int segments, int d) {
    int s = blockIdx.x;
    int j = blockIdx.y * blockDim.x + threadIdx.x;
    if (s >= segments || j >= d) return;
    T* out = dw + (i64)seg_ids[s] * d + j;
    T acc = *out;
    for (int r = starts[s]; r < starts[s + 1]; r++) acc += dy[(i64)order[r] * d + j];
    *out = acc;
}
extern "C" __global__ void embedding_backward_f32(const int* order, const int* starts, const int* seg_ids, const float* dy, float* dw, int segments, int d) { embedding_backward(order, starts, seg_ids, dy, dw, segments, d); }
extern "C" __global__ void embedding_backward_f64(const int* order, const int* starts, const int* seg_ids, const double* dy, double* dw, int segments, int d) { embedding_backward(order, starts, seg_ids, dy, dw, segments, d); }

// x [B, T, D], idx [B] → y [B, D] = x[b, idx[b], :]; with accumulate the direction flips:
// x[b, idx[b], :] += y[b, :] (the backward; rows of different b never overlap).
template <typename T>
__device__ __forceinline__ void gather_rows(T* x, const int* idx, T* y, int B, int Tn, int D, int accumulate) {
    GRID_STRIDE_LOOP(i, (i64)B * D) {
        int b = (int)(i / D), j = (int)(i % D);
        int p = idx[b];
        if (p < 0 || p >= Tn) { if (!accumulate) y[i] = quiet_nan<T>(); continue; }
        T* xr = x + ((i64)b * Tn + p) * D;
        if (accumulate) xr[j] += y[i]; else y[i] = xr[j];
    }
}
extern "C" __global__ void gather_rows_f32(float* x, const int* idx, float* y, int B, int Tn, int D, int accumulate) { gather_rows(x, idx, y, B, Tn, D, accumulate); }
extern "C" __global__ void gather_rows_f64(double* x, const int* idx, double* y, int B, int Tn, int D, int accumulate) { gather_rows(x, idx, y, B, Tn, D, accumulate); }

// src viewed as [outer, src_dim, inner], dst as [outer, dst_dim, inner]:
// dst[o, dst_start + i, :] (=, or += when accumulate) src[o, src_start + i, :] for i < count.
template <typename T>
__device__ __forceinline__ void copy_block(const T* src, int src_dim, int src_start, T* dst, int dst_dim, int dst_start,
                                           i64 outer, int count, i64 inner, int accumulate) {
    i64 block = (i64)count * inner;
    GRID_STRIDE_LOOP(i, outer * block) {
        i64 o = i / block, rest = i % block;
        T v = src[(o * src_dim + src_start) * inner + rest];
        T* d = dst + (o * dst_dim + dst_start) * inner + rest;
        if (accumulate) *d += v; else *d = v;
    }
}
extern "C" __global__ void copy_block_f32(const float* src, int src_dim, int src_start, float* dst, int dst_dim, int dst_start, i64 outer, int count, i64 inner, int accumulate) { copy_block(src, src_dim, src_start, dst, dst_dim, dst_start, outer, count, inner, accumulate); }
extern "C" __global__ void copy_block_f64(const double* src, int src_dim, int src_start, double* dst, int dst_dim, int dst_start, i64 outer, int count, i64 inner, int accumulate) { copy_block(src, src_dim, src_start, dst, dst_dim, dst_start, outer, count, inner, accumulate); }

// y [y shape] (=, or += when accumulate) x with permuted dims: L.shape is y's shape and
// L.stride0[d] is x's stride along y's dim d (x.strides[perm[d]]). One thread per y element.
template <typename T>
__device__ __forceinline__ void permute(const T* x, T* y, i64 n, Layout L, int accumulate) {
    GRID_STRIDE_LOOP(i, n) {
        i64 rem = i, off = 0;
        for (int d = L.rank - 1; d >= 0; d--) { off += rem % L.shape[d] * L.stride0[d]; rem /= L.shape[d]; }
        if (accumulate) y[i] += x[off]; else y[i] = x[off];
    }
}
extern "C" __global__ void permute_f32(const float* x, float* y, i64 n, Layout L, int accumulate) { permute(x, y, n, L, accumulate); }
extern "C" __global__ void permute_f64(const double* x, double* y, i64 n, Layout L, int accumulate) { permute(x, y, n, L, accumulate); }
