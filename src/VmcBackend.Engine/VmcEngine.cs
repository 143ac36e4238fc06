using Serilog;
using Serilog.Events;
using VmcBackend.Engine.Buffers;
using VmcBackend.Engine.Crq;
using VmcBackend.Engine.Memory;
using VmcBackend.Engine.Rdma;
using VmcBackend.Engine.Router;
using VmcBackend.Engine.Sessions;
using VmcBackend.Wire.Crq;
using VmcBackend.Wire.Hcall;

namespace VmcBackend.Engine;

/// <summary>Direction of an H_COPY_RDMA as seen from the guest.</summary>
public enum RdmaDirection : uint
{
    /// <summary>Guest memory (local) into a hypervisor-side buffer (remote).</summary>
    LocalToRemote = 0,
    /// <summary>Hypervisor-side buffer (remote) into guest memory (local).</summary>
    RemoteToLocal = 1,
}

/// <summary>Where the VMC handshake of one adapter stands.</summary>
public enum AdapterState
{
    /// <summary>No guest queue registered.</summary>
    NoQueue,
    /// <summary>Queue registered; waiting for the guest's init (0xC0 01).</summary>
    WaitInit,
    /// <summary>The engine sent its init; waiting for the guest's init response (0xC0 02).</summary>
    WaitInitResponse,
    /// <summary>Init exchanged; waiting for the guest's capabilities.</summary>
    WaitCapabilities,
    /// <summary>Capabilities negotiated: buffers and sessions are live.</summary>
    Ready,
    /// <summary>Version mismatch, unusable capabilities or a broken queue; the guest must reset.</summary>
    Failed,
}

/// <summary>
/// The hypervisor's half of one VMC adapter (one guest). Pure protocol and state: no sockets, no
/// threads. Not thread-safe: the owner serialises every call. Guest input never throws: each bad
/// value gets an hcall rc, a VMC status, or a logged drop.
/// </summary>
public sealed class VmcEngine
{
    private readonly ILogger _log;
    private readonly IGuestNotifier _notifier;
    private readonly CrqWriter _crq;
    private readonly RemoteWindow _window;
    private readonly RdmaService _rdma;
    private readonly HmcConnection[] _hmcs;
    private readonly SessionOutput[] _outputs;
    private readonly byte[] _scratch;
    private bool _queueFault;

    public VmcEngine(VmcLimits limits, IGuestMemory memory, IGuestNotifier notifier, ILogger? log = null,
        Func<int, IHmcSessionHandler>? handlerFactory = null)
    {
        limits.Validate();
        Limits = limits;
        _log = log ?? Serilog.Core.Logger.None;
        _notifier = notifier;
        _crq = new CrqWriter(memory, notifier, limits.CrqBacklog);
        _window = new RemoteWindow(limits.MaxHmcs, limits.PoolSize, limits.MaxMtu);
        _rdma = new RdmaService(memory, _window);
        _scratch = new byte[limits.MaxMtu];
        handlerFactory ??= _ => new HmcCommandRouter(limits.MaxMtu, _log);
        _hmcs = new HmcConnection[limits.MaxHmcs];
        _outputs = new SessionOutput[limits.MaxHmcs];
        for (int i = 0; i < limits.MaxHmcs; i++)
        {
            _hmcs[i] = new HmcConnection(i, limits.PoolSize, limits.MaxMtu, handlerFactory(i));
            _outputs[i] = new SessionOutput(this, _hmcs[i]);
        }
    }

    public VmcLimits Limits { get; }
    public AdapterState State { get; private set; }
    public EngineCounters Counters { get; } = new();

    /// <summary>Negotiated values (0 until capabilities are exchanged).</summary>
    public int Mtu { get; private set; }
    public int PoolSize { get; private set; }
    public int HmcCount { get; private set; }

    /// <summary>Size in bytes of the remote DMA window (the hypervisor-side buffers).</summary>
    public ulong RemoteWindowSize => _window.Size;

    /// <summary>Next CRQ slot the engine writes.</summary>
    public uint QueueTail => _crq.Tail;

