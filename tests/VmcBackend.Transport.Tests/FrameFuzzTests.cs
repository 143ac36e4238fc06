using VmcBackend.Testing;
using System.Buffers.Binary;
using System.Net.Sockets;
using VmcBackend.Transport.Framing;
using VmcBackend.Transport.Interop;
using VmcBackend.Transport.Memory;

namespace VmcBackend.Transport.Tests;

/// <summary>
/// Seeded random frames (VMC_FRAME_FUZZ_SEED / VMC_FRAME_FUZZ_FRAMES, default 10,000) over many
/// connections: random requests, sizes, payloads, fds and truncation. vmcd must survive, free every
/// connection, and still serve a healthy guest at the end.
/// </summary>
public class FrameFuzzTests
{
    [Test]
    public void RandomFramesNeverBreakTheDaemon()
    {
        int seed = TestEnv.Int("VMC_FRAME_FUZZ_SEED", 4242);
        int frames = TestEnv.Int("VMC_FRAME_FUZZ_FRAMES", 10_000);
        TestContext.Out.WriteLine($"frame fuzz seed {seed} (VMC_FRAME_FUZZ_SEED), {frames} frames");
        var rng = new Random(seed);
        using var fx = new ServerFixture();
        using var healthy = new Guest(fx);
        var hf = healthy.OpenRouter();
        using var ram = new SharedMemfd("fuzz-ram", 1 << 20);
        using var state = new SharedMemfd("fuzz-state", 4096);
        int efd = LibC.EventFd(0, LibC.EFD_CLOEXEC);
        int sent = 0, connections = 0;
        var payload = new byte[5000];
        try
        {
            while (sent < frames)
            {
                using var sock = fx.RawConnect();
                connections++;
                var fs = new FrameSocket((int)sock.Handle);
                int burst = rng.Next(1, 40);
                for (int k = 0; k < burst && sent < frames; k++, sent++)
                {
                    uint request = (uint)(rng.Next(8) == 0 ? rng.Next() : rng.Next(0, 13));
                    uint flags = rng.Next(10) == 0 ? (uint)rng.Next() : 1u | (rng.Next(4) == 0 ? 8u : 0u);
                    int size = rng.Next(6) switch { 0 => 0, 1 => 8, 2 => 16, 3 => 24 + 16 * rng.Next(0, 4), 4 => rng.Next(0, 4097), _ => rng.Next(0, 5000) };
                    rng.NextBytes(payload.AsSpan(0, size));
                    if (request == 4 && size >= 32) { BinaryPrimitives.WriteUInt32LittleEndian(payload, 1); BinaryPrimitives.WriteUInt64LittleEndian(payload.AsSpan(16), (ulong)rng.Next(0, 300) * 4096); BinaryPrimitives.WriteUInt64LittleEndian(payload.AsSpan(24), 0); }
                    int[] fds = rng.Next(4) switch { 0 => [ram.Fd], 1 => [efd], 2 => [state.Fd], _ => [] };
                    var header = new byte[12];
                    BinaryPrimitives.WriteUInt32LittleEndian(header, request);
                    BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(4), flags);
                    BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(8), (uint)(rng.Next(10) == 0 ? rng.Next() : size));
                    int cut = rng.Next(20) == 0 ? rng.Next(0, 12 + size) : 12 + size;
                    var bytes = new byte[12 + size];
                    header.CopyTo(bytes, 0);
                    payload.AsSpan(0, size).CopyTo(bytes.AsSpan(12));
                    if (!fs.SendRaw(bytes.AsSpan(0, cut), fds)) break;    // vmcd already closed it
                    if (cut < bytes.Length) { sent++; break; }
                }
            }
        }
        finally { LibC.Close(efd); }
        TestContext.Out.WriteLine($"{sent} frames over {connections} connections");
        Assert.That(ServerFixture.WaitFor(() => fx.Server.ConnectionCount == 1, 10000), "every fuzzed connection was freed");
        for (uint i = 0; i < 50; i++) healthy.Echo(hf, 1000, i);
        using var late = new Guest(fx);
        late.Echo(late.OpenRouter("late"), 64, 7);
    }
}
