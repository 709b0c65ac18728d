namespace Engine.Models.Data;

/// <summary>
/// One text-classification example: a sentence, or a sentence pair, and its target.
/// </summary>
/// <param name="Text">The first (or only) sentence, exactly as the file holds it (no trimming).</param>
/// <param name="TextPair">The second sentence of a pair task (RTE, MRPC, STS-B, …), else null.</param>
/// <param name="Label">The class id (an index into the dataset's <see cref="LabelMap"/>);
/// −1 for an unlabelled example (a GLUE test file read for prediction) and for every example
/// of a regression dataset.</param>
/// <param name="Value">The regression target (STS-B's 0–5 score); 0 for classification, and
/// <see cref="double.NaN"/> for an unlabelled regression example.</param>
public sealed record Example(string Text, string? TextPair, int Label, double Value = 0);

/// <summary>
/// The examples read from one file (or one SentEval pair of files), with the label map their
/// ids refer to.
/// </summary>
/// <param name="Source">The path the data was read from, as given.</param>
/// <param name="Examples">The examples in file order (SentEval pairs: the file of label 0 first).</param>
/// <param name="Labels">Names ↔ ids for classification; null for regression.</param>
/// <param name="IsRegression">True when targets are <see cref="Example.Value"/> rather than classes.</param>
/// <param name="SkippedLines">How many bad lines <see cref="DataOptions.SkipBadLines"/> skipped.</param>
public sealed record Dataset(string Source, IReadOnlyList<Example> Examples, LabelMap? Labels, bool IsRegression, int SkippedLines)
{
    /// <summary>The number of examples.</summary>
    public int Count => Examples.Count;

    /// <summary>Whether the examples are sentence pairs.</summary>
    public bool IsPairs => Examples.Count > 0 && Examples[0].TextPair is not null;

    /// <summary>Whether every example carries a target: a class id, or (regression) a value that is not NaN.
    /// False for a GLUE test file read with <see cref="DataOptions.Unlabelled"/>.</summary>
    public bool IsFullyLabelled => IsRegression
        ? Examples.All(e => !double.IsNaN(e.Value))
        : Examples.All(e => e.Label >= 0);

    /// <summary>The number of classes, or 1 for regression (the width of the model's output).</summary>
    public int OutputCount => IsRegression ? 1 : Labels?.Count ?? 0;

    /// <summary>
    /// Splits off a held-out part, for data without an official split (the SentEval sets): the
    /// examples are shuffled with <paramref name="seed"/> (Fisher–Yates over a
    /// <see cref="Random"/> seeded with it), the first ⌈fraction·n⌉ become the held-out part and
    /// the rest the training part, each keeping the label map.
    /// </summary>
    public (Dataset Train, Dataset HeldOut) Split(double heldOutFraction, int seed)
    {
        if (heldOutFraction is <= 0 or >= 1)
            throw new ArgumentOutOfRangeException(nameof(heldOutFraction), "the held-out fraction must lie strictly between 0 and 1");
        var order = Shuffled(seed);
        int heldOut = (int)Math.Ceiling(heldOutFraction * order.Length);
        var heldOutExamples = order.Take(heldOut).Select(i => Examples[i]).ToArray();
        var trainExamples = order.Skip(heldOut).Select(i => Examples[i]).ToArray();
        return (this with { Examples = trainExamples, SkippedLines = 0 },
                this with { Examples = heldOutExamples, SkippedLines = 0 });
    }

    /// <summary>
    /// A random subset of <paramref name="count"/> examples, for data-scarce experiments: the
    /// first <paramref name="count"/> of the same seeded shuffle <see cref="Split"/> uses, put back
    /// in file order. The subset depends on <paramref name="seed"/> only, so runs that differ in
    /// their training seed see the same examples. A count at or above the size keeps every example.
    /// </summary>
    public Dataset Sample(int count, int seed)
    {
        if (count < 1) throw new EngineException($"{Source}: a sample needs at least 1 example, got {count}");
        if (count >= Examples.Count) return this;
        var chosen = Shuffled(seed).Take(count).Order().Select(i => Examples[i]).ToArray();
        return this with { Examples = chosen, Source = $"{Source} (sample of {count:N0}, seed {seed})" };
    }

    /// <summary>0..n−1 in a Fisher–Yates order drawn from a <see cref="Random"/> seeded with <paramref name="seed"/>.</summary>
    private int[] Shuffled(int seed)
    {
        var order = new int[Examples.Count];
        for (int i = 0; i < order.Length; i++) order[i] = i;
        var random = new Random(seed);
        for (int i = order.Length - 1; i > 0; i--)
        {
            int j = random.Next(i + 1);
            (order[i], order[j]) = (order[j], order[i]);
        }
        return order;
    }
}

/// <summary>
/// How <see cref="DatasetReader.Read"/> reads a file. Every member is optional: with none set,
/// a .tsv/.csv/.jsonl file with a <c>sentence</c> (or <c>text</c>) and a <c>label</c> column is read.
/// </summary>
public sealed record DataOptions
{
    /// <summary>A task preset (case-insensitive): sst2, cola, mrpc, rte, wnli, qnli, mnli, qqp, stsb,
    /// mr, cr, subj, mpqa, sst5. It fixes the format, columns and label names of the task's files
    /// as released; the column options below still override it.</summary>
    public string? Task { get; init; }

    /// <summary>The first sentence's column: a header name, or a 0-based index (JSON Lines: a key).</summary>
    public string? TextColumn { get; init; }

    /// <summary>The second sentence's column for pair tasks.</summary>
    public string? TextPairColumn { get; init; }

    /// <summary>The label (or regression target) column.</summary>
    public string? LabelColumn { get; init; }

    /// <summary>Whether the first row of a TSV/CSV file is a header. Null: decided by the task
    /// preset, or by whether the first row holds the text column's name (see docs/data.md).</summary>
    public bool? Header { get; init; }

    /// <summary>Treat the label column as a real-valued target (a regression task).</summary>
    public bool Regression { get; init; }

    /// <summary>Labels may be absent (reading for predict): a missing label column or an empty
    /// label gives Label = −1 instead of an error.</summary>
    public bool Unlabelled { get; init; }

    /// <summary>Skip bad lines, counting them and calling <see cref="Warn"/> once per line, instead
    /// of stopping at the first with an <see cref="EngineException"/>.</summary>
    public bool SkipBadLines { get; init; }

    /// <summary>The label map to use (a model's config, or the training run's map, so that eval and
    /// predict use the same ids). Null: the task's names, else built from the data.</summary>
    public LabelMap? Labels { get; init; }

    /// <summary>Receives one line "FILE:LINE: what is wrong (line skipped)" per skipped line.</summary>
    public Action<string>? Warn { get; init; }
}
