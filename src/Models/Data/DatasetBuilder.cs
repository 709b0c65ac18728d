using System.Globalization;

namespace Engine.Models.Data;

/// <summary>
/// Collects examples as a format reader finds them and applies the rules every format shares:
/// empty text is a bad line; a label is a class name or id (or, for regression, a finite
/// number); a missing label is a bad line unless the data may be unlabelled. When neither the
/// options nor the task fix the label map, the map is built from all labels at the end and
/// the ids are filled in then.
/// </summary>
internal sealed class DatasetBuilder(string source, DataOptions options, TaskPreset? preset)
{
    private readonly record struct Pending(string Text, string? TextPair, string? LabelText, int Label, double Value);

    private readonly List<Pending> examples = [];
    private readonly bool regression = options.Regression || preset?.IsRegression == true;
    private readonly LabelMap? fixedLabels = options.Labels ?? preset?.Labels;
    private string textColumn = "text";
    private string? pairColumn, labelColumn;
    private int skipped;

    public string Source => source;
    public DataOptions Options => options;
    public TaskPreset? Preset => preset;

    /// <summary>How the columns are named in messages ("column 3" for a headerless file).</summary>
    public void SetColumnNames(string text, string? pair, string? label) =>
        (textColumn, pairColumn, labelColumn) = (text, pair, label);

    /// <summary>A bad line: an <see cref="EngineException"/>, or with SkipBadLines a counted warning.</summary>
    public void Bad(string file, int line, string what)
    {
        var message = $"{file}:{line}: {what}";
        if (!options.SkipBadLines) throw new EngineException(message);
        skipped++;
        options.Warn?.Invoke(message + " (line skipped)");
    }

    public void Add(string file, int line, string text, string? textPair, string? label)
    {
        if (string.IsNullOrWhiteSpace(text)) { Bad(file, line, $"empty text ({textColumn})"); return; }
        if (textPair is not null && string.IsNullOrWhiteSpace(textPair)) { Bad(file, line, $"empty text ({pairColumn})"); return; }
        label = label?.Trim();
        if (string.IsNullOrEmpty(label))
        {
            if (!options.Unlabelled) { Bad(file, line, labelColumn is null ? "no label" : $"empty label ({labelColumn})"); return; }
            examples.Add(new Pending(text, textPair, null, -1, regression ? double.NaN : 0));
            return;
        }
        if (regression)
        {
            if (!double.TryParse(label, NumberStyles.Float, CultureInfo.InvariantCulture, out double value) || !double.IsFinite(value))
            {
                Bad(file, line, $"'{label}' is not a number ({labelColumn}, a regression target)");
                return;
            }
            examples.Add(new Pending(text, textPair, null, -1, value));
            return;
        }
        if (fixedLabels is null) { examples.Add(new Pending(text, textPair, label, -1, 0)); return; }
        if (!fixedLabels.TryGetId(label, out int id)) { Bad(file, line, fixedLabels.UnknownLabel(label)); return; }
        examples.Add(new Pending(text, textPair, null, id, 0));
    }

    public Dataset Finish()
    {
        LabelMap? labels = null;
        if (!regression)
        {
            var seen = examples.Where(e => e.LabelText is not null).Select(e => e.LabelText!).ToList();
            labels = fixedLabels ?? (seen.Count > 0 ? LabelMap.FromData(seen) : null);
        }
        var result = new Example[examples.Count];
        for (int i = 0; i < result.Length; i++)
        {
            var e = examples[i];
            int id = e.LabelText is null ? e.Label : labels!.Label2Id[e.LabelText];
            result[i] = new Example(e.Text, e.TextPair, id, e.Value);
        }
        if (result.Length == 0)
            throw new EngineException(skipped > 0
                ? $"{source}: no examples ({skipped} bad lines skipped)"
                : $"{source}: no examples");
        return new Dataset(source, result, labels, regression, skipped);
    }
}
