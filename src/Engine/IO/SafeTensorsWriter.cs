using System.Buffers.Binary;
using System.Text;

namespace Engine.IO;

/// <summary>
/// Writes a safetensors file byte-compatible with the Python <c>safetensors</c> package:
/// tensors sorted by descending dtype alignment then by name, the header compact JSON
/// ("__metadata__" first, then the tensors in data order, each as
/// {"dtype":..,"shape":[..],"data_offsets":[b,e]}) padded with spaces to a multiple of 8 bytes.
/// One difference: Python keeps metadata in a hash map, so with two or more metadata keys its
/// key order is arbitrary; here metadata keys are written in byte-wise order.
///
/// <see cref="Save"/> is atomic: it writes a temporary file in the destination's folder,
/// flushes it to disk, and renames it over the destination. If anything fails on the way (a bad
/// tensor, a full disk, a data callback that throws) the temporary file is deleted and a
/// previous file at the destination is left as it was.
/// </summary>
public sealed class SafeTensorsWriter
{
    private sealed record Entry(string Name, DType DType, int[] Shape, long ByteLength, Action<Stream> WriteData);

    private readonly List<Entry> entries = [];
    private readonly HashSet<string> names = new(StringComparer.Ordinal);
    private readonly SortedDictionary<string, string> metadata = new(Comparer<string>.Create(SafeTensorsFormat.CompareNames));

    private readonly bool hasMetadata;

    /// <summary>A writer for a file with the given metadata. The header holds "__metadata__"
    /// whenever a map is given, even an empty one (as Python does for an empty dict), and not at
    /// all for null.</summary>
    public SafeTensorsWriter(IReadOnlyDictionary<string, string>? metadata = null)
    {
        if (metadata is null) return;
        hasMetadata = true;
        foreach (var (k, v) in metadata) this.metadata[k] = v;
    }

    /// <summary>Adds a tensor (any dtype; a GPU tensor is copied to the host when written).</summary>
    public SafeTensorsWriter Add(string name, Tensor tensor)
    {
        var shape = tensor.ShapeArray;
        var dtype = tensor.DType;
        long bytes = tensor.Numel * dtype.SizeOf();
        return AddEntry(name, dtype, shape, bytes, stream =>
        {
            var host = tensor.Device == Device.Cpu ? tensor : tensor.To(Device.Cpu);
            var data = ((CpuStorage)host.Storage).Data;
            long start = host.Offset * dtype.SizeOf();
            for (long done = 0; done < bytes;)
            {
                int chunk = (int)Math.Min(bytes - done, 1 << 30);
                stream.Write(SafeTensorsFormat.BytesOf(data, start + done, chunk));
                done += chunk;
            }
        });
    }

    /// <summary>Adds a tensor given as raw little-endian bytes.</summary>
    public SafeTensorsWriter Add(string name, DType dtype, int[] shape, ReadOnlyMemory<byte> data)
    {
        long expected = CheckedBytes(name, dtype, shape);
        if (data.Length != expected)
            throw new EngineException($"tensor '{name}': {data.Length} bytes given, but {dtype.SafetensorsName()} × {Shape.Format(shape)} needs {expected}");
        return AddEntry(name, dtype, shape, expected, stream => stream.Write(data.Span));
    }

    /// <summary>Adds a tensor whose bytes <paramref name="writeData"/> streams when the file is
    /// written (it must write exactly dtype size × element count bytes).</summary>
    public SafeTensorsWriter Add(string name, DType dtype, int[] shape, Action<Stream> writeData) =>
        AddEntry(name, dtype, shape, CheckedBytes(name, dtype, shape), writeData);

