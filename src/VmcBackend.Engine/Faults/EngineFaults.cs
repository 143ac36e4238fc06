using System.Buffers.Binary;
using Serilog;
using VmcBackend.Engine.Backend;
using VmcBackend.Engine.Buffers;
using VmcBackend.Engine.Memory;
using VmcBackend.Wire.Crq;
using VmcBackend.Wire.Hcall;

namespace VmcBackend.Engine.Faults;

/// <summary>What becomes of one entry the engine sends.</summary>
internal enum OutputFault { Pass, Drop, Hold }

/// <summary>Where an engine and its parts find the engine's faults: null until a plan is given or
/// a fault injected, and then every decision point pays only this null check.</summary>
internal sealed class FaultSlot
{
    public EngineFaults? Current;
}

/// <summary>
/// One engine's side of fault injection: the questions the engine asks at each of its decision
/// points, put to the vmcd's shared <see cref="FaultPlan"/> (vmcd --faults) and to the faults
/// injected into this engine alone (vmcctl inject); and the per-connection state faults leave
/// behind (actions waiting for their time, held output, a partner that is not ready yet, an
/// oversized SIGNAL whose RDMA is allowed). Every fault that acts is logged once (Information) and
/// recorded in its plan's history.
/// </summary>
internal sealed class EngineFaults(FaultPlan? shared, RemoteWindow window, TimeProvider time, ILogger log)
{
    public const byte OversizePattern = 0xA5;
    private readonly List<FaultRule> _due = [];
    private readonly List<(long At, FaultRule Rule)> _timed = [];
    private readonly List<FaultRule> _triggered = [];
    private FaultPlan? _injected;
    private (uint Ioba, uint Length)? _oversize;
    private int _seenShared = -1, _seenInjected = -1;
    private long _partnerReadyAt;

    /// <summary>Adds a fault for this engine alone; returns the plan of this engine's injected faults.</summary>
    public FaultPlan Inject(FaultRule rule)
    {
        _injected ??= new FaultPlan(time: time);
        _injected.Add(rule);
        return _injected;
    }

    private FaultRule? TakePoint(FaultKind kind, Func<FaultRule, bool>? match = null)
        => shared?.TakePoint(kind, match) ?? _injected?.TakePoint(kind, match);

    private bool PlansChanged => (shared?.Version ?? -1) != _seenShared || (_injected?.Version ?? -1) != _seenInjected;

    /// <summary>The negotiated MTU (for <c>signal-length length=mtu+N</c>).</summary>
    public int Mtu { get; set; }

    public long Now => time.GetTimestamp();

    private long After(int ms) => Now + ms * time.TimestampFrequency / 1000;

    /// <summary>Something will need the engine later: a timed action, a partner becoming ready, held output, an injected rule.</summary>
    public bool HasPendingWork => _due.Count > 0 || _timed.Count > 0 || PartnerPending || PlansChanged;

    // ------------------------------------------------------------------ actions

    public void Trigger(FaultTrigger trigger)
    {
        _triggered.Clear();
        shared?.Trigger(trigger, _triggered);
        _injected?.Trigger(trigger, _triggered);
        foreach (var r in _triggered)
        {
            if (r.AfterMs > 0) _timed.Add((After(r.AfterMs), r));
            else _due.Add(r);
        }
    }

    /// <summary>The next action whose time has come (injected ones first), or null.</summary>
    public FaultRule? TakeDueAction()
    {
        if (PlansChanged)
        {
            _seenShared = shared?.Version ?? -1;
            _seenInjected = _injected?.Version ?? -1;
            Trigger(FaultTrigger.Now);
        }
        if (_due.Count > 0)
        {
            var r = _due[0];
            _due.RemoveAt(0);
            return r;
        }
        long now = Now;
        for (int i = 0; i < _timed.Count; i++)
        {
            if (_timed[i].At > now) continue;
            var r = _timed[i].Rule;
            _timed.RemoveAt(i);
            return r;
        }
        return null;
    }

    // ------------------------------------------------------------------ output

