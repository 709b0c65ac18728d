using Engine.Kernels;
using NUnit.Framework;

namespace Engine.Tests.Cuda;

public class CacheTests
{
    [Test]
    public void TheCacheKeyIsStableAndCoversSourceOptionsVersionAndArch()
    {
        string[] opts = ["--std=c++14", "--gpu-architecture=sm_90"];
        var key = KernelCompiler.CacheKey("src", "hdr", opts, "12.4", "sm_90");
        Assert.That(key, Is.EqualTo(KernelCompiler.CacheKey("src", "hdr", opts, "12.4", "sm_90")));
        Assert.That(key, Has.Length.EqualTo(64).And.Match("^[0-9a-f]+$"));
        // The key names files on disk, so it must not change between runs, processes or machines:
        // it is the SHA-256 of the inputs in a fixed layout (each named, NUL-separated), written out here.
        var layout = "source\0src\0header\0hdr\0options\0--std=c++14\0--gpu-architecture=sm_90\0nvrtc\012.4\0arch\0sm_90";
        Assert.That(key, Is.EqualTo(Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(layout)))));
        var others = new[]
        {
            KernelCompiler.CacheKey("src2", "hdr", opts, "12.4", "sm_90"),
            KernelCompiler.CacheKey("src", "hdr2", opts, "12.4", "sm_90"),
            KernelCompiler.CacheKey("src", "hdr", ["--std=c++17", "--gpu-architecture=sm_90"], "12.4", "sm_90"),
            KernelCompiler.CacheKey("src", "hdr", opts, "13.0", "sm_90"),
            KernelCompiler.CacheKey("src", "hdr", opts, "12.4", "sm_80"),
        };
        Assert.That(others, Has.None.EqualTo(key));
        Assert.That(others.Distinct().Count(), Is.EqualTo(others.Length));
    }

    [Test]
    public void CacheFilesAreWrittenAtomically()
    {
        var dir = Directory.CreateTempSubdirectory("engine-cache").FullName;
        try
        {
            var file = Path.Combine(dir, "sub", "k.cubin");
            KernelCompiler.WriteAtomically(file, [1, 2, 3]);
            Assert.That(File.ReadAllBytes(file), Is.EqualTo(new byte[] { 1, 2, 3 }));

            // Many concurrent writers of whole images: a reader only ever sees one complete image.
            var images = Enumerable.Range(0, 8).Select(i => Enumerable.Repeat((byte)i, 1 << 18).ToArray()).ToArray();
            Parallel.For(0, 64, i => KernelCompiler.WriteAtomically(file, images[i % images.Length]));
            var read = File.ReadAllBytes(file);
            Assert.That(read, Has.Length.EqualTo(1 << 18));
            Assert.That(read.Distinct().Count(), Is.EqualTo(1));
            Assert.That(Directory.GetFiles(Path.Combine(dir, "sub")), Has.Length.EqualTo(1), "temporary files were left behind");
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Test]
    public void CompiledImagesAreReadBackFromTheCache()
    {
        CudaTestSupport.RequireNvrtc();
        var dir = Directory.CreateTempSubdirectory("engine-cache").FullName;
        var old = Environment.GetEnvironmentVariable("ENGINE_KERNEL_CACHE");
        try
        {
            Environment.SetEnvironmentVariable("ENGINE_KERNEL_CACHE", dir);
            var first = KernelCompiler.Compile("rope", "sm_80");
            var second = KernelCompiler.Compile("rope", "sm_80");
            Assert.That(first.FromCache, Is.False);
            Assert.That(second.FromCache, Is.True);
            Assert.That(second.Image, Is.EqualTo(first.Image));
            Assert.That(Directory.GetFiles(dir), Has.Length.EqualTo(1).And.All.EndsWith(".cubin"));
        }
        finally
        {
            Environment.SetEnvironmentVariable("ENGINE_KERNEL_CACHE", old);
            Directory.Delete(dir, recursive: true);
        }
    }
}
