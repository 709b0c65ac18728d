using Engine.Autograd;
using Engine.Models;
using Engine.Models.Demo;
using Engine.Models.Peft;
using Engine.Models.Tokenization;
using Engine.Models.Training;
using NUnit.Framework;

namespace Engine.Tests.Peft;

/// <summary>Checks every method must pass, on the demo BERT (width 32, 2 layers) and the tiny
/// Llama fixture: a run killed and resumed from its checkpoint continues exactly as the
/// uninterrupted one; a checkpoint and its PEFT-format adapter reload with identical logits.</summary>
public static class MethodChecks
{
    public static readonly string[] Sentences = ["the food was not good but the staff was great .", "the movie is bad .", "the plot was really dull but the music is fine ."];

    public static HfModelFolder Bert(TempFolder temp) => DemoModel.CreateFolder(Path.Combine(temp.Path, "init"), 3, hidden: 32);

    /// <summary>The tiny Llama fixture (pad id 0) with the demo's WordPiece vocabulary ([PAD] id 0 too).</summary>
    public static HfModelFolder Llama(TempFolder temp)
    {
        var dir = Path.Combine(temp.Path, "llama");
        Directory.CreateDirectory(dir);
        var fixture = Engine.Tests.Llama.LlamaReferenceTests.Folder("llama");
        foreach (var f in new[] { "config.json", "model.safetensors" }) File.Copy(Path.Combine(fixture, f), Path.Combine(dir, f));
        File.WriteAllLines(Path.Combine(dir, "vocab.txt"), NegationTask.Vocabulary());
        return HfModelFolder.Open(dir);
    }

    public static TrainingPipeline Pipeline(HfModelFolder folder, PeftOptions peft, string? outDir, int steps, int labels = 2) =>
        new(folder, TextTokenizer.FromFolder(folder), SequenceClassifier.FromFolder(folder, 3, numLabels: labels), new TrainOptions
        {
            MaxSteps = steps, BatchSize = 8, LearningRate = 1e-2, MaxLength = 32, Seed = 3, EvalEvery = 3, OutDir = outDir, LogEvery = 1, WarmupRatio = 0, Peft = peft,
        }, DemoModel.LabelNames, regression: false);

    /// <summary>Logits of <paramref name="texts"/> in evaluation mode.</summary>
    public static float[] Logits(SequenceClassifier model, HfModelFolder folder, params string[] texts)
    {
        var tokenizer = TextTokenizer.FromFolder(folder);
        var encoded = Batches.Encode(texts.Select(t => new Models.Data.Example(t, null, 0)), tokenizer, 32);
        var batch = Batches.Collate(encoded, Enumerable.Range(0, texts.Length).ToArray(), tokenizer.PadId);
        model.Eval();
        using var noGrad = Tape.NoGrad();
        return model.Forward(batch.Ids, batch.Mask, batch.Types).Logits.ToFloatArray();
    }

    /// <summary>Six steps uninterrupted; the same run killed after step 4 and resumed from its step-3
    /// checkpoint: the same losses, parameters and evaluation, bit for bit (CPU).</summary>
    public static void ResumeContinuesExactly(HfModelFolder folder, PeftOptions peft, TempFolder temp)
    {
        var train = DemoModel.Data(64, 5, "train").Examples;
        var eval = DemoModel.Data(16, 6, "eval").Examples;
        var full = Pipeline(folder, peft, Path.Combine(temp.Path, "full"), 6);
        var fullResult = full.Train(train, eval);
        var cutDir = Path.Combine(temp.Path, "cut");
        Assert.Throws<OperationCanceledException>(() => Pipeline(folder, peft, cutDir, 6).Train(train, eval,
            e => { if (e.Step == 4 && e.Loss is not null) throw new OperationCanceledException("killed"); }));
        var checkpoint = Path.Combine(cutDir, Trainer.LastCheckpoint);
        var resumed = Pipeline(HfModelFolder.Open(checkpoint), peft, cutDir, 6);
        Assert.That(resumed.Model.Peft!.Options.Method, Is.EqualTo(peft.Method), "the checkpoint restored its method");
        var resumedResult = resumed.Train(train, eval, resumeFrom: checkpoint);
        Assert.That(resumedResult.Losses, Is.EqualTo(fullResult.Losses.Skip(3)), "losses of steps 4..6");
        foreach (var ((name, p), (_, q)) in full.Model.NamedParameters().Zip(resumed.Model.NamedParameters()))
            Assert.That(q.ToFloatArray(), Is.EqualTo(p.ToFloatArray()), name);
        Assert.That(resumedResult.FinalEval, Is.EqualTo(fullResult.FinalEval));
    }

    /// <summary>Trains three steps, then loads the checkpoint folder and its adapter files (onto the
    /// base folder, and through TextClassifier) and compares logits with the trained model's
    /// (without a pooling: PEFT's adapter files have no place for depth-wise weights). Returns the
    /// checkpoint folder.</summary>
    public static string AdapterAndCheckpointReload(HfModelFolder folder, PeftOptions peft, TempFolder temp, int labels = 2)
    {
        Assert.That(peft.Pooling, Is.Null, "adapter files hold no pooling weights");
        var outDir = Path.Combine(temp.Path, "run-" + peft.Method);
        var run = Pipeline(folder, peft, outDir, 3, labels);
        run.Train(DemoModel.Data(32, 5, "train").Examples, null);
        var trained = Logits(run.Model, folder, Sentences);
        var checkpoint = Path.Combine(outDir, Trainer.LastCheckpoint);
        Assert.That(AdapterFiles.IsAdapterFolder(checkpoint), $"{peft.Method} writes adapter files");

        var onBase = SequenceClassifier.FromFolder(folder, 7, numLabels: labels);
        AdapterFiles.Load(onBase, checkpoint);
        Assert.That(onBase.Peft!.Options.Method, Is.EqualTo(peft.Method));
        Assert.That(Logits(onBase, folder, Sentences), Is.EqualTo(trained), "the adapter onto the base folder");
        var reloaded = SequenceClassifier.FromFolder(HfModelFolder.Open(checkpoint));
        Assert.That(reloaded.Peft!.Options.Method, Is.EqualTo(peft.Method));
        Assert.That(reloaded.Pooling?.Spec.ToString(), Is.EqualTo(run.Model.Pooling?.Spec.ToString()));
        Assert.That(Logits(reloaded, folder, Sentences), Is.EqualTo(trained), "the checkpoint folder");
        var classifier = TextClassifier.Load(folder.Path);
        classifier.LoadAdapter(checkpoint);
        Assert.That(Logits(classifier.Model!, folder, Sentences), Is.EqualTo(trained), "TextClassifier.LoadAdapter");
        return checkpoint;
    }
}