    /// <summary>Rewrites <paramref name="e"/> for a fault aimed at it, then says whether it goes,
    /// is lost, or is held until <paramref name="holdUntil"/>.</summary>
    public OutputFault Outgoing(Span<byte> e, out long holdUntil)
    {
        holdUntil = 0;
        if (e[0] == (byte)CrqValid.Payload) Rewrite(e);
        int kind = e[0] << 8 | e[1];
        if (TakePoint(FaultKind.Drop, r => r.EntryKind == null || r.EntryKind == kind) is { } drop)
        {
            Fired(drop, $"entry {Describe(e)} not sent");
            return OutputFault.Drop;
        }
        if (TakePoint(FaultKind.Delay, r => r.EntryKind == null || r.EntryKind == kind) is { } delay)
        {
            holdUntil = After(delay.Ms);
            Fired(delay, $"entry {Describe(e)} and what follows held {delay.Ms} ms");
            return OutputFault.Hold;
        }
        return OutputFault.Pass;
    }

    private void Rewrite(Span<byte> e)
    {
        switch ((VmcMessageType)e[1])
        {
            case VmcMessageType.CapabilitiesResponse when TakePoint(FaultKind.CapabilitiesResponse) is { } r:
                var was = CapabilitiesEntry.Read(e);
                var c = was with
                {
                    Status = r.Status is { } s ? (CapabilitiesStatus)s : was.Status,
                    MaxHmcs = r.MaxHmc ?? was.MaxHmcs, PoolSize = r.Pool ?? was.PoolSize,
                    MaxMtu = r.Mtu ?? was.MaxMtu, Version = r.Version ?? was.Version,
                };
                c.Write(e);
                Fired(r, $"CAP_RESP sent with status {(byte)c.Status}, max_hmc {c.MaxHmcs}, pool {c.PoolSize}, MTU {c.MaxMtu}, version 0x{c.Version:X4} (the engine uses status {(byte)was.Status}, max_hmc {was.MaxHmcs}, pool {was.PoolSize}, MTU {was.MaxMtu}, version 0x{was.Version:X4})");
                break;
            case VmcMessageType.OpenResponse when TakePoint(FaultKind.OpenResponse, x => x.Buffer != null) is { } r:
                ushort old = BinaryPrimitives.ReadUInt16BigEndian(e[6..]);
                BinaryPrimitives.WriteUInt16BigEndian(e[6..], r.Buffer!.Value);
                Fired(r, $"OPEN_RESP names buffer {r.Buffer} instead of {old}");
                break;
            case VmcMessageType.CloseResponse when TakePoint(FaultKind.CloseResponse) is { } r:
                e[2] = r.Status!.Value;
                Fired(r, $"CLOSE_RESP sent with status {r.Status}");
                break;
            case VmcMessageType.Signal when TakePoint(FaultKind.SignalLength) is { } r:
                uint real = BinaryPrimitives.ReadUInt32BigEndian(e[12..]);
                uint claimed = (uint)Math.Clamp(r.LengthIsMtuRelative ? Mtu + r.Length : r.Length, 0, uint.MaxValue);
                BinaryPrimitives.WriteUInt32BigEndian(e[12..], claimed);
                int index = e[5], id = BinaryPrimitives.ReadUInt16BigEndian(e[6..]);
                if (r.CopyAllow) _oversize = (window.IobaOf(index, id), claimed);
                Fired(r, $"SIGNAL on HMC {index} buffer {id} claims {claimed} bytes (message of {real}, MTU {Mtu}); the guest's RDMA of it is {(r.CopyAllow ? "allowed" : "checked as usual")}");
                break;
        }
    }

    // ------------------------------------------------------------------ hcalls

    /// <summary>The guest's own H_REG_CRQ: the rule whose rc it returns instead of success, or null.</summary>
    public FaultRule? RegisterQueue()
    {
        if (TakePoint(FaultKind.RegisterQueue) is not { } r) return null;
        Fired(r, r.Rc == HcallReturn.Closed
            ? $"H_REG_CRQ returns H_CLOSED: queue registered, partner ready in {r.ReadyMs} ms"
            : $"H_REG_CRQ returns {Rc(r.Rc)}: queue not registered");
        return r;
    }

