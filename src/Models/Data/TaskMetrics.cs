namespace Engine.Models.Data;

/// <summary>
/// Which metrics a task reports and which one judges it (early stopping, the best checkpoint, the
/// summary line), from its <see cref="TaskPreset"/>; the metrics themselves are the core's
/// <see cref="Metrics"/>. No task, or a task without a preset, reports the classification set
/// (or the regression set) and is judged by accuracy (or Pearson).
/// </summary>
public static class TaskMetrics
{
    /// <summary>The metric <paramref name="task"/> is judged by; <paramref name="regression"/> for a
    /// custom regression dataset without a task name.</summary>
    public static string PrimaryMetric(string? task, bool regression = false) =>
        (task is null ? null : TaskPreset.Find(task))?.PrimaryMetric ?? (regression ? Metrics.PearsonName : Metrics.AccuracyName);

    /// <summary>
    /// A classification task's metrics, keyed by name in a fixed order: <c>accuracy</c>,
    /// <c>macro_f1</c>, and with two classes <c>f1</c> (class 1 positive) and <c>mcc</c>; a task
    /// judged by <c>mcc</c> (CoLA) reports it first.
    /// </summary>
    public static IReadOnlyDictionary<string, double> For(string? task, ReadOnlySpan<int> predicted, ReadOnlySpan<int> gold, int classes)
    {
        var result = new Dictionary<string, double>();
        bool mccFirst = PrimaryMetric(task) == Metrics.MccName;
        if (mccFirst) result[Metrics.MccName] = Metrics.MatthewsCorrelation(predicted, gold);
        result[Metrics.AccuracyName] = Metrics.Accuracy(predicted, gold);
        result[Metrics.MacroF1Name] = Metrics.MacroF1(predicted, gold, classes);
        if (classes == 2)
        {
            result[Metrics.F1Name] = Metrics.F1(predicted, gold, positive: 1);
            if (!mccFirst) result[Metrics.MccName] = Metrics.MatthewsCorrelation(predicted, gold);
        }
        return result;
    }

    /// <summary>A regression task's metrics (STS-B): <c>pearson</c>, then <c>spearman</c>.</summary>
    public static IReadOnlyDictionary<string, double> For(string? task, ReadOnlySpan<double> predicted, ReadOnlySpan<double> gold)
    {
        return new Dictionary<string, double>
        {
            [Metrics.PearsonName] = Metrics.Pearson(predicted, gold),
            [Metrics.SpearmanName] = Metrics.Spearman(predicted, gold),
        };
    }
}
