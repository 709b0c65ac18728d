using System.Text.Json.Nodes;

namespace Engine.Models.Peft;

/// <summary>
/// What <see cref="PeftSetup"/> installed on a classifier: the options (method name, its
/// settings, pooling), the pooling, the method's <see cref="InstalledMethod"/>, and the base
/// model's path (written into adapter files). It decides which parameters train and are saved
/// (asking the method) and writes itself into config.json as "engine_peft": the method's name, the
/// pooling and the base path, plus the method's own section under its name, e.g.
/// <code>
/// "engine_peft": { "method": "lora", "pooling": "depthwise:cls", "base_model_name_or_path": "…",
///                  "lora": { "r": 8, "lora_alpha": 16, "lora_dropout": 0.1, "targets": "query,value",
///                            "use_rslora": false, "merged": false } }
/// </code>
/// </summary>
public sealed class PeftState
{
    public const string ConfigKey = "engine_peft";

    public required PeftOptions Options { get; init; }
    public PoolingSpec? Pooling { get; init; }
    public required InstalledMethod Method { get; init; }
    public string? BaseModelPath { get; set; }

    /// <summary>Whether the method trains this parameter.</summary>
    public bool Trains(string name) => Method.Trains(name);

    public bool Saves(string name) => Method.Saves(name);

    public JsonObject ToConfig()
    {
        var config = new JsonObject
        {
            ["method"] = Options.Method,
            ["pooling"] = Pooling?.ToString(),
            ["base_model_name_or_path"] = BaseModelPath,
        };
        if (Method.ConfigSection() is { } section) config[Options.Method] = section;
        return config;
    }

    /// <summary>Reads "engine_peft" back: the options, the method's own section, and the base path.</summary>
    public static (PeftOptions Options, JsonNode? Section, string? BasePath) FromConfig(JsonNode node, string where)
    {
        try
        {
            var name = node["method"]?.GetValue<string>() ?? PeftOptions.Full;
            var method = MethodRegistry.All.FirstOrDefault(m => m.Name == name)
                ?? throw new EngineException($"{where}: \"{ConfigKey}\" names method '{name}', which this engine does not have ({string.Join(", ", MethodRegistry.Names)})");
            var section = node[name];
            var options = new PeftOptions { Method = name, Pooling = node["pooling"]?.GetValue<string>(), Settings = method.FromConfig(section) };
            options.Validate();
            return (options, section, node["base_model_name_or_path"]?.GetValue<string>());
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException or NullReferenceException or KeyNotFoundException)
        {
            throw new EngineException($"{where}: \"{ConfigKey}\" is malformed ({e.Message})");
        }
    }

    /// <summary>A method with adapter files also writes them into each checkpoint (unless merged).</summary>
    public void SaveExtras(string folder, SequenceClassifier model, HfModelFolder source)
    {
        var basePath = BaseModelPath ?? Path.GetFullPath(source.Path);
        if (Method.AdapterConfig(basePath) is { } config) AdapterFiles.Save(folder, model, config);
    }
}
