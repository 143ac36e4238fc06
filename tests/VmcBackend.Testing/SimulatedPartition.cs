using System.Buffers.Binary;
using VmcBackend.Wire.Crq;
using VmcBackend.Wire.Hcall;

namespace VmcBackend.Testing;

/// <summary>Adapter states of the Linux driver (enum ibmvmc_states).</summary>
public enum DriverState { SchedReset = -1, Initial = 0, CrqInit = 1, Capabilities = 2, Ready = 3, Failed = 4 }

/// <summary>Per-HMC states of the Linux driver (enum ibmhmc_states).</summary>
public enum DriverHmcState { Free = 0, Initial = 1, Opening = 2, Ready = 3, Failed = 4 }

/// <summary>Linux errno values the driver returns.</summary>
public static class Errno
{
    public const int EPERM = 1, EIO = 5, EAGAIN = 11, EFAULT = 14, EBUSY = 16, ENODEV = 19, EINVAL = 22, EBADFD = 77, ENOBUFS = 105;
}

/// <summary>
/// Our stand-in for the upstream Linux ibmvmc driver (drivers/misc/ibmvmc.c, linux 6.1), modelled
/// decision by decision: the adapter and HMC state machines, which entries it ignores or drops
/// (session validation, state checks), how it picks buffers (first valid, free, partition-owned),
/// its read ring of pool slots, the errno each file operation returns, what a transport event and a
/// reset do (including the quirks listed as traps: buffers of never-opened HMCs survive a reset,
/// write(0) takes a buffer and sends nothing, RDMA failures leak buffers). Whenever the hypervisor
/// does something that would corrupt the real driver (a trap), it is recorded in <see cref="Violations"/>.
/// The interrupt handler is <see cref="ProcessCrq"/>; the test calls it (or <see cref="Settle"/>).
/// </summary>
public sealed class SimulatedPartition
{
    private const int QueueBytes = 65536;     // one 64 KiB page on ppc64
    private readonly IPartitionPlatform _p;
    private readonly Hmc[] _hmcs;
    private readonly Stack<ulong> _freeDma = new();
    private int _freeDmaSize;
    private ulong _queueIoba;
    private int _cur;

    public SimulatedPartition(IPartitionPlatform platform, int maxMtu = 4096, int bufPoolSize = 32, int maxHmcs = 1)
    {
        _p = platform;
        // ibmvmc_scrub_module_parms
        ModuleMaxMtu = Math.Clamp(maxMtu, VmcConstants.MinMtu, VmcConstants.MaxMtu);
        ModulePool = Math.Clamp(bufPoolSize, VmcConstants.MinPool, VmcConstants.MaxPool);
        ModuleMaxHmcs = Math.Clamp(maxHmcs, VmcConstants.MinHmcs, VmcConstants.MaxHmcs);
        _hmcs = new Hmc[ModuleMaxHmcs];
        for (int i = 0; i < _hmcs.Length; i++) _hmcs[i] = new Hmc(ModulePool);
    }

    public int ModuleMaxMtu { get; }
    public int ModulePool { get; }
    public int ModuleMaxHmcs { get; }
    public DriverState State { get; private set; }
    public int MaxMtu { get; private set; }
    public int MaxBufferPoolSize { get; private set; }
    public long MaxHmcIndex { get; private set; }
    public uint VmcDrcIndex { get; private set; }
    public int QueueEntries => QueueBytes / 16;
    public List<string> Violations { get; } = [];
    /// <summary>Protocol version this partition claims in CAP (fault injection; the driver sends 0x0101).</summary>
    public ushort CapVersion { get; set; } = CapabilitiesEntry.ProtocolVersion;
    /// <summary>IOBA of the partition's CRQ page.</summary>
    public ulong QueueIoba => _queueIoba;
    public long EntriesHandled { get; private set; }
    /// <summary>Every entry type seen, for tests (valid byte in the high 8 bits, type in the low 8).</summary>
    public HashSet<int> SeenEntryKinds { get; } = [];

    // ------------------------------------------------------------------ probe and queue

