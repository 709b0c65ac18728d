using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;

namespace Engine.Cli.Commands;

/// <summary>
/// `engine bench llama-scale` (hidden): see <see cref="LlamaScale"/>.
/// `engine bench ops`: times op forward and forward+backward on the CPU at transformer sizes
/// (BERT-base widths, 512 tokens). The same cases run in PyTorch through
/// tools/bench/cpu_ops_vs_torch.py, which prints the side-by-side ratio table.
/// `engine bench gemm`: one CPU GEMM C = op(A)·op(B) in GFLOP/s (tools/bench/compare.sh puts it
/// beside numpy/OpenBLAS).
/// </summary>
public static class BenchCommand
{
    public sealed record Case(string Name, string Shape, Func<Random, (Tensor[] Inputs, Func<Tensor[], Tensor> Apply)> Make);

    public static IReadOnlyList<Case> Cases { get; } =
    [
        new("linear", "x[512,768]·W[768,768]ᵀ+b", r => ([Tensor.Randn([512, 768], r), Tensor.Randn([768, 768], r, std: 0.02), Tensor.Randn([768], r)],
            i => Ops.Linear(i[0], i[1], i[2]))),
        new("linear_up", "x[512,768]·W[3072,768]ᵀ+b", r => ([Tensor.Randn([512, 768], r), Tensor.Randn([3072, 768], r, std: 0.02), Tensor.Randn([3072], r)],
            i => Ops.Linear(i[0], i[1], i[2]))),
        new("attention", "q,k,v[4,12,128,64]", r => ([Tensor.Randn([4, 12, 128, 64], r), Tensor.Randn([4, 12, 128, 64], r), Tensor.Randn([4, 12, 128, 64], r)],
            i => Ops.Attention(i[0], i[1], i[2]))),
        new("attention_long", "q,k,v[8,12,512,64]", r => ([Tensor.Randn([8, 12, 512, 64], r), Tensor.Randn([8, 12, 512, 64], r), Tensor.Randn([8, 12, 512, 64], r)],
            i => Ops.Attention(i[0], i[1], i[2]))),
        new("bmm", "q[48,128,64]·k[48,128,64]ᵀ", r => ([Tensor.Randn([48, 128, 64], r), Tensor.Randn([48, 128, 64], r)],
            i => Ops.MatMul(i[0], i[1], transB: true))),
        new("layer_norm", "x[512,768]", r => ([Tensor.Randn([512, 768], r), Tensor.Randn([768], r), Tensor.Randn([768], r)],
            i => Ops.LayerNorm(i[0], i[1], i[2], 1e-12))),
        new("rms_norm", "x[512,2048]", r => ([Tensor.Randn([512, 2048], r), Tensor.Randn([2048], r)], i => Ops.RmsNorm(i[0], i[1], 1e-6))),
        new("gelu", "x[512,3072]", r => ([Tensor.Randn([512, 3072], r)], i => Ops.Gelu(i[0]))),
        new("softmax", "x[6144,128]", r => ([Tensor.Randn([6144, 128], r)], i => Ops.Softmax(i[0]))),
        new("permute", "x[4,128,12,64]→[4,12,128,64]", r => ([Tensor.Randn([4, 128, 12, 64], r)], i => Ops.Transpose(i[0], 1, 2))),
        new("cross_entropy", "logits[512,30522]", r => ([Tensor.Randn([512, 30522], r), Tensor.FromArray(Enumerable.Range(0, 512).Select(k => k * 37 % 30522).ToArray(), 512)],
            i => Ops.CrossEntropy(i[0], i[1]))),
    ];

