using Engine.Models.Data;
using NUnit.Framework;

namespace Engine.Tests.Data;

/// <summary>
/// Every GLUE and SentEval file in the shared benchmark folder loads with the example counts its
/// README gives. The folder is found through ENGINE_DATA, else ../shared/data beside the checkout
/// (/work/shared/data on the project's machines); the tests are ignored where it is absent.
/// </summary>
public class RealDataTests
{
    private static string? DataRoot()
    {
        var candidates = new List<string>();
        if (Environment.GetEnvironmentVariable("ENGINE_DATA") is { Length: > 0 } fromEnvironment) candidates.Add(fromEnvironment);
        for (var dir = new DirectoryInfo(TestContext.CurrentContext.TestDirectory); dir is not null; dir = dir.Parent)
            candidates.Add(Path.Combine(dir.FullName, "shared", "data"));
        candidates.Add("/work/shared/data");
        return candidates.FirstOrDefault(c => Directory.Exists(Path.Combine(c, "glue")) || Directory.Exists(Path.Combine(c, "senteval")));
    }

    internal static string Locate(string relative)
    {
        var root = DataRoot();
        if (root is null) Assert.Ignore("benchmark data folder (ENGINE_DATA or ../shared/data) is absent");
        var path = Path.Combine(root!, relative);
        if (!File.Exists(path) && !Directory.Exists(path)) Assert.Ignore($"{relative} is absent from {root}");
        return path;
    }

    [TestCase("glue/SST-2/train.tsv", "sst2", 67349)]
    [TestCase("glue/SST-2/dev.tsv", "sst2", 872)]
    [TestCase("glue/CoLA/train.tsv", "cola", 8551)]
    [TestCase("glue/CoLA/dev.tsv", "cola", 1043)]
    [TestCase("glue/MRPC/train.tsv", "mrpc", 3668)]
    [TestCase("glue/MRPC/dev.tsv", "mrpc", 408)]
    [TestCase("glue/RTE/train.tsv", "rte", 2490)]
    [TestCase("glue/RTE/dev.tsv", "rte", 277)]
    [TestCase("glue/WNLI/train.tsv", "wnli", 635)]
    [TestCase("glue/WNLI/dev.tsv", "wnli", 71)]
    [TestCase("glue/STS-B/train.tsv", "stsb", 5749)]
    [TestCase("glue/STS-B/dev.tsv", "stsb", 1500)]
    [TestCase("senteval/SST-5/sentiment-train", "sst5", 8544)]
    [TestCase("senteval/SST-5/sentiment-dev", "sst5", 1101)]
    [TestCase("senteval/SST-5/sentiment-test", "sst5", 2210)]
    [TestCase("senteval/MR", "mr", 5331 + 5331)]
    [TestCase("senteval/CR/custrev.pos", "cr", 2405 + 1366)]
    [TestCase("senteval/SUBJ/subj.objective", "subj", 5000 + 5000)]
    [TestCase("senteval/MPQA", "mpqa", 3311 + 7292)]
    public void LabelledFileLoads(string relative, string task, int count)
    {
        var data = DatasetReader.Read(Locate(relative), new DataOptions { Task = task });
        Assert.That(data.Count, Is.EqualTo(count));
        Assert.That(data.SkippedLines, Is.EqualTo(0));
        Assert.That(data.IsFullyLabelled);
        Assert.That(data.Examples.All(e => !string.IsNullOrWhiteSpace(e.Text)));
        if (data.IsRegression)
            Assert.That(data.Examples.All(e => e.Value is >= 0 and <= 5), "STS-B scores lie in 0–5");
        else
            // Every class occurs (no label silently folded into another).
            Assert.That(data.Examples.Select(e => e.Label).Distinct().Count(), Is.EqualTo(data.Labels!.Count));
    }

    [TestCase("glue/SST-2/test.tsv", "sst2", 1821)]
    [TestCase("glue/CoLA/test.tsv", "cola", 1063)]
    [TestCase("glue/MRPC/test.tsv", "mrpc", 1725)]
    [TestCase("glue/RTE/test.tsv", "rte", 3000)]
    [TestCase("glue/WNLI/test.tsv", "wnli", 146)]
    public void UnlabelledTestFileLoadsForPrediction(string relative, string task, int count)
    {
        var data = DatasetReader.Read(Locate(relative), new DataOptions { Task = task, Unlabelled = true });
        Assert.That(data.Count, Is.EqualTo(count));
        Assert.That(data.Examples.All(e => e.Label == -1));
    }

    [Test]
    public void FirstExamplesReadAsWritten()
    {
        var mrpc = DatasetReader.Read(Locate("glue/MRPC/train.tsv"), new DataOptions { Task = "mrpc" });
        Assert.That(mrpc.Examples[0].Text, Does.StartWith("Amrozi accused his brother"));
        Assert.That(mrpc.Examples[0].Label, Is.EqualTo(1));
        Assert.That(mrpc.IsPairs);

        var cola = DatasetReader.Read(Locate("glue/CoLA/dev.tsv"), new DataOptions { Task = "cola" });
        Assert.That(cola.Examples[0], Is.EqualTo(new Example("The sailors rode the breeze clear of the rocks.", null, 1)));
        Assert.That(cola.Examples[^1].Text, Does.EndWith(".")); // the last line has no trailing newline

        var stsb = DatasetReader.Read(Locate("glue/STS-B/dev.tsv"), new DataOptions { Task = "stsb" });
        Assert.That(stsb.Examples[0], Is.EqualTo(new Example("A man with a hard hat is dancing.", "A man wearing a hard hat is dancing.", -1, 5.0)));

        // The same file read through the generic column options gives the same examples.
        var rte = Locate("glue/RTE/dev.tsv");
        var preset = DatasetReader.Read(rte, new DataOptions { Task = "rte" });
        var generic = DatasetReader.Read(rte, new DataOptions { TextColumn = "sentence1", TextPairColumn = "sentence2", LabelColumn = "label" });
        Assert.That(generic.Examples, Is.EqualTo(preset.Examples)); // sorted names equal the preset's order here
    }
}
