using System.Text.Json;
using System.Text.Json.Nodes;
using Engine.IO;
using Engine.Nn;

namespace Engine.Models.Pretraining;

/// <summary>The logits at the positions a loss is taken on, and the target there:
/// <see cref="Logits"/> [N, V]; <see cref="Targets"/> [N] (-100 where a row contributes nothing).</summary>
public sealed record LmPrediction(Tensor Logits, int[] Targets);

/// <summary>
/// A language model with the Hugging Face pretraining head of its family: BERT's masked-LM head
/// (<see cref="MaskedLanguageModel"/>, BertForMaskedLM) or Llama's causal-LM head
/// (<see cref="CausalLanguageModel"/>, LlamaForCausalLM). Parameter names are the checkpoint's,
/// so <see cref="SaveInto"/> writes a folder transformers loads with the class named in
/// <see cref="Architecture"/>, and the engine's sequence-classification loaders load the same
/// folder (dropping the LM head, as transformers does).
/// </summary>
public abstract class LanguageModel : Module
{
    /// <summary>config.json's "architectures" entry: BertForMaskedLM or LlamaForCausalLM.</summary>
    public abstract string Architecture { get; }

    /// <summary>The model's dropout seed sequence (its position is saved with checkpoints).</summary>
    public DropoutSeeds Seeds { get; protected init; } = new(0);

    public abstract int VocabSize { get; }

    /// <summary>ids [B, T] (I32, row-major, on the host) as the model's input; targets [B·T]:
    /// what each position is scored against (-100: not scored). Returns the logits of the scored
    /// positions (a masked LM computes its head only there; a causal LM at every position).</summary>
    public abstract LmPrediction Predict(int[] ids, int[] targets, int batch, int length);

    /// <summary>The mean cross-entropy of a prediction over its scored positions.</summary>
    public static Tensor Loss(LmPrediction p) => Ops.CrossEntropy(p.Logits, Tensor.FromArray(p.Targets, p.Targets.Length).To(p.Logits.Device));

    /// <summary>Writes config.json (the source's, with <see cref="Architecture"/>), model.safetensors
    /// (every parameter under its Hugging Face name; a tied output layer is stored once, as the
    /// input embeddings, as transformers saves it) and the source's tokenizer files into
    /// <paramref name="folder"/>.</summary>
    public void SaveInto(string folder, HfModelFolder source)
    {
        var config = JsonNode.Parse(source.Config.GetRawText())!.AsObject();
        config["architectures"] = new JsonArray(Architecture);
        File.WriteAllText(Path.Combine(folder, HfModelFolder.ConfigFileName), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        SaveWeights(folder);
        foreach (var name in SequenceClassifier.CompanionFiles)
        {
            var src = Path.Combine(source.Path, name);
            if (File.Exists(src)) File.Copy(src, Path.Combine(folder, name), overwrite: true);
        }
    }

    /// <summary>Writes model.safetensors (every parameter under its Hugging Face name) into <paramref name="folder"/>.</summary>
    public void SaveWeights(string folder) => SafeTensors.Save(Path.Combine(folder, SafeTensors.SingleFileName),
        NamedParameters().Select(p => new KeyValuePair<string, Tensor>(p.Name, p.Param)), new Dictionary<string, string> { ["format"] = "pt" });

    /// <summary>Copies every parameter from <paramref name="source"/>; <paramref name="ignore"/> names
    /// the file's tensors this model does not need (buffers, tied copies, other heads). Anything
    /// missing, misshapen or unexpected is one error listing all of it.</summary>
    protected void LoadExact(IWeightSource source, Func<string, bool> ignore)
    {
        var named = NamedParameters().ToDictionary(p => p.Name, p => p.Param);
        var match = WeightMatch.Match(named.Select(p => new ExpectedTensor(p.Key, p.Value.ShapeArray)), source, ignoreUnexpected: ignore);
        match.ThrowIfIncomplete();
        foreach (var (name, file) in match.Matched) Backend.Backends.Copy(source.ReadAs(file, named[name].DType), named[name]);
    }

    /// <summary>The family's language model from a folder, with its weights.</summary>
    public static LanguageModel Load(HfModelFolder folder, int seed = 0, DType dtype = DType.F32) => folder.Family switch
    {
        ModelFamily.Bert => MaskedLanguageModel.FromFolder(folder, seed, dtype),
        ModelFamily.Llama => CausalLanguageModel.FromFolder(folder, seed, dtype),
        _ => throw new EngineException($"{folder.Path}: model_type '{folder.ModelType}' has no language model in the engine"),
    };
}
