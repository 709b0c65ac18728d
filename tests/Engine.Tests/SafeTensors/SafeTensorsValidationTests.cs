using System.Buffers.Binary;
using Engine.IO;
using NUnit.Framework;

namespace Engine.Tests;

/// <summary>One test per malformed-file case: each must be an EngineException whose one-line
/// message names the file (and the tensor where one is involved).</summary>
public class SafeTensorsValidationTests
{
    private TempFolder temp = null!;

    [SetUp] public void SetUp() => temp = new TempFolder();
    [TearDown] public void TearDown() => temp.Dispose();

    private static string Entry(string name, string dtype, string shape, long begin, long end) =>
        $"\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":{shape},\"data_offsets\":[{begin},{end}]}}";

    private static EngineException Fails(string path)
    {
        var e = Assert.Throws<EngineException>(() => SafeTensorsFile.Open(path).Dispose())!;
        Assert.That(e.Message, Does.Contain(Path.GetFileName(path)), "the message names the file");
        Assert.That(e.Message, Does.Not.Contain("\n"), "the message is one line");
        return e;
    }

    private void AssertFails(string header, int dataBytes, string fragment, string? tensor = null)
    {
        var path = temp.WriteRaw("bad.safetensors", header, new byte[dataBytes]);
        var e = Fails(path);
        Assert.That(e.Message, Does.Contain(fragment));
        if (tensor is not null) Assert.That(e.Message, Does.Contain($"'{tensor}'"), "the message names the tensor");
    }

    [Test]
    public void EmptyFile() => Assert.That(Fails(temp.WriteBytes("e.safetensors", [])).Message, Does.Contain("empty"));

    [Test]
    public void FileShorterThanTheLengthField() =>
        Assert.That(Fails(temp.WriteBytes("s.safetensors", [1, 2, 3])).Message, Does.Contain("fewer than the 8-byte"));

    [Test]
    public void HeaderLengthPastTheEndOfTheFile()
    {
        var path = temp.WriteRaw("h.safetensors", "{}", declaredLength: 1000);
        Assert.That(Fails(path).Message, Does.Contain("header length 1000 runs past the end"));
    }

    [Test]
    public void HeaderLengthOverTheCap()
    {
        var path = temp.WriteRaw("cap.safetensors", "{}", declaredLength: 200_000_000);
        Assert.That(Fails(path).Message, Does.Contain("100 MB cap"));
        var huge = temp.WriteRaw("huge.safetensors", "{}", declaredLength: ulong.MaxValue);
        Assert.That(Fails(huge).Message, Does.Contain("cap"));
    }

    [Test]
    public void InvalidJson() => AssertFails("{\"a\": {\"dtype\": ", 0, "not valid JSON");

