using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Engine.Models.Tokenization;

/// <summary>
/// A Hugging Face fast tokenizer file (tokenizer.json, written by the tokenizers library), read
/// with System.Text.Json. Supported stages (anything else is an error naming the file and the type):
/// <list type="bullet">
/// <item>model: WordPiece, BPE (with byte_fallback, fuse_unk, ignore_merges; merges as "a b" strings or [a, b] pairs);</item>
/// <item>normalizer: BertNormalizer, Lowercase, NFC, NFD, NFKC, NFKD, StripAccents, Strip, Prepend, Replace, Sequence;</item>
/// <item>pre_tokenizer: BertPreTokenizer, ByteLevel, Split (Isolated or Removed), Metaspace, Whitespace, WhitespaceSplit, Sequence;</item>
/// <item>post_processor: TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel (no change to ids), Sequence.</item>
/// </list>
/// added_tokens are cut out of the text before normalization. As transformers' LlamaTokenizerFast
/// does, a tokenizer_config.json whose tokenizer_class is LlamaTokenizer(Fast) replaces the file's
/// post-processor with bos/eos from add_bos_token (default true) and add_eos_token (default false).
/// </summary>
public static class TokenizerJson
{
    public static TextTokenizer Load(string path, TokenizerConfig config)
    {
        try { return Read(path, config); }
        catch (Exception e) when (e is InvalidOperationException or FormatException or ArgumentException or KeyNotFoundException)
        {
            throw new EngineException($"{path}: unexpected content ({e.Message.Split('\n')[0]})");
        }
    }

    private static TextTokenizer Read(string path, TokenizerConfig config)
    {
        var json = TokenizerFiles.ReadJson(path);
        if (json.ValueKind != JsonValueKind.Object) throw new EngineException($"{path}: not a JSON object");
        var reader = new Reader(path);

        var added = new Dictionary<string, int>();
        if (json.TryGetProperty("added_tokens", out var addedTokens) && addedTokens.ValueKind == JsonValueKind.Array)
            foreach (var token in addedTokens.EnumerateArray())
            {
                var content = reader.String(token, "content") ?? throw reader.Error("an added token has no 'content'");
                added[content] = reader.Int(token, "id") ?? throw reader.Error($"the added token '{content}' has no 'id'");
            }
        foreach (var (id, content, _) in config.AddedTokens) added.TryAdd(content, id);

        if (!json.TryGetProperty("model", out var modelJson) || modelJson.ValueKind != JsonValueKind.Object)
            throw reader.Error("no 'model' object");
        var model = reader.Model(modelJson, out var unknownToken);
        var normalizer = reader.Normalizer(json.TryGetProperty("normalizer", out var n) ? n : default);
        var preTokenizer = reader.PreTokenizer(json.TryGetProperty("pre_tokenizer", out var p) ? p : default);

        int? Lookup(string token) => added.TryGetValue(token, out var id) ? id : model.TokenToId(token);
        var template = reader.PostProcessor(json.TryGetProperty("post_processor", out var post) ? post : default);
        if (config.TokenizerClass is "LlamaTokenizer" or "LlamaTokenizerFast")
        {
            int? bos = Lookup(config.Token("bos_token") ?? "<s>"), eos = Lookup(config.Token("eos_token") ?? "</s>");
            bool addBos = config.AddBosToken ?? true, addEos = config.AddEosToken ?? false;
            if (addBos && bos is null) throw new EngineException($"{config.Path}: add_bos_token is set but the bos_token is not in {path}");
            if (addEos && eos is null) throw new EngineException($"{config.Path}: add_eos_token is set but the eos_token is not in {path}");
            template = SpecialTokenTemplate.Llama(addBos ? bos : null, addEos ? eos : null);
        }
        int? pad = config.Token("pad_token") is string padToken ? Lookup(padToken) : null;
        int? unknownId = unknownToken is null ? null : Lookup(unknownToken);
        int? eosId = config.Token("eos_token") is string eosToken ? Lookup(eosToken) : null;
        return new PipelineTokenizer(model, normalizer, preTokenizer, added, pad, TokenizerFiles.FallbackPadId(config, unknownId, eosId))
        {
            Template = template,
            ModelMaxLength = config.ModelMaxLength,
            Source = path,
        };
    }

