using System.Diagnostics;
using System.Net.Sockets;
using VmcBackend.ReferenceFrontEnd;
using VmcBackend.ReferenceFrontEnd.Wire;
using VmcBackend.Transport.Framing;

namespace VmcBackend.Transport.Tests;

public class FrameSocketFdTests
{
    /// <summary>
    /// Issue 12: on MSG_CTRUNC the old FrameSocket raised its fd count without filling the slots, so
    /// it closed stale numbers that other owners had since been given. Now the slots hold only the
    /// current frame's real fds and the frame is malformed.
    /// </summary>
    [Test]
    public void TruncatedFdsNeverCloseStaleDescriptors()
    {
        var (a, b) = Pair();
        using var _a = a; using var _b = b;
        var receiver = new FrameSocket(b);
        using var efd = Fd.EventFd();
        int[] eight = Enumerable.Repeat(efd.Number, 8).ToArray();
        var sender = new RawSender(a);
        // Frame 1 carries 8 fds, which the receiver closes.
        sender.Send(Vu.Request(Vu.GetFeatures), eight);
        Assert.That(ReadBlocking(receiver), Is.EqualTo(FrameStatus.Frame));
        receiver.ReleaseFrame();
        // Other owners now hold descriptors with those numbers.
        var sentinels = Enumerable.Range(0, 8).Select(_ => Fd.EventFd()).ToArray();
        // Frame 2: the kernel can install only 2 of its 8 fds (descriptor limit): MSG_CTRUNC.
        sender.Send(Vu.Request(Vu.GetFeatures), eight);
        string original = File.ReadLines("/proc/self/limits").First(l => l.StartsWith("Max open files"))
            .Split(' ', StringSplitOptions.RemoveEmptyEntries)[3];
        SetFdLimit((sentinels.Max(s => s.Number) + 3).ToString());
        FrameStatus st;
        try { st = ReadBlocking(receiver); }
        finally { SetFdLimit(original); }
        Assert.That(st, Is.EqualTo(FrameStatus.Malformed), "a frame whose fds were truncated is malformed");
        Assert.That(receiver.Error, Does.Contain("MSG_CTRUNC"));
        foreach (var s in sentinels) Assert.That(IsOpen(s.Number), $"sentinel fd {s.Number} was closed by the receiver");
        foreach (var s in sentinels) s.Dispose();
    }

    [Test]
    public void FdsOnPayloadBytesAndTooManyFdsAreMalformedAndClosed()
    {
        var (a, b) = Pair();
        using var _a = a; using var _b = b;
        var receiver = new FrameSocket(b);
        var sender = new RawSender(a);
        using var efd = Fd.EventFd();
        int before = OpenFds();
        var frame = Vu.Request(Vu.SetFeatures, new byte[8]);
        sender.Send(frame.AsSpan(0, 14), []);
        sender.Send(frame.AsSpan(14), [efd.Number]);
        Assert.That(ReadBlocking(receiver), Is.EqualTo(FrameStatus.Malformed));
        Assert.That(receiver.Error, Does.Contain("payload bytes"));
        Assert.That(OpenFds(), Is.EqualTo(before), "the fd that came on the payload was closed");
        sender.Send(Vu.Request(Vu.GetFeatures), Enumerable.Repeat(efd.Number, 9).ToArray());
        Assert.That(ReadBlocking(receiver), Is.EqualTo(FrameStatus.Malformed));
        Assert.That(OpenFds(), Is.EqualTo(before), "all nine fds were closed");
    }

    [Test]
    public void FramesArriveByteByByteWithoutBlocking()
    {
        var (a, b) = Pair();
        using var _a = a; using var _b = b;
        var receiver = new FrameSocket(b);
        var frame = Vu.Request(Vu.SetFeatures, Vu.U64(1));
        for (int i = 0; i < frame.Length; i++)
        {
            Assert.That(receiver.TryReadFrame(), Is.EqualTo(FrameStatus.WouldBlock), $"after {i} bytes");
            a.Send(frame.AsSpan(i, 1));
        }
        Assert.That(ReadBlocking(receiver), Is.EqualTo(FrameStatus.Frame));
        Assert.That(receiver.Payload.ToArray(), Is.EqualTo(Vu.U64(1)));
        receiver.ReleaseFrame();
        a.Shutdown(SocketShutdown.Send);
        Assert.That(ReadBlocking(receiver), Is.EqualTo(FrameStatus.Closed));
    }

    private static FrameStatus ReadBlocking(FrameSocket s)
    {
        var end = Environment.TickCount64 + 5000;
        FrameStatus st;
        while ((st = s.TryReadFrame()) == FrameStatus.WouldBlock && Environment.TickCount64 < end) Thread.Sleep(1);
        return st;
    }

    internal static (Socket, Socket) Pair()
    {
        var l = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        string path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"fs-{Guid.NewGuid():N}.sock");
        l.Bind(new UnixDomainSocketEndPoint(path));
        l.Listen(1);
        var a = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        a.Connect(new UnixDomainSocketEndPoint(path));
        var b = l.Accept();
        l.Dispose();
        File.Delete(path);
        return (a, b);
    }

    private static int OpenFds() => Directory.GetFiles("/proc/self/fd").Length;

    private static bool IsOpen(int fd) => Tmds.Linux.LibC.fcntl(fd, Tmds.Linux.LibC.F_GETFD) >= 0;

    private static void SetFdLimit(string soft)
    {
        var p = Process.Start(new ProcessStartInfo("prlimit", $"--pid {Environment.ProcessId} --nofile={soft}:") { UseShellExecute = false })!;
        p.WaitForExit();
        Assert.That(p.ExitCode, Is.EqualTo(0), "prlimit");
    }

    /// <summary>Sends bytes with fds on a connected socket (the test's own sendmsg, via the reference front-end's socket code).</summary>
    private sealed class RawSender(Socket s)
    {
        public void Send(ReadOnlySpan<byte> bytes, int[] fds) => Assert.That(VmcUserSocket.SendOn(s, bytes, fds), "sendmsg");
    }
}
