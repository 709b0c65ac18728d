namespace Engine.Models.Tokenization;

/// <summary>One encoded input: token ids with the special tokens Hugging Face adds, and the
/// token type (segment) ids (0 for the first text, 1 for the second of a pair).</summary>
public sealed record Encoding(IReadOnlyList<int> Ids, IReadOnlyList<int> TypeIds);

/// <summary>A batch of encodings padded on the right to the longest row: row-major
/// [Rows, Columns] arrays of ids (padding = <see cref="TextTokenizer.PadId"/>), attention mask
/// (1 on tokens, 0 on padding) and token type ids (0 on padding).</summary>
public sealed record EncodedBatch(int Rows, int Columns, int[] Ids, int[] AttentionMask, int[] TypeIds);

/// <summary>
/// A Hugging Face folder's tokenizer, behaving as transformers' AutoTokenizer does for
/// <c>tokenizer(text, text_pair, truncation=True, max_length=n)</c>.
/// </summary>
/// <remarks>
/// Every tokenizer works in two stages, as the Hugging Face tokenizers library does: the text
/// (and the pair) is first turned into content ids without special tokens
/// (<see cref="EncodeWithoutSpecialTokens"/>); the content is then truncated to fit and the
/// special tokens of the folder's <see cref="Template"/> are put around it.
/// </remarks>
public abstract class TextTokenizer
{
    /// <summary>The id used to pad a batch. When the folder names no pad token this is a
    /// documented fallback (see <see cref="HasPadToken"/> and docs/tokenizers.md).</summary>
    public abstract int PadId { get; }

    /// <summary>True when the folder names a pad token; false when <see cref="PadId"/> is a fallback.</summary>
    public virtual bool HasPadToken => true;

    /// <summary>The number of ids the tokenizer can produce (vocabulary plus added tokens).</summary>
    public abstract int VocabSize { get; }

    /// <summary>tokenizer_config.json's model_max_length, used as the truncation length when
    /// <see cref="Encode"/> gets none; null when absent or a placeholder (≥ 1e9, as transformers writes
    /// for "no limit").</summary>
    public int? ModelMaxLength { get; init; }

    /// <summary>Where the special tokens go for one text and for a pair.</summary>
    public SpecialTokenTemplate Template { get; init; } = SpecialTokenTemplate.None;

    /// <summary>The file the tokenizer was read from (for messages).</summary>
    public string Source { get; init; } = "";

    /// <summary>The ids of a text without special tokens (transformers' <c>add_special_tokens=False</c>).</summary>
    public abstract IReadOnlyList<int> EncodeWithoutSpecialTokens(string text);

    /// <summary>The vocabulary string of an id (as stored: "##ing", "Ġthe", "▁the"), or null when unknown.</summary>
    public abstract string? IdToToken(int id);

    /// <summary>The id of a vocabulary string or added token, or null when absent.</summary>
    public abstract int? TokenToId(string token);