    /// <summary>Reads the typed objects of one tokenizer.json, with errors that name the file.</summary>
    private sealed class Reader(string path)
    {
        public EngineException Error(string what) => new($"{path}: {what}");

        private EngineException Unsupported(string stage, string type) =>
            Error($"{stage} type '{type}' is not supported by the engine's tokenizers (see docs/tokenizers.md)");

        public string? String(JsonElement e, string name) =>
            e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

        public int? Int(JsonElement e, string name) =>
            e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var i) ? i : null;

        public bool? Bool(JsonElement e, string name) =>
            e.TryGetProperty(name, out var v) ? v.ValueKind switch { JsonValueKind.True => true, JsonValueKind.False => false, _ => null } : null;

        private string TypeOf(JsonElement e, string stage) => String(e, "type") ?? throw Error($"a {stage} has no 'type'");

        private IEnumerable<JsonElement> Array(JsonElement e, string name, string stage) =>
            e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Array ? v.EnumerateArray() : throw Error($"the {stage} has no '{name}' list");

        public TokenModel Model(JsonElement m, out string? unknownToken)
        {
            var type = String(m, "type") ?? (m.TryGetProperty("merges", out _) ? "BPE" : m.TryGetProperty("continuing_subword_prefix", out _) ? "WordPiece" : "?");
            unknownToken = String(m, "unk_token");
            if (!m.TryGetProperty("vocab", out var vocabJson)) throw Error($"the {type} model has no 'vocab'");
            if (type is not ("WordPiece" or "BPE")) throw Unsupported("model", type);
            var vocabulary = ByteLevelBpeFiles.ReadVocabulary(vocabJson, path);
            int? unknownId = unknownToken is null ? null : vocabulary[unknownToken];
            if (type == "WordPiece")
            {
                if (unknownId is null) throw Error($"the WordPiece unk_token '{unknownToken}' is not in the vocabulary");
                return new WordPieceModel(vocabulary, unknownId.Value, String(m, "continuing_subword_prefix") ?? "##", Int(m, "max_input_chars_per_word") ?? 100);
            }
            if (!string.IsNullOrEmpty(String(m, "continuing_subword_prefix")) || !string.IsNullOrEmpty(String(m, "end_of_word_suffix")))
                throw Error("BPE with continuing_subword_prefix or end_of_word_suffix is not supported by the engine's tokenizers");
            var merges = new List<(string, string)>();
            foreach (var merge in Array(m, "merges", "BPE model"))
            {
                if (merge.ValueKind == JsonValueKind.String)
                {
                    var text = merge.GetString()!;
                    int space = text.IndexOf(' ', 1);
                    if (space < 0 || space == text.Length - 1) throw Error($"the merge '{ByteLevelBpeFiles.Shorten(text)}' is not two tokens separated by a space");
                    merges.Add((text[..space], text[(space + 1)..]));
                }
                else if (merge.ValueKind == JsonValueKind.Array && merge.GetArrayLength() == 2 && merge[0].ValueKind == JsonValueKind.String && merge[1].ValueKind == JsonValueKind.String)
                    merges.Add((merge[0].GetString()!, merge[1].GetString()!));
                else throw Error($"merge {merges.Count + 1} is neither \"a b\" nor [\"a\", \"b\"]");
            }
            return new BpeModel(vocabulary, merges, path, unknownId, Bool(m, "fuse_unk") ?? false, Bool(m, "byte_fallback") ?? false, Bool(m, "ignore_merges") ?? false);
        }

