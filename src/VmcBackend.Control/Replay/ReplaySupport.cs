using VmcBackend.Control.Trace;
using VmcBackend.Engine.Backend;
using VmcBackend.Engine.Memory;
using VmcBackend.Engine.Observe;
using VmcBackend.Engine.Sessions;
using VmcBackend.Wire.Hcall;

namespace VmcBackend.Control.Replay;

/// <summary>Encodes what the replayed engine does exactly as the recorder did, time left 0.</summary>
internal sealed class ReplayObserver(ushort vm) : IEngineObserver
{
    public RecordEncoder Encoder { get; } = new(vm) { Clock = () => 0 };
    public List<byte[]> Actual { get; } = [];

    public void Add(ReadOnlySpan<byte> record) => Actual.Add(record.ToArray());

    public void EntryReceived(ReadOnlySpan<byte> entry) => Add(Encoder.Entry(RecordType.Submit, entry));
    public void QueueRegistering(uint entries, bool reconnect) => Add(Encoder.RegCrq(entries, reconnect));
    public void QueueFreeing() => Add(Encoder.Empty(RecordType.FreeCrq));
    public void RdmaRequested(RdmaDirection direction, ulong remoteIoba, ulong length, ReadOnlySpan<GuestSegment> local)
        => Add(Encoder.CopyRdma(direction, length, remoteIoba, local));
    public void VmcRequested() => Add(Encoder.Empty(RecordType.RequestVmc));
    public void ResetRequested() => Add(Encoder.Empty(RecordType.Reset));
    public void Polling() => Add(Encoder.Empty(RecordType.Poll));
    public void Returned(HcallReturn rc, ulong value) => Add(Encoder.Result((long)rc, value));
    public void EntryPosted(ReadOnlySpan<byte> entry) => Add(Encoder.Entry(RecordType.Post, entry));
    public void MemoryAccessed(ulong address, bool write, bool ok, ReadOnlySpan<byte> data) => Add(Encoder.Memory(address, write, ok, data));
    public void MessageSeen(int hmcIndex, MessageDirection direction, ReadOnlySpan<byte> message) => Add(Encoder.Message(hmcIndex, direction, message));
    public void ChannelFailed(ChannelFailure reason, string text) => Add(Encoder.Failed(reason, text));
    public void TimeRead(long timestamp) => Add(Encoder.Time(timestamp));
}

/// <summary>
/// Guest memory as the recording saw it: each access the engine makes is answered from the next
/// MEMORY record of the input being replayed (a read gets the recorded bytes, any access the
/// recorded success). An access the recording did not make fails; the comparison reports it.
/// </summary>
internal sealed class ScriptedMemory : IGuestMemory
{
    private readonly Queue<TraceRecord> _accesses = new();

    public void Load(IEnumerable<TraceRecord> group)
    {
        _accesses.Clear();
        foreach (var r in group) if (r.Type == RecordType.Memory) _accesses.Enqueue(r);
    }

    private bool Next(ulong address, int length, bool write, out TraceRecord r)
    {
        if (_accesses.TryPeek(out r!) && r.Memory is var m && m.Address == address && m.Length == length && m.Write == write)
        {
            _accesses.Dequeue();
            return true;
        }
        return false;
    }

    public bool TryRead(ulong guestPhysical, Span<byte> destination)
    {
        if (!Next(guestPhysical, destination.Length, false, out var r) || !r.Memory.Ok) return false;
        var data = r.Memory.Data.Span;
        if (data.Length != destination.Length) return false;
        data.CopyTo(destination);
        return true;
    }

    public bool TryWrite(ulong guestPhysical, ReadOnlySpan<byte> source)
        => Next(guestPhysical, source.Length, true, out var r) && r.Memory.Ok;

    public bool TryReadByteAcquire(ulong guestPhysical, out byte value) { value = 0; return false; }
    public bool TryWriteByteRelease(ulong guestPhysical, byte value) => false;
}

/// <summary>The engine's clock during a replay: each reading is the next TIME record of the input being replayed.</summary>
internal sealed class ScriptedClock(long frequency) : TimeProvider
{
    private readonly Queue<long> _readings = new();
    private long _last;

    public override long TimestampFrequency => frequency > 0 ? frequency : 1_000_000_000;

    public void Load(IEnumerable<TraceRecord> group)
    {
        _readings.Clear();
        foreach (var r in group) if (r.Type == RecordType.Time) _readings.Enqueue(r.Timestamp);
    }

    public override long GetTimestamp() => _readings.TryDequeue(out long t) ? _last = t : _last;
}

/// <summary>The front-end of a replayed engine: the output ring always takes the entry (the recorder saw entries before the ring).</summary>
internal sealed class ReplayFrontEnd(IGuestMemory memory) : IVmcFrontEnd
{
    public IGuestMemory Memory => memory;
    public bool TryPostEntry(ReadOnlySpan<byte> entry) => true;
    public void Notify() { }
    public void Fail(ChannelFailure reason, string text) { }
}

/// <summary>Stands in for an attached host program during a replay: its messages are the recorded HOST_SENDs.</summary>
internal sealed class ReplayHandler : IHmcSessionHandler
{
    public IHmcSessionOutput? Output { get; private set; }
    public void Opened(IHmcSessionOutput output, ReadOnlySpan<byte> hmcId) => Output = output;
    public void Message(IHmcSessionOutput output, ReadOnlySpan<byte> message) { }
    public void Closed() => Output = null;
}
