using System.Diagnostics;
using System.Text;

namespace Engine.Models.Reliability;

/// <summary>
/// One reader under fuzzing. <see cref="Prepare"/> writes the companion files a read needs (a
/// config.json beside a vocab.txt, say) into a fresh folder once; each trial then writes the
/// mutated input as <see cref="FileName"/> in that folder and calls <see cref="Read"/> with the
/// folder. A read must either succeed or throw <see cref="EngineException"/>.
/// </summary>
public sealed record FuzzTarget(string Name, string FileName, IReadOnlyList<byte[]> Seeds, Action<string> Read, Action<string>? Prepare = null);

/// <summary>What one trial of a target did wrong: a crash (any exception other than
/// <see cref="EngineException"/>, or an EngineException whose message is not one line naming the
/// file), a hang, or an allocation far beyond the input's size. <see cref="Input"/> reproduces it.</summary>
public sealed record FuzzFailure(string Target, int Trial, string Kind, string Detail, byte[] Input);

/// <summary>Counts of one target's run: reads that succeeded, clean one-line errors, failures.</summary>
public sealed record FuzzReport(string Target, int Trials, int Reads, int CleanErrors, IReadOnlyList<FuzzFailure> Failures, TimeSpan Time);

/// <summary>
/// Seeded mutation fuzzing of the engine's file readers (the safetensors reader has its own
/// property test). Each trial takes a valid seed input and stacks one to four mutations: bit
/// flips, bytes replaced by structural characters, inserted tokens that readers find hard (huge
/// and negative numbers, NaN, quotes, brackets, separators, NUL, invalid UTF-8), deleted and
/// duplicated ranges, truncation, and splices with another seed. Trial i of a run with seed s
/// is a pure function of (s, i), so a failure is reproduced by its input bytes alone.
///
/// Limits per trial: <see cref="TrialTimeout"/> (a hang), and allocation on the reading thread
/// of at most <see cref="AllocationFloor"/> + <see cref="AllocationPerInputByte"/> × the input
/// length (a length field or count believed without a check).
/// </summary>
public static class Fuzzer
{
    public static TimeSpan TrialTimeout { get; set; } = TimeSpan.FromSeconds(10);
    public const long AllocationFloor = 64L << 20, AllocationPerInputByte = 512;

    private static readonly string[] Tokens =
    [
        "-1", "0", "1", "-2147483649", "2147483648", "9223372036854775808", "1e308", "-1e308", "1e-320", "NaN", "Infinity",
        "99999999999", "4294967296", "0.5", "true", "null", "\"\"", "\"", "{", "}", "[", "]", ",", ":", "\\", "\\u0000", "\\ud800",
        "\t", "\n", "\r\n", "\"\t", "##", "Ġ", "▁", " ", "[UNK]", "<unk>", "\u0000", "\u00ff", "\ud83d\ude00",
    ];

    private static readonly byte[] Structural = "{}[]\",:\t\n\r\\ 0-9#"u8.ToArray();

    /// <summary>A mutation of one of <paramref name="seeds"/> drawn from <paramref name="rng"/>.</summary>
    public static byte[] Mutate(IReadOnlyList<byte[]> seeds, Random rng)
    {
        var data = new List<byte>(seeds[rng.Next(seeds.Count)]);
        int maxLength = Math.Max(64, data.Count * 4);
        for (int k = rng.Next(1, 5); k > 0; k--)
        {
            int at = data.Count == 0 ? 0 : rng.Next(data.Count);
            switch (rng.Next(9))
            {
                case 0: // flip one to four bits
                    for (int b = rng.Next(1, 5); b > 0 && data.Count > 0; b--) { int i = rng.Next(data.Count); data[i] ^= (byte)(1 << rng.Next(8)); }
                    break;
                case 1: // a byte becomes a structural character
                    if (data.Count > 0) data[at] = Structural[rng.Next(Structural.Length)];
                    break;
                case 2: // insert a hard token
                    data.InsertRange(at, Encoding.UTF8.GetBytes(Tokens[rng.Next(Tokens.Length)]));
                    break;
                case 3: // replace a run of digits (a number) with a hard token
                    {
                        int start = data.FindIndex(at, c => c is >= (byte)'0' and <= (byte)'9');
                        if (start < 0) break;
                        int end = start;
                        while (end < data.Count && data[end] is >= (byte)'0' and <= (byte)'9' or (byte)'.' or (byte)'e' or (byte)'-') end++;
                        data.RemoveRange(start, end - start);
                        data.InsertRange(start, Encoding.UTF8.GetBytes(Tokens[rng.Next(16)]));
                        break;
                    }
                case 4: // delete a range
                    data.RemoveRange(at, Math.Min(data.Count - at, rng.Next(1, 33)));
                    break;
                case 5: // duplicate a range
                    {
                        int length = Math.Min(data.Count - at, rng.Next(1, 257));
                        if (data.Count + length <= maxLength) data.InsertRange(rng.Next(data.Count + 1), data.GetRange(at, length));
                        break;
                    }
                case 6: // truncate
                    data.RemoveRange(at, data.Count - at);
                    break;
                case 7: // invalid UTF-8 or a NUL
                    data.Insert(at, rng.Next(4) switch { 0 => 0xFF, 1 => 0xC0, 2 => 0x80, _ => 0x00 });
                    break;
                default: // splice: this input's head with another seed's tail
                    {
                        var other = seeds[rng.Next(seeds.Count)];
                        int from = other.Length == 0 ? 0 : rng.Next(other.Length);
                        data.RemoveRange(at, data.Count - at);
                        data.AddRange(other.AsSpan(from).ToArray());
                        break;
                    }
            }
        }
        return [.. data];
    }