    /// <summary>Entries waiting because the guest queue is full.</summary>
    public int BacklogCount => _crq.BacklogCount;

    /// <summary>The HMC connection at <paramref name="index"/> (for inspection and tests).</summary>
    public HmcConnection Hmc(int index) => _hmcs[index];

    /// <summary>Remote IOBA of buffer (index, id) in the remote window.</summary>
    public uint BufferIoba(int hmcIndex, int bufferId) => _window.IobaOf(hmcIndex, bufferId);

    // ---------------------------------------------------------------- hypercalls

    /// <summary>H_REG_CRQ: the guest queue as guest-physical segments. Returns an hcall rc.
    /// <paramref name="reconnect"/>: the guest registered it before; start the handshake with an init.</summary>
    public long RegisterQueue(ReadOnlySpan<GuestSegment> segments, uint entries, uint tail, bool reconnect)
    {
        ResetChannel("queue registered");
        if (!_crq.Register(segments, entries, tail))
        {
            _log.Warning("guest CRQ rejected: {Entries} entries, tail {Tail}, {Segments} segments do not describe a queue", entries, tail, segments.Length);
            _crq.Unregister();
            State = AdapterState.NoQueue;
            return HcallReturn.Parameter;
        }
        _queueFault = false;
        State = AdapterState.WaitInit;
        if (reconnect)
        {
            Post(CrqEntry.InitEntry(CrqInitType.Init));
            State = AdapterState.WaitInitResponse;
        }
        _log.Information("guest CRQ registered: {Entries} entries{Reconnect}", entries, reconnect ? ", sent init (reconnect)" : "");
        return EndCall(HcallReturn.Success);
    }

    /// <summary>H_FREE_CRQ: forget the queue and reset VMC state. Returns an hcall rc.</summary>
    public long FreeQueue()
    {
        if (_crq.IsRegistered) _log.Information("guest CRQ freed");
        ResetChannel("queue freed");
        _crq.Unregister();
        State = AdapterState.NoQueue;
        return HcallReturn.Success;
    }

    /// <summary>Device reset: drop queue, sessions and buffers.</summary>
    public void Reset() => FreeQueue();

    /// <summary>Retry entries held back while the guest queue was full. Cheap when there are none.</summary>
    public void Pump()
    {
        if (_crq.BacklogCount == 0) return;
        if (!_crq.Drain()) _queueFault = true;
        EndCall(0);
    }

    /// <summary>H_REQUEST_VMC.</summary>
    public long RequestVmc(out uint drcIndex)
    {
        drcIndex = Limits.DrcIndex;
        return HcallReturn.Success;
    }

    /// <summary>H_COPY_RDMA between the remote window and guest memory. Returns an hcall rc.</summary>
    public long CopyRdma(RdmaDirection direction, ulong remoteIoba, ulong length, ReadOnlySpan<GuestSegment> local)
    {
        if (State != AdapterState.Ready) return HcallReturn.RemoteParm;
        long rc = _rdma.Copy(direction, remoteIoba, length, local, this);
        if (rc == HcallReturn.Success) { Counters.RdmaCopies++; Counters.RdmaBytes += (long)length; }
        else
        {
            Counters.RdmaFailures++;
            if (_log.IsEnabled(LogEventLevel.Debug))
                _log.Debug("H_COPY_RDMA {Direction} remote {Ioba:X} length {Length} failed: rc {Rc}", direction, remoteIoba, length, rc);
        }
        return rc;
    }

    /// <summary>True when the partition may RDMA the buffer (index, id) over [offset, offset+length).</summary>
    internal bool RdmaAllowed(int hmcIndex, int bufferId, int offset, ulong length)
        => hmcIndex < HmcCount && bufferId < PoolSize
           && (ulong)offset + length <= (ulong)Mtu
           && _hmcs[hmcIndex].Buffers[bufferId].State == BufferState.Partition;

