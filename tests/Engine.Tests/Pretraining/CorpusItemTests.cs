using Engine.Models.Pretraining;
using Engine.Models.Tokenization;
using Engine.Tests.Data;
using NUnit.Framework;

namespace Engine.Tests.Pretraining;

/// <summary>Data files as pretraining text (<see cref="CorpusItem"/>): each example one document
/// (its pair a second line), labels left out; the guard against evaluation text; one-line errors
/// for bad data lines; `engine pretrain` / `engine eval-lm` with such items.</summary>
public class CorpusItemTests
{
    private TempFolder temp = null!;

    [SetUp] public void SetUp() => temp = new TempFolder();
    [TearDown] public void TearDown() => temp.Dispose();

    private static readonly string[] Words = PretrainerTests.Words;

    private string Vocab() => PretrainerTests.WriteVocab(temp.File("vocab.txt"), Words.Append(",").Append("."));

    private string Write(string name, string text)
    {
        var path = temp.File(name);
        File.WriteAllText(path, text);
        return path;
    }

    [Test]
    public void DataFilesBecomeOneDocumentPerExampleAndTokeniseAsTheirTexts()
    {
        // A pair task with a header, a blank line (no example) and labels to leave out.
        var tsv = Write("pairs.tsv", "sentence1\tsentence2\tlabel\nthe cat sat\ta dog ran\t1\n\nthe bird sang\tthe river flows\t0\n");
        // CSV quoting (a comma inside the text) and a label column.
        var csv = Write("quoted.csv", "text,label\n\"the cat, the dog\",pos\nmorning light,neg\n");
        // JSON Lines: one object labelled, one not (a corpus needs no labels).
        var jsonl = Write("lines.jsonl", "{\"sentence\": \"a cat ran far away\", \"label\": 1}\n{\"sentence\": \"the sea\"}\n");
        // CoLA as released: no header; source, label, mark, sentence.
        var cola = Write("in_domain.tsv", "gj04\t1\t\tthe cat sat on the mat .\ngj04\t0\t*\tcat the sat on .\n");
        var text = Write("plain.txt", "the song of the river\n\nmorning light\n");
        string[] items = [tsv, csv, jsonl, "cola:" + cola, text];
        string[][] expected =
        [
            ["the cat sat\na dog ran", "the bird sang\nthe river flows"],
            ["the cat, the dog", "morning light"],
            ["a cat ran far away", "the sea"],
            ["the cat sat on the mat .", "cat the sat on ."],
            ["the song of the river", "morning light"],
        ];
        for (int i = 0; i < items.Length; i++)
            Assert.That(CorpusItem.Documents(items[i]), Is.EqualTo(expected[i]), items[i]);

        var folder = LanguageModelFolder.Create(temp.File("init"), new LmShape("bert", 1, 16, 2, 32, MaxPositions: 32), Vocab(), seed: 1);
        var tokenizer = TextTokenizer.FromFolder(folder);
        var (_, separator) = LmObjective.Delimiters(folder, tokenizer);
        var (stream, documents) = PackedCorpus.Tokenise(items, t => tokenizer.EncodeWithoutSpecialTokens(t), separator);
        var ownIds = expected.SelectMany(d => d).SelectMany(d => tokenizer.EncodeWithoutSpecialTokens(d).Append(separator)).ToArray();
        Assert.That(documents, Is.EqualTo(10));
        Assert.That(stream, Is.EqualTo(ownIds));
        Assert.That(stream, Does.Not.Contain(tokenizer.TokenToId("[UNK]")), "every word is in the vocabulary: no label or column name leaked in");
    }

    [Test]
    public void ItemsNameTasksOrFormats()
    {
        Assert.That(CorpusItem.Parse("sst-2:/d/SST-2/train.tsv"), Is.EqualTo(new CorpusItem("/d/SST-2/train.tsv", "sst2", true)));
        Assert.That(CorpusItem.Parse("mr:/d/senteval/MR"), Is.EqualTo(new CorpusItem("/d/senteval/MR", "mr", true)));
        Assert.That(CorpusItem.Parse("/d/x.JSONL"), Is.EqualTo(new CorpusItem("/d/x.JSONL", null, true)));
        Assert.That(CorpusItem.Parse("/d/wiki:2/train.txt"), Is.EqualTo(new CorpusItem("/d/wiki:2/train.txt", null, false)), "a colon after a slash is part of the path");
        Assert.That(() => CorpusItem.Parse("sst3:/d/train.tsv"), Throws.TypeOf<EngineException>().With.Message.Contains("unknown task 'sst3'").And.Message.Contains("sst2"));
    }