    private SafeTensorsWriter AddEntry(string name, DType dtype, int[] shape, long bytes, Action<Stream> write)
    {
        if (name == SafeTensorsFormat.MetadataKey) throw new EngineException($"'{name}' is reserved for metadata and cannot name a tensor");
        if (!names.Add(name)) throw new EngineException($"tensor '{name}' is added twice");
        SafeTensorsFormat.AlignmentRank(dtype); // every DType is writable; this throws for none
        entries.Add(new Entry(name, dtype, (int[])shape.Clone(), bytes, write));
        return this;
    }

    private static long CheckedBytes(string name, DType dtype, int[] shape)
    {
        foreach (var d in shape)
            if (d < 0) throw new EngineException($"tensor '{name}': shape {Shape.Format(shape)} has a negative dimension");
        return checked(Shape.Numel(shape) * dtype.SizeOf());
    }

    /// <summary>The header bytes (JSON plus padding, without the 8-byte length) and the entries
    /// in data order.</summary>
    private (byte[] Header, List<Entry> Ordered) Prepare()
    {
        var ordered = entries.ToList();
        ordered.Sort((a, b) =>
        {
            int byType = SafeTensorsFormat.AlignmentRank(b.DType).CompareTo(SafeTensorsFormat.AlignmentRank(a.DType));
            return byType != 0 ? byType : SafeTensorsFormat.CompareNames(a.Name, b.Name);
        });
        var sb = new StringBuilder("{");
        bool first = true;
        if (hasMetadata)
        {
            SafeTensorsFormat.AppendJsonString(sb, SafeTensorsFormat.MetadataKey);
            sb.Append(":{");
            bool firstKey = true;
            foreach (var (k, v) in metadata)
            {
                if (!firstKey) sb.Append(',');
                SafeTensorsFormat.AppendJsonString(sb, k);
                sb.Append(':');
                SafeTensorsFormat.AppendJsonString(sb, v);
                firstKey = false;
            }
            sb.Append('}');
            first = false;
        }
        long offset = 0;
        foreach (var e in ordered)
        {
            if (!first) sb.Append(',');
            first = false;
            SafeTensorsFormat.AppendJsonString(sb, e.Name);
            sb.Append(":{\"dtype\":\"").Append(e.DType.SafetensorsName()).Append("\",\"shape\":[");
            sb.Append(string.Join(',', e.Shape));
            sb.Append("],\"data_offsets\":[").Append(offset).Append(',').Append(offset + e.ByteLength).Append("]}");
            offset += e.ByteLength;
        }
        sb.Append('}');
        var json = Encoding.UTF8.GetBytes(sb.ToString());
        int pad = (8 - json.Length % 8) % 8;
        var header = new byte[json.Length + pad];
        json.CopyTo(header, 0);
        header.AsSpan(json.Length).Fill((byte)' ');
        return (header, ordered);
    }

    /// <summary>Writes the whole file to <paramref name="stream"/>.</summary>
    public void WriteTo(Stream stream)
    {
        var (header, ordered) = Prepare();
        Span<byte> n = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(n, (ulong)header.Length);
        stream.Write(n);
        stream.Write(header);
        foreach (var e in ordered)
        {
            long before = stream.Position;
            e.WriteData(stream);
            long written = stream.Position - before;
            if (written != e.ByteLength)
                throw new EngineException($"tensor '{e.Name}': {written} bytes were written, but {e.DType.SafetensorsName()} × {Shape.Format(e.Shape)} needs {e.ByteLength}");
        }
    }

    /// <summary>The whole file as bytes (for small files and tests).</summary>
    public byte[] ToBytes()
    {
        using var ms = new MemoryStream();
        WriteTo(ms);
        return ms.ToArray();
    }

    /// <summary>Writes the file atomically (see the class summary).</summary>
    public void Save(string path)
    {
        var full = System.IO.Path.GetFullPath(path);
        var folder = System.IO.Path.GetDirectoryName(full)!;
        if (!Directory.Exists(folder)) throw new EngineException($"{path}: folder {folder} does not exist");
        var temp = System.IO.Path.Combine(folder, $".{System.IO.Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                WriteTo(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(temp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }
}