    /// <summary>H_SEND_CRQ: one 16-byte entry from the guest. Returns the hcall rc the guest sees.</summary>
    public long SendCrq(ReadOnlySpan<byte> entry)
    {
        if (entry.Length != CrqEntry.Size) return HcallReturn.Parameter;
        if (!_crq.IsRegistered) return HcallReturn.Closed;
        Counters.EntriesReceived++;
        if (_crq.BacklogCount > 0 && !_crq.Drain()) _queueFault = true;
        long rc = HcallReturn.Success;
        switch (entry[0])
        {
            case CrqValid.Init: rc = HandleInit(entry[1]); break;
            case CrqValid.Payload: HandleMessage(entry); break;
            default:
                Counters.Dropped++;
                rc = HcallReturn.Parameter;
                break;
        }
        return EndCall(rc);
    }

    // ---------------------------------------------------------------- handshake

    private long HandleInit(byte type)
    {
        switch (type)
        {
            case CrqInitType.Init:
                ResetChannel("guest sent init");
                Post(CrqEntry.InitEntry(CrqInitType.InitResponse));
                State = AdapterState.WaitCapabilities;
                _log.Information("CRQ init from guest answered");
                return HcallReturn.Success;
            case CrqInitType.InitResponse:
                if (State == AdapterState.WaitInitResponse)
                {
                    State = AdapterState.WaitCapabilities;
                    _log.Information("guest answered our CRQ init");
                }
                else Drop("init response in state {State}", State);
                return HcallReturn.Success;
            default:
                Counters.Dropped++;
                return HcallReturn.Parameter;
        }
    }

    private void HandleMessage(ReadOnlySpan<byte> raw)
    {
        var e = CrqEntry.Read(raw);
        if (e.MessageType == VmcMessageType.Capabilities) { HandleCapabilities(CapabilitiesEntry.Read(raw)); return; }
        if (State != AdapterState.Ready) { Drop("message type {Type:X2} before capabilities (state {State})", e.Type, State); return; }
        switch (e.MessageType)
        {
            case VmcMessageType.Open: HandleOpen(e); break;
            case VmcMessageType.Close: HandleClose(e); break;
            case VmcMessageType.Signal: HandleSignal(e); break;
            case VmcMessageType.AddBufferResponse: HandleAddBufferResponse(e); break;
            case VmcMessageType.RemoveBufferResponse: HandleRemoveBufferResponse(e); break;
            default: Drop("unexpected message type {Type:X2} from the guest", e.Type, State); break;
        }
    }

    private void HandleCapabilities(CapabilitiesEntry c)
    {
        if (State == AdapterState.Ready) ResetChannel("capabilities renegotiated");
        var ours = new CapabilitiesEntry(VmcMessageType.CapabilitiesResponse, VmcStatus.Success, (byte)Limits.MaxHmcs,
            (ushort)Limits.PoolSize, (uint)Limits.MaxMtu, (ushort)Math.Min(_crq.Entries, ushort.MaxValue), CapabilitiesEntry.ProtocolVersion);
        if (c.MajorVersion != CapabilitiesEntry.ProtocolVersion >> 8)
        {
            PostCapabilities(ours with { Status = VmcStatus.InterfaceFailure });
            State = AdapterState.Failed;
            _log.Error("guest speaks VMC protocol version {Version:X4}, we speak {Ours:X4}: adapter failed", c.Version, CapabilitiesEntry.ProtocolVersion);
            return;
        }
        PostCapabilities(ours);
        Mtu = (int)Math.Min(c.MaxMtu, (uint)Limits.MaxMtu);
        PoolSize = Math.Min(c.PoolSize, Limits.PoolSize);
        HmcCount = Math.Min(c.MaxHmcs, Limits.MaxHmcs);
        if (Mtu < Wire.Router.RouterHeader.Size || PoolSize < 2 || HmcCount < 1)
        {
            State = AdapterState.Failed;
            _log.Error("guest offered unusable capabilities (MTU {Mtu}, pool {Pool}, HMCs {Hmcs}): adapter failed", c.MaxMtu, c.PoolSize, c.MaxHmcs);
            Mtu = PoolSize = HmcCount = 0;
            return;
        }
        State = AdapterState.Ready;
        _log.Information("capabilities negotiated: MTU {Mtu}, pool {Pool}, HMCs {Hmcs}", Mtu, PoolSize, HmcCount);
        for (int i = 0; i < HmcCount; i++) AddBuffer(_hmcs[i], 0, 0);
    }

