using System.Threading;
using VmcBackend.Transport.Interop;

namespace VmcBackend.Transport.Notify;

/// <summary>
/// Tells the front-end what the engine did: the call eventfd asks QEMU to raise the guest
/// interrupt; the CRQ state memfd holds the next slot index so QEMU can write a transport event
/// at the right place if vmcd disappears.
/// </summary>
public sealed unsafe class FrontEndNotifier : IDisposable
{
    private int _callFd = -1;
    private nint _state;
    private int _stateFd = -1;

    public long Interrupts { get; private set; }

    /// <summary>Adopts a new call eventfd (closing the previous one).</summary>
    public void SetCallFd(int fd)
    {
        if (_callFd >= 0) LibC.Close(_callFd);
        _callFd = fd;
    }

    /// <summary>Adopts a mapped state page (unmapping the previous one).</summary>
    public void SetState(int fd, nint mapping)
    {
        ClearState();
        _stateFd = fd;
        _state = mapping;
    }

    public void ClearState()
    {
        if (_state != 0) LibC.Munmap(_state, 4096);
        if (_stateFd >= 0) LibC.Close(_stateFd);
        _state = 0;
        _stateFd = -1;
    }

    public void QueueTailMoved(uint tail)
    {
        if (_state != 0) Volatile.Write(ref *(uint*)_state, tail);
    }

    public void RaiseInterrupt()
    {
        Interrupts++;
        if (_callFd >= 0) LibC.EventFdSignal(_callFd);
    }

    public void Dispose()
    {
        ClearState();
        SetCallFd(-1);
    }
}
