namespace VmcBackend.Engine;

/// <summary>
/// The engine's side effects towards the front-end (QEMU): vmcd implements it with the state
/// memfd and the call eventfd; tests implement it in memory.
/// </summary>
public interface IGuestNotifier
{
    /// <summary>Called after every entry written into the guest CRQ, with the next slot index.</summary>
    void QueueTailMoved(uint tail);

    /// <summary>Entries landed in the guest CRQ: raise the VIO interrupt (once per batch is enough).</summary>
    void RaiseInterrupt();
}
