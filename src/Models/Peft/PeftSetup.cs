using System.Text;
using System.Text.Json.Nodes;
using Engine.Models.Peft.Lora;
using Engine.Models.Peft.Prefix;
using Engine.Models.Peft.Prompt;

namespace Engine.Models.Peft;

/// <summary>
/// Installs a method and a pooling on a loaded classifier and freezes what the method does not
/// train. Order matters: the base weights load first (from the model folder), then
/// <see cref="Apply"/> adds freshly initialised PEFT parameters. A folder saved by a PEFT run is
/// the other way round: <see cref="Restore"/> re-installs the method from config.json's
/// "engine_peft" before the weights load, so its trained PEFT parameters load with them.
/// </summary>
public static class PeftSetup
{
    /// <summary>
    /// Installs <paramref name="o"/> on <paramref name="model"/> and sets RequiresGrad on every
    /// parameter. A model that already has a method (restored from a PEFT checkpoint, or applied
    /// before) keeps it when <paramref name="o"/> asks for the defaults or the same method and
    /// pooling; asking for another is an error. <paramref name="tokenize"/> (without special
    /// tokens) is needed for a prompt initialised from a text.
    /// </summary>
    public static void Apply(SequenceClassifier model, PeftOptions o, string? baseModelPath = null,
        Func<string, IReadOnlyList<int>>? tokenize = null, int seed = 0)
    {
        o.Validate();
        var pooling = o.Pooling is null ? null : Effective(model, PoolingSpec.Parse(o.Pooling, PeftFamily.DefaultPooling(model)));
        if (model.Peft is not { } existing)
        {
            if (o.IsDefault) Freeze(model); // a plain model stays plain: everything trains
            else Install(model, o, seed, tokenize, merged: false, baseModelPath is null ? null : Path.GetFullPath(baseModelPath), installPooling: true);
            return;
        }
        bool samePooling = o.Pooling is null || Equals(pooling, existing.Pooling);
        if (o.IsDefault || (existing.Options.Method == o.Method && samePooling))
        {
            Freeze(model);
            return;
        }
        // A fully fine-tuned checkpoint (with its pooling) can take a method on top.
        if (existing.Options.Method == PeftOptions.Full && samePooling)
        {
            Install(model, o with { Pooling = existing.Pooling?.ToString() }, seed, tokenize, merged: false, existing.BaseModelPath, installPooling: false);
            return;
        }
        throw new EngineException($"train: the model already has method {existing.Options.Method}" +
            (existing.Pooling is null ? "" : $" with pooling {existing.Pooling}") + $"; it cannot also take method {o.Method}" +
            (o.Pooling is null ? "" : $" with pooling {o.Pooling}"));
    }

    /// <summary>Re-installs what a PEFT run saved in <paramref name="folder"/>'s config.json (no-op for a plain folder).</summary>
    public static void Restore(SequenceClassifier model, HfModelFolder folder)
    {
        if (!folder.Config.TryGetProperty(PeftState.ConfigKey, out var element) || element.ValueKind == System.Text.Json.JsonValueKind.Null) return;
        var node = JsonNode.Parse(element.GetRawText())!;
        var (options, merged, basePath) = PeftState.FromConfig(node, folder.ConfigPath);
        Install(model, options, 0, null, merged, basePath, installPooling: true);
    }

    private static PoolingSpec? Effective(SequenceClassifier model, PoolingSpec? spec) =>
        spec is null || (!spec.Depthwise && spec.Within == PeftFamily.DefaultPooling(model)) ? null : spec;

