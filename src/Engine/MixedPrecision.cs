namespace Engine;

/// <summary>The element type GEMM inputs are rounded to before the product (see <see cref="MixedPrecision"/>).</summary>
public enum GemmPrecision
{
    /// <summary>Inputs used as they are (float32 or float64).</summary>
    F32,
    /// <summary>Float32 inputs rounded to bfloat16 (nearest even), products accumulated in float32, output float32.</summary>
    Bf16,
}

/// <summary>
/// bf16 mixed precision for matrix products, like PyTorch's autocast for matmuls:
/// <code>
/// using (MixedPrecision.Bf16()) { var loss = model.Loss(...); loss.Backward(); }
/// </code>
/// While a bf16 scope is open on a thread, every float32 GEMM that thread runs
/// (<see cref="Backend.IBackend.Gemm"/>: linear layers, <see cref="Ops.MatMul"/>, and the GEMMs of
/// their backward passes) rounds its A and B inputs to bfloat16, round-to-nearest-even as
/// <c>torch.Tensor.bfloat16()</c> does, multiplies and accumulates in float32 and writes a float32
/// C. Everything else stays float32: parameters (master weights), gradients, optimizer state,
/// activations as stored, and every non-GEMM kernel — including the fused attention kernel
/// (<see cref="Ops.Attention"/>), which computes its q·kᵀ and p·v in float32 (BERT's composed
/// attention, used with attention dropout in training, is made of MatMul and is rounded).
///
/// Float64 GEMMs are left alone (as torch's autocast leaves float64 tensors alone): float64 is the
/// checking type, and gradient checks stay exact under any scope.
///
/// The setting is thread-static, like <see cref="Scope"/> and <see cref="Autograd.Tape.NoGrad"/>:
/// it applies to ops called on the thread that opened the scope (a backend reads it when the GEMM
/// is called, before any work is spread over threads); code that runs ops on other threads opens
/// its own scope there. Scopes nest; disposing one restores the setting it found, and they must
/// be disposed in reverse order of opening.
/// </summary>
public static class MixedPrecision
{
    [ThreadStatic] private static PrecisionScope? top;

    /// <summary>The GEMM precision of the calling thread (F32 when no scope is open).</summary>
    public static GemmPrecision Current => top?.Precision ?? GemmPrecision.F32;

    /// <summary>True when float32 GEMMs on this thread round their inputs to bf16.</summary>
    public static bool GemmInBf16 => Current == GemmPrecision.Bf16;

    /// <summary>Until disposed, float32 GEMMs on this thread take bf16-rounded inputs.</summary>
    public static PrecisionScope Bf16() => Use(GemmPrecision.Bf16);

    /// <summary>Until disposed, GEMMs on this thread use their inputs as they are (inside a bf16 scope, too).</summary>
    public static PrecisionScope F32() => Use(GemmPrecision.F32);

    public static PrecisionScope Use(GemmPrecision precision)
    {
        var s = new PrecisionScope(precision, top);
        top = s;
        return s;
    }

    /// <summary>The names the CLI and <c>TrainOptions.Precision</c> accept.</summary>
    public static IReadOnlyList<string> Names { get; } = ["f32", "bf16"];

    /// <summary>"f32" or "bf16"; anything else throws EngineException naming <paramref name="what"/>.</summary>
    public static GemmPrecision Parse(string? name, string what = "dtype") => name switch
    {
        "f32" => GemmPrecision.F32,
        "bf16" => GemmPrecision.Bf16,
        _ => throw new EngineException($"{what} must be f32 or bf16, got '{name}' (bf16: bfloat16 GEMM inputs, float32 accumulation and weights)"),
    };

    public static string Name(GemmPrecision precision) => precision == GemmPrecision.Bf16 ? "bf16" : "f32";

    /// <summary>One open precision setting; disposing it restores the one it replaced.</summary>
    public sealed class PrecisionScope : IDisposable
    {
        private readonly PrecisionScope? parent;
        private bool disposed;

        internal PrecisionScope(GemmPrecision precision, PrecisionScope? parent)
        {
            Precision = precision;
            this.parent = parent;
        }

        public GemmPrecision Precision { get; }

        public void Dispose()
        {
            if (disposed) return;
            if (top != this)
                throw new InvalidOperationException("precision scopes must be disposed in the reverse order of opening, on the thread that opened them");
            disposed = true;
            top = parent;
        }
    }
}
