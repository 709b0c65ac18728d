using System.CommandLine;
using System.Text.Json;
using Engine.Models;
using Engine.Models.Data;
using Engine.Models.Peft;
using Engine.Models.Tokenization;
using Engine.Models.Training;

namespace Engine.Cli.Commands;

/// <summary>`engine train`, `engine eval`, `engine predict`: fine-tuning a Hugging Face folder on
/// a text-classification file, and using the result.</summary>
public static class TrainCommands
{
    internal sealed class DataArgs
    {
        public readonly Option<string?> Task = new("--task") { Description = "sst2, cola, mrpc, rte, wnli, qnli, mnli, stsb, mr, cr, subj, mpqa, sst5 (format, columns, metrics)" };
        public readonly Option<string?> Text = new("--text-column") { Description = "column of the text (name, or 0-based index without a header)" };
        public readonly Option<string?> Pair = new("--text-pair-column") { Description = "column of the second text of a pair" };
        public readonly Option<string?> Label = new("--label-column") { Description = "column of the label" };
        public readonly Option<bool> Skip = new("--skip-bad-lines") { Description = "count bad lines as warnings instead of stopping" };
        public readonly Option<int> MaxLen = new("--max-len") { Description = "tokens per example after truncation", DefaultValueFactory = _ => 128 };
        public readonly Option<int> Batch = new("--batch") { Description = "examples per batch", DefaultValueFactory = _ => 32 };

        public void AddTo(Command c)
        {
            c.Add(Task); c.Add(Text); c.Add(Pair); c.Add(Label); c.Add(Skip); c.Add(MaxLen); c.Add(Batch);
        }

        public Dataset Read(ParseResult p, string path, LabelMap? labels, bool regression, bool unlabelled = false) =>
            DatasetReader.Read(path, new DataOptions
            {
                Task = p.GetValue(Task), TextColumn = p.GetValue(Text), TextPairColumn = p.GetValue(Pair), LabelColumn = p.GetValue(Label),
                SkipBadLines = p.GetValue(Skip), Labels = labels, Regression = regression, Unlabelled = unlabelled,
                Warn = w => Console.Error.WriteLine($"warning: {w}"),
            });
    }

    /// <summary>The method and pooling options of engine train (docs/peft.md): --method, --pooling,
    /// and every registered method's own options (<see cref="FineTuningMethod.CliOptions"/>), each
    /// accepted only with a method that declares it.</summary>
    private sealed class MethodArgs
    {
        public readonly Option<string?> Method = new("--method") { Description = $"{string.Join(", ", MethodRegistry.Names)} (default: full, or what a resumed checkpoint or --adapter has)" };
        public readonly Option<string?> Pooling = new("--pooling") { Description = "cls, mean, last or depthwise[:raw][:with-embeddings][:cls|:mean|:last] (default: the model's usual, [CLS] for BERT)" };
        private readonly List<(MethodOption Spec, Option Option)> options = new();

        public MethodArgs()
        {
            foreach (var spec in MethodRegistry.All.SelectMany(m => m.CliOptions).DistinctBy(o => o.Name))
                options.Add((spec, spec.IsFlag ? new Option<bool>(spec.Name) { Description = spec.Description } : new Option<string?>(spec.Name) { Description = spec.Description }));
        }

        public void AddTo(Command c)
        {
            c.Add(Method); c.Add(Pooling);
            foreach (var (_, o) in options) c.Add(o);
        }

        /// <summary>The options asked for; <paramref name="implied"/> is the method when --method is not given (an adapter's).</summary>
        public PeftOptions Read(ParseResult p, string? implied = null)
        {
            var name = p.GetValue(Method) ?? implied ?? PeftOptions.Full;
            var method = MethodRegistry.Get(name);
            var given = new Dictionary<string, string>();
            foreach (var (spec, option) in options)
            {
                string? value = option is Option<bool> flag ? (p.GetValue(flag) ? "true" : null) : p.GetValue((Option<string?>)option);
                if (value is null) continue;
                if (!method.CliOptions.Any(o => o.Name == spec.Name))
                {
                    var owners = MethodRegistry.All.Where(m => m.CliOptions.Any(o => o.Name == spec.Name)).Select(m => m.Name);
                    throw new EngineException($"train: {spec.Name} is an option of --method {string.Join(" or ", owners)}, not of --method {name}");
                }
                given[spec.Name] = value;
            }
            return new PeftOptions { Method = name, Pooling = p.GetValue(Pooling), Settings = method.FromCli(new OptionValues(given)) };
        }
    }

