namespace Engine;

/// <summary>
/// The lifetime of everything one training step (or one evaluation batch) creates.
///
/// Tensors made while a scope is open belong to it and are released when it is disposed:
/// activations, intermediate gradients, saved tensors of the autograd graph. Parameters,
/// their gradients and optimizer state are long-lived (made outside any scope, or with
/// <see cref="Tensor.Parameter"/>) and are never released by a scope. Nobody disposes
/// tensors one by one:
/// <code>
/// using (Scope.Begin()) { var loss = model.Loss(batch); loss.Backward(); opt.Step(); lossValue = loss.Item(); }
/// </code>
/// A tensor used after its scope ended throws. Scopes nest; <see cref="Keep"/> hands a tensor to
/// the enclosing scope (or makes it long-lived when there is none).
/// </summary>
public sealed class Scope : IDisposable
{
    [ThreadStatic] private static Scope? current;

    private readonly List<Tensor> owned = new();
    private readonly Scope? parent;
    private bool disposed;

    private Scope(Scope? parent) => this.parent = parent;

    public static Scope? Current => current;

    public static Scope Begin()
    {
        var s = new Scope(current);
        current = s;
        return s;
    }

    /// <summary>How many tensors this scope will release.</summary>
    public int Count => owned.Count;

    internal void Adopt(Tensor t) => owned.Add(t);

    /// <summary>Moves <paramref name="t"/> out of this scope: to the enclosing one, or long-lived.</summary>
    public Tensor Keep(Tensor t)
    {
        if (owned.Remove(t))
        {
            t.Owner = parent;
            parent?.Adopt(t);
        }
        return t;
    }

    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        if (current != this)
            throw new InvalidOperationException("scopes must be disposed in the reverse order of Begin");
        current = parent;
        foreach (var t in owned) t.Release();
        owned.Clear();
    }
}
