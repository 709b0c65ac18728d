// cuda_emu.h: CUDA's execution model on the CPU, for compiling the kernel files (src/Kernels/Cuda/*.cu)
// a second time as C++ (g++ -include cuda_emu.h). The kernel sources stay single-source: this header
// gives them what NVRTC gives them.
//
// - Every thread of a block is a fiber (its own stack, switched by runtime.cpp); a block's fibers run
//   one at a time on the launching thread, each until it reaches a synchronisation point:
//   __syncthreads (block barrier: every thread of the block that has not exited, at the same call site)
//   or a warp operation (__shfl_*_sync, __ballot_sync, __any/__all_sync, __syncwarp: every lane of the
//   mask arrives, then all of them see each other's values: lockstep semantics).
// - Between two synchronisation points the threads run in an order the launch chooses (blocks
//   likewise): forward (breadth first: every warp reaches a synchronisation point before any goes
//   past it), reversed (each warp runs ahead to the next block barrier before the next warp starts)
//   or a seeded shuffle of both. Results that depend on the order are a race.
// - 16-bit floats: the kernels convert with common.cuh's bit operations (round to nearest even, as
//   the device's cvt.rn), the same code under NVRTC and here.
// - Static __shared__ variables are statics gathered into one section (emu_shared) that is poisoned (0xFF bytes, NaN for
//   floats) before each block; dynamic shared memory (the launch's shared-memory bytes) is
//   EXTERN_SHARED(T, name) (common.cuh), poisoned as well.
// - Atomics are plain read-modify-writes (fibers never interleave inside one).
// - Math: the C library's float and double functions; the fast intrinsics (__expf, ...) are the
//   accurate ones. FMA contraction is off (the device contracts a·b + c where NVRTC chooses).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#define EMU_API __attribute__((visibility("default")))

// ------------------------------------------------------------------ qualifiers
#define __global__
#define __device__
#define __host__
#define __noinline__ __attribute__((noinline))
#define __forceinline__ inline
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __constant__ static const
// Static shared memory: a static variable of the kernel file; build.sh's linker script gathers the
// kernel files' zero-initialised statics into the emu_shared section, poisoned before each block.
#define __shared__ static __attribute__((aligned(16)))

struct uint3 { unsigned int x, y, z; };
struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace emu {

// The thread the kernel code is running as (set by the scheduler before it switches to a fiber).
struct ThreadState {
    uint3 index;
    unsigned int linear, warp, lane;
};
extern ThreadState* self;
extern uint3 block_index, block_dim, grid_dim;
extern unsigned char* dynamic_shared;

// Synchronisation entry points (runtime.cpp). kind names the operation for the lockstep check.
void sync_block(const char* site);
void sync_warp(unsigned int mask, int kind);
unsigned int active_lanes();
// The 8-byte exchange slot of a lane for the current warp operation (double-buffered per lane).
uint64_t* warp_slot(unsigned int lane);
void warp_flip();
[[noreturn]] void fail(const char* message);

enum WarpKind { ShflIdx = 1, ShflUp, ShflDown, ShflXor, Ballot, Any, All, SyncWarp };

// One lockstep exchange: every lane of mask publishes v, waits for the others, reads lane src's value.
template <typename T> inline T exchange(unsigned int mask, T v, int src, int kind) {
    static_assert(sizeof(T) <= 8, "warp shuffles move at most 8 bytes");
    uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    *warp_slot(self->lane) = bits;
    sync_warp(mask, kind);
    if (src != (int)self->lane && !((mask >> src) & 1u)) fail("a warp shuffle reads a lane that is not in its mask (undefined on the device)");
    T r;
    uint64_t got = *warp_slot(src);
    std::memcpy(&r, &got, sizeof(T));
    warp_flip();
    return r;
}

// The ballot of predicate over the lanes of mask (every one of them must take part).
inline unsigned int vote(unsigned int mask, int predicate, int kind) {
    *warp_slot(self->lane) = predicate != 0;
    sync_warp(mask, kind);
    unsigned int bits = 0;
    for (unsigned int l = 0; l < 32; l++)
        if (((mask >> l) & 1u) && *warp_slot(l)) bits |= 1u << l;
    warp_flip();
    return bits;
}

}  // namespace emu

