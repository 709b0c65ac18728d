using System.Text.Json;
using ScottPlot;

namespace Engine.Cli;

/// <summary>
/// PNG plots of a training run, drawn with ScottPlot 5 (SkiaSharp underneath, with its own
/// native library, so they render on a headless Linux machine). Every plot is written to the
/// path given, overwriting it, at <see cref="Width"/>×<see cref="Height"/> pixels.
/// </summary>
public static class Plots
{
    /// <summary>Image size in pixels.</summary>
    public const int Width = 1000, Height = 560;

    /// <summary>
    /// Training loss (left axis, blue line) and the evaluation metric (right axis, orange line
    /// with markers) over optimizer steps. Either series may be empty.
    /// </summary>
    public static void LossCurve(IReadOnlyList<(int Step, double Loss)> train, IReadOnlyList<(int Step, double Value)> eval,
        string metricName, string pngPath, IReadOnlyList<int>? stageStarts = null)
    {
        var plot = new Plot();
        plot.Title(eval.Count > 0 ? $"Training loss and eval {metricName}" : "Training loss");
        plot.XLabel("step");
        plot.YLabel("training loss");
        if (train.Count > 0)
        {
            var loss = plot.Add.Scatter(train.Select(p => (double)p.Step).ToArray(), train.Select(p => p.Loss).ToArray());
            loss.LegendText = "training loss";
            loss.MarkerSize = train.Count > 60 ? 0 : 4;
            loss.LineWidth = 1.5f;
            loss.Color = Colors.SteelBlue;
        }
        if (eval.Count > 0)
        {
            var metric = plot.Add.Scatter(eval.Select(p => (double)p.Step).ToArray(), eval.Select(p => p.Value).ToArray());
            metric.LegendText = $"eval {metricName}";
            metric.MarkerSize = 7;
            metric.LineWidth = 2;
            metric.Color = Colors.DarkOrange;
            metric.Axes.YAxis = plot.Axes.Right;
            plot.Axes.Right.Label.Text = $"eval {metricName}";
        }
        foreach (var step in stageStarts ?? [])
        {
            // A multi-stage method's boundary ("stage" lines of metrics.jsonl): after this step the next stage trains.
            var line = plot.Add.VerticalLine(step + 0.5);
            line.Color = Colors.Gray;
            line.LinePattern = LinePattern.Dashed;
            line.LegendText = "next stage";
        }
        if (train.Count > 0 || eval.Count > 0) plot.ShowLegend(Alignment.UpperCenter);
        Save(plot, pngPath);
    }

    /// <summary>
    /// A bar chart with one labelled bar per value (per-layer depth weights, per-layer variability).
    /// </summary>
    public static void Bars(string title, IReadOnlyList<string> labels, IReadOnlyList<double> values, string pngPath)
    {
        if (labels.Count != values.Count)
            throw new ArgumentException($"{labels.Count} labels for {values.Count} values");
        var plot = new Plot();
        plot.Title(title);
        var bars = plot.Add.Bars(values.ToArray());
        bars.Color = Colors.SteelBlue;
        var positions = Enumerable.Range(0, values.Count).Select(i => (double)i).ToArray();
        plot.Axes.Bottom.SetTicks(positions, labels.ToArray());
        // Many or long labels would overlap: turn them 45° and make room below the axis for the
        // longest (about 7 pixels per character at the default tick font).
        int longest = labels.Count == 0 ? 0 : labels.Max(l => l.Length);
        if (labels.Sum(l => l.Length + 2) * 7 > Width - 120)
        {
            plot.Axes.Bottom.TickLabelStyle.Rotation = 45;
            plot.Axes.Bottom.TickLabelStyle.Alignment = Alignment.MiddleLeft;
            plot.Axes.Bottom.MinimumSize = 7 * longest * 0.75f + 20;
        }
        plot.Axes.Margins(bottom: 0);
        Save(plot, pngPath);
    }

