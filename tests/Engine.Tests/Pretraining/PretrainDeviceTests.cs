using Engine.Models;
using Engine.Models.Pretraining;
using Engine.Tests.Cuda;
using Engine.Tests.Devices;
using NUnit.Framework;

namespace Engine.Tests.Pretraining;

/// <summary>A few pretraining steps of a tiny BERT (masked LM, dropout on) and a tiny Llama
/// (causal LM, tied) on a device against the same steps on the CPU: "mirror" is the CPU-backed
/// stand-in device (bit-identical, host access to device memory throws), "cuda" the real GPU
/// (skips without one; float32 tolerances).</summary>
[TestFixture("mirror")]
[TestFixture("cuda")]
public class PretrainDeviceTests(string which)
{
    private Device device;

    [SetUp] public void SetUp() => device = which == "mirror" ? MirrorBackend.Install() : CudaTestSupport.Backend().Device;

    private double Tolerance => which == "mirror" ? 0 : 2e-4;

    private static PackedCorpus Corpus(int vocab, int start, int separator)
    {
        var rng = new Random(7);
        var stream = Enumerable.Range(0, 400).Select(i => i % 30 == 29 ? separator : rng.Next(5, vocab)).ToArray();
        return new PackedCorpus(stream, 13, 16, start, heldOutEvery: 4);
    }

    private (IReadOnlyList<double> Losses, LmEvalResult Eval) Run(Func<LanguageModel> make, Func<LanguageModel, LmObjective> objective, PackedCorpus corpus, Device? on)
    {
        var model = make();
        var trainer = new Pretrainer(objective(model), null, corpus, new PretrainOptions { Steps = 3, BatchSize = 4, LearningRate = 3e-3, Seed = 5, EvalEvery = 3, Device = on, WarmupRatio = 0 });
        var result = trainer.Train();
        return (result.Losses, result.LastEval!);
    }

    private void Compare((IReadOnlyList<double> Losses, LmEvalResult Eval) cpu, (IReadOnlyList<double> Losses, LmEvalResult Eval) dev)
    {
        var expected = cpu.Losses.Append(cpu.Eval.Loss).Append(cpu.Eval.Accuracy).ToArray();
        var actual = dev.Losses.Append(dev.Eval.Loss).Append(dev.Eval.Accuracy).ToArray();
        if (Tolerance == 0) Assert.That(actual, Is.EqualTo(expected));
        else for (int i = 0; i < expected.Length; i++) Assert.That(actual[i], Is.EqualTo(expected[i]).Within(Tolerance * Math.Max(1, Math.Abs(expected[i]))), $"value {i}");
    }

    [Test]
    public void MaskedLmStepsMatchTheCpu()
    {
        var config = new BertConfig { ModelType = "bert", VocabSize = 50, HiddenSize = 16, NumHiddenLayers = 1, NumAttentionHeads = 2, IntermediateSize = 32, MaxPositionEmbeddings = 32 };
        LanguageModel Make() => new MaskedLanguageModel(config, seed: 3);
        LmObjective Objective(LanguageModel m) => new(m, new MlmMasker(50, 4, [0, 1, 2, 3]));
        var corpus = Corpus(50, start: 2, separator: 3);
        Compare(Run(Make, Objective, corpus, null), Run(Make, Objective, corpus, device));
    }

    [Test]
    public void CausalLmStepsMatchTheCpu()
    {
        var config = new LlamaConfig
        {
            ModelType = "llama", VocabSize = 50, HiddenSize = 16, IntermediateSize = 32, NumHiddenLayers = 1, NumAttentionHeads = 4,
            NumKeyValueHeads = 2, HeadDim = 4, TieWordEmbeddings = true, BosTokenId = 1, EosTokenIds = [2],
        };
        LanguageModel Make() => new CausalLanguageModel(config, seed: 3);
        var corpus = Corpus(50, start: 1, separator: 2);
        Compare(Run(Make, m => new LmObjective(m, null), corpus, null), Run(Make, m => new LmObjective(m, null), corpus, device));
    }
}
