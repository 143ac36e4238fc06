using System.Diagnostics;
using VmcBackend.Transport.Framing;
using VmcBackend.Transport.Interop;
using VmcBackend.Transport.Protocol;

namespace VmcBackend.Transport.Tests;

public class FrameSocketFdTests
{
    [Test]
    public void TruncatedFdsNeverCloseStaleDescriptors()
    {
        var (a, b) = SocketPair();
        var sender = new FrameSocket(a);
        var receiver = new FrameSocket(b);
        int efd = LibC.EventFd(0, LibC.EFD_CLOEXEC);
        int[] eight = Enumerable.Repeat(efd, 8).ToArray();
        // Frame 1 carries 8 fds, which the receiver closes.
        Assert.That(sender.Write(VmcUserRequest.GetFeatures, 1, default, eight));
        Assert.That(receiver.Read(out _), Is.EqualTo(FrameError.None));
        receiver.CloseFds();
        // Other owners now hold descriptors with those numbers.
        var sentinels = Enumerable.Range(0, 8).Select(_ => LibC.EventFd(0, LibC.EFD_CLOEXEC)).ToArray();
        // Frame 2: the kernel can install only 2 of its 8 fds (descriptor limit): MSG_CTRUNC.
        Assert.That(sender.Write(VmcUserRequest.GetFeatures, 1, default, eight));
        string original = File.ReadLines("/proc/self/limits").First(l => l.StartsWith("Max open files"))
            .Split(' ', StringSplitOptions.RemoveEmptyEntries)[3];
        SetFdLimit((sentinels.Max() + 3).ToString());
        FrameError err;
        try { err = receiver.Read(out _); }
        finally { SetFdLimit(original); }
        receiver.CloseFds();
        Assert.That(err, Is.Not.EqualTo(FrameError.None), "a frame whose fds were truncated is malformed");
        foreach (int s in sentinels) Assert.That(LibC.EventFdSignal(s), $"sentinel fd {s} was closed by the receiver");
    }

    private static void SetFdLimit(string soft)
    {
        var p = Process.Start(new ProcessStartInfo("prlimit", $"--pid {Environment.ProcessId} --nofile={soft}:") { UseShellExecute = false })!;
        p.WaitForExit();
        Assert.That(p.ExitCode, Is.EqualTo(0), "prlimit");
    }

    private static unsafe (int, int) SocketPair()
    {
        int* sv = stackalloc int[2];
        Assert.That(Tmds.Linux.LibC.socketpair(1, 1, 0, sv), Is.EqualTo(0));
        return (sv[0], sv[1]);
    }
}
