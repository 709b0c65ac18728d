using System.Text.Json;
using System.Text.Json.Nodes;
using Engine.IO;

namespace Engine.Models.Peft.Lora;

/// <summary>
/// LoRA adapters in Hugging Face PEFT's saved format, both ways:
/// <list type="bullet">
/// <item>adapter_config.json: peft_type "LORA", task_type "SEQ_CLS", r, lora_alpha, lora_dropout,
/// target_modules, base_model_name_or_path, modules_to_save ["classifier", "score"], bias
/// "none", use_rslora, fan_in_fan_out false, inference_mode true.</item>
/// <item>adapter_model.safetensors: <c>base_model.model.&lt;module path&gt;.lora_A.weight</c> [r, in]
/// and <c>….lora_B.weight</c> [out, r] (no adapter name in the key), and the head as PEFT's
/// get_peft_model_state_dict writes modules_to_save: <c>base_model.model.classifier.weight</c>
/// (it strips "modules_to_save." and the adapter name from
/// <c>classifier.modules_to_save.default.weight</c>).</item>
/// </list>
/// Loading accepts those keys and the unstripped forms (….modules_to_save.default.…, ….default.…).
/// </summary>
public static class PeftAdapter
{
    public const string ConfigFile = "adapter_config.json", WeightsFile = "adapter_model.safetensors", KeyPrefix = "base_model.model.";

    public static bool IsAdapterFolder(string dir) => File.Exists(Path.Combine(dir, ConfigFile));

