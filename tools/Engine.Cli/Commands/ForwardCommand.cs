using System.CommandLine;
using Engine.Autograd;
using Engine.IO;
using Engine.Models;

namespace Engine.Cli.Commands;

/// <summary>
/// `engine forward --model DIR (--ids FILE | --text "..." [--text-pair "..."]) [--labels FILE]
/// [--grads] [--device cuda] --out FILE.safetensors`: one evaluation-mode pass (dropout off) of a Hugging Face
/// sequence-classification folder, writing every hidden state, the logits and, with --grads,
/// the loss and every parameter's gradient, all float32 — the engine's side of a reference
/// comparison.
/// </summary>
public static class ForwardCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Hugging Face model folder", Required = true };
        var ids = new Option<string?>("--ids") { Description = "safetensors with input_ids (I64 [batch, seq]), attention_mask, optional token_type_ids and labels" };
        var text = new Option<string?>("--text") { Description = "a text to tokenize with the folder's tokenizer" };
        var pair = new Option<string?>("--text-pair") { Description = "the second text of a pair" };
        var labels = new Option<string?>("--labels") { Description = "safetensors with labels (I64 [batch])" };
        var grads = new Option<bool>("--grads") { Description = "also write loss and grad.<parameter> (needs labels)" };
        var output = new Option<string>("--out") { Description = "output .safetensors file", Required = true };
        var device = Cli.DeviceOption();
        var cmd = new Command("forward", "One evaluation-mode forward (and backward) pass, all outputs written to safetensors")
            { model, ids, text, pair, labels, grads, output, device };
        cmd.SetAction(Cli.Action(parse =>
        {
            var on = Cli.OpenDevice(parse.GetValue(device));
            var folder = HfModelFolder.Open(parse.GetValue(model)!);
            var outPath = parse.GetValue(output)!;
            var dir = Path.GetDirectoryName(Path.GetFullPath(outPath))!;
            if (!Directory.Exists(dir)) throw new EngineException($"--out: folder {dir} does not exist");
            var inputs = ReadInputs(folder, parse.GetValue(ids), parse.GetValue(text), parse.GetValue(pair), parse.GetValue(labels));
            bool withGrads = parse.GetValue(grads);
            if (withGrads && inputs.Labels is null) throw new EngineException("--grads needs labels (in the --ids file or --labels)");

            var net = SequenceClassifier.FromFolder(folder, log: Console.Error.WriteLine);
            net.Eval();
            net.To(on);
            var result = new List<KeyValuePair<string, Tensor>>();
            using (withGrads ? null : Tape.NoGrad())
            {
                var o = net.Forward(inputs.Ids, inputs.Mask, net.TokenTypes(inputs.Types));
                for (int i = 0; i < o.HiddenStates.Count; i++) result.Add(new($"hidden_states.{i}", o.HiddenStates[i]));
                result.Add(new("last_hidden_state", o.LastHiddenState));
                result.Add(new("logits", o.Logits));
                if (inputs.Labels is { } y)
                {
                    var loss = net.Loss(o.Logits, y);
                    result.Add(new("loss", loss));
                    if (withGrads)
                    {
                        loss.Backward();
                        foreach (var (name, p) in net.NamedParameters())
                            if (p.Grad is { } g) result.Add(new("grad." + net.SourceNames.GetValueOrDefault(name, name), g));
                    }
                }
            }
            SafeTensors.Save(outPath, result, new Dictionary<string, string> { ["produced_by"] = "engine forward", ["model"] = folder.Path, ["device"] = on.ToString() });
            Console.WriteLine($"wrote {result.Count} tensors to {outPath}");
            return 0;
        }));
        return cmd;
    }

    private sealed record Inputs(Tensor Ids, Tensor? Mask, Tensor? Types, Tensor? Labels);

    private static Inputs ReadInputs(HfModelFolder folder, string? idsPath, string? text, string? pair, string? labelsPath)
    {
        if ((idsPath is null) == (text is null)) throw new EngineException("give either --ids FILE or --text \"...\"");
        Tensor? labels = null;
        Inputs result;
        if (idsPath is not null)
        {
            using var f = SafeTensors.Open(idsPath);
            var ids = f.ReadAs("input_ids", DType.I32);
            if (ids.Rank != 2) throw new EngineException($"{idsPath}: input_ids must be [batch, seq], got {Shape.Format(ids.Shape)}");
            Tensor? Optional(string name)
            {
                if (!f.Contains(name)) return null;
                var t = f.ReadAs(name, DType.I32);
                if (name != "labels" && !Shape.Equal(t.Shape, ids.Shape))
                    throw new EngineException($"{idsPath}: {name} is {Shape.Format(t.Shape)}, input_ids is {Shape.Format(ids.Shape)}");
                return t;
            }
            result = new Inputs(ids, Optional("attention_mask"), Optional("token_type_ids"), null);
            labels = Optional("labels");
        }
        else
        {
            var tok = Engine.Models.Tokenization.TextTokenizer.FromFolder(folder);
            var enc = tok.Encode(text!, pair);
            int n = enc.Ids.Count;
            result = new Inputs(Tensor.FromArray(enc.Ids.ToArray(), 1, n), Tensor.FromArray(Enumerable.Repeat(1, n).ToArray(), 1, n),
                Tensor.FromArray(enc.TypeIds.ToArray(), 1, n), null);
        }
        if (labelsPath is not null)
        {
            using var f = SafeTensors.Open(labelsPath);
            labels = f.ReadAs("labels", DType.I32);
        }
        if (labels is not null && (labels.Rank != 1 || labels.Dim(0) != result.Ids.Dim(0)))
            throw new EngineException($"labels must be [{result.Ids.Dim(0)}], got {Shape.Format(labels.Shape)}");
        return result with { Labels = labels };
    }
}
