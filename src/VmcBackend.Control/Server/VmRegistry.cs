using System.Globalization;
using Serilog;
using VmcBackend.Engine;
using VmcBackend.Engine.Backend;
using VmcBackend.Transport.Connection;

namespace VmcBackend.Control.Server;

/// <summary>
/// The VMs vmcd serves, as the control plane sees them: told by the server when each connection's
/// engine exists and when it ends (<see cref="IConnectionListener"/>, on the connection's thread),
/// and the trace readers that follow every VM, including VMs that connect later.
/// </summary>
public sealed class VmRegistry(ILogger log) : IConnectionListener
{
    private readonly Lock _lock = new();
    private readonly List<HostedVm> _vms = [];
    private readonly List<TraceSubscription> _followAll = [];
    private ushort _next;

    public IReadOnlyList<HostedVm> Vms { get { lock (_lock) return _vms.ToArray(); } }

    /// <summary>Trace readers connected now.</summary>
    public int TraceReaders { get; private set; }

    void IConnectionListener.Started(FrontEndConnection connection, IVmcBackend backend)
    {
        if (backend is not VmcEngine engine) return;
        HostedVm vm;
        TraceSubscription[] followers;
        lock (_lock)
        {
            if (++_next == 0) _next = 1;
            vm = new HostedVm(connection, engine, _next, log);
            _vms.Add(vm);
            followers = _followAll.ToArray();
        }
        // On the connection's thread, before anything is served: these traces see the VM from its start.
        foreach (var f in followers) if (f.RingFor(vm) is { } ring) vm.AddReader(ring, joined: false);
    }

    void IConnectionListener.Ended(FrontEndConnection connection)
    {
        HostedVm? vm;
        lock (_lock)
        {
            vm = _vms.Find(v => v.Name == connection.Name);
            if (vm != null) _vms.Remove(vm);
        }
        vm?.End();
    }

    /// <summary>
    /// The VM named <paramref name="nameOrPid"/> (a name such as <c>vm3</c>, or its front-end's pid);
    /// with null, the only VM when exactly one is connected. Otherwise null and a one-line reason.
    /// </summary>
    public HostedVm? Find(string? nameOrPid, out string? error)
    {
        var vms = Vms;
        error = null;
        if (nameOrPid == null)
        {
            if (vms.Count == 1) return vms[0];
            error = vms.Count == 0 ? "no VM is connected to vmcd" : $"{vms.Count} VMs are connected ({Names(vms)}): name one with --vm";
            return null;
        }
        var match = vms.FirstOrDefault(v => v.Name == nameOrPid)
            ?? (uint.TryParse(nameOrPid, NumberStyles.None, CultureInfo.InvariantCulture, out uint pid) ? vms.FirstOrDefault(v => v.Pid == pid) : null);
        if (match == null)
            error = vms.Count == 0 ? $"no VM {nameOrPid}: no VM is connected to vmcd" : $"no VM {nameOrPid} (connected: {Names(vms)}; name a VM or its front-end's pid)";
        return match;
    }

    private static string Names(IEnumerable<HostedVm> vms) => string.Join(", ", vms.Select(v => $"{v.Name} pid {v.Pid}"));

    /// <summary>Starts a trace: of <paramref name="only"/>, or of every VM now and later.</summary>
    internal void Follow(TraceSubscription trace, HostedVm? only)
    {
        HostedVm[] now;
        lock (_lock)
        {
            TraceReaders++;
            if (only == null) _followAll.Add(trace);
            now = only != null ? [only] : _vms.ToArray();
        }
        // Running VMs join at their next pass: their VM_START says so (a replay needs the start).
        foreach (var vm in now) vm.Post(_ => { if (trace.RingFor(vm) is { } ring) vm.AddReader(ring, joined: true); });
    }

    /// <summary>Ends a trace: no VM feeds it any more. Returns the records it lost.</summary>
    internal long Unfollow(TraceSubscription trace)
    {
        lock (_lock)
        {
            TraceReaders--;
            _followAll.Remove(trace);
        }
        var rings = trace.Close();
        long lost = trace.LostEnded;
        foreach (var (vm, ring) in rings)
        {
            lost += ring.LostTotal;
            vm.Post(_ => vm.RemoveReader(ring));
        }
        return lost;
    }
}
