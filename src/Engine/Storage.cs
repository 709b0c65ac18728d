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
        Data = Array.Empty<byte>();
    }
}
