using System.Buffers.Binary;
using System.Text;
using Engine.IO;
using NUnit.Framework;

namespace Engine.Tests;

public class SafeTensorsReadWriteTests
{
    private TempFolder temp = null!;

    [SetUp] public void SetUp() => temp = new TempFolder();
    [TearDown] public void TearDown() => temp.Dispose();

    internal static byte[] RawBytes(Tensor t)
    {
        int size = t.DType.SizeOf();
        return SafeTensorsFormat.BytesOf(((CpuStorage)t.Storage).Data, t.Offset * size, (int)(t.Numel * size)).ToArray();
    }

    private static byte[] RandomBytes(int n, int seed)
    {
        var b = new byte[n];
        new Random(seed).NextBytes(b);
        return b;
    }

    private static readonly DType[] AllTypes =
        [DType.F64, DType.F32, DType.F16, DType.BF16, DType.I64, DType.I32, DType.I16, DType.I8, DType.U8, DType.Bool, DType.F8E4M3, DType.F8E5M2];

    [TestCase(SafeTensorsReadMode.PositionalReads)]
    [TestCase(SafeTensorsReadMode.MemoryMapped)]
    public void EveryDTypeRoundTripsWithMetadata(SafeTensorsReadMode mode)
    {
        var meta = new Dictionary<string, string> { ["format"] = "pt", ["note"] = "ünïcode \"quoted\"\n" };
        var writer = new SafeTensorsWriter(meta);
        var expected = new Dictionary<string, (DType, int[], byte[])>();
        int seed = 0;
        foreach (var t in AllTypes)
        {
            int[] shape = [2, 3];
            var bytes = RandomBytes(6 * t.SizeOf(), seed++);
            if (t == DType.Bool) bytes = bytes.Select(b => (byte)(b & 1)).ToArray();
            var name = "t." + t.SafetensorsName().ToLowerInvariant();
            writer.Add(name, t, shape, bytes);
            expected[name] = (t, shape, bytes);
        }
        writer.Add("scalar", DType.F32, [], BitConverter.GetBytes(3.5f));
        writer.Add("empty", DType.F32, [0, 4], Array.Empty<byte>());
        var path = temp.File("all.safetensors");
        writer.Save(path);

        using var f = SafeTensorsFile.Open(path, mode);
        Assert.That(f.Mode, Is.EqualTo(mode));
        Assert.That(f.Metadata, Is.EquivalentTo(meta));
        Assert.That(f.Names, Has.Count.EqualTo(AllTypes.Length + 2));
        foreach (var (name, (dtype, shape, bytes)) in expected)
        {
            var info = f.Info(name);
            Assert.That(info.DType, Is.EqualTo(dtype), name);
            Assert.That(info.Shape, Is.EqualTo(shape), name);
            var t = f.Read(name);
            Assert.That(t.DType, Is.EqualTo(dtype), name);
            Assert.That(t.ShapeArray, Is.EqualTo(shape), name);
            Assert.That(RawBytes(t), Is.EqualTo(bytes), name);
        }
        Assert.That(f.Read("scalar").Item(), Is.EqualTo(3.5));
        Assert.That(f.Read("scalar").Rank, Is.EqualTo(0));
        Assert.That(f.Read("empty").ShapeArray, Is.EqualTo(new[] { 0, 4 }));
    }

    [Test]
    public void EngineTensorsRoundTripThroughSave()
    {
        var a = Tensor.FromArray([1f, -2f, 3.25f, float.MaxValue, float.Epsilon, -0f], 2, 3);
        var b = Tensor.FromArray([1.0, Math.PI], 2);
        var c = Tensor.FromArray([7, -8, int.MaxValue], 3);
        var path = temp.File("t.safetensors");
        SafeTensors.Save(path, new Dictionary<string, Tensor> { ["a"] = a, ["b"] = b, ["c"] = c });
        var back = SafeTensors.Load(path);
        Assert.That(back["a"].ToFloatArray(), Is.EqualTo(a.ToFloatArray()));
        Assert.That(back["b"].ToDoubleArray(), Is.EqualTo(b.ToDoubleArray()));
        Assert.That(back["c"].ToIntArray(), Is.EqualTo(c.ToIntArray()));
        Assert.That(back["a"].ShapeArray, Is.EqualTo(new[] { 2, 3 }));
    }