    /// <summary>ibmvmc_probe: register the CRQ and send init. Returns the H_REG_CRQ rc (0 or H_CLOSED are fine).</summary>
    public long Probe()
    {
        _queueIoba = _p.AllocDma(QueueBytes);
        long rc = _p.RegCrq(_queueIoba, QueueBytes);
        if (rc == HcallReturn.Resource) rc = ResetCrqQueue();
        if (rc != HcallReturn.Success && rc != HcallReturn.Closed) { State = DriverState.Failed; return rc; }
        _cur = 0;
        State = DriverState.CrqInit;
        _p.SendCrq(0xC001_0000_0000_0000UL, 0);
        return rc;
    }

    private long ResetCrqQueue()
    {
        _p.FreeCrq();
        _p.WriteDma(_queueIoba, new byte[QueueBytes]);
        _cur = 0;
        return _p.RegCrq(_queueIoba, QueueBytes);
    }

    /// <summary>The driver's tasklet: handles every valid entry, zeroing each valid byte. Returns the count.</summary>
    public int ProcessCrq()
    {
        int handled = 0;
        Span<byte> e = stackalloc byte[16];
        while (true)
        {
            ulong slot = _queueIoba + (ulong)_cur * 16;
            byte valid = _p.ReadDmaByteAcquire(slot);
            if ((valid & 0x80) == 0) break;
            _cur = (_cur + 1) % QueueEntries;
            _p.ReadDma(slot, e);
            HandleCrq(e);
            _p.WriteDmaByte(slot, 0);
            handled++;
            EntriesHandled++;
            if (State == DriverState.SchedReset) { ResetTask(); }
        }
        return handled;
    }

    /// <summary>Processes the queue until it stays empty.</summary>
    public int Settle()
    {
        int total = 0, n;
        while ((n = ProcessCrq()) > 0) total += n;
        return total;
    }

    private void ResetTask()
    {
        long rc = ResetCrqQueue();
        if (rc != HcallReturn.Success && rc != HcallReturn.Resource) State = DriverState.Failed;
        else
        {
            State = DriverState.CrqInit;
            _p.SendCrq(0xC001_0000_0000_0000UL, 0);
        }
    }

    private void HandleCrq(ReadOnlySpan<byte> raw)
    {
        var crq = CrqEntry.Read(raw);
        SeenEntryKinds.Add(crq.Valid << 8 | crq.Type);
        switch (crq.Valid)
        {
            case CrqValid.Init:
                if (crq.Type == CrqInitType.Init)
                {
                    if (State == DriverState.CrqInit)
                    {
                        if (_p.SendCrq(0xC002_0000_0000_0000UL, 0) == 0) SendCapabilities();
                    }
                }
                else if (crq.Type == CrqInitType.InitResponse)
                {
                    if (State == DriverState.CrqInit) SendCapabilities();
                }
                break;
            case CrqValid.Transport:
                Reset(xportEvent: true);
                break;
            case CrqValid.Payload:
                Process(crq, raw);
                break;
        }
    }

    private void SendCapabilities()
    {
        Span<byte> e = stackalloc byte[16];
        new CapabilitiesEntry(VmcMessageType.Capabilities, 0, (byte)ModuleMaxHmcs, (ushort)ModulePool, (uint)ModuleMaxMtu,
            (ushort)QueueEntries, CapVersion).Write(e);
        _p.SendCrq(BinaryPrimitives.ReadUInt64BigEndian(e), BinaryPrimitives.ReadUInt64BigEndian(e[8..]));
        State = DriverState.Capabilities;
    }

    private void Process(in CrqEntry crq, ReadOnlySpan<byte> raw)
    {
        switch (crq.MessageType)
        {
            case VmcMessageType.CapabilitiesResponse:
                if (State == DriverState.Capabilities) ProcessCapabilities(CapabilitiesEntry.Read(raw));
                break;
            case VmcMessageType.OpenResponse: if (ValidateSession(crq)) ProcessOpenResponse(crq); break;
            case VmcMessageType.AddBuffer: if (ValidateSession(crq)) AddBuffer(crq); break;
            case VmcMessageType.RemoveBuffer: if (ValidateSession(crq)) RemoveBuffer(crq); break;
            case VmcMessageType.Signal: if (ValidateSession(crq)) ReceiveMessage(crq); break;
            case VmcMessageType.CloseResponse: if (ValidateSession(crq)) ProcessCloseResponse(crq); break;
        }
    }

