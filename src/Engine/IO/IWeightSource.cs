namespace Engine.IO;

/// <summary>One tensor's entry in a safetensors header: name, element type, shape, and where
/// its bytes lie in the data buffer (<see cref="DataBegin"/> inclusive, <see cref="DataEnd"/>
/// exclusive, relative to the start of the buffer). <see cref="File"/> is the file that holds
/// it (for a sharded model, the shard).</summary>
public sealed record SafeTensorInfo(string Name, DType DType, int[] Shape, long DataBegin, long DataEnd, string File)
{
    public long Numel => Engine.Shape.Numel(Shape);
    public long ByteLength => DataEnd - DataBegin;
    public string ShapeText => Engine.Shape.Format(Shape);
}

/// <summary>
/// Somewhere named tensors can be read from, one at a time, without loading the rest: a
/// single safetensors file (<see cref="SafeTensorsFile"/>) or a sharded model
/// (<see cref="ShardedSafeTensors"/>). Dispose it to unmap the files.
/// </summary>
public interface IWeightSource : IDisposable
{
    /// <summary>The path this source was opened from (used in error messages).</summary>
    string Path { get; }

    /// <summary>Every tensor name, in file order (a sharded model: the index's order).</summary>
    IReadOnlyList<string> Names { get; }

    /// <summary>The header's "__metadata__" map (empty when absent; a sharded model: the
    /// index's "metadata" values that are strings).</summary>
    IReadOnlyDictionary<string, string> Metadata { get; }

    bool Contains(string name);

    /// <summary>Name, dtype, shape and location of one tensor; throws naming it when absent.</summary>
    SafeTensorInfo Info(string name);

    /// <summary>The tensor in the file's own dtype (a CPU tensor; bytes copied out of the map).</summary>
    Tensor Read(string name);

    /// <summary>The tensor converted to <paramref name="dtype"/>: F32 or F64 from any stored
    /// type (F16, BF16 and F8 convert exactly), or I32/I64 from integer and bool types. A
    /// conversion that is not possible throws an EngineException naming the tensor and file.</summary>
    Tensor ReadAs(string name, DType dtype);
}
