using NUnit.Framework;

namespace Engine.Tests.Cuda;

/// <summary>bf16 mixed-precision GEMMs on the GPU (pack_bf16 + cublasGemmStridedBatchedEx) against
/// the CPU reference. Needs a GPU; skips with the one-line reason without one.</summary>
public class MixedPrecisionParityTests
{
    [Test]
    public void CudaBf16GemmMatchesTheCpuBf16Gemm()
    {
        var gpu = CudaTestSupport.Backend();
        foreach (var c in MixedPrecisionTests.Cases())
        {
            float[] a, b, c0, cpu, onGpu, gpuF32;
            using (MixedPrecision.Bf16())
            {
                (a, b, c0, cpu) = MixedPrecisionTests.Run(c, 7);
                (_, _, _, onGpu) = MixedPrecisionTests.Run(c, 7, gpu);
            }
            (_, _, _, gpuF32) = MixedPrecisionTests.Run(c, 7, gpu);
            var (_, scale) = MixedPrecisionTests.Reference(c, a, b, c0, roundInputs: true);
            double off = 0, f32Off = 0;
            for (int o = 0; o < cpu.Length; o++)
            {
                // Both sides multiply the same bf16-rounded inputs; each product is exact in float32
                // (8 + 8 significant bits), so each side is a float32 sum of the same exact terms, within
                // (k + 3)·2⁻²⁴·Σ|a·b| of the exact value (MixedPrecisionTests.Tolerance, which doubles it).
                // Only the summation order differs (cuBLAS tiles and tensor-core accumulation against the
                // CPU's row order), so the two may differ by the sum of both bounds.
                Assert.That(Math.Abs(onGpu[o] - cpu[o]), Is.LessThanOrEqualTo(2 * MixedPrecisionTests.Tolerance(c.K, scale[o])), $"{c}: element {o}");
                off = Math.Max(off, Math.Abs(onGpu[o] - cpu[o]));
                f32Off = Math.Max(f32Off, Math.Abs(gpuF32[o] - cpu[o]));
            }
            // Without the scope the GPU GEMM is plain float32 (TF32 off by default): far from the bf16 result.
            if (!gpu.AllowTf32) Assert.That(f32Off, Is.GreaterThan(10 * off), $"{c}: the GPU's float32 GEMM should differ from bf16");
        }
    }

    [Test]
    public void ALinearLayerForwardAndBackwardInBf16MatchTheCpu()
    {
        var gpu = CudaTestSupport.Backend();
        var rng = new Random(3);
        var x = Tensor.Randn([2, 9, 48], rng); var w = Tensor.Randn([32, 48], rng, std: 0.2); var bias = Tensor.Randn([32], rng);
        var g = Tensor.Randn([2, 9, 32], rng);
        (double[] Y, double[] Dx, double[] Dw) Run(Device device)
        {
            var (xd, wd, bd) = (Tensor.Parameter(x.To(device)), Tensor.Parameter(w.To(device)), Tensor.Parameter(bias.To(device)));
            using var scope = Scope.Begin();
            using var bf16 = MixedPrecision.Bf16();
            var y = Ops.Linear(xd, wd, bd);
            y.Backward(g.To(device));
            return (y.ToDoubleArray(), xd.Grad!.ToDoubleArray(), wd.Grad!.ToDoubleArray());
        }
        var cpu = Run(Device.Cpu);
        var cuda = Run(gpu.Device);
        // Same rounded inputs; float32 sums of k exact products (forward k = 48, dx k = 32, dW k = 18)
        // in a different order: |Δ| ≤ 2·(k + 3)·2⁻²⁴·Σ|a·b|, and Σ|a·b| stays below ~15 with these
        // scales, so |Δ| < 1e-4 even in the worst case; CudaParity.Error divides by max(1, max|cpu|).
        Assert.That(Engine.Kernels.CudaParity.Error(cuda.Y, cpu.Y), Is.LessThanOrEqualTo(1e-4), "y");
        Assert.That(Engine.Kernels.CudaParity.Error(cuda.Dx, cpu.Dx), Is.LessThanOrEqualTo(1e-4), "dx");
        Assert.That(Engine.Kernels.CudaParity.Error(cuda.Dw, cpu.Dw), Is.LessThanOrEqualTo(1e-4), "dW");
    }
}
