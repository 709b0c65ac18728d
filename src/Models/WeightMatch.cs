using Engine.IO;

namespace Engine.Models;

/// <summary>A parameter the model expects: its engine name and shape.</summary>
public sealed record ExpectedTensor(string Name, int[] Shape);

/// <summary>A parameter found under another shape than expected.</summary>
public sealed record ShapeMismatch(string Name, string SourceName, int[] Expected, int[] Found);

/// <summary>
/// The result of matching a model's expected parameters against a weight source: which engine
/// parameter comes from which tensor, and every problem at once (missing, unexpected, wrong
/// shape) rather than the first one.
/// </summary>
public sealed class WeightMatch
{
    public required string Source { get; init; }
    /// <summary>Engine parameter name → tensor name in the source.</summary>
    public required IReadOnlyDictionary<string, string> Matched { get; init; }
    public required IReadOnlyList<ExpectedTensor> Missing { get; init; }
    /// <summary>Tensors in the source that no parameter uses (and that are not ignored), with their shapes.</summary>
    public required IReadOnlyList<ExpectedTensor> Unexpected { get; init; }
    public required IReadOnlyList<ShapeMismatch> ShapeMismatches { get; init; }

    public bool IsComplete => Missing.Count == 0 && Unexpected.Count == 0 && ShapeMismatches.Count == 0;

    /// <summary>One line listing every problem; empty when complete.</summary>
    public string Summary()
    {
        if (IsComplete) return "";
        var parts = new List<string>();
        if (Missing.Count > 0)
            parts.Add($"{Missing.Count} missing: " + string.Join(", ", Missing.Select(m => $"{m.Name} {Shape.Format(m.Shape)}")));
        if (Unexpected.Count > 0)
            parts.Add($"{Unexpected.Count} unexpected: " + string.Join(", ", Unexpected.Select(u => $"{u.Name} {Shape.Format(u.Shape)}")));
        if (ShapeMismatches.Count > 0)
            parts.Add($"{ShapeMismatches.Count} with the wrong shape: " + string.Join(", ", ShapeMismatches.Select(s =>
                $"{s.SourceName} is {Shape.Format(s.Found)}, expected {Shape.Format(s.Expected)}")));
        return $"{Source}: the weights do not match the model; " + string.Join("; ", parts);
    }

    /// <summary>Throws one EngineException listing every problem, unless the match is complete.</summary>
    public void ThrowIfIncomplete()
    {
        if (!IsComplete) throw new EngineException(Summary());
    }

    /// <summary>
    /// Matches <paramref name="expected"/> against <paramref name="source"/>. For each expected
    /// name, <paramref name="candidates"/> lists the source names to try in order (for example
    /// with and without a "bert." prefix, or the legacy LayerNorm.gamma for LayerNorm.weight);
    /// by default only the name itself. Source tensors that no parameter used are reported as
    /// unexpected unless <paramref name="ignoreUnexpected"/> says to skip them (buffers such as
    /// position_ids, or heads the model does not build).
    /// </summary>
    public static WeightMatch Match(IEnumerable<ExpectedTensor> expected, IWeightSource source,
        Func<string, IEnumerable<string>>? candidates = null, Func<string, bool>? ignoreUnexpected = null)
    {
        candidates ??= name => [name];
        var matched = new Dictionary<string, string>(StringComparer.Ordinal);
        var used = new HashSet<string>(StringComparer.Ordinal);
        var missing = new List<ExpectedTensor>();
        var mismatches = new List<ShapeMismatch>();
        foreach (var e in expected)
        {
            var found = candidates(e.Name).FirstOrDefault(source.Contains);
            if (found is null) { missing.Add(e); continue; }
            used.Add(found);
            var shape = source.Info(found).Shape;
            if (!Shape.Equal(shape, e.Shape)) mismatches.Add(new ShapeMismatch(e.Name, found, e.Shape, shape));
            else matched[e.Name] = found;
        }
        var unexpected = source.Names
            .Where(n => !used.Contains(n) && !(ignoreUnexpected?.Invoke(n) ?? false))
            .Select(n => new ExpectedTensor(n, source.Info(n).Shape))
            .ToList();
        return new WeightMatch { Source = source.Path, Matched = matched, Missing = missing, Unexpected = unexpected, ShapeMismatches = mismatches };
    }
}