    /// <summary>Encodes a text (or a pair) with special tokens; truncates to <paramref name="maxLength"/>
    /// tokens in all (longest-first for pairs) when given, else to <see cref="ModelMaxLength"/> when known.</summary>
    public virtual Encoding Encode(string text, string? pair = null, int? maxLength = null)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (maxLength is < 0) throw new EngineException($"{Source}: max length must be at least 0, got {maxLength}");
        IReadOnlyList<int> first = EncodeWithoutSpecialTokens(text);
        IReadOnlyList<int>? second = pair is null ? null : EncodeWithoutSpecialTokens(pair);
        if ((maxLength ?? ModelMaxLength) is int limit)
            (first, second) = Truncation.LongestFirst(first, second, Math.Max(0, limit - Template.AddedCount(second is not null)));
        return Template.Apply(first, second);
    }

    /// <summary>Encodes several texts (and optionally as many pairs) and pads them on the right
    /// to the longest, as <c>tokenizer(texts, pairs, padding=True, truncation=True, max_length=n)</c> does.</summary>
    public EncodedBatch EncodeBatch(IReadOnlyList<string> texts, IReadOnlyList<string>? pairs = null, int? maxLength = null)
    {
        if (pairs is not null && pairs.Count != texts.Count)
            throw new EngineException($"{Source}: {texts.Count} texts but {pairs.Count} pairs");
        var rows = new Encoding[texts.Count];
        for (int i = 0; i < rows.Length; i++) rows[i] = Encode(texts[i], pairs?[i], maxLength);
        int columns = rows.Length == 0 ? 0 : rows.Max(r => r.Ids.Count);
        var ids = new int[rows.Length * columns];
        var mask = new int[ids.Length];
        var types = new int[ids.Length];
        Array.Fill(ids, PadId);
        for (int r = 0; r < rows.Length; r++)
            for (int c = 0; c < rows[r].Ids.Count; c++)
            {
                ids[r * columns + c] = rows[r].Ids[c];
                mask[r * columns + c] = 1;
                types[r * columns + c] = rows[r].TypeIds[c];
            }
        return new EncodedBatch(rows.Length, columns, ids, mask, types);
    }

    /// <summary>The tokenizer of a model folder (tokenizer.json, vocab.txt, vocab.json + merges.txt,
    /// or tokenizer.model), configured by tokenizer_config.json and special_tokens_map.json.
    /// Like AutoTokenizer, tokenizer.json (the "fast" file) is preferred when the folder has it.</summary>
    public static TextTokenizer FromFolder(HfModelFolder folder)
    {
        var files = folder.Tokenizer;
        var config = TokenizerConfig.Read(files.TokenizerConfig, files.SpecialTokensMap, folder);
        if (files.TokenizerJson is not null) return TokenizerJson.Load(files.TokenizerJson, config);
        if (files.VocabTxt is not null) return WordPieceFiles.Load(files.VocabTxt, config);
        if (files.VocabJson is not null || files.MergesTxt is not null)
        {
            if (files.VocabJson is null) throw new EngineException($"{files.MergesTxt}: merges.txt without vocab.json in {folder.Path}");
            if (files.MergesTxt is null) throw new EngineException($"{files.VocabJson}: vocab.json without merges.txt in {folder.Path}");
            return ByteLevelBpeFiles.Load(files.VocabJson, files.MergesTxt, config);
        }
        if (files.SentencePieceModel is not null) return SentencePieceLlamaTokenizer.Load(files.SentencePieceModel, config);
        throw new EngineException($"{folder.Path}: the folder has no tokenizer files (tokenizer.json, vocab.txt, vocab.json + merges.txt, or tokenizer.model)");
    }
}

/// <summary>
/// Hugging Face's "longest_first" truncation (tokenizers' truncate_encodings, which transformers'
/// fast tokenizers use). With n1 the shorter and n2 the longer content length and m the room
/// left after the special tokens: the shorter keeps n1 when the longer can take the rest
/// (n2 becomes max(n1, m − n1)); otherwise both are cut, the shorter to m / 2 and the longer to
/// m / 2 + m % 2. With equal lengths the first text counts as the shorter, so it gets the smaller
/// half: the same as removing one token at a time from the longer, taking from the first on ties.
/// Tokens are removed from the end of each text.
/// </summary>
public static class Truncation
{
    public static (IReadOnlyList<int> First, IReadOnlyList<int>? Second) LongestFirst(IReadOnlyList<int> first, IReadOnlyList<int>? second, int room)
    {
        if (second is null) return (first.Count > room ? first.Take(room).ToArray() : first, null);
        if (first.Count + second.Count <= room) return (first, second);
        int n1 = first.Count, n2 = second.Count;
        bool swapped = n1 > n2;
        if (swapped) (n1, n2) = (n2, n1);
        n2 = n1 > room ? n1 : Math.Max(n1, room - n1);
        if (n1 + n2 > room)
        {
            n1 = room / 2;
            n2 = n1 + room % 2;
        }
        if (swapped) (n1, n2) = (n2, n1);
        return (first.Take(Math.Min(n1, first.Count)).ToArray(), second.Take(Math.Min(n2, second.Count)).ToArray());
    }
}
