// attention.cu: scaled dot-product attention with a padding mask, causal masking and
// grouped-query heads, forward and backward. A straightforward formulation (correctness
// first): the probabilities [B, H, T, S] are materialised, as the CPU reference does.
//
// Shapes: q [B, H, T, D]; k, v [B, Hkv, S, D] with H a multiple of Hkv (query head h reads kv
// head h / (H/Hkv)); mask null or additive [B, S]; causal: query t sees keys s ≤ t + S − T;
// o [B, H, T, D]; probs [B, H, T, S] (exactly 0 for keys a causal query cannot see).
//
// Conventions (llm.c style): the forward overwrites o and probs; the backward kernels
// accumulate (+=) into dq, dk, dv. No atomics: dk and dv are summed over the query heads of a
// group and over query positions by one thread per output element, in a fixed order, so
// every kernel here is deterministic.
#include "common.cuh"

// One block per query row (b, h, t). Scores go into probs, then an in-place masked softmax,
// then o[d] = Σ_s p[s]·v[s, d] with one thread per d.
template <typename T>
__device__ __forceinline__ void attention_forward(const T* q, const T* k, const T* v, const T* mask, int causal, T scale,
                                                  T* o, T* probs, int B, int H, int Tq, int D, int Hkv, int S) {
    int group = H / Hkv;
    for (i64 row = blockIdx.x; row < (i64)B * H * Tq; row += gridDim.x) {
        int t = (int)(row % Tq), h = (int)(row / Tq % H), b = (int)(row / Tq / H);
        int kvh = h / group;
        const T* qr = q + row * D;
        const T* kb = k + ((i64)b * Hkv + kvh) * S * D;
        const T* vb = v + ((i64)b * Hkv + kvh) * S * D;
        T* p = probs + row * S;
        int visible = causal ? min(S, t + S - Tq + 1) : S;
        if (visible < 0) visible = 0;

        T m = negative_infinity<T>();
        for (int s = threadIdx.x; s < S; s += blockDim.x) {
            if (s < visible) {
                T score = (T)0;
                for (int d = 0; d < D; d++) score += qr[d] * kb[(i64)s * D + d];
                score *= scale;
                if (mask) score += mask[(i64)b * S + s];
                p[s] = score;
                m = fmax(m, score);
            }
        }
        m = block_max(m);
        T sum = (T)0;
        for (int s = threadIdx.x; s < S; s += blockDim.x) {
            if (s < visible) { T e = exp(p[s] - m); p[s] = e; sum += e; }
            else p[s] = (T)0;
        }
        sum = block_sum(sum);
        for (int s = threadIdx.x; s < visible; s += blockDim.x) p[s] = p[s] / sum;
        __syncthreads();
        for (int d = threadIdx.x; d < D; d += blockDim.x) {
            T acc = (T)0;
            for (int s = 0; s < visible; s++) acc += p[s] * vb[(i64)s * D + d];
            o[row * D + d] = acc;
        }
        __syncthreads();
    }
}
extern "C" __global__ void attention_forward_f32(const float* q, const float* k, const float* v, const float* mask, int causal, float scale, float* o, float* probs, int B, int H, int Tq, int D, int Hkv, int S) { attention_forward(q, k, v, mask, causal, scale, o, probs, B, H, Tq, D, Hkv, S); }
extern "C" __global__ void attention_forward_f64(const double* q, const double* k, const double* v, const double* mask, int causal, double scale, double* o, double* probs, int B, int H, int Tq, int D, int Hkv, int S) { attention_forward(q, k, v, mask, causal, scale, o, probs, B, H, Tq, D, Hkv, S); }