    /// <summary>
    /// One value per labelled position as a line with markers (per-layer variability): the y axis
    /// is logarithmic when every value is positive (ν spans orders of magnitude across layers),
    /// else linear; values that are not finite are left out.
    /// </summary>
    public static void Curve(string title, IReadOnlyList<string> labels, IReadOnlyList<double> values, string yLabel, string pngPath)
    {
        if (labels.Count != values.Count)
            throw new ArgumentException($"{labels.Count} labels for {values.Count} values");
        var plot = new Plot();
        plot.Title(title);
        var shown = Enumerable.Range(0, values.Count).Where(i => double.IsFinite(values[i])).ToArray();
        bool log = shown.Length > 0 && shown.All(i => values[i] > 0);
        var line = plot.Add.Scatter(shown.Select(i => (double)i).ToArray(), shown.Select(i => log ? Math.Log10(values[i]) : values[i]).ToArray());
        line.MarkerSize = 7;
        line.LineWidth = 2;
        line.Color = Colors.SteelBlue;
        plot.Axes.Bottom.SetTicks(Enumerable.Range(0, labels.Count).Select(i => (double)i).ToArray(), labels.ToArray());
        plot.XLabel("layer");
        plot.YLabel(log ? yLabel : yLabel.Replace(" (log scale)", ""));
        if (log)
            plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic
            {
                MinorTickGenerator = new ScottPlot.TickGenerators.LogMinorTickGenerator(),
                IntegerTicksOnly = true,
                LabelFormatter = y => Math.Pow(10, y).ToString("G3", System.Globalization.CultureInfo.InvariantCulture),
            };
        Save(plot, pngPath);
    }

    /// <summary>
    /// Reads a run's metrics.jsonl, one JSON object per line: <c>{"step":N,"loss":x,"lr":y}</c> for a
    /// training step, <c>{"step":N,"eval":{"accuracy":…,…}}</c> for an evaluation, and writes
    /// <c>loss.png</c> into <paramref name="outDir"/>. The eval metric plotted is
    /// <paramref name="metricName"/>, or else the first metric of the first evaluation other than
    /// a loss. Lines that are not such objects (a line cut short when a run was killed) are
    /// passed over. Returns the paths written (none when the log holds no points).
    /// </summary>
    public static IReadOnlyList<string> FromMetricsLog(string metricsJsonl, string outDir, string? metricName = null)
    {
        var train = new List<(int Step, double Loss)>();
        var evals = new List<(int Step, JsonElement Metrics)>();
        var stageStarts = new List<int>();
        var documents = new List<JsonDocument>();
        try
        {
            foreach (var line in File.ReadLines(metricsJsonl))
            {
                if (string.IsNullOrWhiteSpace(line)) continue;
                JsonDocument document;
                try { document = JsonDocument.Parse(line); }
                catch (JsonException) { continue; }
                documents.Add(document);
                var root = document.RootElement;
                if (root.ValueKind != JsonValueKind.Object || !TryNumber(root, "step", out double step)) continue;
                if (root.TryGetProperty("stage", out _)) stageStarts.Add((int)step);
                else if (root.TryGetProperty("eval", out var metrics) && metrics.ValueKind == JsonValueKind.Object)
                    evals.Add(((int)step, metrics));
                else if (TryNumber(root, "loss", out double loss))
                    train.Add(((int)step, loss));
            }
            metricName ??= evals.SelectMany(e => e.Metrics.EnumerateObject())
                .Where(p => p.Value.ValueKind == JsonValueKind.Number && !p.Name.Contains("loss", StringComparison.OrdinalIgnoreCase))
                .Select(p => p.Name).FirstOrDefault();
            var eval = new List<(int Step, double Value)>();
            if (metricName is not null)
                foreach (var (step, metrics) in evals)
                    if (TryNumber(metrics, metricName, out double value)) eval.Add((step, value));
            if (train.Count == 0 && eval.Count == 0) return [];
            Directory.CreateDirectory(outDir);
            var path = Path.Combine(outDir, "loss.png");
            LossCurve(train, eval, metricName ?? "metric", path, stageStarts);
            return [path];
        }
        finally
        {
            foreach (var document in documents) document.Dispose();
        }
    }

    private static bool TryNumber(JsonElement element, string name, out double value)
    {
        value = 0;
        return element.TryGetProperty(name, out var property)
            && property.ValueKind == JsonValueKind.Number
            && property.TryGetDouble(out value)
            && double.IsFinite(value);
    }

    private static void Save(Plot plot, string pngPath)
    {
        if (Path.GetDirectoryName(Path.GetFullPath(pngPath)) is { } folder) Directory.CreateDirectory(folder);
        plot.SavePng(pngPath, Width, Height);
    }
}