    public static void Save(string dir, SequenceClassifier model, string baseModelPath)
    {
        var state = model.Peft ?? throw new EngineException("lora: the model has no LoRA adapters to save");
        var adapters = state.Adapters ?? throw new EngineException("lora: the model has no LoRA adapters to save");
        var o = state.Options.LoraSettings;
        // Short names when they pick out exactly the adapted layers (what people write), else full paths.
        var shortNames = LoraModel.ShortNames(adapters.Keys);
        var matcher = LoraModel.Matcher(string.Join(",", shortNames));
        bool exact = model.LinearLayers().Count(l => matcher(l.Path)) == adapters.Count;
        var targets = new JsonArray((exact ? shortNames : adapters.Keys.ToList()).Select(n => (JsonNode?)JsonValue.Create(n)).ToArray());
        var config = new JsonObject
        {
            ["peft_type"] = "LORA", ["task_type"] = "SEQ_CLS", ["r"] = o.Rank,
            ["lora_alpha"] = o.Alpha == Math.Floor(o.Alpha) ? JsonValue.Create((long)o.Alpha) : JsonValue.Create(o.Alpha),
            ["lora_dropout"] = o.Dropout, ["target_modules"] = targets, ["base_model_name_or_path"] = baseModelPath,
            ["modules_to_save"] = new JsonArray(PeftFamily.HeadModules.Select(n => (JsonNode?)JsonValue.Create(n)).ToArray()),
            ["bias"] = "none", ["use_rslora"] = o.UseRsLora, ["fan_in_fan_out"] = false, ["inference_mode"] = true,
            ["init_lora_weights"] = true, ["use_dora"] = false, ["layers_to_transform"] = null, ["layers_pattern"] = null,
            ["rank_pattern"] = new JsonObject(), ["alpha_pattern"] = new JsonObject(), ["revision"] = null,
        };
        File.WriteAllText(Path.Combine(dir, ConfigFile), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        var tensors = model.NamedParameters()
            .Where(p => LoraModel.IsAdapterParameter(p.Name) || PeftFamily.IsHead(p.Name))
            .Select(p => new KeyValuePair<string, Tensor>(KeyPrefix + p.Name, p.Param));
        SafeTensors.Save(Path.Combine(dir, WeightsFile), tensors, new Dictionary<string, string> { ["format"] = "pt" });
    }

    /// <summary>Reads adapter_config.json into LoRA options (a string target_modules is a
    /// regular expression over whole module paths, as in PEFT, unless it is "all-linear").</summary>
    public static LoraOptions ReadConfig(string dir)
    {
        var path = Path.Combine(dir, ConfigFile);
        if (!File.Exists(path)) throw new EngineException($"--adapter {dir}: no {ConfigFile}; is it a PEFT adapter folder?");
        JsonNode c;
        try { c = JsonNode.Parse(JsonText.Parse(File.ReadAllBytes(path), path).GetRawText()) ?? throw new JsonException("empty"); }
        catch (JsonException e) { throw new EngineException($"{path}: not valid JSON ({e.Message.Split('\n')[0]})"); }
        try
        {
            var type = c["peft_type"]?.GetValue<string>();
            if (type != "LORA") throw new EngineException($"{path}: peft_type '{type}' is not supported (only LORA adapters load here)");
            if (c["fan_in_fan_out"]?.GetValue<bool>() == true) throw new EngineException($"{path}: fan_in_fan_out adapters (GPT-2 Conv1D layers) are not supported");
            var bias = c["bias"]?.GetValue<string>() ?? "none";
            if (bias != "none") throw new EngineException($"{path}: bias '{bias}' is not supported (only \"none\")");
            if (c["use_dora"]?.GetValue<bool>() == true) throw new EngineException($"{path}: DoRA adapters are not supported");
            var t = c["target_modules"];
            string? targets = t switch
            {
                null => null,
                JsonArray a => string.Join(",", a.Select(x => x!.GetValue<string>())),
                _ when t.GetValue<string>() == LoraModel.AllLinear => LoraModel.AllLinear,
                _ => "re:" + t.GetValue<string>(),
            };
            var o = new LoraOptions
            {
                Rank = c["r"]!.GetValue<int>(), Alpha = c["lora_alpha"]!.GetValue<double>(), Dropout = c["lora_dropout"]?.GetValue<double>() ?? 0,
                Targets = targets, UseRsLora = c["use_rslora"]?.GetValue<bool>() ?? false,
            };
            o.Validate();
            return o;
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException or NullReferenceException or ArgumentException)
        {
            throw new EngineException($"{path}: unexpected content ({e.Message.Split('\n')[0]})");
        }
        catch (EngineException e) when (!e.Message.StartsWith(path, StringComparison.Ordinal))
        {
            throw new EngineException($"{path}: {e.Message}");
        }
    }

    /// <summary>The adapter's head output count (the rows of its classifier/score weight), or null when it has no head.</summary>
    public static int? HeadLabelCount(string dir)
    {
        using var source = SafeTensors.Open(Path.Combine(dir, WeightsFile));
        foreach (var key in source.Names)
        {
            var name = ModelName(key);
            if (name is "classifier.weight" or "classifier.out_proj.weight" or "score.weight")
                return source.Info(key).Shape[0];
        }
        return null;
    }

    /// <summary>The model parameter name a saved key stands for.</summary>
    public static string ModelName(string key)
    {
        var name = key.StartsWith(KeyPrefix, StringComparison.Ordinal) ? key[KeyPrefix.Length..] : key;
        return name.Replace(".modules_to_save.default.", ".").Replace(".modules_to_save.", ".").Replace(".default.", ".");
    }

    /// <summary>
    /// Installs LoRA as the adapter's config says and copies its weights (adapters and head)
    /// into <paramref name="model"/>, which holds the base weights. Every adapter parameter must
    /// be in the file; a key that names nothing here, or a shape that differs, is an error.
    /// </summary>
    public static void Load(SequenceClassifier model, string dir, string? baseModelPath = null, Action<string>? log = null, int seed = 0)
    {
        var options = ReadConfig(dir);
        var weightsPath = Path.Combine(dir, WeightsFile);
        if (!File.Exists(weightsPath))
            throw new EngineException($"--adapter {dir}: no {WeightsFile} (adapter_model.bin, a PyTorch pickle, is not read; save with safe_serialization=True)");
        if (model.Peft is not null) throw new EngineException($"--adapter {dir}: the model already has a method installed ({model.Peft.Options.Method})");
        PeftSetup.Apply(model, new PeftOptions { Method = PeftOptions.Lora, LoraSettings = options }, baseModelPath, seed: seed);
        var named = model.NamedParameters().ToDictionary(p => p.Name, p => p.Param);
        using var source = SafeTensors.Open(weightsPath);
        var loaded = new HashSet<string>();
        var problems = new List<string>();
        foreach (var key in source.Names)
        {
            var name = ModelName(key);
            if (!named.TryGetValue(name, out var p)) { problems.Add($"{key} (unexpected)"); continue; }
            var shape = source.Info(key).Shape;
            if (!Shape.Equal(shape, p.Shape)) { problems.Add($"{key} ({Shape.Format(shape)} in the file, {Shape.Format(p.Shape)} here)"); continue; }
            Backend.Backends.Copy(source.ReadAs(key, p.DType), p);
            loaded.Add(name);
        }
        problems.AddRange(named.Keys.Where(n => LoraModel.IsAdapterParameter(n) && !loaded.Contains(n)).Select(n => $"{KeyPrefix}{n} (missing)"));
        if (problems.Count > 0) throw new EngineException($"{weightsPath}: does not fit this model: {string.Join(", ", problems.Take(8))}{(problems.Count > 8 ? $" and {problems.Count - 8} more" : "")}");
        if (!loaded.Any(PeftFamily.IsHead)) log?.Invoke($"{weightsPath}: no classification head in the adapter; the model's own head is used");
    }
}