    public static Command Create()
    {
        var iters = new Option<int>("--iters") { Description = "timed iterations per case", DefaultValueFactory = _ => 10 };
        var json = new Option<bool>("--json") { Description = "one JSON object per case instead of a table" };
        var only = new Option<string?>("--case") { Description = "run one case" };
        var dtype = DTypeOption.Create();
        var ops = new Command("ops", "Time op forward and forward+backward (float32 tensors, CPU; --dtype bf16 rounds GEMM inputs)") { iters, json, only, dtype };
        ops.SetAction(Cli.Action(parse =>
        {
            var precision = DTypeOption.Read(parse, dtype);
            using var mixed = MixedPrecision.Use(precision);
            int n = Math.Max(1, parse.GetValue(iters));
            bool asJson = parse.GetValue(json);
            var name = parse.GetValue(only);
            var cases = name is null ? Cases : Cases.Where(c => c.Name == name).ToList();
            if (cases.Count == 0) throw new EngineException($"bench: unknown case '{name}'");
            if (!asJson) Console.WriteLine($"{"case",-14} {"shape",-28} {"fwd ms",9} {"fwd+bwd ms",11}  (median of {n}, {Environment.ProcessorCount} threads, GEMMs {MixedPrecision.Name(precision)})");
            foreach (var c in cases)
            {
                var (inputs, apply) = c.Make(new Random(1));
                double fwd = Median(n, () => { using var s = Scope.Begin(); using var _ = Autograd.Tape.NoGrad(); apply(inputs); });
                foreach (var t in inputs) if (t.DType.IsCompute()) t.RequiresGrad = true;
                double both = Median(n, () =>
                {
                    using var s = Scope.Begin();
                    var y = apply(inputs);
                    y.Backward(y.Numel == 1 ? null : Tensor.Full(y.ShapeArray, 1.0));
                    foreach (var t in inputs) if (t.Grad is { } g) g.Backend.Fill(g, 0); // kept and zeroed, as parameter gradients are
                });
                if (asJson) Console.WriteLine(JsonSerializer.Serialize(new { engine = "engine", @case = c.Name, shape = c.Shape, dtype = MixedPrecision.Name(precision), fwd_ms = fwd, fwd_bwd_ms = both }));
                else Console.WriteLine($"{c.Name,-14} {c.Shape,-28} {fwd,9:F2} {both,11:F2}");
            }
            return 0;
        }));
        var cmd = new Command("bench", "Benchmarks") { ops, GemmCommand(), StepCommand(), LlamaScale.Create(), AllReduceBench.Create() };
        return cmd;
    }

    /// <summary>`engine bench gemm --m M --n N --k K [--ta] [--tb] [--dtype f32|bf16]`: C [M, N] = op(A)·op(B)
    /// on the CPU backend (float32 tensors; bf16 rounds the inputs as MixedPrecision does), op(A) [M, K],
    /// op(B) [K, N]; --ta stores A as [K, M], --tb stores B as [N, K] (the linear layer's weight).
    /// Prints the median time and 2·M·N·K / time in GFLOP/s.</summary>
    private static Command GemmCommand()
    {
        var m = new Option<int>("--m") { Description = "rows of C", Required = true };
        var n = new Option<int>("--n") { Description = "columns of C", Required = true };
        var k = new Option<int>("--k") { Description = "the summed dimension", Required = true };
        var ta = new Option<bool>("--ta") { Description = "A stored transposed, [K, M]" };
        var tb = new Option<bool>("--tb") { Description = "B stored transposed, [N, K]" };
        var iters = new Option<int>("--iters") { Description = "timed calls", DefaultValueFactory = _ => 10 };
        var json = new Option<bool>("--json") { Description = "one JSON object instead of a line" };
        var dtype = DTypeOption.Create();
        var cmd = new Command("gemm", "Time one CPU GEMM and print GFLOP/s (median)") { m, n, k, ta, tb, iters, json, dtype };
        cmd.SetAction(Cli.Action(parse =>
        {
            int M = parse.GetValue(m), N = parse.GetValue(n), K = parse.GetValue(k), iterations = Math.Max(1, parse.GetValue(iters));
            if (M < 1 || N < 1 || K < 1) throw new EngineException($"bench gemm: --m, --n and --k must be at least 1, got {M}, {N}, {K}");
            bool transA = parse.GetValue(ta), transB = parse.GetValue(tb);
            var precision = DTypeOption.Read(parse, dtype);
            var rng = new Random(1);
            var a = transA ? Tensor.Randn([K, M], rng) : Tensor.Randn([M, K], rng);
            var b = transB ? Tensor.Randn([N, K], rng) : Tensor.Randn([K, N], rng);
            var c = Tensor.Randn([M, N], rng);
            var cpu = Engine.Backend.Backends.Cpu;
            double ms;
            using (MixedPrecision.Use(precision))
                ms = Median(iterations, () => cpu.Gemm(a, 0, 0, transA, b, 0, 0, transB, c, 0, 0, 1, M, N, K, 1.0, 0.0));
            double gflops = 2.0 * M * N * K / (ms / 1000) / 1e9;
            var ops = $"{(transA ? "Aᵀ" : "A")}·{(transB ? "Bᵀ" : "B")}";
            if (parse.GetValue(json))
                Console.WriteLine(JsonSerializer.Serialize(new { engine = "engine", m = M, n = N, k = K, ta = transA, tb = transB, dtype = MixedPrecision.Name(precision), ms, gflops }));
            else
                Console.WriteLine($"gemm {M}×{N}×{K} {ops} {MixedPrecision.Name(precision)}: {ms:F3} ms, {gflops:F1} GFLOP/s (median of {iterations}, {Environment.ProcessorCount} threads)");
            return 0;
        }));
        return cmd;
    }

