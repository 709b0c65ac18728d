using System.Buffers;
using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using System.Text.Json;

namespace Engine.IO;

/// <summary>How <see cref="SafeTensorsFile"/> copies tensor bytes out of the file.</summary>
public enum SafeTensorsReadMode
{
    /// <summary>Positional reads (pread) on the open file straight into the tensor's buffer.
    /// The default: on a 1 GiB file it measured about twice as fast as copying out of a
    /// mapping, which takes a page fault per 4 KiB (see docs/safetensors.md).</summary>
    PositionalReads,
    /// <summary>The file is memory-mapped and bytes are copied out of the mapping.</summary>
    MemoryMapped,
}

/// <summary>
/// One safetensors file, read lazily. Opening parses and validates the header only;
/// <see cref="Read"/> copies one tensor's bytes into a new CPU tensor, touching no other
/// tensor's bytes. The file stays open (shared for reading and deleting, so a writer can
/// atomically replace it) until Dispose; with <see cref="SafeTensorsReadMode.MemoryMapped"/> it
/// is also mapped.
///
/// Every problem with the file is an <see cref="EngineException"/> whose one-line message starts
/// with the file's path and, where one is involved, names the tensor. Nothing is allocated
/// because the header says so beyond what the file itself holds: the header is read only after
/// its length is checked against the file's size and the 100 MB cap, and a tensor's buffer is
/// allocated only for bytes that the validated offsets place inside the file.
/// </summary>
public sealed class SafeTensorsFile : IWeightSource
{
    private readonly FileStream stream;
    private readonly MemoryMappedFile? map;
    private readonly MemoryMappedViewAccessor? view;
    private readonly Dictionary<string, SafeTensorInfo> byName;
    private readonly long dataStart;

    private SafeTensorsFile(string path, FileStream stream, MemoryMappedFile? map, MemoryMappedViewAccessor? view, long headerLength,
        long fileLength, IReadOnlyList<SafeTensorInfo> tensors, IReadOnlyDictionary<string, string> metadata)
    {
        Path = path;
        this.stream = stream;
        this.map = map;
        this.view = view;
        HeaderLength = headerLength;
        FileLength = fileLength;
        dataStart = 8 + headerLength;
        Tensors = tensors;
        Metadata = metadata;
        byName = tensors.ToDictionary(t => t.Name);
        Names = tensors.Select(t => t.Name).ToArray();
    }

    public string Path { get; }
    /// <summary>Length of the JSON header in bytes (N).</summary>
    public long HeaderLength { get; }
    public long FileLength { get; }
    /// <summary>Every tensor, in data-offset order.</summary>
    public IReadOnlyList<SafeTensorInfo> Tensors { get; }
    public IReadOnlyList<string> Names { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }

    public SafeTensorsReadMode Mode => view is null ? SafeTensorsReadMode.PositionalReads : SafeTensorsReadMode.MemoryMapped;

