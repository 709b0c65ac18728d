using System.Globalization;
using System.Text.Json.Nodes;
using Engine.Models.Tokenization;

namespace Engine.Models.Peft;

/// <summary>
/// A fine-tuning method: what `engine train --method NAME` and <see cref="PeftOptions.Method"/>
/// select. One method lives in one folder under src/Models/Peft (its options record, this class,
/// its <see cref="InstalledMethod"/> and its modules) and is made known by one line in
/// <see cref="MethodRegistry"/>; nothing else names it. The method declares:
/// <list type="bullet">
/// <item>its name, a one-line description, and its options: a <see cref="MethodOptions"/> record
/// (the library form, validated by the record) and the CLI options that fill it
/// (<see cref="CliOptions"/>, read back by <see cref="FromCli"/>);</item>
/// <item>how its options go to and from config.json's "engine_peft".NAME section
/// (<see cref="InstalledMethod.ConfigSection"/>, <see cref="FromConfig"/>), so a checkpoint reloads with the method;</item>
/// <item>how it installs on a loaded classifier (<see cref="Install"/>, through the model's
/// <see cref="ModelHooks"/> and <see cref="SequenceClassifier.Attach"/>), returning what it
/// installed: which parameters train, which are saved, their parameter-table group, and its
/// adapter files;</item>
/// <item>optionally, which PEFT adapter_config.json it reads (<see cref="FromAdapterConfig"/>).</item>
/// </list>
/// See docs/peft.md, "How to add a method".
/// </summary>
public abstract class FineTuningMethod
{
    /// <summary>The --method value and config.json's "engine_peft".method (lower case).</summary>
    public abstract string Name { get; }

    /// <summary>One line: what trains (shown by --help and docs).</summary>
    public abstract string Description { get; }

    /// <summary>The options record with every default; its type is the method's options type.</summary>
    public abstract MethodOptions Defaults { get; }

    /// <summary>The peak learning rate of a run that gives none (<c>--lr</c>, <see cref="Training.TrainOptions.LearningRate"/>):
    /// the method's usual rate for base-size models in its papers and in PEFT practice. Full fine-tuning's 2e-5 is
    /// BERT's; a method that trains a few new parameters from scratch wants a far larger one. (The engine's own
    /// 11 M-parameter backbones wanted larger rates still: docs/results.md, finding 25.)</summary>
    public virtual double DefaultLearningRate => 2e-5;

    /// <summary>The method's own CLI options (each name used by this method only; "--lora-r").</summary>
    public virtual IReadOnlyList<MethodOption> CliOptions => [];

    /// <summary>The options from the CLI values of <see cref="CliOptions"/> (only those given are in <paramref name="given"/>).</summary>
    public virtual MethodOptions FromCli(OptionValues given) => Defaults;

    /// <summary>The options from config.json's "engine_peft".NAME section (null when the
    /// checkpoint has none); a malformed section throws (caught and reported with the file by the caller).</summary>
    public virtual MethodOptions FromConfig(JsonNode? section) => Defaults;

    /// <summary>
    /// Adds the method to <paramref name="model"/> (whose base weights are loaded, or load right
    /// after when <see cref="MethodContext.Restoring"/>): new modules through
    /// <see cref="SequenceClassifier.Attach"/> (made on the CPU; the caller moves the model),
    /// forward changes through <see cref="SequenceClassifier.Hooks"/>. Does not set RequiresGrad:
    /// the caller freezes by <see cref="InstalledMethod.Trains"/>.
    /// </summary>
    public abstract InstalledMethod Install(SequenceClassifier model, MethodOptions options, MethodContext context);

    /// <summary>The options an adapter_config.json in PEFT's format stands for, or null when the
    /// file is not this method's (another peft_type). Throws for a file of this method with
    /// settings the engine does not support.</summary>
    public virtual MethodOptions? FromAdapterConfig(JsonNode config, string path) => null;

    /// <summary>The options cast to the method's type (validated by <see cref="PeftOptions.Validate"/> before).</summary>
    protected static T OptionsAs<T>(MethodOptions options) where T : MethodOptions => (T)options;
}

