// attention.cu: the masked softmax of scaled dot-product attention. The products themselves are
// cuBLAS GEMMs batched over (batch, kv head) pairs (src/Kernels/AttentionGemms.cs): scores =
// scale·q·kᵀ into probs, this kernel in place on probs, o = probs·v; the backward is
// dP = dO·vᵀ, the softmax backward (softmax_loss.cu) into dS, dq += scale·dS·k,
// dk += scale·dSᵀ·q, dv += probsᵀ·dO. The probabilities [B, H, T, S] are materialised, as
// the CPU reference does.
//
// Shapes: probs [B, H, T, S]; mask null or additive [B, S] over keys; causal: query t sees keys
// s ≤ t + S − T. Keys a query cannot see get a probability of exactly 0 (a row that sees none
// is all 0, as on the CPU). Conventions (llm.c style): the kernel overwrites probs in place; the
// backward GEMMs accumulate (+=, beta 1) into dq, dk, dv. No atomics; deterministic.
#include "common.cuh"

// One block per query row (b, h, t): probs holds scale·q·k; add the mask, softmax over the
// visible keys, zero the others.
template <typename T>
__device__ __forceinline__ void attention_softmax(const T* mask, int causal, T* probs, int B, int H, int Tq, int S) {
    for (i64 row = blockIdx.x; row < (i64)B * H * Tq; row += gridDim.x) {
        int t = (int)(row % Tq), b = (int)(row / Tq / H);
        T* p = probs + row * S;
        int visible = causal ? min(S, t + S - Tq + 1) : S;
        if (visible < 0) visible = 0;
        T m = negative_infinity<T>();
        for (int s = threadIdx.x; s < visible; s += blockDim.x) {
            T score = p[s];
            if (mask) score += mask[(i64)b * S + s];
            p[s] = score;
            m = fmax(m, score);
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
    }
}
extern "C" __global__ void attention_softmax_f32(const float* mask, int causal, float* probs, int B, int H, int Tq, int S) { attention_softmax(mask, causal, probs, B, H, Tq, S); }
extern "C" __global__ void attention_softmax_f64(const double* mask, int causal, double* probs, int B, int H, int Tq, int S) { attention_softmax(mask, causal, probs, B, H, Tq, S); }
