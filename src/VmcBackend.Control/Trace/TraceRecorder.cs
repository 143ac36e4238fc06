using System.Buffers.Binary;
using VmcBackend.Engine.Backend;
using VmcBackend.Engine.Memory;
using VmcBackend.Engine.Observe;
using VmcBackend.Wire.Hcall;

namespace VmcBackend.Control.Trace;

/// <summary>
/// The tracer of one VM: the engine's observer while at least one trace reader follows the VM.
/// Encodes each event once and appends it to every reader's <see cref="RecordRing"/>; a ring
/// that is full loses the record (counted; a LOST record precedes the next one that fits), so
/// the engine's thread never waits for a reader. Every method runs on the VM's connection thread.
/// </summary>
public sealed class TraceRecorder : IEngineObserver
{
    private readonly RecordEncoder _encoder;
    private readonly byte[] _lost = new byte[TraceFormat.RecordHeaderSize + 8];
    private RecordRing[] _rings = [];

    public TraceRecorder(ushort vm) => _encoder = new RecordEncoder(vm);

    /// <summary>Readers following this VM now.</summary>
    public int Readers => _rings.Length;

    /// <summary>Starts feeding <paramref name="ring"/>: its first record is VM_START (flagged
    /// <see cref="VmStartFlags.Joined"/> when the VM has already been running).</summary>
    public void Add(RecordRing ring, VmInfo info, bool joined)
    {
        WriteTo(ring, _encoder.VmStart(info, joined ? VmStartFlags.Joined : VmStartFlags.None));
        _rings = [.. _rings, ring];
    }

    /// <summary>Stops feeding <paramref name="ring"/> (its reader left).</summary>
    public void Remove(RecordRing ring)
    {
        _rings = Array.FindAll(_rings, r => r != ring);
        ring.End();
    }

    /// <summary>The VM is gone: VM_END to every reader, then their rings end.</summary>
    public void EndAll()
    {
        Write(_encoder.Empty(RecordType.VmEnd));
        foreach (var r in _rings) r.End();
        _rings = [];
    }

    // ---- control-plane events (inputs the replayer performs again)

    public void Attached(int hmcIndex, uint clientPid) => Write(_encoder.Attach(hmcIndex, clientPid));
    public void Detached(int hmcIndex, string reason) => Write(_encoder.Detach(hmcIndex, reason));
    public void HostSending(int hmcIndex, ReadOnlySpan<byte> message) => Write(_encoder.HostSend(hmcIndex, message));
    /// <summary>The result of a HOST_SEND: rc 0 accepted, 1 refused.</summary>
    public void HostSent(bool accepted) => Write(_encoder.Result(accepted ? 0 : 1, 0));

    // ---- IEngineObserver

    public void EntryReceived(ReadOnlySpan<byte> entry) => Write(_encoder.Entry(RecordType.Submit, entry));
    public void QueueRegistering(uint entries, bool reconnect) => Write(_encoder.RegCrq(entries, reconnect));
    public void QueueFreeing() => Write(_encoder.Empty(RecordType.FreeCrq));
    public void RdmaRequested(RdmaDirection direction, ulong remoteIoba, ulong length, ReadOnlySpan<GuestSegment> local)
        => Write(_encoder.CopyRdma(direction, length, remoteIoba, local));
    public void VmcRequested() => Write(_encoder.Empty(RecordType.RequestVmc));
    public void ResetRequested() => Write(_encoder.Empty(RecordType.Reset));
    public void Polling() => Write(_encoder.Empty(RecordType.Poll));
    public void Returned(HcallReturn rc, ulong value) => Write(_encoder.Result((long)rc, value));
    public void EntryPosted(ReadOnlySpan<byte> entry) => Write(_encoder.Entry(RecordType.Post, entry));
    public void MemoryAccessed(ulong address, bool write, bool ok, ReadOnlySpan<byte> data) => Write(_encoder.Memory(address, write, ok, data));
    public void MessageSeen(int hmcIndex, MessageDirection direction, ReadOnlySpan<byte> message) => Write(_encoder.Message(hmcIndex, direction, message));
    public void ChannelFailed(ChannelFailure reason, string text) => Write(_encoder.Failed(reason, text));
    public void TimeRead(long timestamp) => Write(_encoder.Time(timestamp));

    private void Write(ReadOnlySpan<byte> record)
    {
        foreach (var ring in _rings) WriteTo(ring, record);
    }

    private void WriteTo(RecordRing ring, ReadOnlySpan<byte> record)
    {
        if (ring.PendingLost > 0)
        {
            // A record goes in only behind the LOST record that reports the gap before it.
            if (ring.Free < _lost.Length + record.Length) { ring.CountLost(); return; }
            TraceFormat.WriteRecordHeader(_lost, RecordType.Lost, 0, _encoder.Vm, 8, BinaryPrimitives.ReadInt64LittleEndian(record[8..]));
            BinaryPrimitives.WriteInt64LittleEndian(_lost.AsSpan(TraceFormat.RecordHeaderSize), ring.PendingLost);
            ring.PendingLost = 0;
            ring.TryWrite(_lost);
        }
        ring.TryWrite(record);
    }
}
