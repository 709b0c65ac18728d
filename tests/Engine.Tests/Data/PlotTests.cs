using Engine.Cli;
using NUnit.Framework;

namespace Engine.Tests.Data;

/// <summary>Plots render to PNG on a headless machine. Set ENGINE_TEST_PLOTS to a folder to keep
/// the images there and look at them.</summary>
public class PlotTests
{
    private static readonly byte[] PngSignature = [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A];

    private string folder = "";

    [SetUp]
    public void MakeFolder()
    {
        folder = Environment.GetEnvironmentVariable("ENGINE_TEST_PLOTS") is { Length: > 0 } keep
            ? Path.Combine(keep, TestContext.CurrentContext.Test.Name)
            : Path.Combine(Path.GetTempPath(), "engine-plots-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(folder);
    }

    [TearDown]
    public void RemoveFolder()
    {
        if (Environment.GetEnvironmentVariable("ENGINE_TEST_PLOTS") is not { Length: > 0 }) Directory.Delete(folder, recursive: true);
    }

    private static void AssertPng(string path)
    {
        Assert.That(File.Exists(path), path);
        var bytes = File.ReadAllBytes(path);
        Assert.That(bytes.Length, Is.GreaterThan(1000));
        Assert.That(bytes.Take(8), Is.EqualTo(PngSignature));
    }

    [Test]
    public void LossCurveFromAMetricsLog()
    {
        var log = Path.Combine(folder, "metrics.jsonl");
        var lines = new List<string>();
        for (int step = 1; step <= 200; step++)
        {
            double loss = 0.7 * Math.Exp(-step / 60.0) + 0.05 * Math.Sin(step);
            lines.Add(FormattableString.Invariant($"{{\"step\":{step},\"loss\":{loss},\"lr\":0.00002}}"));
            if (step % 50 == 0)
                lines.Add(FormattableString.Invariant($"{{\"step\":{step},\"eval\":{{\"loss\":0.5,\"accuracy\":{0.6 + step / 1000.0},\"f1\":0.7}}}}"));
        }
        lines.Add("{\"step\":201,\"lo"); // a line cut short by a killed run
        File.WriteAllLines(log, lines);

        var written = Plots.FromMetricsLog(log, folder);
        Assert.That(written, Is.EqualTo(new[] { Path.Combine(folder, "loss.png") }));
        AssertPng(written[0]);
    }

    [Test]
    public void BarChart()
    {
        var path = Path.Combine(folder, "depth.png");
        Plots.Bars("Depth weights", ["embeddings", "layer 1", "layer 2", "layer 3"], [0.1, 0.2, 0.3, 0.4], path);
        AssertPng(path);
        var many = Path.Combine(folder, "variability.png");
        var layers = Enumerable.Range(0, 25).Select(i => i == 0 ? "embeddings" : $"layer {i}").ToArray();
        Plots.Bars("Per-layer variability", layers, layers.Select((_, i) => Math.Sqrt(i + 1)).ToArray(), many);
        AssertPng(many);
    }

    [Test]
    public void EmptyLogWritesNothing()
    {
        var log = Path.Combine(folder, "metrics.jsonl");
        File.WriteAllText(log, "");
        Assert.That(Plots.FromMetricsLog(log, folder), Is.Empty);
    }
}
