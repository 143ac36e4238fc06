using VmcBackend.Engine.Buffers;

namespace VmcBackend.Engine.Sessions;

/// <summary>
/// One HMC index: its session state, its pool of buffers (hypervisor view of ownership) and the
/// bounded queue of outbound messages waiting for a buffer the hypervisor may SIGNAL on.
/// </summary>
public sealed class HmcConnection
{
    private readonly byte[] _outbound;      // ring of MaxMtu-sized slots
    private readonly int[] _outboundLength;
    private int _outHead, _outCount;

    public HmcConnection(int index, int maxPool, int maxMtu, IHmcSessionHandler handler)
    {
        Index = index;
        Buffers = new BufferSlot[maxPool];
        OutboundCapacity = maxPool;
        SlotSize = maxMtu;
        _outbound = new byte[maxPool * maxMtu];
        _outboundLength = new int[maxPool];
        Handler = handler;
        HmcId = new byte[Wire.Crq.VmcConstants.HmcIdLength];
    }

    public int Index { get; }
    public IHmcSessionHandler Handler { get; }
    public BufferSlot[] Buffers { get; }
    public byte[] HmcId { get; }
    public bool IsOpen { get; set; }
    public byte Session { get; set; }
    public int OutboundCapacity { get; }
    public int OutboundCount => _outCount;
    private int SlotSize { get; }

    public int Count(BufferState state, int pool)
    {
        int n = 0;
        for (int i = 0; i < pool; i++) if (Buffers[i].State == state) n++;
        return n;
    }

    public int DeliveredCount(int pool)
    {
        int n = 0;
        for (int i = 0; i < pool; i++) if (Buffers[i].State == BufferState.Partition && Buffers[i].Delivered) n++;
        return n;
    }

    /// <summary>First buffer the hypervisor holds, or -1.</summary>
    public int FindHypervisorBuffer(int pool)
    {
        for (int i = 0; i < pool; i++) if (Buffers[i].State == BufferState.Hypervisor) return i;
        return -1;
    }

    public void ForgetBuffers()
    {
        Array.Clear(Buffers);
    }

    public bool TryEnqueue(ReadOnlySpan<byte> message)
    {
        if (_outCount == OutboundCapacity) return false;
        int slot = (_outHead + _outCount) % OutboundCapacity;
        message.CopyTo(_outbound.AsSpan(slot * SlotSize, SlotSize));
        _outboundLength[slot] = message.Length;
        _outCount++;
        return true;
    }

    public ReadOnlySpan<byte> PeekOutbound() => _outbound.AsSpan(_outHead * SlotSize, _outboundLength[_outHead]);

    public void DequeueOutbound()
    {
        _outHead = (_outHead + 1) % OutboundCapacity;
        _outCount--;
    }

    /// <summary>Drops queued outbound messages (session ended); returns how many.</summary>
    public int ClearOutbound()
    {
        int n = _outCount;
        _outHead = _outCount = 0;
        return n;
    }
}