    private void PostCapabilities(in CapabilitiesEntry c)
    {
        Span<byte> e = stackalloc byte[CrqEntry.Size];
        c.Write(e);
        PostRaw(e);
    }

    // ---------------------------------------------------------------- buffers

    private void AddBuffer(HmcConnection hmc, int id, byte session)
    {
        ref var slot = ref hmc.Buffers[id];
        slot.State = BufferState.Partition;
        slot.AddPending = true;
        slot.Delivered = false;
        Post(CrqEntry.Message(VmcMessageType.AddBuffer, VmcStatus.Success, session, (byte)hmc.Index, (ushort)id,
            _window.IobaOf(hmc.Index, id), BufferOwner.Partition));
    }

    private void HandleAddBufferResponse(in CrqEntry e)
    {
        if (e.HmcIndex >= HmcCount || e.BufferId >= PoolSize) { Drop("ADD_BUF_RESP for index {Index} buffer {Id}", e.HmcIndex, e.BufferId); return; }
        ref var slot = ref _hmcs[e.HmcIndex].Buffers[e.BufferId];
        if (!slot.AddPending)
        {
            // The driver reports errors on our SIGNALs as ADD_BUF_RESP; we never send a bad one.
            Drop("unexpected ADD_BUF_RESP status {Status} for index {Index} buffer {Id}", e.Status, e.HmcIndex, e.BufferId);
            return;
        }
        slot.AddPending = false;
        switch ((VmcStatus)e.Status)
        {
            case VmcStatus.Success: break;
            case VmcStatus.InvalidBufferId:
                // The guest still holds this id (buffers of never-opened HMCs survive its reset): it is the partition's.
                break;
            default:
                slot.State = BufferState.Unallocated;
                _log.Warning("guest refused buffer {Id} of HMC {Index}: status {Status}", e.BufferId, e.HmcIndex, e.Status);
                break;
        }
    }

    /// <summary>Asks the partition to give back one free buffer of an HMC (REM_BUF). False if not ready.</summary>
    public bool RequestRemoveBuffer(int hmcIndex)
    {
        if (State != AdapterState.Ready || (uint)hmcIndex >= (uint)HmcCount) return false;
        var hmc = _hmcs[hmcIndex];
        Post(CrqEntry.Message(VmcMessageType.RemoveBuffer, VmcStatus.Success, hmc.IsOpen ? hmc.Session : (byte)0,
            (byte)hmcIndex, CrqEntry.InvalidBufferId));
        EndCall(0);
        return true;
    }

    private void HandleRemoveBufferResponse(in CrqEntry e)
    {
        if (e.HmcIndex >= HmcCount) { Drop("REM_BUF_RESP for index {Index} buffer {Id}", e.HmcIndex, e.BufferId); return; }
        if (e.Status == (byte)VmcStatus.NoBuffer) { _log.Information("HMC {Index}: partition had no free buffer to remove", e.HmcIndex); return; }
        if (e.Status != 0 || e.BufferId >= PoolSize || _hmcs[e.HmcIndex].Buffers[e.BufferId].State != BufferState.Partition)
        {
            Drop("REM_BUF_RESP status {Status} for index {Index} buffer {Id}", e.Status, e.HmcIndex, e.BufferId);
            return;
        }
        _hmcs[e.HmcIndex].Buffers[e.BufferId] = default;
        Counters.BuffersRemoved++;
        _log.Information("HMC {Index}: partition gave back buffer {Id}", e.HmcIndex, e.BufferId);
    }

    // ---------------------------------------------------------------- sessions

