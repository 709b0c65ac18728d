using Engine.IO;
using NUnit.Framework;

namespace Engine.Tests;

/// <summary>
/// Files written by the Python safetensors package (tools/reference/make_safetensors_fixture.py,
/// run on a machine with torch; the fixtures land in Fixtures/safetensors). Each is read, its
/// values checked against the script's formula, and then rewritten by the engine's writer, which
/// must reproduce the file byte for byte. Ignored until the script has been run.
/// </summary>
public class SafeTensorsPythonFixtureTests
{
    private static string Fixture(string name)
    {
        var path = Path.Combine(AppContext.BaseDirectory, "Fixtures", "safetensors", name);
        if (!File.Exists(path)) Assert.Ignore($"fixture {name} not made yet: run tools/reference/make_safetensors_fixture.py on a machine with torch");
        return path;
    }

    /// <summary>The script's formula: element i of shape [3, 4] for each dtype.</summary>
    private static double Expected(DType dtype, int i) => dtype switch
    {
        DType.Bool => i % 3 == 0 ? 1 : 0,
        DType.U8 => i,
        DType.I64 or DType.I32 or DType.I16 or DType.I8 => i - 6,
        _ => (i - 6) / 4.0,
    };

    private static void AssertRewriteIsByteIdentical(string path)
    {
        using var f = SafeTensorsFile.Open(path);
        var original = File.ReadAllBytes(path);
        var hasMetadata = original.AsSpan(8).StartsWith("{\"__metadata__\""u8);
        var writer = new SafeTensorsWriter(hasMetadata ? f.Metadata : null);
        foreach (var name in f.Names) writer.Add(name, f.Read(name));
        Assert.That(writer.ToBytes(), Is.EqualTo(original), $"{Path.GetFileName(path)} rewritten by the engine");
    }

    [Test]
    public void AllDTypesReadCorrectlyAndRewriteByteForByte()
    {
        var path = Fixture("python_all_dtypes.safetensors");
        using (var f = SafeTensorsFile.Open(path))
        {
            Assert.That(f.Metadata["format"], Is.EqualTo("pt"));
            foreach (var name in f.Names.Where(n => !n.StartsWith("z.") && !n.StartsWith("y.")))
            {
                var info = f.Info(name);
                Assert.That(info.Shape, Is.EqualTo(new[] { 3, 4 }), name);
                var got = f.ReadAs(name, DType.F64).ToDoubleArray();
                for (int i = 0; i < 12; i++) Assert.That(got[i], Is.EqualTo(Expected(info.DType, i)), $"{name}[{i}]");
            }
            Assert.That(f.ReadAs("z.scalar", DType.F32).Item(), Is.EqualTo(2.5));
            Assert.That(f.Info("y.empty").Shape, Is.EqualTo(new[] { 0, 3 }));
        }
        AssertRewriteIsByteIdentical(path);
    }

    [Test]
    public void NoMetadataAndEmptyFilesRewriteByteForByte()
    {
        AssertRewriteIsByteIdentical(Fixture("python_no_metadata.safetensors"));
        AssertRewriteIsByteIdentical(Fixture("python_empty.safetensors"));
    }
}