// Backward step 1, one block per query row: with dp[s] = dO·v[s] and P the probabilities,
// dscores [B, H, T, S] = scale · P ⊙ (dp − Σ_s P·dp) (overwritten: a scratch buffer).
template <typename T>
__device__ __forceinline__ void attention_backward_scores(const T* v, const T* probs, const T* dO, T scale, T* dscores,
                                                          int B, int H, int Tq, int D, int Hkv, int S) {
    int group = H / Hkv;
    for (i64 row = blockIdx.x; row < (i64)B * H * Tq; row += gridDim.x) {
        int h = (int)(row / Tq % H), b = (int)(row / Tq / H);
        const T* vb = v + ((i64)b * Hkv + h / group) * S * D;
        const T* p = probs + row * S;
        const T* g = dO + row * D;
        T* ds = dscores + row * S;
        T dot = (T)0;
        for (int s = threadIdx.x; s < S; s += blockDim.x) {
            T dp = (T)0;
            if (p[s] != (T)0) for (int d = 0; d < D; d++) dp += g[d] * vb[(i64)s * D + d];
            ds[s] = dp;
            dot += p[s] * dp;
        }
        dot = block_sum(dot);
        for (int s = threadIdx.x; s < S; s += blockDim.x) ds[s] = p[s] * (ds[s] - dot) * scale;
        __syncthreads();
    }
}
extern "C" __global__ void attention_backward_scores_f32(const float* v, const float* probs, const float* dO, float scale, float* dscores, int B, int H, int Tq, int D, int Hkv, int S) { attention_backward_scores(v, probs, dO, scale, dscores, B, H, Tq, D, Hkv, S); }
extern "C" __global__ void attention_backward_scores_f64(const double* v, const double* probs, const double* dO, double scale, double* dscores, int B, int H, int Tq, int D, int Hkv, int S) { attention_backward_scores(v, probs, dO, scale, dscores, B, H, Tq, D, Hkv, S); }

// Backward step 2: dq [B, H, T, D] += dscores · k. One thread per element of dq.
template <typename T>
__device__ __forceinline__ void attention_backward_query(const T* k, const T* dscores, T* dq, int B, int H, int Tq, int D, int Hkv, int S) {
    int group = H / Hkv;
    GRID_STRIDE_LOOP(i, (i64)B * H * Tq * D) {
        int d = (int)(i % D);
        i64 row = i / D;
        int h = (int)(row / Tq % H), b = (int)(row / Tq / H);
        const T* kb = k + ((i64)b * Hkv + h / group) * S * D;
        const T* ds = dscores + row * S;
        T acc = (T)0;
        for (int s = 0; s < S; s++) acc += ds[s] * kb[(i64)s * D + d];
        dq[i] += acc;
    }
}
extern "C" __global__ void attention_backward_query_f32(const float* k, const float* dscores, float* dq, int B, int H, int Tq, int D, int Hkv, int S) { attention_backward_query(k, dscores, dq, B, H, Tq, D, Hkv, S); }
extern "C" __global__ void attention_backward_query_f64(const double* k, const double* dscores, double* dq, int B, int H, int Tq, int D, int Hkv, int S) { attention_backward_query(k, dscores, dq, B, H, Tq, D, Hkv, S); }

// Backward step 3, one thread per element (b, kvh, s, d) of the kv gradients, summing over the
// query heads of its group and over query positions t:
//   dk [B, Hkv, S, D] += Σ_{h, t} dscores[b, h, t, s] · q[b, h, t, d]
//   dv [B, Hkv, S, D] += Σ_{h, t} probs[b, h, t, s] · dO[b, h, t, d]
// Either gradient may be null.
template <typename T>
__device__ __forceinline__ void attention_backward_key_value(const T* q, const T* probs, const T* dO, const T* dscores, T* dk, T* dv,
                                                             int B, int H, int Tq, int D, int Hkv, int S) {
    int group = H / Hkv;
    GRID_STRIDE_LOOP(i, (i64)B * Hkv * S * D) {
        int d = (int)(i % D), s = (int)(i / D % S), kvh = (int)(i / D / S % Hkv), b = (int)(i / D / S / Hkv);
        T ak = (T)0, av = (T)0;
        for (int h = kvh * group; h < (kvh + 1) * group; h++) {
            for (int t = 0; t < Tq; t++) {
                i64 row = ((i64)b * H + h) * Tq + t;
                if (dk) ak += dscores[row * S + s] * q[row * D + d];
                if (dv) av += probs[row * S + s] * dO[row * D + d];
            }
        }
        if (dk) dk[i] += ak;
        if (dv) dv[i] += av;
    }
}
extern "C" __global__ void attention_backward_key_value_f32(const float* q, const float* probs, const float* dO, const float* dscores, float* dk, float* dv, int B, int H, int Tq, int D, int Hkv, int S) { attention_backward_key_value(q, probs, dO, dscores, dk, dv, B, H, Tq, D, Hkv, S); }
extern "C" __global__ void attention_backward_key_value_f64(const double* q, const double* probs, const double* dO, const double* dscores, double* dk, double* dv, int B, int H, int Tq, int D, int Hkv, int S) { attention_backward_key_value(q, probs, dO, dscores, dk, dv, B, H, Tq, D, Hkv, S); }
