using System.Text;
using Engine.Models.Pretraining;
using NUnit.Framework;

namespace Engine.Tests.Pretraining;

/// <summary>BERT's 15% / 80-10-10 masking (rates, special tokens, seeding, whole words) and the
/// packing of a tokenised corpus into rows (documents, separators, boundaries, held-out rows).</summary>
public class MaskingAndPackingTests
{
    private const int Vocab = 1000, Mask = 4;
    private static readonly int[] Specials = [0, 1, 2, 3]; // [PAD], [UNK], [CLS], [SEP]

    private static MlmMasker Masker(bool wholeWords = false) =>
        new(Vocab, Mask, Specials, id => id >= 500) { WholeWords = wholeWords }; // ids ≥ 500 play "##" pieces

    /// <summary>A long row of ordinary tokens (ids 5..499, never continuation pieces) with a special token every 10th position.</summary>
    private static int[] Row(int n, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(i => i % 10 == 0 ? Specials[i / 10 % 4] : rng.Next(5, 500)).ToArray();
    }

    /// <summary>|observed − p| within 4.5 binomial standard deviations.</summary>
    private static void Rate(int hits, int trials, double p, string what)
    {
        double sd = Math.Sqrt(p * (1 - p) / trials);
        Assert.That((double)hits / trials, Is.EqualTo(p).Within(4.5 * sd), $"{what}: {hits} of {trials}");
    }

    [Test]
    public void FifteenPercentAreSelectedAndSplitEightyTenTen()
    {
        var ids = Row(200_000, 1);
        var m = Masker().Mask(ids, seed: 7, key: 0);
        int ordinary = 0, selected = 0, masked = 0, random = 0, kept = 0;
        for (int j = 0; j < ids.Length; j++)
        {
            if (Specials.Contains(ids[j])) continue;
            ordinary++;
            if (m.Labels[j] == MlmMasker.Ignore) { Assert.That(m.Ids[j], Is.EqualTo(ids[j]), "unselected tokens are unchanged"); continue; }
            Assert.That(m.Labels[j], Is.EqualTo(ids[j]), "the label is the original token");
            selected++;
            if (m.Ids[j] == Mask) masked++;
            else if (m.Ids[j] == ids[j]) kept++;
            else random++;
        }
        Rate(selected, ordinary, 0.15, "selected");
        Rate(masked, selected, 0.8, "[MASK]");
        Rate(random, selected, 0.1, "random");
        Rate(kept, selected, 0.1, "kept");
    }

    [Test]
    public void SpecialTokensAreNeverSelectedNorDrawnAsReplacements()
    {
        var ids = Row(50_000, 2);
        var m = Masker().Mask(ids, seed: 3, key: 9);
        for (int j = 0; j < ids.Length; j++)
        {
            if (Specials.Contains(ids[j]))
            {
                Assert.That(m.Labels[j], Is.EqualTo(MlmMasker.Ignore), $"special at {j} selected");
                Assert.That(m.Ids[j], Is.EqualTo(ids[j]), $"special at {j} changed");
            }
            else if (m.Ids[j] != Mask) Assert.That(Specials, Does.Not.Contain(m.Ids[j]), $"a special token drawn as the replacement at {j}");
        }
    }

    [Test]
    public void MasksAreAFunctionOfSeedAndKey()
    {
        var ids = Row(2_000, 3);
        var a = Masker().Mask(ids, 5, 11);
        var b = Masker().Mask(ids, 5, 11);
        Assert.That(b.Ids, Is.EqualTo(a.Ids));
        Assert.That(b.Labels, Is.EqualTo(a.Labels));
        Assert.That(Masker().Mask(ids, 5, 12).Labels, Is.Not.EqualTo(a.Labels), "another key (row or epoch) masks differently");
        Assert.That(Masker().Mask(ids, 6, 11).Labels, Is.Not.EqualTo(a.Labels), "another seed masks differently");
    }

