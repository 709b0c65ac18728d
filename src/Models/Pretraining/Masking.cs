namespace Engine.Models.Pretraining;

/// <summary>One row prepared for masked-language modelling: the model's input ids (some
/// replaced) and the labels (the original id where the loss counts, -100 elsewhere).</summary>
public sealed record MaskedRow(int[] Ids, int[] Labels);

/// <summary>
/// BERT's masked-language-model corruption, as Hugging Face's DataCollatorForLanguageModeling
/// does it: each token that is not a special token is selected with probability
/// <see cref="Probability"/> (15%); a selected token becomes [MASK] with probability 0.8, a
/// random token with probability 0.1, and stays itself with probability 0.1; the labels keep the
/// original id at selected positions and -100 (ignored by the loss) elsewhere.
///
/// Two differences from the collator, both deliberate: random replacements are drawn from the
/// vocabulary's non-special tokens (the collator draws from all ids, [CLS] and [PAD] included),
/// and every draw is a pure function of (seed, key, position) through <see cref="Rng"/>, so a
/// row is masked the same way on every machine and after a resume. The key is chosen by the
/// caller: the pretrainer uses (epoch, row), so each epoch sees fresh masks (RoBERTa's dynamic
/// masking) and the held-out rows use a fixed key, so evaluations are comparable.
///
/// Whole-word masking (<see cref="WholeWords"/>): a word is a token followed by its
/// continuation pieces ("##"-prefixed in WordPiece); each word is selected with probability
/// 15% and all its pieces are then masked, each still getting its own 80/10/10 choice. (The
/// collator instead picks words in random order until 15% of the tokens are covered; both mask
/// 15% of the tokens on average.)
/// </summary>
public sealed class MlmMasker
{
    public const int Ignore = -100;
    public double Probability { get; init; } = 0.15;
    public double MaskShare { get; init; } = 0.8;
    public double RandomShare { get; init; } = 0.1;
    public bool WholeWords { get; init; }

    private readonly int maskId;
    private readonly bool[] special;
    private readonly bool[] continuation;
    private readonly int[] replacements;

    /// <param name="vocabSize">ids are 0 … vocabSize − 1.</param>
    /// <param name="maskId">the [MASK] id.</param>
    /// <param name="specialIds">ids never selected and never drawn as replacements ([CLS], [SEP], [PAD], [UNK], [MASK]).</param>
    /// <param name="isContinuation">for whole-word masking: whether an id continues the word before it ("##ing"); null: every id starts a word.</param>
    public MlmMasker(int vocabSize, int maskId, IEnumerable<int> specialIds, Func<int, bool>? isContinuation = null)
    {
        if (maskId < 0 || maskId >= vocabSize) throw new EngineException($"mlm: the [MASK] id {maskId} is outside the vocabulary of {vocabSize}");
        this.maskId = maskId;
        special = new bool[vocabSize];
        foreach (var id in specialIds) if (id >= 0 && id < vocabSize) special[id] = true;
        special[maskId] = true;
        continuation = new bool[vocabSize];
        if (isContinuation is not null) for (int i = 0; i < vocabSize; i++) continuation[i] = isContinuation(i);
        replacements = Enumerable.Range(0, vocabSize).Where(i => !special[i]).ToArray();
        if (replacements.Length == 0) throw new EngineException("mlm: the vocabulary has no ordinary tokens");
    }

    public bool IsSpecial(int id) => id >= 0 && id < special.Length && special[id];

    /// <summary>Masks one row. <paramref name="seed"/> and <paramref name="key"/> fix every draw:
    /// position j uses the counter-based stream Rng.Mix(Rng.Mix(seed, key), 3j + {0, 1, 2})
    /// (selection, the 80/10/10 choice, the replacement).</summary>
    public MaskedRow Mask(ReadOnlySpan<int> ids, ulong seed, ulong key)
    {
        ulong stream = Rng.Mix(seed, key);
        var input = ids.ToArray();
        var labels = new int[ids.Length];
        Array.Fill(labels, Ignore);
        bool selected = false;
        for (int j = 0; j < ids.Length; j++)
        {
            int id = ids[j];
            if ((uint)id >= (uint)special.Length) throw new EngineException($"mlm: token id {id} at position {j} is outside the vocabulary of {special.Length}");
            if (special[id]) { selected = false; continue; }
            // A new unit starts at every token, or (whole words) at every token that does not continue a word.
            if (!WholeWords || !continuation[id] || j == 0) selected = Rng.Uniform(stream, 3 * (ulong)j) < Probability;
            if (!selected) continue;
            labels[j] = id;
            double choice = Rng.Uniform(stream, 3 * (ulong)j + 1);
            if (choice < MaskShare) input[j] = maskId;
            else if (choice < MaskShare + RandomShare) input[j] = replacements[(int)(Rng.Mix(stream, 3 * (ulong)j + 2) % (ulong)replacements.Length)];
        }
        return new MaskedRow(input, labels);
    }
}
