namespace Engine.Models.Peft;

/// <summary>
/// How a method that classifies (text, candidate label) pairs runs on a K-label task, offered by
/// its <see cref="InstalledMethod.Pairing"/>. Such a model does not read K logits off one row:
/// every row of a forward is one example paired with one candidate label (set before the forward
/// with <see cref="Pair"/>), and its logits are [rows, 2]: column 0 "the candidate is not the
/// label", column <see cref="TrueColumn"/> "the candidate is the label".
///
/// The trainer uses it in three places (docs/peft.md, "How to add a method"):
/// <list type="bullet">
/// <item>training: at each epoch's start <see cref="TrainingPairs"/> pairs every training example
/// with one candidate (its own label with probability ½, target 1; otherwise a uniformly drawn
/// wrong label, target 0), from a generator seeded by (run seed, epoch), so a resumed run pairs as
/// the uninterrupted one did; a batch's rows are its examples with their candidates;</item>
/// <item>prediction: every example is run with each of the K labels (K rows); its K-way scores are
/// the K rows' "true" logits, the label is their argmax and the probabilities their softmax;</item>
/// <item>evaluation: the task's metrics on those K-way labels, plus <see cref="PairAccuracyMetric"/>:
/// the accuracy of the binary decision on one seeded pair per example, drawn as in training
/// (the figure a pair-classification paper reports).</item>
/// </list>
/// </summary>
public sealed class LabelPairing(int labelCount, Action<int[]> pair)
{
    /// <summary>The logit column of "the candidate is the label".</summary>
    public const int TrueColumn = 1;

    /// <summary>The eval.json key of the pair accuracy.</summary>
    public const string PairAccuracyMetric = "pair_accuracy";

    /// <summary>K, the task's label count.</summary>
    public int LabelCount { get; } = labelCount;

    /// <summary>Sets the candidate label (0..K−1) of each row of the next forward.</summary>
    public void Pair(int[] candidates)
    {
        foreach (var c in candidates)
            if (c < 0 || c >= LabelCount) throw new EngineException($"label pairing: candidate {c} is not one of the {LabelCount} labels");
        pair(candidates);
    }

    /// <summary>Per example, its candidate and the pair's target (1: the example's own label, 0: a
    /// wrong one). Each example draws once from <paramref name="rng"/> whether it gets its own label
    /// (probability ½), and a wrong one draws its candidate uniformly from the K − 1 others.</summary>
    public (int Candidate, int Target)[] TrainingPairs(IReadOnlyList<int> labels, Random rng)
    {
        var result = new (int, int)[labels.Count];
        for (int i = 0; i < labels.Count; i++)
        {
            int gold = labels[i];
            if (gold < 0 || gold >= LabelCount) throw new EngineException($"label pairing: example {i} has label {gold}, not one of the {LabelCount} labels");
            if (rng.NextDouble() < 0.5) { result[i] = (gold, 1); continue; }
            int wrong = rng.Next(LabelCount - 1);
            result[i] = (wrong >= gold ? wrong + 1 : wrong, 0);
        }
        return result;
    }

    /// <summary>The K-way scores of one example from its K rows' logits (row k: the pair with label k; [K·2] flattened).</summary>
    public double[] Scores(ReadOnlySpan<double> pairLogits)
    {
        var scores = new double[LabelCount];
        for (int k = 0; k < LabelCount; k++) scores[k] = pairLogits[2 * k + TrueColumn];
        return scores;
    }

    /// <summary>The accuracy of the binary decision (argmax of a pair's two logits) on one pair per
    /// example, drawn by <see cref="TrainingPairs"/> from <paramref name="rng"/>; <paramref name="pairLogits"/>
    /// holds every example's K pairs ([K·2] each).</summary>
    public double PairAccuracy(IReadOnlyList<double[]> pairLogits, IReadOnlyList<int> labels, Random rng)
    {
        var pairs = TrainingPairs(labels, rng);
        int correct = 0;
        for (int i = 0; i < pairs.Length; i++)
        {
            var (candidate, target) = pairs[i];
            int said = pairLogits[i][2 * candidate + TrueColumn] > pairLogits[i][2 * candidate + 1 - TrueColumn] ? 1 : 0;
            if (said == target) correct++;
        }
        return pairs.Length == 0 ? 0 : (double)correct / pairs.Length;
    }
}