#define threadIdx (emu::self->index)
#define blockIdx (emu::block_index)
#define blockDim (emu::block_dim)
#define gridDim (emu::grid_dim)
#define warpSize 32

// ------------------------------------------------------------------ synchronisation

// The call site ("file:line") identifies a barrier: every thread must wait at the same one.
#define EMU_STR2(x) #x
#define EMU_STR(x) EMU_STR2(x)
#define __syncthreads() emu::sync_block(__FILE__ ":" EMU_STR(__LINE__))
inline void __syncwarp(unsigned int mask = 0xffffffffu) { emu::sync_warp(mask, emu::SyncWarp); emu::warp_flip(); }
inline void __threadfence() {}
inline void __threadfence_block() {}

template <typename T> inline T __shfl_sync(unsigned int mask, T v, int src, int width = 32) {
    int base = (int)emu::self->lane & ~(width - 1);
    return emu::exchange(mask, v, base + (src & (width - 1)), emu::ShflIdx);
}
template <typename T> inline T __shfl_up_sync(unsigned int mask, T v, unsigned int delta, int width = 32) {
    int lane = (int)emu::self->lane, base = lane & ~(width - 1);
    int src = lane - (int)delta;
    return emu::exchange(mask, v, src < base ? lane : src, emu::ShflUp);
}
template <typename T> inline T __shfl_down_sync(unsigned int mask, T v, unsigned int delta, int width = 32) {
    int lane = (int)emu::self->lane, base = lane & ~(width - 1);
    int src = lane + (int)delta;
    return emu::exchange(mask, v, src >= base + width ? lane : src, emu::ShflDown);
}
template <typename T> inline T __shfl_xor_sync(unsigned int mask, T v, int lane_mask, int width = 32) {
    int lane = (int)emu::self->lane, base = lane & ~(width - 1);
    int src = lane ^ lane_mask;
    return emu::exchange(mask, v, (src & ~(width - 1)) != base ? lane : src, emu::ShflXor);
}
inline unsigned int __ballot_sync(unsigned int mask, int predicate) { return emu::vote(mask, predicate, emu::Ballot); }
inline int __any_sync(unsigned int mask, int predicate) { return emu::vote(mask, predicate, emu::Any) != 0; }
inline int __all_sync(unsigned int mask, int predicate) { return emu::vote(mask, predicate, emu::All) == mask; }
// The lanes of this warp that have not exited.
inline unsigned int __activemask() { return emu::active_lanes(); }

// ------------------------------------------------------------------ atomics (no fiber switch inside one)

template <typename T> inline T atomicAdd(T* p, T v) { T old = *p; *p = old + v; return old; }
template <typename T> inline T atomicSub(T* p, T v) { T old = *p; *p = old - v; return old; }
template <typename T> inline T atomicExch(T* p, T v) { T old = *p; *p = v; return old; }
template <typename T> inline T atomicMin(T* p, T v) { T old = *p; *p = v < old ? v : old; return old; }
template <typename T> inline T atomicMax(T* p, T v) { T old = *p; *p = v > old ? v : old; return old; }
template <typename T> inline T atomicAnd(T* p, T v) { T old = *p; *p = old & v; return old; }
template <typename T> inline T atomicOr(T* p, T v) { T old = *p; *p = old | v; return old; }
template <typename T> inline T atomicXor(T* p, T v) { T old = *p; *p = old ^ v; return old; }
template <typename T> inline T atomicCAS(T* p, T compare, T v) { T old = *p; if (old == compare) *p = v; return old; }
inline unsigned int atomicInc(unsigned int* p, unsigned int limit) { unsigned int old = *p; *p = old >= limit ? 0 : old + 1; return old; }

// ------------------------------------------------------------------ math

