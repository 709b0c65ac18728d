using System.Globalization;
using System.Text.Json;

namespace Engine.Models.Data;

/// <summary>
/// Class names ↔ class ids 0..Count−1, in a fixed order. A model's output unit k means
/// <see cref="Name"/>(k); the map travels with a trained model (config.json's id2label) and
/// with a training run (labels.json), so that evaluation and prediction use the same ids.
/// </summary>
/// <remarks>
/// A label in the data is looked up by name first. When it is not a name and the map has no
/// integer-looking names (e.g. "negative"/"positive", or GLUE's "entailment"), an integer label
/// k in 0..Count−1 means id k: SST-2's 0/1 labels then read against a map named
/// negative/positive. Maps built from data (<see cref="FromData"/>) order the names by numeric
/// value when every name is an integer, else by ordinal string order.
/// </remarks>
public sealed class LabelMap
{
    private readonly string[] names;
    private readonly Dictionary<string, int> ids;
    private readonly bool integerFallback;

    /// <summary>A map whose ids are the positions of <paramref name="names"/>.</summary>
    public LabelMap(IEnumerable<string> names)
    {
        this.names = names.ToArray();
        if (this.names.Length == 0) throw new ArgumentException("a label map needs at least one label", nameof(names));
        ids = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < this.names.Length; i++)
            if (!ids.TryAdd(this.names[i], i))
                throw new ArgumentException($"label '{this.names[i]}' appears twice", nameof(names));
        integerFallback = !this.names.Any(IsInteger);
    }

    /// <summary>The number of classes.</summary>
    public int Count => names.Length;

    /// <summary>The names in id order.</summary>
    public IReadOnlyList<string> Names => names;

    /// <summary>The name of class <paramref name="id"/>.</summary>
    public string Name(int id) => (uint)id < (uint)names.Length
        ? names[id]
        : throw new ArgumentOutOfRangeException(nameof(id), $"class id {id} is outside 0..{names.Length - 1}");

    /// <summary>The id of a label as written in data (a name, or an integer id; see the remarks).</summary>
    public bool TryGetId(string label, out int id)
    {
        if (ids.TryGetValue(label, out id)) return true;
        if (integerFallback && int.TryParse(label, NumberStyles.None, CultureInfo.InvariantCulture, out id) && id < names.Length)
            return true;
        id = -1;
        return false;
    }

    /// <summary>The id of a label read at <paramref name="file"/>:<paramref name="line"/>; an unknown
    /// label is an <see cref="EngineException"/> naming both.</summary>
    public int Id(string label, string file, int line) => TryGetId(label, out int id)
        ? id
        : throw new EngineException($"{file}:{line}: {UnknownLabel(label)}");

    internal string UnknownLabel(string label) =>
        $"unknown label '{label}' (known: {string.Join(", ", names)})";

    /// <summary>id → name, as config.json's <c>id2label</c>.</summary>
    public IReadOnlyDictionary<int, string> Id2Label => names.Select((n, i) => (n, i)).ToDictionary(p => p.i, p => p.n);

    /// <summary>name → id, as config.json's <c>label2id</c>.</summary>
    public IReadOnlyDictionary<string, int> Label2Id => ids;

    /// <summary>
    /// Hugging Face's placeholder names LABEL_0..LABEL_{n−1} (what a config holds when nobody
    /// named the classes).
    /// </summary>
    public bool IsPlaceholder => names.Select((n, i) => n == $"LABEL_{i}").All(x => x);

    /// <summary>
    /// The map of labels seen in data: sorted by numeric value when every label is an integer
    /// (2 before 10), else in ordinal string order; so the same label set
    /// always gives the same ids, whatever order the file lists them in.
    /// </summary>
    public static LabelMap FromData(IEnumerable<string> labels)
    {
        var distinct = labels.Distinct(StringComparer.Ordinal).ToList();
        if (distinct.Count > 0 && distinct.All(IsInteger))
            distinct.Sort((a, b) => long.Parse(a, CultureInfo.InvariantCulture).CompareTo(long.Parse(b, CultureInfo.InvariantCulture)));
        else
            distinct.Sort(StringComparer.Ordinal);
        return new LabelMap(distinct);
    }

    /// <summary>
    /// The map of a model config's <c>id2label</c>; null when the config has none, or only
    /// Hugging Face's placeholder names (then the data or the task names the classes).
    /// The ids must be exactly 0..n−1.
    /// </summary>
    public static LabelMap? FromConfig(IReadOnlyDictionary<int, string>? id2label)
    {
        if (id2label is null || id2label.Count == 0) return null;
        var names = new string[id2label.Count];
        for (int i = 0; i < names.Length; i++)
            names[i] = id2label.TryGetValue(i, out var name)
                ? name
                : throw new EngineException($"id2label must number its classes 0..{names.Length - 1}; id {i} is missing");
        var map = new LabelMap(names);
        return map.IsPlaceholder ? null : map;
    }

    /// <summary>Writes <c>{"id2label": {"0": …}, "label2id": {…: 0}}</c>, the shape config.json uses.</summary>
    public void Save(string path)
    {
        using var stream = File.Create(path);
        using var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
        json.WriteStartObject();
        json.WriteStartObject("id2label");
        for (int i = 0; i < names.Length; i++) json.WriteString(i.ToString(CultureInfo.InvariantCulture), names[i]);
        json.WriteEndObject();
        json.WriteStartObject("label2id");
        for (int i = 0; i < names.Length; i++) json.WriteNumber(names[i], i);
        json.WriteEndObject();
        json.WriteEndObject();
    }

    /// <summary>Reads a file written by <see cref="Save"/> (or any JSON object with an
    /// <c>id2label</c> object, such as config.json).</summary>
    public static LabelMap Load(string path)
    {
        if (!File.Exists(path)) throw new EngineException($"{path}: no such label map file");
        try
        {
            var root = Engine.IO.JsonText.Parse(File.ReadAllBytes(path), path);
            if (root.ValueKind != JsonValueKind.Object
                || !root.TryGetProperty("id2label", out var id2label)
                || id2label.ValueKind != JsonValueKind.Object)
                throw new EngineException($"{path}: expected a JSON object with an \"id2label\" object");
            var map = new Dictionary<int, string>();
            foreach (var property in id2label.EnumerateObject())
            {
                if (!int.TryParse(property.Name, NumberStyles.None, CultureInfo.InvariantCulture, out int id))
                    throw new EngineException($"{path}: id2label key '{property.Name}' is not a class id");
                if (property.Value.ValueKind != JsonValueKind.String)
                    throw new EngineException($"{path}: id2label[{property.Name}] is not a string");
                map[id] = property.Value.GetString()!;
            }
            if (map.Count == 0) throw new EngineException($"{path}: id2label is empty");
            var names = new string[map.Count];
            for (int i = 0; i < names.Length; i++)
                names[i] = map.TryGetValue(i, out var name)
                    ? name
                    : throw new EngineException($"{path}: id2label must number its classes 0..{names.Length - 1}; id {i} is missing");
            return new LabelMap(names);
        }
        catch (JsonException e)
        {
            throw new EngineException($"{path}: not valid JSON ({e.Message})", e);
        }
        catch (ArgumentException e)
        {
            throw new EngineException($"{path}: {e.Message}", e);
        }
    }

    /// <inheritdoc/>
    public override string ToString() => string.Join(", ", names.Select((n, i) => $"{i}={n}"));

    private static bool IsInteger(string s) =>
        long.TryParse(s, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out _);
}
