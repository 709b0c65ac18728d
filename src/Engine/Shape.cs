namespace Engine;

/// <summary>Helpers for shapes: int arrays, row-major.</summary>
public static class Shape
{
    public static long Numel(ReadOnlySpan<int> shape)
    {
        long n = 1;
        foreach (var d in shape) n *= d;
        return n;
    }

    public static string Format(ReadOnlySpan<int> shape) => "[" + string.Join(", ", shape.ToArray()) + "]";

    public static bool Equal(ReadOnlySpan<int> a, ReadOnlySpan<int> b) => a.SequenceEqual(b);

    /// <summary>Product of the dims before <paramref name="dim"/>, the dim, and the product after it.</summary>
    public static (long Outer, int Dim, long Inner) Split(ReadOnlySpan<int> shape, int dim)
    {
        long outer = 1, inner = 1;
        for (int i = 0; i < dim; i++) outer *= shape[i];
        for (int i = dim + 1; i < shape.Length; i++) inner *= shape[i];
        return (outer, shape[dim], inner);
    }

    /// <summary>Normalises a possibly negative dim index against a rank.</summary>
    public static int Dim(int dim, int rank, string op)
    {
        int d = dim < 0 ? dim + rank : dim;
        if (d < 0 || d >= rank) throw new EngineException($"{op}: dim {dim} is out of range for rank {rank}");
        return d;
    }

    /// <summary>NumPy broadcasting of two shapes; throws naming the op when they do not broadcast.</summary>
    public static int[] Broadcast(ReadOnlySpan<int> a, ReadOnlySpan<int> b, string op)
    {
        int r = Math.Max(a.Length, b.Length);
        var outShape = new int[r];
        for (int i = 0; i < r; i++)
        {
            int da = i - (r - a.Length) >= 0 ? a[i - (r - a.Length)] : 1;
            int db = i - (r - b.Length) >= 0 ? b[i - (r - b.Length)] : 1;
            if (da != db && da != 1 && db != 1)
                throw new EngineException($"{op}: shapes {Format(a)} and {Format(b)} do not broadcast");
            outShape[i] = da == 1 ? db : da;
        }
        return outShape;
    }

    /// <summary>Strides of <paramref name="shape"/> laid against <paramref name="outShape"/> (0 where broadcast).</summary>
    public static long[] BroadcastStrides(ReadOnlySpan<int> shape, ReadOnlySpan<int> outShape)
    {
        int r = outShape.Length, off = r - shape.Length;
        var strides = new long[r];
        long s = 1;
        for (int i = shape.Length - 1; i >= 0; i--)
        {
            strides[i + off] = shape[i] == 1 ? 0 : s;
            s *= shape[i];
        }
        return strides;
    }

    public static long[] Strides(ReadOnlySpan<int> shape)
    {
        var strides = new long[shape.Length];
        long s = 1;
        for (int i = shape.Length - 1; i >= 0; i--) { strides[i] = s; s *= shape[i]; }
        return strides;
    }
}
