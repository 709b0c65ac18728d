namespace Engine;

/// <summary>
/// Evaluation metrics for text classification and regression (which of them a task reports is
/// the Models room's knowledge: Engine.Models.Data.TaskMetrics).
/// </summary>
/// <remarks>
/// Conventions, stated once:
/// <list type="bullet">
/// <item>Class labels are ids 0..K−1; <c>predicted[i]</c> and <c>gold[i]</c> describe example i. The
/// two arrays must have the same length (an <see cref="ArgumentException"/> otherwise).</item>
/// <item>Every metric is "higher is better", so the trainer's early stopping and best-checkpoint
/// choice compare with <c>&gt;</c> whatever the task.</item>
/// <item>Undefined values follow scikit-learn's choice of 0 rather than NaN: a ratio with a zero
/// denominator (F1 with no positives predicted or present, MCC when a row or column of the
/// confusion matrix is all zero, a correlation with a constant side) is 0. SciPy returns NaN
/// for a constant input to Pearson/Spearman; 0 is used here so that a degenerate evaluation
/// never poisons a comparison. An empty input gives 0 everywhere.</item>
/// <item>Results match scikit-learn (<c>accuracy_score</c>, <c>f1_score</c>,
/// <c>matthews_corrcoef</c>) and SciPy (<c>pearsonr</c>, <c>spearmanr</c> with average ranks for
/// ties) up to floating-point rounding.</item>
/// </list>
/// </remarks>
public static class Metrics
{
    /// <summary>Metric names as they appear in <c>eval.json</c> and <c>metrics.jsonl</c>.</summary>
    public const string AccuracyName = "accuracy", MacroF1Name = "macro_f1", F1Name = "f1",
        MccName = "mcc", PearsonName = "pearson", SpearmanName = "spearman";

    /// <summary>The fraction of examples whose predicted class equals the gold class.</summary>
    public static double Accuracy(ReadOnlySpan<int> predicted, ReadOnlySpan<int> gold)
    {
        CheckLengths(predicted.Length, gold.Length);
        if (gold.Length == 0) return 0;
        int correct = 0;
        for (int i = 0; i < gold.Length; i++)
            if (predicted[i] == gold[i]) correct++;
        return (double)correct / gold.Length;
    }

    /// <summary>
    /// F1 of one class treated as positive: 2·TP / (2·TP + FP + FN), the harmonic mean of
    /// precision and recall; 0 when the class is neither predicted nor present.
    /// </summary>
    public static double F1(ReadOnlySpan<int> predicted, ReadOnlySpan<int> gold, int positive = 1)
    {
        CheckLengths(predicted.Length, gold.Length);
        int truePositives = 0, falsePositives = 0, falseNegatives = 0;
        for (int i = 0; i < gold.Length; i++)
        {
            bool predictedPositive = predicted[i] == positive, goldPositive = gold[i] == positive;
            if (predictedPositive && goldPositive) truePositives++;
            else if (predictedPositive) falsePositives++;
            else if (goldPositive) falseNegatives++;
        }
        int denominator = 2 * truePositives + falsePositives + falseNegatives;
        return denominator == 0 ? 0 : 2.0 * truePositives / denominator;
    }

    /// <summary>
    /// The unweighted mean of the per-class F1 over the classes 0..<paramref name="classes"/>−1 that
    /// occur in the gold labels or the predictions (scikit-learn's <c>average="macro"</c> with its
    /// default labels): a class absent from both does not drag the mean down.
    /// </summary>
    public static double MacroF1(ReadOnlySpan<int> predicted, ReadOnlySpan<int> gold, int classes)
    {
        CheckLengths(predicted.Length, gold.Length);
        var (truePositives, predictedCounts, goldCounts) = CountPerClass(predicted, gold, classes);
        double sum = 0;
        int present = 0;
        for (int k = 0; k < classes; k++)
        {
            if (predictedCounts[k] == 0 && goldCounts[k] == 0) continue;
            present++;
            // 2·TP / (2·TP + FP + FN) with FP + TP = predicted count and FN + TP = gold count.
            sum += 2.0 * truePositives[k] / (predictedCounts[k] + goldCounts[k]);
        }
        return present == 0 ? 0 : sum / present;
    }

