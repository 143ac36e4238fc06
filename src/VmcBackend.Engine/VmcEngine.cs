// CONTRACT STUB written by the lead to let the transport be written in parallel.
// The engine engineer replaces every body; signatures may grow but should not break.
using Serilog;
using VmcBackend.Engine.Memory;

namespace VmcBackend.Engine;

/// <summary>Direction of an H_COPY_RDMA as seen from the guest.</summary>
public enum RdmaDirection : uint
{
    /// <summary>Guest memory (local) into a hypervisor-side buffer (remote).</summary>
    LocalToRemote = 0,
    /// <summary>Hypervisor-side buffer (remote) into guest memory (local).</summary>
    RemoteToLocal = 1,
}

/// <summary>
/// The hypervisor's half of one VMC adapter (one guest). Pure protocol and state: no sockets, no
/// threads. Not thread-safe: the owner serialises every call.
/// </summary>
public sealed class VmcEngine
{
    public VmcEngine(VmcLimits limits, IGuestMemory memory, IGuestNotifier notifier, ILogger? log = null)
        => throw new NotImplementedException();

    public VmcLimits Limits => throw new NotImplementedException();

    /// <summary>Size in bytes of the remote DMA window (the hypervisor-side buffers).</summary>
    public ulong RemoteWindowSize => throw new NotImplementedException();

    /// <summary>Next CRQ slot the engine writes.</summary>
    public uint QueueTail => throw new NotImplementedException();

    /// <summary>Entries waiting because the guest queue is full.</summary>
    public int BacklogCount => throw new NotImplementedException();

    /// <summary>H_REG_CRQ: the guest queue as guest-physical segments. Returns an hcall rc.
    /// <paramref name="reconnect"/>: the guest registered it before; start the handshake with an init.</summary>
    public long RegisterQueue(ReadOnlySpan<GuestSegment> segments, uint entries, uint tail, bool reconnect)
        => throw new NotImplementedException();

    /// <summary>H_FREE_CRQ: forget the queue and reset VMC state. Returns an hcall rc.</summary>
    public long FreeQueue() => throw new NotImplementedException();

    /// <summary>H_SEND_CRQ: one 16-byte entry from the guest. Returns the hcall rc the guest sees.</summary>
    public long SendCrq(ReadOnlySpan<byte> entry) => throw new NotImplementedException();

    /// <summary>H_COPY_RDMA between the remote window and guest memory. Returns an hcall rc.</summary>
    public long CopyRdma(RdmaDirection direction, ulong remoteIoba, ulong length, ReadOnlySpan<GuestSegment> local)
        => throw new NotImplementedException();

    /// <summary>H_REQUEST_VMC.</summary>
    public long RequestVmc(out uint drcIndex) => throw new NotImplementedException();

    /// <summary>Device reset: drop queue, sessions and buffers.</summary>
    public void Reset() => throw new NotImplementedException();

    /// <summary>Retry entries held back while the guest queue was full. Cheap when there are none.</summary>
    public void Pump() => throw new NotImplementedException();
}

/// <summary>The engine's own limits, offered in CAP_RESP and GET_CONFIG. Defaults match the driver's.</summary>
public sealed record VmcLimits
{
    public int MaxMtu { get; init; } = 4096;      // 4096..16384
    public int PoolSize { get; init; } = 32;      // 16..64 buffers per HMC
    public int MaxHmcs { get; init; } = 1;        // 1..2
    public uint DrcIndex { get; init; } = 0x8100_0001;
    public int CrqBacklog { get; init; } = 1024;  // entries held while the guest queue is full
}
