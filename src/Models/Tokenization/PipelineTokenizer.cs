using System.Text.RegularExpressions;

namespace Engine.Models.Tokenization;

/// <summary>
/// A tokenizer built from the tokenizers library's stages: added (special) tokens are cut out of
/// the raw text first and map straight to their ids; every other segment is normalized,
/// pre-tokenized into pieces, and each piece encoded by the model. Added tokens are matched
/// exactly as written (longest first), before normalization; their lstrip/rstrip/single_word
/// options are not applied.
/// </summary>
public sealed class PipelineTokenizer : TextTokenizer
{
    private readonly Func<string, string>? normalizer;
    private readonly PreTokenizer? preTokenizer;
    private readonly TokenModel model;
    private readonly Dictionary<string, int> addedTokens;
    private readonly Regex? addedTokenPattern;
    private readonly int padId;
    private readonly bool hasPadToken;

    public PipelineTokenizer(TokenModel model, Func<string, string>? normalizer, PreTokenizer? preTokenizer,
        IReadOnlyDictionary<string, int> addedTokens, int? padId, int fallbackPadId)
    {
        this.model = model;
        this.normalizer = normalizer;
        this.preTokenizer = preTokenizer;
        this.addedTokens = new Dictionary<string, int>(addedTokens);
        var contents = this.addedTokens.Keys.Where(k => k.Length > 0).OrderByDescending(k => k.Length).ThenBy(k => k, StringComparer.Ordinal).ToList();
        addedTokenPattern = contents.Count == 0 ? null : new Regex(string.Join("|", contents.Select(Regex.Escape)), RegexOptions.CultureInvariant | RegexOptions.Compiled);
        hasPadToken = padId is not null;
        this.padId = padId ?? fallbackPadId;
    }

    public override int PadId => padId;
    public override bool HasPadToken => hasPadToken;
    public override int VocabSize => Math.Max(model.VocabSize, addedTokens.Count == 0 ? 0 : addedTokens.Values.Max() + 1);

    public override int? TokenToId(string token) => addedTokens.TryGetValue(token, out var id) ? id : model.TokenToId(token);

    public override string? IdToToken(int id) =>
        model.IdToToken(id) ?? addedTokens.FirstOrDefault(kv => kv.Value == id).Key;

    public override IReadOnlyList<int> EncodeWithoutSpecialTokens(string text)
    {
        var ids = new List<int>();
        int at = 0;
        bool first = true;
        if (addedTokenPattern is not null)
            foreach (Match m in addedTokenPattern.Matches(text))
            {
                if (m.Index > at) EncodeSegment(text[at..m.Index], first, ids);
                ids.Add(addedTokens[m.Value]);
                at = m.Index + m.Length;
                first = false;
            }
        if (at < text.Length) EncodeSegment(text[at..], first, ids);
        return ids;
    }

    private void EncodeSegment(string segment, bool isFirst, List<int> ids)
    {
        var normalized = normalizer is null ? segment : normalizer(segment);
        if (normalized.Length == 0) return;
        if (preTokenizer is null) { model.Encode(normalized, ids); return; }
        foreach (var piece in preTokenizer.Split(normalized, isFirst)) model.Encode(piece, ids);
    }
}
