using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using Engine.Backend;
using Engine.Kernels;
using NUnit.Framework;

namespace Engine.Tests.Cuda;

/// <summary>
/// The CUDA backend's host side, without a GPU: every kernel launch is checked against the
/// kernel's C signature as parsed from the .cu source (argument count, order, int vs i64, float
/// vs double, pointer, struct), and against the launch limits (threads per block a multiple of
/// 32 up to 1024, grid y ≤ 65535); every pointer argument, copy and memset must lie in live
/// device memory. The backend runs on a dry-run device (<see cref="CudaDevice.DryRun"/>), which
/// does everything but call the driver, driven by every backend method and by every catalog op's
/// forward and backward.
/// </summary>
public class DryRunLaunchTests
{
    // ------------------------------------------------------------- the signature parser and the checks

    [Test]
    public void EveryDeclaredKernelHasASignatureTheLauncherUnderstands()
    {
        foreach (var family in KernelSources.Families)
        {
            var signatures = KernelSources.Signatures(family);
            Assert.That(signatures.Keys, Is.EquivalentTo(KernelSources.DeclaredKernels(family)), family);
        }
        var elementwise = KernelSources.Signatures("elementwise");
        Assert.That(elementwise["binary_f32"], Is.EqualTo(new[] { KernelArgKind.Int32, KernelArgKind.Pointer, KernelArgKind.Pointer, KernelArgKind.Pointer, KernelArgKind.Int64, KernelArgKind.Layout }));
        Assert.That(elementwise["dropout_f64"], Is.EqualTo(new[] { KernelArgKind.Pointer, KernelArgKind.Pointer, KernelArgKind.Int64, KernelArgKind.Float32, KernelArgKind.Float64, KernelArgKind.Int64, KernelArgKind.Int32 }));
        Assert.That(KernelSources.Signatures("reduce")["finish_sum_f32"], Is.EqualTo(new[] { KernelArgKind.Pointer, KernelArgKind.Int32, KernelArgKind.Float64, KernelArgKind.Pointer, KernelArgKind.Int32, KernelArgKind.Pointer }));
        Assert.Throws<EngineException>(() => KernelSources.ParameterKind("k", "half h"));
    }

    [Test]
    public void TheLayoutStructMatchesCommonCuh()
    {
        var header = KernelSources.Header;
        int maxRank = int.Parse(Regex.Match(header, @"#define MAX_RANK (\d+)").Groups[1].Value);
        Assert.That(maxRank, Is.EqualTo(Layout.MaxRank));
        var body = Regex.Match(header, @"struct Layout \{(.*?)\};", RegexOptions.Singleline).Groups[1].Value;
        var fields = Regex.Matches(body, @"^\s*(\w+)\s+(\w+)(\[MAX_RANK\])?;", RegexOptions.Multiline)
            .Select(m => (Type: m.Groups[1].Value, Name: m.Groups[2].Value, Array: m.Groups[3].Success)).ToArray();
        Assert.That(fields, Is.EqualTo(new[] { ("int", "rank", false), ("i64", "shape", true), ("i64", "stride0", true), ("i64", "stride1", true) }));
        // C layout: int at 0, then 8-aligned i64 arrays.
        Assert.That(Marshal.OffsetOf<Layout>(nameof(Layout.Rank)), Is.EqualTo((nint)0));
        Assert.That(Marshal.OffsetOf<Layout>(nameof(Layout.Shape)), Is.EqualTo((nint)8));
        Assert.That(Marshal.OffsetOf<Layout>(nameof(Layout.Stride0)), Is.EqualTo((nint)(8 + 8 * maxRank)));
        Assert.That(Marshal.OffsetOf<Layout>(nameof(Layout.Stride1)), Is.EqualTo((nint)(8 + 16 * maxRank)));
        Assert.That(Unsafe.SizeOf<Layout>(), Is.EqualTo(8 + 24 * maxRank));
    }

