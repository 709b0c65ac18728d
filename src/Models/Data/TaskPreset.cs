namespace Engine.Models.Data;

/// <summary>How a data file is laid out.</summary>
public enum DataFormat
{
    /// <summary>Tab-separated values, no quoting (GLUE's files hold bare, unbalanced quotes).</summary>
    Tsv,
    /// <summary>Comma-separated values with RFC 4180 quoting.</summary>
    Csv,
    /// <summary>One JSON object per line; columns are keys.</summary>
    JsonLines,
    /// <summary>"LABEL TEXT" per line: the label, one space, the rest of the line (SentEval's SST-5).</summary>
    LabelThenText,
    /// <summary>One sentence per line in one file per class (SentEval's MR, CR, SUBJ, MPQA).</summary>
    FilePerClass,
}

/// <summary>
/// A benchmark task's files as released: their format, column names and class names.
/// Label names follow the Hugging Face <c>glue</c> dataset (so a saved config's id2label reads
/// the same as there); the files' integer labels map to them by position.
/// </summary>
/// <param name="Name">The lower-case task name (<c>--task</c>).</param>
/// <param name="Format">The native format; GLUE tasks also read .csv/.jsonl files by extension.</param>
/// <param name="TextColumn">The first sentence's column name.</param>
/// <param name="TextPairColumn">The second sentence's column name, for pair tasks.</param>
/// <param name="LabelColumn">The label (or score) column name.</param>
/// <param name="LabelNames">The classes in id order; null for regression.</param>
/// <param name="IsRegression">Whether the target is a real value (STS-B).</param>
/// <param name="Header">Whether the TSV files have a header; null: only when the first row holds
/// <see cref="TextColumn"/> (CoLA's train/dev files have none, its test file has one).</param>
/// <param name="HeaderlessColumns">0-based text and label columns of a headerless file.</param>
/// <param name="ClassFileSuffixes">For <see cref="DataFormat.FilePerClass"/>: the file-name
/// ending of each class, in id order (".neg", ".pos").</param>
/// <param name="PrimaryMetric">The metric the task is judged by, as GLUE reports it (MRPC and QQP:
/// F1 of the positive class; CoLA: Matthews correlation; STS-B: Pearson; the rest: accuracy).</param>
public sealed record TaskPreset(
    string Name,
    DataFormat Format,
    string TextColumn,
    string? TextPairColumn,
    string LabelColumn,
    IReadOnlyList<string>? LabelNames,
    bool IsRegression = false,
    bool? Header = true,
    (int Text, int Label)? HeaderlessColumns = null,
    IReadOnlyList<string>? ClassFileSuffixes = null,
    string PrimaryMetric = Metrics.AccuracyName)
{
    private static readonly string[] Binary = ["negative", "positive"];

    /// <summary>Every preset, by name.</summary>
    public static IReadOnlyList<TaskPreset> All { get; } =
    [
        new("sst2", DataFormat.Tsv, "sentence", null, "label", Binary),
        new("cola", DataFormat.Tsv, "sentence", null, "label", ["unacceptable", "acceptable"],
            Header: null, HeaderlessColumns: (Text: 3, Label: 1), PrimaryMetric: Metrics.MccName),
        new("mrpc", DataFormat.Tsv, "#1 String", "#2 String", "Quality", ["not_equivalent", "equivalent"], PrimaryMetric: Metrics.F1Name),
        new("rte", DataFormat.Tsv, "sentence1", "sentence2", "label", ["entailment", "not_entailment"]),
        new("wnli", DataFormat.Tsv, "sentence1", "sentence2", "label", ["not_entailment", "entailment"]),
        new("qnli", DataFormat.Tsv, "question", "sentence", "label", ["entailment", "not_entailment"]),
        new("mnli", DataFormat.Tsv, "sentence1", "sentence2", "gold_label", ["entailment", "neutral", "contradiction"]),
        new("qqp", DataFormat.Tsv, "question1", "question2", "is_duplicate", ["not_duplicate", "duplicate"], PrimaryMetric: Metrics.F1Name),
        new("stsb", DataFormat.Tsv, "sentence1", "sentence2", "score", null, IsRegression: true, PrimaryMetric: Metrics.PearsonName),
        new("sst5", DataFormat.LabelThenText, "", null, "", ["very negative", "negative", "neutral", "positive", "very positive"], Header: false),
        new("mr", DataFormat.FilePerClass, "", null, "", Binary, Header: false, ClassFileSuffixes: [".neg", ".pos"]),
        new("cr", DataFormat.FilePerClass, "", null, "", Binary, Header: false, ClassFileSuffixes: [".neg", ".pos"]),
        new("mpqa", DataFormat.FilePerClass, "", null, "", Binary, Header: false, ClassFileSuffixes: [".neg", ".pos"]),
        new("subj", DataFormat.FilePerClass, "", null, "", ["objective", "subjective"], Header: false,
            ClassFileSuffixes: [".objective", ".subjective"]),
    ];

    /// <summary>The preset called <paramref name="task"/> (case-insensitive; "sst-2", "sts-b" and
    /// "sst-5" also work), or null.</summary>
    public static TaskPreset? Find(string task)
    {
        var name = task.Trim().ToLowerInvariant().Replace("-", "", StringComparison.Ordinal);
        return All.FirstOrDefault(p => p.Name == name);
    }

    /// <summary>The preset called <paramref name="task"/>; an unknown name is an <see cref="EngineException"/>
    /// listing the known ones.</summary>
    public static TaskPreset Get(string task) => Find(task)
        ?? throw new EngineException($"unknown task '{task}' (known: {string.Join(", ", All.Select(p => p.Name))})");

    /// <summary>The preset's classes as a label map; null for regression.</summary>
    public LabelMap? Labels => LabelNames is null ? null : new LabelMap(LabelNames);
}
