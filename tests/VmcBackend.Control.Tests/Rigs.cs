using System.Collections.Concurrent;
using System.Net.Sockets;
using Serilog;
using Serilog.Core;
using Serilog.Events;
using VmcBackend.Control.Client;
using VmcBackend.Control.Server;
using VmcBackend.Control.Trace;
using VmcBackend.Engine;
using VmcBackend.ReferenceFrontEnd;
using VmcBackend.Testing;
using VmcBackend.Transport.Server;

namespace VmcBackend.Control.Tests;

/// <summary>Collects log lines so a test can check that something was logged once and clearly.</summary>
internal sealed class LogCollector : ILogEventSink
{
    public readonly ConcurrentQueue<(LogEventLevel Level, string Text)> Lines = new();
    public void Emit(LogEvent e) => Lines.Enqueue((e.Level, e.RenderMessage().Replace("\"", "")));   // text as a person reads it: no quotes around strings
    public string[] AtLeast(LogEventLevel level) => Lines.Where(l => l.Level >= level).Select(l => l.Text).ToArray();
    public int Count(string text) => Lines.Count(l => l.Text.Contains(text, StringComparison.Ordinal));
}

/// <summary>
/// vmcd in this process: its data socket (real VmcServer, real engines) and its control socket,
/// with the registry between them, on temporary paths; guests are reference front-ends over the socket.
/// </summary>
internal sealed class ControlRig : IDisposable
{
    private readonly List<IDisposable> _owned = [];

    public ControlRig(VmcLimits? limits = null, Func<Socket, string?>? admit = null)
    {
        Dir = Directory.CreateTempSubdirectory("vmcctl-test").FullName;
        DataPath = Path.Combine(Dir, "vmcd.sock");
        ControlPath = DataPath + ".ctl";
        Log = new LoggerConfiguration().MinimumLevel.Debug().Enrich.FromLogContext().WriteTo.Sink(Collector).CreateLogger();
        Registry = new VmRegistry(Log);
        Server = VmcServer.Listen(DataPath, VmcEngine.Factory(limits ?? new VmcLimits(), Log), Log, new VmcServerOptions { Connections = Registry });
        Server.Start();
        Control = ControlServer.Listen(ControlPath, Registry, Log, admit, DataPath);
        Control.Start();
    }

    public string Dir { get; }
    public string DataPath { get; }
    public string ControlPath { get; }
    public LogCollector Collector { get; } = new();
    public ILogger Log { get; }
    public VmRegistry Registry { get; }
    public VmcServer Server { get; }
    public ControlServer Control { get; }

    public ReferenceGuest Guest(int hmcs = 1)
    {
        var g = new ReferenceGuest(DataPath, hmcs);
        _owned.Add(g);
        Assert.That(WaitFor(() => Registry.Vms.Count(v => !v.Ended.IsCancellationRequested) >= 1), "the VM is registered");
        return g;
    }

    public Task<ControlClient> Client() => ControlClient.ConnectAsync(ControlPath);

    /// <summary>Polls <paramref name="condition"/> until it holds or the deadline passes.</summary>
    public static bool WaitFor(Func<bool> condition, int ms = 5000)
    {
        var end = Environment.TickCount64 + ms;
        while (Environment.TickCount64 < end) { if (condition()) return true; Thread.Sleep(5); }
        return condition();
    }

    public void Dispose()
    {
        foreach (var d in _owned) d.Dispose();
        Control.Stop();
        Server.Stop();
        try { Directory.Delete(Dir, true); } catch (IOException) { }
    }
}

/// <summary>Guest-side helpers: a management client on the reference guest that waits for answers with a deadline.</summary>
internal static class GuestIo
{
    /// <summary>Runs the device and the partition until a message is readable on <paramref name="f"/>, then reads it.</summary>
    public static byte[]? Await(ReferenceGuest g, SimulatedPartition.VmcFile f, int ms = 5000)
    {
        var end = Environment.TickCount64 + ms;
        var buf = new byte[16384];
        while (Environment.TickCount64 < end)
        {
            g.Device.Run();
            g.Partition.RunPending();
            if (g.Partition.Poll(f))
            {
                int n = g.Partition.Read(f, buf.AsSpan(0, g.Partition.MaxMtu));
                return n < 0 ? throw new IOException($"read returned {n}") : buf[..n];
            }
            Thread.Sleep(1);
        }
        return null;
    }

    public static void Write(ReferenceGuest g, SimulatedPartition.VmcFile f, byte[] message)
    {
        int w = g.Partition.Write(f, message);
        Assert.That(w, Is.EqualTo(message.Length), "write() on /dev/ibmvmc");
        g.Client.Settle();
    }
}

/// <summary>Traces recorded in-process: a recorder on an engine, its ring drained into a trace file image.</summary>
internal static class TraceImage
{
    /// <summary>A trace file's bytes: the header, then what the ring holds.</summary>
    public static byte[] From(RecordRing ring)
    {
        var ms = new MemoryStream();
        var header = new byte[TraceFormat.FileHeaderSize];
        TraceFormat.WriteFileHeader(header, 0, 0);
        ms.Write(header);
        var (a, b) = ring.Available();
        ms.Write(a.Span);
        ms.Write(b.Span);
        ring.Consumed(a.Length + b.Length);
        return ms.ToArray();
    }

    public static (TraceHeader Header, List<TraceRecord> Records) Read(byte[] image)
    {
        var r = new TraceReader(new MemoryStream(image), "the test trace");
        var list = new List<TraceRecord>();
        while (r.TryRead(out var rec)) list.Add(rec);
        return (r.Header, list);
    }
}
