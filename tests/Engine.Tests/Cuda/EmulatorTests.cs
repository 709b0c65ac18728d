using System.Diagnostics;
using System.Runtime.InteropServices;
using Engine.Backend;
using Engine.Kernels;
using Engine.Optim;
using NUnit.Framework;

namespace Engine.Tests.Cuda;

/// <summary>
/// The CUDA emulator itself (native/cuda-emulator, docs/cuda.md): every kernel runs on it and
/// matches the CPU; its execution model behaves as CUDA's (warp shuffles, votes, shared memory,
/// barriers, limits); and it catches planted bugs: a kernel file rebuilt with an off-by-one in
/// the block reduction fails the parity check, and with a barrier removed fails the race check.
/// </summary>
public class EmulatorTests
{
    /// <summary>The repository (for build.sh and the kernel sources), or Ignore when the tests run from a bundle.</summary>
    private static string Repository()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Engine.sln"))) dir = dir.Parent;
        if (dir is null) Assert.Ignore("not run from a source tree (native/cuda-emulator/build.sh is needed)");
        return dir!.FullName;
    }

    /// <summary>Builds an emulator library from <paramref name="files"/> (name → source) written to a
    /// temporary folder with the kernel folder's common.cuh unless given; builds every .cu among them.</summary>
    private static EmulatorLibrary Build(TempFolder temp, string name, Dictionary<string, string> files)
    {
        CudaTestSupport.Emulated(); // skips (or fails in CI) when the emulator cannot be built here
        var root = Repository();
        var dir = Directory.CreateDirectory(Path.Combine(temp.Path, name)).FullName;
        if (!files.ContainsKey("common.cuh")) files["common.cuh"] = KernelSources.Header;
        foreach (var (file, text) in files) File.WriteAllText(Path.Combine(dir, file), text);
        var output = Path.Combine(dir, "lib" + name + ".so");
        var psi = new ProcessStartInfo("bash") { RedirectStandardError = true, RedirectStandardOutput = true };
        psi.ArgumentList.Add(Path.Combine(root, "native", "cuda-emulator", "build.sh"));
        psi.ArgumentList.Add(output);
        foreach (var cu in files.Keys.Where(f => f.EndsWith(".cu"))) psi.ArgumentList.Add(Path.Combine(dir, cu));
        psi.Environment["CUDA_EMULATOR_FLAGS"] = "-O1 -g";
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        Assert.That(p.ExitCode, Is.Zero, err.Result);
        return EmulatorLibrary.Load(output);
    }

    /// <summary>A kernel file with one planted change (the text must occur exactly once).</summary>
    private static string Planted(string source, string find, string replace)
    {
        int at = source.IndexOf(find, StringComparison.Ordinal);
        Assert.That(at, Is.GreaterThanOrEqualTo(0), $"'{find}' not in the source");
        Assert.That(source.IndexOf(find, at + 1, StringComparison.Ordinal), Is.LessThan(0), $"'{find}' occurs more than once");
        return source[..at] + replace + source[(at + find.Length)..];
    }

    /// <summary>A backend on cuda:11 whose kernels come from the default build, overridden by <paramref name="variant"/>.</summary>
    private static CudaBackend BackendWith(EmulatorLibrary? variant, params ThreadOrder[] orders)
    {
        var libraries = CudaTestSupport.Emulated().Emulator!.Libraries.ToList();
        if (variant is not null) libraries.Add(variant);
        var backend = new CudaBackend(CudaDevice.Emulated(new CudaEmulator(libraries, orders.Length > 0 ? orders : CudaTestSupport.RaceCheck), 11), Device.Cuda(11));
        Backends.Register(backend);
        return backend;
    }

    // ------------------------------------------------------------- every kernel, against the CPU

    [Test]
    public void EveryKernelRunsAndMatchesTheCpu()
    {
        var gpu = BackendWith(null);
        var device = gpu.Device;
        foreach (var entry in OpCatalog.All)
        {
            var f32 = CudaParity.Check(entry, 1, device);
            Assert.That(f32.Passed, $"{entry.Name} F32: forward {f32.ForwardError}, gradients {f32.GradientError} ({f32.Case}) {f32.Error}");
            // Float64 kernels against the float64 CPU: the same formulas, other summation orders.
            var f64 = CudaParity.Check(entry, 1, device, 1e-10, DType.F64);
            Assert.That(f64.Passed, $"{entry.Name} F64: forward {f64.ForwardError}, gradients {f64.GradientError} ({f64.Case}) {f64.Error}");
        }

        // Rows longer than a block (each thread loops) and losses over many classes.
        var rng = new Random(4);
        foreach (var dtype in new[] { DType.F32, DType.F64 })
        {
            double tolerance = dtype == DType.F32 ? 1e-5 : 1e-12;
            var x = Tensor.Randn([3, 700], rng, dtype);
            var w = Tensor.Randn([700], rng, dtype);
            var b = Tensor.Randn([700], rng, dtype);
            var targets = Tensor.FromArray([5, 699, 0], 3);
            foreach (var (name, f) in new (string, Func<Tensor, Tensor, Tensor, Tensor, Tensor>)[]
                     {
                         ("softmax", (x, w, b, t) => Ops.Softmax(x)), ("layer_norm", (x, w, b, t) => Ops.LayerNorm(x, w, b)),
                         ("rms_norm", (x, w, b, t) => Ops.RmsNorm(x, w)), ("sum", (x, w, b, t) => Ops.Sum(x)),
                         ("cross_entropy", (x, w, b, t) => Ops.CrossEntropy(x, t)),
                     })
            {
                var onCpu = f(x, w, b, targets).ToDoubleArray();
                var onGpu = f(x.To(device), w.To(device), b.To(device), targets.To(device)).ToDoubleArray();
                Assert.That(CudaParity.Error(onGpu, onCpu), Is.LessThanOrEqualTo(tolerance), $"{name} {dtype}");
            }
            Assert.That(gpu.SumSquares(x.To(device)), Is.EqualTo(Backends.Cpu.SumSquares(x)).Within(1e-9).Percent);
            var shifted = x.To(device);
            gpu.AddScalar(shifted, 0.5);
            Backends.Cpu.AddScalar(x, 0.5);
            Assert.That(CudaParity.Error(shifted.ToDoubleArray(), x.ToDoubleArray()), Is.Zero, $"add_scalar {dtype}");
            var f64 = Tensor.Empty([7], DType.F64, device);
            gpu.Fill(f64, -1.25);
            Assert.That(f64.ToDoubleArray(), Is.All.EqualTo(-1.25));

            // Optimizers, the F64 kernels too.
            var p = Tensor.Randn([300], rng, dtype); var g = Tensor.Randn([300], rng, dtype);
            var (m, v, buf) = (Tensor.Zeros([300], dtype), Tensor.Zeros([300], dtype), Tensor.Zeros([300], dtype));
            var (pg, gg, mg, vg, bg) = (p.To(device), g.To(device), m.To(device), v.To(device), buf.To(device));
            for (int step = 1; step <= 3; step++)
            {
                Backends.Cpu.AdamW(p, g, m, v, 1e-2, 0.9, 0.999, 1e-8, 0.01, step);
                gpu.AdamW(pg, gg, mg, vg, 1e-2, 0.9, 0.999, 1e-8, 0.01, step);
                Backends.Cpu.Sgd(p, g, buf, 1e-2, 0.9, 0.1, 0.01, step == 2, step == 1);
                gpu.Sgd(pg, gg, bg, 1e-2, 0.9, 0.1, 0.01, step == 2, step == 1);
            }
            Assert.That(CudaParity.Error(pg.ToDoubleArray(), p.ToDoubleArray()), Is.LessThanOrEqualTo(1e-6), $"optimizers {dtype}");
        }

        // The dropout hash and the bf16 GEMM path (pack_bf16, the emulated cublasGemmStridedBatchedEx).
        var draws = gpu.UniformDraws(42, 100);
        for (int i = 0; i < draws.Length; i++) Assert.That(draws[i], Is.EqualTo(Rng.Uniform(42UL, (ulong)i)));
        var a = Tensor.Randn([5, 9], rng); var bb = Tensor.Randn([9, 4], rng);
        using (MixedPrecision.Bf16())
        {
            var cpu = Ops.MatMul(a, bb).ToDoubleArray();
            var cuda = Ops.MatMul(a.To(device), bb.To(device)).ToDoubleArray();
            Assert.That(CudaParity.Error(cuda, cpu), Is.LessThanOrEqualTo(1e-5), "bf16 GEMM");
        }

        CastsRoundAsTheDevice(gpu);

        var declared = KernelSources.Families.SelectMany(KernelSources.DeclaredKernels).ToHashSet();
        Assert.That(declared.Except(gpu.Emulator!.Launched), Is.Empty, "kernels no test ran");
    }

    /// <summary>Every pair of element types through the cast kernel, against the host's conversions:
    /// bf16 and f16 bit for bit (round to nearest even, subnormals, overflow, infinities, NaN).</summary>
    private static void CastsRoundAsTheDevice(CudaBackend gpu)
    {
        float[] values =
        [
            0f, -0f, 1f, -2.5f, 1.00390625f, 1.01171875f, 65504f, 65519.99f, 65520f, 1e6f, -1e6f, 6.1035156e-05f, 5.9604645e-08f,
            2.9802322e-08f, 2.9802326e-08f, 1.7881393e-07f, 3e-39f, float.MaxValue, float.PositiveInfinity, float.NegativeInfinity,
            float.NaN, 3.1415927f, -0.33333334f, 1.0000001f, 255.5f,
        ];
        var host = Tensor.FromArray(values, values.Length);
        var onGpu = host.To(gpu.Device);
        ushort[] Bits(DType type)
        {
            var d = Tensor.Empty([values.Length], type, gpu.Device);
            gpu.Cast(onGpu, d);
            var back = Tensor.Empty([values.Length], type);
            gpu.Copy(d, back);
            return back.Span<ushort>().ToArray();
        }
        var f16 = Bits(DType.F16);
        var bf16 = Bits(DType.BF16);
        for (int i = 0; i < values.Length; i++)
        {
            var want = (Half)values[i];
            if (Half.IsNaN(want)) Assert.That(Half.IsNaN(BitConverter.UInt16BitsToHalf(f16[i])), $"f16 of {values[i]}");
            else Assert.That(f16[i], Is.EqualTo(BitConverter.HalfToUInt16Bits(want)), $"f16 of {values[i]:R}");
            if (float.IsNaN(values[i])) Assert.That(float.IsNaN(HalfBits.Bf16ToFloat(bf16[i])));
            else Assert.That(bf16[i], Is.EqualTo(HalfBits.FloatToBf16(values[i])), $"bf16 of {values[i]:R}");
        }
        // Back up to float32 and through every other type: the CPU's cast of the same values.
        foreach (var type in new[] { DType.F64, DType.BF16, DType.F16, DType.I32, DType.I64 })
        {
            var finite = Tensor.FromArray(values.Where(v => float.IsFinite(v) && Math.Abs(v) < 1e6f).ToArray(), values.Count(v => float.IsFinite(v) && Math.Abs(v) < 1e6f));
            var cpu = Tensor.Empty(finite.ShapeArray, type);
            Backends.Cpu.Cast(finite, cpu);
            var d = Tensor.Empty(finite.ShapeArray, type, gpu.Device);
            gpu.Cast(finite.To(gpu.Device), d);
            var round = Tensor.Empty(finite.ShapeArray, DType.F32, gpu.Device);
            gpu.Cast(d, round);
            var cpuRound = Tensor.Empty(finite.ShapeArray, DType.F32);
            Backends.Cpu.Cast(cpu, cpuRound);
            Assert.That(round.ToFloatArray(), Is.EqualTo(cpuRound.ToFloatArray()), $"F32 → {type} → F32");
        }
    }

    // ------------------------------------------------------------- planted bugs

    [Test]
    public void AnOffByOneInTheBlockReductionFailsTheParityCheck()
    {
        using var temp = new TempFolder();
        var broken = Build(temp, "off_by_one", new()
        {
            ["common.cuh"] = Planted(KernelSources.Header, "v = lane < warps ? warp_sums[lane] : (T)0;", "v = lane <= warps ? warp_sums[lane] : (T)0;"),
            ["reduce.cu"] = KernelSources.Source("reduce"),
        });
        var sum = OpCatalog.Find("sum")!;
        var good = CudaParity.Check(sum, 1, BackendWith(null).Device);
        Assert.That(good.Passed, $"{good.ForwardError} {good.Error}");
        var bad = CudaParity.Check(sum, 1, BackendWith(broken).Device);
        Assert.That(bad.Passed, Is.False, "the parity check should catch the off-by-one (it reads the poisoned warp_sums[warps])");
    }

    [Test]
    public void ARemovedBarrierFailsTheRaceCheck()
    {
        using var temp = new TempFolder();
        // block_sum's first barrier keeps a second call's writes to warp_sums away from lanes still
        // reading the first call's (layer norm sums twice: the mean, then the variance).
        var broken = Build(temp, "no_barrier", new()
        {
            ["common.cuh"] = Planted(KernelSources.Header, "__syncthreads();                       // warp_sums may still be read by a previous call", ""),
            ["norm.cu"] = KernelSources.Source("norm"),
        });
        var rng = new Random(3);
        var (x, w, b) = (Tensor.Randn([4, 200], rng), Tensor.Randn([200], rng), Tensor.Randn([200], rng));
        Tensor Run(CudaBackend gpu) => Ops.LayerNorm(x.To(gpu.Device), w.To(gpu.Device), b.To(gpu.Device));

        var e = Assert.Throws<EngineException>(() => Run(BackendWith(broken)))!;
        Assert.That(e.Message, Does.Contain("race in layer_norm_f32"));
        // In one order (breadth first, every warp reaching the barrier before any goes on) the bug is invisible:
        var forward = Run(BackendWith(broken, ThreadOrder.Forward)).ToDoubleArray();
        Assert.That(CudaParity.Error(forward, Ops.LayerNorm(x, w, b).ToDoubleArray()), Is.LessThanOrEqualTo(1e-5));
        Assert.That(() => Run(BackendWith(null)).ToDoubleArray(), Throws.Nothing, "the real kernel passes the race check");
    }

    // ------------------------------------------------------------- the execution model

    private const string Probe = """
        #include "common.cuh"
        // out [gridDim.x, blockDim.x, 8]: shuffles (index, up and down within segments, xor) and votes.
        extern "C" __global__ void warp_ops(int* out) {
            int t = threadIdx.x, lane = t & 31;
            int* o = out + (blockIdx.x * blockDim.x + t) * 8;
            o[0] = __shfl_sync(0xffffffffu, t, 3);
            o[1] = __shfl_up_sync(0xffffffffu, t, 1, 16);
            o[2] = __shfl_down_sync(0xffffffffu, t, 2, 8);
            o[3] = __shfl_xor_sync(0xffffffffu, t, 5);
            o[4] = (int)__ballot_sync(0xffffffffu, lane % 3 == 0);
            o[5] = __any_sync(0xffffffffu, t == 40);
            o[6] = __all_sync(0xffffffffu, lane < 31);
            o[7] = (int)(blockIdx.x * 1000 + gridDim.x * 100 + blockDim.x);
        }
        // Static and dynamic shared memory, a barrier and an atomic counter per block:
        // out[b·64 + t] = tile[63 − t] + dyn[(t + 1) % 64]; out[grid·64 + b] = threads counted.
        extern "C" __global__ void shared_memory(float* out) {
            __shared__ float tile[64];
            __shared__ int counter;
            EXTERN_SHARED(float, dyn);
            int t = threadIdx.x;
            if (t == 0) counter = 0;
            tile[t] = (float)t;
            dyn[t] = 2.0f * t;
            __syncthreads();
            atomicAdd(&counter, 1);
            out[blockIdx.x * 64 + t] = tile[63 - t] + dyn[(t + 1) % 64];
            __syncthreads();
            if (t == 0) out[gridDim.x * 64 + blockIdx.x] = (float)counter;
        }
        // Bugs the emulator must report:
        extern "C" __global__ void unsynchronised(int* out) {   // reads a neighbour's write without a barrier
            __shared__ int s[64];
            s[threadIdx.x] = (int)threadIdx.x;
            out[threadIdx.x] = s[63 - threadIdx.x];
        }
        extern "C" __global__ void uninitialised(float* out) {  // shared memory nobody wrote
            __shared__ float s[32];
            out[threadIdx.x] = s[threadIdx.x];
        }
        extern "C" __global__ void divergent_barrier(int* out) {
            if (threadIdx.x < 32) __syncthreads();
            else __syncthreads();
            out[threadIdx.x] = 1;
        }
        extern "C" __global__ void missing_lane(int* out) {     // half the warp skips the shuffle
            if (threadIdx.x & 1) out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1, 1);
        }
        extern "C" __global__ void past_the_end(int* out, int n) {
            out[n + threadIdx.x] = 1;
        }
        """;

    private static EmulatorLibrary ProbeLibrary(TempFolder temp) => Build(temp, "probe", new() { ["probe.cu"] = Probe });

    private static unsafe void Launch<T>(EmulatorLibrary library, string kernel, uint grid, uint block, T[] output, ThreadOrder order = ThreadOrder.Forward, uint shared = 0, int extra = 0)
        where T : unmanaged
    {
        fixed (T* o = output)
        {
            var args = stackalloc void*[2];
            T* pointer = o;
            args[0] = &pointer;
            args[1] = &extra;
            library.Launch(kernel, grid, 1, 1, block, 1, 1, shared, args, order, 7);
        }
    }

    [Test]
    public void WarpShufflesAndVotesFollowCuda()
    {
        using var temp = new TempFolder();
        var lib = ProbeLibrary(temp);
        foreach (var order in Enum.GetValues<ThreadOrder>())
        {
            var all = new int[2 * 64 * 8];
            Launch(lib, "warp_ops", 2, 64, all, order);
            for (int block = 0; block < 2; block++)
            for (int t = 0; t < 64; t++)
            {
                var o = all.AsSpan(block * 64 * 8);
                int lane = t & 31, warp = t & ~31;
                Assert.That(o[t * 8 + 0], Is.EqualTo(warp + 3), $"__shfl_sync, thread {t}");
                Assert.That(o[t * 8 + 1], Is.EqualTo(lane % 16 == 0 ? t : t - 1), $"__shfl_up_sync width 16, thread {t}");
                Assert.That(o[t * 8 + 2], Is.EqualTo(lane % 8 >= 6 ? t : t + 2), $"__shfl_down_sync width 8, thread {t}");
                Assert.That(o[t * 8 + 3], Is.EqualTo(warp + (lane ^ 5)), $"__shfl_xor_sync, thread {t}");
                Assert.That((uint)o[t * 8 + 4], Is.EqualTo(0x49249249u), "__ballot_sync of lane % 3 == 0");
                Assert.That(o[t * 8 + 5], Is.EqualTo(t >= 32 ? 1 : 0), "__any_sync");
                Assert.That(o[t * 8 + 6], Is.Zero, "__all_sync");
                Assert.That(o[t * 8 + 7], Is.EqualTo(block * 1000 + 200 + 64), "blockIdx, gridDim, blockDim");
            }
        }
    }

    [Test]
    public void SharedMemoryBarriersAndAtomicsFollowCuda()
    {
        using var temp = new TempFolder();
        var lib = ProbeLibrary(temp);
        foreach (var order in Enum.GetValues<ThreadOrder>())
        {
            var o = new float[3 * 64 + 3];
            Launch(lib, "shared_memory", 3, 64, o, order, shared: 64 * 4);
            for (int b = 0; b < 3; b++)
            {
                for (int t = 0; t < 64; t++) Assert.That(o[b * 64 + t], Is.EqualTo(63 - t + 2 * ((t + 1) % 64)), $"block {b}, thread {t}, {order}");
                Assert.That(o[3 * 64 + b], Is.EqualTo(64), "atomicAdd counted every thread");
            }
        }
        var poisoned = new float[32];
        Launch(lib, "uninitialised", 1, 32, poisoned);
        Assert.That(poisoned, Is.All.NaN, "unwritten shared memory reads as NaN");
    }

    [Test]
    public unsafe void RacesDivergenceOverrunsAndLimitsAreReported()
    {
        using var temp = new TempFolder();
        var lib = ProbeLibrary(temp);
        string Fails(string kernel, uint grid, uint block) =>
            Assert.Throws<EngineException>(() => Launch(lib, kernel, grid, block, new int[2048]))!.Message;
        Assert.That(Fails("divergent_barrier", 1, 64), Does.Contain("different __syncthreads"));
        Assert.That(Fails("missing_lane", 1, 32), Does.Contain("has exited"));
        Assert.That(Fails("warp_ops", 1, 2048), Does.Contain("exceeds sm_90's limits"));
        Assert.That(Assert.Throws<EngineException>(() => lib.Launch("warp_ops", 1, 65536, 1, 32, 1, 1, 0, null, ThreadOrder.Forward, 0))!.Message, Does.Contain("grid"));
        Assert.That(Assert.Throws<EngineException>(() => Launch(lib, "shared_memory", 1, 64, new float[200], shared: 49 * 1024))!.Message, Does.Contain("exceed 48 KiB"));

        // Through an emulated device: the race check and the guard bytes.
        var emulator = new CudaEmulator([lib], CudaTestSupport.RaceCheck);
        var data = new int[64];
        fixed (int* d = data)
        {
            int* pointer = d;
            var args = stackalloc void*[2];
            args[0] = &pointer;
            var buffer = new[] { ((ulong)d, 256L) };
            Assert.That(Assert.Throws<EngineException>(() => emulator.Launch("unsynchronised", 1, 1, 64, args, buffer, _ => { }))!.Message, Does.Contain("race in unsynchronised"));
        }
        var gpu = BackendWith(lib);
        var t = Tensor.Empty([64], DType.I32, gpu.Device);
        var device = (CudaDevice)typeof(CudaBackend).GetField("gpu", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance)!.GetValue(gpu)!;
        var storage = (CudaStorage)t.Storage;
        var kernel = Assert.Throws<EngineException>(() =>
        {
            var buffers = new[] { device.Allocator.BufferOf(storage.Pointer, "test") };
            ulong p = storage.Pointer;
            int n = 128; // the buffer holds 128 ints (512 bytes): thread 0 writes just past it
            var args = stackalloc void*[2];
            args[0] = &p;
            args[1] = &n;
            emulator.Launch("past_the_end", 1, 1, 32, args, buffers, k => device.Allocator.CheckGuards(buffers, k));
        })!;
        Assert.That(kernel.Message, Does.Contain("wrote outside the buffer"));
    }
}
