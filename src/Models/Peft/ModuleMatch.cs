using System.Text.RegularExpressions;
using Engine.Nn;

namespace Engine.Models.Peft;

/// <summary>
/// Picking a model's linear layers by name, as PEFT's target_modules does: comma-separated names
/// (a path equal to one, or ending in "." + one: "query" matches "…attention.self.query",
/// "output.dense" matches both "…attention.output.dense" and "…layer.0.output.dense"),
/// "all-linear" (every linear layer of the backbone, never the head), or "re:PATTERN" (a regular
/// expression over whole paths, what a string target_modules means in PEFT).
/// </summary>
public static class ModuleMatch
{
    public const string AllLinear = "all-linear";

    /// <summary>The path test for a targets string; <paramref name="method"/> names the method in errors.</summary>
    public static Func<string, bool> Matcher(string targets, string method)
    {
        targets = targets.Trim();
        if (targets == AllLinear) return _ => true;
        if (targets.StartsWith("re:", StringComparison.Ordinal))
        {
            Regex re;
            try { re = new Regex("^(?:" + targets[3..] + ")$"); }
            catch (ArgumentException e) { throw new EngineException($"{method}: targets '{targets}' is not a valid regular expression ({e.Message})"); }
            return path => re.IsMatch(path);
        }
        var names = targets.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        return path => names.Any(n => path == n || path.EndsWith("." + n, StringComparison.Ordinal));
    }

    /// <summary>The backbone's linear layers that <paramref name="targets"/> picks; none is an
    /// error naming the layers there are.</summary>
    public static List<(string Path, Linear Layer)> Select(SequenceClassifier model, string targets, string method)
    {
        var layers = model.LinearLayers().ToList();
        var match = Matcher(targets, method);
        var chosen = layers.Where(l => match(l.Path)).ToList();
        if (chosen.Count == 0)
        {
            var names = layers.Select(l => l.Path.Split('.')[^1]).Distinct();
            throw new EngineException($"{method}: targets '{targets}' match no linear layer of this model (its layers end in: {string.Join(", ", names)})");
        }
        return chosen;
    }

    /// <summary>Short module names of layers (the paths' last parts), for configs.</summary>
    public static List<string> ShortNames(IEnumerable<string> paths) => paths.Select(p => p.Split('.')[^1]).Distinct().ToList();
}
