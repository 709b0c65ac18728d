namespace Engine;

/// <summary>A flat buffer of elements on one device. Backends make and release them; tensors
/// view them (several tensors may share one storage: reshape views).</summary>
public abstract class Storage
{
    protected Storage(Device device, DType dtype, long length)
    {
        Device = device;
        DType = dtype;
        Length = length;
    }

    public Device Device { get; }
    public DType DType { get; }
    /// <summary>Number of elements.</summary>
    public long Length { get; }
    public long Bytes => Length * DType.SizeOf();
    /// <summary>Set once the backend has taken the buffer back (end of its step scope).</summary>
    public bool Released { get; internal set; }
    /// <summary>How many tensors view this storage; at 0 (all released) it goes back to its backend.</summary>
    internal int Refs { get; set; }
}

/// <summary>CPU storage: a managed array of the element type (float[], double[], int[], long[],
/// ushort[] for BF16/F16, byte[] for 1-byte types).</summary>
public sealed class CpuStorage : Storage
{
    internal CpuStorage(DType dtype, Array data, long length) : base(Device.Cpu, dtype, length) => Data = data;

    public Array Data { get; private set; }

    internal static CpuStorage Allocate(DType dtype, long length, bool zero)
    {
        if (length > Array.MaxLength) throw new EngineException($"a CPU tensor of {length} elements is larger than one array can hold");
        // A step's temporaries (made inside a scope) get an array of the pool's size class, so a
        // batch of another length reuses the arrays the last one released; the tensor sees only
        // its own Length elements. Long-lived tensors (parameters, optimizer state) are exact.
        bool scoped = Scope.Current is not null;
        int n = scoped ? CpuPool.SizeClass((int)length) : (int)length;
        if (CpuPool.Rent(dtype, n, zero, largerUpTo: scoped ? 4 : 0) is { } pooled) return new CpuStorage(dtype, pooled, length);
        Array data = dtype switch
        {
            DType.F32 => zero ? new float[n] : GC.AllocateUninitializedArray<float>(n),
            DType.F64 => zero ? new double[n] : GC.AllocateUninitializedArray<double>(n),
            DType.I32 => new int[n],
            DType.I64 => new long[n],
            DType.BF16 or DType.F16 or DType.I16 => new ushort[n],
            _ => new byte[n],
        };
        return new CpuStorage(dtype, data, length);
    }

    internal void Drop()
    {
        Released = true;
        CpuPool.Return(DType, Data);
        Data = Array.Empty<byte>();
    }
}

/// <summary>
/// The CPU side of "a training step never frees": arrays of at least <see cref="MinLength"/>
/// elements released by a step scope are kept, by type and length, and handed to the next
/// allocation of the same size, so steady-state steps allocate nothing large (no large-object
/// heap churn, no gen-2 collections). At most <see cref="CapBytes"/> are retained
/// (ENGINE_CPU_POOL_MB, default 2048).
///
/// Scoped arrays come in size classes (<see cref="SizeClass"/>: four per power of two), so the
/// varying batch shapes of length-bucketed training hit the pool too: with exact lengths every
/// new sequence length was a miss, the pool filled with sizes never asked for again and the
/// released arrays became large-object-heap garbage (a bucketed bert-mini fine-tune peaked at
/// 7.6 GB resident; docs/benchmarks.md has the before and after).
/// </summary>
internal static class CpuPool
{
    public const int MinLength = 16384;
    public static readonly long CapBytes =
        (long.TryParse(Environment.GetEnvironmentVariable("ENGINE_CPU_POOL_MB"), out var mb) ? mb : 2048) << 20;

    /// <summary>The array length pooled for <paramref name="n"/> elements: n itself below
    /// <see cref="MinLength"/>, else n rounded up to a multiple of a quarter of the power of two
    /// at or below it (2^k, 1.25·2^k, 1.5·2^k, 1.75·2^k, 2^(k+1): at most 25% more).</summary>
    public static int SizeClass(int n)
    {
        if (n < MinLength) return n;
        long step = (1L << (31 - System.Numerics.BitOperations.LeadingZeroCount((uint)n))) / 4;
        long rounded = (n + step - 1) / step * step;
        return rounded <= Array.MaxLength ? (int)rounded : n;
    }

    private static readonly Dictionary<(DType, int), Stack<Array>> free = new();
    private static long retained;

    /// <summary>A free array of <paramref name="length"/> elements or, with <paramref name="largerUpTo"/>
    /// k > 0 and none free, of one of the next k size classes (k = 4: at most twice the length),
    /// so the arrays of a step with long sequences serve the shorter ones after it instead of
    /// lying idle while new ones are made.</summary>
    public static Array? Rent(DType dtype, int length, bool zero, int largerUpTo = 0)
    {
        if (length < MinLength) return null;
        Array? a = null;
        lock (free)
        {
            int size = length;
            for (int k = 0; k <= largerUpTo && a is null; k++, size = SizeClass(size + 1))
            {
                if (free.TryGetValue((dtype, size), out var stack) && stack.Count > 0)
                {
                    a = stack.Pop();
                    retained -= (long)size * dtype.SizeOf();
                }
                if (size >= Array.MaxLength / 2) break;
            }
        }
        if (a is not null && zero) Array.Clear(a, 0, length);
        return a;
    }

    public static void Return(DType dtype, Array a)
    {
        if (a.Length < MinLength) return;
        long bytes = (long)a.Length * dtype.SizeOf();
        lock (free)
        {
            if (retained + bytes > CapBytes) return;
            if (!free.TryGetValue((dtype, a.Length), out var stack)) free[(dtype, a.Length)] = stack = new Stack<Array>();
            stack.Push(a);
            retained += bytes;
        }
    }
}
