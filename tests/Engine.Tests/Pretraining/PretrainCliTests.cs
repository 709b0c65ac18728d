using System.Text.Json;
using Engine.Models;
using Engine.Models.Demo;
using Engine.Models.Pretraining;
using NUnit.Framework;

namespace Engine.Tests.Pretraining;

/// <summary>`engine pretrain`, `engine eval-lm` and `engine init --arch llama` as a user runs them;
/// the pretrained folder fine-tuned by `engine train`; one-line errors for bad input.</summary>
public class PretrainCliTests
{
    private TempFolder temp = null!;

    [SetUp]
    public void SetUp()
    {
        temp = new TempFolder();
        // A tiny BERT shape and a vocabulary that covers the demo task's words.
        File.WriteAllText(temp.File("tiny.json"),
            """{"model_type": "bert", "num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64}""");
        var examples = NegationTask.Make(64, 1);
        var words = examples.SelectMany(e => e.Text.Split(' ')).Distinct().Order(StringComparer.Ordinal);
        File.WriteAllLines(temp.File("vocab.txt"), new[] { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]" }.Concat(words));
        File.WriteAllLines(temp.File("corpus.txt"), examples.SelectMany(e => new[] { e.Text, "" }));
        File.WriteAllLines(temp.File("train.tsv"), new[] { "sentence\tlabel" }.Concat(examples.Select(e => $"{e.Text}\t{e.Label}")));
    }

    [TearDown] public void TearDown() => temp.Dispose();

    [Test]
    public void PretrainWritesAHuggingFaceFolderThatTrainAndEvalLmLoad()
    {
        var run = temp.File("run");
        var r = EngineProcess.Run("pretrain", "--arch", "bert", "--config", temp.File("tiny.json"), "--tokenizer", temp.File("vocab.txt"),
            "--corpus", temp.File("corpus.txt"), "--steps", "4", "--batch", "4", "--seq", "16", "--held-out-every", "4", "--eval-every", "2",
            "--whole-word", "--out", run);
        Assert.That(r.Exit, Is.EqualTo(0), r.Err);
        Assert.That(r.Out, Does.Contain("tokens/s").And.Contain("unigram baseline").And.Contain("whole-word masking").And.Contain("mlm_accuracy"));
        var model = Path.Combine(run, Pretrainer.LastCheckpoint);
        using (var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(model, "config.json"))))
        {
            Assert.That(config.RootElement.GetProperty("architectures")[0].GetString(), Is.EqualTo("BertForMaskedLM"));
            Assert.That(config.RootElement.GetProperty("vocab_size").GetInt32(), Is.EqualTo(File.ReadAllLines(temp.File("vocab.txt")).Length), "vocab_size from the tokenizer");
        }
        Assert.That(File.ReadAllLines(Path.Combine(run, Pretrainer.MetricsFile)).Count(l => l.Contains("\"eval\"")), Is.EqualTo(2));
        Assert.That(File.Exists(Path.Combine(run, "loss.png")));

        r = EngineProcess.Run("eval-lm", "--model", model, "--corpus", temp.File("corpus.txt"), "--seq", "16");
        Assert.That(r.Exit, Is.EqualTo(0), r.Err);
        Assert.That(r.Out, Does.Contain("MLM accuracy").And.Contain("unigram baseline"));

        // The pretraining step of the folder, timed (engine bench step --objective lm), and its one-line refusals.
        r = EngineProcess.Run("bench", "step", "--model", model, "--objective", "lm", "--batch", "2", "--len", "16", "--iters", "1", "--profile");
        Assert.That(r.Exit, Is.EqualTo(0), r.Err);
        Assert.That(r.Out, Does.Contain("BertForMaskedLM").And.Contain("tokens/s").And.Contain("cross_entropy"));
        Assert.That(EngineProcess.AssertUserError(EngineProcess.Run("bench", "step", "--model", model, "--objective", "mlm")),
                    Does.Contain("--objective must be classify or lm, got 'mlm'"));
        Assert.That(EngineProcess.AssertUserError(EngineProcess.Run("bench", "step", "--model", model, "--objective", "lm", "--method", "lora")),
                    Does.Contain("--method must be full"));

        r = EngineProcess.Run("train", "--model", model, "--train", temp.File("train.tsv"), "--task", "sst2", "--steps", "2", "--batch", "8",
            "--out", temp.File("finetune"));
        Assert.That(r.Exit, Is.EqualTo(0), r.Err);
        Assert.That(r.Err, Does.Contain("classification head initialised randomly").And.Contain("bert.pooler.dense.weight"));

