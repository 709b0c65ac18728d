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
        int n = (int)length;
        if (CpuPool.Rent(dtype, n, zero) is { } pooled) return new CpuStorage(dtype, pooled, length);
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
/// </summary>
internal static class CpuPool
{
    public const int MinLength = 16384;
    public static readonly long CapBytes =
        (long.TryParse(Environment.GetEnvironmentVariable("ENGINE_CPU_POOL_MB"), out var mb) ? mb : 2048) << 20;

    private static readonly Dictionary<(DType, int), Stack<Array>> free = new();
    private static long retained;

    public static Array? Rent(DType dtype, int length, bool zero)
    {
        if (length < MinLength) return null;
        Array? a = null;
        lock (free)
        {
            if (free.TryGetValue((dtype, length), out var stack) && stack.Count > 0)
            {
                a = stack.Pop();
                retained -= (long)length * dtype.SizeOf();
            }
        }
        if (a is not null && zero) Array.Clear(a);
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
