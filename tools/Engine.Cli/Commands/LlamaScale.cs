using System.CommandLine;
using System.Diagnostics;
using Engine.IO;
using Engine.Models;
using Engine.Models.Llama;

namespace Engine.Cli.Commands;

/// <summary>
/// `engine bench llama-scale` (hidden): the Llama scale check. Writes a Llama-3.2-1B-shaped
/// folder (hidden 2048, 16 layers, 32 heads, 8 kv heads, intermediate 8192, vocab 128256, llama3
/// rope scaling) with random BF16 weights into a temporary folder, loads it into float32
/// parameters, freezes the embedding table (no gradient buffer for its 128256 × 2048 floats), and
/// times one forward and one backward of batch × seq tokens on the CPU. Prints the times and the
/// process's peak resident memory (VmHWM), then deletes the folder. Smaller shapes through the
/// options make a quick smoke run.
/// </summary>
public static class LlamaScale
{
    public static Command Create()
    {
        var hidden = new Option<int>("--hidden") { DefaultValueFactory = _ => 2048 };
        var layers = new Option<int>("--layers") { DefaultValueFactory = _ => 16 };
        var heads = new Option<int>("--heads") { DefaultValueFactory = _ => 32 };
        var kvHeads = new Option<int>("--kv-heads") { DefaultValueFactory = _ => 8 };
        var intermediate = new Option<int>("--intermediate") { DefaultValueFactory = _ => 8192 };
        var vocab = new Option<int>("--vocab") { DefaultValueFactory = _ => 128256 };
        var batch = new Option<int>("--batch") { DefaultValueFactory = _ => 4 };
        var seq = new Option<int>("--seq") { DefaultValueFactory = _ => 256 };
        var dir = new Option<string?>("--dir") { Description = "where to write the temporary model folder (default: the system temp folder)" };
        var dtype = DTypeOption.Create();
        var cmd = new Command("llama-scale", "Llama-3.2-1B-shaped forward + backward on the CPU with random bf16 weights")
            { hidden, layers, heads, kvHeads, intermediate, vocab, batch, seq, dir, dtype };
        cmd.Hidden = true;
        cmd.SetAction(Cli.Action(parse =>
        {
            int d = parse.GetValue(hidden), l = parse.GetValue(layers), h = parse.GetValue(heads), kv = parse.GetValue(kvHeads);
            int ff = parse.GetValue(intermediate), v = parse.GetValue(vocab), b = parse.GetValue(batch), t = parse.GetValue(seq);
            var precision = DTypeOption.Read(parse, dtype);
            var folder = Path.Combine(parse.GetValue(dir) ?? Path.GetTempPath(), "engine-llama-scale-" + Guid.NewGuid().ToString("N"));
            Directory.CreateDirectory(folder);
            try
            {
                var total = Stopwatch.StartNew();
                var sw = Stopwatch.StartNew();
                long count = WriteFolder(folder, d, l, h, kv, ff, v);
                Report($"wrote {count / 1e9:F3}B random bf16 parameters ({new FileInfo(Path.Combine(folder, SafeTensors.SingleFileName)).Length / 1e9:F2} GB) in {sw.Elapsed.TotalSeconds:F1} s");

                sw.Restart();
                var model = LlamaForSequenceClassification.FromFolder(HfModelFolder.Open(folder));
                model.Decoder.EmbedTokens.Weight.RequiresGrad = false; // frozen: no 128256 × 2048 gradient buffer
                model.Eval();
                Report($"loaded into float32 in {sw.Elapsed.TotalSeconds:F1} s; {model.ParameterCount(trainableOnly: true) / 1e9:F3}B trainable (embeddings frozen)");

                var rng = new Random(1);
                var ids = Tensor.FromArray(Enumerable.Range(0, b * t).Select(_ => rng.Next(3, v)).ToArray(), b, t);
                var mask = Tensor.FromArray(Enumerable.Repeat(1, b * t).ToArray(), b, t);
                var labels = Tensor.FromArray(Enumerable.Range(0, b).Select(i => i % 2).ToArray(), b);
                double fwd, bwd;
                using (Scope.Begin())
                using (MixedPrecision.Use(precision))
                {
                    sw.Restart();
                    var output = model.Forward(ids, mask);
                    var loss = model.Loss(output.Logits, labels);
                    fwd = sw.Elapsed.TotalSeconds;
                    Report($"forward {b} × {t} tokens (GEMMs {MixedPrecision.Name(precision)}): {fwd:F1} s, loss {loss.ToDoubleArray()[0]:F4}");
                    sw.Restart();
                    loss.Backward();
                    bwd = sw.Elapsed.TotalSeconds;
                    Report($"backward: {bwd:F1} s");
                }
                Report($"forward + backward {fwd + bwd:F1} s ({b * t / (fwd + bwd):F1} tokens/s, {Environment.ProcessorCount} threads); " +
                       $"peak resident memory {PeakResidentBytes() / 1e9:F2} GB; total {total.Elapsed.TotalSeconds:F0} s");
            }
            finally
            {
                Directory.Delete(folder, recursive: true);
            }
            return 0;
        }));
        return cmd;
    }