        public Func<string, string>? Normalizer(JsonElement n)
        {
            if (n.ValueKind is JsonValueKind.Undefined or JsonValueKind.Null) return null;
            var type = TypeOf(n, "normalizer");
            switch (type)
            {
                case "BertNormalizer":
                    bool lowercase = Bool(n, "lowercase") ?? true, clean = Bool(n, "clean_text") ?? true, chinese = Bool(n, "handle_chinese_chars") ?? true;
                    bool strip = Bool(n, "strip_accents") ?? lowercase;
                    return s => Normalizers.Bert(s, clean, chinese, strip, lowercase);
                case "Lowercase": return s => s.ToLowerInvariant();
                case "NFD": return CanonicalDecomposition.Decompose;
                case "NFC" or "NFKC" or "NFKD":
                    // These need the platform's normalization, which invariant globalization (the engine's setting) turns off.
                    var form = type switch { "NFC" => NormalizationForm.FormC, "NFKC" => NormalizationForm.FormKC, _ => NormalizationForm.FormKD };
                    if ("\u00E9".Normalize(NormalizationForm.FormD).Length != 2)
                        throw Error($"normalizer type '{type}' needs Unicode normalization, which this process lacks (invariant globalization); only NFD is built in");
                    return s => s.Normalize(form);
                case "StripAccents": return s => Normalizers.StripAccents(s);
                case "Strip":
                    bool left = Bool(n, "strip_left") ?? true, right = Bool(n, "strip_right") ?? true;
                    return s => left && right ? s.Trim() : left ? s.TrimStart() : right ? s.TrimEnd() : s;
                case "Prepend":
                    var prefix = String(n, "prepend") ?? throw Error("the Prepend normalizer has no 'prepend'");
                    return s => s.Length == 0 ? s : prefix + s;
                case "Replace":
                    var (literal, regex) = Pattern(n, "Replace normalizer");
                    return Normalizers.Replace(literal, regex, String(n, "content") ?? "");
                case "Sequence":
                    var steps = Array(n, "normalizers", "Sequence normalizer").Select(Normalizer).Where(f => f is not null).Select(f => f!).ToArray();
                    return s => { foreach (var step in steps) s = step(s); return s; };
                default: throw Unsupported("normalizer", type);
            }
        }

        private (string? Literal, string? Regex) Pattern(JsonElement e, string stage)
        {
            if (!e.TryGetProperty("pattern", out var p) || p.ValueKind != JsonValueKind.Object) throw Error($"the {stage} has no 'pattern'");
            if (String(p, "String") is string literal) return (literal, null);
            if (String(p, "Regex") is string regex) return (null, regex);
            throw Error($"the {stage}'s pattern is neither String nor Regex");
        }

        public PreTokenizer? PreTokenizer(JsonElement p)
        {
            if (p.ValueKind is JsonValueKind.Undefined or JsonValueKind.Null) return null;
            var type = TypeOf(p, "pre_tokenizer");
            switch (type)
            {
                case "BertPreTokenizer": return new BertPreTokenizer();
                case "Whitespace": return new WhitespacePreTokenizer(wordsAndPunctuation: true);
                case "WhitespaceSplit": return new WhitespacePreTokenizer(wordsAndPunctuation: false);
                case "ByteLevel": return new ByteLevelPreTokenizer(Bool(p, "add_prefix_space") ?? true, Bool(p, "use_regex") ?? true);
                case "Metaspace":
                    var replacement = String(p, "replacement") ?? "▁";
                    if (replacement.Length != 1) throw Error($"the Metaspace replacement '{replacement}' is not one character");
                    var scheme = String(p, "prepend_scheme") ?? ((Bool(p, "add_prefix_space") ?? true) ? "always" : "never");
                    return new MetaspacePreTokenizer(replacement[0], scheme, Bool(p, "split") ?? true);
                case "Split":
                    var (literal, regex) = Pattern(p, "Split pre-tokenizer");
                    var behavior = String(p, "behavior") ?? "Isolated";
                    if (Bool(p, "invert") == true) throw Error("the Split pre-tokenizer with invert: true is not supported by the engine's tokenizers");
                    if (behavior is not ("Isolated" or "Removed")) throw Error($"the Split pre-tokenizer behavior '{behavior}' is not supported by the engine's tokenizers");
                    Regex pattern;
                    try { pattern = new Regex(regex ?? Regex.Escape(literal!), RegexOptions.CultureInvariant); }
                    catch (ArgumentException e) { throw Error($"the Split pattern is not a regex .NET can read ({e.Message.Split('\n')[0]})"); }
                    return new RegexSplitPreTokenizer(pattern, behavior == "Removed");
                case "Sequence":
                    return new SequencePreTokenizer(Array(p, "pretokenizers", "Sequence pre-tokenizer").Select(PreTokenizer).Where(s => s is not null).Select(s => s!).ToArray());
                default: throw Unsupported("pre_tokenizer", type);
            }
        }

