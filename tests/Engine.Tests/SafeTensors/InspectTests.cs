using Engine.IO;
using Engine.Models;
using NUnit.Framework;

namespace Engine.Tests;

public class InspectTests
{
    private TempFolder temp = null!;

    [SetUp] public void SetUp() => temp = new TempFolder();
    [TearDown] public void TearDown() => temp.Dispose();

    private string GoodFile()
    {
        var path = temp.File("good.safetensors");
        new SafeTensorsWriter(new Dictionary<string, string> { ["format"] = "pt" })
            .Add("encoder.weight", DType.BF16, [4, 3], new byte[24])
            .Add("encoder.bias", DType.F32, [3], new byte[12])
            .Save(path);
        return path;
    }

    [Test]
    public void TableListsEveryTensorAndTotals()
    {
        var output = new StringWriter();
        ModelInspector.Inspect(GoodFile(), output);
        var text = output.ToString();
        Assert.That(text, Does.Contain("encoder.weight").And.Contain("BF16").And.Contain("[4, 3]"));
        Assert.That(text, Does.Contain("encoder.bias").And.Contain("F32").And.Contain("[3]"));
        Assert.That(text, Does.Contain("2 tensors, 15 parameters, 36 bytes"));
        Assert.That(text, Does.Contain("format = pt"));
    }

    [Test]
    public void FolderShowsTheConfigSummary()
    {
        var dir = Path.Combine(temp.Path, "llama");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "config.json"), """
            {"model_type": "llama", "vocab_size": 128, "hidden_size": 16, "intermediate_size": 32,
             "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2}
            """);
        new SafeTensorsWriter().Add("model.norm.weight", DType.F32, [16], new byte[64]).Save(Path.Combine(dir, SafeTensors.SingleFileName));
        var output = new StringWriter();
        ModelInspector.Inspect(dir, output);
        var text = output.ToString();
        Assert.That(text, Does.Contain("llama (Llama family): 2 layers, hidden 16, 4 heads (2 key/value)").And.Contain("vocab 128"));
        Assert.That(text, Does.Contain("model.norm.weight").And.Contain("1 tensors, 16 parameters, 64 bytes"));
    }

    private static (int Exit, string Out, string Err) RunEngine(params string[] args) => EngineProcess.Run(args);

    [Test]
    public void CliExitsZeroWithATableOnAGoodFile()
    {
        var (exit, stdout, stderr) = RunEngine("inspect", GoodFile());
        Assert.That(exit, Is.EqualTo(0), stderr);
        Assert.That(stdout, Does.Contain("encoder.weight").And.Contain("2 tensors"));
    }

    [Test]
    public void CliExitsTwoWithOneLineOnACorruptFile()
    {
        var bytes = File.ReadAllBytes(GoodFile());
        var bad = temp.WriteBytes("corrupt.safetensors", bytes[..^5]);
        var (exit, stdout, stderr) = RunEngine("inspect", bad);
        Assert.That(exit, Is.EqualTo(2));
        var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.Length.EqualTo(1), stderr);
        Assert.That(lines[0], Does.StartWith("engine: ").And.Contain("corrupt.safetensors"));
        Assert.That(stderr, Does.Not.Contain("   at "), "no stack trace");
    }
}
