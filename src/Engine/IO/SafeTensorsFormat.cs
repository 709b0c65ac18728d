using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;

namespace Engine.IO;

/// <summary>
/// The safetensors format, as the reference implementation (huggingface/safetensors,
/// safetensors/src/tensor.rs) defines it:
///
///     [8 bytes]  N, the header length, an unsigned 64-bit little-endian integer
///     [N bytes]  the header: UTF-8 JSON, one object. Each key is a tensor name whose value is
///                {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}; the optional
///                key "__metadata__" holds a string → string map. The writer pads the header
///                with spaces so that the data starts at an 8-byte boundary.
///     [rest]     the data buffer. Offsets are relative to its start; tensors are stored
///                row-major, little-endian, and together cover the buffer exactly (no holes,
///                no overlaps, nothing left over).
///
/// The writer orders tensors by descending dtype alignment (the reference's Dtype enum order),
/// then by name (byte-wise, UTF-8), and writes the header in that same order with
/// "__metadata__" first. This class holds the constants and the small pieces both directions
/// share: dtype names and order, JSON string escaping as serde_json does it, the recognisers
/// for files that are not safetensors, and the element conversions.
/// </summary>
public static class SafeTensorsFormat
{
    /// <summary>The reference implementation refuses headers larger than this (100 MB).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    /// <summary>The header key that holds the string → string metadata map.</summary>
    public const string MetadataKey = "__metadata__";

    /// <summary>How to turn a PyTorch checkpoint into safetensors (quoted in error messages).</summary>
    public const string ConvertHint =
        "convert it with python: from safetensors.torch import save_file; import torch; " +
        "save_file({k: v.contiguous() for k, v in torch.load(p, map_location='cpu').items()}, out)";

    /// <summary>The dtype for a header "dtype" string (exact spelling, as the format requires);
    /// null when the name is not one the engine reads.</summary>
    public static DType? ParseDType(string name) => name switch
    {
        "F64" => DType.F64, "F32" => DType.F32, "F16" => DType.F16, "BF16" => DType.BF16,
        "I64" => DType.I64, "I32" => DType.I32, "I16" => DType.I16, "I8" => DType.I8,
        "U8" => DType.U8, "BOOL" => DType.Bool, "F8_E4M3" => DType.F8E4M3, "F8_E5M2" => DType.F8E5M2,
        _ => null,
    };

    /// <summary>Types the format knows but the engine does not hold (named in the error).</summary>
    internal static bool IsFormatOnlyType(string name) =>
        name is "U16" or "U32" or "U64" or "F8_E8M0" or "F4" or "F6_E2M3" or "F6_E3M2" or "C64";

    /// <summary>Position in the reference's Dtype enum (declared in increasing alignment). The
    /// writer sorts by this, descending, then by name; so must we, to be byte-compatible.</summary>
    internal static int AlignmentRank(DType t) => t switch
    {
        DType.Bool => 0, DType.U8 => 1, DType.I8 => 2, DType.F8E5M2 => 3, DType.F8E4M3 => 4,
        DType.I16 => 5, DType.F16 => 7, DType.BF16 => 8, DType.I32 => 9, DType.F32 => 11,
        DType.F64 => 12, DType.I64 => 13,
        _ => throw new ArgumentOutOfRangeException(nameof(t)),
    };

    /// <summary>Rust's string order: byte-wise over UTF-8 (differs from UTF-16 ordinal order
    /// only for characters above U+D7FF).</summary>
    internal static int CompareNames(string a, string b) =>
        Encoding.UTF8.GetBytes(a).AsSpan().SequenceCompareTo(Encoding.UTF8.GetBytes(b));

