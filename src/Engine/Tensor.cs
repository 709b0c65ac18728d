using Engine.Autograd;
using Engine.Backend;

namespace Engine;

/// <summary>
/// An n-dimensional array: shape, element type, device, and contiguous row-major storage.
/// Reshape gives a view that shares the storage. A tensor made by an op while gradients are
/// recorded carries the <see cref="Node"/> that made it; <see cref="Backward"/> walks those nodes.
/// </summary>
public sealed class Tensor
{
    private readonly int[] shape;
    private Storage? storage;
    private bool requiresGrad;

    internal Tensor(Storage storage, int[] shape, long offset = 0, bool longLived = false)
    {
        if (Engine.Shape.Numel(shape) + offset > storage.Length)
            throw new ArgumentException($"shape {Engine.Shape.Format(shape)} does not fit a storage of {storage.Length} elements");
        this.storage = storage;
        storage.Refs++;
        this.shape = shape;
        Offset = offset;
        if (!longLived && Scope.Current is { } scope)
        {
            Owner = scope;
            scope.Adopt(this);
        }
    }

    public ReadOnlySpan<int> Shape => shape;
    /// <summary>A copy of the shape, for callers that need an array.</summary>
    public int[] ShapeArray => (int[])shape.Clone();
    public int Rank => shape.Length;
    public long Numel => Engine.Shape.Numel(shape);
    public DType DType => Storage.DType;
    public Device Device => Storage.Device;
    /// <summary>Element offset of this view in its storage.</summary>
    public long Offset { get; private set; }
    public string? Name { get; set; }

    /// <summary>The dim at <paramref name="i"/>; negative counts from the end.</summary>
    public int Dim(int i) => shape[i < 0 ? i + shape.Length : i];

    public Storage Storage => storage ?? throw new InvalidOperationException(
        $"tensor {Name ?? Engine.Shape.Format(shape)} was released when its step scope ended; Scope.Keep it to use it later");

    public IBackend Backend => Backends.For(Device);

    /// <summary>The scope that releases this tensor; null for long-lived tensors.</summary>
    internal Scope? Owner { get; set; }
    public bool IsLongLived => Owner is null;

    /// <summary>The node that made this tensor; null for leaves (inputs, parameters).</summary>
    public Node? Node { get; internal set; }
    public bool IsLeaf => Node is null;

    /// <summary>Whether gradients flow to this tensor. Settable on leaves only; a frozen parameter
    /// (false) gets no gradient buffer and the ops that use it skip its weight-gradient work.</summary>
    public bool RequiresGrad
    {
        get => requiresGrad;
        set
        {
            if (!IsLeaf) throw new InvalidOperationException("RequiresGrad can only be set on a leaf tensor");
            if (value && !DType.IsCompute()) throw new EngineException($"a {DType} tensor cannot require gradients");
            requiresGrad = value;
            if (!value) Grad = null;
        }
    }

    internal void SetRequiresGradFromOp() => requiresGrad = true;

    /// <summary>The accumulated gradient (same shape and device), or null before any backward.</summary>
    public Tensor? Grad { get; set; }

    /// <summary>Keep this non-leaf tensor's gradient after backward (it is released otherwise).</summary>
    public bool RetainGrad { get; set; }

    // ---------------------------------------------------------------- factories

    public static Tensor Empty(int[] shape, DType dtype = DType.F32, Device? device = null) =>
        new(Backends.For(device ?? Device.Cpu).Allocate(dtype, Engine.Shape.Numel(shape), zero: false), (int[])shape.Clone());

    public static Tensor Zeros(int[] shape, DType dtype = DType.F32, Device? device = null) =>
        new(Backends.For(device ?? Device.Cpu).Allocate(dtype, Engine.Shape.Numel(shape), zero: true), (int[])shape.Clone());

    public static Tensor Full(int[] shape, double value, DType dtype = DType.F32, Device? device = null)
    {
        var t = Empty(shape, dtype, device);
        t.Backend.Fill(t, value);
        return t;
    }

    public static Tensor Scalar(double value, DType dtype = DType.F32) => Full([], value, dtype);

    public static Tensor FromArray(float[] data, params int[] shape) => FromHost<float>(data, DType.F32, shape);
    public static Tensor FromArray(double[] data, params int[] shape) => FromHost<double>(data, DType.F64, shape);
    public static Tensor FromArray(int[] data, params int[] shape) => FromHost<int>(data, DType.I32, shape);

    private static Tensor FromHost<T>(T[] data, DType dtype, int[] shape) where T : unmanaged
    {
        if (shape.Length == 0 && data.Length != 1) shape = [data.Length];
        if (Engine.Shape.Numel(shape) != data.Length)
            throw new EngineException($"{data.Length} values do not fill shape {Engine.Shape.Format(shape)}");
        return new Tensor(new CpuStorage(dtype, (T[])data.Clone(), data.Length), (int[])shape.Clone());
    }

    /// <summary>Normal(0, std) values from a seeded generator (float64 draws, so F32 and F64
    /// tensors made from the same seed agree).</summary>
    public static Tensor Randn(int[] shape, Random rng, DType dtype = DType.F32, double std = 1.0) =>
        Generate(shape, dtype, () =>
        {
            double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
            return std * Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
        });

    /// <summary>Uniform values in [lo, hi) from a seeded generator.</summary>
    public static Tensor Uniform(int[] shape, Random rng, double lo, double hi, DType dtype = DType.F32) =>
        Generate(shape, dtype, () => lo + (hi - lo) * rng.NextDouble());