    [Test]
    public void OneTensorIsReadByNameWithoutTheOthers()
    {
        var writer = new SafeTensorsWriter();
        writer.Add("first", DType.F32, [4], new byte[16]);
        writer.Add("wanted", DType.F32, [2], BitConverter.GetBytes(1.5f).Concat(BitConverter.GetBytes(-4f)).ToArray());
        writer.Add("last", DType.F32, [1000], new byte[4000]);
        var path = temp.File("lazy.safetensors");
        writer.Save(path);
        using var f = SafeTensorsFile.Open(path);
        Assert.That(f.Read("wanted").ToFloatArray(), Is.EqualTo(new[] { 1.5f, -4f }));
        var e = Assert.Throws<EngineException>(() => f.Read("absent"))!;
        Assert.That(e.Message, Does.Contain("lazy.safetensors").And.Contain("'absent'"));
    }

    [Test]
    public void ShardedIndexReadsTensorsFromTheirShards()
    {
        new SafeTensorsWriter().Add("a", DType.F32, [2], BitConverter.GetBytes(1f).Concat(BitConverter.GetBytes(2f)).ToArray())
            .Save(temp.File("model-00001-of-00002.safetensors"));
        new SafeTensorsWriter().Add("b", DType.BF16, [1], new byte[] { 0x80, 0x3F }) // bf16 1.0
            .Save(temp.File("model-00002-of-00002.safetensors"));
        File.WriteAllText(temp.File(SafeTensors.IndexFileName), """
            {"metadata": {"total_size": 10}, "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
            """);
        using var source = SafeTensors.Open(temp.Path); // the folder finds the index
        Assert.That(source, Is.InstanceOf<ShardedSafeTensors>());
        Assert.That(source.Names, Is.EqualTo(new[] { "a", "b" }));
        Assert.That(source.Metadata["total_size"], Is.EqualTo("10"));
        Assert.That(source.Info("b").DType, Is.EqualTo(DType.BF16));
        Assert.That(source.ReadAs("b", DType.F32).ToFloatArray(), Is.EqualTo(new[] { 1f }));
        Assert.That(source.Read("a").ToFloatArray(), Is.EqualTo(new[] { 1f, 2f }));
    }

    [Test]
    public void ShardedIndexProblemsNameTheIndexAndShard()
    {
        var index = temp.File("bad.index.json");
        File.WriteAllText(index, """{"weight_map": {"a": "missing.safetensors"}}""");
        Assert.That(Assert.Throws<EngineException>(() => ShardedSafeTensors.Open(index))!.Message,
            Does.Contain("bad.index.json").And.Contain("missing.safetensors"));
        File.WriteAllText(index, """{"weight_map": {"a": "../escape.safetensors"}}""");
        Assert.That(Assert.Throws<EngineException>(() => ShardedSafeTensors.Open(index))!.Message, Does.Contain("not a plain file name"));
        new SafeTensorsWriter().Add("x", DType.U8, [1], new byte[1]).Save(temp.File("s.safetensors"));
        File.WriteAllText(index, """{"weight_map": {"a": "s.safetensors"}}""");
        using var source = ShardedSafeTensors.Open(index);
        Assert.That(Assert.Throws<EngineException>(() => source.Read("a"))!.Message, Does.Contain("'a'").And.Contain("s.safetensors"));
    }

    // ------------------------------------------------------------------ byte compatibility

    /// <summary>The expected bytes are built by hand from the format's rules (little-endian
    /// length, compact JSON, space padding to 8 bytes, data in header order); the reference
    /// implementation's own unit test uses this same single-tensor case.</summary>
    [Test]
    public void WriterBytesMatchTheFormatRulesForOneTensor()
    {
        var data = new[] { 0f, 1f, 2f, 3f, 4f, 5f }.SelectMany(BitConverter.GetBytes).ToArray();
        var bytes = new SafeTensorsWriter().Add("attn.0", DType.F32, [1, 2, 3], data).ToBytes();
        const string json = "{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,24]}}";
        Assert.That(json.Length, Is.EqualTo(64)); // already a multiple of 8: no padding
        var expected = new List<byte> { 64, 0, 0, 0, 0, 0, 0, 0 };
        expected.AddRange(Encoding.ASCII.GetBytes(json));
        expected.AddRange(data);
        Assert.That(bytes, Is.EqualTo(expected.ToArray()));
    }