    private static void Install(SequenceClassifier model, PeftOptions o, int seed, Func<string, IReadOnlyList<int>>? tokenize, bool merged, string? basePath,
        bool installPooling)
    {
        var dtype = model.Parameters().First().DType;
        var pooling = Effective(model, o.Pooling is null ? null : PoolingSpec.Parse(o.Pooling, PeftFamily.DefaultPooling(model)));
        if (pooling is not null && installPooling) model.UsePooling(new SequencePooling(pooling, PeftFamily.BlockCount(model), dtype));
        IReadOnlyDictionary<string, LoraAdapter>? adapters = null;
        // A pure function of the seed (HashCode.Combine is randomised per process, which made LoRA,
        // prefix and prompt initialisation differ from run to run under the same --seed).
        var rng = new Random((int)(Engine.Rng.Mix((ulong)(uint)seed, 0x9eF7) & 0x7FFFFFFF));
        switch (o.Method)
        {
            case PeftOptions.Lora when !merged:
                adapters = LoraModel.Install(model, o.LoraSettings, rng.Next());
                break;
            case PeftOptions.Prefix:
            {
                var encoder = model.Attach(PrefixEncoder.ModuleName, new PrefixEncoder(o.PrefixLength, PeftFamily.BlockCount(model),
                    PeftFamily.KeyValueWidth(model), PeftFamily.HiddenSize(model), o.PrefixProjection, rng, dtype));
                model.Hooks.Prefixes = encoder.Prefixes;
                break;
            }
            case PeftOptions.Prompt:
            {
                IReadOnlyList<int>? tokens = null;
                if (o.PromptInitText is { } text)
                {
                    if (tokenize is null) throw new EngineException("prompt: initialising from a text needs the model's tokenizer");
                    tokens = tokenize(text);
                    if (tokens.Count == 0) throw new EngineException($"prompt: the initialisation text '{text}' has no tokens");
                }
                var prompt = model.Attach(PromptEmbedding.ModuleName, new PromptEmbedding(PeftFamily.WordEmbeddings(model), o.PromptLength, tokens, rng));
                model.Hooks.Prompt = prompt.Forward;
                break;
            }
        }
        model.Peft = new PeftState { Options = o, Pooling = pooling, Adapters = adapters, BaseModelPath = basePath, LoadedMerged = merged };
        Freeze(model);
    }

    /// <summary>Sets RequiresGrad on every parameter as the model's method says (all, for a plain model).</summary>
    public static void Freeze(SequenceClassifier model)
    {
        foreach (var (name, p) in model.NamedParameters())
        {
            bool train = model.Peft?.Trains(name) ?? true;
            if (p.RequiresGrad != train) p.RequiresGrad = train;
        }
    }

    /// <summary>The parameter groups in the order the table lists them.</summary>
    public static readonly string[] Groups =
        ["embeddings", "attention", "MLP", "layer norms", "pooler", "head", "depth-wise pooling", "LoRA adapters", "prefix", "prompt"];

    /// <summary>The group a parameter belongs to, by its name (BERT and Llama names).</summary>
    public static string GroupOf(string name)
    {
        if (name.StartsWith(SequencePooling.ModuleName + ".", StringComparison.Ordinal)) return "depth-wise pooling";
        if (LoraModel.IsAdapterParameter(name)) return "LoRA adapters";
        if (name.StartsWith(PrefixEncoder.ModuleName + ".", StringComparison.Ordinal)) return "prefix";
        if (name.StartsWith(PromptEmbedding.ModuleName + ".", StringComparison.Ordinal)) return "prompt";
        if (PeftFamily.IsHead(name)) return "head";
        if (name.Contains("embeddings.") || name.Contains("embed_tokens.")) return "embeddings";
        if (name.Contains("pooler.")) return "pooler";
        if (name.Contains("LayerNorm") || name.Contains("layernorm") || name.Contains("norm.")) return "layer norms";
        if (name.Contains(".attention.") || name.Contains(".self_attn.")) return "attention";
        return "MLP";
    }

    /// <summary>
    /// Trained and total parameters per group, e.g.
    /// <code>
    /// parameters            trained        total
    ///   embeddings                0       12,480
    ///   attention             2,560       33,280
    ///   …
    ///   all                   2,690       96,386   2.79% trained
    /// </code>
    /// </summary>
    public static string ParameterTable(SequenceClassifier model)
    {
        var rows = model.NamedParameters().GroupBy(p => GroupOf(p.Name))
            .ToDictionary(g => g.Key, g => (Trained: g.Where(p => p.Param.RequiresGrad).Sum(p => p.Param.Numel), Total: g.Sum(p => p.Param.Numel)));
        var sb = new StringBuilder();
        sb.AppendLine($"{"parameters",-22}{"trained",12}{"total",14}");
        foreach (var g in Groups.Where(rows.ContainsKey))
            sb.AppendLine($"  {g,-20}{rows[g].Trained,12:N0}{rows[g].Total,14:N0}");
        long trained = rows.Values.Sum(r => r.Trained), total = rows.Values.Sum(r => r.Total);
        sb.Append($"  {"all",-20}{trained,12:N0}{total,14:N0}   {100.0 * trained / Math.Max(1, total):F2}% trained");
        return sb.ToString();
    }
}
