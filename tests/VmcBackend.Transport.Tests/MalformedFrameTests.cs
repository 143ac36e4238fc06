using System.Buffers.Binary;
using System.Net.Sockets;
using VmcBackend.Transport.Framing;
using VmcBackend.Transport.Interop;
using VmcBackend.Transport.Memory;
using VmcBackend.Transport.Protocol;

namespace VmcBackend.Transport.Tests;

/// <summary>Every malformed-frame class ends that connection (EOF for the sender) and nothing else.</summary>
public class MalformedFrameTests
{
    private static byte[] Frame(uint request, uint flags, uint size, ReadOnlySpan<byte> payload = default)
    {
        var b = new byte[12 + payload.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(b, request);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(4), flags);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(8), size);
        payload.CopyTo(b.AsSpan(12));
        return b;
    }

    private static byte[] MemTable(params (ulong gpa, ulong size, ulong off)[] regions)
    {
        var p = new byte[8 + regions.Length * 24];
        BinaryPrimitives.WriteUInt32LittleEndian(p, (uint)regions.Length);
        for (int i = 0; i < regions.Length; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(p.AsSpan(8 + i * 24), regions[i].gpa);
            BinaryPrimitives.WriteUInt64LittleEndian(p.AsSpan(16 + i * 24), regions[i].size);
            BinaryPrimitives.WriteUInt64LittleEndian(p.AsSpan(24 + i * 24), regions[i].off);
        }
        return p;
    }

    private static byte[] Crq(uint entries, params (ulong gpa, ulong len)[] segs)
    {
        var p = new byte[16 + segs.Length * 16];
        BinaryPrimitives.WriteUInt32LittleEndian(p, entries);
        BinaryPrimitives.WriteUInt32LittleEndian(p.AsSpan(12), (uint)segs.Length);
        for (int i = 0; i < segs.Length; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(p.AsSpan(16 + i * 16), segs[i].gpa);
            BinaryPrimitives.WriteUInt64LittleEndian(p.AsSpan(24 + i * 16), segs[i].len);
        }
        return p;
    }

    public sealed record Case(string Name, Action<FrameSocket, Resources> Send)
    {
        public override string ToString() => Name;
    }

    public sealed class Resources : IDisposable
    {
        public SharedMemfd Ram = new("ram", 1 << 20);
        public SharedMemfd State = new("state", 4096);
        public int EventFd = LibC.EventFd(0, LibC.EFD_CLOEXEC);
        public void Dispose() { Ram.Dispose(); State.Dispose(); LibC.Close(EventFd); }
    }

    private const uint V = VmcUserHeader.Version;

    private static void WithTable(FrameSocket s, Resources r)
    {
        Assert.That(s.Write(VmcUserRequest.SetMemTable, V, MemTable((0, 1 << 20, 0)), [r.Ram.Fd]));
        Assert.That(s.Read(out _), Is.EqualTo(FrameError.None));
    }

    public static IEnumerable<Case> Cases() =>
    [
        new("truncated header", (s, r) => s.SendRaw(new byte[5])),
        new("truncated payload", (s, r) => s.SendRaw(Frame(8, V, 16, new byte[7]))),
        new("oversized payload", (s, r) => s.SendRaw(Frame(8, V, 5000))),
        new("unknown request", (s, r) => s.SendRaw(Frame(99, V, 0))),
        new("request 0", (s, r) => s.SendRaw(Frame(0, V, 0))),
        new("wrong version", (s, r) => s.SendRaw(Frame(1, 2, 0))),
        new("unknown flag bits", (s, r) => s.SendRaw(Frame(1, V | 0x100, 0))),
        new("reply flag from the front-end", (s, r) => s.SendRaw(Frame(1, V | VmcUserHeader.ReplyFlag, 0))),
        new("wrong payload size", (s, r) => s.SendRaw(Frame(8, V, 8, new byte[8]))),
        new("missing fd", (s, r) => s.SendRaw(Frame(5, V, 0))),
        new("extra fd", (s, r) => s.SendRaw(Frame(1, V, 0), [r.EventFd])),
        new("fd on the payload bytes", (s, r) => { s.SendRaw(Frame(8, V, 16)); s.SendRaw(new byte[16], [r.EventFd]); }),
        new("too many fds", (s, r) => s.SendRaw(Frame(1, V, 0), [r.EventFd, r.EventFd, r.EventFd, r.EventFd, r.EventFd, r.EventFd, r.EventFd, r.EventFd, r.EventFd])),
        new("call fd is a memfd", (s, r) => s.Write(VmcUserRequest.SetCallFd, V, default, [r.Ram.Fd])),
        new("memory fd is an eventfd", (s, r) => s.Write(VmcUserRequest.SetMemTable, V, MemTable((0, 4096, 0)), [r.EventFd])),
        new("memory region beyond the fd", (s, r) => s.Write(VmcUserRequest.SetMemTable, V, MemTable((0, 2 << 20, 0)), [r.Ram.Fd])),
        new("overlapping regions", (s, r) => s.Write(VmcUserRequest.SetMemTable, V, MemTable((0, 1 << 20, 0), (4096, 4096, 0)), [r.Ram.Fd, r.Ram.Fd])),
        new("wrapping region", (s, r) => s.Write(VmcUserRequest.SetMemTable, V, MemTable((ulong.MaxValue - 4095, 8192, 0)), [r.Ram.Fd])),
        new("unaligned region", (s, r) => s.Write(VmcUserRequest.SetMemTable, V, MemTable((0, 1000, 0)), [r.Ram.Fd])),
        new("zero regions", (s, r) => s.Write(VmcUserRequest.SetMemTable, V, MemTable(), [])),
        new("regions and fds disagree", (s, r) => s.Write(VmcUserRequest.SetMemTable, V, MemTable((0, 4096, 0), (8192, 4096, 0)), [r.Ram.Fd])),
        new("unknown features", (s, r) => s.Write(VmcUserRequest.SetFeatures, V, BitConverter.GetBytes(1UL << 40))),
        new("CRQ outside guest memory", (s, r) => { WithTable(s, r); s.Write(VmcUserRequest.RegCrq, V, Crq(256, (2 << 20, 4096)), [r.State.Fd]); }),
        new("CRQ without memory table", (s, r) => s.Write(VmcUserRequest.RegCrq, V, Crq(256, (0, 4096)), [r.State.Fd])),
        new("CRQ state fd is an eventfd", (s, r) => { WithTable(s, r); s.Write(VmcUserRequest.RegCrq, V, Crq(256, (0, 4096)), [r.EventFd]); }),
        new("CRQ segments not adding up", (s, r) => { WithTable(s, r); s.Write(VmcUserRequest.RegCrq, V, Crq(256, (0, 2048)), [r.State.Fd]); }),
        new("CRQ segment not a multiple of 16", (s, r) => { WithTable(s, r); s.Write(VmcUserRequest.RegCrq, V, Crq(1, (0, 8), (64, 8)), [r.State.Fd]); }),
        new("CRQ tail outside the queue", (s, r) => { WithTable(s, r); var p = Crq(256, (0, 4096)); BinaryPrimitives.WriteUInt32LittleEndian(p.AsSpan(4), 256); s.Write(VmcUserRequest.RegCrq, V, p, [r.State.Fd]); }),
        new("CRQ too many segments", (s, r) => { var p = new byte[16]; BinaryPrimitives.WriteUInt32LittleEndian(p.AsSpan(12), 255); s.Write(VmcUserRequest.RegCrq, V, p, [r.State.Fd]); }),
        new("RDMA segment count disagrees", (s, r) => { var p = new byte[24 + 16]; BinaryPrimitives.WriteUInt32LittleEndian(p.AsSpan(4), 2); s.Write(VmcUserRequest.CopyRdma, V, p); }),
    ];

    [TestCaseSource(nameof(Cases))]
    public void MalformedFrameClosesOnlyThatConnection(Case c)
    {
        using var fx = new ServerFixture();
        using var healthy = new Guest(fx);
        var f = healthy.OpenRouter();
        using var res = new Resources();
        using var sock = fx.RawConnect();
        var frames = new FrameSocket((int)sock.Handle);
        c.Send(frames, res);
        if (c.Name.StartsWith("truncated")) sock.Shutdown(SocketShutdown.Send);
        // The server answers at most an error status, then closes: we must see EOF.
        sock.ReceiveTimeout = 5000;
        var buf = new byte[256];
        int n, total = 0;
        while ((n = sock.Receive(buf)) > 0) total += n;
        Assert.That(total, Is.LessThanOrEqualTo(20), "no more than one status reply before the close");
        Assert.That(ServerFixture.WaitFor(() => fx.Server.ConnectionCount == 1), "only the healthy connection remains");
        for (uint i = 0; i < 20; i++) healthy.Echo(f, 300, i);
    }

    [Test]
    public void InvalidGuestValuesAreNotProtocolErrors()
    {
        // A bad CRQ entry or RDMA range gets an hcall rc; the connection stays up.
        using var fx = new ServerFixture();
        using var g = new Guest(fx);
        var bad = new byte[16];
        bad[0] = 0x42;
        Assert.That(g.FrontEnd.Client.SendCrq(bad), Is.EqualTo((long)Wire.Hcall.HcallReturn.Parameter));
        Assert.That(g.FrontEnd.Client.CopyRdma(Engine.Backend.RdmaDirection.LocalToRemote, ulong.MaxValue - 5, 100, [new(0, 100)]), Is.LessThan(0));
        Assert.That(g.FrontEnd.Client.CopyRdma(Engine.Backend.RdmaDirection.RemoteToLocal, 0, 100, [new(ulong.MaxValue - 50, 100)]), Is.LessThan(0));
        Assert.That(g.FrontEnd.Client.Connected);
        var f = g.OpenRouter();
        g.Echo(f, 10, 1);
    }

    [Test]
    public void UnknownFeaturesAreRefusedWithAStatus()
    {
        using var fx = new ServerFixture();
        using var sock = fx.RawConnect();
        var frames = new FrameSocket((int)sock.Handle);
        Assert.That(frames.Write(VmcUserRequest.SetFeatures, V, BitConverter.GetBytes(1UL << 40)));
        Assert.That(frames.Read(out var h), Is.EqualTo(FrameError.None));
        Assert.That(h.IsReply);
        Assert.That(BitConverter.ToUInt64(frames.Payload, 0), Is.EqualTo(22UL), "EINVAL");
        Assert.That(frames.Read(out _), Is.EqualTo(FrameError.Closed));
    }
}
