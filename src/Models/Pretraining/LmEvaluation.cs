using Engine.Autograd;
using Engine.Distributed;

namespace Engine.Models.Pretraining;

/// <summary>
/// How the scored positions of a batch are chosen, for training and for evaluation: BERT masks
/// rows (<see cref="MlmMasker"/>, keyed by (epoch, row)), Llama scores each position against the
/// next token. Held-out rows are masked with the fixed key <see cref="EvalKey"/> and seed
/// <see cref="EvalSeed"/>, so every evaluation of every run (and `engine eval-lm`) scores the
/// same positions of the same rows.
/// </summary>
public sealed class LmObjective(LanguageModel model, MlmMasker? masker)
{
    public const ulong EvalSeed = 0x5EED_E7A1, EvalKey = 0xFFFF_FFFF_0000_0000;
    public LanguageModel Model { get; } = model;
    public MlmMasker? Masker { get; } = masker;
    public bool Masked => Masker is not null;

    /// <summary>Input ids and targets for rows ids [B, T]; <paramref name="keys"/>[i] keys row i's masks.</summary>
    public (int[] Input, int[] Targets) Prepare(int[] ids, int batch, int length, ulong seed, IReadOnlyList<ulong> keys)
    {
        if (Masker is null) return (ids, CausalLanguageModel.ShiftedTargets(ids, batch, length));
        var input = new int[ids.Length];
        var targets = new int[ids.Length];
        for (int b = 0; b < batch; b++)
        {
            var row = Masker.Mask(ids.AsSpan(b * length, length), seed, keys[b]);
            row.Ids.CopyTo(input, b * length);
            row.Labels.CopyTo(targets, b * length);
        }
        return (input, targets);
    }

    /// <summary>The objective of a folder's model: BERT's masker needs the tokenizer's special
    /// tokens ([CLS], [SEP], [PAD], [UNK], [MASK]) and, for whole-word masking, its "##" pieces.</summary>
    public static LmObjective For(LanguageModel model, Tokenization.TextTokenizer tokenizer, bool wholeWords = false, double probability = 0.15)
    {
        if (model is not MaskedLanguageModel) return new LmObjective(model, null);
        int Id(string token) => tokenizer.TokenToId(token) ?? throw new EngineException($"{tokenizer.Source}: the vocabulary has no {token} token");
        var masker = new MlmMasker(model.VocabSize, Id("[MASK]"), [Id("[CLS]"), Id("[SEP]"), Id("[PAD]"), Id("[UNK]")],
            id => tokenizer.IdToToken(id)?.StartsWith("##", StringComparison.Ordinal) ?? false)
        { WholeWords = wholeWords, Probability = probability };
        return new LmObjective(model, masker);
    }

    /// <summary>Start token and separator of packed rows: [CLS]/[SEP] for BERT, bos/eos for Llama.</summary>
    public static (int Start, int Separator) Delimiters(HfModelFolder folder, Tokenization.TextTokenizer tokenizer)
    {
        if (folder.Family == ModelFamily.Bert)
            return (tokenizer.TokenToId("[CLS]") ?? throw new EngineException($"{tokenizer.Source}: no [CLS] token"),
                    tokenizer.TokenToId("[SEP]") ?? throw new EngineException($"{tokenizer.Source}: no [SEP] token"));
        var c = folder.LlamaConfig;
        if (c.BosTokenId is not int bos || c.EosTokenIds.Count == 0)
            throw new EngineException($"{folder.ConfigPath}: a causal LM needs bos_token_id and eos_token_id in config.json");
        return (bos, c.EosTokenIds[0]);
    }
}

/// <summary>Held-out quality: mean cross-entropy over the scored positions (nats), its
/// perplexity, top-1 accuracy (MLM accuracy for BERT, next-token accuracy for Llama), and the
/// same three for the unigram baseline on the same positions.</summary>
public sealed record LmEvalResult(double Loss, double Accuracy, long Scored, double UnigramLoss, double UnigramAccuracy)
{
    public double Perplexity => Math.Exp(Loss);
    public double UnigramPerplexity => Math.Exp(UnigramLoss);

    public Dictionary<string, double> ToMetrics(bool masked) => new()
    {
        ["held_out_loss"] = Loss, ["perplexity"] = Perplexity, [masked ? "mlm_accuracy" : "next_token_accuracy"] = Accuracy,
        ["unigram_loss"] = UnigramLoss, ["unigram_perplexity"] = UnigramPerplexity, [masked ? "unigram_mlm_accuracy" : "unigram_accuracy"] = UnigramAccuracy,
        ["scored_tokens"] = Scored,
    };
}

