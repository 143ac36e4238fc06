using System.Collections.Concurrent;
using Serilog;
using Serilog.Core;
using Serilog.Events;
using VmcBackend.Engine.Backend;
using VmcBackend.ReferenceFrontEnd;
using VmcBackend.Transport.Server;

namespace VmcBackend.Transport.Tests;

/// <summary>Collects vmcd's log lines so tests can check that a refusal or a failure was logged once and clearly.</summary>
internal sealed class LogCollector : ILogEventSink
{
    public readonly ConcurrentQueue<(LogEventLevel Level, string Text)> Lines = new();
    public readonly ConcurrentQueue<LogEvent> Events = new();
    public void Emit(LogEvent e) { Events.Enqueue(e); Lines.Enqueue((e.Level, e.RenderMessage())); }
    public string[] Errors => Lines.Where(l => l.Level >= LogEventLevel.Error).Select(l => l.Text).ToArray();
}

/// <summary>A vmcd server on a temporary socket (stub back-end unless given a factory), with its log collected.</summary>
internal sealed class ServerFixture : IDisposable
{
    private readonly string _dir = System.IO.Directory.CreateTempSubdirectory("vmcd-test").FullName;
    private readonly VmcBackendFactory _factory;
    private readonly VmcServerOptions? _options;

    public ServerFixture(VmcBackendFactory? factory = null, VmcServerOptions? options = null)
    {
        _factory = factory ?? (fe => new StubBackend(fe));
        _options = options;
        Path = System.IO.Path.Combine(_dir, "vmcd.sock");
        Log = new LoggerConfiguration().MinimumLevel.Debug().Enrich.FromLogContext().WriteTo.Sink(Collector).CreateLogger();
        Server = Start();
    }

    public LogCollector Collector { get; } = new();
    public ILogger Log { get; }
    public string Path { get; }
    public string Directory => _dir;
    public VmcServer Server { get; private set; }

    private VmcServer Start()
    {
        var s = VmcServer.Listen(Path, _factory, Log, _options);
        s.Start();
        return s;
    }

    /// <summary>Stops the server and starts a new one on the same path (a vmcd restart).</summary>
    public void Restart()
    {
        Server.Stop();
        Server = Start();
    }

    /// <summary>Polls <paramref name="condition"/> until it holds or the deadline passes.</summary>
    public static bool WaitFor(Func<bool> condition, int ms = 5000)
    {
        var end = Environment.TickCount64 + ms;
        while (Environment.TickCount64 < end) { if (condition()) return true; Thread.Sleep(5); }
        return condition();
    }

    /// <summary>Waits for a logged error containing <paramref name="text"/>.</summary>
    public bool WaitForError(string text, int ms = 5000) => WaitFor(() => Collector.Errors.Any(e => e.Contains(text, StringComparison.OrdinalIgnoreCase)), ms);

    public VmcUserSocket RawConnect() => new(Path);

    public void Dispose()
    {
        Server.Stop();
        try { System.IO.Directory.Delete(_dir, true); } catch (IOException) { }
    }
}

/// <summary>Guest RAM plus a set-up front-end connection (stub back-end tests).</summary>
internal sealed class LinkedFrontEnd : IDisposable
{
    public const ulong RamSize = 1 << 20;
    public readonly Memfd Ram = new("test-ram", RamSize);
    public readonly FrontEndLink Link;

    public LinkedFrontEnd(ServerFixture fx, ulong features = 0) => Link = FrontEndLink.Connect(fx.Path, Ram, features);

    public FrontEndChannel Channel => Link.Channel;

    /// <summary>Submits one entry and waits (deadline) for the stub to echo it into the output ring.</summary>
    public byte[] Echo(byte[] entry, int ms = 5000)
    {
        Assert.That(Channel.TrySubmit(entry), "SQ has room");
        var got = new byte[16];
        Assert.That(Channel.WaitOutput(got, ms), "the entry came back in the output ring");
        return got;
    }

    public void Dispose()
    {
        Link.Dispose();
        Ram.Dispose();
    }
}
