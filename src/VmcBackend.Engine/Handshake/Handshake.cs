using VmcBackend.Wire.Crq;
using VmcBackend.Wire.Router;

namespace VmcBackend.Engine.Handshake;

/// <summary>Where the VMC handshake of one adapter stands.</summary>
public enum AdapterState
{
    /// <summary>No guest queue registered.</summary>
    NoQueue,
    /// <summary>Queue registered; waiting for the guest's init (0xC0 01).</summary>
    WaitInit,
    /// <summary>The engine sent its init; waiting for the guest's init response (0xC0 02) or init.</summary>
    WaitInitResponse,
    /// <summary>Init exchanged; waiting for the guest's capabilities (the only state that takes them).</summary>
    WaitCapabilities,
    /// <summary>Capabilities negotiated: buffers and sessions are live.</summary>
    Ready,
    /// <summary>Version mismatch or unusable capabilities; the guest must start over with an init.</summary>
    Failed,
}

/// <summary>What the guest's CAP leads to.</summary>
internal enum CapabilitiesOutcome
{
    /// <summary>Not in <see cref="AdapterState.WaitCapabilities"/>: dropped, no CAP_RESP.</summary>
    Dropped,
    Accepted,
    /// <summary>Major version differs: CAP_RESP status 2, adapter failed.</summary>
    InvalidVersion,
    /// <summary>Limits nothing can run on: CAP_RESP status 1, adapter failed.</summary>
    Unusable,
}

/// <summary>
/// The CRQ init and capabilities handshake of one adapter, enforced: init from the guest in any
/// registered state (the driver's probe and reset path) restarts it; an init response counts only
/// after the engine's own init; capabilities are taken only right after the init exchange. The
/// negotiated values are the minimum of both sides (what the driver computes too).
/// </summary>
internal sealed class HandshakeState
{
    public AdapterState State { get; private set; }
    public int Mtu { get; private set; }
    public int PoolSize { get; private set; }
    public int HmcCount { get; private set; }
    public bool IsRegistered => State != AdapterState.NoQueue;
    public bool IsReady => State == AdapterState.Ready;

    public void QueueRegistered(bool engineSentInit)
    {
        ClearNegotiated();
        State = engineSentInit ? AdapterState.WaitInitResponse : AdapterState.WaitInit;
    }

    public void QueueGone()
    {
        ClearNegotiated();
        State = AdapterState.NoQueue;
    }

    /// <summary>The guest sent init: answered with an init response in every registered state.</summary>
    public bool GuestInit()
    {
        if (!IsRegistered) return false;
        ClearNegotiated();
        State = AdapterState.WaitCapabilities;
        return true;
    }

    /// <summary>The guest answered the engine's init. False (dropped) in any other state.</summary>
    public bool GuestInitResponse()
    {
        if (State != AdapterState.WaitInitResponse) return false;
        State = AdapterState.WaitCapabilities;
        return true;
    }

    public CapabilitiesOutcome Capabilities(in CapabilitiesEntry guest, VmcLimits ours)
    {
        if (State != AdapterState.WaitCapabilities) return CapabilitiesOutcome.Dropped;
        if (guest.MajorVersion != CapabilitiesEntry.ProtocolVersion >> 8)
        {
            State = AdapterState.Failed;
            return CapabilitiesOutcome.InvalidVersion;
        }
        int mtu = (int)Math.Min(guest.MaxMtu, (uint)ours.MaxMtu);
        int pool = Math.Min(guest.PoolSize, ours.PoolSize);
        int hmcs = Math.Min(guest.MaxHmcs, ours.MaxHmcs);
        // A message needs a router header; the pool-1 unread bound needs two buffers; a session needs an HMC.
        if (mtu < RouterHeader.Size || pool < 2 || hmcs < 1)
        {
            State = AdapterState.Failed;
            return CapabilitiesOutcome.Unusable;
        }
        (Mtu, PoolSize, HmcCount) = (mtu, pool, hmcs);
        State = AdapterState.Ready;
        return CapabilitiesOutcome.Accepted;
    }

    private void ClearNegotiated() => Mtu = PoolSize = HmcCount = 0;
}
