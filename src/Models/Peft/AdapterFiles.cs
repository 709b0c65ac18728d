using System.Text.Json;
using System.Text.Json.Nodes;
using Engine.IO;

namespace Engine.Models.Peft;

/// <summary>
/// Adapters in Hugging Face PEFT's saved format, both ways, for every method that has one (the
/// method writes and reads adapter_config.json's content; this class the files and the tensors):
/// <list type="bullet">
/// <item>adapter_config.json: what <see cref="InstalledMethod.AdapterConfig"/> returns (peft_type,
/// task_type "SEQ_CLS", the method's settings, target_modules, base_model_name_or_path,
/// modules_to_save ["classifier", "score"], …).</item>
/// <item>adapter_model.safetensors: <c>base_model.model.&lt;parameter name&gt;</c> for every parameter
/// the method puts in its adapter (<see cref="InstalledMethod.InAdapter"/>; LoRA:
/// <c>….query.lora_A.weight</c>, no adapter name in the key), and the head as PEFT's
/// get_peft_model_state_dict writes modules_to_save: <c>base_model.model.classifier.weight</c>
/// (it strips "modules_to_save." and the adapter name from <c>classifier.modules_to_save.default.weight</c>).</item>
/// </list>
/// Loading accepts those keys and the unstripped forms (….modules_to_save.default.…, ….default.…).
/// </summary>
public static class AdapterFiles
{
    public const string ConfigFile = "adapter_config.json", WeightsFile = "adapter_model.safetensors", KeyPrefix = "base_model.model.";

    public static bool IsAdapterFolder(string dir) => File.Exists(Path.Combine(dir, ConfigFile));

    /// <summary>Writes <paramref name="config"/> and the adapter's tensors (the method's and the head) into <paramref name="dir"/>.</summary>
    public static void Save(string dir, SequenceClassifier model, JsonObject config)
    {
        var method = model.Peft?.Method ?? throw new EngineException("adapter: the model has no method to save");
        File.WriteAllText(Path.Combine(dir, ConfigFile), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        var tensors = model.NamedParameters()
            .Where(p => method.InAdapter(p.Name) || SequenceClassifier.IsHead(p.Name))
            .Select(p => new KeyValuePair<string, Tensor>(KeyPrefix + p.Name, p.Param));
        SafeTensors.Save(Path.Combine(dir, WeightsFile), tensors, new Dictionary<string, string> { ["format"] = "pt" });
    }

    /// <summary>The method and options an adapter folder's adapter_config.json stands for; a file no
    /// registered method reads is an error naming its peft_type.</summary>
    public static (FineTuningMethod Method, MethodOptions Options) ReadConfig(string dir)
    {
        var path = Path.Combine(dir, ConfigFile);
        if (!File.Exists(path)) throw new EngineException($"--adapter {dir}: no {ConfigFile}; is it a PEFT adapter folder?");
        JsonNode c;
        try { c = JsonNode.Parse(File.ReadAllText(path)) ?? throw new JsonException("empty"); }
        catch (JsonException e) { throw new EngineException($"{path}: not valid JSON ({e.Message.Split('\n')[0]})"); }
        try
        {
            foreach (var method in MethodRegistry.All)
                if (method.FromAdapterConfig(c, path) is { } options)
                {
                    options.Validate();
                    return (method, options);
                }
            var type = c["peft_type"]?.GetValue<string>();
            throw new EngineException($"{path}: peft_type '{type}'" + (c["use_dora"]?.GetValue<bool>() == true ? " with use_dora" : "") +
                " is not supported (no engine method reads it)");
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException or NullReferenceException)
        {
            throw new EngineException($"{path}: unexpected content ({e.Message})");
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
    /// Installs the adapter's method as its config says and copies its weights (the method's and
    /// the head) into <paramref name="model"/>, which holds the base weights. Every parameter the
    /// method puts in its adapter must be in the file; a key that names nothing here, or a shape
    /// that differs, is an error. <paramref name="expectedMethod"/>, when given, must be the adapter's method.
    /// </summary>
    public static void Load(SequenceClassifier model, string dir, string? baseModelPath = null, Action<string>? log = null, int seed = 0, string? expectedMethod = null)
    {
        var (method, options) = ReadConfig(dir);
        if (expectedMethod is not null && expectedMethod != method.Name)
            throw new EngineException($"--adapter {dir}: a {method.Name} adapter; it cannot be used with --method {expectedMethod}");
        var weightsPath = Path.Combine(dir, WeightsFile);
        if (!File.Exists(weightsPath))
            throw new EngineException($"--adapter {dir}: no {WeightsFile} (adapter_model.bin, a PyTorch pickle, is not read; save with safe_serialization=True)");
        if (model.Peft is not null) throw new EngineException($"--adapter {dir}: the model already has a method installed ({model.Peft.Options.Method})");
        PeftSetup.Apply(model, new PeftOptions { Method = method.Name, Settings = options }, baseModelPath, seed: seed);
        var installed = model.Peft!.Method;
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
        problems.AddRange(named.Keys.Where(n => installed.InAdapter(n) && !loaded.Contains(n)).Select(n => $"{KeyPrefix}{n} (missing)"));
        if (problems.Count > 0) throw new EngineException($"{weightsPath}: does not fit this model: {string.Join(", ", problems.Take(8))}{(problems.Count > 8 ? $" and {problems.Count - 8} more" : "")}");
        if (!loaded.Any(SequenceClassifier.IsHead)) log?.Invoke($"{weightsPath}: no classification head in the adapter; the model's own head is used");
    }

    /// <summary>target_modules of adapter_config.json as the engine's targets string: an array
    /// joined with commas, "all-linear" as is, another string as a whole-path regular expression
    /// ("re:…", what a string means in PEFT); null when absent.</summary>
    public static string? Targets(JsonNode? t) => t switch
    {
        null => null,
        JsonArray a => string.Join(",", a.Select(x => x!.GetValue<string>())),
        _ when t.GetValue<string>() == ModuleMatch.AllLinear => ModuleMatch.AllLinear,
        _ => "re:" + t.GetValue<string>(),
    };

    /// <summary>The targets as adapter_config.json writes them: the short names when they pick out
    /// exactly <paramref name="paths"/> (what people write), else the full paths.</summary>
    public static JsonArray TargetsJson(SequenceClassifier model, IReadOnlyCollection<string> paths)
    {
        var shortNames = ModuleMatch.ShortNames(paths);
        var matcher = ModuleMatch.Matcher(string.Join(",", shortNames), "adapter");
        bool exact = model.LinearLayers().Count(l => matcher(l.Path)) == paths.Count;
        return new JsonArray((exact ? shortNames : paths.ToList()).Select(n => (JsonNode?)JsonValue.Create(n)).ToArray());
    }

    /// <summary>["classifier", "score"]: PEFT's modules_to_save for SEQ_CLS.</summary>
    public static JsonArray ModulesToSave() => new(SequenceClassifier.HeadModules.Select(n => (JsonNode?)JsonValue.Create(n)).ToArray());
}
