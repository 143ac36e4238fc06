using VmcBackend.Wire.Crq;

namespace VmcBackend.Engine.Buffers;

/// <summary>
/// The buffers of one HMC index, as the hypervisor tracks their ownership. It owns every
/// ownership transition (ADD_BUF and its response, the partition's SIGNAL, the hypervisor's
/// SIGNAL, REM_BUF and its response) and answers the RDMA permission question: the partition may
/// copy to or from a buffer it holds, within the negotiated MTU, and nothing else.
/// <para>It also keeps the driver's read ring from wrapping (trap 12): buffers returned to the
/// partition by a hypervisor SIGNAL are "delivered" (possibly unread) until the partition proves it
/// read them, by writing on them or by giving them back in a REM_BUF_RESP; at most pool-1 may be
/// delivered at once.</para>
/// </summary>
internal sealed class BufferPool
{
    private struct Slot
    {
        public BufferState State;
        /// <summary>ADD_BUF sent, ADD_BUF_RESP not yet seen.</summary>
        public bool AddPending;
        /// <summary>Returned to the partition by a hypervisor SIGNAL: possibly unread.</summary>
        public bool Delivered;
    }

    private readonly Slot[] _slots;
    private readonly RemovalPurpose[] _removals;   // REM_BUFs in flight, oldest first (a ring)
    private int _removalHead, _removalCount;

    public BufferPool(int maxPool)
    {
        _slots = new Slot[maxPool];
        _removals = new RemovalPurpose[maxPool];
    }

    /// <summary>Negotiated pool size (0 before capabilities): valid ids are 0..Size-1.</summary>
    public int Size { get; private set; }

    /// <summary>Negotiated MTU: the largest message and RDMA range.</summary>
    public int Mtu { get; private set; }

    /// <summary>Forgets every buffer (the driver forgot them too) and adopts new negotiated values.</summary>
    public void Reset(int size, int mtu)
    {
        Array.Clear(_slots);
        _removalHead = _removalCount = 0;
        Size = size;
        Mtu = mtu;
    }

    /// <summary>The driver freed every buffer of this HMC (CLOSE_RESP, failed OPEN_RESP).</summary>
    public void ForgetAll() => Reset(Size, Mtu);

    public BufferState StateOf(int id) => (uint)id < (uint)Size ? _slots[id].State : BufferState.Unallocated;

    public bool IsUnallocated(int id) => (uint)id < (uint)Size && _slots[id].State == BufferState.Unallocated;

    public bool IsPartitionOwned(int id) => (uint)id < (uint)Size && _slots[id].State == BufferState.Partition;

    // ------------------------------------------------------------- ADD_BUF

    /// <summary>ADD_BUF sent for an unallocated id.</summary>
    public void Added(int id, BufferOwner owner)
        => _slots[id] = new Slot { State = owner == BufferOwner.Hypervisor ? BufferState.Hypervisor : BufferState.Partition, AddPending = true };

    /// <summary>ADD_BUF_RESP. False when no ADD_BUF is outstanding for the id (dropped). On
    /// failure the buffer is the hypervisor's again, except INVALID_BUFFER_ID: the partition still
    /// holds that id (buffers of never-opened HMCs survive the driver's reset, trap 7).</summary>
    public bool AddResponse(int id, VmcStatus status, out bool hypervisorOwned)
    {
        hypervisorOwned = false;
        if ((uint)id >= (uint)Size || !_slots[id].AddPending) return false;
        ref var s = ref _slots[id];
        s.AddPending = false;
        if (status == VmcStatus.InvalidBufferId) s.State = BufferState.Partition;
        else if (status != VmcStatus.Success) s.State = BufferState.Unallocated;
        hypervisorOwned = s.State == BufferState.Hypervisor;
        return true;
    }

    // ------------------------------------------------------------- SIGNAL

    /// <summary>The partition SIGNALled on a buffer it holds: now the hypervisor's (and read, if it was delivered).</summary>
    public bool PartitionSignalled(int id)
    {
        if (!IsPartitionOwned(id)) return false;
        _slots[id] = new Slot { State = BufferState.Hypervisor };
        return true;
    }

    /// <summary>True while one more message may be delivered without risking the read ring.</summary>
    public bool CanDeliver => DeliveredCount < Size - 1;

