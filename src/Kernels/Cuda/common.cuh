// common.cuh: helpers every kernel file includes (handed to NVRTC as a named header, so no
// toolkit include path is needed at run time).
//
// Conventions shared by all kernel files (llm.c style):
// - every buffer is contiguous row-major; pointers arrive already offset to the tensor's view;
// - forward kernels overwrite their outputs; backward kernels ACCUMULATE (+=) into gradients;
// - element counts and offsets are 64-bit (long long); index tensors are int32;
// - kernels are templates over the element type T (float or double) with one extern "C"
//   entry point per type, named <kernel>_f32 / <kernel>_f64;
// - reductions run in a fixed order (block tree, then a second pass over the block partials),
//   so results are deterministic run to run, unless a kernel's comment says otherwise.
// No cuda_fp16.h / cuda_bf16.h: 16-bit floats are unsigned short, converted with bit operations.
#pragma once

typedef long long i64;
typedef unsigned long long u64;

#define BLOCK 256

// The index of this thread in a 1-D grid-stride loop over n elements.
#define GRID_STRIDE_LOOP(i, n) \
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (i64)blockDim.x * gridDim.x)

// The largest rank a broadcast or permute handles (the host checks it).
#define MAX_RANK 8

// Shape and strides for broadcasting and permutes, passed by value.
struct Layout {
    int rank;
    i64 shape[MAX_RANK];    // the output's shape
    i64 stride0[MAX_RANK];  // first operand's stride along each output dim (0 where broadcast)
    i64 stride1[MAX_RANK];  // second operand's stride along each output dim (0 where broadcast)
};

// Dynamic shared memory (the launch's shared-memory bytes): EXTERN_SHARED(float, buf); declares
// float buf[]. The CPU emulator (native/cuda-emulator/cuda_emu.h, included first) has its own.
#ifndef EXTERN_SHARED
#define EXTERN_SHARED(T, name) extern __shared__ T name[]
#endif

// Sum of one value per thread over the whole block (blockDim.x a multiple of 32, at most 1024).
// Every thread receives the total. The tree has a fixed shape, so the result is deterministic.
template <typename T>
__device__ T block_sum(T v) {
    __shared__ T warp_sums[32];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    __syncthreads();                       // warp_sums may still be read by a previous call
    if (lane == 0) warp_sums[warp] = v;
    __syncthreads();
    v = lane < warps ? warp_sums[lane] : (T)0;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// −∞ of each element type (no math.h under NVRTC, so no INFINITY macro).
template <typename T> __device__ __forceinline__ T negative_infinity();
template <> __device__ __forceinline__ float negative_infinity<float>() { return __int_as_float(0xff800000); }
template <> __device__ __forceinline__ double negative_infinity<double>() { return __longlong_as_double(0xfff0000000000000ll); }

// A quiet NaN of each element type.
template <typename T> __device__ __forceinline__ T quiet_nan();
template <> __device__ __forceinline__ float quiet_nan<float>() { return __int_as_float(0x7fc00000); }
template <> __device__ __forceinline__ double quiet_nan<double>() { return __longlong_as_double(0x7ff8000000000000ll); }

// Maximum over the block, same shape as block_sum.
template <typename T>
__device__ T block_max(T v) {
    __shared__ T warp_max[32];
    for (int o = 16; o > 0; o >>= 1) v = fmax(v, __shfl_xor_sync(0xffffffffu, v, o));
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0) warp_max[warp] = v;
    __syncthreads();
    v = lane < warps ? warp_max[lane] : negative_infinity<T>();
    for (int o = 16; o > 0; o >>= 1) v = fmax(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// bfloat16 <-> float by bits: bf16 is the top half of a float32; rounding to nearest even.
__device__ __forceinline__ float bf16_to_float(unsigned short b) { return __uint_as_float(((unsigned int)b) << 16); }
__device__ __forceinline__ unsigned short float_to_bf16(float f) {
    unsigned int u = __float_as_uint(f);
    if (f != f) return (unsigned short)((u >> 16) | 0x40);          // NaN stays NaN
    return (unsigned short)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

// IEEE half <-> float by bits (no cuda_fp16.h, no PTX, so the CPU emulator compiles them too):
// rounding to nearest even as cvt.rn.f16.f32, subnormals kept, overflow to ±∞, NaN to 0x7FFF.
__device__ __forceinline__ float f16_to_float(unsigned short h) {
    unsigned int sign = (unsigned int)(h & 0x8000u) << 16, e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
    if (e == 0x1F) return __uint_as_float(sign | 0x7F800000u | (m << 13));
    if (e == 0) { float v = (float)m * (1.0f / 16777216.0f); return sign ? -v : v; }   // m·2⁻²⁴, exact
    return __uint_as_float(sign | ((e + 112) << 23) | (m << 13));
}
__device__ __forceinline__ unsigned short float_to_f16(float f) {
    unsigned int u = __float_as_uint(f), sign = (u >> 16) & 0x8000u, a = u & 0x7FFFFFFFu;
    if (a > 0x7F800000u) return (unsigned short)0x7FFF;                      // NaN
    if (a >= 0x477FF000u) return (unsigned short)(sign | 0x7C00u);           // ≥ 65520 rounds to ±∞
    if (a < 0x38800000u) {                                                   // below 2⁻¹⁴: subnormal or zero
        if (a < 0x33000000u) return (unsigned short)sign;                    // ≤ 2⁻²⁵ rounds to ±0
        unsigned int mant = (a & 0x7FFFFFu) | 0x800000u, drop = 126 - (a >> 23);  // value = mant·2^(e−150)
        unsigned int kept = mant >> drop, rest = mant & ((1u << drop) - 1u), half = 1u << (drop - 1);
        if (rest > half || (rest == half && (kept & 1u))) kept++;
        return (unsigned short)(sign | kept);
    }
    unsigned int r = a - 0x38000000u;                                        // exponent bias 127 → 15
    r += 0xFFFu + ((r >> 13) & 1u);
    return (unsigned short)(sign | (r >> 13));
}

// Counter-based random numbers, bit-identical to Engine.Rng on the host: SplitMix64's
// finaliser of seed·φ + index + constant, all in 64-bit unsigned integer arithmetic.
__device__ __forceinline__ u64 rng_mix(u64 seed, u64 index) {
    u64 z = seed * 0x9E3779B97F4A7C15ull + index + 0x632BE59BD9B4E019ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// A uniform float in [0, 1) from the top 24 bits (exact in float32), as Rng.Uniform.
__device__ __forceinline__ float rng_uniform(u64 seed, u64 index) {
    return (float)(rng_mix(seed, index) >> 40) * (1.0f / 16777216.0f);
}
