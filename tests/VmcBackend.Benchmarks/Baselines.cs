using System.Diagnostics;
using System.Net.Sockets;
using System.Threading;
using VmcBackend.ReferenceFrontEnd;

namespace VmcBackend.Benchmarks;

/// <summary>
/// The physical baselines, each measured between two processes like vmcd and QEMU: a raw AF_UNIX
/// round trip, an eventfd + shared-slot round trip (the v2 datapath's floor), and memcpy.
/// The second process is this program run with --raw-echo or --slot-echo.
/// </summary>
internal static class Baselines
{
    /// <summary>Raw AF_UNIX stream round trip, 28 bytes out and 20 back.</summary>
    public static Stats RawSocket(string dir, int rounds)
    {
        var path = Path.Combine(dir, "raw.sock");
        using var child = Child("--raw-echo", path);
        WaitForSocket(path);
        using var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        s.Connect(new UnixDomainSocketEndPoint(path));
        var o = new byte[28];
        var i = new byte[20];
        var st = Stats.Measure(rounds, () => { s.Send(o); ReceiveExact(s, i); });
        s.Shutdown(SocketShutdown.Both);
        child.WaitForExit(5000);
        return st;
    }

    public static int RawEcho(string path)
    {
        using var l = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        l.Bind(new UnixDomainSocketEndPoint(path));
        l.Listen(1);
        using var c = l.Accept();
        var i = new byte[28];
        var o = new byte[20];
        try { while (true) { ReceiveExact(c, i); c.Send(o); } }
        catch (IOException) { }
        catch (SocketException) { }
        return 0;
    }

    /// <summary>
    /// eventfd + shared-slot round trip: write a 16-byte request into a shared memfd, kick an
    /// eventfd; the other process (blocked in read on the eventfd) copies it into the answer slot
    /// and writes a second eventfd, which this side waits on with poll.
    /// </summary>
    public static unsafe Stats EventFdSlot(string dir, int rounds)
    {
        var path = Path.Combine(dir, "slot.sock");
        using var l = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        l.Bind(new UnixDomainSocketEndPoint(path));
        l.Listen(1);
        using var child = Child("--slot-echo", path);
        using var c = l.Accept();
        using var shm = new Memfd("bench-slot", 4096);
        using var kick = Fd.EventFd();
        using var call = Fd.EventFd();
        if (!VmcUserSocket.SendOn(c, [1], [shm.File.Number, kick.Number, call.Number])) throw new IOException("passing fds failed");
        byte* p = shm.Pointer;
        uint seq = 0;
        var st = Stats.Measure(rounds, () =>
        {
            seq++;
            *(ulong*)(p + 64) = seq;
            Volatile.Write(ref *(uint*)p, seq);
            kick.Signal();
            while (Volatile.Read(ref *(uint*)(p + 128)) != seq) { call.WaitReadable(1000); call.Drain(); }
        });
        Volatile.Write(ref *(uint*)p, uint.MaxValue);   // tells the child to stop
        kick.Signal();
        child.WaitForExit(5000);
        return st;
    }

    public static unsafe int SlotEcho(string path)
    {
        using var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        s.Connect(new UnixDomainSocketEndPoint(path));
        var fds = ReceiveFds(s, 3);
        using var shm = new Fd(fds[0]);
        using var kick = new Fd(fds[1]);
        using var call = new Fd(fds[2]);
        byte* p = (byte*)Tmds.Linux.LibC.mmap(null, 4096, Tmds.Linux.LibC.PROT_READ | Tmds.Linux.LibC.PROT_WRITE, Tmds.Linux.LibC.MAP_SHARED, shm.Number, 0);
        uint done = 0;
        while (true)
        {
            kick.WaitReadable(-1);
            kick.Drain();
            uint seq = Volatile.Read(ref *(uint*)p);
            if (seq == uint.MaxValue) return 0;
            if (seq == done) continue;
            *(ulong*)(p + 192) = *(ulong*)(p + 64);
            done = seq;
            Volatile.Write(ref *(uint*)(p + 128), seq);
            call.Signal();
        }
    }

    /// <summary>memcpy between two memfd mappings (hot), GB/s and ns per copy.</summary>
    public static (double Gbps, double Ns) Memcpy(int size)
    {
        using var a = new Memfd("bench-a", 1 << 20);
        using var b = new Memfd("bench-b", 1 << 20);
        for (int i = 0; i < 10_000; i++) a.Span[..size].CopyTo(b.Span);
        int n = 0;
        var sw = Stopwatch.StartNew();
        while (sw.ElapsedMilliseconds < 300) { for (int i = 0; i < 1000; i++) a.Span[..size].CopyTo(b.Span); n += 1000; }
        double ns = sw.Elapsed.TotalNanoseconds / n;
        return (size / ns, ns);
    }

    private static Process Child(string mode, string path) =>
        Process.Start(new ProcessStartInfo(Environment.ProcessPath!, [mode, path]))!;

    internal static void WaitForSocket(string path)
    {
        var sw = Stopwatch.StartNew();
        while (!File.Exists(path)) { if (sw.ElapsedMilliseconds > 10000) throw new IOException($"{path} never appeared"); Thread.Sleep(1); }
    }

    private static void ReceiveExact(Socket s, byte[] buf)
    {
        int got = 0;
        while (got < buf.Length) { int n = s.Receive(buf, got, buf.Length - got, SocketFlags.None); if (n <= 0) throw new IOException("closed"); got += n; }
    }

    private static unsafe int[] ReceiveFds(Socket s, int count)
    {
        byte b;
        byte* control = stackalloc byte[Tmds.Linux.LibC.CMSG_SPACE(4 * count)];
        var iov = new Tmds.Linux.iovec { iov_base = &b, iov_len = 1 };
        var msg = new Tmds.Linux.msghdr { msg_iov = &iov, msg_iovlen = 1, msg_control = control, msg_controllen = (Tmds.Linux.socklen_t)Tmds.Linux.LibC.CMSG_SPACE(4 * count) };
        if (Tmds.Linux.LibC.recvmsg((int)s.Handle, &msg, 0) != 1) throw new IOException("no fds");
        var h = Tmds.Linux.LibC.CMSG_FIRSTHDR(&msg);
        return new ReadOnlySpan<int>(Tmds.Linux.LibC.CMSG_DATA(h), count).ToArray();
    }
}

/// <summary>Median and p99 of a round trip, microseconds.</summary>
internal readonly record struct Stats(double Median, double P99)
{
    public static Stats Measure(int n, Action op)
    {
        for (int i = 0; i < Math.Max(n / 10, 1000); i++) op();
        var t = new double[n];
        for (int i = 0; i < n; i++)
        {
            long s = Stopwatch.GetTimestamp();
            op();
            t[i] = Stopwatch.GetElapsedTime(s).TotalMicroseconds;
        }
        Array.Sort(t);
        return new Stats(t[n / 2], t[(int)(n * 0.99)]);
    }

    public override string ToString() => $"{Median:F1} us, {P99:F1} us";
}
