using System.Text.Json;

namespace Engine.Models.Tokenization;

/// <summary>Shared helpers for reading tokenizer files and choosing special tokens.</summary>
internal static class TokenizerFiles
{
    private static readonly System.Text.UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>A text file as UTF-8, with an error naming the file when it is not.</summary>
    public static string ReadText(string path)
    {
        try
        {
            var text = File.ReadAllText(path, StrictUtf8);
            if (text.Contains('\0')) throw new EngineException($"{path}: contains NUL characters; not a text file");
            return text;
        }
        catch (System.Text.DecoderFallbackException) { throw new EngineException($"{path}: not valid UTF-8 text"); }
        catch (IOException e) { throw new EngineException($"{path}: cannot be read ({e.Message})"); }
    }

    public static JsonElement ReadJson(string path)
    {
        var text = ReadText(path);
        try
        {
            using var doc = JsonDocument.Parse(text);
            return doc.RootElement.Clone();
        }
        catch (JsonException e) { throw new EngineException($"{path}: not valid JSON ({e.Message.Split('\n')[0]})"); }
    }

    /// <summary>The special token named by <paramref name="key"/> in the config (or the class default) and its id;
    /// a token the vocabulary lacks is an error when required, else null.</summary>
    public static (string Token, int Id)? Special(TokenizerConfig config, string key, string? classDefault, Func<string, int?> lookup, string vocabularyFile, bool required)
    {
        var token = config.Token(key) ?? classDefault;
        if (token is null)
        {
            if (required) throw new EngineException($"{config.Path ?? vocabularyFile}: no {key} is configured");
            return null;
        }
        if (lookup(token) is int id) return (token, id);
        if (required) throw new EngineException($"{vocabularyFile}: the {key} '{token}' is not in the vocabulary");
        return null;
    }

    /// <summary>
    /// The pad id when the folder names no pad token: config.json's pad_token_id when it has one,
    /// else the unknown token's id, else the end-of-sequence id, else 0. Padding positions are
    /// masked out by the attention mask, so any id works for the model; a classifier that looks for
    /// the last non-pad token uses config.json's pad_token_id, which is why that comes first.
    /// </summary>
    public static int FallbackPadId(TokenizerConfig config, int? unknownId, int? endOfSequenceId) =>
        config.ModelPadTokenId ?? unknownId ?? endOfSequenceId ?? 0;

    /// <summary>The tokens to cut out of the text before tokenizing: the configured special tokens
    /// that the vocabulary has and added_tokens_decoder's entries.</summary>
    public static Dictionary<string, int> AddedTokens(TokenizerConfig config, Func<string, int?> lookup, IEnumerable<string> defaults)
    {
        var added = new Dictionary<string, int>();
        foreach (var token in config.SpecialTokens.Values.Concat(defaults))
            if (lookup(token) is int id) added[token] = id;
        foreach (var (id, content, _) in config.AddedTokens) added[content] = id;
        return added;
    }
}

/// <summary>
/// BERT's WordPiece tokenizer from vocab.txt (one token per line, the id is the line number) and
/// tokenizer_config.json, as transformers' BertTokenizer: do_lower_case (default true),
/// strip_accents (default: follows do_lower_case), tokenize_chinese_chars (default true), special
/// tokens [UNK] [CLS] [SEP] [PAD] [MASK] unless renamed, model_max_length. Not Microsoft.ML.Tokenizers'
/// BertTokenizer, which drops symbols such as '$' and keeps accents under invariant globalization (docs/tokenizers.md).
/// </summary>
public static class WordPieceFiles
{
    public static TextTokenizer Load(string vocabPath, TokenizerConfig config)
    {
        var text = TokenizerFiles.ReadText(vocabPath);
        var lines = text.Split('\n');
        int count = lines.Length > 0 && lines[^1].Length == 0 ? lines.Length - 1 : lines.Length;
        if (count == 0) throw new EngineException($"{vocabPath}: the vocabulary is empty");
        var ids = new Dictionary<string, int>(count);
        for (int i = 0; i < count; i++) ids[lines[i].TrimEnd('\r')] = i;
        var vocabulary = new Vocabulary(ids);

        int? Lookup(string token) => vocabulary[token];
        var unk = TokenizerFiles.Special(config, "unk_token", "[UNK]", Lookup, vocabPath, required: true)!.Value;
        var cls = TokenizerFiles.Special(config, "cls_token", "[CLS]", Lookup, vocabPath, required: true)!.Value;
        var sep = TokenizerFiles.Special(config, "sep_token", "[SEP]", Lookup, vocabPath, required: true)!.Value;
        var pad = TokenizerFiles.Special(config, "pad_token", "[PAD]", Lookup, vocabPath, required: false);
        bool lowercase = config.DoLowerCase ?? true;
        bool stripAccents = config.StripAccents ?? lowercase;
        bool chinese = config.TokenizeChineseChars ?? true;
        var added = TokenizerFiles.AddedTokens(config, Lookup, ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]);
        return new PipelineTokenizer(new WordPieceModel(vocabulary, unk.Id),
            s => Normalizers.Bert(s, cleanText: true, chinese, stripAccents, lowercase), new BertPreTokenizer(),
            added, pad?.Id, TokenizerFiles.FallbackPadId(config, unk.Id, sep.Id))
        {
            Template = SpecialTokenTemplate.Bert(cls.Id, sep.Id),
            ModelMaxLength = config.ModelMaxLength,
            Source = vocabPath,
        };
    }
}

