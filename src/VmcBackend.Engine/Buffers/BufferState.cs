namespace VmcBackend.Engine.Buffers;

/// <summary>Who holds one hypervisor-side buffer, from the hypervisor's point of view.</summary>
public enum BufferState : byte
{
    /// <summary>Not given to the partition (never added, removed, or forgotten by a close/reset).</summary>
    Unallocated,
    /// <summary>Added to the partition (ADD_BUF sent) or returned to it by a SIGNAL: the partition may RDMA it and SIGNAL on it.</summary>
    Partition,
    /// <summary>The partition SIGNALled on it: the hypervisor holds it and may SIGNAL a message back on it.</summary>
    Hypervisor,
}

/// <summary>One buffer slot of an HMC's pool.</summary>
public struct BufferSlot
{
    public BufferState State;
    /// <summary>ADD_BUF sent, ADD_BUF_RESP not yet seen.</summary>
    public bool AddPending;
    /// <summary>Returned to the partition by a hypervisor SIGNAL and not yet reused by it: possibly unread.</summary>
    public bool Delivered;
}
