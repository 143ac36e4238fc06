using Serilog;
using Serilog.Events;
using VmcBackend.Engine.Buffers;
using VmcBackend.Engine.Faults;
using VmcBackend.Engine.Observe;
using VmcBackend.Engine.Output;
using VmcBackend.Wire.Crq;

namespace VmcBackend.Engine.Sessions;

/// <summary>A read-only view of one HMC index (for statistics, the control plane and tests).</summary>
public readonly record struct HmcSessionInfo(
    bool IsOpen, byte Session, string HmcId, int OutboundQueued, int PartitionBuffers, int HypervisorBuffers, int DeliveredBuffers);

/// <summary>
/// One HMC index: its session lifecycle (closed -> open on OPEN -> closed on CLOSE, reopen or a
/// channel reset), the messages exchanged on it, and the flow of its buffers, which it drives
/// through its <see cref="BufferPool"/>.
/// <para>
/// <b>Hypervisor-owned buffers, and how many the hypervisor keeps.</b> The driver's write() takes
/// only free partition-owned buffers (ibmvmc_get_valid_hmc_buffer); it accepts a SIGNAL on any
/// buffer it does not own (ibmvmc_recv_msg), which is every buffer it wrote on and every buffer
/// added with owner HV. The hypervisor keeps <b>none</b> back: at OPEN every buffer is added
/// partition-owned, so a guest never gets EBUSY from write() because of a reservation. A message
/// (a reply, or one a host-side handler sends unprompted) goes out on a buffer the partition wrote
/// on; when there is none, or the pool-1 unread bound stops it, the hypervisor asks for one free
/// buffer back with REM_BUF (only while the partition holds at least two: never its last) and
/// re-adds it hypervisor-owned for that message; the SIGNAL returns it to the partition. If the
/// REM_BUF proved enough by itself (the buffer given back was a delivered one, so it was read), the
/// buffer is re-added partition-owned instead. So the guest's write() pool shrinks only by
/// messages on their way to it, and a client blocked in read() still gets unsolicited messages.
/// After NO_BUFFER it asks again after <see cref="ReclaimRetry"/>.
/// </para>
/// </summary>
internal sealed class HmcSession : IHmcSessionOutput
{
    /// <summary>How long to wait before asking again after the partition had no free buffer.</summary>
    public static readonly TimeSpan ReclaimRetry = TimeSpan.FromMilliseconds(50);

    private readonly int _index;
    private readonly BufferPool _pool;
    private readonly RemoteWindow _window;
    private readonly HypervisorMessages _send;
    private readonly EngineCounters _counters;
    private readonly ILogger _log;
    private readonly TimeProvider _time;
    private readonly FaultSlot _faults;
    private readonly ObserverSlot _observer;
    private IHmcSessionHandler _handler;
    private readonly byte[] _hmcId = new byte[VmcConstants.HmcIdLength];
    private readonly byte[] _inbound;
    private readonly byte[]?[] _outbound;      // ring of waiting messages; a slot's array is made the first time a message waits in it
    private readonly int[] _outboundLength;
    private readonly int _slotSize;
    private int _outHead, _outCount;
    private long _reclaimNotBefore;

    public HmcSession(int index, VmcLimits limits, BufferPool pool, RemoteWindow window, HypervisorMessages send,
        EngineCounters counters, ILogger log, TimeProvider time, IHmcSessionHandler handler, ObserverSlot observer, FaultSlot faults)
    {
        _observer = observer;
        _faults = faults;
        _index = index;
        _pool = pool;
        _window = window;
        _send = send;
        _counters = counters;
        _log = log;
        _time = time;
        _handler = handler;
        _slotSize = limits.MaxMtu;
        OutboundCapacity = limits.PoolSize;
        _inbound = new byte[limits.MaxMtu];
        _outbound = new byte[limits.PoolSize][];
        _outboundLength = new int[limits.PoolSize];
    }

    public bool IsOpen { get; private set; }
    public byte SessionId { get; private set; }
    public int Mtu => _pool.Mtu;
    public int OutboundCount => _outCount;
    public int OutboundCapacity { get; }

