using VmcBackend.Engine.Backend;
using VmcBackend.Engine.Memory;
using VmcBackend.Wire.Hcall;

namespace VmcBackend.Engine.Observe;

/// <summary>
/// Sees everything that crosses one engine, in the order it happens (the control plane's tracer,
/// the replayer's comparison). Consulted only when set (<see cref="VmcEngine.Observer"/>): with no
/// observer the engine pays one null check at each point. Called on the engine's thread, inside
/// the engine's calls: an implementation must not block and must not call back into the engine.
/// <para>
/// Guest-side calls through the seam are reported before the engine acts on them; what the engine
/// does in answer (entries, memory written, messages, the call's result) follows, then the next
/// call. Spans are valid only during the call.
/// </para>
/// </summary>
public interface IEngineObserver
{
    /// <summary>An entry from the submission ring (<see cref="IVmcBackend.SubmitEntry"/>).</summary>
    void EntryReceived(ReadOnlySpan<byte> entry);

    /// <summary><see cref="IVmcBackend.RegisterQueue"/> begins; <see cref="Returned"/> follows.</summary>
    void QueueRegistering(uint entries, bool reconnect);

    /// <summary><see cref="IVmcBackend.FreeQueue"/> begins; <see cref="Returned"/> follows.</summary>
    void QueueFreeing();

    /// <summary><see cref="IVmcBackend.CopyRdma"/> begins: its guest memory accesses
    /// (<see cref="MemoryAccessed"/>) and <see cref="Returned"/> follow.</summary>
    void RdmaRequested(RdmaDirection direction, ulong remoteIoba, ulong length, ReadOnlySpan<GuestSegment> local);

    /// <summary><see cref="IVmcBackend.RequestVmc"/> begins; <see cref="Returned"/> follows (value: the DRC index).</summary>
    void VmcRequested();

    /// <summary><see cref="IVmcBackend.Reset"/> begins.</summary>
    void ResetRequested();

    /// <summary><see cref="IVmcBackend.Poll"/> begins (the transport retries pending output).</summary>
    void Polling();

    /// <summary>The result of the call that began last (hcall rc and r4 value, 0 when there is none).</summary>
    void Returned(HcallReturn rc, ulong value);

    /// <summary>An entry for the guest, in the order the engine sends them (before the output ring
    /// takes it: an entry that waits in the backlog is reported once, here).</summary>
    void EntryPosted(ReadOnlySpan<byte> entry);

    /// <summary>One access of H_COPY_RDMA to guest memory: <paramref name="data"/> is what was read
    /// (a read) or written (a write); <paramref name="ok"/> false when the access was outside guest
    /// memory (nothing was read or written).</summary>
    void MemoryAccessed(ulong address, bool write, bool ok, ReadOnlySpan<byte> data);

    /// <summary>A whole HMC message: from the partition (a SIGNAL it sent) or to it (a SIGNAL the hypervisor sends).</summary>
    void MessageSeen(int hmcIndex, MessageDirection direction, ReadOnlySpan<byte> message);

    /// <summary>The engine failed the channel (the transport closes the connection).</summary>
    void ChannelFailed(ChannelFailure reason, string text);

    /// <summary>The engine read its clock (for a timed retry) and got <paramref name="timestamp"/>,
    /// in its <see cref="TimeProvider"/>'s units: what a replay must give it back.</summary>
    void TimeRead(long timestamp);
}

/// <summary>Which way an HMC message travels.</summary>
public enum MessageDirection : byte
{
    /// <summary>Partition to HMC: the guest wrote it.</summary>
    FromPartition = 0,
    /// <summary>HMC to partition: a reply or an unsolicited message for the guest to read.</summary>
    ToPartition = 1,
}

/// <summary>The engine's current observer, shared by its parts (one field, read at each point).</summary>
internal sealed class ObserverSlot
{
    public IEngineObserver? Current;
}

/// <summary>Guest memory that reports each access of an H_COPY_RDMA to the observer (used only while one is set).</summary>
internal sealed class ObservedMemory(IGuestMemory inner, IEngineObserver observer) : IGuestMemory
{
    public IGuestMemory Inner => inner;
    public IEngineObserver Observer => observer;

    public bool TryRead(ulong guestPhysical, Span<byte> destination)
    {
        bool ok = inner.TryRead(guestPhysical, destination);
        observer.MemoryAccessed(guestPhysical, write: false, ok, destination);
        return ok;
    }

    public bool TryWrite(ulong guestPhysical, ReadOnlySpan<byte> source)
    {
        bool ok = inner.TryWrite(guestPhysical, source);
        observer.MemoryAccessed(guestPhysical, write: true, ok, source);
        return ok;
    }

    public bool TryReadByteAcquire(ulong guestPhysical, out byte value) => inner.TryReadByteAcquire(guestPhysical, out value);
    public bool TryWriteByteRelease(ulong guestPhysical, byte value) => inner.TryWriteByteRelease(guestPhysical, value);
}
