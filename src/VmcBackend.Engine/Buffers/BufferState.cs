namespace VmcBackend.Engine.Buffers;

/// <summary>Who holds one hypervisor-side buffer, from the hypervisor's point of view.</summary>
public enum BufferState : byte
{
    /// <summary>Not given to the partition (never added, removed, or forgotten by a close/reset).</summary>
    Unallocated,
    /// <summary>Added partition-owned, or returned to it by a hypervisor SIGNAL: the partition may RDMA it and SIGNAL on it.</summary>
    Partition,
    /// <summary>The partition SIGNALled on it, or it was added hypervisor-owned: the hypervisor may SIGNAL a message on it.</summary>
    Hypervisor,
}

/// <summary>Why a REM_BUF was sent (the partition answers them in order).</summary>
internal enum RemovalPurpose : byte
{
    /// <summary>Asked for from outside (operator, test, fault injection): the buffer stays removed.</summary>
    Shrink,
    /// <summary>A message waits for a buffer: the one returned is re-added for it.</summary>
    Reclaim,
}
