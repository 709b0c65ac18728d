namespace Engine.Models.Tokenization;

/// <summary>One encoded input: token ids with the special tokens Hugging Face adds, and the
/// token type (segment) ids (0 for the first text, 1 for the second of a pair).</summary>
public sealed record Encoding(IReadOnlyList<int> Ids, IReadOnlyList<int> TypeIds);

/// <summary>
/// A Hugging Face folder's tokenizer, behaving as transformers' AutoTokenizer does for
/// <c>tokenizer(text, text_pair, truncation=True, max_length=n)</c>.
/// </summary>
public abstract class TextTokenizer
{
    /// <summary>The id used to pad a batch.</summary>
    public abstract int PadId { get; }

    /// <summary>Encodes a text (or a pair) with special tokens; truncates to <paramref name="maxLength"/>
    /// tokens in all (longest-first for pairs) when given.</summary>
    public abstract Encoding Encode(string text, string? pair = null, int? maxLength = null);

    /// <summary>The tokenizer of a model folder (tokenizer.json, vocab.txt, vocab.json + merges.txt,
    /// or tokenizer.model), configured by tokenizer_config.json and special_tokens_map.json.</summary>
    public static TextTokenizer FromFolder(HfModelFolder folder) =>
        throw new EngineException($"{folder.Path}: tokenizers are not implemented yet");
}