    /// <summary>Messages wait and a timed retry (REM_BUF after NO_BUFFER) may move them.</summary>
    public bool NeedsPoll => _outCount > 0 && !_pool.HasPendingRemoval && !_pool.HasHypervisorBufferComing;

    public HmcSessionInfo Info() => new(IsOpen, SessionId, FormatHmcId(_hmcId), _outCount,
        _pool.Count(BufferState.Partition), _pool.Count(BufferState.Hypervisor), _pool.DeliveredCount);

    /// <summary>Replaces the handler; an open session is closed for the old one and opened for the new one.</summary>
    public IHmcSessionHandler SetHandler(IHmcSessionHandler handler)
    {
        var previous = _handler;
        if (ReferenceEquals(previous, handler)) return previous;
        _handler = handler;
        if (IsOpen)
        {
            previous.Closed();
            handler.Opened(this, _hmcId);
        }
        return previous;
    }

    // ----------------------------------------------------------------- channel events

    /// <summary>Capabilities negotiated: a fresh pool, and one buffer so that SETHMCID can OPEN.</summary>
    public void Negotiated(int poolSize, int mtu)
    {
        _pool.Reset(poolSize, mtu);
        AddBuffer(0, BufferOwner.Partition, 0);
    }

    /// <summary>The channel was reset (init, queue registered or freed, device reset): the driver forgot everything.</summary>
    public void ChannelReset(string why)
    {
        End(why);
        _pool.Reset(0, 0);
    }

    // ----------------------------------------------------------------- partition -> hypervisor

    public void Open(in CrqEntry e)
    {
        if (IsOpen) End("reopened");
        if (!_pool.IsPartitionOwned(e.BufferId))
        {
            Refuse(e, VmcStatus.InvalidBufferId);
            _log.Warning("HMC {Index}: OPEN named buffer {Id} the partition does not hold; refused", _index, e.BufferId);
            return;
        }
        if (_faults.Current?.OpenRefusal(_index) is { } status)
        {
            Refuse(e, status);
            return;
        }
        _window.Buffer(_index, e.BufferId)[..VmcConstants.HmcIdLength].CopyTo(_hmcId);
        // PowerVM's order (ibmvmc.c, ibmvmc_send_open): the new buffers first, then OPEN_RESP.
        for (int id = 0; id < _pool.Size; id++)
            if (_pool.IsUnallocated(id)) AddBuffer(id, BufferOwner.Partition, e.Session);
        _send.OpenResponse(VmcStatus.Success, e.Session, e.HmcIndex, e.BufferId);
        IsOpen = true;
        SessionId = e.Session;
        _reclaimNotBefore = 0;
        _counters.SessionsOpened++;
        _log.Information("HMC {Index} opened: session {Session}, HMC ID {HmcId}", _index, e.Session, FormatHmcId(_hmcId));
        _handler.Opened(this, _hmcId);
        _faults.Current?.Trigger(FaultTrigger.Open);
    }

    /// <summary>A failed OPEN_RESP makes the driver free the HMC and all its buffers: mirror that, offer a new one.</summary>
    private void Refuse(in CrqEntry e, VmcStatus status)
    {
        _send.OpenResponse(status, e.Session, e.HmcIndex, e.BufferId);
        _pool.ForgetAll();
        AddBuffer(0, BufferOwner.Partition, 0);
    }

    public void Close(in CrqEntry e)
    {
        if (IsOpen && e.Session != SessionId) { Drop("CLOSE for session {Session} of HMC {Index}", e.Session, _index); return; }
        End("closed by the partition");
        // CLOSE_RESP success makes the driver forget every buffer of the HMC: offer one for the next OPEN.
        _send.CloseResponse(VmcStatus.Success, e.Session, e.HmcIndex);
        _pool.ForgetAll();
        AddBuffer(0, BufferOwner.Partition, 0);
        _faults.Current?.Trigger(FaultTrigger.Close);
    }

