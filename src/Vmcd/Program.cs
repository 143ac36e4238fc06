using System.Runtime.InteropServices;
using VmcBackend.Control.Server;
using Vmcd.Capabilities;
using Vmcd.Cli;
using Vmcd.Listening;
using Vmcd.Logging;
using Vmcd.Systemd;

// vmcd: parse, log, listen (path, --fd, or systemd's socket), tell the service manager, serve until SIGTERM/SIGINT.

// Back-end program convention: --print-capabilities ignores every other option and argument.
if (args.Contains(VmcdCommandLine.PrintCapabilitiesOption))
{
    using var stdout = Console.OpenStandardOutput();
    BackendCapabilities.Write(stdout);
    return 0;
}
if (VmcdCommandLine.Parse(args, out VmcdSettings settings) is int exit) return exit;

using var log = VmcdLog.Create(settings.LogLevel, settings.LogFormat);
using var manager = ServiceManager.FromEnvironment(log);
var registry = new VmRegistry(log);
using var server = ServerStartup.Open(settings, log, registry, out string where);
if (server == null) return 1;
using var control = ServerStartup.OpenControl(settings, registry, log, where, out bool controlFailed);
if (controlFailed) return 1;

using var stop = new ManualResetEventSlim();
using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Set(); });
using var intr = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.Set(); });
server.Start();
control?.Start();
var limits = settings.Limits;
log.Information("vmcd listening on {Where}: MTU {Mtu}, pool {Pool}, HMCs {Hmcs}, DRC index 0x{Drc:X8}; front-ends allowed: {Peers}; control socket: {Control}",
    where, limits.MaxMtu, limits.PoolSize, limits.MaxHmcs, limits.DrcIndex, settings.Peers.Describe(), control?.Path ?? "none");
if (settings.Faults is { } plan)
    log.Warning("fault injection: {Count} faults from {File} (docs/faults.md); vmcd is not a faithful hypervisor now: {Rules}",
        plan.Rules.Count, settings.FaultsFile, string.Join("; ", plan.Rules.Select(r => r.Text)));
manager.Notify($"READY=1\nSTATUS=listening on {where}");

stop.Wait();
manager.Notify("STOPPING=1\nSTATUS=shutting down");
log.Information("shutting down ({Connections} connections)", server.ConnectionCount);
control?.Stop();
server.Stop();
return 0;