/// <summary>
/// RoBERTa's byte-level BPE from vocab.json (token → id) and merges.txt (one "left right" merge per
/// line, best first, after an optional "#version" line), as transformers' RobertaTokenizer:
/// add_prefix_space (default false), special tokens &lt;s&gt; &lt;/s&gt; &lt;pad&gt; &lt;unk&gt; &lt;mask&gt;
/// unless renamed; one text is <c>&lt;s&gt; A &lt;/s&gt;</c>, a pair <c>&lt;s&gt; A &lt;/s&gt;&lt;/s&gt; B &lt;/s&gt;</c>.
/// </summary>
public static class ByteLevelBpeFiles
{
    public static TextTokenizer Load(string vocabPath, string mergesPath, TokenizerConfig config)
    {
        var vocabulary = ReadVocabulary(TokenizerFiles.ReadJson(vocabPath), vocabPath);
        var merges = ReadMergesTxt(mergesPath);
        int? Lookup(string token) => vocabulary[token];
        var cls = TokenizerFiles.Special(config, "cls_token", "<s>", Lookup, vocabPath, required: true)!.Value;
        var sep = TokenizerFiles.Special(config, "sep_token", "</s>", Lookup, vocabPath, required: true)!.Value;
        var unk = TokenizerFiles.Special(config, "unk_token", "<unk>", Lookup, vocabPath, required: false);
        var pad = TokenizerFiles.Special(config, "pad_token", "<pad>", Lookup, vocabPath, required: false);
        var added = TokenizerFiles.AddedTokens(config, Lookup, ["<s>", "</s>", "<pad>", "<unk>", "<mask>"]);
        var model = new BpeModel(vocabulary, merges, mergesPath, unk?.Id);
        return new PipelineTokenizer(model, null, new ByteLevelPreTokenizer(config.AddPrefixSpace ?? false, useRegex: true),
            added, pad?.Id, TokenizerFiles.FallbackPadId(config, unk?.Id, sep.Id))
        {
            Template = SpecialTokenTemplate.Roberta(cls.Id, sep.Id),
            ModelMaxLength = config.ModelMaxLength,
            Source = vocabPath,
        };
    }

    internal static Vocabulary ReadVocabulary(JsonElement json, string path)
    {
        if (json.ValueKind != JsonValueKind.Object) throw new EngineException($"{path}: the vocabulary must be a JSON object of token → id");
        var ids = new Dictionary<string, int>();
        foreach (var entry in json.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetInt32(out var id) || id < 0)
                throw new EngineException($"{path}: the id of '{entry.Name}' is not a non-negative integer");
            ids[entry.Name] = id;
        }
        if (ids.Count == 0) throw new EngineException($"{path}: the vocabulary is empty");
        return new Vocabulary(ids);
    }

    private static List<(string, string)> ReadMergesTxt(string path)
    {
        var merges = new List<(string, string)>();
        var lines = TokenizerFiles.ReadText(path).Split('\n');
        for (int i = 0; i < lines.Length; i++)
        {
            var line = lines[i].TrimEnd('\r');
            if (line.Length == 0 || (i == 0 && line.StartsWith("#version", StringComparison.Ordinal))) continue;
            var parts = line.Split(' ');
            if (parts.Length != 2 || parts[0].Length == 0 || parts[1].Length == 0)
                throw new EngineException($"{path}: line {i + 1} is not a merge of two tokens separated by one space: '{Shorten(line)}'");
            merges.Add((parts[0], parts[1]));
        }
        return merges;
    }

    internal static string Shorten(string s) => s.Length <= 40 ? s : s[..40] + "…";
}
