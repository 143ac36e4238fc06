using Serilog;
using Serilog.Events;
using VmcBackend.Engine.Backend;
using VmcBackend.Engine.Buffers;
using VmcBackend.Engine.Faults;
using VmcBackend.Engine.Handshake;
using VmcBackend.Engine.Memory;
using VmcBackend.Engine.Observe;
using VmcBackend.Engine.Output;
using VmcBackend.Engine.Rdma;
using VmcBackend.Engine.Router;
using VmcBackend.Engine.Sessions;
using VmcBackend.Wire.Crq;
using VmcBackend.Wire.Hcall;

namespace VmcBackend.Engine;

/// <summary>
/// The hypervisor's half of one VMC adapter (one guest), behind the <see cref="IVmcBackend"/>
/// seam. Pure protocol and state: no sockets, no threads; it talks back only through
/// <see cref="IVmcFrontEnd"/>. Not thread-safe: the owner serialises every call. It routes each
/// guest entry to the part that owns it: the handshake (<see cref="HandshakeState"/>), the HMC
/// sessions (<see cref="HmcSession"/>, each with its <see cref="BufferPool"/>), RDMA
/// (<see cref="RdmaService"/>); every entry it sends goes out through <see cref="EntryOutput"/>.
/// </summary>
public sealed class VmcEngine : IVmcBackend
{
    /// <summary>Most guest-physical segments one COPY_RDMA may carry (docs/protocol.md).</summary>
    public const int MaxRdmaSegments = 254;

    private readonly ILogger _log;
    private readonly IVmcFrontEnd _frontEnd;
    private readonly EntryOutput _output;
    private readonly HypervisorMessages _send;
    private readonly HandshakeState _handshake = new();
    private readonly RemoteWindow _window;
    private readonly BufferPool[] _pools;
    private readonly HmcSession[] _sessions;
    private readonly RdmaService _rdma;
    private readonly FaultSlot _faultSlot = new();
    private readonly ObserverSlot _observer = new();
    private ObservedMemory? _observedMemory;
    private uint _queueEntries;

    /// <summary>This engine's faults (vmcd --faults, vmcctl inject); null, and never consulted, without any.</summary>
    private EngineFaults? Faults => _faultSlot.Current;

    /// <summary>Validates <paramref name="limits"/> once and returns the factory the transport
    /// calls for each connected front-end. <paramref name="handlers"/> gives the handler of each
    /// HMC index (default: the HMC command router). <paramref name="faults"/>: the fault plan every
    /// engine of this factory consults (docs/faults.md); none by default, and then nothing is consulted.</summary>
    public static VmcBackendFactory Factory(VmcLimits limits, ILogger? log = null,
        Func<int, IHmcSessionHandler>? handlers = null, TimeProvider? time = null, FaultPlan? faults = null)
    {
        limits.Validate();
        return frontEnd => new VmcEngine(limits, frontEnd, log, handlers, time, faults);
    }

    internal VmcEngine(VmcLimits limits, IVmcFrontEnd frontEnd, ILogger? log, Func<int, IHmcSessionHandler>? handlers, TimeProvider? time,
        FaultPlan? faults = null)
    {
        Limits = limits;
        Time = time ?? TimeProvider.System;
        _frontEnd = frontEnd;
        _log = log ?? Serilog.Core.Logger.None;
        _window = new RemoteWindow(limits.MaxHmcs, limits.PoolSize, limits.MaxMtu);
        if (faults != null) _faultSlot.Current = new EngineFaults(faults, _window, Time, _log);
        _output = new EntryOutput(frontEnd, limits.OutputBacklog, Counters, _log, _observer, _faultSlot);
        _send = new HypervisorMessages(_output);
        handlers ??= _ => new HmcCommandRouter(_log);
        _pools = new BufferPool[limits.MaxHmcs];
        _sessions = new HmcSession[limits.MaxHmcs];
        for (int i = 0; i < limits.MaxHmcs; i++)
        {
            _pools[i] = new BufferPool(limits.PoolSize);
            _sessions[i] = new HmcSession(i, limits, _pools[i], _window, _send, Counters, _log, Time, handlers(i), _observer, _faultSlot);
        }
        _rdma = new RdmaService(_window, _pools);
        Config = new VmcBackendConfig(limits.DrcIndex, limits.MaxMtu, limits.PoolSize, limits.MaxHmcs, MaxRdmaSegments, _window.Size);
    }

