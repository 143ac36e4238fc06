using System.CommandLine;
using System.Globalization;
using System.Runtime.InteropServices;
using Serilog;
using Serilog.Events;
using VmcBackend.Engine;
using VmcBackend.Transport.Protocol;
using VmcBackend.Transport.Server;

var socketOption = new Option<string?>("--socket") { Description = "Listen on this unix socket path (created 0600)" };
var fdOption = new Option<int?>("--fd") { Description = "Serve on an inherited, already listening unix socket fd" };
var mtuOption = new Option<int>("--max-mtu") { Description = "Largest MTU offered to the guest (4096..16384)", DefaultValueFactory = _ => 4096 };
var poolOption = new Option<int>("--pool-size") { Description = "Buffers per HMC offered to the guest (16..64)", DefaultValueFactory = _ => 32 };
var hmcsOption = new Option<int>("--max-hmcs") { Description = "HMC sessions offered to the guest (1..2)", DefaultValueFactory = _ => 1 };
var drcOption = new Option<string>("--drc-index") { Description = "DRC index H_REQUEST_VMC returns (decimal or 0x hex)", DefaultValueFactory = _ => "0x81000001" };
var levelOption = new Option<LogEventLevel>("--log-level") { Description = "Verbose, Debug, Information, Warning, Error", DefaultValueFactory = _ => LogEventLevel.Information };
var capsOption = new Option<bool>("--print-capabilities") { Description = "Print the back-end's capabilities as JSON and exit" };

var root = new RootCommand("vmcd: the hypervisor side of IBM's Virtual Management Channel, for QEMU's spapr-vmc device")
{
    socketOption, fdOption, mtuOption, poolOption, hmcsOption, drcOption, levelOption, capsOption,
};

root.SetAction(result =>
{
    if (result.GetValue(capsOption))
    {
        Console.WriteLine($$"""{"type": "vmc", "protocol": "vmc-user", "version": {{FrameHeader.Version}}, "features": [], "max-mtu": [4096, 16384], "pool-size": [16, 64], "max-hmcs": [1, 2]}""");
        return 0;
    }
    var log = new LoggerConfiguration()
        .MinimumLevel.Is(result.GetValue(levelOption))
        .WriteTo.Console(outputTemplate: "{Timestamp:HH:mm:ss.fff} {Level:u3} {Connection} {Message:lj}{NewLine}{Exception}",
            standardErrorFromLevel: LogEventLevel.Verbose)
        .CreateLogger();
    try
    {
        string drcText = result.GetValue(drcOption)!;
        if (!(drcText.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
                ? uint.TryParse(drcText.AsSpan(2), NumberStyles.HexNumber, null, out uint drc)
                : uint.TryParse(drcText, out drc)))
        {
            log.Error("--drc-index {Value} is not a 32-bit number (use decimal or 0x hex)", drcText);
            return 2;
        }
        var limits = new VmcLimits
        {
            MaxMtu = result.GetValue(mtuOption), PoolSize = result.GetValue(poolOption),
            MaxHmcs = result.GetValue(hmcsOption), DrcIndex = drc,
        };
        try { limits.Validate(); }
        catch (ArgumentOutOfRangeException e) { log.Error("invalid limit: {Message}", e.Message.Split('\n')[0]); return 2; }

        string? path = result.GetValue(socketOption);
        int? fd = result.GetValue(fdOption);
        if ((path == null) == (fd == null))
        {
            log.Error("give exactly one of --socket PATH or --fd N (an inherited listening socket)");
            return 2;
        }
        VmcServer server;
        var factory = VmcEngine.Factory(limits, log);
        try { server = path != null ? VmcServer.Listen(path, factory, log) : VmcServer.FromFd(fd!.Value, factory, log); }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or UnauthorizedAccessException)
        {
            log.Error("cannot listen on {Where}: {Message}; check the directory exists and is writable, or pass --fd", path ?? $"fd {fd}", e.Message);
            return 1;
        }
        using var stop = new ManualResetEventSlim();
        using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Set(); });
        using var intr = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.Set(); });
        server.Start();
        log.Information("vmcd listening on {Where}: MTU {Mtu}, pool {Pool}, HMCs {Hmcs}, DRC index 0x{Drc:X8}",
            path ?? $"fd {fd}", limits.MaxMtu, limits.PoolSize, limits.MaxHmcs, limits.DrcIndex);
        stop.Wait();
        log.Information("shutting down ({Connections} connections)", server.ConnectionCount);
        server.Stop();
        return 0;
    }
    finally
    {
        log.Dispose();
    }
});

return root.Parse(args).Invoke();
