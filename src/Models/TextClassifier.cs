using Engine.Models.Data;
using Engine.Models.Peft;
using Engine.Models.Tokenization;
using Engine.Models.Training;

namespace Engine.Models;

/// <summary>
/// The whole job in a few calls, for programs that embed the trainer:
/// <code>
/// var classifier = TextClassifier.Load("models/my-bert");
/// var train = DatasetReader.Read("glue/SST-2/train.tsv", new DataOptions { Task = "sst2" });
/// var dev = DatasetReader.Read("glue/SST-2/dev.tsv", new DataOptions { Task = "sst2", Labels = train.Labels });
/// var result = classifier.Train(train, dev, new TrainOptions { Epochs = 3, Task = "sst2", OutDir = "runs/sst2" });
/// Console.WriteLine($"accuracy {result.FinalEval["accuracy"]:P1}");
/// var label = classifier.Predict(["a gripping, beautifully made film"])[0].Label;
/// classifier.Save("models/my-bert-sst2");
/// </code>
/// The model is built when its label count is known: at Load for a folder that already has a
/// trained head, at Train otherwise.
/// </summary>
public sealed class TextClassifier
{
    private TextClassifier(HfModelFolder folder, TextTokenizer tokenizer, SequenceClassifier? model, LabelMap? labels, bool regression)
    {
        Folder = folder;
        Tokenizer = tokenizer;
        Model = model;
        Labels = labels;
        IsRegression = regression;
    }

    public HfModelFolder Folder { get; }
    public TextTokenizer Tokenizer { get; }
    /// <summary>The network; null until <see cref="Train"/> for a folder without a trained head.</summary>
    public SequenceClassifier? Model { get; private set; }
    public LabelMap? Labels { get; private set; }
    public bool IsRegression { get; private set; }
    /// <summary>Options used by Evaluate/Predict (batch size, max length, task); Train replaces them.</summary>
    public TrainOptions Options { get; private set; } = new();

    /// <summary>Opens a Hugging Face folder and its tokenizer; loads the model when its config
    /// names labels (a fine-tuned folder).</summary>
    public static TextClassifier Load(string folder, Action<string>? log = null)
    {
        var f = HfModelFolder.Open(folder);
        var tokenizer = TextTokenizer.FromFolder(f);
        var labels = LabelMap.FromConfig(f.Id2Label);
        bool trained = labels is not null && !labels.IsPlaceholder;
        var model = trained ? SequenceClassifier.FromFolder(f, log: log) : null;
        bool regression = f.IsRegression;
        return new TextClassifier(f, tokenizer, model, trained ? labels : null, regression);
    }

    /// <summary>Loads an adapter in PEFT's format (adapter_config.json + adapter_model.safetensors,
    /// made by engine train or by PEFT itself, of any method that reads it) onto this folder's base weights. The
    /// head comes from the adapter; label names from the adapter folder's config.json when it has
    /// one with as many labels, else from the base folder's.</summary>
    public void LoadAdapter(string dir, Action<string>? log = null)
    {
        int count = AdapterFiles.HeadLabelCount(dir) ?? throw new EngineException($"--adapter {dir}: the adapter has no classification head (classifier / score)");
        var model = SequenceClassifier.FromFolder(Folder, log: log, numLabels: count);
        AdapterFiles.Load(model, dir, Folder.Path, log);
        Model = model;
        var labelSource = File.Exists(Path.Combine(dir, HfModelFolder.ConfigFileName)) && File.Exists(Path.Combine(dir, Engine.IO.SafeTensors.SingleFileName))
            ? HfModelFolder.Open(dir) : Folder;
        var labels = LabelMap.FromConfig(labelSource.Id2Label);
        Labels = labels is not null && labels.Count == count ? labels : new LabelMap(Enumerable.Range(0, count).Select(i => $"LABEL_{i}"));
        IsRegression = count == 1;
    }

    /// <summary>Fine-tunes on <paramref name="train"/> (building a head with its label count when
    /// needed) and evaluates on <paramref name="eval"/>, through the <see cref="TrainingPipeline"/>.</summary>
    public TrainResult Train(Dataset train, Dataset? eval, TrainOptions options, Action<TrainEvent>? progress = null, Action<string>? log = null, string? resumeFrom = null)
    {
        if (Model is null || Model.NumLabels != train.OutputCount)
            Model = SequenceClassifier.FromFolder(Folder, options.Seed, log: log, numLabels: train.OutputCount);
        Labels = train.Labels;
        IsRegression = train.IsRegression;
        Options = options;
        pipeline = null;
        return Pipeline().Train(train.Examples, eval?.Examples, progress, resumeFrom);
    }

    public Dictionary<string, double> Evaluate(Dataset data) => Pipeline().Evaluate(data.Examples);

    public List<Prediction> Predict(IEnumerable<string> texts, IEnumerable<string?>? pairs = null)
    {
        var pairList = pairs?.ToList();
        var examples = texts.Select((t, i) => new Example(t, pairList?[i], -1)).ToList();
        return Pipeline().Predict(examples);
    }

    /// <summary>Writes the model as a Hugging Face folder (config with labels, weights, tokenizer
    /// files), atomically. A method with adapter files (LoRA) also writes them; with
    /// <paramref name="merge"/> the method is folded into the weights first (the model stays
    /// merged) and the folder holds the merged weights only.</summary>
    public void Save(string dir, bool merge = false) => Pipeline().Save(dir, merge);

    private TrainingPipeline? pipeline;

    /// <summary>The pipeline of the current model and options (made once per model: the method is applied once).</summary>
    private TrainingPipeline Pipeline()
    {
        var model = Model ?? throw new EngineException($"{Folder.Path}: the model has no trained head yet; call Train first");
        if (pipeline is null || pipeline.Model != model) pipeline = new TrainingPipeline(Folder, Tokenizer, model, Options, Labels?.Names, IsRegression);
        return pipeline;
    }
}
