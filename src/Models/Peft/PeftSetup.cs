using System.Text;
using System.Text.Json.Nodes;
using Engine.Models.Tokenization;

namespace Engine.Models.Peft;

/// <summary>
/// Installs a method and a pooling on a loaded classifier and freezes what the method does not
/// train. Order matters: the base weights load first (from the model folder), then
/// <see cref="Apply"/> adds freshly initialised method parameters. A folder saved by a PEFT run is
/// the other way round: <see cref="Restore"/> re-installs the method from config.json's
/// "engine_peft" before the weights load, so its trained parameters load with them.
/// </summary>
public static class PeftSetup
{
    /// <summary>
    /// Installs <paramref name="o"/> on <paramref name="model"/> and sets RequiresGrad on every
    /// parameter. A model that already has a method (restored from a PEFT checkpoint, or applied
    /// before) keeps it when <paramref name="o"/> asks for the defaults or the same method and
    /// pooling; asking for another is an error. <paramref name="tokenizer"/> is for methods that
    /// encode text while installing (a prompt initialised from a text).
    /// </summary>
    public static void Apply(SequenceClassifier model, PeftOptions o, string? baseModelPath = null, TextTokenizer? tokenizer = null, int seed = 0,
        IReadOnlyList<string>? labelNames = null)
    {
        o.Validate();
        var pooling = o.Pooling is null ? null : Effective(model, PoolingSpec.Parse(o.Pooling, model.DefaultPooling));
        var context = Context(seed, tokenizer, labelNames, baseModelPath is null ? null : Path.GetFullPath(baseModelPath));
        if (model.Peft is not { } existing)
        {
            if (o.IsDefault) Freeze(model); // a plain model stays plain: everything trains
            else Install(model, o, context, installPooling: true);
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
            Install(model, o with { Pooling = existing.Pooling?.ToString() }, context with { BaseModelPath = existing.BaseModelPath }, installPooling: false);
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
        var (options, section, basePath) = PeftState.FromConfig(node, folder.ConfigPath);
        Install(model, options, Context(0, null, null, basePath) with { Restoring = true, SavedSection = section }, installPooling: true);
    }

    /// <summary>The install context of a run: Rng.Mix, not HashCode.Combine, which .NET randomises
    /// per process (it made the methods' initialisation, and so the whole run, differ between two
    /// runs of one seed).</summary>
    private static MethodContext Context(int seed, TextTokenizer? tokenizer, IReadOnlyList<string>? labelNames, string? basePath) => new()
    {
        Rng = new Random((int)(Rng.Mix((ulong)(uint)seed, 0x9eF7) & 0x7FFFFFFF)),
        Tokenizer = tokenizer, LabelNames = labelNames, BaseModelPath = basePath,
    };

    private static PoolingSpec? Effective(SequenceClassifier model, PoolingSpec? spec) =>
        spec is null || (!spec.Depthwise && spec.Within == model.DefaultPooling) ? null : spec;

    private static void Install(SequenceClassifier model, PeftOptions o, MethodContext context, bool installPooling)
    {
        var dtype = model.Parameters().First().DType;
        var device = model.Device;
        var pooling = Effective(model, o.Pooling is null ? null : PoolingSpec.Parse(o.Pooling, model.DefaultPooling));
        var installed = o.Registered.Install(model, o.EffectiveSettings, context);
        // After the method: depth-wise pooling mixes the blocks that run (a method may set a BlockLimit).
        if (pooling is not null && installPooling) model.UsePooling(new SequencePooling(pooling, model.Hooks.BlocksToRun(model.BlockCount), dtype));
        model.Peft = new PeftState { Options = o, Pooling = pooling, Method = installed, BaseModelPath = context.BaseModelPath };
        model.To(device); // the new modules are made on the CPU; a model already on a GPU gets them there
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

    /// <summary>Folds the model's method into its base weights (<see cref="InstalledMethod.Merge"/>):
    /// the model then computes the same function without the method's path, and a saved folder
    /// holds the merged weights only.</summary>
    public static void Merge(SequenceClassifier model)
    {
        if (model.Peft?.Method is not { CanMerge: true } method)
            throw new EngineException($"merge: the model's method ({model.Peft?.Options.Method ?? "none"}) has nothing to merge into the weights");
        method.Merge();
    }

    /// <summary>The backbone's parameter groups in the order the table lists them (a method's own
    /// groups follow, named by <see cref="InstalledMethod.GroupOf"/>).</summary>
    public static readonly string[] Groups = ["embeddings", "attention", "MLP", "layer norms", "pooler", "head", "depth-wise pooling"];

    /// <summary>The group a parameter belongs to, by its name (BERT and Llama names; the method names its own).</summary>
    public static string GroupOf(string name, InstalledMethod? method = null)
    {
        if (method?.GroupOf(name) is { } own) return own;
        if (name.StartsWith(SequencePooling.ModuleName + ".", StringComparison.Ordinal)) return "depth-wise pooling";
        if (SequenceClassifier.IsHead(name)) return "head";
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
        var named = model.NamedParameters().ToList();
        var rows = named.GroupBy(p => GroupOf(p.Name, model.Peft?.Method))
            .ToDictionary(g => g.Key, g => (Trained: g.Where(p => p.Param.RequiresGrad).Sum(p => p.Param.Numel), Total: g.Sum(p => p.Param.Numel)));
        var order = Groups.Concat(named.Select(p => GroupOf(p.Name, model.Peft?.Method))).Distinct().Where(rows.ContainsKey);
        var sb = new StringBuilder();
        sb.AppendLine($"{"parameters",-22}{"trained",12}{"total",14}");
        foreach (var g in order)
            sb.AppendLine($"  {g,-20}{rows[g].Trained,12:N0}{rows[g].Total,14:N0}");
        long trained = rows.Values.Sum(r => r.Trained), total = rows.Values.Sum(r => r.Total);
        sb.Append($"  {"all",-20}{trained,12:N0}{total,14:N0}   {100.0 * trained / Math.Max(1, total):F2}% trained");
        return sb.ToString();
    }
}