    [Test]
    public unsafe void WrongArgumentsBadShapesAndDeadMemoryAreRefused()
    {
        var dry = new DryGpu();
        var x = dry.Empty([1000]);
        var y = dry.Empty([1000]);
        ulong px = ((CudaStorage)x.Storage).Pointer, py = ((CudaStorage)y.Storage).Pointer;
        var device = dry.Gpu;

        device.Launch("axpy_f32", 4, 256, px, py, 1000L, 2.0f);
        Assert.That(dry.Launches, Has.Count.EqualTo(1));

        string Refused(Action launch) => Assert.Throws<EngineException>(() => launch())!.Message;
        Assert.That(Refused(() => device.Launch("axpy_f32", 4, 256, px, py, 1000L, 2.0)), Does.Contain("do not match"));   // double for float
        Assert.That(Refused(() => device.Launch("axpy_f32", 4, 256, px, py, 1000, 2.0f)), Does.Contain("do not match"));   // int for i64
        Assert.That(Refused(() => device.Launch("axpy_f32", 4, 256, px, py, 1000L)), Does.Contain("do not match"));        // one missing
        Assert.That(Refused(() => device.Launch("axpy_f32", 4, 48, px, py, 1000L, 2.0f)), Does.Contain("threads per block"));
        Assert.That(Refused(() => device.Launch("axpy_f32", 4, 2048, px, py, 1000L, 2.0f)), Does.Contain("threads per block"));
        Assert.That(Refused(() => device.Launch("column_sum_finish_f32", 1, 70000, 256, [px, 3L, 4, py])), Does.Contain("grid"));
        Assert.That(Refused(() => device.Launch("axpy_f32", 4, 256, px + 1_000_000, py, 1000L, 2.0f)), Does.Contain("not inside a live buffer"));
        Assert.That(Refused(() => device.Launch("no_such_kernel", 1, 32)), Does.Contain("not defined"));

        dry.Backend.Release(y.Storage);
        Assert.That(Refused(() => device.Launch("axpy_f32", 4, 256, px, py, 1000L, 2.0f)), Does.Contain("not inside a live buffer"));
        Assert.That(dry.Launches, Has.Count.EqualTo(1));
    }

    // ------------------------------------------------------------- every backend method

    private static Tensor Ids(DryGpu dry, int n, int max)
    {
        var ids = Tensor.FromArray(Enumerable.Range(0, n).Select(i => i * 7 % max).ToArray(), n);
        return ids.To(dry.Device);
    }