    private void ProcessCapabilities(in CapabilitiesEntry c)
    {
        if (c.MajorVersion != CapVersion >> 8) { State = DriverState.Failed; return; }
        if (c.MaxHmcs == 0) Violations.Add("CAP_RESP with max_hmc 0 (max_hmc_index underflows)");
        if (c.MaxMtu == 0 || c.PoolSize == 0) Violations.Add("CAP_RESP with MTU or pool 0");
        MaxMtu = (int)Math.Min((uint)ModuleMaxMtu, c.MaxMtu);
        MaxBufferPoolSize = Math.Min(ModulePool, c.PoolSize);
        MaxHmcIndex = (long)Math.Min(ModuleMaxHmcs, c.MaxHmcs) - 1;
        State = DriverState.Ready;
    }

    private bool ValidateSession(in CrqEntry crq)
    {
        if (crq.Session == 0) return true;
        if (crq.HmcIndex > MaxHmcIndex) return false;
        if (crq.HmcIndex >= _hmcs.Length) { Violations.Add($"entry for HMC index {crq.HmcIndex} beyond hmcs[]"); return false; }
        return _hmcs[crq.HmcIndex].Session == crq.Session;
    }

    private bool IndexOk(int index)
    {
        if (index > MaxHmcIndex) return false;
        if (index >= _hmcs.Length) { Violations.Add($"HMC index {index} beyond hmcs[]"); return false; }
        return true;
    }

    private void AddBuffer(in CrqEntry crq)
    {
        if (!IndexOk(crq.HmcIndex)) { SendMessage(VmcMessageType.AddBufferResponse, VmcStatus.InvalidHmcIndex, crq.Session, crq.HmcIndex, crq.BufferId); return; }
        if (crq.BufferId >= MaxBufferPoolSize) { SendMessage(VmcMessageType.AddBufferResponse, VmcStatus.InvalidBufferId, crq.Session, crq.HmcIndex, crq.BufferId); return; }
        ref var b = ref _hmcs[crq.HmcIndex].Buffers[crq.BufferId];
        if (b.LocalIoba != 0) { SendMessage(VmcMessageType.AddBufferResponse, VmcStatus.InvalidBufferId, crq.Session, crq.HmcIndex, crq.BufferId); return; }
        b.LocalIoba = AllocDmaBuffer(MaxMtu);
        b.RemoteIoba = crq.Lioba;
        b.Size = MaxMtu;
        b.Owner = crq.Owner;
        b.Free = true;
        b.Valid = true;
        b.Id = crq.BufferId;
        SendMessage(VmcMessageType.AddBufferResponse, VmcStatus.Success, crq.Session, crq.HmcIndex, crq.BufferId);
    }

    private void RemoveBuffer(in CrqEntry crq)
    {
        if (!IndexOk(crq.HmcIndex)) { SendMessage(VmcMessageType.RemoveBufferResponse, VmcStatus.InvalidHmcIndex, crq.Session, crq.HmcIndex, 0); return; }
        int id = GetFreeHmcBuffer(_hmcs[crq.HmcIndex]);
        if (id < 0) { SendMessage(VmcMessageType.RemoveBufferResponse, VmcStatus.NoBuffer, crq.Session, crq.HmcIndex, CrqEntry.InvalidBufferId); return; }
        ref var b = ref _hmcs[crq.HmcIndex].Buffers[id];
        if (b.Valid) FreeDmaBuffer(b.LocalIoba, b.Size);
        b = default;
        SendMessage(VmcMessageType.RemoveBufferResponse, VmcStatus.Success, crq.Session, crq.HmcIndex, (ushort)id);
    }