    [TestCase("/d/glue/SST-2/dev.tsv", "dev")]
    [TestCase("sst2:/d/glue/SST-2/test.tsv", "test")]
    [TestCase("/d/glue/MRPC/msr_paraphrase_test.txt", "test")]
    [TestCase("sst5:/d/senteval/SST-5/sentiment-dev", "dev")]
    [TestCase("/d/senteval/SST-5/sentiment-test", "test")]
    [TestCase("/d/wikitext-2/valid.txt", "valid")]
    [TestCase("/d/wikitext-2-raw/wiki.valid.raw", "valid")]
    [TestCase("/d/x/validation.jsonl", "validation")]
    [TestCase("/d/MNLI/dev_matched.tsv", "dev")]
    [TestCase("/d/glue/SST-2/train.tsv", null)]
    [TestCase("sst5:/d/senteval/SST-5/sentiment-train", null)]
    [TestCase("mr:/d/senteval/MR/", null)]
    [TestCase("/d/test-sets/train.tsv", null)]
    [TestCase("/d/contest-devices.txt", null)]
    public void EvaluationTextIsToldByTheFileName(string item, string? word)
    {
        Assert.That(CorpusItem.EvaluationTextWord(item), Is.EqualTo(word));
        if (word is null) Assert.That(() => CorpusItem.RefuseEvaluationText([item]), Throws.Nothing);
        else Assert.That(() => CorpusItem.RefuseEvaluationText(["/d/train.txt", item]),
            Throws.TypeOf<EngineException>().With.Message.Contains(item).And.Message.Contains("--allow-eval-text"));
    }

    [Test]
    public void ABadDataLineNamesFileAndLineAndAFolderIsRefused()
    {
        var bad = Write("bad.tsv", "sentence\tlabel\nthe cat\t1\nthe dog\t0\textra\n");
        Assert.That(() => CorpusItem.Documents(bad).ToList(),
            Throws.TypeOf<EngineException>().With.Message.EqualTo($"{bad}:3: expected 2 tab-separated columns, found 3"));
        Assert.That(() => CorpusItem.Documents(temp.Path).ToList(), Throws.TypeOf<EngineException>().With.Message.Contains("is a folder"));
    }

    [Test]
    public void PretrainRefusesEvaluationTextUnlessAllowedAndEvalLmScoresIt()
    {
        var dev = Write("dev.tsv", "sentence\tlabel\n" + string.Concat(Enumerable.Range(0, 40).Select(i =>
            $"{Words[i % 20]} {Words[(i * 7 + 3) % 20]} {Words[(i * 3 + 1) % 20]} {Words[(i * 11 + 5) % 20]}\t{i % 2}\n")));
        var vocab = Vocab();
        var config = Write("tiny.json",
            """{"model_type": "bert", "num_hidden_layers": 1, "hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 32}""");
        string[] Pretrain(string outDir, params string[] more) =>
            ["pretrain", "--config", config, "--tokenizer", vocab, "--corpus", "sst2:" + dev, "--steps", "1", "--batch", "4", "--seq", "16",
             "--held-out-every", "4", "--out", outDir, .. more];

        var refused = temp.File("refused");
        var error = EngineProcess.AssertUserError(EngineProcess.Run(Pretrain(refused)));
        Assert.That(error, Does.Contain("sst2:" + dev).And.Contain("evaluation text").And.Contain("--allow-eval-text"));
        Assert.That(Directory.Exists(refused), Is.False, "nothing written");

        var run = temp.File("run");
        var r = EngineProcess.Run(Pretrain(run, "--allow-eval-text"));
        Assert.That(r.Exit, Is.EqualTo(0), r.Err);
        Assert.That(r.Out, Does.Contain("40 documents"));

        r = EngineProcess.Run("eval-lm", "--model", Path.Combine(run, Pretrainer.LastCheckpoint), "--corpus", dev, "--seq", "16");
        Assert.That(r.Exit, Is.EqualTo(0), r.Err);
        Assert.That(r.Out, Does.Contain("40 documents").And.Contain("MLM accuracy"));

        var bad = Write("bad.jsonl", "{\"text\": \"the cat\"}\n{\"text\": \"the dog\"\n");
        error = EngineProcess.AssertUserError(EngineProcess.Run("eval-lm", "--model", Path.Combine(run, Pretrainer.LastCheckpoint), "--corpus", bad, "--seq", "16"));
        Assert.That(error, Does.Contain($"{bad}:2:"));
    }

    [Test]
    public void Sst2AndMrpcTrainingFilesReadAsOneDocumentPerExample()
    {
        var sst2 = RealDataTests.Locate("glue/SST-2/train.tsv");
        var documents = CorpusItem.Documents("sst2:" + sst2).ToList();
        Assert.That(documents, Has.Count.EqualTo(67349));
        Assert.That(documents[0], Is.EqualTo(File.ReadLines(sst2).ElementAt(1).Split('\t')[0]), "the first sentence, without its label");
        Assert.That(CorpusItem.EvaluationTextWord("sst2:" + sst2), Is.Null);

        var mrpc = RealDataTests.Locate("glue/MRPC/train.tsv");
        var fields = File.ReadLines(mrpc).ElementAt(1).Split('\t');   // Quality, #1 ID, #2 ID, #1 String, #2 String
        Assert.That(CorpusItem.Documents("mrpc:" + mrpc).First(), Is.EqualTo(fields[3] + "\n" + fields[4]));
    }
}