    private static Option<string?> AdapterOption(string what) =>
        new("--adapter") { Description = $"an adapter folder in PEFT's format (adapter_config.json + adapter_model.safetensors) {what}" };

    public static Command Train()
    {
        var data = new DataArgs();
        var model = new Option<string>("--model") { Description = "Hugging Face model folder (config.json, model.safetensors, tokenizer files)", Required = true };
        var train = new Option<string>("--train") { Description = "training data (TSV, CSV, JSON Lines, or a GLUE/SentEval file with --task)", Required = true };
        var eval = new Option<string?>("--eval") { Description = "evaluation data (same format)" };
        var epochs = new Option<int>("--epochs") { Description = "epochs", DefaultValueFactory = _ => 3 };
        var steps = new Option<int?>("--steps") { Description = "optimizer steps (instead of epochs)" };
        var lr = new Option<double?>("--lr") { Description = "peak learning rate (AdamW); default: the method's, " +
            string.Join(", ", MethodRegistry.All.GroupBy(m => m.DefaultLearningRate).Select(g => $"{string.Join("/", g.Select(m => m.Name))} {Rate(g.Key)}")) };
        var headLr = new Option<double?>("--head-lr") { Description = "peak learning rate of the classification head and the depth-wise pooling weights (default: --lr); the same schedule" };
        var seed = new Option<int>("--seed") { Description = "seed (data order, initialisation, dropout)", DefaultValueFactory = _ => 42 };
        var device = Cli.DeviceOption();
        var output = new Option<string>("--out") { Description = "output folder: checkpoints, metrics.jsonl, plots, eval.json", Required = true };
        var accum = new Option<int>("--grad-accum") { Description = "micro-batches per optimizer step", DefaultValueFactory = _ => 1 };
        var warmup = new Option<double>("--warmup") { Description = "warmup share of the steps", DefaultValueFactory = _ => 0.1 };
        var decay = new Option<double>("--weight-decay") { Description = "AdamW weight decay (not on biases and norm weights)", DefaultValueFactory = _ => 0.01 };
        var schedule = new Option<string>("--schedule") { Description = "constant, linear or cosine", DefaultValueFactory = _ => "linear" };
        var clip = new Option<double>("--clip") { Description = "gradient-norm clipping (0: off)", DefaultValueFactory = _ => 1.0 };
        var evalEvery = new Option<int?>("--eval-every") { Description = "evaluate and save checkpoints every N steps and at epoch ends (0: only after the last step)" };
        var patience = new Option<int?>("--early-stopping") { Description = "stop after N evaluations without improvement" };
        var bucket = new Option<bool>("--bucket") { Description = "batch examples of similar length together" };
        var resume = new Option<string?>("--resume") { Description = "continue from a checkpoint folder (OUT/checkpoint-last)" };
        var logEvery = new Option<int>("--log-every") { Description = "write a training line to metrics.jsonl every N steps", DefaultValueFactory = _ => 10 };
        var sample = new Option<int?>("--train-sample") { Description = "train on N examples drawn at random from --train (the same N for every --seed; see --sample-seed)" };
        var sampleSeed = new Option<int>("--sample-seed") { Description = "seed of the --train-sample draw", DefaultValueFactory = _ => 0 };
        var adapter = AdapterOption("to load onto --model and keep training");
        var faults = new FaultArgs();
        var dtype = DTypeOption.Create();
        var methods = new MethodArgs();
        var cmd = new Command("train", "Fine-tune a Hugging Face folder for text classification")
            { model, train, eval, epochs, steps, lr, headLr, seed, device, output, accum, warmup, decay, schedule, clip, evalEvery, patience, bucket, resume, logEvery, sample, sampleSeed, adapter };
        data.AddTo(cmd);
        methods.AddTo(cmd);
        faults.AddTo(cmd);
        cmd.Options.Add(dtype);
        cmd.SetAction(Cli.Action(p =>
        {
            Ranks.Open();
            var on = Cli.OpenDevice(p.GetValue(device));
            var resumeDir = p.GetValue(resume);
            if (resumeDir is not null) AtomicFolder.Recover(resumeDir); // a checkpoint write killed half-way
            var folder = HfModelFolder.Open(resumeDir ?? p.GetValue(model)!);
            var task = p.GetValue(data.Task);
            bool regression = IsRegressionTask(task);
            var known = resumeDir is null ? null : LabelMap.FromConfig(folder.Id2Label);
            var trainSet = data.Read(p, p.GetValue(train)!, known, regression);
            if (p.GetValue(sample) is int n) trainSet = trainSet.Sample(n, p.GetValue(sampleSeed));
            var evalPath = p.GetValue(eval);
            var evalSet = evalPath is null ? null : data.Read(p, evalPath, trainSet.Labels, trainSet.IsRegression);
            var adapterDir = p.GetValue(adapter);
            var adapterMethod = adapterDir is null ? null : AdapterFiles.ReadConfig(adapterDir).Method.Name;
            var options = new TrainOptions
            {
                Epochs = p.GetValue(epochs), MaxSteps = p.GetValue(steps), LearningRate = p.GetValue(lr), HeadLearningRate = p.GetValue(headLr), BatchSize = p.GetValue(data.Batch),
                MaxLength = p.GetValue(data.MaxLen), Seed = p.GetValue(seed), GradientAccumulation = p.GetValue(accum),
                WarmupRatio = p.GetValue(warmup), WeightDecay = p.GetValue(decay), Schedule = p.GetValue(schedule)!, MaxGradNorm = p.GetValue(clip),
                EvalEvery = p.GetValue(evalEvery), EarlyStoppingPatience = p.GetValue(patience), BucketByLength = p.GetValue(bucket),
                Task = task, OutDir = p.GetValue(output), LogEvery = Math.Max(1, p.GetValue(logEvery)), Peft = methods.Read(p, adapterMethod),
                Device = on, Precision = p.GetValue(dtype)!,
            };
            options = faults.Apply(p, options);
            if (adapterMethod is not null && options.Peft.Method != adapterMethod)
                throw new EngineException($"--adapter {adapterDir}: a {adapterMethod} adapter trains with --method {adapterMethod}, not {options.Peft.Method}");
            options.Validate();
            Run(folder, trainSet, evalSet, Ranks.ForThisRank(options), resumeDir, adapterDir);
            return 0;
        }));
        return cmd;
    }