    private void ReceiveMessage(in CrqEntry crq)
    {
        if (!IndexOk(crq.HmcIndex)) { SendMessage(VmcMessageType.AddBufferResponse, VmcStatus.InvalidHmcIndex, crq.Session, crq.HmcIndex, crq.BufferId); return; }
        if (crq.BufferId >= MaxBufferPoolSize) { SendMessage(VmcMessageType.AddBufferResponse, VmcStatus.InvalidBufferId, crq.Session, crq.HmcIndex, crq.BufferId); return; }
        var hmc = _hmcs[crq.HmcIndex];
        if (hmc.State == DriverHmcState.Free) return;
        ref var b = ref hmc.Buffers[crq.BufferId];
        if (!b.Valid || b.Owner == BufferOwner.Partition) return;
        if (crq.MessageLength > (uint)b.Size) Violations.Add($"SIGNAL of {crq.MessageLength} bytes on a {b.Size}-byte buffer");
        long rc = _p.CopyRdma(crq.MessageLength, _p.RemoteLiobn, b.RemoteIoba, _p.LocalLiobn, b.LocalIoba);
        b.MsgLen = (int)crq.MessageLength;
        b.Free = false;
        b.Owner = BufferOwner.Partition;
        if (rc != 0) { RdmaFailures++; return; }
        hmc.Ring[hmc.Head] = crq.BufferId;
        hmc.Head = (hmc.Head + 1) % ModulePool;
        if (hmc.Head == hmc.Tail) Violations.Add("outbound buffer queue wrapped (pool-size unread messages)");
        MessagesReceived++;
    }

    private void ProcessOpenResponse(in CrqEntry crq)
    {
        if (crq.HmcIndex > MaxHmcIndex) { Reset(xportEvent: false); return; }
        if (!IndexOk(crq.HmcIndex)) return;
        var hmc = _hmcs[crq.HmcIndex];
        if (crq.Status != 0) { ReturnHmc(hmc, releaseReaders: false); return; }
        if (hmc.State != DriverHmcState.Opening) return;
        if (crq.BufferId >= MaxBufferPoolSize) { hmc.State = DriverHmcState.Failed; return; }
        hmc.Buffers[crq.BufferId].Free = true;
        hmc.State = DriverHmcState.Ready;
    }

    private void ProcessCloseResponse(in CrqEntry crq)
    {
        if (crq.HmcIndex > MaxHmcIndex) { Reset(xportEvent: false); return; }
        if (!IndexOk(crq.HmcIndex)) return;
        if (crq.Status != 0) { Reset(xportEvent: false); return; }
        ReturnHmc(_hmcs[crq.HmcIndex], releaseReaders: false);
    }

    /// <summary>The driver resetting itself (as after a failed CLOSE_RESP): FREE_CRQ, REG_CRQ, init.</summary>
    public void ResetAdapter()
    {
        Reset(xportEvent: false);
        if (State == DriverState.SchedReset) ResetTask();
    }

    private void Reset(bool xportEvent)
    {
        if (State == DriverState.SchedReset) return;
        foreach (var hmc in _hmcs) ReturnHmc(hmc, xportEvent);
        State = xportEvent ? DriverState.CrqInit : DriverState.SchedReset;
        if (xportEvent) TransportEvents++; else Resets++;
    }

    private void ReturnHmc(Hmc hmc, bool releaseReaders)
    {
        if (!hmc.AdapterSet) return;     // never opened: its buffers survive (driver quirk)
        if (releaseReaders && hmc.File != null) hmc.File.Valid = false;
        hmc.Index = 0;
        hmc.State = DriverHmcState.Free;
        hmc.Head = hmc.Tail = 0;
        for (int i = 0; i < hmc.Buffers.Length; i++)
        {
            if (hmc.Buffers[i].Valid) FreeDmaBuffer(hmc.Buffers[i].LocalIoba, hmc.Buffers[i].Size);
            hmc.Buffers[i] = default;
        }
    }

    // ------------------------------------------------------------------ buffers

    private static int GetValidHmcBuffer(Hmc hmc)
    {
        for (int i = 0; i < hmc.Buffers.Length; i++)
            if (hmc.Buffers[i].Valid && hmc.Buffers[i].Free && hmc.Buffers[i].Owner == BufferOwner.Partition) { hmc.Buffers[i].Free = false; return i; }
        return -1;
    }

    private static int GetFreeHmcBuffer(Hmc hmc)
    {
        for (int i = 0; i < hmc.Buffers.Length; i++)
            if (hmc.Buffers[i].Free && hmc.Buffers[i].Owner == BufferOwner.Partition) { hmc.Buffers[i].Free = false; return i; }
        return -1;
    }

