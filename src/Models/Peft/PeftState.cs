using System.Text.Json.Nodes;
using Engine.Models.Peft.BitFit;
using Engine.Models.Peft.Head;
using Engine.Models.Peft.Lora;
using Engine.Models.Peft.Prefix;
using Engine.Models.Peft.Prompt;

namespace Engine.Models.Peft;

/// <summary>
/// What <see cref="PeftSetup"/> installed on a classifier: the options, the pooling, the LoRA
/// adapters by module path, and the base model's path (written into adapter_config.json). It
/// decides which parameters train (<see cref="Trains"/>) and which are saved
/// (<see cref="Saves"/>), and writes itself into config.json as "engine_peft":
/// <code>
/// "engine_peft": { "method": "lora", "pooling": "depthwise:cls", "base_model_name_or_path": "…",
///                  "lora": { "r": 8, "lora_alpha": 16, "lora_dropout": 0.1, "targets": "query,value",
///                            "use_rslora": false, "merged": false },
///                  "prefix": { "length": 20, "projection": null }, "prompt": { "length": 20 } }
/// </code>
/// </summary>
public sealed class PeftState
{
    public const string ConfigKey = "engine_peft";

    public required PeftOptions Options { get; init; }
    public PoolingSpec? Pooling { get; init; }
    public IReadOnlyDictionary<string, LoraAdapter>? Adapters { get; init; }
    public string? BaseModelPath { get; set; }
    /// <summary>A LoRA model loaded merged (its adapters were folded into the weights before saving).</summary>
    public bool LoadedMerged { get; init; }

    public bool Merged => LoadedMerged || (Adapters?.Values.Any(a => a.Merged) ?? false);

    /// <summary>Whether the method trains this parameter (every method trains the head and the pooling weights).</summary>
    public bool Trains(string name) => Options.Method switch
    {
        PeftOptions.Full => true,
        PeftOptions.Head => HeadOnly.Trains(name),
        PeftOptions.BitFit => BitFitMethod.Trains(name),
        PeftOptions.Lora => HeadOnly.Trains(name) || LoraModel.IsAdapterParameter(name),
        PeftOptions.Prefix => HeadOnly.Trains(name) || name.StartsWith(PrefixEncoder.ModuleName + ".", StringComparison.Ordinal),
        PeftOptions.Prompt => HeadOnly.Trains(name) || name.StartsWith(PromptEmbedding.ModuleName + ".", StringComparison.Ordinal),
        _ => throw new EngineException($"unknown method '{Options.Method}'"),
    };

    /// <summary>Merged adapters are not saved: their product is in the weights.</summary>
    public bool Saves(string name) => !(Merged && LoraModel.IsAdapterParameter(name));

    public JsonObject ToConfig(SequenceClassifier model)
    {
        var o = Options;
        var config = new JsonObject
        {
            ["method"] = o.Method,
            ["pooling"] = Pooling?.ToString(),
            ["base_model_name_or_path"] = BaseModelPath,
        };
        if (o.Method == PeftOptions.Lora)
            config["lora"] = new JsonObject
            {
                ["r"] = o.LoraSettings.Rank, ["lora_alpha"] = o.LoraSettings.Alpha, ["lora_dropout"] = o.LoraSettings.Dropout,
                ["targets"] = o.LoraSettings.Targets ?? string.Join(",", PeftFamily.DefaultLoraTargets(model)),
                ["use_rslora"] = o.LoraSettings.UseRsLora, ["merged"] = Merged,
            };
        if (o.Method == PeftOptions.Prefix) config["prefix"] = new JsonObject { ["length"] = o.PrefixLength, ["projection"] = o.PrefixProjection };
        if (o.Method == PeftOptions.Prompt) config["prompt"] = new JsonObject { ["length"] = o.PromptLength };
        return config;
    }

    /// <summary>Reads "engine_peft" back into options (and whether LoRA was saved merged).</summary>
    public static (PeftOptions Options, bool Merged, string? BasePath) FromConfig(JsonNode node, string where)
    {
        try
        {
            var method = node["method"]?.GetValue<string>() ?? PeftOptions.Full;
            var lora = node["lora"];
            var options = new PeftOptions
            {
                Method = method,
                Pooling = node["pooling"]?.GetValue<string>(),
                LoraSettings = lora is null ? new LoraOptions() : new LoraOptions
                {
                    Rank = lora["r"]!.GetValue<int>(), Alpha = lora["lora_alpha"]!.GetValue<double>(), Dropout = lora["lora_dropout"]!.GetValue<double>(),
                    Targets = lora["targets"]?.GetValue<string>(), UseRsLora = lora["use_rslora"]?.GetValue<bool>() ?? false,
                },
                PrefixLength = node["prefix"]?["length"]?.GetValue<int>() ?? 20,
                PrefixProjection = node["prefix"]?["projection"]?.GetValue<int?>(),
                PromptLength = node["prompt"]?["length"]?.GetValue<int>() ?? 20,
            };
            options.Validate();
            return (options, lora?["merged"]?.GetValue<bool>() ?? false, node["base_model_name_or_path"]?.GetValue<string>());
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException or NullReferenceException)
        {
            throw new EngineException($"{where}: \"{ConfigKey}\" is malformed ({e.Message})");
        }
    }

    /// <summary>A LoRA model's checkpoint also holds the adapter in PEFT's format.</summary>
    public void SaveExtras(string folder, SequenceClassifier model, HfModelFolder source)
    {
        if (Adapters is { Count: > 0 } && !Merged)
            PeftAdapter.Save(folder, model, BaseModelPath ?? System.IO.Path.GetFullPath(source.Path));
    }
}
