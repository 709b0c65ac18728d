namespace Engine.Nn;

/// <summary>
/// A building block that owns parameters and child modules, each registered by name (no
/// reflection), so <see cref="NamedParameters"/> yields dotted paths such as
/// "encoder.layer.0.attention.self.query.weight" — the names Hugging Face checkpoints use.
/// </summary>
public abstract class Module
{
    private readonly List<(string Name, Tensor Param)> parameters = new();
    private readonly List<(string Name, Module Child)> children = new();

    /// <summary>Training mode turns dropout on; evaluation mode (false) turns it off.</summary>
    public bool Training { get; private set; } = true;

    protected Tensor Param(string name, Tensor init)
    {
        var p = init.IsLongLived && init.RequiresGrad ? init : Tensor.Parameter(init, name);
        parameters.Add((name, p));
        return p;
    }

    protected T Child<T>(string name, T module) where T : Module
    {
        children.Add((name, module));
        return module;
    }

    /// <summary>Removes the child registered as <paramref name="name"/>.</summary>
    protected void RemoveChild(string name) => children.RemoveAt(children.FindIndex(c => c.Name == name));

    public IEnumerable<(string Name, Tensor Param)> NamedParameters(string prefix = "")
    {
        foreach (var (n, p) in parameters) yield return (prefix + n, p);
        foreach (var (n, c) in children)
            foreach (var item in c.NamedParameters(prefix + n + "."))
                yield return item;
    }

    public IEnumerable<Tensor> Parameters() => NamedParameters().Select(x => x.Param);

    /// <summary>Parameters that will be trained (RequiresGrad).</summary>
    public IEnumerable<Tensor> TrainableParameters() => Parameters().Where(p => p.RequiresGrad);

    public long ParameterCount(bool trainableOnly = false) =>
        Parameters().Where(p => !trainableOnly || p.RequiresGrad).Sum(p => p.Numel);

    /// <summary>Where the parameters live (the first parameter's device; the CPU for a module without any).</summary>
    public Device Device => Parameters().FirstOrDefault()?.Device ?? Device.Cpu;

    /// <summary>Moves every parameter (and gradient) of this module and its children to
    /// <paramref name="device"/>, in place. Build and load a model on the CPU, apply its PEFT
    /// method, then move it; inputs may stay on the CPU (the models move what they need).
    /// Move before making an optimizer: optimizer state stays where it was made (its next step then
    /// stops with an error naming the parameter).</summary>
    public void To(Device device)
    {
        foreach (var p in Parameters()) p.MoveTo(device);
    }

    public void Train(bool on = true)
    {
        Training = on;
        foreach (var (_, c) in children) c.Train(on);
    }

    public void Eval() => Train(false);

    /// <summary>Freezes (or unfreezes) every parameter of this module and its children.</summary>
    public void RequiresGrad(bool on)
    {
        foreach (var p in Parameters()) p.RequiresGrad = on;
    }
}

/// <summary>A named group of child modules with no parameters of its own (encoder, attention,
/// pooler …): it exists to give the children their Hugging Face path.</summary>
public sealed class Group : Module
{
    public T Add<T>(string name, T module) where T : Module => Child(name, module);
}

/// <summary>Draws dropout seeds: one per dropout call, from a seeded sequence, so a run is
/// reproducible and every backend draws the same masks.</summary>
public sealed class DropoutSeeds(ulong seed)
{
    private ulong counter;
    public ulong Next() => Rng.Mix(seed, counter++);
    /// <summary>The position in the sequence (saved with checkpoints so a resumed run draws the same masks).</summary>
    public ulong Counter { get => counter; set => counter = value; }
}
