using System.Diagnostics;
using System.Text.RegularExpressions;
using VmcBackend.ReferenceFrontEnd;
using VmcBackend.ReferenceFrontEnd.Wire;
using VmcBackend.Testing;

namespace VmcBackend.Benchmarks;

/// <summary>vmcd measured through vmc-user version 2 by the reference front-end, in a separate process.</summary>
internal sealed class VmcdProcess : IDisposable
{
    private readonly Process _p;

    public VmcdProcess(string vmcd, string socket, string args, string logFile)
    {
        Socket = socket;
        LogFile = logFile;
        if (File.Exists(socket)) File.Delete(socket);
        var psi = new ProcessStartInfo("/bin/sh", ["-c", $"exec {vmcd} --socket {socket} {args} 2>{logFile} >&2"]);
        _p = Process.Start(psi)!;
        Baselines.WaitForSocket(socket);
    }

    /// <summary>Starts an arbitrary server program (the benchmark's own --host-server) the same way.</summary>
    public VmcdProcess(string socket, string[] argv, string logFile)
    {
        Socket = socket;
        LogFile = logFile;
        if (File.Exists(socket)) File.Delete(socket);
        _p = Process.Start(new ProcessStartInfo(Environment.ProcessPath!, argv) { RedirectStandardError = false })!;
        Baselines.WaitForSocket(socket);
    }

    public string Socket { get; }
    public string LogFile { get; }
    public int Pid => _p.Id;

    public long RssKiB()
    {
        foreach (var line in File.ReadLines($"/proc/{_p.Id}/status"))
            if (line.StartsWith("VmRSS:")) return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]);
        return 0;
    }

    /// <summary>The connection-thread allocation figures of every clean disconnect logged so far.</summary>
    public List<long> DisconnectAllocations()
    {
        var list = new List<long>();
        using var f = new FileStream(LogFile, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        using var r = new StreamReader(f);
        string? line;
        while ((line = r.ReadLine()) != null)
        {
            var m = Regex.Match(line, @"disconnected after \d+ requests, [\d.]+ ms inside vmcd, (\d+) bytes allocated");
            if (m.Success) list.Add(long.Parse(m.Groups[1].Value));
        }
        return list;
    }

    public void Dispose()
    {
        try { _p.Kill(); } catch (InvalidOperationException) { }
        _p.WaitForExit();
        _p.Dispose();
    }
}

internal static class VmcdBench
{
    private static readonly byte[] Init = [0xC0, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

    /// <summary>
    /// H_SEND_CRQ round trip through the rings: an init entry into the SQ + kick; vmcd consumes it,
    /// the engine answers with an init response in the OQ and vmcd writes the call eventfd, which
    /// the front-end waits on (poll) before taking the entry.
    /// </summary>
    public static Stats SendCrq(string socket, int rounds)
    {
        using var ram = new Memfd("bench-ram", 1 << 20);
        using var link = FrontEndLink.Connect(socket, ram);
        var ch = link.Channel;
        if (ch.Request(Ch.KindRegCrq, 256)?.Rc != 0) throw new IOException("REG_CRQ failed");
        var got = new byte[16];
        return Stats.Measure(rounds, () =>
        {
            if (!ch.TrySubmit(Init)) throw new IOException("SQ full");
            if (!ch.WaitOutput(got, 1000)) throw new IOException("no answer in the output ring");
            if (got[0] != 0xC0 || got[1] != 0x02) throw new IOException($"unexpected answer {got[0]:X2} {got[1]:X2}");
        });
    }

    /// <summary>
    /// H_COPY_RDMA of <paramref name="size"/> bytes, guest -> a back-end buffer, through the request
    /// slot: a whole guest brings up a session (so vmcd has buffers the guest may write), then the
    /// device's slot carries raw COPY_RDMA requests and waits for done_seq (spinning
    /// <paramref name="frontEndSpinUs"/>, then sleeping on the done eventfd).
    /// </summary>
    public static Stats CopyRdma(string socket, int size, int rounds, int frontEndSpinUs)
    {
        using var g = new ReferenceGuest(socket, maxHmcs: 1, mtu: size);
        var f = g.OpenRouter("bench-rdma");
        g.Echo(f, new byte[64], 1);
        var ch = g.Device.Link!.Channel;
        ch.SpinMicroseconds = frontEndSpinUs;
        (ulong, ulong)[] seg = [(0x10_0000, (ulong)size)];
        ulong remote = ulong.MaxValue;
        for (ulong k = 0; k < 64 && remote == ulong.MaxValue; k++)
            if (ch.Request(Ch.KindCopyRdma, 0, 1, (ulong)size, k * (ulong)size, seg)?.Rc == 0) remote = k * (ulong)size;
        if (remote == ulong.MaxValue) throw new IOException("no back-end buffer accepted a guest -> buffer copy");
        return Stats.Measure(rounds, () =>
        {
            if (ch.Request(Ch.KindCopyRdma, 0, 1, (ulong)size, remote, seg)?.Rc != 0) throw new IOException("COPY_RDMA failed");
        });
    }

    /// <summary>Full echo (RDMA in, SIGNAL, router, SIGNAL, RDMA out) through a whole guest; messages/s.</summary>
    public static double Echo(string socket, int sessions, int messages)
    {
        using var g = new ReferenceGuest(socket, maxHmcs: sessions);
        var files = Enumerable.Range(0, sessions).Select(i => g.OpenRouter($"bench-{i}")).ToArray();
        var data = new byte[224];
        for (int i = 0; i < 1000; i++) g.Echo(files[i % sessions], data, (uint)i);
        var sw = Stopwatch.StartNew();
        for (int i = 0; i < messages; i++) g.Echo(files[i % sessions], data, (uint)i);
        return messages / sw.Elapsed.TotalSeconds;
    }

    /// <summary>
    /// Managed bytes vmcd allocates per echoed message, on its connection thread: two connections
    /// echo <c>small</c> and <c>small + n</c> messages; vmcd logs each connection's allocations at
    /// disconnect, and the difference over n is the per-message figure (setup cancels out).
    /// </summary>
    public static double AllocationsPerMessage(VmcdProcess vmcd, int n)
    {
        const int small = 2000;
        void Run(int count)
        {
            using var g = new ReferenceGuest(vmcd.Socket);
            var f = g.OpenRouter("alloc");
            var data = new byte[96];
            for (int i = 0; i < count; i++) g.Echo(f, data, (uint)i);
        }
        Run(small);   // warm-up
        Run(small);
        Run(small + n);
        var end = Environment.TickCount64 + 5000;
        List<long> a;
        while ((a = vmcd.DisconnectAllocations()).Count < 3 && Environment.TickCount64 < end) Thread.Sleep(10);
        if (a.Count < 3) throw new IOException("vmcd did not log the disconnects");
        return (a[2] - a[1]) / (double)n;
    }

    /// <summary>vmcd's time from exec to its socket existing (median of <paramref name="runs"/>).</summary>
    public static double ColdStartMs(string vmcd, string dir, int runs)
    {
        var t = new List<double>();
        for (int i = 0; i < runs; i++)
        {
            var sw = Stopwatch.StartNew();
            using var p = new VmcdProcess(vmcd, Path.Combine(dir, "cold.sock"), "--log-level Warning", Path.Combine(dir, "cold.log"));
            t.Add(sw.Elapsed.TotalMilliseconds);
        }
        t.Sort();
        return t[t.Count / 2];
    }
}