    public VmcLimits Limits { get; }
    /// <summary>The clock of the engine's timed retries.</summary>
    public TimeProvider Time { get; }
    public VmcBackendConfig Config { get; }
    public ulong Features => 0;
    public EngineCounters Counters { get; } = new();
    public AdapterState State => _handshake.State;

    /// <summary>Negotiated values (0 until capabilities are exchanged).</summary>
    public int Mtu => _handshake.Mtu;
    public int PoolSize => _handshake.PoolSize;
    public int HmcCount => _handshake.HmcCount;

    /// <summary>Entries held in the engine because the output ring was full.</summary>
    public int BacklogCount => _output.BacklogCount;

    public bool HasPendingOutput
    {
        get
        {
            if (_output.BacklogCount > 0 || Faults?.HasPendingWork == true) return true;
            foreach (var s in _sessions) if (s.NeedsPoll) return true;
            return false;
        }
    }

    /// <summary>
    /// Who sees everything crossing this engine (<see cref="IEngineObserver"/>), or null (the
    /// default: the engine then pays one null check per point). Set it on the engine's thread, between calls.
    /// </summary>
    public IEngineObserver? Observer
    {
        get => _observer.Current;
        set => _observer.Current = value;
    }

    /// <summary>A read-only view of HMC index <paramref name="index"/>.</summary>
    public HmcSessionInfo Session(int index) => _sessions[index].Info();

    /// <summary>Remote IOBA of buffer (index, id) in the remote window.</summary>
    public uint BufferIoba(int hmcIndex, int bufferId) => _window.IobaOf(hmcIndex, bufferId);

    // ---------------------------------------------------------------- the seam

    public HcallReturn RegisterQueue(uint entries, bool reconnect)
    {
        if (_observer.Current is not { } o) return RegisterQueueCore(entries, reconnect);
        o.QueueRegistering(entries, reconnect);
        var rc = RegisterQueueCore(entries, reconnect);
        o.Returned(rc, 0);
        return rc;
    }

    private HcallReturn RegisterQueueCore(uint entries, bool reconnect)
    {
        if (_output.Failed) return HcallReturn.Hardware;
        if (entries == 0) return HcallReturn.Parameter;
        // Only the guest's own H_REG_CRQ: a RECONNECT is the front-end's, its rc never reaches the guest.
        var fault = reconnect ? null : Faults?.RegisterQueue();
        if (fault != null && fault.Rc != HcallReturn.Closed) return EndCall(fault.Rc);
        ResetChannel("queue registered");
        _output.DiscardBacklog();
        Faults?.PartnerGone();
        _queueEntries = entries;
        if (fault != null)
        {
            // Registered, but the partner is not ready: everything is dropped until it starts the handshake.
            _handshake.QueueRegistered(engineSentInit: false);
            Faults!.PartnerNotReady(fault.ReadyMs);
            return EndCall(HcallReturn.Closed);
        }
        _handshake.QueueRegistered(engineSentInit: reconnect);
        if (reconnect) _send.Init();
        _log.Information("guest CRQ registered: {Entries} entries{Reconnect}", entries, reconnect ? ", sent init (reconnect)" : "");
        return EndCall(HcallReturn.Success);
    }

    public HcallReturn FreeQueue()
    {
        _observer.Current?.QueueFreeing();
        var rc = HcallReturn.Success;
        if (_output.Failed) rc = HcallReturn.Hardware;
        else
        {
            if (_handshake.IsRegistered) _log.Information("guest CRQ freed");
            DropQueue("queue freed");
        }
        _observer.Current?.Returned(rc, 0);
        return rc;
    }

    public void Reset()
    {
        _observer.Current?.ResetRequested();
        _log.Information("device reset");
        DropQueue("device reset");
    }

    public void SubmitEntry(ReadOnlySpan<byte> entry)
    {
        _observer.Current?.EntryReceived(entry);
        if (_output.Failed) return;
        if (entry.Length != CrqEntry.Size) { Drop("entry of {Length} bytes", entry.Length); return; }
        Counters.EntriesReceived++;
        if (!_handshake.IsRegistered) Drop("entry with no queue registered");
        else if (Faults?.PartnerPending == true) Drop("entry while the partner is not ready (fault reg-crq rc=closed)");
        else switch ((CrqValid)entry[0])
        {
            case CrqValid.Init: HandleInit((CrqInitType)entry[1]); break;
            case CrqValid.Payload: HandleMessage(entry); break;
            default: Drop("entry with valid byte {Valid:X2}", entry[0]); break;
        }
        EndCall(0);
    }

