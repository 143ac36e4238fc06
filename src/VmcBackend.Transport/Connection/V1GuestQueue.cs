using Serilog;
using VmcBackend.Engine.Backend;
using VmcBackend.Engine.Memory;
using VmcBackend.Transport.Memory;
using VmcBackend.Transport.Notify;
using VmcBackend.Wire.Hcall;

namespace VmcBackend.Transport.Connection;

/// <summary>
/// TEMPORARY adapter (engine helper, seam commit): lets the vmc-user VERSION 1 connection drive the
/// engine through its <see cref="IVmcFrontEnd"/> seam. In version 1 vmcd still writes the guest's
/// CRQ itself, so this class plays the front-end's queue writer: an entry goes into the next slot
/// when the guest has consumed it (bytes 1..15, then the valid byte with release semantics), the
/// tail is published in the state page, Notify raises the interrupt through the call eventfd.
/// A full queue makes TryPostEntry fail, so the engine keeps the entry in its backlog and retries
/// on Poll. It goes away with the version 2 transport (output ring; QEMU writes the queue).
/// </summary>
public sealed class V1GuestQueue(GuestMemoryMap memory, FrontEndNotifier notifier, ILogger log) : IVmcFrontEnd
{
    private GuestSegment[] _segments = [];
    private uint _entries, _tail;

    public IGuestMemory Memory => memory;
    public bool IsRegistered => _entries != 0;
    /// <summary>Set when the engine failed the channel: the connection must close (QEMU then delivers a transport event).</summary>
    public string? Failure { get; private set; }

    public bool Register(ReadOnlySpan<GuestSegment> segments, uint entries, uint tail)
    {
        if (entries == 0 || tail >= entries || segments.Length == 0) return false;
        _segments = segments.ToArray();
        _entries = entries;
        _tail = tail;
        return true;
    }

    public void Unregister()
    {
        _entries = _tail = 0;
        _segments = [];
        notifier.ClearState();
    }

    /// <summary>H_SEND_CRQ as the version 1 front-end forwards it: the rc the guest sees.</summary>
    public HcallReturn Submit(ReadOnlySpan<byte> entry, IVmcBackend backend)
    {
        if (!IsRegistered) return HcallReturn.Closed;
        if (!(entry[0] == 0x80 || (entry[0] == 0xC0 && entry[1] is 1 or 2))) return HcallReturn.Parameter;
        backend.SubmitEntry(entry);
        return HcallReturn.Success;
    }

    public bool TryPostEntry(ReadOnlySpan<byte> entry)
    {
        if (!IsRegistered || !TryLocate(_tail, out ulong gpa)) return false;
        if (!memory.TryReadByteAcquire(gpa, out byte valid) || valid != 0) return false;
        if (!memory.TryWrite(gpa + 1, entry[1..16]) || !memory.TryWriteByteRelease(gpa, entry[0])) return false;
        _tail = _tail + 1 == _entries ? 0 : _tail + 1;
        notifier.QueueTailMoved(_tail);
        return true;
    }

    public void Notify() => notifier.RaiseInterrupt();

    public void Fail(ChannelFailure reason, string text)
    {
        Failure ??= $"channel failed ({reason}): {text}";
        log.Error("engine failed the channel ({Reason}): {Text}", reason, text);
    }

    private bool TryLocate(uint slot, out ulong gpa)
    {
        ulong offset = (ulong)slot * 16;
        foreach (var s in _segments)
        {
            if (offset < s.Length) { gpa = s.Address + offset; return true; }
            offset -= s.Length;
        }
        gpa = 0;
        return false;
    }
}
