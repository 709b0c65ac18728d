namespace Engine.Models.Tokenization;

/// <summary>One piece of a template: either special tokens (<see cref="SpecialIds"/> set) or the
/// content of the first (<see cref="Sequence"/> 0) or second (1) text; every id of the piece gets
/// <see cref="TypeId"/> as its token type.</summary>
public sealed record TemplatePiece(int[]? SpecialIds, int Sequence, int TypeId)
{
    public static TemplatePiece Special(int id, int typeId = 0) => new([id], -1, typeId);
    public static TemplatePiece First(int typeId = 0) => new(null, 0, typeId);
    public static TemplatePiece Second(int typeId = 1) => new(null, 1, typeId);
}

/// <summary>
/// Where special tokens go around the content, as the tokenizers library's post-processors
/// (TemplateProcessing, BertProcessing, RobertaProcessing) and transformers' slow tokenizers'
/// build_inputs_with_special_tokens do. The conventions of the families:
/// BERT <c>[CLS] A [SEP]</c> / <c>[CLS] A [SEP] B [SEP]</c> with types 0 for [CLS] A [SEP] and 1 for B [SEP];
/// RoBERTa <c>&lt;s&gt; A &lt;/s&gt;</c> / <c>&lt;s&gt; A &lt;/s&gt;&lt;/s&gt; B &lt;/s&gt;</c>, all types 0;
/// Llama <c>bos? A eos?</c> / <c>bos? A eos? bos? B eos?</c> (bos and eos as add_bos_token and add_eos_token say),
/// types 0 for the first part and 1 for the second (Llama models take no token types; transformers does not return them).
/// </summary>
public sealed class SpecialTokenTemplate(IReadOnlyList<TemplatePiece> single, IReadOnlyList<TemplatePiece> pair)
{
    public IReadOnlyList<TemplatePiece> Single { get; } = single;
    public IReadOnlyList<TemplatePiece> Pair { get; } = pair;

    /// <summary>No special tokens: A, or A B with types 0 and 1.</summary>
    public static SpecialTokenTemplate None { get; } = new([TemplatePiece.First()], [TemplatePiece.First(), TemplatePiece.Second()]);

    public static SpecialTokenTemplate Bert(int cls, int sep) => new(
        [TemplatePiece.Special(cls), TemplatePiece.First(), TemplatePiece.Special(sep)],
        [TemplatePiece.Special(cls), TemplatePiece.First(), TemplatePiece.Special(sep), TemplatePiece.Second(1), TemplatePiece.Special(sep, 1)]);

    public static SpecialTokenTemplate Roberta(int bos, int eos) => new(
        [TemplatePiece.Special(bos), TemplatePiece.First(), TemplatePiece.Special(eos)],
        [TemplatePiece.Special(bos), TemplatePiece.First(), TemplatePiece.Special(eos), TemplatePiece.Special(eos), TemplatePiece.Second(0), TemplatePiece.Special(eos)]);

    public static SpecialTokenTemplate Llama(int? bos, int? eos)
    {
        List<TemplatePiece> Part(int sequence, int type)
        {
            var part = new List<TemplatePiece>();
            if (bos is int b) part.Add(TemplatePiece.Special(b, type));
            part.Add(new TemplatePiece(null, sequence, type));
            if (eos is int e) part.Add(TemplatePiece.Special(e, type));
            return part;
        }
        return new SpecialTokenTemplate(Part(0, 0), [.. Part(0, 0), .. Part(1, 1)]);
    }

    /// <summary>How many special tokens the template adds for one text or a pair.</summary>
    public int AddedCount(bool isPair) => (isPair ? Pair : Single).Sum(p => p.SpecialIds?.Length ?? 0);

    public Encoding Apply(IReadOnlyList<int> first, IReadOnlyList<int>? second)
    {
        var ids = new List<int>(first.Count + (second?.Count ?? 0) + 4);
        var types = new List<int>(ids.Capacity);
        foreach (var piece in second is null ? Single : Pair)
        {
            IReadOnlyList<int> part = piece.SpecialIds ?? (piece.Sequence == 0 ? first : second!);
            ids.AddRange(part);
            for (int i = 0; i < part.Count; i++) types.Add(piece.TypeId);
        }
        return new Encoding(ids, types);
    }
}