    public HcallReturn CopyRdma(RdmaDirection direction, ulong remoteIoba, ulong length, ReadOnlySpan<GuestSegment> local)
    {
        if (_observer.Current is not { } o) return CopyRdmaCore(_frontEnd.Memory, direction, remoteIoba, length, local);
        o.RdmaRequested(direction, remoteIoba, length, local);
        if (_observedMemory is not { } m || m.Observer != o || m.Inner != _frontEnd.Memory)
            _observedMemory = m = new ObservedMemory(_frontEnd.Memory, o);
        var rc = CopyRdmaCore(m, direction, remoteIoba, length, local);
        o.Returned(rc, 0);
        return rc;
    }

    private HcallReturn CopyRdmaCore(IGuestMemory memory, RdmaDirection direction, ulong remoteIoba, ulong length, ReadOnlySpan<GuestSegment> local)
    {
        if (_output.Failed) return HcallReturn.Hardware;
        HcallReturn rc;
        if (Faults == null || !(Faults.Rdma(direction, length, out rc)
                || (length > (ulong)Mtu && Faults.TryOversizeCopy(memory, direction, remoteIoba, length, local, out rc))))
            rc = _rdma.Copy(memory, direction, remoteIoba, length, local);
        if (rc == HcallReturn.Success) { Counters.RdmaCopies++; Counters.RdmaBytes += (long)length; }
        else
        {
            Counters.RdmaFailures++;
            if (_log.IsEnabled(LogEventLevel.Debug))
                _log.Debug("H_COPY_RDMA {Direction} remote {Ioba:X} length {Length} failed: rc {Rc}", direction, remoteIoba, length, rc);
        }
        return rc;
    }

    public HcallReturn RequestVmc(out uint drcIndex)
    {
        _observer.Current?.VmcRequested();
        drcIndex = Limits.DrcIndex;
        HcallReturn rc;
        if (_output.Failed) rc = HcallReturn.Hardware;
        else if (Faults == null || !Faults.RequestVmc(out rc)) rc = HcallReturn.Success;
        _observer.Current?.Returned(rc, drcIndex);
        return rc;
    }

    public void Poll()
    {
        _observer.Current?.Polling();
        if (_output.Failed) return;
        if (Faults != null && Faults.PartnerBecomesReady() && _handshake.IsRegistered)
        {
            _handshake.QueueRegistered(engineSentInit: true);
            _send.Init();
            _log.Information("partner ready (fault reg-crq rc=closed): sent init");
        }
        foreach (var s in _sessions) s.Poll();
        EndCall(0);
    }

    // ---------------------------------------------------------------- host-side operations