    public bool Rdma(RdmaDirection direction, ulong length, out HcallReturn rc)
    {
        rc = HcallReturn.Success;
        if (TakePoint(FaultKind.Rdma, r => r.Direction == null || r.Direction == direction) is not { } rule) return false;
        rc = rule.Rc;
        Fired(rule, $"H_COPY_RDMA {(direction == RdmaDirection.LocalToRemote ? "to the hypervisor" : "to the guest")} of {length} bytes returns {Rc(rc)}");
        return true;
    }

    public bool RequestVmc(out HcallReturn rc)
    {
        rc = HcallReturn.Success;
        if (TakePoint(FaultKind.RequestVmc) is not { } r) return false;
        rc = r.Rc;
        Fired(r, $"H_REQUEST_VMC returns {Rc(rc)}");
        return true;
    }

    /// <summary>OPEN: a status to refuse it with, or null.</summary>
    public VmcStatus? OpenRefusal(int index)
    {
        if (TakePoint(FaultKind.OpenResponse, r => r.Status != null) is not { } r) return null;
        Fired(r, $"OPEN on HMC {index} refused with status {r.Status}");
        return (VmcStatus)r.Status!.Value;
    }

    /// <summary>The guest's RDMA of an oversized SIGNAL that <c>copy=allow</c> permits: the
    /// buffer, then <see cref="OversizePattern"/> up to the claimed length. False when no permit
    /// covers this copy (the engine checks it as usual).</summary>
    public bool TryOversizeCopy(IGuestMemory memory, RdmaDirection direction, ulong remoteIoba, ulong length,
        ReadOnlySpan<GuestSegment> local, out HcallReturn rc)
    {
        rc = HcallReturn.Success;
        if (direction != RdmaDirection.RemoteToLocal || _oversize is not { } p || p.Ioba != remoteIoba || length > p.Length) return false;
        _oversize = null;
        ulong sum = 0;
        foreach (var s in local) sum += s.Length;
        if (sum != length || length > 1 << 24) { rc = HcallReturn.Parameter; return true; }
        var data = new byte[length];
        data.AsSpan().Fill(OversizePattern);
        window.TryLocate(remoteIoba, 1, out int index, out int id, out _);
        var buffer = window.Buffer(index, id);
        buffer[..Math.Min(buffer.Length, (int)length)].CopyTo(data);
        int at = 0;
        foreach (var s in local)
        {
            if (!memory.TryWrite(s.Address, data.AsSpan(at, (int)s.Length))) { rc = HcallReturn.DestParm; break; }
            at += (int)s.Length;
        }
        log.Information("fault signal-length: the guest copied {Length} bytes of a {Mtu}-byte buffer (rc {Rc})", length, buffer.Length, rc);
        return true;
    }

    // ------------------------------------------------------------------ partner not ready (reg-crq rc=closed)

    public bool PartnerPending => _partnerReadyAt != 0;

    public void PartnerNotReady(int ms) => _partnerReadyAt = Math.Max(1, After(ms));

    public void PartnerGone() => _partnerReadyAt = 0;

    /// <summary>True once, when the partner's time to become ready has come.</summary>
    public bool PartnerBecomesReady()
    {
        if (_partnerReadyAt == 0 || Now < _partnerReadyAt) return false;
        _partnerReadyAt = 0;
        return true;
    }

    // ------------------------------------------------------------------ records

    public void Fired(FaultRule rule, string detail)
    {
        rule.Owner?.Record(rule, detail);
        log.Information("fault {Rule}: {Detail}", rule.Text, detail);
    }

    private static string Rc(HcallReturn rc)
    {
        foreach (var (name, value) in FaultRule.ReturnCodes) if (value == rc) return $"{(long)rc} ({name})";
        return ((long)rc).ToString(System.Globalization.CultureInfo.InvariantCulture);
    }

    internal static string Describe(ReadOnlySpan<byte> e)
    {
        int kind = e[0] << 8 | e[1];
        foreach (var (name, value) in FaultRule.EntryTypes) if (value == kind) return name;
        return $"{e[0]:X2} {e[1]:X2}";
    }
}