    private static void Report(string line) => Console.WriteLine($"[{PeakResidentBytes() / 1e9:F2} GB peak] {line}");

    /// <summary>VmHWM from /proc/self/status (Linux), else the process's PeakWorkingSet64.</summary>
    private static long PeakResidentBytes()
    {
        const string status = "/proc/self/status";
        if (File.Exists(status))
            foreach (var line in File.ReadLines(status))
                if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                    return long.Parse(line[6..].Trim().Split(' ')[0]) * 1024;
        using var p = Process.GetCurrentProcess();
        return p.PeakWorkingSet64;
    }

    /// <summary>config.json and model.safetensors with streamed random BF16 weights: matrices
    /// uniform in ±0.03 (about the std of Llama's initialisation), norm weights 1.</summary>
    private static long WriteFolder(string folder, int d, int layers, int heads, int kvHeads, int ff, int vocab)
    {
        int headDim = d / heads;
        File.WriteAllText(Path.Combine(folder, HfModelFolder.ConfigFileName), $$"""
            {"model_type": "llama", "architectures": ["LlamaForSequenceClassification"], "vocab_size": {{vocab}},
             "hidden_size": {{d}}, "intermediate_size": {{ff}}, "num_hidden_layers": {{layers}}, "num_attention_heads": {{heads}},
             "num_key_value_heads": {{kvHeads}}, "head_dim": {{headDim}}, "hidden_act": "silu", "max_position_embeddings": 131072,
             "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "tie_word_embeddings": true, "bos_token_id": 128000,
             "eos_token_id": 128001, "pad_token_id": 128004, "num_labels": 2, "torch_dtype": "bfloat16",
             "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                              "original_max_position_embeddings": 8192} }
            """);
        var shapes = new List<(string Name, int[] Shape)> { ("model.embed_tokens.weight", [vocab, d]) };
        for (int i = 0; i < layers; i++)
        {
            var p = $"model.layers.{i}.";
            shapes.Add((p + "self_attn.q_proj.weight", [heads * headDim, d]));
            shapes.Add((p + "self_attn.k_proj.weight", [kvHeads * headDim, d]));
            shapes.Add((p + "self_attn.v_proj.weight", [kvHeads * headDim, d]));
            shapes.Add((p + "self_attn.o_proj.weight", [d, heads * headDim]));
            shapes.Add((p + "mlp.gate_proj.weight", [ff, d]));
            shapes.Add((p + "mlp.up_proj.weight", [ff, d]));
            shapes.Add((p + "mlp.down_proj.weight", [d, ff]));
            shapes.Add((p + "input_layernorm.weight", [d]));
            shapes.Add((p + "post_attention_layernorm.weight", [d]));
        }
        shapes.Add(("model.norm.weight", [d]));
        shapes.Add(("score.weight", [2, d]));
        var writer = new SafeTensorsWriter(new Dictionary<string, string> { ["format"] = "pt" });
        long count = 0;
        ulong state = 0x9E3779B97F4A7C15;
        foreach (var (name, shape) in shapes)
        {
            long n = shape.Aggregate(1L, (a, x) => a * x);
            count += n;
            bool isNorm = shape.Length == 1;
            writer.Add(name, DType.BF16, shape, stream =>
            {
                var buffer = new byte[1 << 20];
                for (long done = 0; done < n;)
                {
                    int chunk = (int)Math.Min(buffer.Length / 2, n - done);
                    for (int k = 0; k < chunk; k++)
                    {
                        float value = 1f;
                        if (!isNorm)
                        {
                            state ^= state << 13; state ^= state >> 7; state ^= state << 17; // xorshift64
                            value = ((state >> 40) / (float)(1 << 24) - 0.5f) * 0.06f;
                        }
                        ushort bits = (ushort)(BitConverter.SingleToUInt32Bits(value) >> 16); // truncation to bf16
                        buffer[2 * k] = (byte)bits;
                        buffer[2 * k + 1] = (byte)(bits >> 8);
                    }
                    stream.Write(buffer, 0, 2 * chunk);
                    done += chunk;
                }
            });
        }
        writer.Save(Path.Combine(folder, SafeTensors.SingleFileName));
        return count;
    }
}
