using System.Buffers.Binary;
using VmcBackend.ReferenceFrontEnd;
using VmcBackend.ReferenceFrontEnd.Wire;
using VmcBackend.Testing;

namespace VmcBackend.Transport.Tests;

/// <summary>
/// Seeded random frames (VMC_FRAME_FUZZ_SEED / VMC_FRAME_FUZZ_FRAMES, default 10,000) over many
/// connections: random requests, flags, sizes, payloads, fds and truncation. vmcd must survive,
/// free every connection and its fds, and still serve a healthy front-end at the end.
/// </summary>
public class FrameFuzzTests
{
    /// <summary>This process's memfds, eventfds, epolls and sockets (not the runtime's loaded assemblies).</summary>
    private static HashSet<string> OpenFds() => Directory.GetFiles("/proc/self/fd")
        .Select(f => { try { return $"{System.IO.Path.GetFileName(f)}={new FileInfo(f).LinkTarget}"; } catch (IOException) { return ""; } })
        .Where(s => s.Contains("memfd:") || s.Contains("anon_inode:") || s.Contains("socket:")).ToHashSet();   // what vmcd could leak

    [Test]
    public void RandomFramesNeverBreakTheDaemon()
    {
        int seed = TestEnv.Int("VMC_FRAME_FUZZ_SEED", 4242);
        int frames = TestEnv.Int("VMC_FRAME_FUZZ_FRAMES", 10_000);
        TestContext.Out.WriteLine($"frame fuzz seed {seed} (VMC_FRAME_FUZZ_SEED), {frames} frames");
        var rng = new Random(seed);
        using var fx = new ServerFixture();
        using var healthy = new LinkedFrontEnd(fx);
        using var ram = new Memfd("fuzz-ram", 1 << 20);
        using var unsealed = new Memfd("fuzz-unsealed", 1 << 20, seal: false);
        using var channel = new FrontEndChannel();
        using var efd = Fd.EventFd();
        var fdsBefore = OpenFds();
        int sent = 0, connections = 0;
        var payload = new byte[5000];
        while (sent < frames)
        {
            using var s = fx.RawConnect();
            connections++;
            int burst = rng.Next(1, 40);
            for (int k = 0; k < burst && sent < frames; k++, sent++)
            {
                uint request = (uint)(rng.Next(8) == 0 ? rng.Next() : rng.Next(0, 8));
                uint flags = rng.Next(10) == 0 ? (uint)rng.Next() : Vu.FlagsRequest;
                int size = rng.Next(6) switch { 0 => 0, 1 => 8, 2 => 16, 3 => 8 + 24 * rng.Next(0, 10), 4 => rng.Next(0, 4097), _ => rng.Next(0, 5000) };
                rng.NextBytes(payload.AsSpan(0, size));
                if (request == Vu.SetMemTable && size >= 32)
                {
                    BinaryPrimitives.WriteUInt32LittleEndian(payload, (uint)rng.Next(0, 3));
                    BinaryPrimitives.WriteUInt64LittleEndian(payload.AsSpan(16), (ulong)rng.Next(0, 300) * 4096);
                    BinaryPrimitives.WriteUInt64LittleEndian(payload.AsSpan(24), 0);
                }
                if (request == Vu.SetChannel && size == 16 && rng.Next(2) == 0) Vu.Channel().CopyTo(payload, 0);
                int[] fds = rng.Next(6) switch
                {
                    0 => [ram.File.Number], 1 => [efd.Number], 2 => [unsealed.File.Number], 3 => channel.Fds,
                    4 => Enumerable.Repeat(efd.Number, rng.Next(1, 12)).ToArray(), _ => [],
                };
                var bytes = Vu.Frame(request, flags, payload.AsSpan(0, size), rng.Next(10) == 0 ? (uint)rng.Next() : null);
                int cut = rng.Next(20) == 0 ? rng.Next(0, bytes.Length) : bytes.Length;
                if (!s.SendRaw(bytes.AsSpan(0, cut), fds)) break;    // vmcd already closed it
                if (cut < bytes.Length) { sent++; break; }
            }
        }
        TestContext.Out.WriteLine($"{sent} frames over {connections} connections");
        Assert.That(ServerFixture.WaitFor(() => fx.Server.ConnectionCount == 1, 10000), "every fuzzed connection was freed");
        Assert.That(ServerFixture.WaitFor(() => OpenFds().Except(fdsBefore).Count() == 0, 5000),
            "no fd leaked: " + string.Join(", ", OpenFds().Except(fdsBefore)));
        var e = new byte[16];
        for (byte i = 0; i < 50; i++) { e[0] = 0x80; e[15] = i; Assert.That(healthy.Echo(e), Is.EqualTo(e)); }
        using var late = new LinkedFrontEnd(fx);
        Assert.That(late.Echo(e), Is.EqualTo(e));
    }
}
