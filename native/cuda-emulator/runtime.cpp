// runtime.cpp: the emulator's scheduler (see cuda_emu.h for the model) and its C entry points,
// called by the CUDA backend's emulated device (src/Kernels/CudaEmulator.cs).
//
// A launch runs its blocks one after another on the calling thread (launches are serialised by a
// mutex). A block's threads are fibers; the scheduler runs every ready fiber, in the launch's order,
// until it blocks (barrier, warp operation) or exits, then releases whatever can go on: a warp
// operation once every lane of its mask waits in it (with the same mask and operation), a block
// barrier once every thread that has not exited waits at the same __syncthreads. When nothing can
// go on, the block is deadlocked (a barrier some threads never reach, a warp operation with a lane
// elsewhere) and the launch fails with a description instead of hanging.
#include "cuda_emu.h"

#include <sys/mman.h>
#include <algorithm>
#include <cstdio>
#include <mutex>
#include <string>
#include <vector>

extern "C" {
extern char __start_emu_shared[] __attribute__((weak, visibility("hidden")));
extern char __stop_emu_shared[] __attribute__((weak, visibility("hidden")));
}

namespace emu {

ThreadState* self;
uint3 block_index, block_dim, grid_dim;
unsigned char* dynamic_shared;

// ------------------------------------------------------------------ kernel registry

struct Kernel { std::string name; void* function; Invoker invoker; int parameters; };

static std::vector<Kernel>& registry() { static std::vector<Kernel> r; return r; }

void register_kernel(const char* name, void* function, Invoker invoker, int parameters) {
    registry().push_back({name, function, invoker, parameters});
}

static const Kernel* find(const char* name) {
    for (auto& k : registry()) if (k.name == name) return &k;
    return nullptr;
}

// ------------------------------------------------------------------ fibers

// x86-64 System V: save the callee-saved registers, MXCSR and the x87 control word on the current
// stack, store its pointer in *from, switch to `to` and restore the same from there.
extern "C" void emu_switch(void** from, void* to);
asm(R"(
    .text
    .p2align 4
    .type emu_switch,@function
emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_switch,.-emu_switch
)");

enum class State { Ready, AtBarrier, InWarpOp, Done };

struct Fiber {
    ThreadState ts;
    void* sp;
    char* stack;
    State state;
    const char* site;     // the __syncthreads it waits at
    unsigned int mask;    // the warp operation it waits in
    int kind;
    int phase;            // which of its warp's two exchange buffers the next warp operation uses
};

static const size_t StackBytes = 256 * 1024, GuardBytes = 4096;
static std::vector<char*> stacks;       // reused across launches (mmap'd, a guard page at the low end)
static std::vector<Fiber> fibers;
static std::vector<uint64_t> slots;      // [warp][phase][lane]
static void* scheduler_sp;
static Fiber* running;
static const Kernel* kernel;
static void** kernel_args;
static std::string failure;

static void fiber_main() {
    kernel->invoker(kernel->function, kernel_args);
    running->state = State::Done;
    emu_switch(&running->sp, scheduler_sp);
    __builtin_unreachable();
}

static void prepare(Fiber& f) {
    // The stack a fresh fiber resumes on: emu_switch's saved frame (control words, six registers)
    // returning into fiber_main, with a zero return address above it (ends a debugger's backtrace).
    uintptr_t top = (reinterpret_cast<uintptr_t>(f.stack) + StackBytes) & ~(uintptr_t)15;
    uint64_t* p = reinterpret_cast<uint64_t*>(top);
    *--p = 0;                                            // fiber_main's return address (never used)
    *--p = reinterpret_cast<uint64_t>(&fiber_main);      // emu_switch returns here
    for (int i = 0; i < 6; i++) *--p = 0;                // rbp rbx r12 r13 r14 r15
    --p;
    uint32_t mxcsr = 0x1F80;
    uint16_t fcw = 0x037F;
    std::memcpy(p, &mxcsr, 4);
    std::memcpy(reinterpret_cast<char*>(p) + 4, &fcw, 2);
    f.sp = p;
}

[[noreturn]] void fail(const char* message) {
    if (failure.empty()) failure = message;
    running->state = State::Done;
    emu_switch(&running->sp, scheduler_sp);
    __builtin_unreachable();
}

static void wait_here() { emu_switch(&running->sp, scheduler_sp); }

void sync_block(const char* site) {
    running->state = State::AtBarrier;
    running->site = site;
    wait_here();
}

void sync_warp(unsigned int mask, int kind) {
    if (!((mask >> running->ts.lane) & 1u)) fail("a warp operation's mask does not include the calling lane");
    running->state = State::InWarpOp;
    running->mask = mask;
    running->kind = kind;
    wait_here();
}

uint64_t* warp_slot(unsigned int lane) {
    return &slots[((size_t)running->ts.warp * 2 + (size_t)running->phase) * 32 + lane];
}

void warp_flip() { running->phase ^= 1; }

unsigned int active_lanes() {
    unsigned int bits = 0, first = running->ts.warp * 32;
    for (unsigned int l = 0; l < 32 && first + l < fibers.size(); l++)
        if (fibers[first + l].state != State::Done) bits |= 1u << l;
    return bits;
}

// ------------------------------------------------------------------ the scheduler

// Orders of the threads between synchronisation points, and of the blocks.
enum Order { Forward = 0, Reverse = 1, Shuffle = 2 };

static uint64_t next_random(uint64_t& s) {
    s += 0x9E3779B97F4A7C15ull;
    uint64_t z = s;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static const char* kind_name(int kind) {
    switch (kind) {
        case ShflIdx: return "__shfl_sync"; case ShflUp: return "__shfl_up_sync"; case ShflDown: return "__shfl_down_sync";
        case ShflXor: return "__shfl_xor_sync"; case Ballot: return "__ballot_sync"; case Any: return "__any_sync";
        case All: return "__all_sync"; default: return "__syncwarp";
    }
}

static std::string describe(const Fiber& f) {
    char buf[160];
    const char* what = f.state == State::AtBarrier ? "__syncthreads" : f.state == State::InWarpOp ? kind_name(f.kind) : f.state == State::Done ? "exited" : "running";
    std::snprintf(buf, sizeof buf, "thread (%u,%u,%u) %s%s%s", f.ts.index.x, f.ts.index.y, f.ts.index.z, what,
                  f.state == State::AtBarrier ? " at " : "", f.state == State::AtBarrier ? f.site : "");
    return buf;
}

// Releases the warp operations of the warp starting at thread `first` every lane of whose mask
// waits in (same mask, same operation); returns whether any was released, or sets failure for a
// lane of the mask that exited or waits in another operation.
static bool release_warp(size_t first) {
    bool released = false;
    size_t n = fibers.size();
    for (size_t i = first; i < first + 32 && i < n; i++) {
        Fiber& f = fibers[i];
        if (f.state != State::InWarpOp) continue;
        bool all = true;
        for (unsigned int l = 0; l < 32; l++) {
            if (!((f.mask >> l) & 1u)) continue;
            if (first + l >= n) { failure = "a warp operation's mask names a lane beyond the block (" + describe(f) + ")"; return false; }
            Fiber& g = fibers[first + l];
            if (g.state == State::Done) { failure = "a lane of a warp operation's mask has exited: " + describe(f) + ", " + describe(g); return false; }
            if (g.state != State::InWarpOp) { all = false; continue; }
            if (g.mask != f.mask || g.kind != f.kind) {
                failure = "lanes of one warp are in different warp operations (no lockstep): " + describe(f) + ", " + describe(g);
                return false;
            }
        }
        if (!all) continue;
        for (unsigned int l = 0; l < 32; l++)
            if ((f.mask >> l) & 1u) fibers[first + l].state = State::Ready;
        released = true;
    }
    return released;
}

static bool release_barrier() {
    const char* site = nullptr;
    bool any = false;
    for (auto& f : fibers) {
        if (f.state == State::Done) continue;
        if (f.state != State::AtBarrier) return false;
        if (site && std::strcmp(site, f.site) != 0) {
            failure = std::string("threads of one block wait at different __syncthreads: ") + site + " and " + f.site;
            return false;
        }
        site = f.site;
        any = true;
    }
    if (!any) return false;
    for (auto& f : fibers) if (f.state == State::AtBarrier) f.state = State::Ready;
    return true;
}

// Runs one block to completion (or failure). Each pass visits the warps in the order's sequence and
// runs their ready lanes, each until it blocks or exits:
// - Forward: warps and lanes ascending, one segment per warp per pass (breadth first: every warp
//   reaches a synchronisation point before any goes past it);
// - Reverse: warps and lanes descending, each warp depth first (its warp operations released at
//   once, so it runs ahead to the next block barrier before the next warp starts);
// - Shuffle: warps and lanes in a seeded random order, each warp depth first or not at random.
// Warp operations are released after a pass; a block barrier once every live thread waits at it.
static void run_block(int order, uint64_t& rng) {
    size_t n = fibers.size(), warps = (n + 31) / 32;
    std::vector<unsigned int> warp_order(warps), lane_order;
    for (size_t i = 0; i < n; i++) {
        Fiber& f = fibers[i];
        f.state = State::Ready;
        f.phase = 0;
        prepare(f);
    }
    size_t alive = n;
    while (alive > 0) {
        for (size_t w = 0; w < warps; w++) warp_order[w] = (unsigned int)w;
        if (order == Reverse) std::reverse(warp_order.begin(), warp_order.end());
        else if (order == Shuffle)
            for (size_t i = warps - 1; i > 0; i--) std::swap(warp_order[i], warp_order[next_random(rng) % (i + 1)]);
        for (unsigned int w : warp_order) {
            size_t first = (size_t)w * 32, lanes = std::min<size_t>(32, n - first);
            bool depth_first = order == Reverse || (order == Shuffle && (next_random(rng) & 1));
            do {
                lane_order.resize(lanes);
                for (size_t l = 0; l < lanes; l++) lane_order[l] = (unsigned int)(first + l);
                if (order == Reverse) std::reverse(lane_order.begin(), lane_order.end());
                else if (order == Shuffle)
                    for (size_t i = lanes - 1; i > 0; i--) std::swap(lane_order[i], lane_order[next_random(rng) % (i + 1)]);
                for (unsigned int i : lane_order) {
                    Fiber& f = fibers[i];
                    if (f.state != State::Ready) continue;
                    running = &f;
                    self = &f.ts;
                    emu_switch(&scheduler_sp, f.sp);
                    if (!failure.empty()) return;
                    if (f.state == State::Done) alive--;
                }
            } while (depth_first && release_warp(first));
            if (!failure.empty()) return;
        }
        if (alive == 0) break;
        bool released = false;
        for (size_t first = 0; first < n; first += 32) released |= release_warp(first);
        if (!failure.empty()) return;
        if (!released) released = release_barrier();
        if (!failure.empty()) return;
        if (!released) {
            std::string states;
            size_t shown = 0;
            for (auto& f : fibers)
                if (f.state != State::Done && shown++ < 4) states += (states.empty() ? "" : "; ") + describe(f);
            failure = "deadlock: no thread of the block can go on (" + states + (alive > 4 ? "; …" : "") + ")";
            return;
        }
    }
}

static std::mutex gate;

}  // namespace emu

using namespace emu;

extern "C" EMU_API int emu_kernel_count() { return (int)registry().size(); }

extern "C" EMU_API const char* emu_kernel_name(int i) {
    return i >= 0 && i < (int)registry().size() ? registry()[(size_t)i].name.c_str() : nullptr;
}

// The number of parameters of a kernel, or −1 when this library does not define it.
extern "C" EMU_API int emu_kernel_parameters(const char* name) {
    auto k = find(name);
    return k ? k->parameters : -1;
}

extern "C" EMU_API long long emu_static_shared_bytes() {
    return __start_emu_shared ? (long long)(__stop_emu_shared - __start_emu_shared) : 0;
}

// Runs one launch to completion. args[i] is the address of argument i (as cuLaunchKernel's
// kernelParams). order: 0 forward, 1 reversed, 2 shuffled by seed (threads between synchronisation
// points, and blocks). Returns 0, or 1 (unknown kernel), 2 (launch configuration beyond sm_90's
// limits) or 3 (the kernel failed: deadlock, divergence, a bad warp operation) with a message.
extern "C" EMU_API int emu_launch(const char* name, unsigned int gx, unsigned int gy, unsigned int gz,
                                  unsigned int bx, unsigned int by, unsigned int bz, unsigned int shared_bytes,
                                  void** args, int order, unsigned long long seed, char* message, int capacity) {
    std::lock_guard<std::mutex> lock(gate);
    auto report = [&](int code, const std::string& text) {
        if (message && capacity > 0) std::snprintf(message, (size_t)capacity, "%s", text.c_str());
        return code;
    };
    kernel = find(name);
    if (!kernel) return report(1, std::string("the emulator defines no kernel ") + name);
    // sm_90: blocks up to 1024 × 1024 × 64 and 1024 threads; grids up to (2³¹−1) × 65535 × 65535;
    // 48 KiB of shared memory per block without an opt-in attribute (static plus dynamic).
    unsigned long long threads = (unsigned long long)bx * by * bz;
    if (bx == 0 || by == 0 || bz == 0 || bx > 1024 || by > 1024 || bz > 64 || threads > 1024)
        return report(2, "block " + std::to_string(bx) + "×" + std::to_string(by) + "×" + std::to_string(bz) + " exceeds sm_90's limits (1024 × 1024 × 64, 1024 threads)");
    if (gx == 0 || gy == 0 || gz == 0 || gx > 2147483647u || gy > 65535 || gz > 65535)
        return report(2, "grid " + std::to_string(gx) + "×" + std::to_string(gy) + "×" + std::to_string(gz) + " exceeds sm_90's limits ((2³¹−1) × 65535 × 65535)");
    long long static_shared = emu_static_shared_bytes();
    if (static_shared + shared_bytes > 48 * 1024)
        return report(2, std::to_string(static_shared) + " bytes of static and " + std::to_string(shared_bytes) + " of dynamic shared memory exceed 48 KiB");

    // Fibers, their stacks and the warps' exchange slots for this block shape.
    while (stacks.size() < threads) {
        void* m = mmap(nullptr, StackBytes + GuardBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED) return report(3, "could not map a fiber stack");
        mprotect(m, GuardBytes, PROT_NONE);
        stacks.push_back(static_cast<char*>(m) + GuardBytes);
    }
    fibers.assign(threads, Fiber{});
    for (unsigned int z = 0, i = 0; z < bz; z++)
        for (unsigned int y = 0; y < by; y++)
            for (unsigned int x = 0; x < bx; x++, i++) {
                Fiber& f = fibers[i];
                f.ts.index = {x, y, z};
                f.ts.linear = i;
                f.ts.warp = i / 32;
                f.ts.lane = i % 32;
                f.stack = stacks[i];
            }
    slots.assign((threads + 31) / 32 * 2 * 32, 0);
    std::vector<unsigned char> dynamic(shared_bytes + 16);
    dynamic_shared = reinterpret_cast<unsigned char*>((reinterpret_cast<uintptr_t>(dynamic.data()) + 15) & ~(uintptr_t)15);
    kernel_args = args;
    failure.clear();
    block_dim = {bx, by, bz};
    grid_dim = {gx, gy, gz};

    // Blocks in order, reversed, or an affine permutation (a·i + c mod count, a coprime to count).
    unsigned __int128 count = (unsigned __int128)gx * gy * gz;
    uint64_t rng = seed * 0x2545F4914F6CDD1Dull + 1;
    unsigned long long a = 1, c = 0;
    if (order == Shuffle && count > 1) {
        auto gcd = [](unsigned __int128 p, unsigned __int128 q) { while (q) { auto t = p % q; p = q; q = t; } return p; };
        do a = next_random(rng) % (unsigned long long)count; while (a == 0 || gcd(a, count) != 1);
        c = next_random(rng) % (unsigned long long)count;
    }
    for (unsigned __int128 i = 0; i < count; i++) {
        unsigned __int128 b = order == Reverse ? count - 1 - i : order == Shuffle ? (a * i + c) % count : i;
        block_index = {(unsigned int)(b % gx), (unsigned int)(b / gx % gy), (unsigned int)(b / gx / gy)};
        if (emu_static_shared_bytes() > 0) std::memset(__start_emu_shared, 0xFF, (size_t)emu_static_shared_bytes());
        std::memset(dynamic_shared, 0xFF, shared_bytes);
        run_block(order, rng);
        if (!failure.empty()) {
            char where[96];
            std::snprintf(where, sizeof where, " (block (%u,%u,%u))", block_index.x, block_index.y, block_index.z);
            return report(3, failure + where);
        }
    }
    return report(0, "");
}
