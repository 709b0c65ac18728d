using System.Runtime.InteropServices;
using System.Text;

namespace Engine.Kernels;

/// <summary>How the emulator orders the threads of a block between two synchronisation points,
/// and the blocks of a grid (native/cuda-emulator/runtime.cpp).</summary>
public enum ThreadOrder { Forward = 0, Reverse = 1, Shuffle = 2 }

/// <summary>
/// One build of the CUDA emulator (native/cuda-emulator): the kernel files compiled a second time
/// as C++ into a shared library whose <c>emu_launch</c> runs a launch on the CPU, every thread of
/// a block a fiber. Built by the Engine.Kernels project (build.sh, when g++ is there) next to the
/// assembly as <see cref="FileName"/>; ENGINE_CUDA_EMULATOR_LIB names another build.
/// </summary>
public sealed unsafe class EmulatorLibrary
{
    public const string FileName = "libengine_cuda_emulator.so";

    private readonly delegate* unmanaged<byte*, uint, uint, uint, uint, uint, uint, uint, void**, int, ulong, byte*, int, int> launch;
    private readonly HashSet<string> kernels = new(StringComparer.Ordinal);

    private EmulatorLibrary(string path)
    {
        Path = path;
        var handle = NativeLibrary.Load(path);
        launch = (delegate* unmanaged<byte*, uint, uint, uint, uint, uint, uint, uint, void**, int, ulong, byte*, int, int>)NativeLibrary.GetExport(handle, "emu_launch");
        var count = (delegate* unmanaged<int>)NativeLibrary.GetExport(handle, "emu_kernel_count");
        var name = (delegate* unmanaged<int, byte*>)NativeLibrary.GetExport(handle, "emu_kernel_name");
        var shared = (delegate* unmanaged<long>)NativeLibrary.GetExport(handle, "emu_static_shared_bytes");
        for (int i = 0, n = count(); i < n; i++) kernels.Add(Marshal.PtrToStringUTF8((IntPtr)name(i))!);
        StaticSharedBytes = shared();
    }

    /// <summary>The file this build was loaded from.</summary>
    public string Path { get; }

    /// <summary>The kernels this build defines (every extern "C" __global__ function of its sources).</summary>
    public IReadOnlySet<string> Kernels => kernels;

    /// <summary>Bytes of all the kernels' static __shared__ variables together.</summary>
    public long StaticSharedBytes { get; }

    private static readonly Dictionary<string, EmulatorLibrary> loaded = new();

    /// <summary>Loads a build (once per file).</summary>
    public static EmulatorLibrary Load(string path)
    {
        path = System.IO.Path.GetFullPath(path);
        lock (loaded)
        {
            if (!loaded.TryGetValue(path, out var library)) loaded[path] = library = new EmulatorLibrary(path);
            return library;
        }
    }

    /// <summary>ENGINE_CUDA_EMULATOR_LIB, else <see cref="FileName"/> next to this assembly or the application.</summary>
    public static string DefaultPath
    {
        get
        {
            if (Environment.GetEnvironmentVariable("ENGINE_CUDA_EMULATOR_LIB") is { Length: > 0 } over) return over;
            var beside = System.IO.Path.Combine(System.IO.Path.GetDirectoryName(typeof(EmulatorLibrary).Assembly.Location) ?? "", FileName);
            return File.Exists(beside) ? beside : System.IO.Path.Combine(AppContext.BaseDirectory, FileName);
        }
    }

    /// <summary>The default build, or false with one line saying why there is none.</summary>
    public static bool TryLoadDefault(out EmulatorLibrary? library, out string reason)
    {
        library = null;
        var path = DefaultPath;
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64)
        {
            reason = "the CUDA emulator runs on Linux x64 only";
            return false;
        }
        if (!File.Exists(path))
        {
            reason = $"the CUDA emulator is not built ({path} not found; the Engine.Kernels build makes it with g++)";
            return false;
        }
        try { library = Load(path); }
        catch (Exception e) when (e is DllNotFoundException or BadImageFormatException or EntryPointNotFoundException)
        {
            reason = $"the CUDA emulator {path} does not load ({e.Message})";
            return false;
        }
        reason = "";
        return true;
    }

    /// <summary>Runs one launch to completion; throws EngineException with the emulator's message
    /// when the configuration exceeds sm_90's limits or the kernel deadlocks or diverges.</summary>
    public void Launch(string kernel, uint gridX, uint gridY, uint gridZ, uint blockX, uint blockY, uint blockZ, uint sharedBytes,
                       void** args, ThreadOrder order, ulong seed)
    {
        var name = Encoding.UTF8.GetBytes(kernel + "\0");
        var message = stackalloc byte[1024];
        int r;
        fixed (byte* n = name) r = launch(n, gridX, gridY, gridZ, blockX, blockY, blockZ, sharedBytes, args, (int)order, seed, message, 1024);
        if (r != 0)
            throw new EngineException($"CUDA emulator: {kernel} (grid {gridX}×{gridY}×{gridZ}, block {blockX}×{blockY}×{blockZ}, {order} order): {Marshal.PtrToStringUTF8((IntPtr)message)}");
    }
}

