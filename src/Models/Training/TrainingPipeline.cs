using Engine.Models.Data;
using Engine.Models.Peft;
using Engine.Models.Tokenization;

namespace Engine.Models.Training;

/// <summary>
/// One fine-tuning run, the one path `engine train` / `eval` / `predict` and
/// <see cref="TextClassifier"/> share:
/// <code>
/// load the folder (a checkpoint re-installs its method; a new label count gets a fresh head)
///   → load an adapter (PEFT format), if any
///   → apply the method once (PeftSetup.Apply: install, freeze)
///   → move to the device once
///   → train / evaluate / predict (Trainer) → save
/// </code>
/// The method and the device come from <see cref="TrainOptions.Peft"/> and
/// <see cref="TrainOptions.Device"/>; the <see cref="Trainer"/> only runs the loop.
/// </summary>
public sealed class TrainingPipeline
{
    public HfModelFolder Folder { get; }
    public TextTokenizer Tokenizer { get; }
    public SequenceClassifier Model { get; }
    public TrainOptions Options { get; }
    public IReadOnlyList<string>? LabelNames { get; }
    public bool IsRegression { get; }
    private readonly Trainer trainer;

    /// <summary>Takes a built model (loaded from <paramref name="folder"/>), applies the method of
    /// <paramref name="options"/> to it and moves it to <see cref="TrainOptions.Device"/>.</summary>
    public TrainingPipeline(HfModelFolder folder, TextTokenizer tokenizer, SequenceClassifier model, TrainOptions options,
        IReadOnlyList<string>? labelNames, bool regression)
    {
        options.Validate();
        Folder = folder;
        Tokenizer = tokenizer;
        Model = model;
        Options = options;
        LabelNames = labelNames;
        IsRegression = regression;
        PeftSetup.Apply(model, options.Peft, folder.Path, tokenizer, options.Seed, labelNames);
        if (options.Device is { } device) model.To(device);
        trainer = new Trainer(model, folder, tokenizer, options, labelNames, regression);
    }

    /// <summary>Loads <paramref name="folder"/> with a head of <paramref name="outputCount"/>
    /// outputs (a checkpoint with its method), then <paramref name="adapterDir"/>'s adapter when
    /// given, and prepares the run.</summary>
    public static TrainingPipeline Load(HfModelFolder folder, TrainOptions options, int outputCount, IReadOnlyList<string>? labelNames, bool regression,
        string? adapterDir = null, Action<string>? log = null)
    {
        options.Validate();
        var model = SequenceClassifier.FromFolder(folder, options.Seed, log: log, numLabels: outputCount);
        if (adapterDir is not null) AdapterFiles.Load(model, adapterDir, folder.Path, log, options.Seed);
        return new TrainingPipeline(folder, TextTokenizer.FromFolder(folder), model, options, labelNames, regression);
    }

    /// <summary>The task's primary metric (what early stopping and the best checkpoint use).</summary>
    public string PrimaryMetric => trainer.PrimaryMetric;

    /// <summary>Trains; <paramref name="resumeFrom"/> continues a run from its checkpoint folder. A
    /// method with stages (<see cref="InstalledMethod.Stages"/>) trains them in this one run (the
    /// <see cref="Trainer"/> moves the model on at each boundary).</summary>
    public TrainResult Train(IReadOnlyList<Example> train, IReadOnlyList<Example>? eval, Action<TrainEvent>? progress = null, string? resumeFrom = null) =>
        trainer.Train(train, eval, progress, resumeFrom);

    public Dictionary<string, double> Evaluate(IReadOnlyList<Example> data) => trainer.Evaluate(data);

    public List<Prediction> Predict(IReadOnlyList<Example> data) => trainer.Predict(data);

    /// <summary>Writes the model as a Hugging Face folder (config with labels, weights, tokenizer
    /// files; a method with adapter files writes them too), atomically; with <paramref name="merge"/>
    /// the method is folded into the weights first (the model stays merged).</summary>
    public void Save(string dir, bool merge = false)
    {
        if (merge) PeftSetup.Merge(Model);
        AtomicFolder.Write(dir, tmp => Model.SaveInto(tmp, Folder, LabelNames));
    }
}