        // Resuming with the same options continues; one more step than the checkpoint's run is refused (not exact).
        r = EngineProcess.Run("pretrain", "--resume", model, "--corpus", temp.File("corpus.txt"), "--steps", "5", "--batch", "4", "--seq", "16",
            "--held-out-every", "4", "--whole-word", "--out", run);
        Assert.That(EngineProcess.AssertUserError(r), Does.Contain("--resume").And.Contain("steps"));
    }

    [Test]
    public void BadInputIsOneLine()
    {
        var r = EngineProcess.Run("pretrain", "--preset", "bert-huge", "--tokenizer", temp.File("vocab.txt"), "--corpus", temp.File("corpus.txt"), "--steps", "1", "--out", temp.File("x"));
        Assert.That(EngineProcess.AssertUserError(r), Does.Contain("unknown preset 'bert-huge'"));
        r = EngineProcess.Run("pretrain", "--preset", "bert-mini", "--tokenizer", temp.File("vocab.txt"), "--corpus", temp.File("missing.txt"), "--steps", "1", "--out", temp.File("x"));
        Assert.That(EngineProcess.AssertUserError(r), Does.Contain("missing.txt: no such file"));
        r = EngineProcess.Run("pretrain", "--resume", temp.Path, "--corpus", temp.File("corpus.txt"), "--steps", "1", "--out", temp.File("x"));
        EngineProcess.AssertUserError(r);
        // A bad option is refused before anything is written (the init folder included).
        foreach (var (option, value, says) in new[] { ("--stop-after-step", "0", "stop-after-step"), ("--lr", "0", "learning rate"), ("--batch", "0", "batch size") })
        {
            r = EngineProcess.Run("pretrain", "--preset", "bert-mini", "--tokenizer", temp.File("vocab.txt"), "--corpus", temp.File("corpus.txt"), "--steps", "1", option, value, "--out", temp.File("z"));
            Assert.That(EngineProcess.AssertUserError(r), Does.Contain(says));
            Assert.That(Directory.Exists(temp.File("z")), Is.False, $"{option} {value}: nothing written");
        }
        // So are a step or token count below 1, a row too short, a missing corpus file and an unreadable tokenizer
        // (named by the path the user gave, not the copy inside the folder being made).
        File.WriteAllText(temp.File("bad.model"), "not a SentencePiece model");
        foreach (var (args, says) in new (string[], string)[]
        {
            (["--steps", "0"], "--steps: must be at least 1"),
            (["--tokens", "0"], "--tokens: must be at least 1"),
            (["--steps", "1", "--seq", "1"], "--seq: must be at least 2"),
            (["--steps", "1", "--corpus", temp.File("corpus.txt"), temp.File("missing.txt")], "missing.txt: no such file"),
        })
        {
            var all = new[] { "pretrain", "--preset", "bert-mini", "--tokenizer", temp.File("vocab.txt"), "--corpus", temp.File("corpus.txt") }.Concat(args).Concat(["--out", temp.File("z")]).ToArray();
            Assert.That(EngineProcess.AssertUserError(EngineProcess.Run(all)), Does.Contain(says));
            Assert.That(Directory.Exists(temp.File("z")), Is.False, $"{string.Join(' ', args)}: nothing written");
        }
        r = EngineProcess.Run("pretrain", "--preset", "llama-mini", "--tokenizer", temp.File("bad.model"), "--corpus", temp.File("corpus.txt"), "--steps", "1", "--out", temp.File("z"));
        Assert.That(EngineProcess.AssertUserError(r), Does.StartWith($"engine: {temp.File("bad.model")}: "));
        Assert.That(Directory.Exists(Path.Combine(temp.File("z"), "init")), Is.False, "no init folder from an unreadable tokenizer");
        r = EngineProcess.Run("init", "--arch", "llama", "--out", temp.File("y"));
        Assert.That(EngineProcess.AssertUserError(r), Does.Contain("--tokenizer"));
    }

    [Test]
    public void InitWritesARandomLlamaFolderFromTheLlama2Tokenizer()
    {
        var shared = Environment.GetEnvironmentVariable("ENGINE_SHARED_TOKENIZERS") ?? "/work/shared/tokenizers";
        var spm = Path.Combine(shared, "llama2", "tokenizer.model");
        if (!File.Exists(spm)) Assert.Ignore($"{spm} is absent (runs where the shared tokenizers are)");
        var dir = temp.File("llama");
        var r = EngineProcess.Run("init", "--arch", "llama", "--tokenizer", spm, "--layers", "1", "--hidden", "32", "--heads", "4", "--kv-heads", "2", "--out", dir);
        Assert.That(r.Exit, Is.EqualTo(0), r.Err);
        var folder = HfModelFolder.Open(dir);
        Assert.That(folder.LlamaConfig.Architectures, Is.EqualTo(new[] { "LlamaForCausalLM" }));
        Assert.That(folder.LlamaConfig.NumKeyValueHeads, Is.EqualTo(2));
        Assert.That(folder.VocabSize, Is.EqualTo(32000));
        Assert.That((folder.LlamaConfig.BosTokenId, folder.LlamaConfig.EosTokenIds[0], folder.LlamaConfig.PadTokenId), Is.EqualTo((1, 2, (int?)0)));
        // It is a folder both the causal LM and the sequence classifier load.
        Assert.That(LanguageModel.Load(folder), Is.InstanceOf<CausalLanguageModel>());
        Assert.That(SequenceClassifier.FromFolder(folder, numLabels: 2).NumLabels, Is.EqualTo(2));
        var tokenizer = Models.Tokenization.TextTokenizer.FromFolder(folder);
        Assert.That(tokenizer.Encode("Hello world").Ids[0], Is.EqualTo(1), "bos first");
        r = EngineProcess.Run("bench", "step", "--model", dir, "--objective", "lm", "--batch", "2", "--len", "8", "--iters", "1");
        Assert.That(r.Exit, Is.EqualTo(0), r.Err);
        Assert.That(r.Out, Does.Contain("LlamaForCausalLM").And.Contain("tokens/s"));
    }
}
