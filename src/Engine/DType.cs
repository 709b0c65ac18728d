namespace Engine;

/// <summary>Element types. F32 and F64 compute on the CPU; the others are storage types for I/O
/// (safetensors) and, on the GPU, for mixed precision. I32 holds token ids, targets and indices.</summary>
public enum DType
{
    F32, F64, BF16, F16, I64, I32, I16, I8, U8, Bool, F8E4M3, F8E5M2,
}

public static class DTypes
{
    public static int SizeOf(this DType t) => t switch
    {
        DType.F64 or DType.I64 => 8,
        DType.F32 or DType.I32 => 4,
        DType.BF16 or DType.F16 or DType.I16 => 2,
        _ => 1,
    };

    /// <summary>True for the types ops compute in (F32, F64).</summary>
    public static bool IsCompute(this DType t) => t is DType.F32 or DType.F64;

    public static bool IsFloat(this DType t) =>
        t is DType.F32 or DType.F64 or DType.BF16 or DType.F16 or DType.F8E4M3 or DType.F8E5M2;

    /// <summary>The name safetensors uses for this type.</summary>
    public static string SafetensorsName(this DType t) => t switch
    {
        DType.F32 => "F32", DType.F64 => "F64", DType.BF16 => "BF16", DType.F16 => "F16",
        DType.I64 => "I64", DType.I32 => "I32", DType.I16 => "I16", DType.I8 => "I8",
        DType.U8 => "U8", DType.Bool => "BOOL", DType.F8E4M3 => "F8_E4M3", DType.F8E5M2 => "F8_E5M2",
        _ => throw new ArgumentOutOfRangeException(nameof(t)),
    };

    /// <summary>Parses a type name (safetensors spelling or the engine's, any case); null when unknown.</summary>
    public static DType? Parse(string name) => name.ToUpperInvariant() switch
    {
        "F32" or "FLOAT32" => DType.F32, "F64" or "FLOAT64" => DType.F64,
        "BF16" or "BFLOAT16" => DType.BF16, "F16" or "FLOAT16" => DType.F16,
        "I64" => DType.I64, "I32" => DType.I32, "I16" => DType.I16, "I8" => DType.I8,
        "U8" => DType.U8, "BOOL" => DType.Bool, "F8_E4M3" or "F8E4M3" => DType.F8E4M3,
        "F8_E5M2" or "F8E5M2" => DType.F8E5M2,
        _ => null,
    };
}
