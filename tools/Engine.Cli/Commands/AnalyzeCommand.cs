using System.CommandLine;
using System.Text.Json.Nodes;
using Engine.IO;
using Engine.Models;
using Engine.Models.Peft;

namespace Engine.Cli.Commands;

/// <summary>`engine analyze depth --model DIR [--out PNG]`: the learned depth-wise pooling weights
/// of a saved model (depthwise_pooling.weights in its model.safetensors), printed per layer and
/// plotted as a bar chart.</summary>
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
        return new Command("analyze", "Analyses of a trained model") { depth };
    }
}