    [Test]
    public void WholeWordMaskingSelectsAllPiecesOfAWordTogether()
    {
        // Words of 1-3 pieces: a start id in 5..499 followed by 0-2 continuation ids in 500..999.
        var rng = new Random(4);
        var ids = new List<int>();
        int words = 0;
        while (ids.Count < 100_000)
        {
            ids.Add(rng.Next(5, 500));
            words++;
            for (int k = rng.Next(3); k > 0; k--) ids.Add(rng.Next(500, 1000));
        }
        var row = ids.ToArray();
        var m = Masker(wholeWords: true).Mask(row, 8, 1);
        int selectedWords = 0;
        for (int j = 0; j < row.Length; j++)
        {
            bool selected = m.Labels[j] != MlmMasker.Ignore;
            if (row[j] < 500) { if (selected) selectedWords++; }
            else Assert.That(selected, Is.EqualTo(m.Labels[j - 1] != MlmMasker.Ignore), $"piece {j} not selected with its word");
        }
        Rate(selectedWords, words, 0.15, "words selected");
        // Without whole words, continuation pieces are selected on their own.
        var plain = Masker().Mask(row, 8, 1);
        Assert.That(Enumerable.Range(1, row.Length - 1).Any(j => row[j] >= 500 && (plain.Labels[j] != MlmMasker.Ignore) != (plain.Labels[j - 1] != MlmMasker.Ignore)));
    }

    [Test]
    public void DocumentsAreSeparatedAndRowsArePackedWithoutPadding()
    {
        using var temp = new TempFolder();
        var a = temp.File("a.txt");
        File.WriteAllText(a, "one two\nthree\n\n\nfour\r\n\r\nfive six seven\n");
        var b = temp.File("b.txt");
        File.WriteAllBytes(b, Encoding.Latin1.GetBytes("caf\u00e9 eight\n \nnine"));   // Latin-1, a whitespace-only line separates
        Assert.That(PackedCorpus.ReadDocuments(a), Is.EqualTo(new[] { "one two\nthree", "four", "five six seven" }));
        Assert.That(PackedCorpus.ReadDocuments(b), Is.EqualTo(new[] { "caf\u00e9 eight", "nine" }));

        // Each word a token (its length + 100), separator 1, start token 2.
        IReadOnlyList<int> Encode(string text) => text.Split([' ', '\n']).Select(w => 100 + w.Length).ToArray();
        var (stream, documents) = PackedCorpus.Tokenise([a, b], Encode, separator: 1);
        Assert.That(documents, Is.EqualTo(5));
        Assert.That(stream, Is.EqualTo(new[] { 103, 103, 105, 1, 104, 1, 104, 103, 105, 1, 104, 105, 1, 104, 1 }));

        var packed = new PackedCorpus(stream, documents, rowLength: 4, startToken: 2, heldOutEvery: 2);
        Assert.That(packed.RowCount, Is.EqualTo(5), "15 tokens make 5 rows of 1 start + 3 stream tokens; no tail");
        var all = packed.Rows(Enumerable.Range(0, packed.RowCount).ToArray());
        Assert.That(all, Has.Length.EqualTo(5 * 4));
        for (int r = 0; r < 5; r++)
        {
            Assert.That(all[r * 4], Is.EqualTo(2), $"row {r} starts with the start token");
            Assert.That(all.Skip(r * 4 + 1).Take(3), Is.EqualTo(stream.Skip(r * 3).Take(3)), $"row {r} continues the stream where row {r - 1} stopped");
        }
        Assert.That(packed.HeldOutRows, Is.EqualTo(new[] { 1, 3 }));
        Assert.That(packed.TrainRows, Is.EqualTo(new[] { 0, 2, 4 }));

        var tail = new PackedCorpus(stream, documents, rowLength: 5, startToken: 2, heldOutEvery: 100);
        Assert.That(tail.RowCount, Is.EqualTo(3), "15 tokens make 3 rows of 4 stream tokens; the last 3 tokens are dropped");
        Assert.That(PackedCorpus.Tokenise([a, b], Encode, 1, maxTokens: 6).Stream, Is.EqualTo(stream.Take(6)), "--max-corpus-tokens stops at a document end");
    }
}