    /// <summary>Runs <paramref name="target"/> for <paramref name="trials"/> trials or until
    /// <paramref name="budget"/> has passed, whichever comes first, in a scratch folder under
    /// <paramref name="workDir"/> (deleted at the end). Trial 0 reads each seed unchanged, and it must read.</summary>
    public static FuzzReport Run(FuzzTarget target, int seed, int trials, TimeSpan budget, string workDir)
    {
        var dir = Path.Combine(workDir, $"fuzz-{target.Name}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        var clock = Stopwatch.StartNew();
        var failures = new List<FuzzFailure>();
        int reads = 0, clean = 0, done = 0;
        try
        {
            target.Prepare?.Invoke(dir);
            foreach (var s in target.Seeds)
            {
                var (f, error) = Trial(target, dir, s, -1);
                if (f is not null) failures.Add(f with { Kind = "seed: " + f.Kind });
                else if (error is not null) failures.Add(new FuzzFailure(target.Name, -1, "seed", "a valid seed input did not read: " + error, s));
            }
            for (int trial = 0; trial < trials && clock.Elapsed < budget; trial++, done++)
            {
                var input = Mutate(target.Seeds, new Random(TrialSeed(seed, trial)));
                var (failure, error) = Trial(target, dir, input, trial);
                if (failure is not null) failures.Add(failure);
                else if (error is not null) clean++;
                else reads++;
            }
        }
        finally
        {
            try { Directory.Delete(dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
        return new FuzzReport(target.Name, done, reads, clean, failures, clock.Elapsed);
    }

    /// <summary>Replays one input (a committed regression case, say) through a target; null when it reads or fails cleanly.</summary>
    public static FuzzFailure? Replay(FuzzTarget target, byte[] input, string workDir)
    {
        var dir = Path.Combine(workDir, $"replay-{target.Name}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            target.Prepare?.Invoke(dir);
            return Trial(target, dir, input, 0).Failure;
        }
        finally
        {
            try { Directory.Delete(dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    /// <summary>The random seed of trial <paramref name="trial"/> of a run seeded <paramref name="seed"/>.</summary>
    public static int TrialSeed(int seed, int trial) => (int)(Rng.Mix((ulong)(uint)seed, (ulong)trial) & 0x7FFFFFFF);

    /// <summary>One read of <paramref name="input"/>: a failure, or null with the clean error's message (null when it read).</summary>
    private static (FuzzFailure? Failure, string? Error) Trial(FuzzTarget target, string dir, byte[] input, int trial)
    {
        var path = Path.Combine(dir, target.FileName);
        File.WriteAllBytes(path, input);
        Exception? thrown = null;
        long allocated = 0;
        var thread = new Thread(() =>
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            try { target.Read(dir); }
            catch (Exception e) { thrown = e; }
            allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        }, 16 << 20) { IsBackground = true, Name = "fuzz " + target.Name };
        thread.Start();
        if (!thread.Join(TrialTimeout))
            return (new FuzzFailure(target.Name, trial, "hang", $"no result after {TrialTimeout.TotalSeconds:F0} s", input), null);
        long limit = AllocationFloor + AllocationPerInputByte * input.Length;
        if (allocated > limit)
            return (new FuzzFailure(target.Name, trial, "allocation", $"{allocated:N0} bytes allocated for a {input.Length:N0}-byte input (limit {limit:N0})", input), null);
        switch (thrown)
        {
            case null: return (null, null);
            case EngineException e when e.Message.Contains('\n'):
                return (new FuzzFailure(target.Name, trial, "multi-line error", e.Message, input), null);
            case EngineException e when !e.Message.Contains(dir) && !e.Message.Contains(target.FileName):
                return (new FuzzFailure(target.Name, trial, "error names no file", e.Message, input), null);
            case EngineException e:
                return (null, e.Message);
            default:
                return (new FuzzFailure(target.Name, trial, "crash", $"{thrown.GetType().FullName}: {thrown.Message.Split('\n')[0]} at {StackTop(thrown)}", input), null);
        }
    }

    private static string StackTop(Exception e) =>
        (e.StackTrace ?? "").Split('\n').Select(l => l.Trim()).FirstOrDefault(l => l.Length > 0) ?? "?";
}
