using Engine.Models;
using Engine.Models.Llama;
using Engine.Models.Pretraining;
using Engine.Models.Tokenization;
using NUnit.Framework;

namespace Engine.Tests.Pretraining;

/// <summary>Pretraining end to end on tiny models: memorising a tiny corpus (BERT and Llama),
/// exact resume, and the folders it writes loading as sequence classifiers (the LM head dropped).</summary>
public class PretrainerTests
{
    private TempFolder temp = null!;

    [SetUp] public void SetUp() => temp = new TempFolder();
    [TearDown] public void TearDown() => temp.Dispose();

    internal static readonly string[] Words =
        "the a cat dog sat on mat ran far away and then slept under tree bird sang song of morning light river flows to sea".Split(' ');

    /// <summary>A WordPiece vocabulary at <paramref name="path"/>: the specials, <paramref name="words"/>, and "##s".</summary>
    internal static string WriteVocab(string path, IEnumerable<string> words)
    {
        File.WriteAllLines(path, new[] { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]" }.Concat(words).Append("##s"));
        return path;
    }

    private string Vocab() => WriteVocab(temp.File("vocab.txt"), Words);

    private string Corpus(int paragraphs = 6)
    {
        var path = temp.File("corpus.txt");
        var rng = new Random(5);
        File.WriteAllLines(path, Enumerable.Range(0, paragraphs).SelectMany(_ =>
            new[] { string.Join(' ', Enumerable.Range(0, 12).Select(_ => Words[rng.Next(Words.Length)] + (rng.Next(4) == 0 ? "s" : ""))), "" }));
        return path;
    }

    private (Pretrainer Trainer, LanguageModel Model, PackedCorpus Corpus) Bert(string dir, int steps, double dropout, int heldOutEvery = 100, string? from = null, double lr = 3e-3, int? stopAfter = null)
    {
        var folder = from is null
            ? LanguageModelFolder.Create(Path.Combine(temp.Path, "init"), new LmShape("bert", 2, 32, 2, 64, MaxPositions: 64, Dropout: dropout), Vocab(), seed: 1)
            : HfModelFolder.Open(from);
        var model = LanguageModel.Load(folder, seed: 1);
        var tokenizer = TextTokenizer.FromFolder(folder);
        var (start, sep) = LmObjective.Delimiters(folder, tokenizer);
        var (stream, docs) = PackedCorpus.Tokenise([Corpus()], t => tokenizer.EncodeWithoutSpecialTokens(t), sep);
        var corpus = new PackedCorpus(stream, docs, 16, start, heldOutEvery);
        var options = new PretrainOptions { Steps = steps, BatchSize = 4, LearningRate = lr, Seed = 1, EvalEvery = 4, SaveEvery = 2, LogEvery = 1, OutDir = dir, WarmupRatio = 0.05, StopAfter = stopAfter };
        return (new Pretrainer(LmObjective.For(model, tokenizer), folder, corpus, options), model, corpus);
    }

    [Test]
    public void ATinyBertMemorisesATinyCorpus()
    {
        // Every row is also a "held-out" row here only in name: heldOutEvery 2 and evaluation on the training rows.
        var (trainer, model, corpus) = Bert(temp.File("run"), steps: 600, dropout: 0, heldOutEvery: 2, lr: 5e-3);
        var result = trainer.Train();
        var objective = LmObjective.For(model, TextTokenizer.FromFolder(HfModelFolder.Open(Path.Combine(temp.Path, "init"))));
        var onTraining = LmEvaluator.Evaluate(objective, corpus, corpus.TrainRows, 8, trainer.Unigram);
        Assert.That(result.Losses[0], Is.GreaterThan(2.5), "starts near ln(V)");
        Assert.That(onTraining.Loss, Is.LessThan(0.1), $"masked-token loss on the memorised rows: {onTraining.Loss}");
        Assert.That(onTraining.Accuracy, Is.GreaterThan(0.97));
        Assert.That(onTraining.UnigramAccuracy, Is.LessThan(0.3), "the unigram baseline cannot memorise");
    }

    [Test]
    public void ATinyLlamaMemorisesATinyStream()
    {
        var config = new LlamaConfig
        {
            ModelType = "llama", VocabSize = 40, HiddenSize = 32, IntermediateSize = 64, NumHiddenLayers = 2, NumAttentionHeads = 4,
            NumKeyValueHeads = 2, HeadDim = 8, TieWordEmbeddings = true, BosTokenId = 1, EosTokenIds = [2],
        };
        var model = new CausalLanguageModel(config, seed: 2);
        var rng = new Random(3);
        var stream = Enumerable.Range(0, 200).Select(i => i % 25 == 24 ? 2 : rng.Next(3, 40)).ToArray();
        var corpus = new PackedCorpus(stream, 8, 16, startToken: 1, heldOutEvery: 2);
        var trainer = new Pretrainer(new LmObjective(model, null), null, corpus, new PretrainOptions { Steps = 500, BatchSize = 4, LearningRate = 1e-2, Seed = 2, EvalEvery = 1000, WarmupRatio = 0.05 });
        var result = trainer.Train();
        var onTraining = LmEvaluator.Evaluate(new LmObjective(model, null), corpus, corpus.TrainRows, 8, trainer.Unigram);
        Assert.That(result.Losses[0], Is.GreaterThan(3.0), "starts near ln(40)");
        // Every row starts with bos, so the token after it cannot be told from the context: at best
        // a uniform guess among the rows' first tokens, ln(rows) on 1 of the T − 1 scored positions.
        // Everything else is memorised.
        int rows = corpus.TrainRows.Count, scored = corpus.RowLength - 1;
        Assert.That(onTraining.Loss, Is.LessThan(Math.Log(rows) / scored + 0.02), $"next-token loss on the memorised rows: {onTraining.Loss}");
        Assert.That(onTraining.Accuracy, Is.GreaterThanOrEqualTo((scored - 1.0) / scored));
    }

    [Test]
    public void AResumedRunContinuesExactlyAsTheUninterruptedOne()
    {
        var full = Bert(temp.File("full"), 9, dropout: 0.1, heldOutEvery: 3);
        var fullResult = full.Trainer.Train();

        var cut = Bert(temp.File("cut"), 9, dropout: 0.1, heldOutEvery: 3);
        Assert.Throws<OperationCanceledException>(() => cut.Trainer.Train(e => { if (e.Step == 5 && e.Loss is not null) throw new OperationCanceledException("killed"); }));
        var checkpoint = Path.Combine(temp.File("cut"), Pretrainer.LastCheckpoint); // written at step 4
        var resumed = Bert(temp.File("cut"), 9, dropout: 0.1, heldOutEvery: 3, from: checkpoint);
        var resumedResult = resumed.Trainer.Train(resumeFrom: checkpoint);

        Assert.That(resumedResult.Losses, Is.EqualTo(fullResult.Losses.Skip(4)), "losses of steps 5..9");
        foreach (var ((name, p), (_, q)) in full.Model.NamedParameters().Zip(resumed.Model.NamedParameters()))
            Assert.That(q.ToFloatArray(), Is.EqualTo(p.ToFloatArray()), name);
        Assert.That(resumedResult.LastEval, Is.EqualTo(fullResult.LastEval));
        var log = File.ReadAllLines(Path.Combine(temp.File("cut"), Pretrainer.MetricsFile));
        Assert.That(log.Count(l => l.Contains("\"loss\"")), Is.EqualTo(9), "one training line per step, none duplicated by the resume");

        // --stop-after-step 6: a clean stop (checkpoint at step 6, between two saves), and the resume
        // from it again ends as the uninterrupted run.
        var stopped = Bert(temp.File("stop"), 9, dropout: 0.1, heldOutEvery: 3, stopAfter: 5);
        Assert.That(stopped.Trainer.Train().Losses, Is.EqualTo(fullResult.Losses.Take(5)));
        var fromStop = Path.Combine(temp.File("stop"), Pretrainer.LastCheckpoint);
        var restarted = Bert(temp.File("stop"), 9, dropout: 0.1, heldOutEvery: 3, from: fromStop);
        Assert.That(restarted.Trainer.Train(resumeFrom: fromStop).Losses, Is.EqualTo(fullResult.Losses.Skip(5)), "losses of steps 6..9");
        foreach (var ((name, p), (_, q)) in full.Model.NamedParameters().Zip(restarted.Model.NamedParameters()))
            Assert.That(q.ToFloatArray(), Is.EqualTo(p.ToFloatArray()), name);

        // Another batch size cannot continue this run exactly: refused.
        var other = Bert(temp.File("cut"), 10, dropout: 0.1, heldOutEvery: 3, from: checkpoint);
        var e = Assert.Throws<EngineException>(() => other.Trainer.Train(resumeFrom: checkpoint));
        Assert.That(e!.Message, Does.Contain("steps"));
    }

    [Test]
    public void APretrainedBertFolderHasHuggingFaceNamesAndLoadsAsASequenceClassifier()
    {
        var (trainer, model, _) = Bert(temp.File("run"), 2, dropout: 0.1, heldOutEvery: 3);
        trainer.Train();
        var dir = Path.Combine(temp.File("run"), Pretrainer.LastCheckpoint);
        var folder = HfModelFolder.Open(dir);
        Assert.That(folder.BertConfig.Architectures, Is.EqualTo(new[] { "BertForMaskedLM" }));
        Assert.That(File.Exists(Path.Combine(dir, "vocab.txt")) && File.Exists(Path.Combine(dir, "tokenizer_config.json")), "tokenizer files copied");
        using (var weights = folder.OpenWeights())
        {
            Assert.That(weights.Names, Does.Contain("cls.predictions.bias").And.Contain("cls.predictions.transform.dense.weight")
                .And.Contain("cls.predictions.transform.LayerNorm.weight").And.Contain("bert.embeddings.word_embeddings.weight")
                .And.Contain("bert.encoder.layer.1.output.LayerNorm.bias"));
            Assert.That(weights.Names.Where(n => n.Contains("decoder") || n.Contains("pooler")), Is.Empty, "the tied decoder is not stored; BertForMaskedLM has no pooler");
        }
        var notes = new List<string>();
        var classifier = SequenceClassifier.FromFolder(folder, numLabels: 3, log: notes.Add);
        Assert.That(classifier.HeadInitialisedRandomly, "pooler and classifier start random, as in transformers");
        Assert.That(notes.Single(), Does.Contain("bert.pooler.dense.weight").And.Contain("classifier.weight"));
        var lmEmbeddings = model.NamedParameters().Single(p => p.Name == "bert.embeddings.word_embeddings.weight").Param.ToFloatArray();
        var clsEmbeddings = classifier.NamedParameters().Single(p => p.Name == "bert.embeddings.word_embeddings.weight").Param.ToFloatArray();
        Assert.That(clsEmbeddings, Is.EqualTo(lmEmbeddings));
        // And back: the LM folder reloads as a language model with the same weights.
        var again = LanguageModel.Load(folder);
        foreach (var ((name, p), (_, q)) in model.NamedParameters().Zip(again.NamedParameters()))
            Assert.That(q.ToFloatArray(), Is.EqualTo(p.ToFloatArray()), name);
    }

    [TestCase(true)]
    [TestCase(false)]
    public void ACausalLmFolderLoadsAsALlamaSequenceClassifier(bool tied)
    {
        var config = new LlamaConfig
        {
            ModelType = "llama", VocabSize = 40, HiddenSize = 16, IntermediateSize = 32, NumHiddenLayers = 1, NumAttentionHeads = 2,
            NumKeyValueHeads = 1, HeadDim = 8, TieWordEmbeddings = tied, BosTokenId = 1, EosTokenIds = [2], PadTokenId = 0,
        };
        var model = new CausalLanguageModel(config, seed: 4);
        var dir = temp.File("llama");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "config.json"),
            $$"""{"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 40, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "tie_word_embeddings": {{(tied ? "true" : "false")}}, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}""");
        model.SaveWeights(dir);
        var folder = HfModelFolder.Open(dir);
        using (var weights = folder.OpenWeights()) Assert.That(weights.Names.Contains("lm_head.weight"), Is.EqualTo(!tied));
        var classifier = LlamaForSequenceClassification.FromFolder(folder, numLabels: 2);
        Assert.That(classifier.NamedParameters().Single(p => p.Name == "model.embed_tokens.weight").Param.ToFloatArray(),
            Is.EqualTo(model.Decoder.EmbedTokens.Weight.ToFloatArray()));
        var again = CausalLanguageModel.FromFolder(folder);
        Assert.That(again.Tied, Is.EqualTo(tied));
    }
}
