using System.Net.Sockets;
using VmcBackend.ReferenceFrontEnd;
using VmcBackend.ReferenceFrontEnd.Wire;

namespace VmcBackend.Transport.Tests;

/// <summary>
/// Every malformed-frame class of docs/protocol.md section 6: that connection (only) is closed,
/// with at most one status reply before, and one error line in vmcd's log naming it.
/// </summary>
public class MalformedFrameTests
{
    public sealed class Resources : IDisposable
    {
        public readonly Memfd Ram = new("ram", 1 << 20);
        public readonly Memfd Unsealed = new("unsealed", 1 << 20, seal: false);
        public readonly FrontEndChannel Channel = new();
        public readonly Fd EventFd = ReferenceFrontEnd.Fd.EventFd();
        public int E => EventFd.Number;
        public int[] ChannelFds => Channel.Fds;
        public void Dispose() { Ram.Dispose(); Unsealed.Dispose(); Channel.Dispose(); EventFd.Dispose(); }
    }

    public sealed record Case(string Name, string LogText, Action<VmcUserSocket, Resources> Send)
    {
        public override string ToString() => Name;
    }

    private static void WithTable(VmcUserSocket s, Resources r) =>
        Assert.That(s.CallU64(Vu.SetMemTable, Vu.MemTable((0, 1 << 20, 0)), [r.Ram.File.Number]), Is.EqualTo(0UL));

    private static void Channel(VmcUserSocket s, byte[] payload, int[] fds) => s.Send(Vu.SetChannel, payload, fds);

