using System.Text;

namespace Engine.Models.Pretraining;

/// <summary>
/// A tokenised corpus packed into rows of equal length, with no padding.
///
/// Reading: each plain-text file is read line by line (UTF-8; a file that is not valid UTF-8 is
/// read as Latin-1, CRLF and CR line ends count as line ends) and cut into documents at blank
/// lines (a WikiText paragraph or heading, a speech of a play, a paragraph of a book); a data
/// file (a <c>TASK:PATH</c> item or a .tsv/.csv/.jsonl path) gives one document per example
/// (<see cref="CorpusItem"/>). Each document is
/// tokenised without special tokens and appended to one token stream followed by the
/// separator (BERT: [SEP]; Llama: the eos token &lt;/s&gt;), so documents are separated but never
/// padded. Only the stream is kept, never the text.
///
/// Packing: row r is the start token (BERT: [CLS]; Llama: the bos token &lt;s&gt;) followed by
/// the stream's tokens r·(L − 1) … (r + 1)·(L − 1) − 1, for rows of length L; the tail that does
/// not fill a row is dropped. So a row may begin or end mid-document, and a separator inside a
/// row marks where one document ends and the next begins (RoBERTa's FULL-SENTENCES packing).
///
/// Held-out slice: every <see cref="HeldOutEvery"/>-th row (rows k − 1, 2k − 1, …) is held out
/// for evaluation and never trained on; the rest are the training rows. Spreading the held-out
/// rows over the whole stream makes the evaluation text a sample of every file.
/// </summary>
public sealed class PackedCorpus
{
    public int[] Stream { get; }
    public int RowLength { get; }
    public int StartToken { get; }
    public int DocumentCount { get; }
    public int HeldOutEvery { get; }
    public IReadOnlyList<int> TrainRows { get; }
    public IReadOnlyList<int> HeldOutRows { get; }
    public int RowCount => RowLength < 2 ? 0 : Stream.Length / (RowLength - 1);

    public PackedCorpus(int[] stream, int documents, int rowLength, int startToken, int heldOutEvery)
    {
        if (rowLength < 2) throw new EngineException($"--seq: the sequence length must be at least 2 tokens, got {rowLength}");
        if (heldOutEvery < 2) throw new EngineException($"pretrain: held-out-every must be at least 2, got {heldOutEvery}");
        Stream = stream;
        DocumentCount = documents;
        RowLength = rowLength;
        StartToken = startToken;
        HeldOutEvery = heldOutEvery;
        var train = new List<int>();
        var held = new List<int>();
        for (int r = 0; r < RowCount; r++) (r % heldOutEvery == heldOutEvery - 1 ? held : train).Add(r);
        TrainRows = train;
        HeldOutRows = held;
    }

    /// <summary>Row <paramref name="r"/> written into <paramref name="into"/> (length <see cref="RowLength"/>).</summary>
    public void Row(int r, Span<int> into)
    {
        if ((uint)r >= (uint)RowCount) throw new ArgumentOutOfRangeException(nameof(r));
        into[0] = StartToken;
        Stream.AsSpan(r * (RowLength - 1), RowLength - 1).CopyTo(into[1..]);
    }

    /// <summary>Rows <paramref name="rows"/> as one row-major [rows, RowLength] array.</summary>
    public int[] Rows(IReadOnlyList<int> rows)
    {
        var ids = new int[rows.Count * RowLength];
        for (int i = 0; i < rows.Count; i++) Row(rows[i], ids.AsSpan(i * RowLength, RowLength));
        return ids;
    }

    /// <summary>Tokenises the corpus <paramref name="items"/> (files, or <see cref="CorpusItem"/>s
    /// such as <c>sst2:PATH</c>) into one stream (see the class summary).
    /// <paramref name="maxTokens"/> stops reading once the stream holds that many tokens.</summary>
    public static (int[] Stream, int Documents) Tokenise(IEnumerable<string> items, Func<string, IReadOnlyList<int>> encode, int separator, long? maxTokens = null)
    {
        var stream = new List<int>(1 << 20);
        int documents = 0;
        foreach (var item in items)
        {
            foreach (var document in CorpusItem.Documents(item))
            {
                stream.AddRange(encode(document));
                stream.Add(separator);
                documents++;
                if (stream.Count >= maxTokens) return (stream.ToArray(), documents);
            }
        }
        return (stream.ToArray(), documents);
    }

    /// <summary>The documents of a plain-text file: runs of non-blank lines, joined by "\n".</summary>
    public static IEnumerable<string> ReadDocuments(string file)
    {
        if (!File.Exists(file)) throw new EngineException($"{file}: no such file");
        var text = new StringBuilder();
        foreach (var line in Lines(file))
        {
            if (string.IsNullOrWhiteSpace(line))
            {
                if (text.Length > 0) yield return text.ToString();
                text.Clear();
                continue;
            }
            if (text.Length > 0) text.Append('\n');
            text.Append(line);
        }
        if (text.Length > 0) yield return text.ToString();
    }

    private static IEnumerable<string> Lines(string file)
    {
        var encoding = IsUtf8(file) ? new UTF8Encoding(false, true) : Encoding.Latin1;
        using var reader = new StreamReader(file, encoding, detectEncodingFromByteOrderMarks: true);
        while (reader.ReadLine() is { } line) yield return line;
    }

    private static bool IsUtf8(string file)
    {
        var strict = new UTF8Encoding(false, true);
        using var stream = File.OpenRead(file);
        using var reader = new StreamReader(stream, strict, detectEncodingFromByteOrderMarks: true);
        var buffer = new char[1 << 16];
        try { while (reader.Read(buffer, 0, buffer.Length) > 0) { } return true; }
        catch (DecoderFallbackException) { return false; }
    }
}
