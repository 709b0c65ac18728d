using Engine.IO;
using NUnit.Framework;

namespace Engine.Tests;

public class ForwardCliTests
{
    private static string Fixture(string kind) => Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "bert_tiny", kind);

    [Test]
    public void ForwardWritesHiddenStatesLogitsLossAndGradients()
    {
        using var temp = new TempFolder();
        var outPath = temp.File("out.safetensors");
        // The reference file holds input_ids, attention_mask, token_type_ids and labels (I64).
        var r = EngineProcess.Run("forward", "--model", Fixture("bert"), "--ids", Path.Combine(Fixture("bert"), "reference.safetensors"), "--grads", "--out", outPath);
        Assert.That(r.Exit, Is.EqualTo(0), r.Err);
        using var got = SafeTensors.Open(outPath);
        using var want = SafeTensors.Open(Path.Combine(Fixture("bert"), "reference.safetensors"));
        Assert.That(got.Names, Does.Contain("hidden_states.0").And.Contain("hidden_states.2").And.Contain("last_hidden_state")
            .And.Contain("logits").And.Contain("loss").And.Contain("grad.bert.embeddings.word_embeddings.weight"));
        Assert.That(got.Info("logits").DType, Is.EqualTo(DType.F32));
        foreach (var name in new[] { "logits", "loss", "grad.classifier.weight", "grad.bert.encoder.layer.0.attention.self.query.weight" })
        {
            var a = got.ReadAs(name, DType.F64).ToDoubleArray();
            var e = want.ReadAs(name, DType.F64).ToDoubleArray();
            double scale = Math.Max(1, e.Max(Math.Abs));
            for (int i = 0; i < e.Length; i++) Assert.That(a[i], Is.EqualTo(e[i]).Within(1e-3 * scale), $"{name}[{i}]"); // float32 run
        }
    }

    [Test]
    public void BadInputsAreOneLineErrors()
    {
        using var temp = new TempFolder();
        var outPath = temp.File("out.safetensors");
        var line = EngineProcess.AssertUserError(EngineProcess.Run("forward", "--model", Fixture("bert"), "--out", outPath));
        Assert.That(line, Does.Contain("--ids"));
        var bad = temp.WriteBytes("ids.safetensors", [1, 2, 3]);
        line = EngineProcess.AssertUserError(EngineProcess.Run("forward", "--model", Fixture("bert"), "--ids", bad, "--out", outPath));
        Assert.That(line, Does.Contain("ids.safetensors"));
        line = EngineProcess.AssertUserError(EngineProcess.Run("forward", "--model", temp.Path, "--ids", bad, "--out", outPath));
        Assert.That(line, Does.Contain("config.json"));
        Assert.That(File.Exists(outPath), Is.False, "nothing half-written");
    }

    /// <summary>Whole-model parity: `engine forward --device cuda` on the BERT and Llama fixtures
    /// writes every hidden state, the logits, the loss and every gradient within float32
    /// tolerance of the CPU run (without a GPU: on the CPU emulator, ENGINE_CUDA_EMULATOR=1, race-checked).</summary>
    [TestCase("bert_tiny/bert")]
    [TestCase("bert_tiny/roberta")]
    [TestCase("llama_tiny/llama")]
    [TestCase("llama_tiny/llama3_bf16")]
    [TestCase("llama_tiny/qwen2_pad_eos")]
    public void ForwardOnCudaMatchesTheCpu(string fixture)
    {
        var emulator = Cuda.CudaTestSupport.Backend().Emulator;
        var environment = emulator is null ? null : new Dictionary<string, string>
        {
            ["ENGINE_CUDA_EMULATOR"] = "1",
            ["ENGINE_CUDA_EMULATOR_LIB"] = emulator.Libraries[0].Path,
            ["ENGINE_CUDA_EMULATOR_ORDERS"] = string.Join(",", emulator.Orders),
        };
        var dir = Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", fixture);
        using var temp = new TempFolder();
        var outputs = new Dictionary<string, string>();
        foreach (var device in new[] { "cpu", "cuda" })
        {
            outputs[device] = temp.File(device + ".safetensors");
            var r = EngineProcess.Run(environment, "forward", "--model", dir, "--ids", Path.Combine(dir, "reference.safetensors"), "--grads", "--device", device, "--out", outputs[device]);
            Assert.That(r.Exit, Is.EqualTo(0), r.Err);
        }
        using var cpu = SafeTensors.Open(outputs["cpu"]);
        using var gpu = SafeTensors.Open(outputs["cuda"]);
        Assert.That(gpu.Names, Is.EquivalentTo(cpu.Names));
        Assert.That(cpu.Names.Count(n => n.StartsWith("grad.")), Is.GreaterThan(5));
        foreach (var name in cpu.Names)
        {
            var e = cpu.ReadAs(name, DType.F64).ToDoubleArray();
            var a = gpu.ReadAs(name, DType.F64).ToDoubleArray();
            double scale = Math.Max(1, e.Max(Math.Abs));
            for (int i = 0; i < e.Length; i++) Assert.That(a[i], Is.EqualTo(e[i]).Within(1e-4 * scale), $"{name}[{i}]");
        }
    }

    [Test]
    public void DeviceCudaWithoutAGpuIsOneLine()
    {
        if (Engine.Kernels.CudaAvailability.IsAvailable) Assert.Ignore("a GPU is present: --device cuda runs (ForwardOnCudaMatchesTheCpu)");
        using var temp = new TempFolder();
        var outPath = temp.File("out.safetensors");
        var line = EngineProcess.AssertUserError(EngineProcess.Run("forward", "--model", Fixture("bert"), "--text", "a b", "--device", "cuda", "--out", outPath));
        Assert.That(line, Does.StartWith("engine: CUDA not available"));
        line = EngineProcess.AssertUserError(EngineProcess.Run("eval", "--model", Fixture("bert"), "--data", outPath, "--device", "cuda:1"));
        Assert.That(line, Does.StartWith("engine: CUDA not available"));
        line = EngineProcess.AssertUserError(EngineProcess.Run("forward", "--model", Fixture("bert"), "--text", "a b", "--device", "tpu", "--out", outPath));
        Assert.That(line, Does.Contain("unknown device 'tpu'"));
        Assert.That(File.Exists(outPath), Is.False, "nothing half-written");
    }
}