    /// <summary>Reuses a freed DMA buffer of the same size; the pool holds one size (the MTU) at a time.</summary>
    private ulong AllocDmaBuffer(int size)
    {
        if (_freeDmaSize == size && _freeDma.Count > 0) return _freeDma.Pop();
        if (_freeDmaSize != size) { _freeDma.Clear(); _freeDmaSize = size; }
        return _p.AllocDma(size);
    }

    /// <summary>Returns a buffer to the pool if it has the pool's size (a buffer from before an MTU
    /// renegotiation is simply not reused: a smaller one must never be handed out as larger).</summary>
    private void FreeDmaBuffer(ulong ioba, int size)
    {
        if (size == _freeDmaSize) _freeDma.Push(ioba);
    }

    private void SendMessage(VmcMessageType type, VmcStatus status, byte session, byte index, ushort bufferId, uint word = 0)
    {
        Span<byte> e = stackalloc byte[16];
        CrqEntry.Message(type, status, session, index, bufferId, word).Write(e);
        _p.SendCrq(BinaryPrimitives.ReadUInt64BigEndian(e), BinaryPrimitives.ReadUInt64BigEndian(e[8..]));
    }

    public long RdmaFailures { get; private set; }
    public long MessagesReceived { get; private set; }
    public long TransportEvents { get; private set; }
    public long Resets { get; private set; }

    /// <summary>Valid buffers of an HMC index (for tests).</summary>
    public int ValidBufferCount(int index) => _hmcs[index].Buffers.Count(b => b.Valid);
    public DriverHmcState HmcState(int index) => _hmcs[index].State;

    // ------------------------------------------------------------------ file operations (/dev/ibmvmc)

    /// <summary>A file opened on /dev/ibmvmc (struct ibmvmc_file_session).</summary>
    public sealed class VmcFile
    {
        internal Hmc? Hmc;
        internal bool Valid;
        internal bool Closed;
    }

    public VmcFile Open() => new();

    /// <summary>VMC_IOCTL_SETHMCID. 0 or -errno.</summary>
    public int SetHmcId(VmcFile f, ReadOnlySpan<byte> hmcId)
    {
        if (f.Hmc == null)
        {
            int rc = SetupHmc(f);
            if (rc != 0) return rc;
        }
        var hmc = f.Hmc!;
        if (hmc.State != DriverHmcState.Initial) return -Errno.EIO;
        Span<byte> id = stackalloc byte[VmcConstants.HmcIdLength];
        hmcId[..Math.Min(hmcId.Length, id.Length)].CopyTo(id);
        int b = GetValidHmcBuffer(hmc);
        if (b < 0) return -Errno.EIO;
        ref var buf = ref hmc.Buffers[b];
        _p.WriteDma(buf.LocalIoba, id);
        long rdma = _p.CopyRdma((ulong)buf.Size, _p.LocalLiobn, buf.LocalIoba, _p.RemoteLiobn, buf.RemoteIoba);
        if (rdma != 0) return -Errno.EIO;    // the HMC stays in state initial: leaked (driver quirk)
        hmc.State = DriverHmcState.Opening;
        SendMessage(VmcMessageType.Open, 0, hmc.Session, (byte)hmc.Index, (ushort)b);
        return 0;
    }

    private int SetupHmc(VmcFile f)
    {
        if (State == DriverState.Failed) return -Errno.EIO;
        if (State < DriverState.Ready) return -Errno.EAGAIN;
        for (int index = 0; index <= MaxHmcIndex && index < _hmcs.Length; index++)
            if (ValidBufferCount(index) == 0) return -Errno.ENOBUFS;
        Hmc? hmc = null;
        for (int i = 0; i <= MaxHmcIndex && i < _hmcs.Length; i++)
            if (_hmcs[i].State == DriverHmcState.Free) { hmc = _hmcs[i]; hmc.Index = i; hmc.State = DriverHmcState.Initial; break; }
        if (hmc == null) return -Errno.EBUSY;
        hmc.Session = (byte)(hmc.Session + 1);
        if (hmc.Session == 0xFF) hmc.Session = 1;
        f.Hmc = hmc;
        hmc.AdapterSet = true;
        hmc.File = f;
        f.Valid = true;
        return 0;
    }

