using System.Text.Json;
using Engine.IO;

namespace Engine.Models;

/// <summary>
/// What `engine inspect PATH` prints: for a folder, a config summary; then a table of tensor
/// name, dtype and shape, and the totals (tensors, parameters, bytes). PATH may be a
/// .safetensors file, a sharded model's index (.json) or a Hugging Face model folder. Problems
/// are EngineExceptions, as everywhere else.
/// </summary>
public static class ModelInspector
{
    public static void Inspect(string path, TextWriter output)
    {
        if (Directory.Exists(path))
        {
            var folder = HfModelFolder.Open(path);
            WriteConfigSummary(folder, output);
            using var weights = folder.OpenWeights();
            WriteTable(weights, output);
        }
        else
        {
            using var weights = SafeTensors.Open(path);
            WriteTable(weights, output);
        }
    }

    public static void WriteConfigSummary(HfModelFolder folder, TextWriter output)
    {
        output.WriteLine($"folder     {folder.Path}");
        switch (folder.Family)
        {
            case ModelFamily.Bert:
                {
                    var c = folder.BertConfig;
                    output.WriteLine($"model      {c.ModelType} (BERT family): {c.NumHiddenLayers} layers, hidden {c.HiddenSize}, " +
                        $"{c.NumAttentionHeads} heads, intermediate {c.IntermediateSize}, vocab {c.VocabSize}, {c.HiddenAct}");
                    if (c.NumLabels is { } n) output.WriteLine($"labels     {n}{Labels(c.Id2Label)}");
                    break;
                }
            case ModelFamily.Llama:
                {
                    var c = folder.LlamaConfig;
                    var rope = c.RopeScaling is { } s ? $", rope scaling {s.Type} ×{s.Factor}" : "";
                    output.WriteLine($"model      {c.ModelType} (Llama family): {c.NumHiddenLayers} layers, hidden {c.HiddenSize}, " +
                        $"{c.NumAttentionHeads} heads ({c.NumKeyValueHeads} key/value), head dim {c.HeadDim}, intermediate {c.IntermediateSize}, " +
                        $"vocab {c.VocabSize}, rope theta {c.RopeTheta}{rope}{(c.TieWordEmbeddings ? ", tied embeddings" : "")}");
                    if (c.NumLabels is { } n) output.WriteLine($"labels     {n}{Labels(c.Id2Label)}");
                    break;
                }
            default:
                {
                    string Field(string name) => folder.Config.TryGetProperty(name, out var v) ? v.GetRawText() : "?";
                    output.WriteLine($"model      {folder.ModelType} (not a family the engine builds): {Field("num_hidden_layers")} layers, " +
                        $"hidden {Field("hidden_size")}, {Field("num_attention_heads")} heads, vocab {Field("vocab_size")}");
                    break;
                }
        }
        output.WriteLine($"weights    {System.IO.Path.GetFileName(folder.WeightsPath)}");
        var t = folder.Tokenizer;
        var files = new[] { t.TokenizerJson, t.VocabTxt, t.SentencePieceModel, t.VocabJson, t.MergesTxt, t.TokenizerConfig, t.SpecialTokensMap, folder.GenerationConfigPath }
            .Where(f => f is not null).Select(f => System.IO.Path.GetFileName(f!)).ToArray();
        output.WriteLine($"files      {(files.Length == 0 ? "(no tokenizer files)" : string.Join(", ", files))}");
        output.WriteLine();
    }

    private static string Labels(IReadOnlyDictionary<int, string>? id2label) =>
        id2label is null ? "" : " (" + string.Join(", ", id2label.Take(8).Select(p => $"{p.Key}: {p.Value}")) + (id2label.Count > 8 ? ", ..." : "") + ")";

    public static void WriteTable(IWeightSource weights, TextWriter output)
    {
        var infos = weights.Names.Select(weights.Info).ToList();
        int nameWidth = Math.Max(4, infos.Count == 0 ? 0 : infos.Max(i => i.Name.Length));
        output.WriteLine($"{"name".PadRight(nameWidth)}  {"dtype",-7}  shape");
        long parameters = 0, bytes = 0;
        foreach (var i in infos)
        {
            output.WriteLine($"{i.Name.PadRight(nameWidth)}  {i.DType.SafetensorsName(),-7}  {i.ShapeText}");
            parameters += i.Numel;
            bytes += i.ByteLength;
        }
        foreach (var (k, v) in weights.Metadata) output.WriteLine($"metadata   {k} = {v}");
        output.WriteLine($"{infos.Count} tensors, {parameters:N0} parameters, {bytes:N0} bytes ({FormatBytes(bytes)})");
    }

    public static string FormatBytes(long bytes) => bytes switch
    {
        >= 1L << 30 => $"{bytes / (double)(1L << 30):F2} GiB",
        >= 1L << 20 => $"{bytes / (double)(1L << 20):F2} MiB",
        >= 1L << 10 => $"{bytes / (double)(1L << 10):F2} KiB",
        _ => $"{bytes} B",
    };
}
