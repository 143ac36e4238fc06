using VmcBackend.Engine.Memory;
using VmcBackend.Wire.Hcall;

namespace VmcBackend.Engine.Backend;

/// <summary>
/// The hypervisor side of one VMC adapter (one guest), as a front-end transport drives it: the
/// narrow seam between "how hypercalls arrive" (vmc-user socket and rings, or an in-process test
/// platform) and "what the hypervisor does with them", like rust-vmm's VhostUserBackend trait.
/// One instance per connected front-end; calls come from one thread at a time. Guest-controlled
/// input never throws: it gets an hcall rc, a VMC status or a counted drop. See docs/protocol.md.
/// </summary>
public interface IVmcBackend
{
    /// <summary>What GET_CONFIG reports.</summary>
    VmcBackendConfig Config { get; }

    /// <summary>vmc-user feature bits this back-end needs offered (GET_FEATURES); the transport adds its own.</summary>
    ulong Features { get; }

    /// <summary>H_REG_CRQ (slot request REG_CRQ): the guest registered a queue of
    /// <paramref name="entries"/> entries. <paramref name="reconnect"/>: it did so before this
    /// connection existed, so the back-end starts the handshake with an init. Entries posted
    /// before this call belonged to the previous queue.</summary>
    HcallReturn RegisterQueue(uint entries, bool reconnect);

    /// <summary>H_FREE_CRQ (slot request FREE_CRQ).</summary>
    HcallReturn FreeQueue();

    /// <summary>Device reset (socket RESET): drop queue, sessions and buffers.</summary>
    void Reset();

    /// <summary>One entry the guest sent with H_SEND_CRQ, in order, taken from the submission ring
    /// (the front-end has already answered the hcall).</summary>
    void SubmitEntry(ReadOnlySpan<byte> entry);

    /// <summary>H_COPY_RDMA between window 2 (the back-end's buffers) and guest memory; the guest
    /// side is already translated into guest-physical segments.</summary>
    HcallReturn CopyRdma(RdmaDirection direction, ulong remoteIoba, ulong length, ReadOnlySpan<GuestSegment> local);

    /// <summary>H_REQUEST_VMC; <paramref name="drcIndex"/> goes to r4.</summary>
    HcallReturn RequestVmc(out uint drcIndex);

    /// <summary>True while output waits in the back-end (the output ring was full, or a message
    /// waits for a buffer the partition has to give back).</summary>
    bool HasPendingOutput { get; }

    /// <summary>Retries pending output. The transport calls it on every wake-up and at least every
    /// 10 ms while <see cref="HasPendingOutput"/>.</summary>
    void Poll();
}

/// <summary>What the back-end sees of its front-end: guest memory, the output ring, failure.</summary>
public interface IVmcFrontEnd
{
    /// <summary>Guest RAM as mapped from the memory table (bounds-checked).</summary>
    IGuestMemory Memory { get; }

    /// <summary>Appends one 16-byte CRQ entry for the guest to the output ring; false when it is full.</summary>
    bool TryPostEntry(ReadOnlySpan<byte> entry);

    /// <summary>Entries were appended since the last call: wake the front-end (call eventfd).</summary>
    void Notify();

    /// <summary>The back-end cannot continue with this front-end (CHANNEL_FAILED): the transport
    /// reports it to the front-end and closes the connection.</summary>
    void Fail(ChannelFailure reason, string text);
}

/// <summary>Creates the back-end for one newly connected front-end.</summary>
public delegate IVmcBackend VmcBackendFactory(IVmcFrontEnd frontEnd);

/// <summary>CHANNEL_FAILED reason codes (docs/protocol.md, section 1).</summary>
public enum ChannelFailure : uint
{
    OutputBacklogOverflow = 1,
    InternalError = 2,
    ProtocolViolation = 3,
}

/// <summary>Direction of an H_COPY_RDMA as seen from the guest (slot request COPY_RDMA, a0).</summary>
public enum RdmaDirection : uint
{
    /// <summary>Guest memory (local) into a hypervisor-side buffer (remote).</summary>
    LocalToRemote = 0,
    /// <summary>Hypervisor-side buffer (remote) into guest memory (local).</summary>
    RemoteToLocal = 1,
}

/// <summary>The back-end's configuration as GET_CONFIG reports it.</summary>
public readonly record struct VmcBackendConfig(
    uint DrcIndex, int MaxMtu, int PoolSize, int MaxHmcs, int MaxRdmaSegments, ulong RemoteWindowSize);
