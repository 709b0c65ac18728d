using Engine.Models.Peft.BitFit;
using Engine.Models.Peft.Full;
using Engine.Models.Peft.Head;
using Engine.Models.Peft.Lora;
using Engine.Models.Peft.LTuning;
using Engine.Models.Peft.Prefix;
using Engine.Models.Peft.Prompt;
using Engine.Models.Peft.Select;

namespace Engine.Models.Peft;

/// <summary>
/// Every fine-tuning method the engine has, one line each (in the order --help lists them). A new
/// method is a new folder under src/Models/Peft plus its line here (docs/peft.md, "How to add a
/// method").
/// </summary>
public static class MethodRegistry
{
    private static readonly List<FineTuningMethod> methods =
    [
        new FullMethod(),
        new HeadMethod(),
        new LoraMethod(),
        new BitFitMethod(),
        new PrefixMethod(),
        new PromptMethod(),
        new Dora.DoraMethod(),
        new Ia3.Ia3Method(),
        new SelectMethod(),
        new LtPrefixMethod(), new LtPromptMethod(),
        new Spafit.SpafitMethod(),
        new Ehft.EhftMethod(),
    ];

    public static IReadOnlyList<FineTuningMethod> All => methods;

    /// <summary>Adds a method defined outside the engine (a program that embeds it, a test); its name must be new.</summary>
    public static void Register(FineTuningMethod method)
    {
        lock (methods)
        {
            if (methods.Any(m => m.Name == method.Name)) throw new EngineException($"methods: '{method.Name}' is registered already");
            methods.Add(method);
        }
    }

    public static IEnumerable<string> Names => All.Select(m => m.Name);

    /// <summary>The method called <paramref name="name"/>; an unknown name is an error listing the known ones.</summary>
    public static FineTuningMethod Get(string name) =>
        All.FirstOrDefault(m => m.Name == name) ?? throw new EngineException($"train: unknown method '{name}' ({string.Join(", ", Names)})");

    /// <summary>The method whose options record <paramref name="options"/> is (null for none).</summary>
    public static FineTuningMethod? Owner(MethodOptions options) =>
        options is NoOptions ? null : All.FirstOrDefault(m => m.Defaults.GetType() == options.GetType());
}
