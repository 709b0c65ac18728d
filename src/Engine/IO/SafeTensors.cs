namespace Engine.IO;

/// <summary>
/// The entry points for safetensors files. Reading:
///
///     using var weights = SafeTensors.Open("model.safetensors");      // or an index, or a folder
///     foreach (var name in weights.Names) Console.WriteLine(weights.Info(name));
///     Tensor w = weights.ReadAs("embed.weight", DType.F32);            // BF16 in the file → F32
///
/// Writing: <c>SafeTensors.Save(path, tensors, metadata)</c>, or a <see cref="SafeTensorsWriter"/>
/// for raw bytes and streamed tensors.
/// </summary>
public static class SafeTensors
{
    /// <summary>The name of the single-file weights in a Hugging Face folder.</summary>
    public const string SingleFileName = "model.safetensors";
    /// <summary>The name of the index of a sharded model in a Hugging Face folder.</summary>
    public const string IndexFileName = "model.safetensors.index.json";

    /// <summary>Opens a .safetensors file, a sharded model's index (*.json), or a folder holding
    /// model.safetensors or model.safetensors.index.json.</summary>
    public static IWeightSource Open(string path)
    {
        if (Directory.Exists(path))
        {
            var single = System.IO.Path.Combine(path, SingleFileName);
            var index = System.IO.Path.Combine(path, IndexFileName);
            if (File.Exists(single)) return SafeTensorsFile.Open(single);
            if (File.Exists(index)) return ShardedSafeTensors.Open(index);
            throw new EngineException($"{path}: the folder has neither {SingleFileName} nor {IndexFileName}");
        }
        if (path.EndsWith(".json", StringComparison.OrdinalIgnoreCase)) return ShardedSafeTensors.Open(path);
        return SafeTensorsFile.Open(path);
    }

    /// <summary>Writes <paramref name="tensors"/> atomically (see <see cref="SafeTensorsWriter"/>).</summary>
    public static void Save(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var writer = new SafeTensorsWriter(metadata);
        foreach (var (name, t) in tensors) writer.Add(name, t);
        writer.Save(path);
    }

    /// <summary>Reads every tensor of a file, index or folder, each converted to <paramref name="dtype"/>
    /// (null: each in its stored dtype).</summary>
    public static Dictionary<string, Tensor> Load(string path, DType? dtype = null)
    {
        using var source = Open(path);
        return source.Names.ToDictionary(n => n, n => dtype is { } d ? source.ReadAs(n, d) : source.Read(n));
    }
}
