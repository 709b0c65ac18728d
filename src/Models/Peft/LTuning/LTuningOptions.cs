using System.Text.Json;
using System.Text.Json.Nodes;

namespace Engine.Models.Peft.LTuning;

/// <summary>
/// L-Tuning's options (both variants): the label texts and the dropout. <see cref="LabelTexts"/>
/// maps every label name of the task to its text ("The text has positive sentiment, text: ");
/// null: each label's name, with '_' and '-' read as spaces ("not_entailment" → "not entailment").
/// <see cref="Source"/> says where the texts came from (the --label-texts file), for messages.
/// </summary>
public abstract record LTuningOptions : MethodOptions
{
    public IReadOnlyDictionary<string, string>? LabelTexts { get; init; }

    public string? Source { get; init; }

    /// <summary>Dropout on the key/value prefixes (LT-prefix) and on the encoder head's input (both).</summary>
    public double Dropout { get; init; } = 0.1;

    public override void Validate()
    {
        if (Dropout is < 0 or >= 1) throw new EngineException($"train: L-Tuning dropout must be in [0, 1), got {Dropout}");
    }

    /// <summary>The texts of <paramref name="labels"/> in head order; a label without a text, or a
    /// text for a label the task does not have, is an error naming the file.</summary>
    public IReadOnlyList<string> TextsFor(IReadOnlyList<string> labels)
    {
        if (LabelTexts is null) return labels.Select(DefaultText).ToList();
        var where = Source ?? "label texts";
        var missing = labels.Where(l => !LabelTexts.ContainsKey(l)).ToList();
        if (missing.Count > 0)
            throw new EngineException($"{where}: no text for label{(missing.Count > 1 ? "s" : "")} {string.Join(", ", missing.Select(m => $"'{m}'"))} (the task's labels: {string.Join(", ", labels)})");
        var extra = LabelTexts.Keys.Where(k => !labels.Contains(k)).ToList();
        if (extra.Count > 0)
            throw new EngineException($"{where}: '{extra[0]}' is not a label of the task ({string.Join(", ", labels)})");
        return labels.Select(l => LabelTexts[l]).ToList();
    }

    public static string DefaultText(string label) => label.Replace('_', ' ').Replace('-', ' ');

    /// <summary>Reads --label-texts: a JSON object, label → text.</summary>
    public static IReadOnlyDictionary<string, string> ReadFile(string path)
    {
        if (!File.Exists(path)) throw new EngineException($"--label-texts {path}: no such file");
        JsonNode? node;
        try { node = JsonNode.Parse(File.ReadAllText(path)); }
        catch (JsonException e) { throw new EngineException($"--label-texts {path}: not valid JSON ({e.Message.Split('\n')[0]})"); }
        if (node is not JsonObject o || o.Count == 0) throw new EngineException($"--label-texts {path}: expected a JSON object mapping each label to its text");
        var texts = new Dictionary<string, string>();
        foreach (var (label, value) in o)
        {
            if (value is not JsonValue v || !v.TryGetValue<string>(out var text) || string.IsNullOrWhiteSpace(text))
                throw new EngineException($"--label-texts {path}: the text of label '{label}' must be a non-empty string");
            texts[label] = text;
        }
        return texts;
    }
}

/// <summary>LT-prefix's options.</summary>
public sealed record LtPrefixOptions : LTuningOptions;

/// <summary>LT-prompt's options.</summary>
public sealed record LtPromptOptions : LTuningOptions;