    /// <summary>`engine bench step --model DIR`: one training step of a folder's model, split into
    /// forward, backward, clipping and the optimizer update (median milliseconds), with tokens/s.</summary>
    private static Command StepCommand()
    {
        var model = new Option<string>("--model") { Description = "Hugging Face model folder", Required = true };
        var batch = new Option<int>("--batch") { Description = "batch size", DefaultValueFactory = _ => 32 };
        var length = new Option<int>("--len") { Description = "tokens per sequence", DefaultValueFactory = _ => 32 };
        var iters = new Option<int>("--iters") { Description = "timed steps", DefaultValueFactory = _ => 5 };
        var device = Cli.DeviceOption();
        var profile = new Option<bool>("--profile") { Description = "also time every op's forward and backward (synchronising the device after each; slower)" };
        var dtype = DTypeOption.Create();
        var method = new Option<string>("--method") { Description = "full, or lora (rank 8, alpha 16, dropout 0.1 on the model's default targets; only the adapters and the head train)", DefaultValueFactory = _ => "full" };
        var objective = new Option<string>("--objective") { Description = "classify (a 2-class sequence classifier), or lm: the pretraining step (causal LM for Llama, masked LM with 15% of positions scored for BERT, the output layer over the whole vocabulary)", DefaultValueFactory = _ => "classify" };
        var cmd = new Command("step", "Time a training step of a model folder (float32 weights; --dtype bf16 rounds GEMM inputs)") { model, batch, length, iters, device, profile, dtype, method, objective };
        cmd.SetAction(Cli.Action(parse =>
        {
            var on = Cli.OpenDevice(parse.GetValue(device));
            var precision = DTypeOption.Read(parse, dtype);
            var folder = Engine.Models.HfModelFolder.Open(parse.GetValue(model)!);
            var how = parse.GetValue(method);
            if (how is not ("full" or "lora")) throw new EngineException($"bench step: --method must be full or lora, got '{how}'");
            var goal = parse.GetValue(objective);
            if (goal is not ("classify" or "lm")) throw new EngineException($"bench step: --objective must be classify or lm, got '{goal}'");
            if (goal == "lm" && how != "full") throw new EngineException("bench step: --objective lm times full pretraining steps; --method must be full");
            int b = parse.GetValue(batch), t = parse.GetValue(length), n = Math.Max(1, parse.GetValue(iters));
            var rng = new Random(1);
            int vocab = folder.VocabSize;
            var tokens = Enumerable.Range(0, b * t).Select(_ => rng.Next(1, vocab)).ToArray();
            Engine.Nn.Module net;
            Func<Tensor> stepLoss;
            string what = folder.ModelType;
            if (goal == "lm")
            {
                var lm = Engine.Models.Pretraining.LanguageModel.Load(folder);
                net = lm;
                what += " " + lm.Architecture;
                // Causal: every position but each row's last is scored; masked: every 7th position
                // (≈ 15%, the masking rate; the ids themselves are left unmasked, which costs the same).
                var targets = lm is Engine.Models.Pretraining.CausalLanguageModel
                    ? Engine.Models.Pretraining.CausalLanguageModel.ShiftedTargets(tokens, b, t)
                    : tokens.Select((id, i) => i % 7 == 0 ? id : Engine.Models.Pretraining.MlmMasker.Ignore).ToArray();
                stepLoss = () => Engine.Models.Pretraining.LanguageModel.Loss(lm.Predict(tokens, targets, b, t));
            }
            else
            {
                var classifier = Engine.Models.SequenceClassifier.FromFolder(folder, numLabels: 2);
                Engine.Models.Peft.PeftSetup.Apply(classifier, new Engine.Models.Peft.PeftOptions { Method = how });
                net = classifier;
                var ids = Tensor.FromArray(tokens, b, t).To(on);
                var labels = Tensor.FromArray(Enumerable.Range(0, b).Select(_ => rng.Next(2)).ToArray(), b).To(on);
                stepLoss = () => classifier.Loss(classifier.Forward(ids).Logits, labels);
            }
            net.To(on);
            var backend = Engine.Backend.Backends.For(on);
            var opt = new Engine.Optim.AdamW(net.Parameters().Where(p => p.RequiresGrad), 1e-4);
            var parts = new Dictionary<string, List<double>> { ["forward"] = [], ["backward"] = [], ["clip"] = [], ["optimizer"] = [] };
            bool profiling = parse.GetValue(profile);
            Engine.Autograd.OpProfile? ops = null;
            for (int i = 0; i <= n; i++)
            {
                using var scope = Scope.Begin();
                if (i == 1 && profiling) ops = Engine.Autograd.OpProfile.Start(backend);
                ops?.Mark();
                var sw = Stopwatch.StartNew();
                double f, bw;
                using (MixedPrecision.Use(precision)) // forward and backward, as the Trainer does
                {
                    var loss = stepLoss();
                    loss.Item();
                    f = sw.Elapsed.TotalMilliseconds;
                    loss.Backward();
                    backend.Synchronize();
                    bw = sw.Elapsed.TotalMilliseconds;
                }
                Engine.Optim.GradClip.ClipByGlobalNorm(opt.Parameters, 1.0);
                backend.Synchronize();
                double c = sw.Elapsed.TotalMilliseconds;
                opt.Step();
                opt.ZeroGrad();
                backend.Synchronize();
                double o = sw.Elapsed.TotalMilliseconds;
                if (i == 0) continue; // warm-up
                parts["forward"].Add(f); parts["backward"].Add(bw - f); parts["clip"].Add(c - bw); parts["optimizer"].Add(o - c);
            }
            double total = 0;
            Console.WriteLine($"{what}, {net.ParameterCount():N0} parameters ({how}: {opt.Parameters.Sum(p => p.Numel):N0} trained), batch {b} × {t} tokens, on {backend.Name}, GEMMs {MixedPrecision.Name(precision)}, median of {n}");
            foreach (var (k, v) in parts)
            {
                v.Sort();
                total += v[v.Count / 2];
                Console.WriteLine($"{k,-10} {v[v.Count / 2],9:F1} ms");
            }
            Console.WriteLine($"{"step",-10} {total,9:F1} ms   {b * t / (total / 1000):N0} tokens/s" + (profiling ? " (with --profile's synchronisation)" : ""));
            if (ops is not null)
            {
                ops.Dispose();
                var table = ops.Table();
                double all = table.Sum(r => r.TotalMs);
                Console.WriteLine();
                Console.WriteLine($"{"op",-22} {"calls/step",10} {"fwd ms",9} {"bwd ms",9} {"share",7}   (per step; forward: time since the previous op)");
                foreach (var r in table)
                    Console.WriteLine($"{r.Op,-22} {r.Calls / (double)n,10:F0} {r.ForwardMs / n,9:F2} {r.BackwardMs / n,9:F2} {r.TotalMs / all,7:P1}");
            }
            return 0;
        }));
        return cmd;
    }

    private static double Median(int n, Action body)
    {
        // Warm-up: .NET replaces precompiled and tier-0 code after ~30 calls (e.g. Vector256.Exp's
        // precompiled body lacks AVX2), so run the case 40 times or for 3 seconds first.
        var warm = Stopwatch.StartNew();
        for (int i = 0; i < 40 && (i < 2 || warm.Elapsed.TotalSeconds < 3); i++) body();
        var times = new double[n];
        for (int i = 0; i < n; i++)
        {
            var sw = Stopwatch.StartNew();
            body();
            times[i] = sw.Elapsed.TotalMilliseconds;
        }
        Array.Sort(times);
        return times[n / 2];
    }
}