    private void HandleOpen(in CrqEntry e)
    {
        if (e.HmcIndex >= HmcCount)
        {
            Post(CrqEntry.Message(VmcMessageType.OpenResponse, VmcStatus.InvalidHmcIndex, e.Session, e.HmcIndex, e.BufferId));
            return;
        }
        var hmc = _hmcs[e.HmcIndex];
        if (hmc.IsOpen) EndSession(hmc, "reopened");
        if (e.BufferId >= PoolSize || hmc.Buffers[e.BufferId].State != BufferState.Partition)
        {
            // A failed OPEN_RESP makes the driver free the HMC and all its buffers: mirror that, offer a new one.
            Post(CrqEntry.Message(VmcMessageType.OpenResponse, VmcStatus.InvalidBufferId, e.Session, e.HmcIndex, e.BufferId));
            hmc.ForgetBuffers();
            AddBuffer(hmc, 0, 0);
            _log.Warning("HMC {Index}: OPEN named buffer {Id} the partition does not own; refused", e.HmcIndex, e.BufferId);
            return;
        }
        _window.Buffer(hmc.Index, e.BufferId)[..VmcConstants.HmcIdLength].CopyTo(hmc.HmcId);
        hmc.IsOpen = true;
        hmc.Session = e.Session;
        hmc.Buffers[e.BufferId].Delivered = false;
        hmc.Handler.Opened(_outputs[hmc.Index], hmc.HmcId);
        Post(CrqEntry.Message(VmcMessageType.OpenResponse, VmcStatus.Success, e.Session, e.HmcIndex, e.BufferId));
        for (int id = 0; id < PoolSize; id++)
            if (hmc.Buffers[id].State == BufferState.Unallocated) AddBuffer(hmc, id, e.Session);
        Counters.SessionsOpened++;
        _log.Information("HMC {Index} opened: session {Session}, HMC ID {HmcId}", e.HmcIndex, e.Session, FormatHmcId(hmc.HmcId));
    }

    private void HandleClose(in CrqEntry e)
    {
        if (e.HmcIndex >= HmcCount)
        {
            Post(CrqEntry.Message(VmcMessageType.CloseResponse, VmcStatus.InvalidHmcIndex, e.Session, e.HmcIndex, 0));
            return;
        }
        var hmc = _hmcs[e.HmcIndex];
        if (hmc.IsOpen && e.Session != hmc.Session) { Drop("CLOSE for session {Session} of HMC {Index}", e.Session, e.HmcIndex); return; }
        if (hmc.IsOpen) EndSession(hmc, "closed by the partition");
        // CLOSE_RESP success makes the driver forget every buffer of the HMC: offer one for the next OPEN.
        Post(CrqEntry.Message(VmcMessageType.CloseResponse, VmcStatus.Success, e.Session, e.HmcIndex, 0));
        hmc.ForgetBuffers();
        AddBuffer(hmc, 0, 0);
    }

    private void EndSession(HmcConnection hmc, string why)
    {
        hmc.IsOpen = false;
        hmc.Handler.Closed();
        int lost = hmc.ClearOutbound();
        Counters.SessionsClosed++;
        if (lost > 0)
        {
            Counters.OutboundDiscarded += lost;
            _log.Warning("HMC {Index} session {Session} {Why}: {Lost} undelivered messages discarded", hmc.Index, hmc.Session, why, lost);
        }
        else _log.Information("HMC {Index} session {Session} {Why}", hmc.Index, hmc.Session, why);
    }

    private void HandleSignal(in CrqEntry e)
    {
        if (e.HmcIndex >= HmcCount || e.BufferId >= PoolSize) { Drop("SIGNAL for index {Index} buffer {Id}", e.HmcIndex, e.BufferId); return; }
        var hmc = _hmcs[e.HmcIndex];
        ref var slot = ref hmc.Buffers[e.BufferId];
        if (!hmc.IsOpen || e.Session != hmc.Session) { Drop("SIGNAL on HMC {Index} session {Session} that is not open", e.HmcIndex, e.Session); return; }
        if (slot.State != BufferState.Partition) { Drop("SIGNAL on buffer {Id} of HMC {Index} the partition does not own", e.BufferId, e.HmcIndex); return; }
        if (e.MessageLength > (uint)Mtu) { Drop("SIGNAL of {Length} bytes on HMC {Index} exceeds the MTU", e.MessageLength, e.HmcIndex); return; }
        int length = (int)e.MessageLength;
        slot = new BufferSlot { State = BufferState.Hypervisor };
        _window.Buffer(hmc.Index, e.BufferId)[..length].CopyTo(_scratch);
        Counters.MessagesIn++;
        if (_log.IsEnabled(LogEventLevel.Debug))
            _log.Debug("HMC {Index}: message of {Length} bytes in buffer {Id}", e.HmcIndex, length, e.BufferId);
        FlushOutbound(hmc);
        hmc.Handler.Message(_outputs[hmc.Index], _scratch.AsSpan(0, length));
    }

