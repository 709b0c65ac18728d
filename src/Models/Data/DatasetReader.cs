using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Engine.Models.Data;

/// <summary>
/// Reads text-classification data: TSV, CSV and JSON Lines files, GLUE's files as released, and
/// SentEval's. docs/data.md states the rules; the short form:
/// <list type="bullet">
/// <item>The format comes from the extension (.tsv, .csv, .jsonl/.json/.ndjson), else from the
/// task preset; SST-5 and the one-file-per-class SentEval tasks always use their own format.</item>
/// <item>Blank lines are not examples and are passed over silently.</item>
/// <item>A bad line (wrong column count, unknown label, unparsable number, invalid UTF-8, empty
/// text, malformed JSON) stops the read with an <see cref="EngineException"/> "FILE:LINE: what is
/// wrong"; with <see cref="DataOptions.SkipBadLines"/> it is counted and reported to
/// <see cref="DataOptions.Warn"/> instead. A problem with the file as a whole (no such file, a
/// missing column) always stops the read.</item>
/// </list>
/// </summary>
public static class DatasetReader
{
    /// <summary>Text columns looked for, in order, when neither the options nor a task name one.</summary>
    public static readonly IReadOnlyList<string> DefaultTextColumns = ["sentence", "text", "sentence1", "question1", "question"];

    /// <summary>Label columns looked for, in order, when neither the options nor a task name one.</summary>
    public static readonly IReadOnlyList<string> DefaultLabelColumns = ["label", "labels", "gold_label", "score"];