using std::abs; using std::acos; using std::asin; using std::atan; using std::atan2; using std::cbrt; using std::ceil;
using std::copysign; using std::cos; using std::cosh; using std::erf; using std::erfc; using std::exp; using std::exp2;
using std::expm1; using std::fabs; using std::floor; using std::fma; using std::fmax; using std::fmin; using std::fmod;
using std::isfinite; using std::isinf; using std::isnan; using std::ldexp; using std::lgamma; using std::log; using std::log10;
using std::log1p; using std::log2; using std::nearbyint; using std::pow; using std::round; using std::rint; using std::sin;
using std::sinh; using std::sqrt; using std::tan; using std::tanh; using std::trunc; using std::signbit;

// min/max as CUDA's overloads: both operands converted to their common type.
template <typename A, typename B> inline typename std::common_type<A, B>::type min(A a, B b) {
    typedef typename std::common_type<A, B>::type C;
    return (C)b < (C)a ? (C)b : (C)a;
}
template <typename A, typename B> inline typename std::common_type<A, B>::type max(A a, B b) {
    typedef typename std::common_type<A, B>::type C;
    return (C)a < (C)b ? (C)b : (C)a;
}

inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __sinf(float x) { return std::sin(x); }
inline float __cosf(float x) { return std::cos(x); }
inline float __tanhf(float x) { return std::tanh(x); }
inline float __powf(float x, float y) { return std::pow(x, y); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __saturatef(float x) { return x < 0.f ? 0.f : x > 1.f ? 1.f : x; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return std::sqrt(x); }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline double __fma_rn(double a, double b, double c) { return std::fma(a, b, c); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline int __float2int_rn(float x) { return (int)std::nearbyint(x); }
inline int __float2int_rz(float x) { return (int)x; }
template <typename T> inline T __ldg(const T* p) { return *p; }

inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline int __float_as_int(float f) { int i; std::memcpy(&i, &f, 4); return i; }
inline float __uint_as_float(unsigned int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline unsigned int __float_as_uint(float f) { unsigned int i; std::memcpy(&i, &f, 4); return i; }
inline double __longlong_as_double(long long i) { double d; std::memcpy(&d, &i, 8); return d; }
inline long long __double_as_longlong(double d) { long long i; std::memcpy(&i, &d, 8); return i; }

inline int __popc(unsigned int x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned int)x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline unsigned int __brev(unsigned int x) {
    x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1); x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
    x = ((x >> 4) & 0x0F0F0F0Fu) | ((x & 0x0F0F0F0Fu) << 4); x = ((x >> 8) & 0x00FF00FFu) | ((x & 0x00FF00FFu) << 8);
    return (x >> 16) | (x << 16);
}

// ------------------------------------------------------------------ kernel registration

namespace emu {

typedef void (*Invoker)(void* function, void** args);

template <typename... A, std::size_t... I>
inline void invoke_with(void (*f)(A...), void** args, std::index_sequence<I...>) {
    f(*static_cast<typename std::remove_cv<typename std::remove_reference<A>::type>::type*>(args[I])...);
}

// Calls f with its parameters read from args[i] (each the address of one argument, as cuLaunchKernel).
template <typename... A> void invoke(void* function, void** args) {
    invoke_with(reinterpret_cast<void (*)(A...)>(function), args, std::index_sequence_for<A...>{});
}

void register_kernel(const char* name, void* function, Invoker invoker, int parameters);

struct Registrar {
    template <typename... A> Registrar(const char* name, void (*f)(A...)) {
        register_kernel(name, reinterpret_cast<void*>(f), &invoke<A...>, (int)sizeof...(A));
    }
};

}  // namespace emu

// One line per extern "C" __global__ kernel, generated by build.sh after the family's source.
#define EMU_KERNEL(name) static emu::Registrar emu_registrar_##name(#name, &name);

// Dynamic shared memory: the launch's shared-memory bytes, poisoned like the static part.
#define EXTERN_SHARED(T, name) T* name = reinterpret_cast<T*>(emu::dynamic_shared)
