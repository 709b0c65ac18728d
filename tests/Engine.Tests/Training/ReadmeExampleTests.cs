using Engine.Models;
using Engine.Models.Data;
using Engine.Models.Training;
using NUnit.Framework;

namespace Engine.Tests;

/// <summary>The README's library example, compiled and run here; a test checks that the README
/// shows exactly this code (between the "example" markers below).</summary>
public class ReadmeExampleTests
{
    private static void Example(string modelDir, string trainFile, string devFile, string outDir)
    {
        // README example begins
        var classifier = TextClassifier.Load(modelDir);
        var train = DatasetReader.Read(trainFile, new DataOptions { Task = "sst2" });
        var dev = DatasetReader.Read(devFile, new DataOptions { Task = "sst2", Labels = train.Labels });
        var result = classifier.Train(train, dev, new TrainOptions { Epochs = 3, LearningRate = 1e-3, Task = "sst2", OutDir = outDir });
        Console.WriteLine($"accuracy {result.FinalEval["accuracy"]:P1}, best at step {result.BestStep}");
        var predictions = classifier.Predict(["the food was good but the service was awful ."]);
        Console.WriteLine($"{train.Labels!.Name(predictions[0].Label)} ({predictions[0].Probabilities.Max():P0})");
        classifier.Save(Path.Combine(outDir, "final"));
        // README example ends
    }

    [Test]
    public void TheReadmeExampleRuns()
    {
        using var temp = new TempFolder();
        var folder = Engine.Models.Demo.DemoModel.CreateFolder(Path.Combine(temp.Path, "model"), seed: 4, hidden: 32);
        // SST-2's layout (sentence<TAB>label, header) with the demo task's sentences.
        void Write(string path, int count, int seed) => File.WriteAllLines(path,
            new[] { "sentence\tlabel" }.Concat(Engine.Models.Demo.NegationTask.Make(count, seed).Select(e => $"{e.Text}\t{e.Label}")));
        Write(temp.File("train.tsv"), 200, 1);
        Write(temp.File("dev.tsv"), 50, 2);
        Example(folder.Path, temp.File("train.tsv"), temp.File("dev.tsv"), temp.File("out"));
        var saved = TextClassifier.Load(temp.File(Path.Combine("out", "final")));
        Assert.That(saved.Model, Is.Not.Null);
        Assert.That(saved.Labels!.Names, Is.EqualTo(new[] { "negative", "positive" }));
        Assert.That(File.Exists(temp.File(Path.Combine("out", Trainer.EvalFile))));
    }

    [Test]
    public void TheReadmeShowsExactlyThisCode()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "README.md"))) dir = dir.Parent;
        if (dir is null) Assert.Ignore("README.md not found above the test folder");
        var source = File.ReadAllLines(Path.Combine(dir!.FullName, "tests", "Engine.Tests", "Training", "ReadmeExampleTests.cs"));
        int from = Array.FindIndex(source, l => l.Contains("README example begins")) + 1;
        int to = Array.FindIndex(source, l => l.Contains("README example ends"));
        var code = source[from..to].Select(l => l.Trim()).ToList();
        var readme = File.ReadAllText(Path.Combine(dir.FullName, "README.md"));
        foreach (var line in code) Assert.That(readme, Does.Contain(line), "README lacks: " + line);
    }
}