/// <summary>A method's options (one record per method; <see cref="NoOptions"/> for methods without).</summary>
public abstract record MethodOptions
{
    /// <summary>Throws an <see cref="EngineException"/> naming the bad option.</summary>
    public virtual void Validate() { }
}

/// <summary>The options of a method that has none (full, head, bitfit).</summary>
public sealed record NoOptions : MethodOptions
{
    public static readonly NoOptions Instance = new();
}

/// <summary>One CLI option of a method: "--lora-r", what it means (with its default), and
/// whether it is a flag (no value).</summary>
public sealed record MethodOption(string Name, string Description, bool IsFlag = false);

/// <summary>The values given on the command line for one method's options, typed on reading;
/// a value that does not parse is an error naming the option.</summary>
public sealed class OptionValues(IReadOnlyDictionary<string, string> given)
{
    public bool Has(string name) => given.ContainsKey(name);

    public string? String(string name) => given.GetValueOrDefault(name);

    public bool Flag(string name) => given.TryGetValue(name, out var v) && v != "false";

    public int Int(string name, int fallback) => Parse(name, fallback, (string s, out int v) => int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out v), "an integer");

    public int? Int(string name) => Has(name) ? Int(name, 0) : null;

    public double Double(string name, double fallback) =>
        Parse(name, fallback, (string s, out double v) => double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out v), "a number");

    private delegate bool TryParse<T>(string text, out T value);

    private T Parse<T>(string name, T fallback, TryParse<T> parse, string what)
    {
        if (!given.TryGetValue(name, out var text)) return fallback;
        return parse(text, out var v) ? v : throw new EngineException($"{name} '{text}': expected {what}");
    }
}

/// <summary>What a method may use while installing (beyond the model itself).</summary>
public sealed record MethodContext
{
    /// <summary>The generator to draw initial values from: a fixed function of the run's seed.</summary>
    public required Random Rng { get; init; }

    /// <summary>The model's tokenizer (prompt initialisation from a text; a method that encodes
    /// label texts with the frozen backbone before training); null when the caller has none.</summary>
    public TextTokenizer? Tokenizer { get; init; }

    /// <summary>The task's label names in head order, when known.</summary>
    public IReadOnlyList<string>? LabelNames { get; init; }

    /// <summary>The base model's folder (absolute), written into adapter files.</summary>
    public string? BaseModelPath { get; init; }

    /// <summary>True when re-installing from a checkpoint: the trained values load right after,
    /// so data-dependent initialisation can be skipped.</summary>
    public bool Restoring { get; init; }

    /// <summary>The method's saved "engine_peft".NAME section when restoring (null otherwise).</summary>
    public JsonNode? SavedSection { get; init; }
}

/// <summary>
/// What a method installed on one model: kept at <see cref="PeftState.Method"/>. It says which
/// parameters train (every method but full trains the head and the pooling weights:
/// <see cref="TrainsHeadOrPooling"/>), which are saved, how its own parameters are grouped in the
/// parameter table, what it writes into config.json, and its PEFT-format adapter files.
/// </summary>
public abstract class InstalledMethod
{
    /// <summary>Whether the method trains this parameter (by its model name).</summary>
    public abstract bool Trains(string parameterName);

    /// <summary>Whether model.safetensors holds this parameter (false: e.g. merged adapters).</summary>
    public virtual bool Saves(string parameterName) => true;

    /// <summary>The parameter-table row of the method's own parameters ("LoRA adapters"), null for others.</summary>
    public virtual string? GroupOf(string parameterName) => null;

    /// <summary>The "engine_peft".NAME section of config.json (null: none), read back by <see cref="FineTuningMethod.FromConfig"/>.</summary>
    public virtual JsonObject? ConfigSection() => null;

    /// <summary>PEFT's adapter_config.json for this model (null: the method writes no adapter files).
    /// With it, checkpoints also hold adapter_model.safetensors with the parameters
    /// <see cref="InAdapter"/> selects and the head (<see cref="AdapterFiles"/>).</summary>
    public virtual JsonObject? AdapterConfig(string baseModelPath) => null;

