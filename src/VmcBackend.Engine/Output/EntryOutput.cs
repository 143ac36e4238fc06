using Serilog;
using VmcBackend.Engine.Backend;
using VmcBackend.Engine.Faults;
using VmcBackend.Engine.Observe;
using VmcBackend.Wire.Crq;

namespace VmcBackend.Engine.Output;

/// <summary>
/// The one path by which the engine's entries leave it: appended to the front-end's output ring,
/// or, while the ring is full, kept in order in a bounded backlog that <see cref="Flush"/> retries.
/// A backlog overflow means the guest stopped consuming its queue: the channel fails
/// (CHANNEL_FAILED reason 1) and everything after it is discarded. The front-end is woken once
/// per <see cref="Flush"/> that appended something. With a fault plan, each entry is first offered
/// to it (<see cref="EngineFaults.Outgoing"/>): rewritten, lost, or held with what follows it.
/// </summary>
internal sealed class EntryOutput
{
    private readonly IVmcFrontEnd _frontEnd;
    private readonly ILogger _log;
    private readonly EngineCounters _counters;
    private readonly ObserverSlot _observer;
    private readonly byte[] _backlog;        // ring of 16-byte entries
    private readonly int _capacity;
    private readonly FaultSlot _faults;
    private int _head, _count;
    private bool _appended;
    private long _holdUntil;

    public EntryOutput(IVmcFrontEnd frontEnd, int backlogCapacity, EngineCounters counters, ILogger log,
        ObserverSlot observer, FaultSlot faults)
    {
        _observer = observer;
        _faults = faults;
        _frontEnd = frontEnd;
        _log = log;
        _counters = counters;
        _capacity = backlogCapacity;
        _backlog = new byte[backlogCapacity * CrqEntry.Size];
    }

    /// <summary>The channel failed (backlog overflow or internal error): nothing is posted any more.</summary>
    public bool Failed { get; private set; }

    public int BacklogCount => _count;

    public void Post(in CrqEntry entry)
    {
        Span<byte> e = stackalloc byte[CrqEntry.Size];
        entry.Write(e);
        Post(e);
    }

    public void Post(ReadOnlySpan<byte> entry)
    {
        if (Failed) return;
        if (_faults.Current != null)
        {
            PostWithFaults(entry);
            return;
        }
        _observer.Current?.EntryPosted(entry[..CrqEntry.Size]);
        if (_count == 0 && _frontEnd.TryPostEntry(entry))
        {
            _appended = true;
            _counters.EntriesPosted++;
            return;
        }
        if (_count == _capacity)
        {
            Fail(ChannelFailure.OutputBacklogOverflow,
                $"the guest stopped consuming its CRQ: {_capacity} entries wait behind a full output ring");
            return;
        }
        entry[..CrqEntry.Size].CopyTo(_backlog.AsSpan(((_head + _count) % _capacity) * CrqEntry.Size, CrqEntry.Size));
        _count++;
    }

    private void PostWithFaults(ReadOnlySpan<byte> entry)
    {
        Span<byte> e = stackalloc byte[CrqEntry.Size];
        entry[..CrqEntry.Size].CopyTo(e);
        switch (_faults.Current!.Outgoing(e, out long holdUntil))
        {
            case OutputFault.Drop: return;
            case OutputFault.Hold: _holdUntil = Math.Max(_holdUntil, holdUntil); break;
        }
        _observer.Current?.EntryPosted(e);   // what the guest is given: after the fault rewrote it, never a lost one
        if (_count == 0 && !Holding && _frontEnd.TryPostEntry(e))
        {
            _appended = true;
            _counters.EntriesPosted++;
            return;
        }
        if (_count == _capacity)
        {
            Fail(ChannelFailure.OutputBacklogOverflow,
                $"the guest stopped consuming its CRQ: {_capacity} entries wait behind a full output ring");
            return;
        }
        e.CopyTo(_backlog.AsSpan(((_head + _count) % _capacity) * CrqEntry.Size, CrqEntry.Size));
        _count++;
    }

    /// <summary>A delay fault holds the output (only with a fault plan).</summary>
    private bool Holding
    {
        get
        {
            if (_holdUntil == 0) return false;
            if (_faults.Current!.Now < _holdUntil) return true;
            _holdUntil = 0;
            return false;
        }
    }

    /// <summary>Moves backlogged entries into the output ring while it has room, then wakes the
    /// front-end if anything was appended since the last flush.</summary>
    public void Flush()
    {
        while (_count > 0 && !Failed && !Holding && _frontEnd.TryPostEntry(_backlog.AsSpan(_head * CrqEntry.Size, CrqEntry.Size)))
        {
            _head = (_head + 1) % _capacity;
            _count--;
            _appended = true;
            _counters.EntriesPosted++;
        }
        if (_appended && !Failed)
        {
            _appended = false;
            _frontEnd.Notify();
        }
    }

    /// <summary>The guest queue was (re)registered or freed: entries still held belonged to the old one.</summary>
    public void DiscardBacklog()
    {
        _head = _count = 0;
        _holdUntil = 0;
    }

    /// <param name="injected">A fault asked for it: the fault's own log line says so, not an error line.</param>
    public void Fail(ChannelFailure reason, string text, bool injected = false)
    {
        if (Failed) return;
        Failed = true;
        _head = _count = 0;
        if (!injected) _log.Error("VMC channel failed ({Reason}): {Text}", reason, text);
        _observer.Current?.ChannelFailed(reason, text);
        _frontEnd.Fail(reason, text);
    }
}