    /// <summary>Reads the data at <paramref name="path"/> (a file; for MR/CR/SUBJ/MPQA either file
    /// of the pair or their folder).</summary>
    public static Dataset Read(string path, DataOptions options)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(options);
        var preset = options.Task is { } task ? TaskPreset.Get(task) : null;
        var builder = new DatasetBuilder(path, options, preset);
        if (preset?.Format == DataFormat.FilePerClass)
        {
            foreach (var (file, label) in ClassFiles(path, preset))
                ReadLinesAsExamples(builder, file, SourceText.ReadLines(file), label);
            return builder.Finish();
        }
        if (!File.Exists(path))
            throw new EngineException(Directory.Exists(path) ? $"{path}: is a folder; expected a data file" : $"{path}: no such file");
        var lines = SourceText.ReadLines(path);
        switch (FormatOf(path, preset))
        {
            case DataFormat.Tsv: ReadTable(builder, TsvRecords(lines), "tab-separated"); break;
            case DataFormat.Csv: ReadTable(builder, CsvRecords(lines), "comma-separated"); break;
            case DataFormat.JsonLines: ReadJsonLines(builder, lines); break;
            default: ReadLabelThenText(builder, lines); break;
        }
        return builder.Finish();
    }

    /// <summary>The format a file is read in (see the class remarks).</summary>
    public static DataFormat FormatOf(string path, TaskPreset? preset)
    {
        if (preset?.Format is DataFormat.LabelThenText or DataFormat.FilePerClass) return preset.Format;
        return FormatFromExtension(path) ?? preset?.Format ?? throw new EngineException(
            $"{path}: cannot tell the format from the file name; use a .tsv, .csv or .jsonl extension, or name a --task");
    }

    /// <summary>The format the file name's extension names (.tsv, .csv, .jsonl/.json/.ndjson), or null.</summary>
    public static DataFormat? FormatFromExtension(string path) => Path.GetExtension(path).ToLowerInvariant() switch
    {
        ".tsv" => DataFormat.Tsv,
        ".csv" => DataFormat.Csv,
        ".jsonl" or ".json" or ".ndjson" => DataFormat.JsonLines,
        _ => null,
    };

    // ---- Tables (TSV, CSV) ------------------------------------------------------------------

    /// <summary>One row of a table: the fields, or the reason it could not be split. A CSV row
    /// spanning several lines (a newline inside quotes) is numbered by its first line.</summary>
    private readonly record struct Row(int Line, string[]? Fields, int ProblemLine = 0, string? Problem = null);

    /// <summary>TSV rows: fields split at every tab; quotes are ordinary characters, as in GLUE's
    /// files (read by the GLUE scripts with <c>quoting=csv.QUOTE_NONE</c>).</summary>
    private static IEnumerable<Row> TsvRecords(List<SourceLine> lines)
    {
        foreach (var line in lines)
        {
            if (line.Text is null) yield return new Row(line.Number, null, line.Number, "invalid UTF-8");
            else if (!line.IsBlank) yield return new Row(line.Number, line.Text.Split('\t'));
        }
    }

    /// <summary>
    /// CSV rows by RFC 4180: fields separated by commas; a field that starts with a double quote
    /// runs to the matching closing quote and may hold commas, doubled quotes ("" for ") and line
    /// breaks (kept as \n). Lenient where Python's csv module is: a quote inside an unquoted field,
    /// or text after a closing quote, is kept as written.
    /// </summary>
    private static IEnumerable<Row> CsvRecords(List<SourceLine> lines)
    {
        var fields = new List<string>();
        var field = new StringBuilder();
        bool inQuotes = false;
        int start = 0, problemLine = 0;
        foreach (var line in lines)
        {
            if (!inQuotes)
            {
                if (line.IsBlank) continue;
                start = line.Number;
                problemLine = 0;
            }
            else field.Append('\n');
            if (line.Text is null)
            {
                // An undecodable line ends the row here: report it, then resynchronise.
                if (problemLine == 0) problemLine = line.Number;
                yield return new Row(start, null, problemLine, "invalid UTF-8");
                fields.Clear(); field.Clear(); inQuotes = false;
                continue;
            }
            var text = line.Text.AsSpan();
            for (int i = 0; i < text.Length; i++)
            {
                char c = text[i];
                if (inQuotes)
                {
                    if (c != '"') field.Append(c);
                    else if (i + 1 < text.Length && text[i + 1] == '"') { field.Append('"'); i++; }
                    else inQuotes = false;
                }
                else if (c == ',') { fields.Add(field.ToString()); field.Clear(); }
                else if (c == '"' && field.Length == 0 && (i == 0 || text[i - 1] == ',')) inQuotes = true;
                else field.Append(c);
            }
            if (inQuotes) continue;
            fields.Add(field.ToString());
            field.Clear();
            yield return new Row(start, fields.ToArray());
            fields.Clear();
        }
        if (inQuotes) yield return new Row(start, null, start, "a quoted field opened on this line is never closed");
    }

    private static void ReadTable(DatasetBuilder builder, IEnumerable<Row> rows, string separatedBy)
    {
        var options = builder.Options;
        var preset = builder.Preset;
        using var row = rows.GetEnumerator();
        // The first row that splits decides the header and the column count.
        Row first;
        do
        {
            if (!row.MoveNext()) return;
            first = row.Current;
            if (first.Fields is null) builder.Bad(builder.Source, first.ProblemLine, first.Problem!);
        } while (first.Fields is null);

        string? textSpec = options.TextColumn ?? NonEmpty(preset?.TextColumn);
        string? pairSpec = options.TextPairColumn ?? preset?.TextPairColumn;
        string? labelSpec = options.LabelColumn ?? NonEmpty(preset?.LabelColumn);
        bool header = options.Header ?? preset?.Header ?? LooksLikeHeader(first.Fields, options.TextColumn);
        if (options.Header is null && preset is { Header: null })
            header = first.Fields.Contains(preset.TextColumn, StringComparer.Ordinal);

        int columnCount = first.Fields.Length;
        int text, pair = -1, label = -1;
        if (header)
        {
            var names = first.Fields.Select(f => f.Trim()).ToArray();
            string Describe() => string.Join(", ", names.Select(n => $"'{n.ReplaceLineEndings("\\n")}'"));
            textSpec ??= DefaultTextColumns.FirstOrDefault(n => names.Contains(n, StringComparer.OrdinalIgnoreCase))
                ?? throw new EngineException($"{builder.Source}:{first.Line}: no text column among {Describe()}; name one with --text-column");
            text = ColumnInHeader(names, textSpec);
            if (text < 0) throw new EngineException($"{builder.Source}:{first.Line}: no text column '{textSpec}' among {Describe()}");
            if (pairSpec is null && options.TextColumn is null && preset is null)
                pairSpec = DefaultPairColumn(names[text], names);
            if (pairSpec is not null)
            {
                pair = ColumnInHeader(names, pairSpec);
                if (pair < 0) throw new EngineException($"{builder.Source}:{first.Line}: no text-pair column '{pairSpec}' among {Describe()}");
            }
            labelSpec ??= DefaultLabelColumns.FirstOrDefault(n => names.Contains(n, StringComparer.OrdinalIgnoreCase));
            if (labelSpec is not null) label = ColumnInHeader(names, labelSpec);
            if (label < 0 && !options.Unlabelled)
                throw new EngineException(labelSpec is null
                    ? $"{builder.Source}:{first.Line}: no label column among {Describe()}; name one with --label-column"
                    : $"{builder.Source}:{first.Line}: no label column '{labelSpec}' among {Describe()}");
            builder.SetColumnNames(names[text], pair >= 0 ? names[pair] : null, label >= 0 ? names[label] : null);
        }
        else
        {
            var headerless = preset?.HeaderlessColumns;
            text = ColumnIndex(builder, options.TextColumn, headerless?.Text, "text", columnCount, required: true);
            pair = ColumnIndex(builder, options.TextPairColumn, null, "text-pair", columnCount, required: false);
            label = ColumnIndex(builder, options.LabelColumn, headerless?.Label, "label", columnCount, required: !options.Unlabelled);
            builder.SetColumnNames($"column {text}", pair >= 0 ? $"column {pair}" : null, label >= 0 ? $"column {label}" : null);
        }

        var current = first;
        bool isData = !header;
        while (true)
        {
            if (isData)
            {
                if (current.Fields is null) builder.Bad(builder.Source, current.ProblemLine, current.Problem!);
                else if (current.Fields.Length != columnCount)
                    builder.Bad(builder.Source, current.Line,
                        $"expected {columnCount} {separatedBy} columns, found {current.Fields.Length}");
                else
                    builder.Add(builder.Source, current.Line, current.Fields[text],
                        pair >= 0 ? current.Fields[pair] : null,
                        label >= 0 ? current.Fields[label] : null);
            }
            if (!row.MoveNext()) break;
            current = row.Current;
            isData = true;
        }
    }

    /// <summary>With no task and no explicit header setting: a text column given by name means a
    /// header; given by index, the first row is a header only when it holds one of the default
    /// column names (sentence, text, label, …); with no text column given, when it holds a default
    /// text column name.</summary>
    private static bool LooksLikeHeader(string[] firstRow, string? textColumn)
    {
        static bool Holds(string[] row, IEnumerable<string> names) =>
            row.Any(f => names.Contains(f.Trim(), StringComparer.OrdinalIgnoreCase));
        if (textColumn is null) return Holds(firstRow, DefaultTextColumns);
        return !IsIndex(textColumn) || Holds(firstRow, DefaultTextColumns.Concat(DefaultLabelColumns));
    }

    private static string? DefaultPairColumn(string textColumn, string[] names)
    {
        string? candidate = textColumn.ToLowerInvariant() switch
        {
            "sentence1" => "sentence2",
            "question1" => "question2",
            "text" => "text_pair",
            _ => null,
        };
        return candidate is not null && names.Contains(candidate, StringComparer.OrdinalIgnoreCase) ? candidate : null;
    }

    /// <summary>A column named in a header: the exact name, else the name ignoring case, else a
    /// 0-based index; −1 when none matches.</summary>
    private static int ColumnInHeader(string[] names, string spec)
    {
        int exact = Array.IndexOf(names, spec.Trim());
        if (exact >= 0) return exact;
        int folded = Array.FindIndex(names, n => n.Equals(spec.Trim(), StringComparison.OrdinalIgnoreCase));
        if (folded >= 0) return folded;
        return IsIndex(spec) && int.Parse(spec, CultureInfo.InvariantCulture) < names.Length
            ? int.Parse(spec, CultureInfo.InvariantCulture) : -1;
    }

    private static int ColumnIndex(DatasetBuilder builder, string? spec, int? presetIndex, string role, int columnCount, bool required)
    {
        int index;
        if (spec is not null)
        {
            if (!IsIndex(spec))
                throw new EngineException($"{builder.Source}: the file has no header, so --{role}-column must be a 0-based index, not '{spec}'");
            index = int.Parse(spec, CultureInfo.InvariantCulture);
        }
        else if (presetIndex is { } p) index = p;
        else if (required)
            throw new EngineException($"{builder.Source}: the file has no header; give --{role}-column as a 0-based index");
        else return -1;
        if (index >= columnCount)
            throw new EngineException($"{builder.Source}: {role} column {index} does not exist; the first line has {columnCount} columns (0-based)");
        return index;
    }

    private static bool IsIndex(string spec) =>
        spec.Length > 0 && int.TryParse(spec, NumberStyles.None, CultureInfo.InvariantCulture, out _);

    private static string? NonEmpty(string? s) => string.IsNullOrEmpty(s) ? null : s;

    // ---- JSON Lines ---------------------------------------------------------------------------

    /// <summary>JSON Lines: each non-blank line is one object; the columns are its keys. A value
    /// may be a string, a number (its JSON text is the label: 1 and 1.0 are different names) or a
    /// boolean; null or a missing key is an absent value.</summary>
    private static void ReadJsonLines(DatasetBuilder builder, List<SourceLine> lines)
    {
        var options = builder.Options;
        var preset = builder.Preset;
        string? textKey = options.TextColumn ?? NonEmpty(preset?.TextColumn);
        string? pairKey = options.TextPairColumn ?? preset?.TextPairColumn;
        string? labelKey = options.LabelColumn ?? NonEmpty(preset?.LabelColumn);
        bool resolved = false;
        foreach (var line in lines)
        {
            if (line.Text is null) { builder.Bad(builder.Source, line.Number, "invalid UTF-8"); continue; }
            if (line.IsBlank) continue;
            if (!Engine.IO.JsonText.TryParse(line.Text, out var root, out var invalid))
            {
                builder.Bad(builder.Source, line.Number, invalid!);
                continue;
            }
            {
                if (root.ValueKind != JsonValueKind.Object)
                {
                    builder.Bad(builder.Source, line.Number, $"expected a JSON object, found {root.ValueKind.ToString().ToLowerInvariant()}");
                    continue;
                }
                if (!resolved)
                {
                    // Defaults come from the first object's keys, then hold for the whole file.
                    var keys = root.EnumerateObject().Select(p => p.Name).ToArray();
                    textKey ??= DefaultTextColumns.FirstOrDefault(k => keys.Contains(k)) ?? DefaultTextColumns[0];
                    if (pairKey is null && options.TextColumn is null && preset is null)
                        pairKey = DefaultPairColumn(textKey, keys);
                    labelKey ??= DefaultLabelColumns.FirstOrDefault(k => keys.Contains(k)) ?? DefaultLabelColumns[0];
                    builder.SetColumnNames(textKey, pairKey, labelKey);
                    resolved = true;
                }
                if (!TryGetValue(root, textKey!, out var text, out var problem)
                    || pairKey is not null && !TryGetValue(root, pairKey, out var _, out problem)
                    || !TryGetValue(root, labelKey!, out var label, out problem))
                {
                    builder.Bad(builder.Source, line.Number, problem!);
                    continue;
                }
                if (text is null) { builder.Bad(builder.Source, line.Number, $"no key '{textKey}'"); continue; }
                string? pairText = null;
                if (pairKey is not null)
                {
                    TryGetValue(root, pairKey, out pairText, out _);
                    if (pairText is null) { builder.Bad(builder.Source, line.Number, $"no key '{pairKey}'"); continue; }
                }
                builder.Add(builder.Source, line.Number, text, pairText, label);
            }
        }
    }

    private static bool TryGetValue(JsonElement root, string key, out string? value, out string? problem)
    {
        value = null;
        problem = null;
        if (!root.TryGetProperty(key, out var element)) return true;
        switch (element.ValueKind)
        {
            case JsonValueKind.String: value = element.GetString(); return true;
            case JsonValueKind.Number: value = element.GetRawText(); return true;
            case JsonValueKind.True: value = "true"; return true;
            case JsonValueKind.False: value = "false"; return true;
            case JsonValueKind.Null: return true;
            default:
                problem = $"key '{key}' holds an {element.ValueKind.ToString().ToLowerInvariant()}; expected a string or a number";
                return false;
        }
    }

    // ---- SentEval -----------------------------------------------------------------------------

    /// <summary>SST-5 as SentEval ships it: "LABEL TEXT", the label an integer 0–4.</summary>
    private static void ReadLabelThenText(DatasetBuilder builder, List<SourceLine> lines)
    {
        builder.SetColumnNames("text", null, "label");
        foreach (var line in lines)
        {
            if (line.Text is null) { builder.Bad(builder.Source, line.Number, "invalid UTF-8"); continue; }
            if (line.IsBlank) continue;
            int space = line.Text.IndexOf(' ');
            if (space <= 0)
            {
                builder.Bad(builder.Source, line.Number, "expected 'LABEL TEXT' (a label, one space, the sentence)");
                continue;
            }
            builder.Add(builder.Source, line.Number, line.Text[(space + 1)..], null, line.Text[..space]);
        }
    }

    /// <summary>Each non-blank line of a one-class file is one example of that class.</summary>
    private static void ReadLinesAsExamples(DatasetBuilder builder, string file, List<SourceLine> lines, string label)
    {
        builder.SetColumnNames("text", null, null);
        foreach (var line in lines)
        {
            if (line.Text is null) { builder.Bad(file, line.Number, "invalid UTF-8"); continue; }
            if (line.IsBlank) continue;
            builder.Add(file, line.Number, line.Text, null, label);
        }
    }

    /// <summary>
    /// The files of a one-file-per-class task, in class order, with their class names. The path
    /// is the folder, or either file (the others are found beside it by replacing the suffix).
    /// </summary>
    private static List<(string File, string Label)> ClassFiles(string path, TaskPreset preset)
    {
        var suffixes = preset.ClassFileSuffixes!;
        string folder, stem;
        if (Directory.Exists(path))
        {
            folder = path;
            var candidates = Directory.GetFiles(path, "*" + suffixes[0]);
            if (candidates.Length != 1)
                throw new EngineException(candidates.Length == 0
                    ? $"{path}: no *{suffixes[0]} file in this folder (task {preset.Name} needs {string.Join(" and ", suffixes.Select(s => "*" + s))})"
                    : $"{path}: several *{suffixes[0]} files in this folder; give one of them as the path");
            stem = Path.GetFileName(candidates[0])[..^suffixes[0].Length];
        }
        else if (File.Exists(path))
        {
            folder = Path.GetDirectoryName(path) is { Length: > 0 } d ? d : ".";
            var name = Path.GetFileName(path);
            var suffix = suffixes.FirstOrDefault(s => name.EndsWith(s, StringComparison.Ordinal))
                ?? throw new EngineException($"{path}: task {preset.Name} reads files named *{string.Join(" and *", suffixes)}");
            stem = name[..^suffix.Length];
        }
        else throw new EngineException($"{path}: no such file or folder");

        var files = new List<(string, string)>();
        for (int k = 0; k < suffixes.Count; k++)
        {
            var file = Path.Combine(folder, stem + suffixes[k]);
            if (!File.Exists(file)) throw new EngineException($"{file}: no such file (task {preset.Name} reads one file per class)");
            files.Add((file, preset.LabelNames![k]));
        }
        return files;
    }
}
