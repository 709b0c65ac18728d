using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Engine.Models;
using Engine.Models.Pretraining;
using Engine.Models.Tokenization;

namespace Engine.Cli.Commands;

/// <summary>`engine pretrain` (BERT masked-LM or Llama causal-LM pretraining on plain text) and
/// `engine eval-lm` (held-out perplexity / MLM accuracy of a language-model folder next to the
/// unigram baseline). See docs/pretraining.md.</summary>
public static class PretrainCommands
{
    public static Command Pretrain()
    {
        var arch = new Option<string?>("--arch") { Description = "bert (masked LM) or llama (causal LM); implied by --preset" };
        var preset = new Option<string?>("--preset") { Description = $"model shape: {string.Join(", ", LmPresets.All.Keys)}" };
        var config = new Option<string?>("--config") { Description = "a config.json giving the shape instead of a preset (vocab_size comes from the tokenizer)" };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "BERT: a WordPiece vocab.txt; Llama: tokenizer.model (SentencePiece) or tokenizer.json" };
        var corpus = new Option<string[]>("--corpus") { Description = CorpusDescription("training text"), Required = true, AllowMultipleArgumentsPerToken = true };
        var allowEvalText = new Option<bool>("--allow-eval-text") { Description = "accept a --corpus file whose name says it is a dev/test/validation split (refused by default)" };
        var steps = new Option<int?>("--steps") { Description = "optimizer steps" };
        var tokens = new Option<long?>("--tokens") { Description = "training tokens (steps = tokens / (batch · seq), rounded up)" };
        var seq = new Option<int>("--seq") { Description = "tokens per packed row", DefaultValueFactory = _ => 128 };
        var batch = new Option<int>("--batch") { Description = "rows per step (under mpirun per rank: the global batch is ranks x batch)", DefaultValueFactory = _ => 32 };
        var lr = new Option<double>("--lr") { Description = "peak learning rate (AdamW)", DefaultValueFactory = _ => 1e-3 };
        var warmup = new Option<double>("--warmup") { Description = "warmup share of the steps", DefaultValueFactory = _ => 0.02 };
        var schedule = new Option<string>("--schedule") { Description = "constant, linear or cosine (after warmup)", DefaultValueFactory = _ => "cosine" };
        var seed = new Option<int>("--seed") { Description = "seed (initialisation, data order, masks, dropout)", DefaultValueFactory = _ => 0 };
        var wholeWord = new Option<bool>("--whole-word") { Description = "BERT: mask whole words (all pieces of a selected word)" };
        var mlmProbability = new Option<double>("--mlm-probability") { Description = "BERT: share of tokens selected for masking", DefaultValueFactory = _ => 0.15 };
        var heldOut = new Option<int>("--held-out-every") { Description = "every Nth packed row is held out for evaluation", DefaultValueFactory = _ => 100 };
        var evalRows = new Option<int>("--eval-rows") { Description = "held-out rows scored per evaluation (at most)", DefaultValueFactory = _ => 256 };
        var evalEvery = new Option<int>("--eval-every") { Description = "evaluate every N steps (and at the end)", DefaultValueFactory = _ => 500 };
        var saveEvery = new Option<int>("--save-every") { Description = "write OUT/checkpoint-last every N steps (and at the end)", DefaultValueFactory = _ => 500 };
        var logEvery = new Option<int>("--log-every") { Description = "a metrics.jsonl line every N steps", DefaultValueFactory = _ => 10 };
        var stopAfter = new Option<int?>("--stop-after-step") { Description = "end this session after step N of the run (evaluate, write checkpoint-last); --resume continues the same run" };
        var maxCorpus = new Option<long?>("--max-corpus-tokens") { Description = "stop reading the corpus after this many tokens" };
        var resume = new Option<string?>("--resume") { Description = "continue from OUT/checkpoint-last (same options and corpus)" };
        var output = new Option<string>("--out") { Description = "output folder: init/, checkpoint-last/ (the model), metrics.jsonl, loss.png", Required = true };
        var device = Cli.DeviceOption();
        var dtype = DTypeOption.Create();
        var cmd = new Command("pretrain", "Pretrain a BERT (masked LM) or Llama (causal LM) from scratch on plain text or the text of data files")
        {
            arch, preset, config, tokenizer, corpus, steps, tokens, seq, batch, lr, warmup, schedule, seed, wholeWord, mlmProbability,
            heldOut, evalRows, evalEvery, saveEvery, logEvery, stopAfter, maxCorpus, resume, output, device, allowEvalText,
        };
        cmd.Options.Add(dtype);
        cmd.SetAction(Cli.Action(p =>
        {
            var world = Ranks.Open();   // `mpirun -np N engine pretrain`: data-parallel, rank 0 writes
            if (!p.GetValue(allowEvalText)) CorpusItem.RefuseEvaluationText(p.GetValue(corpus)!);
            var on = Cli.OpenDevice(p.GetValue(device));
            var outDir = p.GetValue(output)!;
            var resumeDir = p.GetValue(resume);
            int seedValue = p.GetValue(seed);
            int batchSize = p.GetValue(batch);
            // Every option checked before OUT/init is written (the step count, from the corpus, comes later).
            var options = new PretrainOptions
            {
                Steps = 1, BatchSize = batchSize, LearningRate = p.GetValue(lr), WarmupRatio = p.GetValue(warmup), Schedule = p.GetValue(schedule)!,
                Seed = seedValue, EvalEvery = p.GetValue(evalEvery), SaveEvery = p.GetValue(saveEvery), LogEvery = p.GetValue(logEvery),
                EvalRows = p.GetValue(evalRows), OutDir = outDir, Device = on, Precision = p.GetValue(dtype)!, StopAfter = p.GetValue(stopAfter),
            };
            options.Validate();
            int length = p.GetValue(seq);
            if (length < 2) throw new EngineException($"--seq: must be at least 2 tokens, got {length}");
            if (p.GetValue(steps) is int s0 && s0 < 1) throw new EngineException($"--steps: must be at least 1, got {s0}");
            if (p.GetValue(tokens) is long t0 && t0 < 1) throw new EngineException($"--tokens: must be at least 1, got {t0}");
            if (p.GetValue(steps) is null && p.GetValue(tokens) is null) throw new EngineException("give --steps N or --tokens N");
            foreach (var item in p.GetValue(corpus)!)
                if (CorpusItem.Parse(item).Path is var path && !File.Exists(path) && !Directory.Exists(path)) throw new EngineException($"--corpus {item}: no such file");
            HfModelFolder folder;
            if (resumeDir is not null) folder = HfModelFolder.Open(resumeDir);
            else
            {
                var tokenizerPath = p.GetValue(tokenizer) ?? throw new EngineException("--tokenizer: required for a new run (vocab.txt for BERT, tokenizer.model or tokenizer.json for Llama)");
                var (shape, overrides) = Shape(p.GetValue(arch), p.GetValue(preset), p.GetValue(config));
                var init = Path.Combine(outDir, "init");
                if (world.Rank == 0) LanguageModelFolder.Create(init, shape, tokenizerPath, seedValue, overrides);
                world.Barrier();   // the other ranks of a job read rank 0's folder
                folder = HfModelFolder.Open(init);
            }
            var model = LanguageModel.Load(folder, seedValue);
            var text = TextTokenizer.FromFolder(folder);
            int maxPositions = folder.Family == ModelFamily.Bert ? folder.BertConfig.MaxPositionEmbeddings : folder.LlamaConfig.MaxPositionEmbeddings;
            if (length > maxPositions) throw new EngineException($"--seq: {length} is longer than the model's {maxPositions} positions");
            var packed = ReadCorpus(folder, text, p.GetValue(corpus)!, length, p.GetValue(heldOut), p.GetValue(maxCorpus));
            long rowsPerStep = (long)batchSize * world.Size;
            int stepCount = p.GetValue(steps) ?? (int)Math.Min(int.MaxValue, (p.GetValue(tokens)!.Value + rowsPerStep * length - 1) / (rowsPerStep * length));
            var objective = LmObjective.For(model, text, p.GetValue(wholeWord), p.GetValue(mlmProbability));
            options = options with { Steps = stepCount };
            var trainer = new Pretrainer(objective, folder, packed, options);
            Console.WriteLine($"model: {model.Architecture} ({folder.ModelType}) from {folder.Path}: {model.ParameterCount():N0} parameters" +
                              (model is CausalLanguageModel c ? (c.Tied ? ", output layer tied to the embeddings" : ", untied lm_head") : ", MLM head tied to the word embeddings") +
                              (objective.Masker is { WholeWords: true } ? "; whole-word masking" : ""));
            Console.WriteLine($"run: {stepCount:N0} steps x {(world.Size > 1 ? $"{world.Size} ranks x " : "")}{batchSize} rows x {length} tokens = {stepCount * rowsPerStep * length:N0} tokens " +
                              $"({(double)stepCount * rowsPerStep / packed.TrainRows.Count:F2} epochs), lr {options.LearningRate}, {options.Schedule}, seed {seedValue}" +
                              (resumeDir is null ? "" : $"; resuming from {resumeDir}"));
            var progress = new ProgressPrinter();
            var result = trainer.Train(progress.Report, resumeDir);
            progress.Done();
            var metrics = Path.Combine(outDir, Pretrainer.MetricsFile);
            if (world.Rank == 0 && File.Exists(metrics)) Plots.FromMetricsLog(metrics, outDir, "held_out_loss");
            Console.WriteLine($"{(result.Steps < stepCount ? $"stopped after step {result.Steps:N0} of {stepCount:N0} (--resume {Path.Combine(outDir, Pretrainer.LastCheckpoint)} continues the run)" : "done")}: step {result.Steps:N0}, {result.Tokens:N0} tokens in {result.TrainingTime.TotalHours:F2} h of training (all sessions); this session {result.TokensPerSecond:N0} tokens/s");
            if (result.LastEval is { } e) Console.WriteLine(Summary(e, objective.Masked));
            Console.WriteLine($"wrote {outDir}: {Pretrainer.LastCheckpoint}/ (the model, a Hugging Face folder), {Pretrainer.MetricsFile}, loss.png");
            return 0;
        }));
        return cmd;
    }

    public static Command EvalLm()
    {
        var model = new Option<string>("--model") { Description = "a language-model folder (BertForMaskedLM or LlamaForCausalLM), e.g. OUT/checkpoint-last", Required = true };
        var corpus = new Option<string[]>("--corpus") { Description = CorpusDescription("text to score"), Required = true, AllowMultipleArgumentsPerToken = true };
        var unigramFrom = new Option<string[]>("--unigram-from") { Description = "text whose token frequencies make the unigram baseline (the training corpus); default: with --held-out-every the other rows, else the scored text itself (an oracle unigram, a stricter baseline)", AllowMultipleArgumentsPerToken = true };
        var seq = new Option<int>("--seq") { Description = "tokens per packed row", DefaultValueFactory = _ => 128 };
        var batch = new Option<int>("--batch") { Description = "rows per forward pass", DefaultValueFactory = _ => 16 };
        var maxRows = new Option<int?>("--max-rows") { Description = "score at most this many rows" };
        var heldOut = new Option<int?>("--held-out-every") { Description = "score only every Nth row (the held-out rows of a pretraining run with the same corpus and --seq)" };
        var device = Cli.DeviceOption();
        var cmd = new Command("eval-lm", "Held-out loss, perplexity and MLM / next-token accuracy of a language model, with the unigram baseline")
            { model, corpus, unigramFrom, seq, batch, maxRows, heldOut, device };
        cmd.SetAction(Cli.Action(p =>
        {
            var on = Cli.OpenDevice(p.GetValue(device));
            var folder = HfModelFolder.Open(p.GetValue(model)!);
            var lm = LanguageModel.Load(folder);
            lm.To(on);
            var text = TextTokenizer.FromFolder(folder);
            int length = p.GetValue(seq);
            int every = p.GetValue(heldOut) ?? 0;
            var packed = ReadCorpus(folder, text, p.GetValue(corpus)!, length, Math.Max(2, every), null);
            IReadOnlyList<int> rows = every >= 2 ? packed.HeldOutRows : Enumerable.Range(0, packed.RowCount).ToArray();
            if (p.GetValue(maxRows) is int cap) rows = rows.Take(cap).ToArray();
            if (rows.Count == 0) throw new EngineException($"eval-lm: the text gives no rows of {length} tokens");
            var objective = LmObjective.For(lm, text);
            bool CanBeTarget(int id) => objective.Masker is not { } m || !m.IsSpecial(id);
            var from = p.GetValue(unigramFrom) is { Length: > 0 } files ? ReadCorpus(folder, text, files, length, 2, null) : null;
            // The baseline's frequencies: the given text; else, for held-out rows, the other rows of the
            // same text (what engine pretrain counts); else the scored rows themselves.
            var counts = from is not null ? UnigramBaseline.Count(from, Enumerable.Range(0, from.RowCount), lm.VocabSize)
                : every >= 2 ? UnigramBaseline.Count(packed, packed.TrainRows, lm.VocabSize)
                : UnigramBaseline.Count(packed, rows, lm.VocabSize);
            string source = from is not null ? string.Join(", ", p.GetValue(unigramFrom)!) : every >= 2 ? "the training rows of the same text" : "the scored text itself";
            var clock = Stopwatch.StartNew();
            var result = LmEvaluator.Evaluate(objective, packed, rows, p.GetValue(batch), new UnigramBaseline(counts, CanBeTarget));
            Console.WriteLine($"scored {rows.Count:N0} rows of {length} tokens in {clock.Elapsed.TotalSeconds:F1} s; unigram frequencies from {source}");
            Console.WriteLine(Summary(result, objective.Masked));
            Console.WriteLine(JsonSerializer.Serialize(result.ToMetrics(objective.Masked)));
            return 0;
        }));
        return cmd;
    }

    private static string CorpusDescription(string what) =>
        $"{what}: plain-text files (documents separated by blank lines), data files (.tsv, .csv, .jsonl: one document per example) " +
        "or TASK:PATH benchmark files (sst2:glue/SST-2/train.tsv, mr:senteval/MR)";

    private static string Summary(LmEvalResult e, bool masked) =>
        $"held-out: loss {e.Loss:F4}, perplexity {e.Perplexity:F2}, {(masked ? "MLM" : "next-token")} accuracy {e.Accuracy:P2} over {e.Scored:N0} scored tokens; " +
        $"unigram baseline: loss {e.UnigramLoss:F4}, perplexity {e.UnigramPerplexity:F2}, accuracy {e.UnigramAccuracy:P2}";

    private static PackedCorpus ReadCorpus(HfModelFolder folder, TextTokenizer tokenizer, string[] files, int length, int heldOutEvery, long? maxTokens)
    {
        var (start, separator) = LmObjective.Delimiters(folder, tokenizer);
        var clock = Stopwatch.StartNew();
        var (stream, documents) = PackedCorpus.Tokenise(files, t => tokenizer.EncodeWithoutSpecialTokens(t), separator, maxTokens);
        var packed = new PackedCorpus(stream, documents, length, start, heldOutEvery);
        Console.WriteLine($"corpus: {files.Length} item(s), {documents:N0} documents, {stream.Length:N0} tokens (tokenised in {clock.Elapsed.TotalSeconds:F1} s); " +
                          $"{packed.RowCount:N0} rows of {length}: {packed.TrainRows.Count:N0} training, {packed.HeldOutRows.Count:N0} held out");
        return packed;
    }

    /// <summary>The model shape from --preset, or from --config (with --arch or its model_type).</summary>
    private static (LmShape Shape, JsonObject? Overrides) Shape(string? arch, string? preset, string? configPath)
    {
        if (preset is not null && configPath is not null) throw new EngineException("give --preset or --config, not both");
        if (preset is not null)
        {
            var shape = LmPresets.Get(preset);
            if (arch is not null && arch != shape.Arch) throw new EngineException($"--arch {arch} does not match --preset {preset} ({shape.Arch})");
            return (shape, null);
        }
        if (configPath is null) throw new EngineException("give --preset NAME or --config FILE");
        if (!File.Exists(configPath)) throw new EngineException($"{configPath}: no such file");
        JsonObject config;
        try { config = JsonNode.Parse(File.ReadAllText(configPath)) as JsonObject ?? throw new JsonException("not a JSON object"); }
        catch (JsonException e) { throw new EngineException($"{configPath}: not valid JSON ({e.Message.Split('\n')[0]})"); }
        var family = arch ?? (config["model_type"]?.GetValue<string>() is { } type ? HfModelFolder.FamilyOf(type) switch
        {
            ModelFamily.Bert => "bert", ModelFamily.Llama => "llama", _ => null,
        } : null) ?? throw new EngineException($"{configPath}: no model_type (bert or llama); give --arch");
        int Get(string key) => config[key]?.GetValue<int>() ?? throw new EngineException($"{configPath}: no '{key}'");
        var shapeFromConfig = new LmShape(family, Get("num_hidden_layers"), Get("hidden_size"), Get("num_attention_heads"), Get("intermediate_size"),
            KeyValueHeads: config["num_key_value_heads"]?.GetValue<int>() ?? 0, MaxPositions: config["max_position_embeddings"]?.GetValue<int>() ?? 512,
            TieEmbeddings: config["tie_word_embeddings"]?.GetValue<bool>() ?? family == "bert");
        return (shapeFromConfig, config);
    }
}