/// <summary>
/// The unigram-frequency baseline: every scored position is predicted by the token
/// frequencies of a reference text alone (add-one smoothed over the tokens that can be targets:
/// all ids for a causal LM, the non-special ids for a masked LM), ignoring all context. Its
/// accuracy is that of always guessing the most frequent such token.
/// </summary>
public sealed class UnigramBaseline
{
    private readonly double[] logProb;
    private readonly int mostFrequent;

    public UnigramBaseline(long[] counts, Func<int, bool> canBeTarget)
    {
        logProb = new double[counts.Length];
        long total = 0, kinds = 0;
        mostFrequent = -1;
        for (int i = 0; i < counts.Length; i++)
        {
            if (!canBeTarget(i)) continue;
            total += counts[i];
            kinds++;
            if (mostFrequent < 0 || counts[i] > counts[mostFrequent]) mostFrequent = i;
        }
        for (int i = 0; i < counts.Length; i++)
            logProb[i] = canBeTarget(i) ? Math.Log((counts[i] + 1.0) / (total + kinds)) : double.NegativeInfinity;
    }

    /// <summary>Counts of the tokens at positions 1 … T−1 of <paramref name="rows"/> (the positions that can be targets).</summary>
    public static long[] Count(PackedCorpus corpus, IEnumerable<int> rows, int vocabSize)
    {
        var counts = new long[vocabSize];
        var row = new int[corpus.RowLength];
        foreach (var r in rows)
        {
            corpus.Row(r, row);
            for (int j = 1; j < row.Length; j++) if ((uint)row[j] < (uint)vocabSize) counts[row[j]]++;
        }
        return counts;
    }

    public double LogProb(int id) => logProb[id];
    public int MostFrequent => mostFrequent;
}

/// <summary>Scores a model on packed held-out rows (evaluation mode, no gradients). In a
/// data-parallel job (ranks given) each rank scores its contiguous shard of the rows
/// and the five sums (loss, correct, scored, unigram loss, unigram correct) are added over the
/// ranks, so every rank returns the whole set's result.</summary>
public static class LmEvaluator
{
    public static LmEvalResult Evaluate(LmObjective objective, PackedCorpus corpus, IReadOnlyList<int> rows, int batchSize, UnigramBaseline unigram, DataParallel? ranks = null)
    {
        if (ranks is not null) rows = ranks.Shard(rows.ToArray());
        var model = objective.Model;
        bool wasTraining = model.Training;
        model.Eval();
        double lossSum = 0, unigramSum = 0;
        long scored = 0, correct = 0, unigramCorrect = 0;
        int t = corpus.RowLength;
        using (Tape.NoGrad())
        {
            for (int start = 0; start < rows.Count; start += batchSize)
            {
                var part = rows.Skip(start).Take(batchSize).ToArray();
                var ids = corpus.Rows(part);
                var keys = part.Select(r => LmObjective.EvalKey + (ulong)r).ToArray();
                var (input, targets) = objective.Prepare(ids, part.Length, t, LmObjective.EvalSeed, keys);
                if (!targets.Any(target => target != MlmMasker.Ignore)) continue;   // nothing to score in these rows
                using var scope = Scope.Begin();
                var p = model.Predict(input, targets, part.Length, t);
                var logits = p.Logits.Device.Kind == DeviceKind.Cpu ? p.Logits : p.Logits.To(Device.Cpu);
                int v = logits.Dim(1);
                var values = logits.Span<float>();
                for (int i = 0; i < p.Targets.Length; i++)
                {
                    int target = p.Targets[i];
                    if (target == MlmMasker.Ignore) continue;
                    var row = values.Slice(i * v, v);
                    int best = 0;
                    float max = row[0];
                    for (int j = 1; j < v; j++) if (row[j] > max) { max = row[j]; best = j; }
                    double sum = 0;
                    for (int j = 0; j < v; j++) sum += Math.Exp(row[j] - max);
                    lossSum += max + Math.Log(sum) - row[target];
                    if (best == target) correct++;
                    unigramSum -= unigram.LogProb(target);
                    if (unigram.MostFrequent == target) unigramCorrect++;
                    scored++;
                }
            }
        }
        if (wasTraining) model.Train();
        if (ranks is { Size: > 1 })
        {
            Span<double> sums = [lossSum, correct, scored, unigramSum, unigramCorrect];
            ranks.Collectives.AllReduceSum(sums);
            (lossSum, correct, scored, unigramSum, unigramCorrect) = (sums[0], (long)sums[1], (long)sums[2], sums[3], (long)sums[4]);
        }
        if (scored == 0) throw new EngineException("eval: no position was scored (too few held-out rows?)");
        return new LmEvalResult(lossSum / scored, (double)correct / scored, scored, unigramSum / scored, (double)unigramCorrect / scored);
    }
}