    /// <summary>Whether a parameter goes into adapter_model.safetensors (besides the head) and must be in one that loads.</summary>
    public virtual bool InAdapter(string parameterName) => false;

    /// <summary>For a method that classifies (text, candidate label) pairs instead of reading K
    /// logits off one row: how the trainer maps a batch's examples to the rows it trains on and the
    /// rows' logits back to K-way scores (<see cref="LabelPairing"/>); null for every other method.</summary>
    public virtual LabelPairing? Pairing => null;

    /// <summary>Whether <see cref="Merge"/> can fold the method into the base weights.</summary>
    public virtual bool CanMerge => false;

    /// <summary>Folds the method into the base weights in place: the model then computes the same
    /// function without the method's path, and a saved folder is a plain model.</summary>
    public virtual void Merge() => throw new EngineException("this method cannot be merged into the base weights");

    public virtual void Unmerge() { }

    /// <summary>
    /// The stages of a multi-stage method, in order (empty: one stage, the whole run). The trainer
    /// splits the run's steps among them (<see cref="TrainingStage"/>), gives each its own
    /// optimizer and learning-rate schedule, and moves the model on with <see cref="EnterStage"/>
    /// at each boundary; which parameters train is then <see cref="Trains"/> again.
    /// </summary>
    public virtual IReadOnlyList<TrainingStage> Stages => [];

    /// <summary>The stage the model is in (0-based; written into config.json by multi-stage
    /// methods, so a checkpoint reloads in its stage).</summary>
    public virtual int Stage => 0;

    /// <summary>Moves the model into stage <paramref name="stage"/> (the next one): the method
    /// changes its parameters, modules and hooks in place.</summary>
    public virtual void EnterStage(int stage) => throw new EngineException("this method has a single stage");

    /// <summary>The head (classifier / score) and the depth-wise pooling weights.</summary>
    public static bool TrainsHeadOrPooling(string parameterName) =>
        SequenceClassifier.IsHead(parameterName) || parameterName.StartsWith(SequencePooling.ModuleName + ".", StringComparison.Ordinal);

    /// <summary>True for a parameter under the attached module <paramref name="module"/> ("prefix_encoder").</summary>
    public static bool Under(string module, string parameterName) => parameterName.StartsWith(module + ".", StringComparison.Ordinal);
}

/// <summary>One stage of a multi-stage method (<see cref="InstalledMethod.Stages"/>): its name
/// (logged at the boundary), its length as <paramref name="Epochs"/> (passes over the training
/// set) or as <paramref name="Share"/> of the run's steps (the last stage: the steps left), and
/// its peak learning rate (null: the run's). Each stage has its own warmup and decay of the run's
/// schedule over its own steps.</summary>
public sealed record TrainingStage(string Name, double? Epochs = null, double? Share = null, double? LearningRate = null)
{
    /// <summary>The optimizer steps of the stages in a run of <paramref name="total"/> steps with
    /// <paramref name="stepsPerEpoch"/> steps per epoch: each stage's end step (the last ends at
    /// <paramref name="total"/>); every stage gets at least one step.</summary>
    public static int[] Ends(IReadOnlyList<TrainingStage> stages, int total, double stepsPerEpoch)
    {
        if (stages.Count == 0) return [total];
        var ends = new int[stages.Count];
        int end = 0;
        for (int i = 0; i < stages.Count - 1; i++)
        {
            var s = stages[i];
            int steps = (int)Math.Round(s.Epochs is { } e ? e * stepsPerEpoch : (s.Share ?? 0) * total);
            end += Math.Max(1, steps);
            ends[i] = end;
        }
        ends[^1] = total;
        if (end >= total)
            throw new EngineException($"train: the run has {total} steps, too few for its stages ({string.Join(", ", stages.Take(stages.Count - 1).Select((s, i) => $"{s.Name}: {ends[i] - (i == 0 ? 0 : ends[i - 1])}"))} before the last)");
        return ends;
    }
}