    /// <summary>A learning rate as 2e-5, 1e-3, 5e-4.</summary>
    private static string Rate(double lr) => lr.ToString("0.###e0", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Loads, trains, writes plots and prints the summary (also used by `engine demo`).</summary>
    public static TrainResult Run(HfModelFolder folder, Dataset trainSet, Dataset? evalSet, TrainOptions options, string? resumeDir = null, string? adapterDir = null)
    {
        Console.WriteLine($"data: {trainSet.Count:N0} training examples from {trainSet.Source}" +
                          (evalSet is null ? "" : $", {evalSet.Count:N0} evaluation examples") +
                          (trainSet.IsRegression ? " (regression)" : $", {trainSet.Labels!.Count} labels: {string.Join(", ", trainSet.Labels.Names)}"));
        var run = TrainingPipeline.Load(folder, options, trainSet.OutputCount, trainSet.Labels?.Names, trainSet.IsRegression, adapterDir, Console.Error.WriteLine);
        var net = run.Model;
        var method = net.Peft is { } peft ? peft.Options.Method + (peft.Pooling is null ? "" : $", pooling {peft.Pooling}") : "full";
        Console.WriteLine($"model: {folder.ModelType} from {folder.Path}; method {method}: {net.ParameterCount(trainableOnly: true):N0} of {net.ParameterCount():N0} parameters trained" +
                          (options.Device is { Kind: not DeviceKind.Cpu } d ? $"; on {d}" : ""));
        Console.WriteLine($"optimizer: AdamW, peak learning rate {Rate(options.PeakLearningRate)}" + (options.LearningRate is null ? $" (the {options.Peft.Method} method's default; --lr to change)" : "") +
                          $", {options.Schedule} schedule, warmup {options.WarmupRatio * 100:0.#}%");
        Console.WriteLine(PeftSetup.ParameterTable(net));
        var progress = new ProgressPrinter();
        var result = run.Train(trainSet.Examples, evalSet?.Examples, progress.Report, resumeDir);
        progress.Done();
        if (options.OutDir is not null)
        {
            var metrics = Path.Combine(options.OutDir, Trainer.MetricsFile);
            if (File.Exists(metrics)) Plots.FromMetricsLog(metrics, options.OutDir);
        }
        if (net.Pooling?.Weights is not null) ReportDepthWeights(net.Pooling.LayerLabels, net.Pooling.LayerWeights(), options.OutDir);
        var evalText = string.Join(", ", result.FinalEval.Select(kv => $"{kv.Key} {kv.Value:F4}"));
        Console.WriteLine($"done: {result.Steps} steps in {result.Time.TotalSeconds:F1} s, {result.TokensPerSecond:N0} tokens/s" +
                          (result.FinalEval.Count > 0 ? $"; final eval: {evalText}; best {result.PrimaryMetric} {result.BestMetric:F4} at step {result.BestStep}" : "") +
                          (result.StoppedEarly ? " (stopped early)" : ""));
        if (options.OutDir is not null) Console.WriteLine($"wrote {options.OutDir}: {Trainer.BestCheckpoint}/, {Trainer.LastCheckpoint}/, {Trainer.MetricsFile}, {Trainer.EvalFile}, loss.png");
        return result;
    }

    /// <summary>Prints the learned depth-wise weights (one line per layer) and, with an out
    /// folder, plots them to OUT/depth_weights.png.</summary>
    public static void ReportDepthWeights(IReadOnlyList<string> labels, double[] weights, string? outDir)
    {
        Console.WriteLine("depth-wise pooling weights (per layer):");
        double max = weights.Select(Math.Abs).DefaultIfEmpty(1).Max();
        for (int i = 0; i < weights.Length; i++)
            Console.WriteLine($"  layer {labels[i],-4} {weights[i],8:F4}  {new string('#', (int)Math.Round(30 * Math.Abs(weights[i]) / Math.Max(max, 1e-12)))}");
        if (outDir is null) return;
        var png = Path.Combine(outDir, DepthWeightsPlot);
        Plots.Bars("Depth-wise pooling weights per layer", labels, weights, png);
        Console.WriteLine($"wrote {png}");
    }

    public const string DepthWeightsPlot = "depth_weights.png";

    public static Command Eval()
    {
        var data = new DataArgs();
        var model = new Option<string>("--model") { Description = "a fine-tuned Hugging Face folder (e.g. OUT/checkpoint-best)", Required = true };
        var file = new Option<string>("--data") { Description = "labelled data", Required = true };
        var adapter = AdapterOption("to load onto --model (then the base model)");
        var device = Cli.DeviceOption();
        var cmd = new Command("eval", "Evaluate a fine-tuned folder on labelled data") { model, file, adapter, device };
        data.AddTo(cmd);
        cmd.SetAction(Cli.Action(p =>
        {
            var on = Cli.OpenDevice(p.GetValue(device));
            var (run, labels, regression) = LoadTrained(p, data, on, p.GetValue(model)!, p.GetValue(adapter));
            var set = data.Read(p, p.GetValue(file)!, labels, regression);
            var metrics = run.Evaluate(set.Examples);
            foreach (var (k, v) in metrics) Console.WriteLine($"{k,-10} {v:F4}");
            Console.WriteLine(JsonSerializer.Serialize(metrics));
            return 0;
        }));
        return cmd;
    }

    public static Command Predict()
    {
        var data = new DataArgs();
        var model = new Option<string>("--model") { Description = "a fine-tuned Hugging Face folder", Required = true };
        var file = new Option<string>("--data") { Description = "data to label (a label column is not needed)", Required = true };
        var output = new Option<string>("--out") { Description = "JSON Lines output: one {label, probabilities} per example", Required = true };
        var adapter = AdapterOption("to load onto --model (then the base model)");
        var device = Cli.DeviceOption();
        var cmd = new Command("predict", "Label data with a fine-tuned folder") { model, file, output, adapter, device };
        data.AddTo(cmd);
        cmd.SetAction(Cli.Action(p =>
        {
            var on = Cli.OpenDevice(p.GetValue(device));
            var (run, labels, regression) = LoadTrained(p, data, on, p.GetValue(model)!, p.GetValue(adapter));
            var set = data.Read(p, p.GetValue(file)!, labels, regression, unlabelled: true);
            var preds = run.Predict(set.Examples);
            var outPath = p.GetValue(output)!;
            var lines = preds.Select(pr => regression
                ? JsonSerializer.Serialize(new { value = pr.Value })
                : JsonSerializer.Serialize(new
                {
                    label = labels?.Name(pr.Label) ?? pr.Label.ToString(),
                    probabilities = pr.Probabilities.Select((q, i) => (labels?.Name(i) ?? i.ToString(), q)).ToDictionary(x => x.Item1, x => Math.Round(x.q, 6)),
                }));
            var tmp = outPath + ".tmp";
            File.WriteAllLines(tmp, lines);
            File.Move(tmp, outPath, overwrite: true);
            Console.WriteLine($"wrote {preds.Count:N0} predictions to {outPath}");
            return 0;
        }));
        return cmd;
    }

    /// <summary>A fine-tuned folder (or a base folder with --adapter) ready to evaluate or predict on <paramref name="on"/>.</summary>
    private static (TrainingPipeline Run, LabelMap? Labels, bool Regression) LoadTrained(ParseResult p, DataArgs data, Device on, string path, string? adapter)
    {
        var task = p.GetValue(data.Task);
        var options = new TrainOptions { BatchSize = p.GetValue(data.Batch), MaxLength = p.GetValue(data.MaxLen), Task = task, Device = on };
        if (adapter is not null)
        {
            // The base model from --model, the adapter and the head from --adapter, merged for inference where the method can be.
            var classifier = TextClassifier.Load(path, Console.Error.WriteLine);
            classifier.LoadAdapter(adapter, Console.Error.WriteLine);
            if (classifier.Model!.Peft?.Method.CanMerge == true) PeftSetup.Merge(classifier.Model);
            bool isRegression = IsRegressionTask(task) || classifier.IsRegression;
            var adapterLabels = isRegression ? null : classifier.Labels;
            return (new TrainingPipeline(classifier.Folder, classifier.Tokenizer, classifier.Model, options, adapterLabels?.Names, isRegression), adapterLabels, isRegression);
        }
        var folder = HfModelFolder.Open(path);
        var labels = LabelMap.FromConfig(folder.Id2Label);
        bool regression = IsRegressionTask(task) || folder.IsRegression;
        var net = SequenceClassifier.FromFolder(folder, log: Console.Error.WriteLine);
        if (net.HeadInitialisedRandomly)
            throw new EngineException($"{path}: the folder has no trained classification head; train it first with engine train");
        if (regression) labels = null;
        return (new TrainingPipeline(folder, TextTokenizer.FromFolder(folder), net, options, labels?.Names, regression), labels, regression);
    }

    /// <summary>The task's preset says whether its target is a real value (STS-B).</summary>
    private static bool IsRegressionTask(string? task) => task is not null && TaskPreset.Find(task)?.IsRegression == true;
}
