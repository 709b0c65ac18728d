using Microsoft.ML.Tokenizers;

namespace Engine.Models.Tokenization;

/// <summary>
/// Llama 2 / Mistral SentencePiece (tokenizer.model) through Microsoft.ML.Tokenizers' LlamaTokenizer,
/// honouring tokenizer_config.json as transformers' LlamaTokenizer does: add_bos_token (default true)
/// and add_eos_token (default false) decide the template <c>bos? A eos?</c>, and for a pair
/// <c>bos? A eos? bos? B eos?</c> (the second part with token type 1). Each text is encoded on its
/// own, so each gets SentencePiece's leading "▁". Text that spells a special token ("&lt;s&gt;")
/// is encoded as text, as SentencePiece does (transformers would map it to the special id).
/// Llama has no pad token by default; <see cref="PadId"/> is then the documented fallback
/// (config.json's pad_token_id, else the unknown id, else eos).
/// </summary>
public sealed class SentencePieceLlamaTokenizer : TextTokenizer
{
    private readonly LlamaTokenizer tokenizer;
    private readonly Dictionary<int, string> tokens;
    private readonly int padId;
    private readonly bool hasPadToken;

    private SentencePieceLlamaTokenizer(LlamaTokenizer tokenizer, int padId, bool hasPadToken)
    {
        this.tokenizer = tokenizer;
        this.padId = padId;
        this.hasPadToken = hasPadToken;
        tokens = tokenizer.Vocabulary.ToDictionary(kv => kv.Value, kv => kv.Key);
    }

    public int BosId => tokenizer.BeginningOfSentenceId;
    public int EosId => tokenizer.EndOfSentenceId;
    public override int PadId => padId;
    public override bool HasPadToken => hasPadToken;
    public override int VocabSize => tokens.Count == 0 ? 0 : tokens.Keys.Max() + 1;
    public override string? IdToToken(int id) => tokens.GetValueOrDefault(id);
    public override int? TokenToId(string token) => tokenizer.Vocabulary.TryGetValue(token, out var id) ? id : null;

    public override IReadOnlyList<int> EncodeWithoutSpecialTokens(string text) =>
        tokenizer.EncodeToIds(text, addBeginningOfSentence: false, addEndOfSentence: false);

    /// <summary>Decodes ids back to text (special tokens dropped).</summary>
    public string Decode(IEnumerable<int> ids) => tokenizer.Decode(ids, considerSpecialTokens: false);

    public static SentencePieceLlamaTokenizer Load(string modelPath, TokenizerConfig config)
    {
        LlamaTokenizer tokenizer;
        try
        {
            using var stream = File.OpenRead(modelPath);
            tokenizer = LlamaTokenizer.Create(stream, addBeginOfSentence: false, addEndOfSentence: false);
        }
        catch (Exception e) when (e is not EngineException)
        {
            throw new EngineException($"{modelPath}: not a readable SentencePiece model ({e.GetType().Name}: {e.Message.Split('\n')[0]})");
        }
        int? Lookup(string token) => tokenizer.Vocabulary.TryGetValue(token, out var id) ? id : null;
        int bos = config.Token("bos_token") is string b ? Lookup(b) ?? throw Missing(modelPath, "bos_token", b) : tokenizer.BeginningOfSentenceId;
        int eos = config.Token("eos_token") is string e2 ? Lookup(e2) ?? throw Missing(modelPath, "eos_token", e2) : tokenizer.EndOfSentenceId;
        int? pad = config.Token("pad_token") is string p ? Lookup(p) ?? AddedTokenId(config, p) : null;
        bool addBos = config.AddBosToken ?? true, addEos = config.AddEosToken ?? false;
        return new SentencePieceLlamaTokenizer(tokenizer, pad ?? TokenizerFiles.FallbackPadId(config, tokenizer.UnknownId, eos), pad is not null)
        {
            Template = SpecialTokenTemplate.Llama(addBos ? bos : null, addEos ? eos : null),
            ModelMaxLength = config.ModelMaxLength,
            Source = modelPath,
        };
    }

    private static int? AddedTokenId(TokenizerConfig config, string content)
    {
        foreach (var (id, text, _) in config.AddedTokens) if (text == content) return id;
        return null;
    }

    private static EngineException Missing(string path, string key, string token) =>
        new($"{path}: the {key} '{token}' of tokenizer_config.json is not in the SentencePiece vocabulary");
}