    private bool TrySend(HmcConnection hmc, ReadOnlySpan<byte> message)
    {
        if (!hmc.IsOpen || message.Length > Mtu)
        {
            _log.Warning("HMC {Index}: message of {Length} bytes not sent (session closed or larger than MTU {Mtu})", hmc.Index, message.Length, Mtu);
            return false;
        }
        if (hmc.OutboundCount == 0 && TrySignal(hmc, message)) return true;
        if (hmc.TryEnqueue(message)) return true;
        Counters.OutboundRefused++;
        _log.Warning("HMC {Index}: outbound queue full ({Capacity} messages); message refused", hmc.Index, hmc.OutboundCapacity);
        return false;
    }

    /// <summary>Sends on a buffer the hypervisor holds, keeping unread messages below the pool size.</summary>
    private bool TrySignal(HmcConnection hmc, ReadOnlySpan<byte> message)
    {
        if (hmc.DeliveredCount(PoolSize) >= PoolSize - 1) return false;
        int id = hmc.FindHypervisorBuffer(PoolSize);
        if (id < 0) return false;
        message.CopyTo(_window.Buffer(hmc.Index, id));
        hmc.Buffers[id] = new BufferSlot { State = BufferState.Partition, Delivered = true };
        Post(CrqEntry.Message(VmcMessageType.Signal, VmcStatus.Success, hmc.Session, (byte)hmc.Index, (ushort)id, (uint)message.Length));
        Counters.MessagesOut++;
        return true;
    }

    private void FlushOutbound(HmcConnection hmc)
    {
        while (hmc.OutboundCount > 0 && TrySignal(hmc, hmc.PeekOutbound())) hmc.DequeueOutbound();
    }

    private void ResetChannel(string why)
    {
        foreach (var hmc in _hmcs)
        {
            if (hmc.IsOpen) EndSession(hmc, why);
            hmc.ClearOutbound();
            hmc.ForgetBuffers();
        }
        if (State == AdapterState.Ready) _log.Information("VMC channel reset: {Why}", why);
        Mtu = PoolSize = HmcCount = 0;
        if (State != AdapterState.NoQueue) State = AdapterState.WaitInit;
    }

    // ---------------------------------------------------------------- output

    private void Post(in CrqEntry entry)
    {
        Span<byte> e = stackalloc byte[CrqEntry.Size];
        entry.Write(e);
        PostRaw(e);
    }

    private void PostRaw(ReadOnlySpan<byte> e)
    {
        if (_queueFault) return;
        if (!_crq.Post(e)) _queueFault = true;
    }

    private long EndCall(long rc)
    {
        if (_queueFault)
        {
            _queueFault = false;
            Counters.QueueFaults++;
            _log.Error("guest CRQ unusable (slot outside guest memory or {Backlog} entries backlogged): channel failed until the guest resets it", _crq.BacklogCount);
            ResetChannel("queue fault");
            _crq.Unregister();
            State = AdapterState.NoQueue;
        }
        if (_crq.TakeWritten() > 0) _notifier.RaiseInterrupt();
        return rc;
    }

    /// <summary>Counts and (at Debug) logs an entry dropped the way the real hypervisor would drop it.
    /// Per-entry, so never above Debug: a hostile guest must not be able to flood the log.</summary>
    private void Drop(string what, object? a = null, object? b = null, object? c = null)
    {
        Counters.Dropped++;
        if (_log.IsEnabled(LogEventLevel.Debug)) _log.Debug("dropped: " + what, a, b, c);
    }

