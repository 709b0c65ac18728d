using System.Text.Json;
using Engine.IO;

namespace Engine.Models;

/// <summary>The tokenizer files a Hugging Face folder may hold (null where absent).</summary>
public sealed record TokenizerFiles(
    string? TokenizerJson, string? VocabTxt, string? SentencePieceModel, string? VocabJson, string? MergesTxt,
    string? TokenizerConfig, string? SpecialTokensMap)
{
    public bool Any => (TokenizerJson ?? VocabTxt ?? SentencePieceModel ?? VocabJson ?? MergesTxt) is not null;
}

/// <summary>
/// A Hugging Face model folder, as <c>save_pretrained</c> writes it: config.json; the weights as
/// model.safetensors or as shards listed in model.safetensors.index.json; tokenizer files; and
/// optionally generation_config.json. Opening reads config.json (into <see cref="BertConfig"/>
/// or <see cref="LlamaConfig"/> by model_type) and finds the files; weights are mapped only
/// when <see cref="OpenWeights"/> is called.
/// </summary>
public sealed class HfModelFolder
{
    public const string ConfigFileName = "config.json";

    private readonly BertConfig? bert;
    private readonly LlamaConfig? llama;

    private HfModelFolder(string path, string configPath, JsonElement config, string modelType, ModelFamily family,
        BertConfig? bert, LlamaConfig? llama, string weights, TokenizerFiles tokenizer, string? generationConfig)
    {
        Path = path;
        ConfigPath = configPath;
        Config = config;
        ModelType = modelType;
        Family = family;
        this.bert = bert;
        this.llama = llama;
        WeightsPath = weights;
        Tokenizer = tokenizer;
        GenerationConfigPath = generationConfig;
    }

    public string Path { get; }
    public string ConfigPath { get; }
    /// <summary>config.json as parsed (all fields, known or not).</summary>
    public JsonElement Config { get; }
    public string ModelType { get; }
    public ModelFamily Family { get; }
    /// <summary>model.safetensors, or model.safetensors.index.json for a sharded model.</summary>
    public string WeightsPath { get; }
    public bool IsSharded => WeightsPath.EndsWith(".json", StringComparison.Ordinal);
    public TokenizerFiles Tokenizer { get; }
    public string? GenerationConfigPath { get; }

    public BertConfig BertConfig => bert ?? throw new EngineException($"{ConfigPath}: model_type '{ModelType}' is not a BERT-family model");
    /// <summary>The config's labels, label count, problem type and vocabulary size, whatever the family.</summary>
    public IReadOnlyDictionary<int, string>? Id2Label => bert?.Id2Label ?? llama?.Id2Label;
    public int? NumLabels => bert?.NumLabels ?? llama?.NumLabels;
    public string? ProblemType => bert?.ProblemType ?? llama?.ProblemType;
    /// <summary>A regression head: one label, or problem_type "regression".</summary>
    public bool IsRegression => NumLabels == 1 || ProblemType == "regression";
    public int VocabSize => bert?.VocabSize ?? llama?.VocabSize ?? throw new EngineException($"{ConfigPath}: model_type '{ModelType}' is not a model family the engine knows");

    public LlamaConfig LlamaConfig => llama ?? throw new EngineException($"{ConfigPath}: model_type '{ModelType}' is not a Llama-family model");

    /// <summary>model_type values by family.</summary>
    public static ModelFamily FamilyOf(string modelType) => modelType switch
    {
        "bert" or "roberta" => ModelFamily.Bert,
        "llama" or "mistral" or "qwen2" => ModelFamily.Llama,
        _ => ModelFamily.Unknown,
    };

    /// <summary>Opens a folder: reads config.json and finds the weights (required) and the other files.</summary>
    public static HfModelFolder Open(string path)
    {
        if (!Directory.Exists(path)) throw new EngineException($"{path}: no such folder");
        var configPath = System.IO.Path.Combine(path, ConfigFileName);
        if (!File.Exists(configPath)) throw new EngineException($"{path}: the folder has no {ConfigFileName}; is it a Hugging Face model folder?");
        var config = JsonText.Parse(File.ReadAllBytes(configPath), configPath);
        if (config.ValueKind != JsonValueKind.Object) throw new EngineException($"{configPath}: not a JSON object");

        var reader = new ConfigReader(configPath, config);
        var modelType = reader.StringOrNull("model_type") ?? throw new EngineException($"{configPath}: no 'model_type' field, so the model family is unknown");
        var family = FamilyOf(modelType);
        BertConfig? bert = null;
        LlamaConfig? llama = null;
        if (family == ModelFamily.Bert) bert = BertConfig.Read(new ConfigReader(configPath, config));
        if (family == ModelFamily.Llama) llama = LlamaConfig.Read(new ConfigReader(configPath, config));

        string? Find(string name) => File.Exists(System.IO.Path.Combine(path, name)) ? System.IO.Path.Combine(path, name) : null;
        var weights = Find(SafeTensors.SingleFileName) ?? Find(SafeTensors.IndexFileName) ?? throw NoWeights(path);
        var tokenizer = new TokenizerFiles(Find("tokenizer.json"), Find("vocab.txt"), Find("tokenizer.model"), Find("vocab.json"),
            Find("merges.txt"), Find("tokenizer_config.json"), Find("special_tokens_map.json"));
        return new HfModelFolder(path, configPath, config, modelType, family, bert, llama, weights, tokenizer, Find("generation_config.json"));
    }

    private static EngineException NoWeights(string path)
    {
        string[] pytorch = ["pytorch_model.bin", "pytorch_model.bin.index.json"];
        var found = pytorch.FirstOrDefault(n => File.Exists(System.IO.Path.Combine(path, n)));
        if (found is not null)
            return new EngineException($"{path}: the weights are in {found} (a PyTorch pickle), which the engine does not read; " +
                $"convert them to {SafeTensors.SingleFileName}: {SafeTensorsFormat.ConvertHint}, with p = '{found}' and out = '{SafeTensors.SingleFileName}' " +
                "(or load the folder with transformers and call save_pretrained(dir, safe_serialization=True))");
        if (File.Exists(System.IO.Path.Combine(path, "tf_model.h5")) || File.Exists(System.IO.Path.Combine(path, "flax_model.msgpack")))
            return new EngineException($"{path}: the folder has only TensorFlow/Flax weights; save it with transformers' save_pretrained(dir, safe_serialization=True) to get {SafeTensors.SingleFileName}");
        return new EngineException($"{path}: the folder has no weights ({SafeTensors.SingleFileName} or {SafeTensors.IndexFileName})");
    }

    /// <summary>Maps the weights (single file or shards); dispose the result when done.</summary>
    public IWeightSource OpenWeights() => SafeTensors.Open(WeightsPath);

    /// <summary>The generation config, when the folder has one.</summary>
    public JsonElement? ReadGenerationConfig() => ReadJson(GenerationConfigPath);

    /// <summary>tokenizer_config.json, when the folder has one.</summary>
    public JsonElement? ReadTokenizerConfig() => ReadJson(Tokenizer.TokenizerConfig);

    private static JsonElement? ReadJson(string? file)
    {
        if (file is null) return null;
        return JsonText.Parse(File.ReadAllBytes(file), file);
    }
}