    [Test]
    public void InvalidUtf8InTheHeader()
    {
        byte[] header = [(byte)'{', (byte)'"', 0xFF, 0xFE, (byte)'"', (byte)':', (byte)'1', (byte)'}'];
        var bytes = new byte[8 + header.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)header.Length);
        header.CopyTo(bytes, 8);
        Assert.That(Fails(temp.WriteBytes("utf.safetensors", bytes)).Message, Does.Contain("UTF-8"));
    }

    [Test]
    public void LoneSurrogateEscapeInAName() =>
        AssertFails("{\"\\ud800\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "invalid");

    [Test]
    public void HeaderNotAnObject()
    {
        AssertFails("[1, 2, 3]", 0, "not an object");
        AssertFails("\"text\"", 0, "not an object");
    }

    [Test]
    public void DuplicateTensorNames() =>
        AssertFails("{" + Entry("w", "F32", "[1]", 0, 4) + "," + Entry("w", "F32", "[1]", 4, 8) + "}", 8, "twice", "w");

    [Test]
    public void DuplicateKeysInsideAnEntry() =>
        AssertFails("{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "twice", "w");

    [Test]
    public void MissingDType() => AssertFails("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "no \"dtype\"", "w");

    [Test]
    public void MissingShape() => AssertFails("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "no \"shape\"", "w");

    [Test]
    public void MissingDataOffsets() => AssertFails("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "no \"data_offsets\"", "w");

    [Test]
    public void MalformedEntries()
    {
        AssertFails("{\"w\":[1,2]}", 0, "entry is a JSON array", "w");
        AssertFails("{\"w\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "not a string", "w");
        AssertFails("{\"w\":{\"dtype\":\"F32\",\"shape\":\"1\",\"data_offsets\":[0,4]}}", 4, "not an array", "w");
        AssertFails("{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, "not an integer", "w");
        AssertFails("{\"w\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,4]}}", 4, "not an integer", "w");
        AssertFails("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8, "two integers", "w");
        AssertFails("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":{\"a\":0}}}", 4, "two integers", "w");
        AssertFails("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4, "not a non-negative integer", "w");
    }

    [Test]
    public void MalformedMetadata()
    {
        AssertFails("{\"__metadata__\":{\"n\":1}}", 0, "must be strings");
        AssertFails("{\"__metadata__\":[\"a\"]}", 0, "must be an object");
    }

    [Test]
    public void UnknownDType()
    {
        AssertFails("{" + Entry("w", "F31", "[1]", 0, 4) + "}", 4, "unknown dtype 'F31'", "w");
        AssertFails("{" + Entry("w", "f32", "[1]", 0, 4) + "}", 4, "unknown dtype 'f32'", "w");
        AssertFails("{" + Entry("w", "U16", "[1]", 0, 2) + "}", 2, "not supported", "w");
    }

    [Test]
    public void NegativeShape() => AssertFails("{" + Entry("w", "F32", "[-1]", 0, 4) + "}", 4, "negative", "w");

    [Test]
    public void OverflowingShape()
    {
        AssertFails("{" + Entry("w", "F32", "[2147483647,2147483647,2147483647]", 0, 4) + "}", 4, "overflows", "w");
        AssertFails("{" + Entry("w", "F32", "[99999999999999999999]", 0, 4) + "}", 4, "not an integer", "w");
        AssertFails("{" + Entry("w", "U8", "[4294967296]", 0, 4) + "}", 4, "larger than the engine supports", "w");
    }

    [Test]
    public void ReversedOffsets() => AssertFails("{" + Entry("w", "F32", "[1]", 4, 0) + "}", 4, "reversed", "w");

    [Test]
    public void OffsetsOutOfRange() =>
        AssertFails("{" + Entry("w", "F32", "[1000]", 0, 4000) + "}", 8, "run past the end of the data", "w");

    [Test]
    public void OverlappingOffsets() =>
        AssertFails("{" + Entry("a", "F32", "[2]", 0, 8) + "," + Entry("b", "F32", "[2]", 4, 12) + "}", 12, "overlaps", "b");

    [Test]
    public void AHoleBetweenTensors() =>
        AssertFails("{" + Entry("a", "F32", "[1]", 0, 4) + "," + Entry("b", "F32", "[1]", 8, 12) + "}", 12, "hole", "b");

    [Test]
    public void AHoleAtTheStart() => AssertFails("{" + Entry("a", "F32", "[1]", 4, 8) + "}", 8, "hole", "a");

    [Test]
    public void BytesLeftOverAtTheEnd() =>
        AssertFails("{" + Entry("a", "F32", "[1]", 0, 4) + "}", 8, "last 4 bytes of the data belong to no tensor");

    [Test]
    public void ByteSizeNotMatchingDTypeTimesShape() =>
        AssertFails("{" + Entry("w", "F32", "[3]", 0, 8) + "}", 8, "needs 12", "w");

    [Test]
    public void TruncatedFile()
    {
        var good = new SafeTensorsWriter().Add("w", DType.F32, [16], new byte[64]).ToBytes();
        var inData = Fails(temp.WriteBytes("t1.safetensors", good[..^10]));
        Assert.That(inData.Message, Does.Contain("'w'").And.Contain("truncated"));
        var inHeader = Fails(temp.WriteBytes("t2.safetensors", good[..20]));
        Assert.That(inHeader.Message, Does.Contain("truncated"));
    }

    [Test]
    public void PyTorchZipCheckpoint()
    {
        var e = Fails(temp.WriteBytes("pytorch_model.bin", [.. "PK\x03\x04"u8, .. new byte[60]]));
        Assert.That(e.Message, Does.Contain("zip").And.Contain("save_file"));
    }

    [Test]
    public void PyTorchPickleCheckpoint()
    {
        var e = Fails(temp.WriteBytes("old.pt", [0x80, 0x02, 0x8a, 0x0a, .. new byte[40]]));
        Assert.That(e.Message, Does.Contain("pickle").And.Contain("save_file"));
    }

    /// <summary>A valid file whose header is 640 + k bytes starts 80 02 like a pickle: it must still read.</summary>
    [Test]
    public void AHeaderLengthThatStartsLikeAPickleStillReads()
    {
        var path = temp.File("x.safetensors");
        for (int pad = 0; ; pad++)
        {
            SafeTensors.Save(path, [new("t", Tensor.FromArray(new float[] { 1, 2 }, 2))], new Dictionary<string, string> { ["note"] = new string('x', pad) });
            var head = File.ReadAllBytes(path);
            if (head[0] == 0x80 && head[1] == 0x02) break;
            Assert.That(pad, Is.LessThan(2000), "no padding gave a header length of 0x280..0x2FF");
        }
        using var file = SafeTensors.Open(path);
        Assert.That(file.Read("t").ToFloatArray(), Is.EqualTo(new float[] { 1, 2 }));
    }

    [Test]
    public void TextFileIsNotSafetensors()
    {
        var e = Fails(temp.WriteBytes("notes.safetensors", "hello, this is just some text that is long enough"u8.ToArray()));
        Assert.That(e.Message, Does.Contain("not a safetensors file").Or.Contain("not safetensors"));
    }

    /// <summary>Random byte flips and truncations of valid files: every outcome is a correct read
    /// or a clean EngineException; never another exception, and never a large allocation.</summary>
    [Test]
    public void RandomCorruptionGivesACleanErrorOrAValidRead()
    {
        var writer = new SafeTensorsWriter(new Dictionary<string, string> { ["format"] = "pt" })
            .Add("embed.weight", DType.BF16, [8, 4], new byte[64])
            .Add("layer.0.weight", DType.F32, [4, 4], new byte[64])
            .Add("ids", DType.I64, [3], new byte[24])
            .Add("mask", DType.Bool, [5], new byte[5]);
        var good = writer.ToBytes();
        var rng = new Random(12345);
        int clean = 0, read = 0;
        for (int trial = 0; trial < 600; trial++)
        {
            var bytes = (byte[])good.Clone();
            int kind = rng.Next(3);
            if (kind == 0 || kind == 2)
                for (int k = rng.Next(1, 4); k > 0; k--) bytes[rng.Next(Math.Min(bytes.Length, 8 + 200))] ^= (byte)(1 << rng.Next(8));
            if (kind == 1 || kind == 2) bytes = bytes[..rng.Next(bytes.Length)];
            var path = temp.WriteBytes($"fuzz.safetensors", bytes);
            long allocated = GC.GetAllocatedBytesForCurrentThread();
            try
            {
                using var f = SafeTensorsFile.Open(path);
                foreach (var name in f.Names)
                {
                    var t = f.Read(name);
                    Assert.That(t.Numel, Is.EqualTo(f.Info(name).Numel));
                    if (t.DType != DType.Bool) f.ReadAs(name, DType.F32);
                }
                read++;
            }
            catch (EngineException e)
            {
                Assert.That(e.Message, Does.Contain("fuzz.safetensors"));
                clean++;
            }
            Assert.That(GC.GetAllocatedBytesForCurrentThread() - allocated, Is.LessThan(4_000_000), $"trial {trial} allocated too much");
        }
        Assert.That(clean, Is.GreaterThan(100));
        TestContext.Out.WriteLine($"{read} valid reads, {clean} clean errors");
    }
}