    public void Signal(in CrqEntry e)
    {
        if (!IsOpen || e.Session != SessionId) { Drop("SIGNAL on HMC {Index} session {Session} that is not open", _index, e.Session); return; }
        if (!_pool.PartitionSignalled(e.BufferId)) { Drop("SIGNAL on buffer {Id} of HMC {Index} the partition does not hold", e.BufferId, _index); return; }
        // The buffer is the hypervisor's now whatever it carries; a message the driver could not have sent is dropped.
        if (e.MessageLength > (uint)Mtu) { Drop("SIGNAL of {Length} bytes on HMC {Index} exceeds the MTU", e.MessageLength, _index); SendQueued(); return; }
        int length = (int)e.MessageLength;
        _window.Buffer(_index, e.BufferId)[..length].CopyTo(_inbound);
        _counters.MessagesIn++;
        _observer.Current?.MessageSeen(_index, MessageDirection.FromPartition, _inbound.AsSpan(0, length));
        if (_log.IsEnabled(LogEventLevel.Debug))
            _log.Debug("HMC {Index}: message of {Length} bytes in buffer {Id}", _index, length, e.BufferId);
        Flush();
        _handler.Message(this, _inbound.AsSpan(0, length));
        _faults.Current?.Trigger(FaultTrigger.Message);
    }

    public void AddBufferResponse(in CrqEntry e)
    {
        // The driver reports errors on our SIGNALs as ADD_BUF_RESP (trap 9); we never send a bad one.
        if (!_pool.AddResponse(e.BufferId, e.Status, out bool hypervisorOwned))
        {
            Drop("unexpected ADD_BUF_RESP status {Status} for HMC {Index} buffer {Id}", e.Status, _index, e.BufferId);
            return;
        }
        if (e.Status is not (VmcStatus.Success or VmcStatus.InvalidBufferId))
            _log.Warning("HMC {Index}: the partition refused buffer {Id}: status {Status}", _index, e.BufferId, e.Status);
        if (hypervisorOwned) Flush();
    }

    public void RemoveBufferResponse(in CrqEntry e)
    {
        if (!_pool.TakeRemoval(out var purpose)) { Drop("REM_BUF_RESP for HMC {Index} without a REM_BUF", _index); return; }
        if (e.Status == VmcStatus.NoBuffer)
        {
            if (purpose == RemovalPurpose.Reclaim) _reclaimNotBefore = Now() + (long)(ReclaimRetry.TotalSeconds * _time.TimestampFrequency);
            else _log.Information("HMC {Index}: the partition had no free buffer to give back", _index);
            return;
        }
        if (e.Status != VmcStatus.Success || !_pool.Removed(e.BufferId))
        {
            Drop("REM_BUF_RESP status {Status} for HMC {Index} buffer {Id}", e.Status, _index, e.BufferId);
            return;
        }
        if (purpose == RemovalPurpose.Shrink)
        {
            _counters.BuffersRemoved++;
            _log.Information("HMC {Index}: the partition gave back buffer {Id}", _index, e.BufferId);
            return;
        }
        _counters.BuffersReclaimed++;
        SendQueued();                      // a delivered buffer given back was read: the unread bound may allow more now
        bool stillNeeded = _outCount > 0 && !_pool.HasSendableBuffer;
        AddBuffer(e.BufferId, stillNeeded ? BufferOwner.Hypervisor : BufferOwner.Partition, IsOpen ? SessionId : (byte)0);
        if (!stillNeeded) Flush();
    }

    // ----------------------------------------------------------------- hypervisor -> partition

    public bool TrySend(ReadOnlySpan<byte> message)
    {
        if (!IsOpen || _send.Failed || message.Length == 0 || message.Length > Mtu)
        {
            _log.Warning("HMC {Index}: message of {Length} bytes not sent (session closed, channel failed, empty or larger than MTU {Mtu})", _index, message.Length, Mtu);
            return false;
        }
        if (_outCount == 0 && TrySignal(message)) return true;
        if (_outCount == OutboundCapacity)
        {
            _counters.OutboundRefused++;
            _log.Warning("HMC {Index}: outbound queue full ({Capacity} messages); message refused", _index, OutboundCapacity);
            return false;
        }
        int slot = (_outHead + _outCount) % OutboundCapacity;
        message.CopyTo(_outbound[slot] ??= new byte[_slotSize]);
        _outboundLength[slot] = message.Length;
        _outCount++;
        Flush();
        return true;
    }

