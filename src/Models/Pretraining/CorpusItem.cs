using System.Text.RegularExpressions;
using Engine.Models.Data;

namespace Engine.Models.Pretraining;

/// <summary>
/// One <c>--corpus</c> item of <c>engine pretrain</c> / <c>engine eval-lm</c> and the documents it
/// holds. An item is one of:
/// <list type="bullet">
/// <item><c>TASK:PATH</c> (<c>sst2:glue/SST-2/train.tsv</c>, <c>mrpc:…</c>, <c>cola:…</c>,
/// <c>mr:senteval/MR</c>): a benchmark file read by <see cref="DatasetReader"/> with the task's
/// preset (format, columns, header) as released;</item>
/// <item>a path ending in .tsv, .csv, .jsonl, .json or .ndjson: a data file read by
/// <see cref="DatasetReader"/> with the default columns (docs/data.md);</item>
/// <item>any other path: plain text, cut into documents at blank lines
/// (<see cref="PackedCorpus.ReadDocuments"/>).</item>
/// </list>
/// Each example of a data file is one document: its text, and its pair (if any) as a second line
/// of the same document, which is how a plain-text document's lines are joined. Labels are read
/// only as far as the reader checks them and never enter the corpus; a file without a label
/// column is fine. A bad data line stops the read with the reader's one line "FILE:LINE: what".
/// </summary>
/// <param name="Path">The file (or, for MR/CR/SUBJ/MPQA, the folder) to read.</param>
/// <param name="Task">The task preset of a <c>TASK:PATH</c> item, else null.</param>
/// <param name="IsDataset">Whether the item is read as a data file (examples) rather than plain text.</param>
public sealed record CorpusItem(string Path, string? Task, bool IsDataset)
{
    /// <summary>The words that mark a file name as a validation or test split
    /// (see <see cref="EvaluationTextWord"/>).</summary>
    public static readonly IReadOnlyList<string> EvaluationWords = ["dev", "test", "valid", "validation"];

    /// <summary>What <paramref name="item"/> names (see the class summary). A <c>NAME:PATH</c> item
    /// whose NAME is not a task is an <see cref="EngineException"/> naming the known tasks, unless
    /// the whole item is an existing path.</summary>
    public static CorpusItem Parse(string item)
    {
        ArgumentNullException.ThrowIfNull(item);
        int colon = item.IndexOf(':');
        if (colon > 0 && item[..colon].All(c => char.IsAsciiLetterOrDigit(c) || c == '-') && !File.Exists(item) && !Directory.Exists(item))
        {
            var preset = TaskPreset.Find(item[..colon]) ?? throw new EngineException(
                $"--corpus {item}: unknown task '{item[..colon]}' (known: {string.Join(", ", TaskPreset.All.Select(p => p.Name))})");
            return new CorpusItem(item[(colon + 1)..], preset.Name, IsDataset: true);
        }
        return new CorpusItem(item, null, DatasetReader.FormatFromExtension(item) is not null);
    }

    /// <summary>The documents of <paramref name="item"/>, in file order.</summary>
    public static IEnumerable<string> Documents(string item)
    {
        var parsed = Parse(item);
        if (!parsed.IsDataset && Directory.Exists(parsed.Path))
            throw new EngineException($"--corpus {item}: is a folder; give its files, or TASK:FOLDER for a SentEval folder (mr, cr, subj, mpqa)");
        if (!parsed.IsDataset) return PackedCorpus.ReadDocuments(parsed.Path);
        var data = DatasetReader.Read(parsed.Path, new DataOptions { Task = parsed.Task, Unlabelled = true });
        return data.Examples.Select(e => e.TextPair is null ? e.Text : e.Text + "\n" + e.TextPair);
    }

    /// <summary>
    /// The word in the item's file (or folder) name that says it holds evaluation text, or null:
    /// the name, lower-cased and split at every character that is not a letter or digit, holds
    /// "dev", "test", "valid" or "validation". So dev.tsv, test.tsv, valid.txt, validation.jsonl,
    /// sentiment-dev, sentiment-test, dev_matched.tsv, wiki.test.raw and GLUE's
    /// msr_paraphrase_test.txt are evaluation text; train.tsv, input.txt, rt-polarity.neg are not.
    /// </summary>
    public static string? EvaluationTextWord(string item)
    {
        var path = Parse(item).Path.TrimEnd('/', System.IO.Path.DirectorySeparatorChar);
        var words = Regex.Split(System.IO.Path.GetFileName(path).ToLowerInvariant(), "[^a-z0-9]+");
        return words.FirstOrDefault(w => EvaluationWords.Contains(w));
    }

    /// <summary>Refuses (an <see cref="EngineException"/>, one line) the first item whose name says
    /// it is evaluation text, so a pretraining corpus never holds the text a model is later judged
    /// on; <c>--allow-eval-text</c> skips this check.</summary>
    public static void RefuseEvaluationText(IEnumerable<string> items)
    {
        foreach (var item in items)
            if (EvaluationTextWord(item) is { } word)
                throw new EngineException(
                    $"--corpus {item}: the name says it is evaluation text ('{word}'); pretraining on it would leak it into the scores " +
                    "of any model fine-tuned from this one. Use training splits, or give --allow-eval-text to use it anyway");
    }
}