    [Test]
    public void WriterPadsTheHeaderWithSpacesToEightBytes()
    {
        var data = new[] { 0f, 1f, 2f, 3f, 4f, 5f }.SelectMany(BitConverter.GetBytes).ToArray();
        var bytes = new SafeTensorsWriter().Add("attn0", DType.F32, [1, 1, 2, 3], data).ToBytes();
        const string json = "{\"attn0\":{\"dtype\":\"F32\",\"shape\":[1,1,2,3],\"data_offsets\":[0,24]}}";
        Assert.That(json.Length, Is.EqualTo(65));
        var expected = new List<byte> { 72, 0, 0, 0, 0, 0, 0, 0 };
        expected.AddRange(Encoding.ASCII.GetBytes(json + "       "));
        expected.AddRange(data);
        Assert.That(bytes, Is.EqualTo(expected.ToArray()));
    }

    [Test]
    public void WriterOrdersByDescendingAlignmentThenNameWithMetadataFirst()
    {
        var bytes = new SafeTensorsWriter(new Dictionary<string, string> { ["format"] = "pt" })
            .Add("z_byte", DType.U8, [1], new byte[] { 9 })
            .Add("b_float", DType.F32, [1], BitConverter.GetBytes(2f))
            .Add("a_half", DType.BF16, [1], new byte[] { 0x80, 0x3F })
            .Add("a_float", DType.F32, [1], BitConverter.GetBytes(1f))
            .Add("c_long", DType.I64, [1], BitConverter.GetBytes(5L))
            .ToBytes();
        string json = "{\"__metadata__\":{\"format\":\"pt\"}," +
                      "\"c_long\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}," +
                      "\"a_float\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}," +
                      "\"b_float\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]}," +
                      "\"a_half\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[16,18]}," +
                      "\"z_byte\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[18,19]}}";
        json += new string(' ', (8 - json.Length % 8) % 8);
        var expected = new List<byte>();
        var n = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(n, (ulong)json.Length);
        expected.AddRange(n);
        expected.AddRange(Encoding.ASCII.GetBytes(json));
        expected.AddRange(BitConverter.GetBytes(5L));
        expected.AddRange(BitConverter.GetBytes(1f));
        expected.AddRange(BitConverter.GetBytes(2f));
        expected.AddRange(new byte[] { 0x80, 0x3F, 9 });
        Assert.That(Encoding.ASCII.GetString(bytes, 8, json.Length), Is.EqualTo(json));
        Assert.That(bytes, Is.EqualTo(expected.ToArray()));
    }

    [Test]
    public void EmptyFilesMatchTheReference()
    {
        Assert.That(new SafeTensorsWriter().ToBytes(), Is.EqualTo(new byte[] { 8, 0, 0, 0, 0, 0, 0, 0, (byte)'{', (byte)'}', 32, 32, 32, 32, 32, 32 }));
        var withMeta = new SafeTensorsWriter(new Dictionary<string, string> { ["framework"] = "pt" }).ToBytes();
        var json = "{\"__metadata__\":{\"framework\":\"pt\"}}     ";
        Assert.That(withMeta, Is.EqualTo(new byte[] { 40, 0, 0, 0, 0, 0, 0, 0 }.Concat(Encoding.ASCII.GetBytes(json)).ToArray()));
    }

    [Test]
    public void JsonStringsAreEscapedAsSerdeJsonDoes()
    {
        var bytes = new SafeTensorsWriter(new Dictionary<string, string> { ["k"] = "a\"b\\c\n\u0001é/" }).ToBytes();
        var header = Encoding.UTF8.GetString(bytes, 8, bytes.Length - 8).TrimEnd(' ');
        Assert.That(header, Is.EqualTo("{\"__metadata__\":{\"k\":\"a\\\"b\\\\c\\n\\u0001é/\"}}"));
    }

    // ------------------------------------------------------------------ atomic writes

    [Test]
    public void AFailedWriteLeavesThePreviousFileIntactAndNoTempFile()
    {
        var path = temp.File("model.safetensors");
        new SafeTensorsWriter().Add("old", DType.F32, [1], BitConverter.GetBytes(1f)).Save(path);
        var before = File.ReadAllBytes(path);

        // A tensor whose data stream fails half way.
        var failing = new SafeTensorsWriter()
            .Add("a", DType.F32, [4], new byte[16])
            .Add("b", DType.F32, [1024], s => { s.Write(new byte[100]); throw new IOException("disk full (simulated)"); });
        Assert.Throws<IOException>(() => failing.Save(path));
        Assert.That(File.ReadAllBytes(path), Is.EqualTo(before));
        Assert.That(Directory.GetFiles(temp.Path), Is.EqualTo(new[] { path }));

        // A tensor that writes fewer bytes than its shape needs.
        var shortWrite = new SafeTensorsWriter().Add("c", DType.F32, [4], s => s.Write(new byte[3]));
        var e = Assert.Throws<EngineException>(() => shortWrite.Save(path))!;
        Assert.That(e.Message, Does.Contain("'c'"));
        Assert.That(File.ReadAllBytes(path), Is.EqualTo(before));
        Assert.That(Directory.GetFiles(temp.Path), Is.EqualTo(new[] { path }));

        // A successful write replaces it.
        new SafeTensorsWriter().Add("new", DType.F32, [1], BitConverter.GetBytes(2f)).Save(path);
        using var f = SafeTensorsFile.Open(path);
        Assert.That(f.Names, Is.EqualTo(new[] { "new" }));
    }