        public SpecialTokenTemplate PostProcessor(JsonElement p)
        {
            if (p.ValueKind is JsonValueKind.Undefined or JsonValueKind.Null) return SpecialTokenTemplate.None;
            var type = TypeOf(p, "post_processor");
            switch (type)
            {
                case "BertProcessing": return SpecialTokenTemplate.Bert(TokenPair(p, "cls"), TokenPair(p, "sep"));
                case "RobertaProcessing": return SpecialTokenTemplate.Roberta(TokenPair(p, "cls"), TokenPair(p, "sep"));
                case "ByteLevel": return SpecialTokenTemplate.None;
                case "TemplateProcessing": return Template(p);
                case "Sequence":
                    // The steps that add tokens are the template-like ones; ByteLevel only fixes offsets.
                    var templates = Array(p, "processors", "Sequence post-processor")
                        .Where(s => TypeOf(s, "post_processor") != "ByteLevel").Select(PostProcessor).ToList();
                    if (templates.Count > 1) throw Error("a Sequence post-processor with more than one step that adds tokens is not supported by the engine's tokenizers");
                    return templates.Count == 1 ? templates[0] : SpecialTokenTemplate.None;
                default: throw Unsupported("post_processor", type);
            }
        }

        private int TokenPair(JsonElement p, string name) =>
            p.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Array && v.GetArrayLength() == 2 && v[1].TryGetInt32(out var id)
                ? id : throw Error($"the post-processor's '{name}' is not [token, id]");

        private SpecialTokenTemplate Template(JsonElement p)
        {
            var special = new Dictionary<string, int[]>();
            if (p.TryGetProperty("special_tokens", out var tokens) && tokens.ValueKind == JsonValueKind.Object)
                foreach (var entry in tokens.EnumerateObject())
                    special[entry.Name] = Array(entry.Value, "ids", $"special token '{entry.Name}'").Select(i => i.GetInt32()).ToArray();
            List<TemplatePiece> Pieces(string name)
            {
                var pieces = new List<TemplatePiece>();
                foreach (var item in Array(p, name, "TemplateProcessing"))
                {
                    if (item.TryGetProperty("SpecialToken", out var s))
                    {
                        var id = String(s, "id") ?? throw Error($"a TemplateProcessing {name} SpecialToken has no 'id'");
                        var ids = special.GetValueOrDefault(id) ?? throw Error($"TemplateProcessing uses '{id}', which special_tokens does not list");
                        pieces.Add(new TemplatePiece(ids, -1, Int(s, "type_id") ?? 0));
                    }
                    else if (item.TryGetProperty("Sequence", out var q))
                    {
                        var which = String(q, "id");
                        pieces.Add(new TemplatePiece(null, which == "B" ? 1 : which == "A" ? 0 : throw Error($"TemplateProcessing sequence id '{which}' is not A or B"), Int(q, "type_id") ?? 0));
                    }
                    else throw Error($"a TemplateProcessing {name} item is neither SpecialToken nor Sequence");
                }
                return pieces;
            }
            return new SpecialTokenTemplate(Pieces("single"), Pieces("pair"));
        }
    }
}
