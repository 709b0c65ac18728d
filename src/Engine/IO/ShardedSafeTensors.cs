using System.Text.Json;

namespace Engine.IO;

/// <summary>
/// A model split over several safetensors files, described by an index
/// (<c>model.safetensors.index.json</c>, as Hugging Face writes it):
///
///     {"metadata": {"total_size": 123456}, "weight_map": {"tensor name": "shard file name", ...}}
///
/// Shard names are file names in the index's folder (a name that climbs out of it, or an
/// absolute path, is refused). Shards are opened (mapped, header validated) on first use, so
/// listing names costs one small JSON read and reading one tensor maps only its shard.
/// </summary>
public sealed class ShardedSafeTensors : IWeightSource
{
    private readonly string folder;
    private readonly Dictionary<string, string> shardOf;
    private readonly Dictionary<string, SafeTensorsFile> open = new(StringComparer.Ordinal);

    private ShardedSafeTensors(string path, string folder, Dictionary<string, string> shardOf, List<string> names,
        Dictionary<string, string> metadata)
    {
        Path = path;
        this.folder = folder;
        this.shardOf = shardOf;
        Names = names;
        Metadata = metadata;
        Shards = shardOf.Values.Distinct().Order(StringComparer.Ordinal).ToArray();
    }

    public string Path { get; }
    public IReadOnlyList<string> Names { get; }
    /// <summary>The index's "metadata" entries (numbers such as total_size as their JSON text).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }
    /// <summary>The shard file names, sorted.</summary>
    public IReadOnlyList<string> Shards { get; }

    public static ShardedSafeTensors Open(string indexPath)
    {
        if (!File.Exists(indexPath)) throw new EngineException($"{indexPath}: no such file");
        var folder = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(indexPath))!;
        var info = new FileInfo(indexPath);
        if (info.Length > SafeTensorsFormat.MaxHeaderBytes)
            throw new EngineException($"{indexPath}: the index is {info.Length} bytes, larger than the {SafeTensorsFormat.MaxHeaderBytes / 1_000_000} MB cap");
        var bytes = File.ReadAllBytes(indexPath);
        if (bytes.Length > 0 && SafeTensorsFormat.RecogniseForeignFormat(bytes.AsSpan(0, Math.Min(bytes.Length, 32))) is { } foreign)
            throw new EngineException($"{indexPath}: {foreign}");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(bytes); }
        catch (JsonException e) { throw new EngineException($"{indexPath}: the index is not valid JSON ({e.Message.Split('\n')[0]})"); }
        using (doc)
        try
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw new EngineException($"{indexPath}: the index is not a JSON object");
            if (!root.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new EngineException($"{indexPath}: the index has no \"weight_map\" object");
            var shardOf = new Dictionary<string, string>(StringComparer.Ordinal);
            var names = new List<string>();
            foreach (var p in map.EnumerateObject())
            {
                if (p.Value.ValueKind != JsonValueKind.String)
                    throw new EngineException($"{indexPath}: weight_map entry '{p.Name}' is not a file name string");
                var shard = p.Value.GetString()!;
                if (shard.Length == 0 || shard != System.IO.Path.GetFileName(shard) || shard is "." or "..")
                    throw new EngineException($"{indexPath}: weight_map entry '{p.Name}' names shard '{shard}', which is not a plain file name in the index's folder");
                if (!shardOf.TryAdd(p.Name, shard)) throw new EngineException($"{indexPath}: weight_map names '{p.Name}' twice");
                names.Add(p.Name);
            }
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            if (root.TryGetProperty("metadata", out var meta) && meta.ValueKind == JsonValueKind.Object)
                foreach (var p in meta.EnumerateObject())
                    metadata[p.Name] = p.Value.ValueKind == JsonValueKind.String ? p.Value.GetString()! : p.Value.GetRawText();
            foreach (var shard in shardOf.Values.Distinct())
                if (!File.Exists(System.IO.Path.Combine(folder, shard)))
                    throw new EngineException($"{indexPath}: shard '{shard}' named in weight_map is missing from {folder}");
            return new ShardedSafeTensors(indexPath, folder, shardOf, names, metadata);
        }
        catch (InvalidOperationException e) // a string escape that is not valid UTF-16
        {
            throw new EngineException($"{indexPath}: the index holds an invalid string ({e.Message.Split('\n')[0]})");
        }
    }

    public bool Contains(string name) => shardOf.ContainsKey(name);

    /// <summary>The opened shard that holds <paramref name="name"/>.</summary>
    public SafeTensorsFile ShardFor(string name)
    {
        if (!shardOf.TryGetValue(name, out var shard)) throw new EngineException($"{Path}: no tensor named '{name}'");
        var file = OpenShard(shard);
        if (!file.Contains(name))
            throw new EngineException($"{Path}: weight_map puts tensor '{name}' in '{shard}', but that shard does not hold it");
        return file;
    }

    /// <summary>Opens (once) and returns one shard by file name.</summary>
    public SafeTensorsFile OpenShard(string shard)
    {
        if (!open.TryGetValue(shard, out var file))
        {
            file = SafeTensorsFile.Open(System.IO.Path.Combine(folder, shard));
            open[shard] = file;
        }
        return file;
    }

    public SafeTensorInfo Info(string name) => ShardFor(name).Info(name);
    public Tensor Read(string name) => ShardFor(name).Read(name);
    public Tensor ReadAs(string name, DType dtype) => ShardFor(name).ReadAs(name, dtype);

    public void Dispose()
    {
        foreach (var f in open.Values) f.Dispose();
        open.Clear();
    }
}