    [Test]
    public void WriterRejectsBadArgumentsBeforeWriting()
    {
        var w = new SafeTensorsWriter().Add("a", DType.F32, [1], new byte[4]);
        Assert.That(Assert.Throws<EngineException>(() => w.Add("a", DType.F32, [1], new byte[4]))!.Message, Does.Contain("'a'"));
        Assert.That(Assert.Throws<EngineException>(() => w.Add("__metadata__", DType.F32, [1], new byte[4]))!.Message, Does.Contain("reserved"));
        Assert.That(Assert.Throws<EngineException>(() => w.Add("b", DType.F32, [2], new byte[4]))!.Message, Does.Contain("'b'"));
        Assert.That(Assert.Throws<EngineException>(() => w.Add("c", DType.F32, [-1], new byte[4]))!.Message, Does.Contain("negative"));
    }

    // ------------------------------------------------------------------ conversions

    private string WriteOne(DType dtype, byte[] bytes, int count)
    {
        var path = temp.File($"conv-{dtype}.safetensors");
        new SafeTensorsWriter().Add("x", dtype, [count], bytes).Save(path);
        return path;
    }

    private static byte[] U16s(params ushort[] v) => v.SelectMany(BitConverter.GetBytes).ToArray();

    [Test]
    public void Bf16ConvertsExactly()
    {
        ushort[] bits = [0x0000, 0x8000, 0x3F80, 0xBF80, 0x0001, 0x007F, 0x0080, 0x7F7F, 0x7F80, 0xFF80, 0x7FC0, 0x3EAB];
        double[] want =
        [
            0, -0.0, 1, -1, Math.ScaleB(1, -133), 127 * Math.ScaleB(1, -133), Math.ScaleB(1, -126),
            (1 + 127 / 128.0) * Math.ScaleB(1, 127), double.PositiveInfinity, double.NegativeInfinity, double.NaN,
            (1 + 0x2B / 128.0) * Math.ScaleB(1, -2),
        ];
        using var f = SafeTensorsFile.Open(WriteOne(DType.BF16, U16s(bits), bits.Length), SafeTensorsReadMode.MemoryMapped);
        var got32 = f.ReadAs("x", DType.F32).ToFloatArray();
        var got64 = f.ReadAs("x", DType.F64).ToDoubleArray();
        for (int i = 0; i < bits.Length; i++)
        {
            Assert.That(BitConverter.DoubleToInt64Bits(got64[i]), Is.EqualTo(BitConverter.DoubleToInt64Bits(want[i])).Or.Matches<long>(_ => double.IsNaN(want[i]) && double.IsNaN(got64[i])), $"bf16 0x{bits[i]:X4}");
            Assert.That((double)got32[i], Is.EqualTo(want[i]).Or.Matches<double>(_ => double.IsNaN(want[i])), $"bf16 0x{bits[i]:X4}");
            if (!double.IsNaN(want[i])) Assert.That(double.IsNegative(got32[i]), Is.EqualTo(double.IsNegative(want[i])), $"sign of 0x{bits[i]:X4}");
        }
        Assert.That(float.IsNaN(got32[10]) && double.IsNaN(got64[10]));
    }