    private static string FormatHmcId(ReadOnlySpan<byte> id)
    {
        int n = id.IndexOf((byte)0);
        var text = n < 0 ? id : id[..n];
        foreach (var ch in text) if (ch < 0x20 || ch > 0x7E) return Convert.ToHexString(id);
        return System.Text.Encoding.ASCII.GetString(text);
    }

    /// <summary>Checks the buffer accounting. Returns null when consistent, else what is wrong.</summary>
    public string? CheckConsistency()
    {
        foreach (var hmc in _hmcs)
        {
            for (int id = 0; id < hmc.Buffers.Length; id++)
            {
                var s = hmc.Buffers[id];
                if ((hmc.Index >= HmcCount || id >= PoolSize) && s.State != BufferState.Unallocated)
                    return $"HMC {hmc.Index} buffer {id} is {s.State} outside the negotiated pool";
                if (s.AddPending && s.State != BufferState.Partition) return $"HMC {hmc.Index} buffer {id} add pending but {s.State}";
                if (s.Delivered && s.State != BufferState.Partition) return $"HMC {hmc.Index} buffer {id} delivered but {s.State}";
            }
            if (PoolSize > 0 && hmc.DeliveredCount(PoolSize) > PoolSize - 1) return $"HMC {hmc.Index}: unread messages reach the pool size";
            if (!hmc.IsOpen && hmc.OutboundCount > 0) return $"HMC {hmc.Index} closed with queued messages";
            if (hmc.OutboundCount > hmc.OutboundCapacity) return $"HMC {hmc.Index} outbound queue over capacity";
        }
        if (State != AdapterState.Ready && Array.Exists(_hmcs, h => h.IsOpen)) return $"HMC open in state {State}";
        if (_crq.BacklogCount > Limits.CrqBacklog) return "backlog over capacity";
        return null;
    }

    private sealed class SessionOutput(VmcEngine engine, HmcConnection hmc) : IHmcSessionOutput
    {
        public int Mtu => engine.Mtu;
        public bool TrySend(ReadOnlySpan<byte> message) => engine.TrySend(hmc, message);
    }
}

/// <summary>The engine's own limits, offered in CAP_RESP and GET_CONFIG. Defaults match the driver's.</summary>
public sealed record VmcLimits
{
    public int MaxMtu { get; init; } = 4096;      // 4096..16384
    public int PoolSize { get; init; } = 32;      // 16..64 buffers per HMC
    public int MaxHmcs { get; init; } = 1;        // 1..2
    public uint DrcIndex { get; init; } = 0x8100_0001;
    public int CrqBacklog { get; init; } = 1024;  // entries held while the guest queue is full

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> for limits outside the protocol's ranges.</summary>
    public void Validate()
    {
        if (MaxMtu is < VmcConstants.MinMtu or > VmcConstants.MaxMtu) throw new ArgumentOutOfRangeException(nameof(MaxMtu), MaxMtu, $"MTU must be {VmcConstants.MinMtu}..{VmcConstants.MaxMtu}");
        if (PoolSize is < VmcConstants.MinPool or > VmcConstants.MaxPool) throw new ArgumentOutOfRangeException(nameof(PoolSize), PoolSize, $"pool size must be {VmcConstants.MinPool}..{VmcConstants.MaxPool}");
        if (MaxHmcs is < VmcConstants.MinHmcs or > VmcConstants.MaxHmcs) throw new ArgumentOutOfRangeException(nameof(MaxHmcs), MaxHmcs, $"HMC count must be {VmcConstants.MinHmcs}..{VmcConstants.MaxHmcs}");
        if (CrqBacklog is < 16 or > 1 << 20) throw new ArgumentOutOfRangeException(nameof(CrqBacklog), CrqBacklog, "backlog must be 16..1048576");
    }
}

/// <summary>Running totals of one engine (read by vmcd's statistics and the benchmarks).</summary>
public sealed class EngineCounters
{
    public long EntriesReceived, MessagesIn, MessagesOut, Dropped, RdmaCopies, RdmaBytes, RdmaFailures;
    public long SessionsOpened, SessionsClosed, BuffersRemoved, OutboundDiscarded, OutboundRefused, QueueFaults;
}
