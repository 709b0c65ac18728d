using System.Text.Json;
using NUnit.Framework;

namespace Engine.Tests;

/// <summary>
/// Forward outputs and input gradients of the ops against PyTorch (fixture made by
/// tools/reference/op_reference.py with PyTorch 1.13, float64). The gradient checks prove each
/// backward matches its own forward; these prove the forwards mean what PyTorch and Hugging
/// Face mean (GELU forms, LayerNorm eps, RMSNorm, grouped-query causal attention with prefix
/// keys, rotate-half RoPE, ignore_index).
/// </summary>
public class ReferenceOpTests
{
    private static JsonElement Cases()
    {
        var path = Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "op_reference.json");
        return JsonDocument.Parse(File.ReadAllText(path)).RootElement.GetProperty("cases");
    }

    public static IEnumerable<TestCaseData> All()
    {
        var path = Path.Combine(AppContext.BaseDirectory, "Fixtures", "op_reference.json");
        var names = JsonDocument.Parse(File.ReadAllText(path)).RootElement.GetProperty("cases").EnumerateObject().Select(p => p.Name).ToList();
        foreach (var n in names)
        {
            yield return new TestCaseData(n, DType.F64).SetName($"Reference_{n}_F64");
            yield return new TestCaseData(n, DType.F32).SetName($"Reference_{n}_F32");
        }
    }

    private static Tensor Load(JsonElement e, DType dtype, bool ints = false)
    {
        var shape = e.GetProperty("shape").EnumerateArray().Select(x => x.GetInt32()).ToArray();
        var data = e.GetProperty("data");
        if (ints) return Tensor.FromArray(data.EnumerateArray().Select(x => x.GetInt32()).ToArray(), shape);
        return Tensor.FromDoubles(data.EnumerateArray().Select(x => x.GetDouble()).ToArray(), shape, dtype);
    }

    private static Tensor Apply(string name, Dictionary<string, Tensor> x, Dictionary<string, Tensor> c, JsonElement p, DType dtype) => name switch
    {
        "gelu" => Ops.Gelu(x["x"]),
        "gelu_tanh" => Ops.GeluTanh(x["x"]),
        "silu" => Ops.Silu(x["x"]),
        "tanh" => Ops.Tanh(x["x"]),
        "relu" => Ops.Relu(x["x"]),
        "softmax" => Ops.Softmax(x["x"]),
        "layer_norm" => Ops.LayerNorm(x["x"], x["w"], x["b"], p.GetProperty("eps").GetDouble()),
        "rms_norm" => Ops.RmsNorm(x["x"], x["w"], p.GetProperty("eps").GetDouble()),
        "matmul" => Ops.MatMul(x["a"], x["b"], transB: true),
        "linear" => Ops.Linear(x["x"], x["w"], x["b"]),
        "embedding" => Ops.Embedding(c["ids"], x["w"]),
        "attention" => Ops.Attention(x["q"], x["k"], x["v"], c["mask"], causal: true),
        "rope" => RopeCase(x["x"], p.GetProperty("theta").GetDouble(), dtype),
        "cross_entropy" => Ops.CrossEntropy(x["logits"], c["t"]),
        "mse" => Ops.Mse(x["pred"], c["target"]),
        "bce_with_logits" => Ops.BceWithLogits(x["logits"], c["target"]),
        "layer_mix" => Ops.LayerMix([x["x0"], x["x1"], x["x2"], x["x3"]], x["a"]),
        _ => throw new AssertionException($"no engine call for reference case {name}"),
    };

    private static Tensor RopeCase(Tensor x, double theta, DType dtype)
    {
        var (cos, sin) = Ops.RopeTables(x.Dim(2), x.Dim(3), theta, dtype);
        return Ops.Rope(x, cos, sin);
    }

    [TestCaseSource(nameof(All))]
    public void MatchesPyTorch(string name, DType dtype)
    {
        var c = Cases().GetProperty(name);
        var inputs = c.GetProperty("inputs").EnumerateObject().ToDictionary(p => p.Name, p =>
        {
            var t = Load(p.Value, dtype);
            t.RequiresGrad = true;
            return t;
        });
        var consts = c.GetProperty("constants").EnumerateObject().ToDictionary(p => p.Name, p =>
            Load(p.Value, dtype, ints: p.Value.TryGetProperty("int", out _)));
        var y = Apply(name, inputs, consts, c.GetProperty("params"), dtype);
        y.Backward(Load(c.GetProperty("upstream"), dtype));

        // float64: agreement to rounding (1e-10); float32: single-precision accumulation (2e-5 relative to the tensor's scale).
        double tol = dtype == DType.F64 ? 1e-10 : 2e-5;
        AssertClose(y.ToDoubleArray(), c.GetProperty("output").GetProperty("data"), tol, $"{name} output");
        foreach (var g in c.GetProperty("grads").EnumerateObject())
            AssertClose(inputs[g.Name].Grad!.ToDoubleArray(), g.Value.GetProperty("data"), tol, $"{name} d{g.Name}");
    }

    private static void AssertClose(double[] actual, JsonElement expected, double tol, string what)
    {
        var e = expected.EnumerateArray().Select(v => v.GetDouble()).ToArray();
        Assert.That(actual.Length, Is.EqualTo(e.Length), what);
        double scale = Math.Max(1.0, e.Max(Math.Abs));
        for (int i = 0; i < e.Length; i++)
            Assert.That(Math.Abs(actual[i] - e[i]), Is.LessThanOrEqualTo(tol * scale), $"{what}[{i}]: {actual[i]} vs PyTorch {e[i]}");
    }
}