    public static IEnumerable<Case> Cases() =>
    [
        new("truncated header", "truncated frame", (s, r) => { s.SendRaw(new byte[5]); s.Socket.Shutdown(SocketShutdown.Send); }),
        new("truncated payload", "truncated frame", (s, r) => { s.SendRaw(Vu.Frame(Vu.SetFeatures, 2, new byte[3], 8)); s.Socket.Shutdown(SocketShutdown.Send); }),
        new("oversized payload", "at most 4096", (s, r) => s.SendRaw(Vu.Frame(Vu.GetFeatures, 2, default, 5000))),
        new("unknown request", "unknown request 99", (s, r) => s.SendRaw(Vu.Request(99))),
        new("request 0", "unknown request 0", (s, r) => s.SendRaw(Vu.Request(0))),
        new("CHANNEL_FAILED from the front-end", "unknown request 32", (s, r) => s.SendRaw(Vu.Request(Vu.ChannelFailed, new byte[8]))),
        new("version 1", "flags 0x1", (s, r) => s.SendRaw(Vu.Frame(Vu.GetFeatures, 1, default))),
        new("unknown flag bits", "flags 0x102", (s, r) => s.SendRaw(Vu.Frame(Vu.GetFeatures, 2 | 0x100, default))),
        new("reply flag from the front-end", "flags 0x6", (s, r) => s.SendRaw(Vu.Frame(Vu.GetFeatures, Vu.FlagsReply, default))),
        new("wrong payload size", "expected 8", (s, r) => s.SendRaw(Vu.Request(Vu.SetFeatures, new byte[4]))),
        new("payload on GET_CONFIG", "expected 0", (s, r) => s.SendRaw(Vu.Request(Vu.GetConfig, new byte[4]))),
        new("extra fd", "1 fds, expected 0", (s, r) => s.SendRaw(Vu.Request(Vu.GetFeatures), [r.E])),
        new("fd on the payload bytes", "payload bytes", (s, r) => { var f = Vu.Request(Vu.SetFeatures, new byte[8]); s.SendRaw(f.AsSpan(0, 14)); Thread.Sleep(20); s.SendRaw(f.AsSpan(14), [r.E]); }),
        new("nine fds", "more than 8", (s, r) => s.SendRaw(Vu.Request(Vu.GetFeatures), Enumerable.Repeat(r.E, 9).ToArray())),
        new("unknown features", "did not offer", (s, r) => s.Send(Vu.SetFeatures, Vu.U64(1UL << 40))),
        new("memory fd is an eventfd", "memfd", (s, r) => s.Send(Vu.SetMemTable, Vu.MemTable((0, 4096, 0)), [r.E])),
        new("unsealed memory", "sealed", (s, r) => s.Send(Vu.SetMemTable, Vu.MemTable((0, 1 << 20, 0)), [r.Unsealed.File.Number])),
        new("memory region beyond the fd", "bytes", (s, r) => s.Send(Vu.SetMemTable, Vu.MemTable((0, 2 << 20, 0)), [r.Ram.File.Number])),
        new("overlapping regions", "overlap", (s, r) => s.Send(Vu.SetMemTable, Vu.MemTable((0, 1 << 20, 0), (4096, 4096, 0)), [r.Ram.File.Number, r.Ram.File.Number])),
        new("wrapping region", "wraps", (s, r) => s.Send(Vu.SetMemTable, Vu.MemTable((ulong.MaxValue - 4095, 8192, 0)), [r.Ram.File.Number])),
        new("unaligned region", "4 KiB", (s, r) => s.Send(Vu.SetMemTable, Vu.MemTable((0, 1000, 0)), [r.Ram.File.Number])),
        new("zero regions", "0 regions", (s, r) => s.Send(Vu.SetMemTable, Vu.MemTable(), [])),
        new("nine regions", "9 regions", (s, r) => s.Send(Vu.SetMemTable, Vu.MemTable(Enumerable.Range(0, 9).Select(i => ((ulong)i << 20, 4096UL, 0UL)).ToArray()), [])),
        new("regions and fds disagree", "2 regions but 1 fds", (s, r) => s.Send(Vu.SetMemTable, Vu.MemTable((0, 4096, 0), (8192, 4096, 0)), [r.Ram.File.Number])),
        new("channel before memory table", "before SET_MEM_TABLE", (s, r) => Channel(s, Vu.Channel(), r.ChannelFds)),
        new("channel missing an fd", "3 fds, expected 4", (s, r) => { WithTable(s, r); Channel(s, Vu.Channel(), r.ChannelFds[..3]); }),
        new("channel too small", "below 0x8000", (s, r) => { WithTable(s, r); Channel(s, Vu.Channel(channelSize: 0x4000), r.ChannelFds); }),
        new("channel ring sizes", "sq_entries 256", (s, r) => { WithTable(s, r); Channel(s, Vu.Channel(sq: 256), r.ChannelFds); }),
        new("channel reserved", "reserved", (s, r) => { WithTable(s, r); Channel(s, Vu.Channel(reserved: 1), r.ChannelFds); }),
        new("channel larger than its memfd", "bytes", (s, r) => { WithTable(s, r); Channel(s, Vu.Channel(channelSize: 0x10000), r.ChannelFds); }),
        new("channel memfd unsealed", "sealed", (s, r) => { WithTable(s, r); Channel(s, Vu.Channel(), [r.Unsealed.File.Number, r.E, r.E, r.E]); }),
        new("channel fd is an eventfd", "memfd", (s, r) => { WithTable(s, r); Channel(s, Vu.Channel(), [r.E, r.E, r.E, r.E]); }),
        new("kick fd is a memfd", "kick fd", (s, r) => { WithTable(s, r); var f = r.ChannelFds; f[1] = r.Ram.File.Number; Channel(s, Vu.Channel(), f); }),
        new("done fd is a memfd", "done fd", (s, r) => { WithTable(s, r); var f = r.ChannelFds; f[3] = r.Ram.File.Number; Channel(s, Vu.Channel(), f); }),
        new("channel magic wrong", "magic", (s, r) => { WithTable(s, r); r.Channel.Write32(0, 0x12345678); Channel(s, Vu.Channel(), r.ChannelFds); }),
        new("channel version wrong", "channel version", (s, r) => { WithTable(s, r); r.Channel.Write32(4, 1); Channel(s, Vu.Channel(), r.ChannelFds); }),
        new("second SET_CHANNEL", "second SET_CHANNEL", (s, r) =>
        {
            WithTable(s, r);
            Assert.That(s.CallU64(Vu.SetChannel, Vu.Channel(), r.ChannelFds), Is.EqualTo(0UL));
            using var other = new FrontEndChannel();
            Channel(s, Vu.Channel(), other.Fds);
        }),
        new("SET_FEATURES after SET_CHANNEL", "after SET_CHANNEL", (s, r) =>
        {
            WithTable(s, r);
            Assert.That(s.CallU64(Vu.SetChannel, Vu.Channel(), r.ChannelFds), Is.EqualTo(0UL));
            s.Send(Vu.SetFeatures, Vu.U64(0));
        }),
    ];

    [TestCaseSource(nameof(Cases))]
    public void MalformedFrameClosesOnlyThatConnection(Case c)
    {
        using var fx = new ServerFixture();
        using var healthy = new LinkedFrontEnd(fx);
        healthy.Channel.Request(Ch.KindRegCrq, 64);
        using var res = new Resources();
        using var s = fx.RawConnect();
        c.Send(s, res);
        Assert.That(s.WaitForClose(5000, out int bytes), "vmcd closed the connection");
        Assert.That(bytes, Is.LessThanOrEqualTo(Vu.HeaderBytes + 8), "at most one status reply before the close");
        Assert.That(fx.WaitForError(c.LogText), $"an error line naming the problem ('{c.LogText}'); got: {string.Join(" | ", fx.Collector.Errors)}");
        Assert.That(fx.Collector.Errors, Has.Length.EqualTo(1), "one line");
        Assert.That(ServerFixture.WaitFor(() => fx.Server.ConnectionCount == 1), "only the healthy connection remains");
        var e = new byte[16];
        e[0] = 0x80; e[1] = 0x02; e[15] = 9;
        Assert.That(healthy.Echo(e), Is.EqualTo(e), "the healthy connection still works");
    }
}