    /// <summary>Fills a new CPU tensor element by element from float64 draws (no float64 copy of
    /// the whole tensor: a 128k × 2k embedding would need 2 GB for it).</summary>
    private static Tensor Generate(int[] shape, DType dtype, Func<double> draw)
    {
        var t = Empty(shape, dtype);
        switch (dtype)
        {
            case DType.F64: { var s = t.Span<double>(); for (int i = 0; i < s.Length; i++) s[i] = draw(); break; }
            case DType.F32: { var s = t.Span<float>(); for (int i = 0; i < s.Length; i++) s[i] = (float)draw(); break; }
            default: throw new EngineException($"random values: {dtype} is not a compute type");
        }
        return t;
    }

    /// <summary>A tensor of the given compute type holding <paramref name="values"/>.</summary>
    public static Tensor FromDoubles(double[] values, int[] shape, DType dtype) => dtype switch
    {
        DType.F64 => FromArray(values, shape),
        DType.F32 => FromArray(Array.ConvertAll(values, x => (float)x), shape),
        _ => throw new EngineException($"FromDoubles: {dtype} is not a compute type"),
    };

    /// <summary>A long-lived trainable tensor: never released by a scope; its gradient is long-lived too.</summary>
    public static Tensor Parameter(Tensor init, string? name = null)
    {
        var p = new Tensor(init.Storage, init.ShapeArray, init.Offset, longLived: true) { Name = name };
        init.Owner?.Keep(init);
        p.RequiresGrad = true;
        return p;
    }

    // ---------------------------------------------------------------- reading

    /// <summary>The elements as a span of the storage's element type (CPU only; no copy).</summary>
    public Span<T> Span<T>() where T : unmanaged
    {
        if (Storage is not CpuStorage cpu) throw new InvalidOperationException($"Span<{typeof(T).Name}> needs a CPU tensor; this one is on {Device}");
        if (cpu.Data is not T[] arr)
            throw new InvalidOperationException($"tensor holds {DType}, not {typeof(T).Name}");
        return arr.AsSpan((int)Offset, (int)Numel);
    }

    /// <summary>The elements converted to double (copied to the host when needed).</summary>
    public double[] ToDoubleArray()
    {
        var host = Device == Device.Cpu ? this : To(Device.Cpu);
        return host.DType switch
        {
            DType.F64 => host.Span<double>().ToArray(),
            DType.F32 => ToDoubles(host.Span<float>()),
            DType.I32 => ToDoubles(host.Span<int>()),
            _ => throw new EngineException($"ToDoubleArray: unsupported {DType}"),
        };
    }

    public float[] ToFloatArray() => Array.ConvertAll(ToDoubleArray(), x => (float)x);

    public int[] ToIntArray()
    {
        var host = Device == Device.Cpu ? this : To(Device.Cpu);
        return host.Span<int>().ToArray();
    }

    private static double[] ToDoubles<T>(ReadOnlySpan<T> s) where T : unmanaged, System.Numerics.INumberBase<T>
    {
        var r = new double[s.Length];
        for (int i = 0; i < s.Length; i++) r[i] = double.CreateTruncating(s[i]);
        return r;
    }

    /// <summary>The single value of a one-element tensor.</summary>
    public double Item()
    {
        if (Numel != 1) throw new EngineException($"Item() needs one element; the tensor has shape {Engine.Shape.Format(shape)}");
        return ToDoubleArray()[0];
    }

    /// <summary>A copy on another device (no gradient flows through it).</summary>
    public Tensor To(Device device)
    {
        if (device == Device) return this;
        var dst = Empty(shape, DType, device);
        Backends.Copy(this, dst);
        return dst;
    }

    /// <summary>Moves a long-lived leaf (a parameter) to <paramref name="device"/> in place: the
    /// tensor object stays (layers keep their references) and gets a copy of its values in new
    /// storage there; its old storage is handed back once no other view uses it. The gradient,
    /// if any, moves with it.</summary>
    internal void MoveTo(Device device)
    {
        if (device == Device) return;
        if (!IsLongLived || !IsLeaf) throw new EngineException($"only long-lived leaf tensors (parameters) move in place; {Name ?? Engine.Shape.Format(shape)} is not one");
        var moved = Backends.For(device).Allocate(DType, Numel, zero: false);
        var target = new Tensor(moved, ShapeArray, 0, longLived: true);
        Backends.Copy(this, target);
        var old = Storage;
        storage = moved;
        moved.Refs++;
        target.Release();
        if (--old.Refs == 0) Backends.For(old.Device).Release(old);
        Offset = 0;
        Grad?.MoveTo(device);
    }

    // ---------------------------------------------------------------- graph

    /// <summary>Back-propagates from this tensor (a scalar loss, or any tensor with a seed gradient).</summary>
    public void Backward(Tensor? seed = null) => Tape.Backward(this, seed);

    /// <summary>The same storage without the graph: no gradient flows through the result.</summary>
    public Tensor Detach() => new(Storage, ShapeArray, Offset);

    /// <summary>A view with another shape (one dim may be -1). Differentiable.</summary>
    public Tensor Reshape(params int[] newShape) => Ops.Reshape(this, newShape);

    internal Tensor View(int[] newShape) => new(Storage, newShape, Offset);

    internal void Release()
    {
        if (storage is null) return;
        // Views share storage: the last tensor that lets go of it hands it back to its backend.
        if (--storage.Refs == 0) Backends.For(storage.Device).Release(storage);
        storage = null;
        Node = null;
        Grad = null;
    }

    public override string ToString()
    {
        if (storage is null) return $"Tensor({Engine.Shape.Format(shape)}, released)";
        var head = $"Tensor({Engine.Shape.Format(shape)}, {DType}, {Device}";
        if (Numel > 8 || !DType.IsCompute() && DType != DType.I32) return head + ")";
        return head + ", [" + string.Join(", ", ToDoubleArray().Select(v => v.ToString("G6"))) + "])";
    }
}
