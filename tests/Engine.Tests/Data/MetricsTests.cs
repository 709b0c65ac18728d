using Engine.Models.Data;
using NUnit.Framework;

namespace Engine.Tests.Data;

public class MetricsTests
{
    // A binary case used by several tests. Pairs (gold, predicted):
    //   gold 1: predicted 1,1,1,0      → TP = 3, FN = 1
    //   gold 0: predicted 1,0,0,0,0,1  → FP = 2, TN = 4
    private static readonly int[] Gold = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0];
    private static readonly int[] Predicted = [1, 1, 1, 0, 1, 0, 0, 0, 0, 1];

    [Test]
    public void AccuracyCountsMatches()
    {
        // (TP + TN) / n = (3 + 4) / 10.
        Assert.That(Metrics.Accuracy(Predicted, Gold), Is.EqualTo(0.7).Within(1e-15));
    }

    [Test]
    public void F1OfThePositiveClass()
    {
        // 2·TP / (2·TP + FP + FN) = 6 / (6 + 2 + 1) = 2/3.
        Assert.That(Metrics.F1(Predicted, Gold), Is.EqualTo(2.0 / 3).Within(1e-15));
        // Class 0 as positive: TP = 4, FP = 1, FN = 2 → 8 / 11.
        Assert.That(Metrics.F1(Predicted, Gold, positive: 0), Is.EqualTo(8.0 / 11).Within(1e-15));
    }

    [Test]
    public void MacroF1AveragesThePerClassScores()
    {
        // (2/3 + 8/11) / 2 = (22/33 + 24/33) / 2 = 23/33 ≈ 0.69697.
        Assert.That(Metrics.MacroF1(Predicted, Gold, classes: 2), Is.EqualTo(23.0 / 33).Within(1e-15));
        // A class that occurs nowhere (class 2 of 3) is left out, as scikit-learn does by default.
        Assert.That(Metrics.MacroF1(Predicted, Gold, classes: 3), Is.EqualTo(23.0 / 33).Within(1e-15));
    }

    [Test]
    public void MatthewsCorrelationBinary()
    {
        // (TP·TN − FP·FN) / √((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (12 − 2) / √(5·4·6·5) = 10/√600 ≈ 0.408248
        // (sklearn.metrics.matthews_corrcoef gives 0.40824829046386296).
        Assert.That(Metrics.MatthewsCorrelation(Predicted, Gold), Is.EqualTo(10 / Math.Sqrt(600)).Within(1e-15));
        Assert.That(Metrics.MatthewsCorrelation(Gold, Gold), Is.EqualTo(1.0).Within(1e-15));
        Assert.That(Metrics.MatthewsCorrelation(Gold.Select(g => 1 - g).ToArray(), Gold), Is.EqualTo(-1.0).Within(1e-15));
    }

    [Test]
    public void MatthewsCorrelationMultiClass()
    {
        // gold [0,0,1,1,2,2], predicted [0,1,1,2,2,0]: n = 6, correct c = 3, gold counts t = [2,2,2],
        // predicted counts p = [2,2,2]. (c·n − Σ t·p) / √((n² − Σp²)(n² − Σt²)) = (18 − 12) / √(24·24) = 0.25.
        Assert.That(Metrics.MatthewsCorrelation([0, 1, 1, 2, 2, 0], [0, 0, 1, 1, 2, 2]), Is.EqualTo(0.25).Within(1e-15));
    }

    [Test]
    public void DegenerateCasesAreZeroNotNaN()
    {
        // One class predicted everywhere: the predicted-count variance n² − Σp² is 0 → MCC 0 (sklearn too).
        Assert.That(Metrics.MatthewsCorrelation([1, 1, 1, 1], [0, 1, 0, 1]), Is.EqualTo(0.0));
        // No positive predicted and none present: 0/0 → 0.
        Assert.That(Metrics.F1([0, 0], [0, 0]), Is.EqualTo(0.0));
        Assert.That(Metrics.Pearson([1, 2, 3], [5, 5, 5]), Is.EqualTo(0.0));
        Assert.That(Metrics.Spearman([7, 7, 7], [1, 2, 3]), Is.EqualTo(0.0));
        Assert.That(Metrics.Accuracy([], []), Is.EqualTo(0.0));
        Assert.That(Metrics.MatthewsCorrelation([], []), Is.EqualTo(0.0));
        Assert.Throws<ArgumentException>(() => Metrics.Accuracy([1, 0], [1]));
        Assert.Throws<ArgumentOutOfRangeException>(() => Metrics.MacroF1([2], [0], classes: 2));
    }

    [Test]
    public void PearsonByHand()
    {
        // x = [1,2,3,4], y = [2,4,5,9]: means 2.5 and 5; dx = [−1.5,−0.5,0.5,1.5], dy = [−3,−1,0,4];
        // Σdx·dy = 4.5 + 0.5 + 0 + 6 = 11, Σdx² = 5, Σdy² = 26 → r = 11/√130 ≈ 0.964764.
        Assert.That(Metrics.Pearson([1, 2, 3, 4], [2, 4, 5, 9]), Is.EqualTo(11 / Math.Sqrt(130)).Within(1e-15));
        Assert.That(Metrics.Pearson([1, 2, 3], [-2, -4, -6]), Is.EqualTo(-1.0).Within(1e-15));
    }

    [Test]
    public void SpearmanAveragesTiedRanks()
    {
        Assert.That(Metrics.AverageRanks([10, 20, 20, 30]), Is.EqualTo(new[] { 1, 2.5, 2.5, 4 }));
        Assert.That(Metrics.AverageRanks([3, 1, 3, 3]), Is.EqualTo(new[] { 3, 1, 3, 3 }));
        // x = [1,2,2,3] ranks [1,2.5,2.5,4]; y = [1,3,2,4] ranks [1,3,2,4]. Both mean 2.5;
        // Σdx·dy = 2.25 + 0 + 0 + 2.25 = 4.5, Σdx² = 4.5, Σdy² = 5 → ρ = 4.5/√22.5 ≈ 0.948683
        // (scipy.stats.spearmanr gives 0.9486832980505138).
        Assert.That(Metrics.Spearman([1, 2, 2, 3], [1, 3, 2, 4]), Is.EqualTo(4.5 / Math.Sqrt(22.5)).Within(1e-15));
        // A monotone but non-linear relation has ρ = 1 while r < 1.
        Assert.That(Metrics.Spearman([1, 2, 3, 4], [1, 8, 27, 64]), Is.EqualTo(1.0).Within(1e-15));
    }

    [Test]
    public void TaskMetricSets()
    {
        var sst2 = TaskMetrics.For("sst2", Predicted, Gold, classes: 2);
        Assert.That(sst2.Keys, Is.EqualTo(new[] { "accuracy", "macro_f1", "f1", "mcc" }));
        var cola = TaskMetrics.For("CoLA", Predicted, Gold, classes: 2);
        Assert.That(cola.Keys.First(), Is.EqualTo("mcc"));
        Assert.That(cola["mcc"], Is.EqualTo(10 / Math.Sqrt(600)).Within(1e-15));
        var mnli = TaskMetrics.For("mnli", [0, 1, 2], [0, 1, 1], classes: 3);
        Assert.That(mnli.Keys, Is.EqualTo(new[] { "accuracy", "macro_f1" }));
        var stsb = TaskMetrics.For("stsb", [1.0, 2, 3, 4], [2.0, 4, 5, 9]);
        Assert.That(stsb.Keys, Is.EqualTo(new[] { "pearson", "spearman" }));
        Assert.That(stsb["spearman"], Is.EqualTo(1.0).Within(1e-15));

        Assert.That(TaskMetrics.PrimaryMetric("sst2"), Is.EqualTo("accuracy"));
        Assert.That(TaskMetrics.PrimaryMetric("MRPC"), Is.EqualTo("f1"));
        Assert.That(TaskMetrics.PrimaryMetric("cola"), Is.EqualTo("mcc"));
        Assert.That(TaskMetrics.PrimaryMetric("stsb"), Is.EqualTo("pearson"));
        Assert.That(TaskMetrics.PrimaryMetric(null), Is.EqualTo("accuracy"));
        Assert.That(TaskMetrics.PrimaryMetric(null, regression: true), Is.EqualTo("pearson"));
    }
}