    /// <summary>Timed retry of a REM_BUF that found no free buffer.</summary>
    public void Poll()
    {
        if (NeedsPoll) Flush();
    }

    /// <summary>Only an explicit request (operator, test, fault injection): REM_BUF one buffer for good.
    /// <paramref name="allowLast"/> (fault injection only) may take the partition's last buffer.</summary>
    public bool RequestRemoveBuffer(bool allowLast = false)
    {
        if (!_pool.TryRequestRemoval(RemovalPurpose.Shrink, allowLast)) return false;
        _send.RemoveBuffer(IsOpen ? SessionId : (byte)0, _index);
        return true;
    }

    /// <summary>Sends what waits; if something still waits, asks the partition for a buffer.</summary>
    private void Flush()
    {
        SendQueued();
        if (_outCount == 0 || _pool.HasPendingRemoval || _pool.HasHypervisorBufferComing) return;
        if (Now() < _reclaimNotBefore) return;
        if (_pool.TryRequestRemoval(RemovalPurpose.Reclaim)) _send.RemoveBuffer(SessionId, _index);
    }

    private void SendQueued()
    {
        while (_outCount > 0 && TrySignal(_outbound[_outHead].AsSpan(0, _outboundLength[_outHead])))
        {
            _outHead = (_outHead + 1) % OutboundCapacity;
            _outCount--;
        }
    }

    private long Now()
    {
        long t = _time.GetTimestamp();
        _observer.Current?.TimeRead(t);
        return t;
    }

    private bool TrySignal(ReadOnlySpan<byte> message)
    {
        int id = _pool.TakeForSignal();
        if (id < 0) return false;
        message.CopyTo(_window.Buffer(_index, id));
        _observer.Current?.MessageSeen(_index, MessageDirection.ToPartition, message);
        _send.Signal(SessionId, _index, id, message.Length);
        _counters.MessagesOut++;
        return true;
    }

    private void AddBuffer(int id, BufferOwner owner, byte session)
    {
        _pool.Added(id, owner);
        _send.AddBuffer(session, _index, id, _window.IobaOf(_index, id), owner);
    }

    private void End(string why)
    {
        int lost = _outCount;
        _outHead = _outCount = 0;
        if (!IsOpen) return;
        IsOpen = false;
        _counters.SessionsClosed++;
        _handler.Closed();
        if (lost > 0)
        {
            _counters.OutboundDiscarded += lost;
            _log.Warning("HMC {Index} session {Session} {Why}: {Lost} undelivered messages discarded", _index, SessionId, why, lost);
        }
        else _log.Information("HMC {Index} session {Session} {Why}", _index, SessionId, why);
    }

    /// <summary>Counts and (at Debug) logs an entry dropped the way the real hypervisor would drop it.
    /// Per entry, so never above Debug: a hostile guest must not be able to flood the log.</summary>
    private void Drop<TA>(string what, TA a)
    {
        _counters.Dropped++;
        if (_log.IsEnabled(LogEventLevel.Debug)) _log.Debug("dropped: " + what, a);
    }

    private void Drop<TA, TB>(string what, TA a, TB b)
    {
        _counters.Dropped++;
        if (_log.IsEnabled(LogEventLevel.Debug)) _log.Debug("dropped: " + what, a, b);
    }

    private void Drop<TA, TB, TC>(string what, TA a, TB b, TC c)
    {
        _counters.Dropped++;
        if (_log.IsEnabled(LogEventLevel.Debug)) _log.Debug("dropped: " + what, a, b, c);
    }

    private static string FormatHmcId(ReadOnlySpan<byte> id)
    {
        int n = id.IndexOf((byte)0);
        var text = n < 0 ? id : id[..n];
        foreach (var ch in text) if (ch < 0x20 || ch > 0x7E) return Convert.ToHexString(id);
        return System.Text.Encoding.ASCII.GetString(text);
    }

    /// <summary>Null when consistent, else what is wrong.</summary>
    public string? Check()
    {
        if (_pool.Check() is { } p) return $"HMC {_index}: {p}";
        if (!IsOpen && _outCount > 0) return $"HMC {_index} closed with queued messages";
        return null;
    }
}