    /// <summary>
    /// Matthews correlation coefficient, in its multi-class form (Gorodkin's R_K, which is what
    /// scikit-learn computes and which reduces to the binary (TP·TN − FP·FN)/√(…) for two classes):
    /// with n examples, c correct, t_k gold and p_k predicted counts of class k,
    /// MCC = (c·n − Σ t_k p_k) / √((n² − Σ p_k²)(n² − Σ t_k²)); 0 when the denominator is 0.
    /// Classes are the ids that occur in either array.
    /// </summary>
    public static double MatthewsCorrelation(ReadOnlySpan<int> predicted, ReadOnlySpan<int> gold)
    {
        CheckLengths(predicted.Length, gold.Length);
        if (gold.Length == 0) return 0;
        int classes = 0;
        for (int i = 0; i < gold.Length; i++) classes = Math.Max(classes, Math.Max(gold[i], predicted[i]) + 1);
        var (truePositives, predictedCounts, goldCounts) = CountPerClass(predicted, gold, classes);
        double n = gold.Length, correct = 0, goldTimesPredicted = 0, predictedSquared = 0, goldSquared = 0;
        for (int k = 0; k < classes; k++)
        {
            correct += truePositives[k];
            goldTimesPredicted += (double)goldCounts[k] * predictedCounts[k];
            predictedSquared += (double)predictedCounts[k] * predictedCounts[k];
            goldSquared += (double)goldCounts[k] * goldCounts[k];
        }
        double covariance = correct * n - goldTimesPredicted;
        double predictedVariance = n * n - predictedSquared, goldVariance = n * n - goldSquared;
        double denominator = predictedVariance * goldVariance;
        return denominator == 0 ? 0 : covariance / Math.Sqrt(denominator);
    }

    /// <summary>Pearson's correlation r of two equally long series; 0 when either is constant.</summary>
    public static double Pearson(ReadOnlySpan<double> x, ReadOnlySpan<double> y)
    {
        CheckLengths(x.Length, y.Length);
        if (x.Length == 0) return 0;
        // Two passes (means, then centred sums) rather than the one-pass formula, which loses
        // digits when the mean is large against the spread.
        double meanX = 0, meanY = 0;
        for (int i = 0; i < x.Length; i++) { meanX += x[i]; meanY += y[i]; }
        meanX /= x.Length;
        meanY /= y.Length;
        double sxy = 0, sxx = 0, syy = 0;
        for (int i = 0; i < x.Length; i++)
        {
            double dx = x[i] - meanX, dy = y[i] - meanY;
            sxy += dx * dy;
            sxx += dx * dx;
            syy += dy * dy;
        }
        if (sxx == 0 || syy == 0) return 0;
        return Math.Clamp(sxy / Math.Sqrt(sxx * syy), -1.0, 1.0);
    }

    /// <summary>
    /// Spearman's rank correlation: Pearson's r of the ranks, where tied values share the
    /// average of the ranks they span (SciPy's <c>rankdata(method="average")</c>).
    /// </summary>
    public static double Spearman(ReadOnlySpan<double> x, ReadOnlySpan<double> y)
    {
        CheckLengths(x.Length, y.Length);
        return Pearson(AverageRanks(x), AverageRanks(y));
    }

    /// <summary>
    /// Ranks 1..n of the values, ties sharing the mean of the ranks they occupy: [10, 20, 20, 30]
    /// ranks as [1, 2.5, 2.5, 4].
    /// </summary>
    public static double[] AverageRanks(ReadOnlySpan<double> values)
    {
        var order = new int[values.Length];
        for (int i = 0; i < order.Length; i++) order[i] = i;
        var keys = values.ToArray();
        Array.Sort((double[])keys.Clone(), order);
        var ranks = new double[values.Length];
        for (int start = 0; start < order.Length;)
        {
            int end = start + 1;
            while (end < order.Length && keys[order[end]] == keys[order[start]]) end++;
            // Positions start..end−1 (0-based) hold equal values: ranks start+1..end, mean (start+1+end)/2.
            double rank = (start + 1 + end) / 2.0;
            for (int j = start; j < end; j++) ranks[order[j]] = rank;
            start = end;
        }
        return ranks;
    }

    private static (int[] TruePositives, int[] PredictedCounts, int[] GoldCounts) CountPerClass(
        ReadOnlySpan<int> predicted, ReadOnlySpan<int> gold, int classes)
    {
        var truePositives = new int[classes];
        var predictedCounts = new int[classes];
        var goldCounts = new int[classes];
        for (int i = 0; i < gold.Length; i++)
        {
            int p = predicted[i], g = gold[i];
            if ((uint)p >= (uint)classes || (uint)g >= (uint)classes)
                throw new ArgumentOutOfRangeException(nameof(gold), $"example {i}: class ids {p} (predicted) and {g} (gold) must lie in 0..{classes - 1}");
            predictedCounts[p]++;
            goldCounts[g]++;
            if (p == g) truePositives[p]++;
        }
        return (truePositives, predictedCounts, goldCounts);
    }

    private static void CheckLengths(int predicted, int gold)
    {
        if (predicted != gold)
            throw new ArgumentException($"predictions ({predicted}) and gold values ({gold}) differ in number");
    }
}
