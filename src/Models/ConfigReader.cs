using System.Text.Json;

namespace Engine.Models;

/// <summary>
/// Reads typed fields out of a Hugging Face config.json object, remembering which keys were
/// read so the rest can be kept as <see cref="Unknown"/>. A field of the wrong JSON type is an
/// EngineException naming the file and the field; an absent optional field takes the default
/// that transformers uses.
/// </summary>
internal sealed class ConfigReader(string path, JsonElement root)
{
    private readonly HashSet<string> read = new(StringComparer.Ordinal);

    public string Path => path;

    public bool Contains(string name) => root.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null;

    private JsonElement? Get(string name)
    {
        read.Add(name);
        return root.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;
    }

    private EngineException Wrong(string name, JsonElement v, string expected) =>
        new($"{path}: field '{name}' must be {expected}, got {Clip(v.GetRawText())}");

    private static string Clip(string s)
    {
        s = string.Join(' ', s.Split((char[])['\n', '\r', '\t', ' '], StringSplitOptions.RemoveEmptyEntries));
        return s.Length <= 40 ? s : s[..37] + "...";
    }

    public int Int(string name) => IntOrNull(name) ?? throw new EngineException($"{path}: required field '{name}' is missing");
    public int Int(string name, int fallback) => IntOrNull(name) ?? fallback;

    public int? IntOrNull(string name)
    {
        if (Get(name) is not { } v) return null;
        if (v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i)) return i;
        // Some configs write integral values as 4096.0.
        if (v.ValueKind == JsonValueKind.Number && v.TryGetDouble(out double d) && d == Math.Floor(d) && Math.Abs(d) <= int.MaxValue) return (int)d;
        throw Wrong(name, v, "an integer");
    }

    public int Positive(string name)
    {
        int v = Int(name);
        if (v <= 0) throw new EngineException($"{path}: field '{name}' must be positive, got {v}");
        return v;
    }

    public int Positive(string name, int fallback)
    {
        int v = Int(name, fallback);
        if (v <= 0) throw new EngineException($"{path}: field '{name}' must be positive, got {v}");
        return v;
    }

    public double Double(string name, double fallback) => DoubleOrNull(name) ?? fallback;

    public double? DoubleOrNull(string name)
    {
        if (Get(name) is not { } v) return null;
        if (v.ValueKind == JsonValueKind.Number) return v.GetDouble();
        throw Wrong(name, v, "a number");
    }

    public bool Bool(string name, bool fallback)
    {
        if (Get(name) is not { } v) return fallback;
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw Wrong(name, v, "true or false"),
        };
    }

    public string String(string name, string fallback) => StringOrNull(name) ?? fallback;

    public string? StringOrNull(string name)
    {
        if (Get(name) is not { } v) return null;
        if (v.ValueKind == JsonValueKind.String) return v.GetString()!;
        throw Wrong(name, v, "a string");
    }

    /// <summary>One integer or a list of them (Llama 3 writes eos_token_id as a list).</summary>
    public int[] IntList(string name)
    {
        if (Get(name) is not { } v) return [];
        if (v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int one)) return [one];
        if (v.ValueKind == JsonValueKind.Array)
            return v.EnumerateArray().Select(e => e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out int i) ? i : throw Wrong(name, v, "an integer or a list of integers")).ToArray();
        throw Wrong(name, v, "an integer or a list of integers");
    }

    public string[] StringList(string name)
    {
        if (Get(name) is not { } v) return [];
        if (v.ValueKind == JsonValueKind.Array)
            return v.EnumerateArray().Select(e => e.ValueKind == JsonValueKind.String ? e.GetString()! : throw Wrong(name, v, "a list of strings")).ToArray();
        throw Wrong(name, v, "a list of strings");
    }

    public JsonElement? Object(string name)
    {
        if (Get(name) is not { } v) return null;
        if (v.ValueKind == JsonValueKind.Object) return v;
        throw Wrong(name, v, "an object");
    }

    /// <summary>id2label as transformers writes it: {"0": "NEGATIVE", "1": "POSITIVE"}.</summary>
    public IReadOnlyDictionary<int, string>? Id2Label()
    {
        if (Object("id2label") is not { } o) return null;
        var map = new SortedDictionary<int, string>();
        foreach (var p in o.EnumerateObject())
        {
            if (!int.TryParse(p.Name, out int id) || id < 0) throw new EngineException($"{path}: id2label key '{p.Name}' is not a non-negative integer");
            if (p.Value.ValueKind != JsonValueKind.String) throw Wrong("id2label", p.Value, "a map of label strings");
            map[id] = p.Value.GetString()!;
        }
        return map;
    }

    public IReadOnlyDictionary<string, int>? Label2Id()
    {
        if (Object("label2id") is not { } o) return null;
        var map = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var p in o.EnumerateObject())
        {
            if (p.Value.ValueKind != JsonValueKind.Number || !p.Value.TryGetInt32(out int id)) throw Wrong("label2id", p.Value, "a map of integer ids");
            map[p.Name] = id;
        }
        return map;
    }

    /// <summary>num_labels when written, else the size of id2label, else null (no head configured).</summary>
    public int? NumLabels(IReadOnlyDictionary<int, string>? id2label) => IntOrNull("num_labels") ?? id2label?.Count;

    /// <summary>Every key that no typed field read, as its JSON value (cloned, so it outlives the document).</summary>
    public IReadOnlyDictionary<string, JsonElement> Unknown()
    {
        var extra = new Dictionary<string, JsonElement>(StringComparer.Ordinal);
        foreach (var p in root.EnumerateObject())
            if (!read.Contains(p.Name)) extra[p.Name] = p.Value.Clone();
        return extra;
    }
}