    /// <summary>write(): bytes written or -errno.</summary>
    public int Write(VmcFile f, ReadOnlySpan<byte> data)
    {
        var hmc = f.Hmc;
        if (hmc == null || hmc.State == DriverHmcState.Free || !hmc.AdapterSet) return -Errno.EIO;
        if (data.Length > MaxMtu) return -Errno.EIO;
        if (hmc.State == DriverHmcState.Opening) return -Errno.EBUSY;
        if (hmc.State != DriverHmcState.Ready) return -Errno.EIO;
        int b = GetValidHmcBuffer(hmc);
        if (b < 0) return -Errno.EBUSY;
        if (data.Length == 0) return 0;      // the buffer taken above is never given back (driver quirk)
        ref var buf = ref hmc.Buffers[b];
        _p.WriteDma(buf.LocalIoba, data);
        long rc = _p.CopyRdma((ulong)data.Length, _p.LocalLiobn, buf.LocalIoba, _p.RemoteLiobn, buf.RemoteIoba);
        if (rc != 0) { RdmaFailures++; return data.Length; }   // error ignored, buffer leaked (driver quirk)
        buf.Owner = BufferOwner.Hypervisor;
        SendMessage(VmcMessageType.Signal, 0, hmc.Session, (byte)hmc.Index, (ushort)b, (uint)data.Length);
        return data.Length;
    }

    /// <summary>read() in O_NONBLOCK mode: bytes read, -EAGAIN when nothing is queued, or -errno.</summary>
    public int Read(VmcFile f, Span<byte> destination)
    {
        if (destination.Length == 0) return 0;
        if (destination.Length > MaxMtu) return -Errno.EINVAL;
        var hmc = f.Hmc;
        if (hmc == null) return -Errno.EIO;
        if (hmc.Tail == hmc.Head) return f.Valid ? -Errno.EAGAIN : -Errno.EBADFD;
        ref var buf = ref hmc.Buffers[hmc.Ring[hmc.Tail]];
        hmc.Tail = (hmc.Tail + 1) % ModulePool;
        int n = Math.Min(destination.Length, buf.MsgLen);
        _p.ReadDma(buf.LocalIoba, destination[..n]);
        buf.Free = true;
        return n;
    }

    /// <summary>close(): 0 or -errno.</summary>
    public int Close(VmcFile f)
    {
        f.Closed = true;
        var hmc = f.Hmc;
        if (hmc == null) return 0;
        if (State == DriverState.Failed) return -Errno.EIO;
        if (hmc.State >= DriverHmcState.Opening) SendMessage(VmcMessageType.Close, 0, hmc.Session, (byte)hmc.Index, 0);
        return 0;
    }

    /// <summary>VMC_IOCTL_QUERY.</summary>
    public (bool HaveVmc, DriverState State, uint DrcIndex) Query() => (State > DriverState.Initial, State, VmcDrcIndex);

    /// <summary>VMC_IOCTL_REQUESTVMC: 0 or -errno.</summary>
    public int RequestVmc(out uint drcIndex)
    {
        drcIndex = 0;
        long rc = _p.RequestVmc(out ulong drc);
        switch (rc)
        {
            case HcallReturn.Function or HcallReturn.Authority or HcallReturn.NotAvailable: return -Errno.EPERM;
            case HcallReturn.Hardware: return -Errno.EIO;
            case HcallReturn.Resource: return -Errno.ENODEV;
            case HcallReturn.Parameter: return -Errno.EINVAL;
        }
        VmcDrcIndex = drcIndex = (uint)drc;
        return 0;
    }

    internal sealed class Hmc(int pool)
    {
        public DriverHmcState State;
        public byte Session;
        public int Index;
        public bool AdapterSet;
        public VmcFile? File;
        public readonly LocalBuffer[] Buffers = new LocalBuffer[pool];
        public readonly int[] Ring = new int[pool];
        public int Head, Tail;
    }

    internal struct LocalBuffer
    {
        public bool Valid, Free;
        public byte Owner;
        public int Id, Size, MsgLen;
        public ulong LocalIoba;
        public uint RemoteIoba;
    }
}