    /// <summary>Appends a JSON string literal escaped as serde_json escapes it: quote, backslash
    /// and the control characters below 0x20 (the short forms \b \f \n \r \t, the rest as \u00xx
    /// in lowercase hex); everything else, non-ASCII included, as is.</summary>
    internal static void AppendJsonString(StringBuilder sb, string s)
    {
        sb.Append('"');
        foreach (char c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                default:
                    if (c < 0x20) sb.Append("\\u00").Append(((int)c).ToString("x2"));
                    else sb.Append(c);
                    break;
            }
        }
        sb.Append('"');
    }

    /// <summary>When the first bytes show a known non-safetensors format, a sentence that says
    /// what the file is and how to convert it; null otherwise.</summary>
    public static string? RecogniseForeignFormat(ReadOnlySpan<byte> head)
    {
        if (head.StartsWith("PK\x03\x04"u8))
            return "is a zip archive (a PyTorch .bin/.pt checkpoint saved by torch.save), not safetensors; " + ConvertHint;
        // A safetensors header length can start with the same two bytes (0x280 = 640 bytes is
        // 80 02 ...); its JSON then opens at byte 8, where a pickle has no '{'.
        if (head.Length >= 2 && head[0] == 0x80 && head[1] is >= 2 and <= 5 && !(head.Length > 8 && head[8] == (byte)'{'))
            return "is a Python pickle (an old-style PyTorch checkpoint), not safetensors; " + ConvertHint;
        if (head.StartsWith("GGUF"u8))
            return "is a GGUF file (llama.cpp), not safetensors";
        if (head.StartsWith("\x89HDF"u8))
            return "is an HDF5 file (a Keras/TensorFlow .h5 checkpoint), not safetensors";
        if (head.StartsWith("version https://git-lfs"u8))
            return "is a Git LFS pointer, not the file itself; fetch it with `git lfs pull`";
        return null;
    }

    // ------------------------------------------------------------------ element conversions

    /// <summary>FP8 E4M3 ("fn" variant, as torch.float8_e4m3fn): bias 7, no infinities, only
    /// S.1111.111 is NaN, largest finite 448. Every value is exact in float32.</summary>
    public static float F8E4M3ToFloat(byte b)
    {
        int sign = b >> 7, exp = (b >> 3) & 0xF, man = b & 7;
        float v;
        if (exp == 0xF && man == 7) v = float.NaN;
        else if (exp == 0) v = man * (1f / 512f);               // subnormal: man/8 · 2^(1−7)
        else v = (1f + man / 8f) * MathF.ScaleB(1f, exp - 7);
        return sign == 1 ? -v : v;
    }

    /// <summary>FP8 E5M2: IEEE-like (bias 15, infinities and NaNs); it is the top byte of an
    /// IEEE half, so the half conversion is exact.</summary>
    public static float F8E5M2ToFloat(byte b) => (float)BitConverter.UInt16BitsToHalf((ushort)(b << 8));

    /// <summary>Views <paramref name="byteLength"/> bytes of a primitive array starting at byte
    /// <paramref name="byteOffset"/> (the array must be at least that long).</summary>
    internal static Span<byte> BytesOf(Array array, long byteOffset, int byteLength)
    {
        ref byte start = ref MemoryMarshal.GetArrayDataReference(array);
        return MemoryMarshal.CreateSpan(ref Unsafe.Add(ref start, (nint)byteOffset), byteLength);
    }

    /// <summary>Converts the little-endian elements in <paramref name="bytes"/> (of type <paramref name="source"/>)
    /// into float or double values (exact for every type narrower than the target; F64 → F32 and
    /// large integers → F32 round to nearest).</summary>
    internal static void ToFloating<T>(DType source, ReadOnlySpan<byte> bytes, Span<T> dst)
        where T : unmanaged, System.Numerics.IFloatingPointIeee754<T>
    {
        switch (source)
        {
            case DType.F32: Widen(MemoryMarshal.Cast<byte, float>(bytes), dst); break;
            case DType.F64: Widen(MemoryMarshal.Cast<byte, double>(bytes), dst); break;
            case DType.BF16: { var s = MemoryMarshal.Cast<byte, ushort>(bytes); for (int i = 0; i < dst.Length; i++) dst[i] = T.CreateTruncating(Backend.HalfBits.Bf16ToFloat(s[i])); break; }
            case DType.F16: { var s = MemoryMarshal.Cast<byte, ushort>(bytes); for (int i = 0; i < dst.Length; i++) dst[i] = T.CreateTruncating(Backend.HalfBits.F16ToFloat(s[i])); break; }
            case DType.F8E4M3: for (int i = 0; i < dst.Length; i++) dst[i] = T.CreateTruncating(F8E4M3ToFloat(bytes[i])); break;
            case DType.F8E5M2: for (int i = 0; i < dst.Length; i++) dst[i] = T.CreateTruncating(F8E5M2ToFloat(bytes[i])); break;
            case DType.I64: Widen(MemoryMarshal.Cast<byte, long>(bytes), dst); break;
            case DType.I32: Widen(MemoryMarshal.Cast<byte, int>(bytes), dst); break;
            case DType.I16: Widen(MemoryMarshal.Cast<byte, short>(bytes), dst); break;
            case DType.I8: Widen(MemoryMarshal.Cast<byte, sbyte>(bytes), dst); break;
            case DType.U8 or DType.Bool: Widen(bytes, dst); break;
            default: throw new ArgumentOutOfRangeException(nameof(source));
        }
    }

    private static void Widen<TFrom, T>(ReadOnlySpan<TFrom> s, Span<T> dst)
        where TFrom : unmanaged, System.Numerics.INumberBase<TFrom>
        where T : unmanaged, System.Numerics.INumberBase<T>
    {
        for (int i = 0; i < dst.Length; i++) dst[i] = T.CreateTruncating(s[i]);
    }

    /// <summary>Converts integer (or bool) elements into I32 or I64; false at the first value that
    /// does not fit (I64 → I32), with its index.</summary>
    internal static bool ToInteger<T>(DType source, ReadOnlySpan<byte> bytes, Span<T> dst, out int badIndex)
        where T : unmanaged, System.Numerics.IBinaryInteger<T>
    {
        badIndex = -1;
        switch (source)
        {
            case DType.I64:
                {
                    var s = MemoryMarshal.Cast<byte, long>(bytes);
                    for (int i = 0; i < dst.Length; i++)
                    {
                        var v = T.CreateTruncating(s[i]);
                        if (long.CreateTruncating(v) != s[i]) { badIndex = i; return false; }
                        dst[i] = v;
                    }
                    return true;
                }
            case DType.I32: Widen(MemoryMarshal.Cast<byte, int>(bytes), dst); return true;
            case DType.I16: Widen(MemoryMarshal.Cast<byte, short>(bytes), dst); return true;
            case DType.I8: Widen(MemoryMarshal.Cast<byte, sbyte>(bytes), dst); return true;
            case DType.U8 or DType.Bool: Widen(bytes, dst); return true;
            default: throw new ArgumentOutOfRangeException(nameof(source));
        }
    }
}