    [Test]
    public void F16ConvertsExactly()
    {
        ushort[] bits = [0x0000, 0x8000, 0x3C00, 0x0001, 0x03FF, 0x0400, 0x7BFF, 0x7C00, 0xFC00, 0x7E00, 0x3555];
        double[] want =
        [
            0, -0.0, 1, Math.ScaleB(1, -24), 1023 * Math.ScaleB(1, -24), Math.ScaleB(1, -14), 65504,
            double.PositiveInfinity, double.NegativeInfinity, double.NaN, (1 + 0x155 / 1024.0) * Math.ScaleB(1, -2),
        ];
        using var f = SafeTensorsFile.Open(WriteOne(DType.F16, U16s(bits), bits.Length));
        var got32 = f.ReadAs("x", DType.F32).ToFloatArray();
        var got64 = f.ReadAs("x", DType.F64).ToDoubleArray();
        for (int i = 0; i < bits.Length; i++)
        {
            if (double.IsNaN(want[i])) { Assert.That(float.IsNaN(got32[i]) && double.IsNaN(got64[i]), $"f16 0x{bits[i]:X4}"); continue; }
            Assert.That((double)got32[i], Is.EqualTo(want[i]), $"f16 0x{bits[i]:X4}");
            Assert.That(got64[i], Is.EqualTo(want[i]), $"f16 0x{bits[i]:X4}");
            Assert.That(double.IsNegative(got32[i]), Is.EqualTo(double.IsNegative(want[i])), $"sign of f16 0x{bits[i]:X4}");
        }
    }

    [Test]
    public void Fp8ConvertsExactly()
    {
        byte[] e4m3 = [0x00, 0x80, 0x38, 0x01, 0x07, 0x08, 0x7E, 0xFE, 0x7F, 0xFF, 0x40];
        double[] e4m3Want = [0, -0.0, 1, Math.ScaleB(1, -9), 7 * Math.ScaleB(1, -9), Math.ScaleB(1, -6), 448, -448, double.NaN, double.NaN, 2];
        byte[] e5m2 = [0x00, 0x3C, 0x01, 0x03, 0x04, 0x7B, 0x7C, 0xFC, 0x7D, 0x7F, 0xC0];
        double[] e5m2Want = [0, 1, Math.ScaleB(1, -16), 3 * Math.ScaleB(1, -16), Math.ScaleB(1, -14), 57344, double.PositiveInfinity, double.NegativeInfinity, double.NaN, double.NaN, -2];
        foreach (var (dtype, bytes, want) in new[] { (DType.F8E4M3, e4m3, e4m3Want), (DType.F8E5M2, e5m2, e5m2Want) })
        {
            using var f = SafeTensorsFile.Open(WriteOne(dtype, bytes, bytes.Length));
            var got = f.ReadAs("x", DType.F32).ToFloatArray();
            for (int i = 0; i < bytes.Length; i++)
            {
                if (double.IsNaN(want[i])) Assert.That(float.IsNaN(got[i]), $"{dtype} 0x{bytes[i]:X2}");
                else
                {
                    Assert.That((double)got[i], Is.EqualTo(want[i]), $"{dtype} 0x{bytes[i]:X2}");
                    Assert.That(float.IsNegative(got[i]), Is.EqualTo(double.IsNegative(want[i])), $"sign of {dtype} 0x{bytes[i]:X2}");
                }
            }
        }
    }

    [Test]
    public void IntegersConvertToFloatAndToNarrowerIntegersWhenTheyFit()
    {
        var path = temp.File("ints.safetensors");
        new SafeTensorsWriter()
            .Add("i64", DType.I64, [3], new long[] { -3, 0, 1L << 40 }.SelectMany(BitConverter.GetBytes).ToArray())
            .Add("i8", DType.I8, [2], new byte[] { 0xFF, 0x7F })
            .Add("flag", DType.Bool, [2], new byte[] { 1, 0 })
            .Add("f", DType.F32, [1], BitConverter.GetBytes(1f))
            .Save(path);
        using var f = SafeTensorsFile.Open(path);
        Assert.That(f.ReadAs("i64", DType.F64).ToDoubleArray(), Is.EqualTo(new[] { -3.0, 0, 1L << 40 }));
        Assert.That(f.ReadAs("i8", DType.F32).ToFloatArray(), Is.EqualTo(new[] { -1f, 127f }));
        Assert.That(f.ReadAs("i8", DType.I32).ToIntArray(), Is.EqualTo(new[] { -1, 127 }));
        Assert.That(f.ReadAs("flag", DType.F32).ToFloatArray(), Is.EqualTo(new[] { 1f, 0f }));
        var tooBig = Assert.Throws<EngineException>(() => f.ReadAs("i64", DType.I32))!;
        Assert.That(tooBig.Message, Does.Contain("ints.safetensors").And.Contain("'i64'").And.Contain("element 2"));
        var cannot = Assert.Throws<EngineException>(() => f.ReadAs("f", DType.I32))!;
        Assert.That(cannot.Message, Does.Contain("ints.safetensors").And.Contain("'f'").And.Contain("cannot be converted"));
        Assert.Throws<EngineException>(() => f.ReadAs("f", DType.BF16));
    }
}