/// <summary>
/// The emulated GPU under a <see cref="CudaDevice"/>: kernel launches run on the CPU through one
/// or more emulator builds (a later build's kernels replace an earlier one's: tests load a
/// deliberately broken variant of one family this way). With more than one
/// <see cref="Orders"/>, every launch is a race check: the buffers its pointer arguments lie in
/// are saved, the launch runs once per order (from the saved contents each time) and any byte
/// that differs between orders fails the launch. After each launch the guard bytes around those
/// buffers are checked, so a write past a buffer's end is reported against the kernel.
/// </summary>
public sealed unsafe class CudaEmulator
{
    private readonly List<EmulatorLibrary> libraries;
    private long launches;

    public CudaEmulator(IEnumerable<EmulatorLibrary> libraries, params ThreadOrder[] orders)
    {
        this.libraries = libraries.ToList();
        if (this.libraries.Count == 0) throw new ArgumentException("at least one emulator build is needed", nameof(libraries));
        Orders = orders.Length == 0 ? DefaultOrders : orders;
    }

    /// <summary>ENGINE_CUDA_EMULATOR_ORDERS (comma-separated forward, reverse, shuffle), else forward only.</summary>
    public static ThreadOrder[] DefaultOrders =>
        Environment.GetEnvironmentVariable("ENGINE_CUDA_EMULATOR_ORDERS") is { Length: > 0 } list
            ? list.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Select(o => Enum.Parse<ThreadOrder>(o, ignoreCase: true)).ToArray()
            : [ThreadOrder.Forward];

    /// <summary>The orders every launch runs in (more than one: a race check).</summary>
    public ThreadOrder[] Orders { get; set; }

    /// <summary>Seed of the shuffled order (varied per launch).</summary>
    public ulong Seed { get; set; } = 0x5EED;

    /// <summary>Every kernel launched so far through this emulator.</summary>
    public IReadOnlySet<string> Launched { get { lock (launched) return launched.ToHashSet(); } }
    private readonly HashSet<string> launched = new();

    public IReadOnlyList<EmulatorLibrary> Libraries => libraries;

    /// <summary>Whether some build defines the kernel.</summary>
    public bool Defines(string kernel) => libraries.Any(l => l.Kernels.Contains(kernel));

    private EmulatorLibrary For(string kernel) =>
        libraries.LastOrDefault(l => l.Kernels.Contains(kernel)) ?? throw new EngineException($"CUDA emulator: no build defines kernel {kernel}");

    /// <summary>Runs a launch whose arguments are already marshalled as for cuLaunchKernel
    /// (<paramref name="args"/>[i] the address of argument i). <paramref name="buffers"/> are the
    /// device buffers its pointer arguments lie in (start, bytes).</summary>
    internal void Launch(string kernel, uint gridX, uint gridY, uint block, void** args, IReadOnlyList<(ulong Start, long Bytes)> buffers,
                         Action<string> checkGuards)
    {
        var library = For(kernel);
        lock (launched) launched.Add(kernel);
        ulong seed = Seed + (ulong)Interlocked.Increment(ref launches);
        if (Orders.Length == 1)
        {
            library.Launch(kernel, gridX, gridY, 1, block, 1, 1, 0, args, Orders[0], seed);
            checkGuards(kernel);
            return;
        }
        var before = buffers.Select(b => Save(b)).ToArray();
        byte[][]? first = null;
        foreach (var order in Orders)
        {
            if (first is not null) for (int i = 0; i < buffers.Count; i++) Restore(buffers[i], before[i]);
            library.Launch(kernel, gridX, gridY, 1, block, 1, 1, 0, args, order, seed);
            checkGuards(kernel);
            if (first is null) { first = buffers.Select(b => Save(b)).ToArray(); continue; }
            for (int i = 0; i < buffers.Count; i++)
            {
                var now = new ReadOnlySpan<byte>((void*)buffers[i].Start, checked((int)buffers[i].Bytes));
                int at = now.CommonPrefixLength(first[i]);
                if (at < now.Length)
                    throw new EngineException($"CUDA emulator: race in {kernel} (grid {gridX}×{gridY}, block {block}): threads in {Orders[0]} and {order} order " +
                                              $"leave different bytes in the buffer at 0x{buffers[i].Start:x} (first at byte {at} of {now.Length})");
            }
        }
    }

    private static byte[] Save((ulong Start, long Bytes) b) => new ReadOnlySpan<byte>((void*)b.Start, checked((int)b.Bytes)).ToArray();

    private static void Restore((ulong Start, long Bytes) b, byte[] saved) => saved.CopyTo(new Span<byte>((void*)b.Start, saved.Length));
}
