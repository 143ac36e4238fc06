using System.Threading;
using VmcBackend.Engine.Memory;
using VmcBackend.Testing;
using VmcBackend.Testing.FrontEnd;
using VmcBackend.Transport.Interop;
using VmcBackend.Transport.Memory;

namespace VmcBackend.ReferenceFrontEnd;

/// <summary>
/// Plays QEMU with the spapr-vmc device against a real vmcd: memfd guest RAM, the call eventfd,
/// the CRQ state memfd, IOBA-to-guest-physical translation (QemuLikePlatform), and the
/// disconnect/reconnect behaviour of docs/protocol.md. The simulated partition runs on <see cref="Platform"/>.
/// </summary>
public sealed unsafe class FrontEnd : IDisposable
{
    private readonly string _socketPath;
    private readonly SharedMemfd _ram;
    private readonly SharedMemfd _state;
    private readonly GuestMemoryMap _guest = new();
    private readonly int _callFd;

    public FrontEnd(string socketPath, ulong ramBytes = 16 << 20)
    {
        _socketPath = socketPath;
        _ram = new SharedMemfd("vmc-guest-ram", ramBytes);
        _state = new SharedMemfd("vmc-crq-state", 4096);
        if (!_guest.TryReplace([new GuestRegion(0, ramBytes, 0)], [_ram.Fd], out string? err)) throw new IOException(err);
        _callFd = LibC.EventFd(0, LibC.EFD_CLOEXEC | LibC.EFD_NONBLOCK);
        Client = Connect();
        Platform = new QemuLikePlatform(_guest, ramBytes, Client);
    }

    public VmcUserClient Client { get; private set; }
    public QemuLikePlatform Platform { get; }
    public BackendConfig Config { get; private set; }
    public IGuestMemory GuestMemory => _guest;
    public long Interrupts { get; private set; }
    public int Reconnects { get; private set; }

    private VmcUserClient Connect()
    {
        var c = new VmcUserClient(_socketPath) { StateFd = _state.Fd };
        Config = c.Negotiate();
        if (c.SetMemTable(0, _ram.Size, _ram.Fd) != 0) throw new IOException("SET_MEM_TABLE refused");
        if (c.SetCallFd(_callFd) != 0) throw new IOException("SET_CALL_FD refused");
        return c;
    }

    /// <summary>Collects interrupts the back-end raised (the device would pulse the VIO IRQ).</summary>
    public ulong TakeInterrupts()
    {
        ulong n = LibC.EventFdDrain(_callFd);
        Interrupts += (long)n;
        if (n > 0) Platform.DeliverInterrupt();
        return n;
    }

    /// <summary>The tail vmcd published in the state page.</summary>
    public uint PublishedTail => Volatile.Read(ref *(uint*)_state.Base);

    /// <summary>
    /// What QEMU does when vmcd goes away and comes back: write a transport event at the published
    /// tail, reconnect (retrying until <paramref name="timeout"/>), redo negotiation, memory table and
    /// call fd, and re-register the queue with RECONNECT and the tail past our own entry.
    /// </summary>
    public void Reconnect(TimeSpan timeout)
    {
        var old = Client;
        old.Dispose();
        var segs = old.QueueSegments;
        uint entries = old.QueueEntries, tail = PublishedTail;
        if (entries != 0)
        {
            var writer = new GuestQueueWriter(_guest);
            if (writer.Register(segs, entries, tail))
            {
                writer.QueueTransportEvent();
                tail = writer.Tail;
            }
        }
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            try { Client = Connect(); break; }
            catch (Exception) when (DateTime.UtcNow < deadline) { Thread.Sleep(20); }
        }
        Platform.Backend = Client;
        Reconnects++;
        if (entries != 0 && Client.RegisterQueue(segs, entries, tail, reconnect: true) != 0) throw new IOException("REG_CRQ after reconnect refused");
    }

    public void Dispose()
    {
        Client.Dispose();
        _guest.Dispose();
        _ram.Dispose();
        _state.Dispose();
        LibC.Close(_callFd);
    }
}
