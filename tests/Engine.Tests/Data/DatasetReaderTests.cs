using System.Text;
using Engine.Models.Data;
using NUnit.Framework;

namespace Engine.Tests.Data;

/// <summary>Each format and each bad-line case, on small files the tests write.</summary>
public class DatasetReaderTests
{
    private string folder = "";

    [SetUp]
    public void MakeFolder()
    {
        folder = Path.Combine(Path.GetTempPath(), "engine-data-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(folder);
    }

    [TearDown]
    public void RemoveFolder() => Directory.Delete(folder, recursive: true);

    private string Write(string name, string text, bool bom = false)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        if (bom) bytes = [0xEF, 0xBB, 0xBF, .. bytes];
        return WriteBytes(name, bytes);
    }

    private string WriteBytes(string name, byte[] bytes)
    {
        var path = Path.Combine(folder, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static EngineException Fails(string path, DataOptions? options = null) =>
        Assert.Throws<EngineException>(() => DatasetReader.Read(path, options ?? new DataOptions()))!;

    // ---- formats ---------------------------------------------------------------------------

    [Test]
    public void TsvWithBomCrlfAndNoTrailingNewline()
    {
        var path = Write("a.tsv", "sentence\tlabel\r\nfine film\tpos\r\n\r\nbad \"film\tneg", bom: true);
        var data = DatasetReader.Read(path, new DataOptions());
        Assert.That(data.Examples, Is.EqualTo(new[]
        {
            new Example("fine film", null, 1),
            new Example("bad \"film", null, 0), // quotes are ordinary characters in TSV
        }));
        Assert.That(data.Labels!.Names, Is.EqualTo(new[] { "neg", "pos" })); // sorted names
        Assert.That(data.IsRegression, Is.False);
        Assert.That(data.SkippedLines, Is.EqualTo(0));
    }

    [Test]
    public void HeaderlessTsvByColumnIndex()
    {
        var path = Write("b.tsv", "x1\t1\t\tThe cat sat.\nx2\t0\t*\tCat the sat.\n");
        var data = DatasetReader.Read(path, new DataOptions { TextColumn = "3", LabelColumn = "1" });
        Assert.That(data.Examples.Select(e => (e.Text, e.Label)), Is.EqualTo(new[] { ("The cat sat.", 1), ("Cat the sat.", 0) }));
        Assert.That(data.Labels!.Names, Is.EqualTo(new[] { "0", "1" }));
    }

    [Test]
    public void CsvQuoting()
    {
        var path = Write("c.csv",
            "text,label\r\n" +
            "\"hello, world\",1\r\n" +
            "\"she said \"\"hi\"\"\",0\r\n" +
            "\"two\r\nlines\",1\r\n" +
            "plain,0\r\n" +
            "\"\"\"quoted\"\" start\",1");
        var data = DatasetReader.Read(path, new DataOptions());
        Assert.That(data.Examples.Select(e => e.Text), Is.EqualTo(new[]
        {
            "hello, world", "she said \"hi\"", "two\nlines", "plain", "\"quoted\" start",
        }));
        Assert.That(data.Examples.Select(e => e.Label), Is.EqualTo(new[] { 1, 0, 1, 0, 1 }));
    }

    [Test]
    public void CsvRowNumbersCountPhysicalLines()
    {
        // The record on lines 2–3 spans a newline; the bad record starts on line 4.
        var path = Write("d.csv", "text,label\n\"a\nb\",1\n\"c\",1,extra\n");
        Assert.That(Fails(path).Message, Is.EqualTo($"{path}:4: expected 2 comma-separated columns, found 3"));
    }

    [Test]
    public void JsonLinesWithPairsAndNumericLabels()
    {
        var path = Write("e.jsonl",
            "{\"sentence1\": \"A man sings.\", \"sentence2\": \"Someone sings.\", \"label\": 10}\n" +
            "\n" +
            "{\"label\": 2, \"sentence2\": \"b\", \"sentence1\": \"a\"}\n" +
            "{\"sentence1\": \"c\", \"sentence2\": \"d\", \"label\": 1}");
        var data = DatasetReader.Read(path, new DataOptions());
        // Integer labels are ordered by value: 1 → 0, 2 → 1, 10 → 2.
        Assert.That(data.Labels!.Names, Is.EqualTo(new[] { "1", "2", "10" }));
        Assert.That(data.Examples, Is.EqualTo(new[]
        {
            new Example("A man sings.", "Someone sings.", 2),
            new Example("a", "b", 1),
            new Example("c", "d", 0),
        }));
        Assert.That(data.IsPairs);
    }

    [Test]
    public void NamedColumnsOverrideDefaults()
    {
        var path = Write("f.tsv", "id\tbody\tverdict\n1\tgreat\tyes\n2\tawful\tno\n");
        var data = DatasetReader.Read(path, new DataOptions { TextColumn = "body", LabelColumn = "Verdict" });
        Assert.That(data.Examples.Select(e => (e.Text, data.Labels!.Name(e.Label))),
            Is.EqualTo(new[] { ("great", "yes"), ("awful", "no") }));
        // Indices work in a file with a header too.
        var byIndex = DatasetReader.Read(Write("f2.tsv", "id\tbody\tlabel\n1\tgreat\tyes\n"), new DataOptions { TextColumn = "1", LabelColumn = "2" });
        Assert.That(byIndex.Examples.Single().Text, Is.EqualTo("great"));
        // A misspelt name is reported against the header.
        Assert.That(Fails(path, new DataOptions { TextColumn = "bdy", LabelColumn = "verdict" }).Message,
            Is.EqualTo($"{path}:1: no text column 'bdy' among 'id', 'body', 'verdict'"));
    }

    [Test]
    public void GivenLabelMapKeepsItsIdsAndAcceptsIntegerIds()
    {
        var path = Write("g.tsv", "sentence\tlabel\nok\t1\nmeh\t0\n");
        var labels = new LabelMap(["negative", "positive"]);
        var data = DatasetReader.Read(path, new DataOptions { Labels = labels });
        Assert.That(data.Labels, Is.SameAs(labels));
        Assert.That(data.Examples.Select(e => e.Label), Is.EqualTo(new[] { 1, 0 }));

        var named = Write("h.tsv", "sentence\tlabel\nok\tpositive\n");
        Assert.That(DatasetReader.Read(named, new DataOptions { Labels = labels }).Examples[0].Label, Is.EqualTo(1));
    }

    [Test]
    public void UnlabelledFilesForPrediction()
    {
        var path = Write("test.tsv", "index\tsentence\n0\tsome text\n1\tmore text\n");
        Assert.That(Fails(path).Message, Does.StartWith($"{path}:1: no label column"));
        var data = DatasetReader.Read(path, new DataOptions { Unlabelled = true, Task = "sst2" });
        Assert.That(data.Examples.Select(e => e.Label), Is.EqualTo(new[] { -1, -1 }));
        Assert.That(data.Labels!.Names, Is.EqualTo(new[] { "negative", "positive" }));
        Assert.That(data.IsFullyLabelled, Is.False);
    }

    [Test]
    public void RegressionTargets()
    {
        var path = Write("s.tsv", "sentence1\tsentence2\tscore\na\tb\t5.000\nc\td\t0.25\n");
        var data = DatasetReader.Read(path, new DataOptions { Task = "STS-B" });
        Assert.That(data.IsRegression);
        Assert.That(data.Labels, Is.Null);
        Assert.That(data.Examples, Is.EqualTo(new[] { new Example("a", "b", -1, 5.0), new Example("c", "d", -1, 0.25) }));
        Assert.That(data.OutputCount, Is.EqualTo(1));
    }

    // ---- task presets ----------------------------------------------------------------------

    [Test]
    public void ColaWithoutHeaderAndItsTestFileWithOne()
    {
        var train = Write("train.tsv", "gj04\t1\t\tThe sailors rode the breeze.\ngj04\t0\t*\tRode sailors the.");
        var data = DatasetReader.Read(train, new DataOptions { Task = "cola" });
        Assert.That(data.Examples.Select(e => (e.Text, e.Label)), Is.EqualTo(new[] { ("The sailors rode the breeze.", 1), ("Rode sailors the.", 0) }));
        Assert.That(data.Labels!.Names, Is.EqualTo(new[] { "unacceptable", "acceptable" }));

        var test = Write("test.tsv", "index\tsentence\n0\tBill whistled past the house.\n");
        var unlabelled = DatasetReader.Read(test, new DataOptions { Task = "cola", Unlabelled = true });
        Assert.That(unlabelled.Examples.Single(), Is.EqualTo(new Example("Bill whistled past the house.", null, -1)));
    }

    [Test]
    public void MrpcWithBomAndLabelFirst()
    {
        var path = Write("train.tsv",
            "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t7\t8\tHe said \"so.\tHe said so.\n0\t9\t10\tA.\tB.\n", bom: true);
        var data = DatasetReader.Read(path, new DataOptions { Task = "mrpc" });
        Assert.That(data.Examples, Is.EqualTo(new[] { new Example("He said \"so.", "He said so.", 1), new Example("A.", "B.", 0) }));
    }

    [Test]
    public void RteNamedLabels()
    {
        var path = Write("dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tnot_entailment\n1\tC.\tD.\tentailment\n");
        var data = DatasetReader.Read(path, new DataOptions { Task = "rte" });
        Assert.That(data.Examples.Select(e => e.Label), Is.EqualTo(new[] { 1, 0 }));
        var bad = Write("bad.tsv", "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tneutral\n");
        Assert.That(Fails(bad, new DataOptions { Task = "rte" }).Message,
            Is.EqualTo($"{bad}:2: unknown label 'neutral' (known: entailment, not_entailment)"));
    }

    [Test]
    public void Sst5LabelThenText()
    {
        var path = Write("sentiment-dev", "4 a stirring , funny film\n0 dull\n");
        var data = DatasetReader.Read(path, new DataOptions { Task = "sst5" });
        Assert.That(data.Examples, Is.EqualTo(new[] { new Example("a stirring , funny film", null, 4), new Example("dull", null, 0) }));
        Assert.That(data.Labels!.Count, Is.EqualTo(5));
    }

    [Test]
    public void SentEvalPairFromFolderOrEitherFile()
    {
        var neg = Write("rt-polarity.neg", "bad one\n\nworse one\n");
        var pos = Write("rt-polarity.pos", "good one");
        foreach (var path in new[] { folder, neg, pos })
        {
            var data = DatasetReader.Read(path, new DataOptions { Task = "MR" });
            Assert.That(data.Examples, Is.EqualTo(new[]
            {
                new Example("bad one", null, 0), new Example("worse one", null, 0), new Example("good one", null, 1),
            }), path);
            Assert.That(data.Labels!.Names, Is.EqualTo(new[] { "negative", "positive" }));
        }
    }

    [Test]
    public void UnknownTaskAndUnknownFormat()
    {
        var path = Write("x.tsv", "sentence\tlabel\na\t1\n");
        Assert.That(Fails(path, new DataOptions { Task = "imdb" }).Message, Does.StartWith("unknown task 'imdb' (known: sst2, cola"));
        var txt = Write("x.txt", "a\n");
        Assert.That(Fails(txt).Message, Does.StartWith($"{txt}: cannot tell the format"));
        Assert.That(Fails(Path.Combine(folder, "missing.tsv")).Message, Does.EndWith("missing.tsv: no such file"));
    }

    // ---- bad lines -------------------------------------------------------------------------

    [Test]
    public void WrongColumnCountNamesFileAndLine()
    {
        var path = Write("w.tsv", "sentence\tlabel\na\t1\nb\t0\textra\n");
        Assert.That(Fails(path).Message, Is.EqualTo($"{path}:3: expected 2 tab-separated columns, found 3"));
    }

    [Test]
    public void UnknownLabelNamesFileAndLine()
    {
        var path = Write("u.tsv", "sentence\tlabel\na\tpos\nb\tmaybe\n");
        var labels = new LabelMap(["neg", "pos"]);
        Assert.That(Fails(path, new DataOptions { Labels = labels }).Message,
            Is.EqualTo($"{path}:3: unknown label 'maybe' (known: neg, pos)"));
        Assert.That(Assert.Throws<EngineException>(() => labels.Id("maybe", "u.tsv", 3))!.Message,
            Is.EqualTo("u.tsv:3: unknown label 'maybe' (known: neg, pos)"));
    }

    [Test]
    public void UnparsableNumberNamesFileAndLine()
    {
        var path = Write("n.tsv", "sentence1\tsentence2\tscore\na\tb\t1.5\nc\td\tfive\n");
        Assert.That(Fails(path, new DataOptions { Task = "stsb" }).Message,
            Is.EqualTo($"{path}:3: 'five' is not a number (score, a regression target)"));
    }

    [Test]
    public void InvalidUtf8NamesFileAndLine()
    {
        byte[] bytes = [.. Encoding.UTF8.GetBytes("sentence\tlabel\nok\t1\nbad "), 0xC3, 0x28, .. Encoding.UTF8.GetBytes("\t0\n")];
        var path = WriteBytes("i.tsv", bytes);
        Assert.That(Fails(path).Message, Is.EqualTo($"{path}:3: invalid UTF-8"));
        var csv = WriteBytes("i.csv", [.. Encoding.UTF8.GetBytes("text,label\n\"multi\n"), 0xFF, .. Encoding.UTF8.GetBytes("\",1\n")]);
        Assert.That(Fails(csv).Message, Is.EqualTo($"{csv}:3: invalid UTF-8"));
    }

    [Test]
    public void EmptyTextNamesFileAndLine()
    {
        var path = Write("t.tsv", "sentence\tlabel\na\t1\n  \t0\n");
        Assert.That(Fails(path).Message, Is.EqualTo($"{path}:3: empty text (sentence)"));
        var pair = Write("p.jsonl", "{\"sentence1\":\"a\",\"sentence2\":\"\",\"label\":0}\n");
        Assert.That(Fails(pair).Message, Is.EqualTo($"{pair}:1: empty text (sentence2)"));
    }

    [Test]
    public void MissingLabelNamesFileAndLine()
    {
        var path = Write("m.tsv", "sentence\tlabel\na\t1\nb\t\n");
        Assert.That(Fails(path).Message, Is.EqualTo($"{path}:3: empty label (label)"));
    }

    [Test]
    public void MalformedJsonAndUnclosedQuoteNameFileAndLine()
    {
        var json = Write("j.jsonl", "{\"text\":\"a\",\"label\":1}\n{\"text\": \"b\", \"label\n");
        Assert.That(Fails(json).Message, Does.StartWith($"{json}:2: not valid JSON"));
        var array = Write("k.jsonl", "[1, 2]\n");
        Assert.That(Fails(array).Message, Is.EqualTo($"{array}:1: expected a JSON object, found array"));
        var csv = Write("q.csv", "text,label\na,1\n\"never closed,1\nb,0\n");
        Assert.That(Fails(csv).Message, Is.EqualTo($"{csv}:3: a quoted field opened on this line is never closed"));
    }

    [Test]
    public void SkipModeCountsAndWarnsOncePerLine()
    {
        byte[] bytes = [.. Encoding.UTF8.GetBytes("sentence\tlabel\ngood\t1\ntoo\tmany\tcolumns\n\t0\nx"), 0xFF,
            .. Encoding.UTF8.GetBytes("\t1\nfine\t0\nfine\tmaybe\n")];
        var path = WriteBytes("skip.tsv", bytes);
        var warnings = new List<string>();
        var data = DatasetReader.Read(path, new DataOptions
        {
            SkipBadLines = true,
            Warn = warnings.Add,
            Labels = new LabelMap(["0", "1"]),
        });
        Assert.That(data.Examples.Select(e => e.Text), Is.EqualTo(new[] { "good", "fine" }));
        Assert.That(data.SkippedLines, Is.EqualTo(4));
        Assert.That(warnings, Is.EqualTo(new[]
        {
            $"{path}:3: expected 2 tab-separated columns, found 3 (line skipped)",
            $"{path}:4: empty text (sentence) (line skipped)",
            $"{path}:5: invalid UTF-8 (line skipped)",
            $"{path}:7: unknown label 'maybe' (known: 0, 1) (line skipped)",
        }));
    }

    [Test]
    public void NothingLeftIsAnError()
    {
        var path = Write("all-bad.tsv", "sentence\tlabel\na\tb\tc\n");
        Assert.That(Fails(path, new DataOptions { SkipBadLines = true }).Message, Is.EqualTo($"{path}: no examples (1 bad lines skipped)"));
    }

    // ---- label maps ------------------------------------------------------------------------

    [Test]
    public void LabelMapRoundTripsThroughJson()
    {
        var map = new LabelMap(["neg", "pos"]);
        var path = Path.Combine(folder, "labels.json");
        map.Save(path);
        var json = File.ReadAllText(path);
        Assert.That(json, Does.Contain("\"id2label\"").And.Contain("\"0\": \"neg\"").And.Contain("\"label2id\"").And.Contain("\"pos\": 1"));
        var loaded = LabelMap.Load(path);
        Assert.That(loaded.Names, Is.EqualTo(map.Names));
        Assert.That(loaded.Id("pos", path, 1), Is.EqualTo(1));
        Assert.That(loaded.Name(0), Is.EqualTo("neg"));

        var broken = Write("broken.json", "{\"id2label\": {\"0\": \"a\", \"2\": \"b\"}}");
        Assert.That(Assert.Throws<EngineException>(() => LabelMap.Load(broken))!.Message, Does.StartWith($"{broken}: id2label must number"));
    }

    [Test]
    public void LabelMapFromConfig()
    {
        Assert.That(LabelMap.FromConfig(null), Is.Null);
        Assert.That(LabelMap.FromConfig(new Dictionary<int, string> { [0] = "LABEL_0", [1] = "LABEL_1" }), Is.Null);
        var map = LabelMap.FromConfig(new Dictionary<int, string> { [1] = "positive", [0] = "negative" })!;
        Assert.That(map.Names, Is.EqualTo(new[] { "negative", "positive" }));
        Assert.That(map.Id2Label[1], Is.EqualTo("positive"));
        Assert.That(map.Label2Id["negative"], Is.EqualTo(0));
    }

    [Test]
    public void SplitIsSeededAndKeepsEveryExample()
    {
        var examples = Enumerable.Range(0, 10).Select(i => new Example($"s{i}", null, i % 2)).ToArray();
        var data = new Dataset("mem", examples, new LabelMap(["a", "b"]), false, 0);
        var (train, heldOut) = data.Split(0.2, seed: 7);
        Assert.That(heldOut.Count, Is.EqualTo(2));
        Assert.That(train.Examples.Concat(heldOut.Examples).OrderBy(e => e.Text), Is.EqualTo(examples.OrderBy(e => e.Text)));
        Assert.That(data.Split(0.2, seed: 7).HeldOut.Examples, Is.EqualTo(heldOut.Examples));
    }
    [Test]
    public void SampleIsASeededSubsetInFileOrderThatIgnoresTheTrainingSeed()
    {
        var examples = Enumerable.Range(0, 100).Select(i => new Example($"s{i}", null, i % 2)).ToArray();
        var data = new Dataset("mem", examples, new LabelMap(["a", "b"]), false, 0);
        var sample = data.Sample(30, seed: 3);
        Assert.That(sample.Count, Is.EqualTo(30));
        Assert.That(sample.Examples.Distinct().Count(), Is.EqualTo(30), "drawn without replacement");
        Assert.That(sample.Examples.All(examples.Contains), Is.True);
        var positions = sample.Examples.Select(e => Array.IndexOf(examples, e)).ToArray();
        Assert.That(positions, Is.Ordered.Ascending, "file order kept");
        Assert.That(data.Sample(30, seed: 3).Examples, Is.EqualTo(sample.Examples), "the same seed draws the same subset");
        Assert.That(data.Sample(30, seed: 4).Examples, Is.Not.EqualTo(sample.Examples));
        Assert.That(positions.Max() - positions.Min(), Is.GreaterThan(50), "spread over the file, not its head");
        Assert.That(data.Split(0.3, seed: 3).HeldOut.Examples.OrderBy(e => e.Text), Is.EqualTo(sample.Examples.OrderBy(e => e.Text)), "the same draw as Split's held-out part");
        Assert.That(data.Sample(100, seed: 3), Is.SameAs(data));
        Assert.That(data.Sample(1000, seed: 3), Is.SameAs(data));
        Assert.That(sample.Source, Does.Contain("sample of 30"));
        Assert.Throws<EngineException>(() => data.Sample(0, seed: 3));
    }
}
