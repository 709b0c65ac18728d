using System.Text.Json;

namespace Engine.Models.Tokenization;

/// <summary>
/// What tokenizer_config.json and special_tokens_map.json say (tokenizer_config.json wins where
/// both name a token), plus config.json's pad_token_id as a fallback for the pad id. Every field is
/// null when the files do not give it; each tokenizer applies transformers' default for its class.
/// Special tokens are written either as a string or as an AddedToken object {"content": ...}.
/// </summary>
public sealed record TokenizerConfig
{
    public string? Path { get; init; }
    public string? TokenizerClass { get; init; }
    public bool? DoLowerCase { get; init; }
    public bool? StripAccents { get; init; }
    public bool? TokenizeChineseChars { get; init; }
    public bool? AddPrefixSpace { get; init; }
    public bool? AddBosToken { get; init; }
    public bool? AddEosToken { get; init; }
    public int? ModelMaxLength { get; init; }
    public IReadOnlyDictionary<string, string> SpecialTokens { get; init; } = new Dictionary<string, string>();
    /// <summary>added_tokens_decoder: id → (content, special).</summary>
    public IReadOnlyList<(int Id, string Content, bool Special)> AddedTokens { get; init; } = [];
    /// <summary>config.json's pad_token_id, when it is a number.</summary>
    public int? ModelPadTokenId { get; init; }

    public static TokenizerConfig Empty { get; } = new();

    /// <summary>The token named by a key such as "cls_token", or null.</summary>
    public string? Token(string key) => SpecialTokens.GetValueOrDefault(key);

    public static TokenizerConfig Read(string? tokenizerConfigPath, string? specialTokensMapPath, HfModelFolder? folder = null)
    {
        var special = new Dictionary<string, string>();
        int? modelPad = null;
        if (folder is not null && folder.Config.TryGetProperty("pad_token_id", out var p) && p.ValueKind == JsonValueKind.Number && p.TryGetInt32(out var pad))
            modelPad = pad;
        if (specialTokensMapPath is not null)
        {
            var map = ReadObject(specialTokensMapPath);
            foreach (var property in map.EnumerateObject())
                if (TokenContent(property.Value) is string content) special[property.Name] = content;
        }
        if (tokenizerConfigPath is null) return new TokenizerConfig { SpecialTokens = special, ModelPadTokenId = modelPad };

        var json = ReadObject(tokenizerConfigPath);
        foreach (var property in json.EnumerateObject())
            if (property.Name.EndsWith("_token", StringComparison.Ordinal) && TokenContent(property.Value) is string content)
                special[property.Name] = content;
        var added = new List<(int, string, bool)>();
        if (json.TryGetProperty("added_tokens_decoder", out var decoder) && decoder.ValueKind == JsonValueKind.Object)
            foreach (var entry in decoder.EnumerateObject())
            {
                if (!int.TryParse(entry.Name, out var id) || TokenContent(entry.Value) is not string content)
                    throw new EngineException($"{tokenizerConfigPath}: added_tokens_decoder entry '{entry.Name}' is not an id with a token");
                bool isSpecial = entry.Value.ValueKind == JsonValueKind.Object && entry.Value.TryGetProperty("special", out var s) && s.ValueKind == JsonValueKind.True;
                added.Add((id, content, isSpecial));
            }
        int? maxLength = null;
        if (json.TryGetProperty("model_max_length", out var m) && m.ValueKind == JsonValueKind.Number && m.TryGetDouble(out var length) && length >= 1 && length < 1e9)
            maxLength = (int)length;
        return new TokenizerConfig
        {
            Path = tokenizerConfigPath,
            TokenizerClass = String(json, "tokenizer_class"),
            DoLowerCase = Bool(json, "do_lower_case", tokenizerConfigPath),
            StripAccents = Bool(json, "strip_accents", tokenizerConfigPath),
            TokenizeChineseChars = Bool(json, "tokenize_chinese_chars", tokenizerConfigPath),
            AddPrefixSpace = Bool(json, "add_prefix_space", tokenizerConfigPath),
            AddBosToken = Bool(json, "add_bos_token", tokenizerConfigPath),
            AddEosToken = Bool(json, "add_eos_token", tokenizerConfigPath),
            ModelMaxLength = maxLength,
            SpecialTokens = special,
            AddedTokens = added,
            ModelPadTokenId = modelPad,
        };
    }

    /// <summary>A token written as "text" or as {"content": "text", ...}.</summary>
    public static string? TokenContent(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.String => value.GetString(),
        JsonValueKind.Object when value.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String => c.GetString(),
        _ => null,
    };

    private static string? String(JsonElement json, string name) =>
        json.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    private static bool? Bool(JsonElement json, string name, string path)
    {
        if (!json.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new EngineException($"{path}: '{name}' must be true, false or null, got {v.ValueKind}"),
        };
    }

    internal static JsonElement ReadObject(string path)
    {
        try
        {
            var root = Engine.IO.JsonText.Parse(File.ReadAllBytes(path), path);
            if (root.ValueKind != JsonValueKind.Object) throw new EngineException($"{path}: not a JSON object");
            return root;
        }
        catch (IOException e) { throw new EngineException($"{path}: cannot be read ({e.Message})"); }
    }
}
