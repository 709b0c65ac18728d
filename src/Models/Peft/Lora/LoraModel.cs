using System.Text.RegularExpressions;

namespace Engine.Models.Peft.Lora;

/// <summary>Puts LoRA adapters on a classifier's linear layers, chosen by name.</summary>
public static class LoraModel
{
    public const string AllLinear = "all-linear";

    /// <summary>
    /// Adds an adapter on every backbone linear layer that <paramref name="o"/>'s targets match
    /// (see <see cref="LoraOptions.Targets"/>) and hooks it into the forward. Returns the
    /// adapters by module path. A pattern that matches nothing is an error naming the layers
    /// there are.
    /// </summary>
    public static IReadOnlyDictionary<string, LoraAdapter> Install(SequenceClassifier model, LoraOptions o, int seed)
    {
        var layers = model.LinearLayers().ToList();
        var match = Matcher(o.Targets ?? string.Join(",", PeftFamily.DefaultLoraTargets(model)));
        var chosen = layers.Where(l => match(l.Path)).ToList();
        if (chosen.Count == 0)
        {
            var names = layers.Select(l => l.Path.Split('.')[^1]).Distinct();
            throw new EngineException($"lora: targets '{o.Targets}' match no linear layer of this model (its layers end in: {string.Join(", ", names)})");
        }
        var rng = new Random(seed);
        var result = new Dictionary<string, LoraAdapter>();
        foreach (var (path, layer) in chosen)
        {
            var adapter = model.Attach(path, new LoraAdapter(layer, o, rng, model.Seeds));
            model.Hooks.Linears[layer] = adapter.Forward;
            result[path] = adapter;
        }
        return result;
    }

    /// <summary>The path test for a targets string: "all-linear", "re:PATTERN" (whole-path
    /// regular expression), or comma-separated names (a path equal to one, or ending in "." + one).</summary>
    public static Func<string, bool> Matcher(string targets)
    {
        targets = targets.Trim();
        if (targets == AllLinear) return _ => true;
        if (targets.StartsWith("re:", StringComparison.Ordinal))
        {
            Regex re;
            try { re = new Regex("^(?:" + targets[3..] + ")$"); }
            catch (ArgumentException e) { throw new EngineException($"lora: targets '{targets}' is not a valid regular expression ({e.Message})"); }
            return path => re.IsMatch(path);
        }
        var names = targets.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        return path => names.Any(n => path == n || path.EndsWith("." + n, StringComparison.Ordinal));
    }

    /// <summary>Folds every adapter into its base weight (W += s · B A): the model then computes
    /// the same function without the adapter path. Saving a merged model writes the merged
    /// weights without the adapters (a plain model folder).</summary>
    public static void Merge(SequenceClassifier model)
    {
        if (model.Peft?.Adapters is not { Count: > 0 } adapters) throw new EngineException("lora: the model has no LoRA adapters to merge");
        foreach (var a in adapters.Values) a.Merge();
    }

    public static void Unmerge(SequenceClassifier model)
    {
        foreach (var a in model.Peft?.Adapters?.Values ?? Enumerable.Empty<LoraAdapter>()) a.Unmerge();
    }

    /// <summary>Short module names of the adapted layers (the paths' last parts), for configs.</summary>
    public static List<string> ShortNames(IEnumerable<string> paths) => paths.Select(p => p.Split('.')[^1]).Distinct().ToList();

    internal static bool IsAdapterParameter(string name) => name.Contains(".lora_A.", StringComparison.Ordinal) || name.Contains(".lora_B.", StringComparison.Ordinal);
}