    /// <summary>
    /// Makes <paramref name="handler"/> serve HMC index <paramref name="hmcIndex"/> from now on and
    /// returns the one it replaces; the guest's session is not touched. If a session is open, the
    /// replaced handler is told it closed and the new one that it opened (with the session's HMC
    /// ID), so each handler sees whole sessions. On the engine's thread, between calls.
    /// </summary>
    public IHmcSessionHandler SetHandler(int hmcIndex, IHmcSessionHandler handler)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)hmcIndex, (uint)_sessions.Length, nameof(hmcIndex));
        var previous = _sessions[hmcIndex].SetHandler(handler);
        EndCall(0);
        return previous;
    }

    /// <summary>
    /// Runs host-side work (a control-plane request: an attached HMC sending, say) as one call into
    /// the engine: what it sends reaches the front-end when it returns. On the engine's thread.
    /// </summary>
    public void HostCall(Action work)
    {
        work();
        EndCall(0);
    }

    /// <summary>Asks the partition to give back one free buffer of an HMC for good (REM_BUF).
    /// False when not ready, no such index, or it could take the partition's last buffer.</summary>
    public bool RequestRemoveBuffer(int hmcIndex)
    {
        if (_output.Failed || !_handshake.IsReady || (uint)hmcIndex >= (uint)HmcCount) return false;
        bool sent = _sessions[hmcIndex].RequestRemoveBuffer();
        EndCall(0);
        return sent;
    }

    // ---------------------------------------------------------------- fault actions

    /// <summary>
    /// vmcctl inject: adds <paramref name="rule"/> for this engine alone (call on the engine's
    /// thread, between calls). A fault that acts at once (<c>when=now</c>) acts before this returns;
    /// the result is what it did (empty for a fault that waits for its point or trigger).
    /// </summary>
    public IReadOnlyList<FaultFiring> InjectFault(FaultRule rule)
    {
        var faults = _faultSlot.Current ??= new EngineFaults(null, _window, Time, _log) { Mtu = Mtu };
        var plan = faults.Inject(rule);
        int before = plan.History.Count;
        if (!_output.Failed) EndCall(0);
        return [.. plan.History.Skip(before)];
    }

    /// <summary>What the flood fault sends: a SIGNAL for session 0xFF on HMC index 0xFF, which the
    /// driver's session check drops without a word (trap 10), so a flood does not flood its log.</summary>
    private static readonly byte[] FloodEntry = [(byte)CrqValid.Payload, (byte)VmcMessageType.Signal, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0];

    /// <summary>The fault plan's actions whose time has come (only with a plan).</summary>
    private void RunFaultActions()
    {
        while (!_output.Failed && Faults!.TakeDueAction() is { } rule)
        {
            switch (rule.Kind)
            {
                case FaultKind.TransportEvent:
                    // Only the front-end writes transport events (vmc-user v2): the back-end's way to make it
                    // deliver one is to be lost. The front-end then reconnects and the new engine sends init.
                    Faults.Fired(rule, "CHANNEL_FAILED sent: the front-end writes a transport event (0xFF 0x02) and reconnects");
                    _output.Fail(ChannelFailure.InternalError, $"fault injection: {rule.Text}", injected: true);
                    break;
                case FaultKind.RemoveBuffer when !_handshake.IsReady || rule.Hmc >= HmcCount:
                    Faults.Fired(rule, $"nothing sent: HMC index {rule.Hmc} is not negotiated (state {State})");
                    break;
                case FaultKind.RemoveBuffer:
                    int sent = 0;
                    while (sent < rule.Buffers && _sessions[rule.Hmc].RequestRemoveBuffer(rule.Last)) sent++;
                    Faults.Fired(rule, $"{sent} REM_BUF sent on HMC {rule.Hmc} ({(rule.Last ? "the last buffer may go" : "never the last buffer")})");
                    break;
                case FaultKind.Flood:
                    Faults.Fired(rule, $"{rule.Entries} SIGNALs for session 0xFF on HMC index 0xFF (dropped unseen by the driver) posted at once");
                    for (int i = 0; i < rule.Entries && !_output.Failed; i++) _output.Post(FloodEntry);
                    break;
            }
        }
    }

    // ---------------------------------------------------------------- handshake

    private void HandleInit(CrqInitType type)
    {
        switch (type)
        {
            case CrqInitType.Init:
                ResetChannel("guest sent init");
                _handshake.GuestInit();
                _send.InitResponse();
                _log.Information("CRQ init from guest answered");
                break;
            case CrqInitType.InitResponse:
                if (_handshake.GuestInitResponse()) _log.Information("guest answered our CRQ init");
                else Drop("init response in state {State}", _handshake.State);
                break;
            default:
                Drop("init entry of type {Type:X2}", (byte)type);
                break;
        }
    }

    private void HandleCapabilities(ReadOnlySpan<byte> raw)
    {
        var c = CapabilitiesEntry.Read(raw);
        var state = _handshake.State;
        switch (_handshake.Capabilities(c, Limits))
        {
            case CapabilitiesOutcome.Dropped:
                Drop("capabilities in state {State}", state);
                return;
            case CapabilitiesOutcome.InvalidVersion:
                _send.CapabilitiesResponse(CapabilitiesStatus.InvalidVersion, Limits, _queueEntries);
                _log.Error("guest speaks VMC protocol version {Version:X4}, we speak {Ours:X4}: adapter failed until the guest starts over",
                    c.Version, CapabilitiesEntry.ProtocolVersion);
                return;
            case CapabilitiesOutcome.Unusable:
                _send.CapabilitiesResponse(CapabilitiesStatus.GeneralFailure, Limits, _queueEntries);
                _log.Error("guest offered unusable capabilities (MTU {Mtu}, pool {Pool}, HMCs {Hmcs}): adapter failed until the guest starts over",
                    c.MaxMtu, c.PoolSize, c.MaxHmcs);
                return;
        }
        if (Faults != null) Faults.Mtu = Mtu;
        _send.CapabilitiesResponse(CapabilitiesStatus.Success, Limits, _queueEntries);
        for (int i = 0; i < HmcCount; i++) _sessions[i].Negotiated(PoolSize, Mtu);
        _log.Information("capabilities negotiated: MTU {Mtu}, pool {Pool}, HMCs {Hmcs}", Mtu, PoolSize, HmcCount);
        Faults?.Trigger(FaultTrigger.Ready);
    }

    // ---------------------------------------------------------------- messages

    private void HandleMessage(ReadOnlySpan<byte> raw)
    {
        var e = CrqEntry.Read(raw);
        if (e.MessageType == VmcMessageType.Capabilities) { HandleCapabilities(raw); return; }
        if (!_handshake.IsReady) { Drop("message type {Type:X2} in state {State}", e.Type, _handshake.State); return; }
        if (e.HmcIndex >= HmcCount)
        {
            switch (e.MessageType)
            {
                case VmcMessageType.Open: _send.OpenResponse(VmcStatus.InvalidHmcIndex, e.Session, e.HmcIndex, e.BufferId); break;
                case VmcMessageType.Close: _send.CloseResponse(VmcStatus.InvalidHmcIndex, e.Session, e.HmcIndex); break;
                default: Drop("message type {Type:X2} for HMC index {Index}", e.Type, e.HmcIndex); break;
            }
            return;
        }
        var session = _sessions[e.HmcIndex];
        switch (e.MessageType)
        {
            case VmcMessageType.Open: session.Open(e); break;
            case VmcMessageType.Close: session.Close(e); break;
            case VmcMessageType.Signal: session.Signal(e); break;
            case VmcMessageType.AddBufferResponse: session.AddBufferResponse(e); break;
            case VmcMessageType.RemoveBufferResponse: session.RemoveBufferResponse(e); break;
            default: Drop("message type {Type:X2} the partition does not send", e.Type); break;
        }
    }

    // ---------------------------------------------------------------- channel

    private void DropQueue(string why)
    {
        Faults?.PartnerGone();
        ResetChannel(why);
        _output.DiscardBacklog();
        _handshake.QueueGone();
        _queueEntries = 0;
    }

    private void ResetChannel(string why)
    {
        if (_handshake.IsReady) _log.Information("VMC channel reset: {Why}", why);
        foreach (var s in _sessions) s.ChannelReset(why);
    }

    private HcallReturn EndCall(HcallReturn rc)
    {
        if (Faults != null) RunFaultActions();
        _output.Flush();
        return rc;
    }

    /// <summary>Counts and (at Debug) logs an entry dropped the way the real hypervisor would drop it.
    /// Per entry, so never above Debug: a hostile guest must not be able to flood the log.</summary>
    private void Drop(string what)
    {
        Counters.Dropped++;
        if (_log.IsEnabled(LogEventLevel.Debug)) _log.Debug("dropped: " + what);
    }

    private void Drop<TA>(string what, TA a)
    {
        Counters.Dropped++;
        if (_log.IsEnabled(LogEventLevel.Debug)) _log.Debug("dropped: " + what, a);
    }

    private void Drop<TA, TB>(string what, TA a, TB b)
    {
        Counters.Dropped++;
        if (_log.IsEnabled(LogEventLevel.Debug)) _log.Debug("dropped: " + what, a, b);
    }

    /// <summary>Checks the engine's accounting. Null when consistent, else what is wrong.</summary>
    public string? CheckConsistency()
    {
        for (int i = 0; i < _sessions.Length; i++)
        {
            if (_sessions[i].Check() is { } problem) return problem;
            if (i >= HmcCount && (_pools[i].Size != 0 || _sessions[i].IsOpen)) return $"HMC {i} live outside the negotiated count";
        }
        if (!_handshake.IsReady && Array.Exists(_sessions, s => s.IsOpen)) return $"HMC open in state {State}";
        if (_output.BacklogCount > Limits.OutputBacklog) return "backlog over capacity";
        return null;
    }
}
