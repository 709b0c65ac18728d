using System.CommandLine;
using System.Text.Json.Nodes;
using Engine.IO;
using Engine.Models;
using Engine.Models.Analysis;
using Engine.Models.Data;
using Engine.Models.Peft;
using Engine.Models.Tokenization;

namespace Engine.Cli.Commands;

/// <summary>
/// `engine analyze depth --model DIR [--out PNG]`: the learned depth-wise pooling weights of a saved
/// model (depthwise_pooling.weights in its model.safetensors), printed per layer and plotted as a
/// bar chart.
/// `engine analyze variability --model DIR --data FILE [--max-examples N] [--out FILE.json] [--plot FILE.png]`:
/// the hidden-state variability ν of every layer on labelled data (<see cref="Variability"/>),
/// printed as a table, written as {"nu": [ν_0, …, ν_L]} and plotted.
/// </summary>
public static class AnalyzeCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "a folder saved by engine train --pooling depthwise (e.g. OUT/checkpoint-best)", Required = true };
        var output = new Option<string?>("--out") { Description = "the PNG to write (default: MODEL/depth_weights.png)" };
        var depth = new Command("depth", "Print and plot the learned per-layer weights of depth-wise pooling") { model, output };
        depth.SetAction(Cli.Action(p =>
        {
            var dir = p.GetValue(model)!;
            var folder = HfModelFolder.Open(dir);
            using var weights = folder.OpenWeights();
            if (!weights.Names.Contains(SequencePooling.ParameterName))
                throw new EngineException($"{folder.WeightsPath}: no {SequencePooling.ParameterName}; was the model trained with --pooling depthwise?");
            var a = weights.ReadAs(SequencePooling.ParameterName, DType.F64).ToDoubleArray();
            var spec = folder.Config.TryGetProperty(PeftState.ConfigKey, out var peft) && JsonNode.Parse(peft.GetRawText())?["pooling"]?.GetValue<string>() is { } text
                ? PoolingSpec.Parse(text, "cls") : new PoolingSpec("cls", true, false, false);
            bool withEmbeddings = spec.WithEmbeddings;
            var labels = Enumerable.Range(0, a.Length).Select(i => withEmbeddings ? (i == 0 ? "emb" : i.ToString()) : (i + 1).ToString()).ToList();
            Console.WriteLine($"{folder.Path}: pooling {spec} ({(spec.Raw ? "raw weights" : "softmax of the learned logits")})");
            var png = p.GetValue(output) ?? Path.Combine(dir, TrainCommands.DepthWeightsPlot);
            TrainCommands.ReportDepthWeights(labels, SequencePooling.MixingWeights(a, spec.Raw), null);
            Plots.Bars("Depth-wise pooling weights per layer", labels, SequencePooling.MixingWeights(a, spec.Raw), png);
            Console.WriteLine($"wrote {png}");
            return 0;
        }));
        return new Command("analyze", "Analyses of a model") { depth, VariabilityCommand() };
    }

    private static Command VariabilityCommand()
    {
        var data = new TrainCommands.DataArgs();
        var model = new Option<string>("--model") { Description = "a Hugging Face model folder (BERT, RoBERTa or the Llama family)", Required = true };
        var file = new Option<string>("--data") { Description = "labelled classification data (usually the training set)", Required = true };
        var max = new Option<int?>("--max-examples") { Description = "use a random sample of at most N examples (default: all)" };
        var seed = new Option<int>("--seed") { Description = "seed of the --max-examples sample", DefaultValueFactory = _ => 0 };
        var output = new Option<string?>("--out") { Description = "write {\"nu\": [ν_0, …, ν_L]} to this JSON file (0: embedding output, i: block i)" };
        var plot = new Option<string?>("--plot") { Description = "plot the ν curve to this PNG" };
        var device = Cli.DeviceOption();
        var cmd = new Command("variability", "Per-layer hidden-state variability ν (low: the layer separates the classes), forward only")
            { model, file, max, seed, output, plot, device };
        data.AddTo(cmd);
        cmd.SetAction(Cli.Action(p =>
        {
            var options = new VariabilityOptions
            {
                MaxLength = p.GetValue(data.MaxLen), BatchSize = p.GetValue(data.Batch), MaxExamples = p.GetValue(max), Seed = p.GetValue(seed),
            };
            options.Validate();
            var on = Cli.OpenDevice(p.GetValue(device));
            var folder = HfModelFolder.Open(p.GetValue(model)!);
            bool regression = p.GetValue(data.Task) is { } task && TaskPreset.Find(task)?.IsRegression == true;
            var set = data.Read(p, p.GetValue(file)!, null, regression);
            Variability.CheckData(set);
            var tokenizer = TextTokenizer.FromFolder(folder);
            var net = SequenceClassifier.FromFolder(folder); // the head (random when the folder has none) is not used
            net.To(on);
            bool live = !Console.IsOutputRedirected;
            var result = Variability.Analyze(net, tokenizer, set, options, live ? (done, all) => Console.Write($"\r  forward: {done:N0}/{all:N0} examples   ") : null);
            if (live) Console.WriteLine();
            Console.WriteLine($"{folder.Path}: variability ν per layer on {result.Examples:N0} examples of {set.Source}, {result.Classes} classes, " +
                              $"hidden size {result.HiddenSize}" + (result.Skipped > 0 ? $" ({result.Skipped} without tokens to pool skipped)" : ""));
            var labels = LayerLabels(result.Nu.Length);
            double top = result.Nu.Where(double.IsFinite).DefaultIfEmpty(1).Max();
            for (int l = 0; l < result.Nu.Length; l++)
            {
                double v = result.Nu[l];
                var bar = double.IsFinite(v) ? new string('#', (int)Math.Round(30 * v / Math.Max(top, 1e-300))) : "undefined (all class means equal)";
                Console.WriteLine($"  layer {labels[l],-4} {v,14:G6}  {bar}");
            }
            if (result.Nu.Skip(1).Any(double.IsFinite))
            {
                int best = Enumerable.Range(1, result.Nu.Length - 1).Where(l => double.IsFinite(result.Nu[l])).MinBy(l => result.Nu[l]);
                Console.WriteLine($"lowest ν at block {best}; automatic head layer (first block with ν ≤ {1 + Variability.DefaultTolerance:0.##}·min): {Variability.AutoHeadLayer(result.Nu)}");
            }
            if (p.GetValue(output) is { } json)
            {
                var nu = new JsonArray(result.Nu.Select(v => double.IsFinite(v) ? JsonValue.Create(v) : null).ToArray<JsonNode?>());
                var tmp = json + ".tmp";
                File.WriteAllText(tmp, new JsonObject { ["nu"] = nu }.ToJsonString());
                File.Move(tmp, json, overwrite: true);
                Console.WriteLine($"wrote {json}");
            }
            if (p.GetValue(plot) is { } png)
            {
                Plots.Curve($"Hidden-state variability per layer ({result.Examples:N0} examples)", labels, result.Nu, "ν (log scale)", png);
                Console.WriteLine($"wrote {png}");
            }
            return 0;
        }));
        return cmd;
    }

    /// <summary>"emb", "1", …, "L" for L + 1 values.</summary>
    private static List<string> LayerLabels(int count) => Enumerable.Range(0, count).Select(i => i == 0 ? "emb" : i.ToString()).ToList();
}
