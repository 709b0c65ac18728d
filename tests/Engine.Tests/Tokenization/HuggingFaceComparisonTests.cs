using System.Diagnostics;
using System.Text.Json;
using Engine.Models.Tokenization;
using Microsoft.ML.Tokenizers;
using NUnit.Framework;

namespace Engine.Tests.Tokenization;

/// <summary>
/// The engine's WordPiece and byte-level BPE tokenizers and Microsoft.ML.Tokenizers' equivalents against
/// Hugging Face tokenizers' ids on the fixture's strings, 10,000 SST-2 and 7,336 MRPC train sentences,
/// and the time each takes for the 10,000 SST-2 sentences (the figures in docs/tokenizers.md).
/// The reference folder is made by hf_tokenizers_reference.js (beside this file; it needs Node and the npm
/// package "tokenizers") and named by ENGINE_TOKENIZER_REFERENCE; without it the test is skipped.
/// The engine must match every line; the library's counts are reported, not asserted (LibraryDifferenceTests
/// holds the differences that decide which code the engine uses).
/// </summary>
public class HuggingFaceComparisonTests
{
    private sealed record Candidate(string Name, int[][] Reference, Func<string, IReadOnlyList<int>> Encode, bool IsEngine);

    [Test]
    public void EngineAndLibraryAgainstHuggingFaceOnGlueLines()
    {
        if (Environment.GetEnvironmentVariable("ENGINE_TOKENIZER_REFERENCE") is not { Length: > 0 } folder)
        {
            Assert.Ignore("ENGINE_TOKENIZER_REFERENCE is not set (a folder made by hf_tokenizers_reference.js)");
            return;
        }
        var textsJson = Read(Path.Combine(folder, "texts.json"));
        int fixtureCount = textsJson.GetProperty("fixtureCount").GetInt32();
        var texts = textsJson.GetProperty("texts").EnumerateArray().Select(e => e.GetString()!).ToArray();
        int[][] Reference(string name) => Read(Path.Combine(folder, name + ".json")).EnumerateArray()
            .Select(a => a.EnumerateArray().Select(i => i.GetInt32()).ToArray()).ToArray();

        var bertVocab = Path.Combine(Environment.GetEnvironmentVariable("ENGINE_SHARED_TOKENIZERS") ?? "/work/shared/tokenizers", "bert-base-uncased", "vocab.txt");
        string bpeVocab = Path.Combine(folder, "bpe", "vocab.json"), bpeMerges = Path.Combine(folder, "bpe", "merges.txt");
        var ourBpe = ByteLevelBpeFiles.Load(bpeVocab, bpeMerges, TokenizerConfig.Empty);
        var special = new[] { "<s>", "<pad>", "</s>", "<unk>", "<mask>" }.ToDictionary(t => t, t => ourBpe.TokenToId(t)!.Value);
        var libraryBpe = BpeTokenizer.Create(new BpeOptions(bpeVocab, bpeMerges)
        {
            ByteLevel = true, SpecialTokens = special, PreTokenizer = new RegexPreTokenizer(ByteLevelPreTokenizer.Gpt2Pattern, special),
        });
        var candidates = new List<Candidate>();
        foreach (bool lowercase in new[] { true, false })
        {
            var ours = WordPieceFiles.Load(bertVocab, TokenizerConfig.Empty with { DoLowerCase = lowercase });
            var library = BertTokenizer.Create(bertVocab, new BertOptions { LowerCaseBeforeTokenization = lowercase, RemoveNonSpacingMarks = lowercase });
            var reference = Reference(lowercase ? "bert_uncased" : "bert_cased");
            string kind = lowercase ? "uncased" : "cased";
            candidates.Add(new($"engine WordPiece, {kind}", reference, s => ours.Encode(s).Ids, true));
            candidates.Add(new($"library BertTokenizer, {kind}", reference, s => library.EncodeToIds(s), false));
            // The library's WordPiece model alone, fed the engine's normalizer and pre-tokenizer.
            var model = WordPieceTokenizer.Create(bertVocab, new WordPieceOptions { UnknownToken = "[UNK]" });
            var words = new BertPreTokenizer();
            candidates.Add(new($"engine stages + library WordPieceTokenizer, {kind}", reference, s =>
            {
                var ids = new List<int>();
                foreach (var word in words.Split(Normalizers.Bert(s, cleanText: true, handleChineseChars: true, lowercase, lowercase), true))
                    ids.AddRange(model.EncodeToIds(word, considerPreTokenization: false, considerNormalization: false));
                return ours.Template.Apply(ids, null).Ids;
            }, false));
        }
        var bpeReference = Reference("bpe");
        candidates.Add(new("engine byte-level BPE", bpeReference, s => ourBpe.Encode(s).Ids, true));
        // The library for the content only, the engine's RoBERTa template around it (as the engine would use it).
        candidates.Add(new("library BpeTokenizer (ByteLevel)", bpeReference, s => ourBpe.Template.Apply(libraryBpe.EncodeToIds(s), null).Ids, false));

        var engineMismatches = new List<string>();
        foreach (var c in candidates)
        {
            int fixtureBad = 0, sstBad = 0, mrpcBad = 0;
            for (int i = 0; i < texts.Length; i++)
            {
                if (c.Encode(texts[i]).SequenceEqual(c.Reference[i])) continue;
                if (i < fixtureCount) fixtureBad++; else if (i < fixtureCount + 10000) sstBad++; else mrpcBad++;
                if (c.IsEngine && engineMismatches.Count < 10) engineMismatches.Add($"{c.Name}: '{texts[i]}'");
            }
            TestContext.Out.WriteLine($"{c.Name}: differs from Hugging Face on {fixtureBad} of {fixtureCount} fixture strings, "
                + $"{sstBad} of 10000 SST-2 and {mrpcBad} of {texts.Length - fixtureCount - 10000} MRPC sentences");
        }
        Assert.That(engineMismatches, Is.Empty, string.Join("\n", engineMismatches));

        // Speed: every candidate on the same 10,000 SST-2 sentences, runs interleaved so that a busy machine slows
        // all alike. The process's CPU time is reported besides the wall clock: waiting for a core does not count in it.
        var sst = texts.Skip(fixtureCount).Take(10000).ToArray();
        var timed = candidates.Where(c => !c.Name.EndsWith(", cased", StringComparison.Ordinal)).ToArray();
        var wall = timed.Select(_ => new List<double>()).ToArray();
        var cpu = timed.Select(_ => new List<double>()).ToArray();
        using var process = Process.GetCurrentProcess();
        double CpuMilliseconds() { process.Refresh(); return process.TotalProcessorTime.TotalMilliseconds; }
        foreach (var c in timed) foreach (var s in sst) c.Encode(s);
        for (int run = 0; run < 15; run++)
            for (int k = 0; k < timed.Length; k++)
            {
                double cpuStart = CpuMilliseconds();
                var clock = Stopwatch.StartNew();
                foreach (var s in sst) timed[k].Encode(s);
                wall[k].Add(clock.Elapsed.TotalMilliseconds);
                cpu[k].Add(CpuMilliseconds() - cpuStart);
            }
        for (int k = 0; k < timed.Length; k++)
        {
            wall[k].Sort();
            cpu[k].Sort();
            TestContext.Out.WriteLine($"{timed[k].Name}: 10,000 SST-2 sentences, CPU {cpu[k][0]:F0} ms fastest / {cpu[k][7]:F0} ms median, "
                + $"wall {wall[k][0]:F0} ms fastest (15 runs)");
        }
    }

    private static JsonElement Read(string path)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
        return doc.RootElement.Clone();
    }
}