    /// <summary>Calls every kernel-launching backend method (GEMM aside) in one element type.</summary>
    private static void DriveEveryMethod(DryGpu dry, DType t)
    {
        var b = dry.Backend;
        Tensor E(params int[] shape) => dry.Empty(shape, t);
        Tensor Z(params int[] shape) => dry.Zeros(shape, t);

        // memory-like
        var x = E(3, 37); var y = E(3, 37);
        b.Fill(x, 1.5); b.AddScalar(x, 2); b.Axpy(x, y, 0.5); b.Scale(x, y, 3); b.SumSquares(x);
        b.Copy(x, y);
        var host = Tensor.Zeros([3, 37], t);
        b.Copy(host, x); b.Copy(x, host);
        foreach (var other in new[] { DType.F32, DType.F64, DType.BF16, DType.F16, DType.I32, DType.I64 })
        {
            var o = dry.Empty([3, 37], other);
            if (other is DType.F32 or DType.F64 or DType.BF16 or DType.F16 or DType.I32) b.Fill(o, 1);
            b.Cast(x, o); b.Cast(o, x);
        }

        // elementwise
        foreach (BinaryOp op in Enum.GetValues<BinaryOp>())
        {
            var a = E(4, 1, 33); var c = E(5, 33); var o = E(4, 5, 33);
            b.Binary(op, a, c, o);
            b.BinaryBackward(op, a, c, o, Z(4, 1, 33), Z(5, 33));
            b.BinaryBackward(op, a, c, o, null, Z(5, 33));
        }
        foreach (UnaryOp op in Enum.GetValues<UnaryOp>())
        {
            b.Unary(op, x, y);
            b.UnaryBackward(op, x, y, x, y);
        }
        b.Dropout(x, y, 0.1, 42); b.DropoutBackward(x, y, 0.1, 42);

        // reductions, softmax: rows of 1, 7, 33, 1000 and 5000 elements
        foreach (var n in new[] { 1, 7, 33, 1000, 5000 })
        {
            var xs = E(6, n); var s = E(6);
            b.SumLast(xs, s, true); b.SumLastBackward(s, xs, false);
            b.Softmax(xs, E(6, n)); b.SoftmaxBackward(xs, xs, E(6, n));
        }

        // norms, including more rows than one grid column of chunks can cover (65535 × 64)
        foreach (var (rows, n) in new[] { (5, 7), (130, 768), (5_000_000, 16) })
        {
            var xs = E(rows, n); var w = E(n); var bias = E(n); var mean = E(rows); var rstd = E(rows);
            b.LayerNorm(xs, w, bias, E(rows, n), mean, rstd, 1e-5);
            b.LayerNormBackward(xs, w, mean, rstd, xs, Z(rows, n), Z(n), Z(n));
            b.LayerNormBackward(xs, w, mean, rstd, xs, null, null, Z(n));
            b.RmsNorm(xs, w, E(rows, n), rstd, 1e-6);
            b.RmsNormBackward(xs, w, rstd, xs, Z(rows, n), Z(n));
            b.RmsNormBackward(xs, w, rstd, xs, Z(rows, n), null);
        }

        // lookup, gather, layout
        var ids = Ids(dry, 12, 50);
        var table = E(50, 24);
        b.Embedding(ids, table, E(12, 24)); b.EmbeddingBackward(ids, E(12, 24), Z(50, 24));
        var seq = E(3, 9, 16); var pos = Ids(dry, 3, 9);
        b.GatherRows(seq, pos, E(3, 16)); b.GatherRowsBackward(pos, E(3, 16), Z(3, 9, 16));
        b.CopyBlock(E(2, 5, 6), 5, 1, Z(2, 9, 6), 9, 4, 2, 3, 6, accumulate: false);
        b.CopyBlock(E(2, 5, 6), 5, 0, Z(2, 9, 6), 9, 0, 2, 5, 6, accumulate: true);
        b.Permute(E(2, 3, 4, 5), [0, 2, 1, 3], E(2, 4, 3, 5), accumulate: false);
        b.Permute(E(2, 3, 4, 5), [3, 2, 1, 0], Z(5, 4, 3, 2), accumulate: true);
        var layers = new[] { E(3, 37), E(3, 37), E(3, 37) };
        b.WeightedSum(layers, E(3), E(3, 37));
        b.WeightedSumBackward(layers, E(3), E(3, 37), [Z(3, 37), null, Z(3, 37)], Z(3));

        // attention (grouped-query, masked, causal) and rotary
        foreach (var (causal, masked) in new[] { (false, false), (true, false), (false, true) })
        {
            int B = 2, H = 4, Hkv = 2, T = 5, S = 7, D = 8;
            var q = E(B, H, T, D); var k = E(B, Hkv, S, D); var v = E(B, Hkv, S, D);
            var probs = E(B, H, T, S);
            b.Attention(q, k, v, masked ? E(B, S) : null, causal, 0.35, E(B, H, T, D), probs);
            b.AttentionBackward(q, k, v, probs, E(B, H, T, D), 0.35, Z(B, H, T, D), Z(B, Hkv, S, D), Z(B, Hkv, S, D));
            b.AttentionBackward(q, k, v, probs, E(B, H, T, D), 0.35, null, null, Z(B, Hkv, S, D));
            b.AttentionBackward(q, k, v, probs, E(B, H, T, D), 0.35, Z(B, H, T, D), null, null);
        }
        b.Rope(E(2, 3, 5, 8), E(5, 8), E(5, 8), E(2, 3, 5, 8), transpose: false);
        b.Rope(E(2, 3, 5, 8), E(2, 5, 8), E(2, 5, 8), Z(2, 3, 5, 8), transpose: true);

        // losses
        var logits = E(6, 11); var targets = Ids(dry, 6, 11); var loss = E(1); var lse = E(6);
        b.CrossEntropy(logits, targets, -100, loss, lse);
        b.CrossEntropyBackward(logits, targets, -100, lse, E(1), Z(6, 11), accumulate: true);
        b.CrossEntropyBackward(logits, targets, -100, lse, E(1), Z(6, 11), accumulate: false);
        b.Mse(x, y, loss); b.MseBackward(x, y, E(1), Z(3, 37));
        b.BceWithLogits(x, y, loss); b.BceWithLogitsBackward(x, y, E(1), Z(3, 37));

        // GEMMs (a dry run skips the cuBLAS call itself); in bf16 mode the operands are packed first,
        // a shared C summing the batch takes the per-matrix path
        b.Gemm(E(2, 3, 4), 0, 12, false, E(2, 5, 4), 0, 20, true, E(2, 3, 5), 0, 15, 2, 3, 5, 4, 1, 0);
        if (t == DType.F32)
            using (MixedPrecision.Bf16())
            {
                b.Gemm(E(2, 4, 3), 0, 12, true, E(4, 5), 0, 0, false, E(2, 3, 5), 0, 15, 2, 3, 5, 4, 1, 0);
                b.Gemm(E(2, 4, 3), 0, 12, true, E(2, 4, 5), 0, 20, false, Z(3, 5), 0, 0, 2, 3, 5, 4, 1, 1);
            }

        // optimizers
        b.AdamW(x, y, Z(3, 37), Z(3, 37), 1e-3, 0.9, 0.999, 1e-8, 0.01, 3);
        b.Sgd(x, y, Z(3, 37), 0.1, 0.9, 0, 1e-4, nesterov: true, firstStep: true);
        b.Sgd(x, y, null, 0.1, 0, 0, 0, nesterov: false, firstStep: false);
    }

