using VmcBackend.Engine;
using VmcBackend.Engine.Backend;
using VmcBackend.Engine.Faults;
using VmcBackend.Engine.Memory;
using VmcBackend.Engine.Sessions;
using VmcBackend.Testing.FrontEnd;

namespace VmcBackend.Testing;

/// <summary>Guest RAM, the in-process front-end (<see cref="SpaprVmcModel"/>) and an engine behind the seam, wired together.</summary>
public sealed class InProcessRig
{
    /// <param name="backendMemory">Optionally wraps the guest RAM the back-end sees (instrumentation); the partition always sees it raw.</param>
    public InProcessRig(VmcLimits? limits = null, int ramBytes = 8 << 20, Serilog.ILogger? log = null,
        Func<ArrayGuestMemory, IGuestMemory>? backendMemory = null, Func<int, IHmcSessionHandler>? handlers = null, TimeProvider? time = null,
        FaultPlan? faults = null)
    {
        Memory = new ArrayGuestMemory(ramBytes);
        Device = new SpaprVmcModel(Memory, (ulong)ramBytes, backendMemory?.Invoke(Memory));
        Factory = VmcEngine.Factory(limits ?? new VmcLimits(), log, handlers, time, faults);
        Device.Connect(Factory);
    }

    public ArrayGuestMemory Memory { get; }
    public SpaprVmcModel Device { get; }
    public VmcBackendFactory Factory { get; }

    /// <summary>The connected engine (null while the back-end is lost).</summary>
    public VmcEngine? Engine => Device.Backend as VmcEngine;

    /// <summary>The back-end dies and a new one (from <paramref name="factory"/>, default the same
    /// configuration) connects: transport event, then REG_CRQ with RECONNECT.</summary>
    public VmcEngine Restart(VmcBackendFactory? factory = null)
    {
        Device.Disconnect();
        return (VmcEngine)Device.Connect(factory ?? Factory);
    }
}