    /// <summary>True when a hypervisor-held buffer is ready for a SIGNAL.</summary>
    public bool HasSendableBuffer => FindSendable() >= 0;

    /// <summary>True while a hypervisor-owned ADD_BUF awaits its response (a buffer is on its way).</summary>
    public bool HasHypervisorBufferComing
    {
        get
        {
            for (int i = 0; i < Size; i++) if (_slots[i].State == BufferState.Hypervisor && _slots[i].AddPending) return true;
            return false;
        }
    }

    /// <summary>Takes a hypervisor-held buffer for a SIGNAL, returning it to the partition as
    /// delivered. -1 when there is none or the unread bound is reached.</summary>
    public int TakeForSignal()
    {
        if (!CanDeliver) return -1;
        int id = FindSendable();
        if (id >= 0) _slots[id] = new Slot { State = BufferState.Partition, Delivered = true };
        return id;
    }

    private int FindSendable()
    {
        for (int i = 0; i < Size; i++) if (_slots[i].State == BufferState.Hypervisor && !_slots[i].AddPending) return i;
        return -1;
    }

    // ------------------------------------------------------------- REM_BUF

    public bool HasPendingRemoval => _removalCount > 0;

    /// <summary>Records a REM_BUF about to be sent, unless it could take the partition's last
    /// buffer (an interface error, ibmvmc.c rem_buffer): every REM_BUF in flight must leave it one.
    /// <paramref name="allowLast"/> (fault injection only) drops that rule.</summary>
    public bool TryRequestRemoval(RemovalPurpose purpose, bool allowLast = false)
    {
        if ((!allowLast && CountSettled(BufferState.Partition) - _removalCount < 2) || _removalCount == _removals.Length) return false;
        _removals[(_removalHead + _removalCount) % _removals.Length] = purpose;
        _removalCount++;
        return true;
    }

    /// <summary>Pairs a REM_BUF_RESP with the oldest REM_BUF in flight. False when none is.</summary>
    public bool TakeRemoval(out RemovalPurpose purpose)
    {
        purpose = default;
        if (_removalCount == 0) return false;
        purpose = _removals[_removalHead];
        _removalHead = (_removalHead + 1) % _removals.Length;
        _removalCount--;
        return true;
    }

    /// <summary>The partition gave buffer <paramref name="id"/> back (it was free, so read). False if it did not hold it.</summary>
    public bool Removed(int id)
    {
        if (!IsPartitionOwned(id) || _slots[id].AddPending) return false;
        _slots[id] = default;
        return true;
    }

    // ------------------------------------------------------------- RDMA

    /// <summary>True when the partition may H_COPY_RDMA [offset, offset+length) of buffer <paramref name="id"/>.</summary>
    public bool RdmaAllowed(int id, int offset, ulong length)
        => IsPartitionOwned(id) && (ulong)offset + length <= (ulong)Mtu;

    // ------------------------------------------------------------- accounting

    public int Count(BufferState state)
    {
        int n = 0;
        for (int i = 0; i < Size; i++) if (_slots[i].State == state) n++;
        return n;
    }

    private int CountSettled(BufferState state)
    {
        int n = 0;
        for (int i = 0; i < Size; i++) if (_slots[i].State == state && !_slots[i].AddPending) n++;
        return n;
    }

    public int DeliveredCount
    {
        get
        {
            int n = 0;
            for (int i = 0; i < Size; i++) if (_slots[i].Delivered) n++;
            return n;
        }
    }

    /// <summary>Null when the accounting is consistent, else what is wrong.</summary>
    public string? Check()
    {
        for (int id = 0; id < _slots.Length; id++)
        {
            var s = _slots[id];
            if (id >= Size && (s.State != BufferState.Unallocated || s.AddPending || s.Delivered)) return $"buffer {id} is {s.State} outside the negotiated pool";
            if (s.AddPending && s.State == BufferState.Unallocated) return $"buffer {id} add pending but unallocated";
            if (s.Delivered && s.State != BufferState.Partition) return $"buffer {id} delivered but {s.State}";
        }
        if (Size > 0 && DeliveredCount > Size - 1) return "unread messages reach the pool size";
        return null;
    }
}