    [Test]
    public void EveryBackendMethodLaunchesItsKernelsAsTheyAreDeclared()
    {
        var dry = new DryGpu();
        // Any mismatch, bad launch shape or dead pointer throws from the launcher.
        DriveEveryMethod(dry, DType.F32);
        DriveEveryMethod(dry, DType.F64);
        Assert.That(dry.Backend.UniformDraws(7, 1000), Has.Length.EqualTo(1000));

        var launched = dry.Launches.Select(l => l.Kernel).ToHashSet();
        var expected = CudaBackend.TypedKernels.SelectMany(k => new[] { k + "_f32", k + "_f64" }).Concat(CudaBackend.UntypedKernels);
        Assert.That(expected.Where(k => !launched.Contains(k)), Is.Empty, "kernels the drive above never launched");
        foreach (var l in dry.Launches)
        {
            Assert.That(l.Block % 32, Is.Zero, l.Kernel);
            Assert.That(l.Block, Is.InRange(32u, 1024u), l.Kernel);
            Assert.That(l.GridY, Is.InRange(1u, 65535u), l.Kernel);
        }
        // The norms' column partials: grid y chunks of chunk_rows rows cover every row, and the
        // finishing pass sums exactly those chunks.
        for (int i = 0; i < dry.Launches.Count; i++)
        {
            var l = dry.Launches[i];
            if (!l.Kernel.StartsWith("layer_norm_backward_params") && !l.Kernel.StartsWith("rms_norm_backward_weight")) continue;
            int last = l.Values.Length - 1;
            long rows = (long)l.Values[last - 2], chunkRows = (int)l.Values[last];
            Assert.That(chunkRows, Is.GreaterThanOrEqualTo(64));
            Assert.That(l.GridY * chunkRows, Is.GreaterThanOrEqualTo(rows).And.LessThan(rows + chunkRows), l.Kernel);
            var finish = dry.Launches[i + 1];
            Assert.That(finish.Kernel, Does.StartWith("column_sum_finish"));
            Assert.That((long)finish.Values[1], Is.EqualTo(l.GridY), "chunks summed by column_sum_finish");
        }
    }

    [Test]
    public void EveryTensorCopyAndMemsetStaysInsideItsBuffer()
    {
        var dry = new DryGpu();
        var x = dry.Empty([100]);
        var view = x.Reshape(10, 10);
        var host = Tensor.Zeros([10, 10]);
        dry.Backend.Copy(host, view);
        dry.Backend.Copy(view, host);
        Assert.That(host.ToFloatArray(), Is.All.EqualTo(0f), "a dry run reads back zeros");
        // A storage handed back and then used is refused, as is a double release.
        dry.Backend.Release(x.Storage);
        Assert.Throws<EngineException>(() => dry.Backend.Fill(x, 1));
        var storage = dry.Backend.Allocate(DType.F32, 4, zero: true);
        dry.Backend.Release(storage);
        Assert.Throws<EngineException>(() => dry.Gpu.Allocator.Return(((CudaStorage)storage).Pointer, 512));
    }

    // ------------------------------------------------------------- every catalog op, forward and backward

    public static IEnumerable<string> OpNames => OpCatalog.All.Select(e => e.Name);

    [TestCaseSource(nameof(OpNames))]
    public void EveryCatalogOpRunsForwardAndBackwardOnADryRunDevice(string name)
    {
        var dry = new DryGpu();
        var entry = OpCatalog.Find(name)!;
        foreach (var seed in new[] { 1, 2, 3 })
        {
            // The values are meaningless (a dry run computes nothing); what is checked is that no
            // launch, copy or memset was refused on the way.
            var r = CudaParity.Check(entry, seed, dry.Device);
            Assert.That(r.Error, Is.Null, $"{name} seed {seed}: {r.Case}");
        }
    }
}