    /// <summary>Opens <paramref name="path"/> and validates its header.</summary>
    public static SafeTensorsFile Open(string path, SafeTensorsReadMode mode = SafeTensorsReadMode.PositionalReads)
    {
        if (!BitConverter.IsLittleEndian) throw new EngineException("safetensors reading needs a little-endian machine");
        if (Directory.Exists(path)) throw new EngineException($"{path}: is a folder, not a safetensors file");
        if (!File.Exists(path)) throw new EngineException($"{path}: no such file");
        // FileShare.Delete lets a writer atomically replace the file while it is open here.
        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete);
        long fileLength = stream.Length;
        MemoryMappedFile? map = null;
        MemoryMappedViewAccessor? view = null;
        try
        {
            if (fileLength == 0) throw new EngineException($"{path}: the file is empty (0 bytes), not a safetensors file");
            Span<byte> head = stackalloc byte[(int)Math.Min(fileLength, 32)];
            stream.ReadExactly(head);
            if (SafeTensorsFormat.RecogniseForeignFormat(head) is { } foreign) throw new EngineException($"{path}: {foreign}");
            if (fileLength < 8)
                throw new EngineException($"{path}: the file has {fileLength} bytes, fewer than the 8-byte header length; truncated or not a safetensors file");
            ulong n = BinaryPrimitives.ReadUInt64LittleEndian(head);
            if (n > SafeTensorsFormat.MaxHeaderBytes)
                throw new EngineException($"{path}: header length {n} is larger than the {SafeTensorsFormat.MaxHeaderBytes / 1_000_000} MB cap; not a safetensors file, or a corrupt one");
            if ((long)n > fileLength - 8)
                throw new EngineException($"{path}: header length {n} runs past the end of the file ({fileLength} bytes); the file is truncated or not safetensors");
            var header = new byte[n];
            stream.Position = 8;
            stream.ReadExactly(header);
            var (tensors, metadata) = ParseHeader(path, header, fileLength - 8 - (long)n);

            if (mode == SafeTensorsReadMode.MemoryMapped)
            {
                map = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: true);
                view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            }
            return new SafeTensorsFile(path, stream, map, view, (long)n, fileLength, tensors, metadata);
        }
        catch
        {
            view?.Dispose();
            map?.Dispose();
            stream.Dispose();
            throw;
        }
    }

    public bool Contains(string name) => byName.ContainsKey(name);

    public SafeTensorInfo Info(string name) =>
        byName.TryGetValue(name, out var info) ? info : throw new EngineException($"{Path}: no tensor named '{name}'");

    /// <summary>Copies the raw little-endian bytes of one tensor into <paramref name="destination"/>
    /// (which must be exactly <see cref="SafeTensorInfo.ByteLength"/> long).</summary>
    public void ReadBytes(string name, Span<byte> destination)
    {
        var info = Info(name);
        if (destination.Length != info.ByteLength)
            throw new ArgumentException($"tensor '{name}' has {info.ByteLength} bytes; the destination holds {destination.Length}");
        CopyOut(info.DataBegin, destination);
    }

    public Tensor Read(string name)
    {
        var info = Info(name);
        var storage = AllocateFor(info, info.DType);
        long done = 0, total = info.ByteLength;
        while (done < total)
        {
            int chunk = (int)Math.Min(total - done, 1 << 30);
            CopyOut(info.DataBegin + done, SafeTensorsFormat.BytesOf(storage.Data, done, chunk));
            done += chunk;
        }
        return new Tensor(storage, (int[])info.Shape.Clone());
    }

    public Tensor ReadAs(string name, DType dtype)
    {
        var info = Info(name);
        if (info.DType == dtype) return Read(name);
        bool possible = dtype switch
        {
            DType.F32 or DType.F64 => true,
            DType.I32 or DType.I64 => !info.DType.IsFloat(),
            _ => false,
        };
        if (!possible)
            throw new EngineException($"{Path}: tensor '{name}' is {info.DType.SafetensorsName()}, which cannot be converted to {dtype.SafetensorsName()}");
        var storage = AllocateFor(info, dtype);
        // Convert in chunks through a pooled buffer, so no second full-size copy is made.
        int size = info.DType.SizeOf();
        const int ChunkElements = 1 << 18;
        var buffer = ArrayPool<byte>.Shared.Rent(ChunkElements * size);
        try
        {
            for (long at = 0; at < info.Numel; at += ChunkElements)
            {
                int count = (int)Math.Min(ChunkElements, info.Numel - at);
                var bytes = buffer.AsSpan(0, count * size);
                CopyOut(info.DataBegin + at * size, bytes);
                switch (storage.Data)
                {
                    case float[] f: SafeTensorsFormat.ToFloating(info.DType, bytes, f.AsSpan((int)at, count)); break;
                    case double[] d: SafeTensorsFormat.ToFloating(info.DType, bytes, d.AsSpan((int)at, count)); break;
                    case int[] i:
                        if (!SafeTensorsFormat.ToInteger(info.DType, bytes, i.AsSpan((int)at, count), out int bad))
                            throw new EngineException($"{Path}: tensor '{name}': element {at + bad} does not fit in I32");
                        break;
                    case long[] l: SafeTensorsFormat.ToInteger(info.DType, bytes, l.AsSpan((int)at, count), out _); break;
                }
            }
        }
        finally { ArrayPool<byte>.Shared.Return(buffer); }
        return new Tensor(storage, (int[])info.Shape.Clone());
    }

    /// <summary>Reads every tensor in the file's own dtype.</summary>
    public Dictionary<string, Tensor> ReadAll() => Names.ToDictionary(n => n, Read);

    private CpuStorage AllocateFor(SafeTensorInfo info, DType dtype)
    {
        if (info.Numel > Array.MaxLength)
            throw new EngineException($"{Path}: tensor '{info.Name}' has {info.Numel} elements, more than one CPU array can hold");
        return CpuStorage.Allocate(dtype, info.Numel, zero: false);
    }

    private void CopyOut(long dataOffset, Span<byte> destination)
    {
        if (view is not null)
        {
            view.SafeMemoryMappedViewHandle.ReadSpan((ulong)(view.PointerOffset + dataStart + dataOffset), destination);
            return;
        }
        for (int done = 0; done < destination.Length;)
        {
            int n = RandomAccess.Read(stream.SafeFileHandle, destination[done..], dataStart + dataOffset + done);
            if (n <= 0) throw new EngineException($"{Path}: the file ended early (was it truncated while open?)");
            done += n;
        }
    }

    public void Dispose()
    {
        view?.Dispose();
        map?.Dispose();
        stream.Dispose();
    }

    // ------------------------------------------------------------------ header

    /// <summary>
    /// Parses and validates a header. <paramref name="dataLength"/> is the number of bytes after
    /// the header. Returns the tensors sorted by offset and the metadata map. Checks, in order:
    /// valid JSON, an object, no duplicate keys (JsonDocument keeps duplicates, so they are
    /// counted here), each entry's dtype/shape/data_offsets, the byte size against dtype × shape,
    /// and finally that the offsets tile the data buffer exactly.
    /// </summary>
    internal static (List<SafeTensorInfo> Tensors, Dictionary<string, string> Metadata) ParseHeader(string path, ReadOnlySpan<byte> header, long dataLength)
    {
        if (!System.Text.Unicode.Utf8.IsValid(header))
            throw new EngineException($"{path}: the header is not valid UTF-8; the file is corrupt or not safetensors");
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(header.ToArray(), new JsonDocumentOptions { MaxDepth = 16 });
        }
        catch (JsonException e)
        {
            throw new EngineException($"{path}: the header is not valid JSON ({FirstLine(e.Message)})");
        }
        using (doc)
        {
            try { return ReadHeader(path, doc.RootElement, dataLength); }
            catch (InvalidOperationException e) // a string escape that is not valid UTF-16, such as a lone \ud800
            {
                throw new EngineException($"{path}: the header holds an invalid string ({FirstLine(e.Message)})");
            }
        }
    }

    private static (List<SafeTensorInfo> Tensors, Dictionary<string, string> Metadata) ReadHeader(string path, JsonElement root, long dataLength)
    {
        if (root.ValueKind != JsonValueKind.Object)
            throw new EngineException($"{path}: the header is a JSON {Kind(root)}, not an object of tensor entries");
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var tensors = new List<SafeTensorInfo>();
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var entry in root.EnumerateObject())
        {
            if (!seen.Add(entry.Name)) throw new EngineException($"{path}: the header names '{entry.Name}' twice");
            if (entry.Name == SafeTensorsFormat.MetadataKey) ReadMetadata(path, entry.Value, metadata);
            else tensors.Add(ReadEntry(path, entry.Name, entry.Value, dataLength));
        }
        CheckCoverage(path, tensors, dataLength);
        return (tensors, metadata);
    }

    private static void ReadMetadata(string path, JsonElement value, Dictionary<string, string> metadata)
    {
        if (value.ValueKind != JsonValueKind.Object)
            throw new EngineException($"{path}: __metadata__ is a JSON {Kind(value)}; it must be an object of strings");
        foreach (var p in value.EnumerateObject())
        {
            if (p.Value.ValueKind != JsonValueKind.String)
                throw new EngineException($"{path}: __metadata__ entry '{p.Name}' is a JSON {Kind(p.Value)}; metadata values must be strings");
            if (!metadata.TryAdd(p.Name, p.Value.GetString()!))
                throw new EngineException($"{path}: __metadata__ names '{p.Name}' twice");
        }
    }

    private static SafeTensorInfo ReadEntry(string path, string name, JsonElement value, long dataLength)
    {
        string where = $"{path}: tensor '{name}'";
        if (value.ValueKind != JsonValueKind.Object)
            throw new EngineException($"{where}: the entry is a JSON {Kind(value)}; expected {{\"dtype\", \"shape\", \"data_offsets\"}}");
        JsonElement? dtypeEl = null, shapeEl = null, offsetsEl = null;
        var keys = new HashSet<string>(StringComparer.Ordinal);
        foreach (var p in value.EnumerateObject())
        {
            if (!keys.Add(p.Name)) throw new EngineException($"{where}: the entry has '{p.Name}' twice");
            switch (p.Name)
            {
                case "dtype": dtypeEl = p.Value; break;
                case "shape": shapeEl = p.Value; break;
                case "data_offsets": offsetsEl = p.Value; break;
                    // Other keys are ignored, as the reference implementation ignores them.
            }
        }

        // dtype
        if (dtypeEl is not { } d) throw new EngineException($"{where}: the entry has no \"dtype\"");
        if (d.ValueKind != JsonValueKind.String) throw new EngineException($"{where}: \"dtype\" is a JSON {Kind(d)}, not a string");
        string dtypeName = d.GetString()!;
        var dtype = SafeTensorsFormat.ParseDType(dtypeName) ?? throw new EngineException(
            SafeTensorsFormat.IsFormatOnlyType(dtypeName)
                ? $"{where}: dtype {dtypeName} is not supported by the engine"
                : $"{where}: unknown dtype '{dtypeName}' (expected F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL, F8_E4M3 or F8_E5M2)");

        // shape: non-negative integers whose product, times the element size, does not overflow.
        if (shapeEl is not { } s) throw new EngineException($"{where}: the entry has no \"shape\"");
        if (s.ValueKind != JsonValueKind.Array) throw new EngineException($"{where}: \"shape\" is a JSON {Kind(s)}, not an array");
        var shape = new int[s.GetArrayLength()];
        long numel = 1;
        bool overflow = false;
        int k = 0;
        foreach (var dim in s.EnumerateArray())
        {
            if (dim.ValueKind != JsonValueKind.Number || !dim.TryGetInt64(out long v))
                throw new EngineException($"{where}: shape entry {dim.GetRawText()} is not an integer");
            if (v < 0) throw new EngineException($"{where}: shape has a negative dimension ({v})");
            if (v > int.MaxValue) throw new EngineException($"{where}: shape dimension {v} is larger than the engine supports ({int.MaxValue})");
            shape[k++] = (int)v;
            if (!overflow)
            {
                long high = Math.BigMul(numel, v, out long low);
                if (high != 0 || low < 0) overflow = true;
                else numel = low;
            }
        }
        long bytes = 0;
        if (overflow || Math.BigMul(numel, dtype.SizeOf(), out bytes) != 0 || bytes < 0)
            throw new EngineException($"{where}: shape {Shape.Format(shape)} overflows (the element count times {dtype.SizeOf()} bytes does not fit in 64 bits)");

        // data_offsets: [begin, end], begin ≤ end ≤ the data length, and end − begin = the byte size.
        if (offsetsEl is not { } o) throw new EngineException($"{where}: the entry has no \"data_offsets\"");
        if (o.ValueKind != JsonValueKind.Array || o.GetArrayLength() != 2)
            throw new EngineException($"{where}: \"data_offsets\" must be an array of two integers [begin, end]; got {Clip(o.GetRawText())}");
        var off = new long[2];
        for (int i = 0; i < 2; i++)
        {
            var e = o[i];
            if (e.ValueKind != JsonValueKind.Number || !e.TryGetUInt64(out ulong u))
                throw new EngineException($"{where}: data_offsets entry {Clip(e.GetRawText())} is not a non-negative integer");
            off[i] = u > long.MaxValue ? long.MaxValue : (long)u;
        }
        if (off[0] > off[1]) throw new EngineException($"{where}: data_offsets [{off[0]}, {off[1]}] are reversed (begin after end)");
        if (off[1] > dataLength)
            throw new EngineException($"{where}: data_offsets [{off[0]}, {off[1]}] run past the end of the data ({dataLength} bytes); the file is truncated or the offsets are wrong");
        if (off[1] - off[0] != bytes)
            throw new EngineException($"{where}: data_offsets [{off[0]}, {off[1]}] hold {off[1] - off[0]} bytes, but {dtype.SafetensorsName()} × {Shape.Format(shape)} needs {bytes}");
        return new SafeTensorInfo(name, dtype, shape, off[0], off[1], path);
    }

    /// <summary>Sorted by offset, the tensors must tile [0, dataLength) exactly.</summary>
    private static void CheckCoverage(string path, List<SafeTensorInfo> tensors, long dataLength)
    {
        tensors.Sort((a, b) => a.DataBegin != b.DataBegin ? a.DataBegin.CompareTo(b.DataBegin) : a.DataEnd.CompareTo(b.DataEnd));
        long at = 0;
        SafeTensorInfo? previous = null;
        foreach (var t in tensors)
        {
            if (t.DataBegin < at)
                throw new EngineException($"{path}: tensor '{t.Name}' (bytes {t.DataBegin}..{t.DataEnd}) overlaps tensor '{previous!.Name}' (bytes {previous.DataBegin}..{previous.DataEnd})");
            if (t.DataBegin > at)
                throw new EngineException($"{path}: bytes {at}..{t.DataBegin} of the data, before tensor '{t.Name}', belong to no tensor (a hole)");
            at = t.DataEnd;
            previous = t;
        }
        if (at != dataLength)
            throw new EngineException($"{path}: the last {dataLength - at} bytes of the data belong to no tensor (the tensors cover {at} of {dataLength} bytes)");
    }

    private static string Kind(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Object => "object", JsonValueKind.Array => "array", JsonValueKind.String => "string",
        JsonValueKind.Number => "number", JsonValueKind.True or JsonValueKind.False => "boolean", _ => "null",
    };

    private static string Clip(string s) => s.Length <= 60 ? s : s[..57] + "...";

    private static string FirstLine(string s)
    {
        int i = s.IndexOfAny(['\r', '\n']);
        return i < 0 ? s : s[..i];
    }
}
