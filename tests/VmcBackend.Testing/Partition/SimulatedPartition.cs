namespace VmcBackend.Testing;

/// <summary>Adapter states of the Linux driver (enum ibmvmc_states), kept in a u32 as the driver
/// keeps them: sched_reset is 0xFFFFFFFF, so it compares above every other state.</summary>
public enum DriverState : uint { Initial = 0, CrqInit = 1, Capabilities = 2, Ready = 3, Failed = 4, SchedReset = 0xFFFF_FFFF }

/// <summary>Per-HMC states of the Linux driver (enum ibmhmc_states).</summary>
public enum DriverHmcState : uint { Free = 0, Initial = 1, Opening = 2, Ready = 3, Failed = 4 }

/// <summary>Which upstream driver the partition follows where they differ.</summary>
public enum DriverVersion
{
    /// <summary>linux 6.1: write() ignores a failed RDMA (buffer leaked), SIGNAL msg_len unchecked.</summary>
    Linux61,
    /// <summary>linux 6.12: write() returns EIO and frees the buffer when the RDMA fails; recv_msg drops msg_len above the buffer size.</summary>
    Linux612,
}

/// <summary>Linux errno values the driver returns.</summary>
public static class Errno
{
    public const int EPERM = 1, EIO = 5, EAGAIN = 11, EFAULT = 14, EBUSY = 16, ENODEV = 19, EINVAL = 22, EBADFD = 77, ENOBUFS = 105;
}

/// <summary>
/// Our stand-in for the upstream Linux ibmvmc driver (drivers/misc/ibmvmc.c), modelled decision by
/// decision and independently of the engine (its own wire structs, <see cref="IbmVmc"/>):
/// <list type="bullet">
/// <item>the adapter state in a u32 and the per-HMC states; which entries it ignores or drops
/// (session validation, state checks); how it picks buffers (first valid, free, partition-owned,
/// over the module's pool size); its read ring of pool slots; the errno of each file operation;</item>
/// <item>the interrupt path: the handler disables the VIO interrupt and schedules the tasklet; the
/// tasklet drains the queue, re-enables, re-checks once; a pulse while disabled is lost; a reset
/// ends the tasklet with interrupts off and the reset task turns them on again without re-checking;</item>
/// <item>H_FREE_CRQ and H_REQUEST_VMC retried while busy or long-busy; REG_CRQ's accepted rcs;</item>
/// <item>the quirks: buffers of never-opened HMCs survive a reset, write(0) takes a buffer and
/// sends nothing, RDMA failures leak buffers (6.1), unlisted REQUESTVMC rcs reach user space.</item>
/// </list>
/// Whatever would corrupt the real driver (a trap of /work/shared/reference/ibmvmc-driver-facts.md)
/// is recorded in <see cref="Violations"/>, the trap number first. Trap 3 (a transport event after a
/// close writes into the freed file session) is a driver bug the hypervisor cannot avoid: it is
/// recorded with the prefix "trap 3" so tests can report it as an expected driver failure.
/// <see cref="RunPending"/> runs whatever the kernel would run next (reset task, tasklet).
/// </summary>
public sealed class SimulatedPartition
{
    private readonly IPartitionPlatform _p;
    private readonly Hmc[] _hmcs = [new(), new()];      // static struct ibmvmc_hmc hmcs[MAX_HMCS]
    private readonly Dictionary<int, Stack<ulong>> _freeDma = [];
    private readonly int _pageSize;
    private ulong _queueIoba;
    private int _cur;
    private bool _taskletScheduled, _taskletDisabled, _resetWake;

    /// <param name="pageSize">The kernel's PAGE_SIZE: the CRQ is one page (64 KiB on Debian's ppc64el 6.1, 4 KiB on its 6.12 4k flavour).</param>
    public SimulatedPartition(IPartitionPlatform platform, int maxMtu = 4096, int bufPoolSize = 32, int maxHmcs = 1,
        DriverVersion version = DriverVersion.Linux61, int pageSize = 65536)
    {
        _p = platform;
        Version = version;
        _pageSize = pageSize;
        // ibmvmc_scrub_module_parms
        ModuleMaxMtu = Math.Clamp(maxMtu, IbmVmc.MinMtu, IbmVmc.MaxMtu);
        ModulePool = Math.Clamp(bufPoolSize, IbmVmc.MinBufPoolSize, IbmVmc.MaxBufPoolSize);
        ModuleMaxHmcs = Math.Clamp(maxHmcs, IbmVmc.MinHmcs, IbmVmc.MaxHmcs);
        // ibmvmc_module_init
        MaxMtu = ModuleMaxMtu;
        MaxBufferPoolSize = ModulePool;
        MaxHmcIndex = (uint)ModuleMaxHmcs - 1;
    }

    public DriverVersion Version { get; }
    public int ModuleMaxMtu { get; }
    public int ModulePool { get; }
    public int ModuleMaxHmcs { get; }
    public DriverState State { get; private set; } = DriverState.Initial;
    public int MaxMtu { get; private set; }
    public int MaxBufferPoolSize { get; private set; }
    public uint MaxHmcIndex { get; private set; }
    public uint VmcDrcIndex { get; private set; }
    public int QueueEntries => _pageSize / 16;
    public List<string> Violations { get; } = [];
    /// <summary>Protocol version this partition claims in CAP (fault injection; the driver sends 0x0101).</summary>
    public ushort CapVersion { get; set; } = IbmVmc.ProtocolVersion;
    /// <summary>Fault injection: limits this partition claims in CAP instead of its module parameters.</summary>
    public (byte MaxHmcs, ushort PoolSize, uint MaxMtu)? CapOverride { get; set; }
    public ulong QueueIoba => _queueIoba;
    public long EntriesHandled { get; private set; }
    public long Interrupts { get; private set; }
    public long TaskletRuns { get; private set; }
    /// <summary>0xC001 received outside crqinit ("Invalid state" in the kernel log, nothing else happens).</summary>
    public long IgnoredInits { get; private set; }
    /// <summary>Every entry kind seen (valid byte in the high 8 bits, type in the low 8).</summary>
    public HashSet<int> SeenEntryKinds { get; } = [];
    /// <summary>Every entry seen, in order, as (valid, type, status, owner, session, index, buffer id, word) (for order tests).</summary>
    public List<(byte Valid, byte Type, byte Status, byte Owner, byte Session, byte Index, ushort BufferId, uint Word)> Log { get; } = [];
    public bool KeepLog { get; set; }
    public long RdmaFailures { get; private set; }
    public long MessagesReceived { get; private set; }
    public long TransportEvents { get; private set; }
    public long Resets { get; private set; }

    // ------------------------------------------------------------------ probe and queue

    /// <summary>ibmvmc_probe. Returns the H_REG_CRQ rc (0, H_CLOSED and H_RESOURCE are fine).</summary>
    public long Probe()
    {
        // ibmvmc_init_crq_queue
        _queueIoba = _p.AllocDma(_pageSize);
        long retrc = _p.RegCrq(_queueIoba, (ulong)_pageSize), rc = retrc;
        if (rc == IbmVmc.HResource) rc = ResetCrqQueue();
        if (rc == IbmVmc.HClosed) retrc = 0;
        else if (rc != 0) { State = DriverState.Failed; return rc; }
        _cur = 0;
        _p.ConnectInterrupt(HandleEvent);
        _p.VioSignal(true);
        // ibmvmc_probe
        if (retrc != 0 && retrc != IbmVmc.HResource) { State = DriverState.Failed; return retrc; }
        State = DriverState.CrqInit;
        SendCrq(0xC001_0000_0000_0000UL, 0);
        return retrc;
    }

    /// <summary>ibmvmc_reset_crq_queue: H_FREE_CRQ (retried while busy), clear the page, H_REG_CRQ.</summary>
    private long ResetCrqQueue()
    {
        FreeCrq();
        _p.WriteDma(_queueIoba, new byte[_pageSize]);
        _cur = 0;
        return _p.RegCrq(_queueIoba, (ulong)_pageSize);
    }

    private void FreeCrq()
    {
        long rc;
        int tries = 0;
        do
        {
            rc = _p.FreeCrq();
            if (++tries > 10_000) { Violations.Add("H_FREE_CRQ busy forever"); return; }
        } while (rc == IbmVmc.HBusy || IbmVmc.IsLongBusy(rc));
    }

    private long SendCrq(ulong w1, ulong w2) => _p.SendCrq(w1, w2);   // ibmvmc_send_crq

    private long SendCrq(in CrqMsg m)
    {
        var (w1, w2) = m.ToWords();
        return SendCrq(w1, w2);
    }

    // ------------------------------------------------------------------ interrupt, tasklet, reset task

    /// <summary>ibmvmc_handle_event: the VIO interrupt.</summary>
    private void HandleEvent()
    {
        Interrupts++;
        _p.VioSignal(false);
        _taskletScheduled = true;
    }

    /// <summary>Runs what the kernel would run now: the reset task when woken, then the tasklet
    /// when scheduled and enabled. Returns true when something ran.</summary>
    public bool RunPending()
    {
        bool ran = false;
        if (_resetWake && State == DriverState.SchedReset) { _resetWake = false; ResetTask(); ran = true; }
        if (_taskletScheduled && !_taskletDisabled) { _taskletScheduled = false; Tasklet(); ran = true; }
        return ran;
    }

    /// <summary>Runs pending work until there is none (the front-end is not run: see PartitionClient.Settle).</summary>
    public int Settle()
    {
        int n = 0;
        while (RunPending()) if (++n > 100_000) throw new InvalidOperationException("partition never settles");
        return n;
    }

    /// <summary>ibmvmc_task.</summary>
    private void Tasklet()
    {
        TaskletRuns++;
        CheckOutstanding();
        while (true)
        {
            while (NextCrq(out ulong slot))
            {
                HandleSlot(slot);
                if (State == DriverState.SchedReset) return;   // interrupts stay off: the reset task enables them
            }
            _p.VioSignal(true);
            if (!NextCrq(out ulong again)) return;
            _p.VioSignal(false);
            HandleSlot(again);
            if (State == DriverState.SchedReset) return;
        }
    }

    /// <summary>ibmvmc_reset_task, once woken.</summary>
    private void ResetTask()
    {
        _taskletDisabled = true;
        long rc = ResetCrqQueue();
        if (rc != IbmVmc.HSuccess && rc != IbmVmc.HResource) State = DriverState.Failed;
        else
        {
            State = DriverState.CrqInit;
            SendCrq(0xC001_0000_0000_0000UL, 0);
        }
        _p.VioSignal(true);
        _taskletDisabled = false;
    }

    /// <summary>crq_queue_next_crq.</summary>
    private bool NextCrq(out ulong slot)
    {
        slot = _queueIoba + (ulong)_cur * 16;
        if ((_p.ReadDmaByteAcquire(slot) & 0x80) == 0) return false;
        if (++_cur == QueueEntries) _cur = 0;
        return true;
    }

    private void HandleSlot(ulong slot)
    {
        Span<byte> raw = stackalloc byte[16];
        _p.ReadDma(slot, raw);
        HandleCrq(raw);
        _p.WriteDmaByte(slot, 0);
        EntriesHandled++;
    }

    /// <summary>The partner must keep at most crq_size/2 entries outstanding (ibmvmc.h, crq_size).</summary>
    private void CheckOutstanding()
    {
        int n = 0, at = _cur;
        Span<byte> head = stackalloc byte[2];
        while (n < QueueEntries)
        {
            _p.ReadDma(_queueIoba + (ulong)at * 16, head);
            if ((head[0] & 0x80) == 0) break;
            if (head[0] != 0xFF) n++;         // the front-end's transport event ignores pacing
            at = (at + 1) % QueueEntries;
        }
        if (n > QueueEntries / 2) Violations.Add($"partner has {n} entries outstanding in a {QueueEntries}-entry queue (more than crq_size/2)");
    }

    // ------------------------------------------------------------------ entries

    private void HandleCrq(ReadOnlySpan<byte> raw)
    {
        var crq = CrqMsg.Decode(raw);
        SeenEntryKinds.Add(crq.Valid << 8 | crq.Type);
        if (KeepLog) Log.Add((crq.Valid, crq.Type, crq.Status, crq.Owner, crq.HmcSession, crq.HmcIndex, crq.BufferId, crq.Var3));
        switch (crq.Valid)
        {
            case 0xC0: HandleCrqInit(crq); break;
            case 0xFF: Reset(xportEvent: true); break;    // "virtual adapter failed - resetting"
            case 0x80: CrqProcess(crq, raw); break;
        }
    }

    private void HandleCrqInit(in CrqMsg crq)
    {
        switch (crq.Type)
        {
            case 0x01:
                if (State == DriverState.CrqInit)
                {
                    if (SendCrq(0xC002_0000_0000_0000UL, 0) == 0) SendCapabilities();
                }
                else IgnoredInits++;
                break;
            case 0x02:
                if (State == DriverState.CrqInit) SendCapabilities();
                break;
        }
    }

    private void SendCapabilities()
    {
        var (hmcs, pool, mtu) = CapOverride ?? ((byte)ModuleMaxHmcs, (ushort)ModulePool, (uint)ModuleMaxMtu);
        var (w1, w2) = new AdminCrqMsg
        {
            Valid = 0x80, Type = IbmVmc.MsgCap, MaxHmc = hmcs, MaxMtu = mtu, PoolSize = pool,
            CrqSize = (ushort)QueueEntries, Version = CapVersion,
        }.ToWords();
        SendCrq(w1, w2);
        State = DriverState.Capabilities;
    }

    private void CrqProcess(in CrqMsg crq, ReadOnlySpan<byte> raw)
    {
        switch (crq.Type)
        {
            case IbmVmc.MsgCapResp:
                if (State == DriverState.Capabilities) ProcessCapabilities(AdminCrqMsg.Decode(raw));
                break;
            case IbmVmc.MsgOpenResp: if (ValidateHmcSession(crq)) ProcessOpenResp(crq); break;
            case IbmVmc.MsgAddBuf: if (ValidateHmcSession(crq)) AddBuffer(crq); break;
            case IbmVmc.MsgRemBuf: if (ValidateHmcSession(crq)) RemBuffer(crq); break;
            case IbmVmc.MsgSignal: if (ValidateHmcSession(crq)) RecvMsg(crq); break;
            case IbmVmc.MsgCloseResp: if (ValidateHmcSession(crq)) ProcessCloseResp(crq); break;
        }
    }

    private void ProcessCapabilities(in AdminCrqMsg crq)
    {
        if (crq.Version >> 8 != CapVersion >> 8) { State = DriverState.Failed; return; }
        if (crq.MaxHmc == 0) Violations.Add("trap 1: CAP_RESP with max_hmc 0 (max_hmc_index becomes 0xFFFFFFFF)");
        if (crq.MaxMtu == 0 || crq.PoolSize == 0) Violations.Add("trap 1: CAP_RESP with MTU or pool 0");
        MaxMtu = (int)Math.Min((uint)ModuleMaxMtu, crq.MaxMtu);
        MaxBufferPoolSize = Math.Min(ModulePool, crq.PoolSize);
        MaxHmcIndex = (uint)(Math.Min((byte)ModuleMaxHmcs, crq.MaxHmc) - 1);   // u8 min, then -1 into a u32
        State = DriverState.Ready;
    }

    /// <summary>hmcs[index], or null (with a violation) where the driver would index past its array.</summary>
    private Hmc? HmcAt(int index, string what)
    {
        if (index < _hmcs.Length) return _hmcs[index];
        Violations.Add($"trap 1: {what} indexes hmcs[{index}] (out of bounds)");
        return null;
    }

    private bool ValidateHmcSession(in CrqMsg crq)
    {
        if (crq.HmcSession == 0) return true;
        if (crq.HmcIndex > MaxHmcIndex) return false;
        var hmc = HmcAt(crq.HmcIndex, "session check");
        return hmc != null && hmc.Session == crq.HmcSession;
    }

    private void AddBuffer(in CrqMsg crq)
    {
        if (crq.HmcIndex > MaxHmcIndex) { SendMessage(IbmVmc.MsgAddBufResp, IbmVmc.MsgInvalidHmcIndex, crq.HmcSession, crq.HmcIndex, crq.BufferId); return; }
        if (crq.BufferId >= MaxBufferPoolSize) { SendMessage(IbmVmc.MsgAddBufResp, IbmVmc.MsgInvalidBufferId, crq.HmcSession, crq.HmcIndex, crq.BufferId); return; }
        var hmc = HmcAt(crq.HmcIndex, "ADD_BUF");
        if (hmc == null) return;
        ref var b = ref hmc.Buffers[crq.BufferId];
        if (b.LocalIoba != 0)
        {
            SendMessage(IbmVmc.MsgAddBufResp, IbmVmc.MsgInvalidBufferId, crq.HmcSession, crq.HmcIndex, crq.BufferId);
            return;
        }
        b.LocalIoba = AllocDmaBuffer(MaxMtu);
        b.RemoteIoba = crq.Lioba;
        b.Size = MaxMtu;
        b.Owner = crq.Owner;
        b.Free = true;
        b.Valid = true;
        b.Id = crq.BufferId;
        SendMessage(IbmVmc.MsgAddBufResp, IbmVmc.MsgSuccess, crq.HmcSession, crq.HmcIndex, crq.BufferId);
    }

    private void RemBuffer(in CrqMsg crq)
    {
        if (crq.HmcIndex > MaxHmcIndex) { SendMessage(IbmVmc.MsgRemBufResp, IbmVmc.MsgInvalidHmcIndex, crq.HmcSession, crq.HmcIndex, 0); return; }
        var hmc = HmcAt(crq.HmcIndex, "REM_BUF");
        if (hmc == null) return;
        int id = GetFreeHmcBuffer(hmc);
        if (id < 0) { SendMessage(IbmVmc.MsgRemBufResp, IbmVmc.MsgNoBuffer, crq.HmcSession, crq.HmcIndex, IbmVmc.InvalidBufferId); return; }
        ref var b = ref hmc.Buffers[id];
        ushort bufferId = b.Id;
        if (CountValid(hmc) == 1 && b.Valid) Violations.Add("REM_BUF took the partition's last buffer (an interface error, ibmvmc.c rem_buffer)");
        if (b.Valid) FreeDmaBuffer(b.LocalIoba, b.Size);
        b = default;
        SendMessage(IbmVmc.MsgRemBufResp, IbmVmc.MsgSuccess, crq.HmcSession, crq.HmcIndex, bufferId);
    }

    private void RecvMsg(in CrqMsg crq)
    {
        if (crq.HmcIndex > MaxHmcIndex) { SendMessage(IbmVmc.MsgAddBufResp, IbmVmc.MsgInvalidHmcIndex, crq.HmcSession, crq.HmcIndex, crq.BufferId); return; }
        if (crq.BufferId >= MaxBufferPoolSize) { SendMessage(IbmVmc.MsgAddBufResp, IbmVmc.MsgInvalidBufferId, crq.HmcSession, crq.HmcIndex, crq.BufferId); return; }
        var hmc = HmcAt(crq.HmcIndex, "SIGNAL");
        if (hmc == null || hmc.State == DriverHmcState.Free) return;
        ref var b = ref hmc.Buffers[crq.BufferId];
        if (!b.Valid || b.Owner == IbmVmc.BufOwnerAlpha) return;
        if (crq.MsgLen > (uint)b.Size)
        {
            if (Version == DriverVersion.Linux612) return;    // "msg_len exceeds buffer size"
            Violations.Add($"trap 2: SIGNAL of {crq.MsgLen} bytes on a {b.Size}-byte buffer (RDMA past the buffer)");
        }
        long rc = _p.CopyRdma(crq.MsgLen, _p.RemoteLiobn, b.RemoteIoba, _p.LocalLiobn, b.LocalIoba);
        b.MsgLen = (int)crq.MsgLen;
        b.Free = false;
        b.Owner = IbmVmc.BufOwnerAlpha;
        if (rc != 0) { RdmaFailures++; return; }   // the buffer is leaked (trap 5)
        hmc.Ring[hmc.QueueHead] = crq.BufferId;
        if (++hmc.QueueHead == ModulePool) hmc.QueueHead = 0;
        if (hmc.QueueHead == hmc.QueueTail) Violations.Add("trap 12: outbound buffer queue wrapped (pool-size unread messages)");
        MessagesReceived++;
    }

    private void ProcessOpenResp(in CrqMsg crq)
    {
        if (crq.HmcIndex > MaxHmcIndex) { Reset(xportEvent: false); return; }
        var hmc = HmcAt(crq.HmcIndex, "OPEN_RESP");
        if (hmc == null) return;
        if (crq.Status != 0) { ReturnHmc(hmc, releaseReaders: false); return; }
        if (hmc.State != DriverHmcState.Opening) return;
        if (crq.BufferId >= MaxBufferPoolSize) { hmc.State = DriverHmcState.Failed; return; }
        hmc.Buffers[crq.BufferId].Free = true;       // whatever buffer it names (trap 11)
        hmc.State = DriverHmcState.Ready;
    }

    private void ProcessCloseResp(in CrqMsg crq)
    {
        if (crq.HmcIndex > MaxHmcIndex) { Reset(xportEvent: false); return; }
        if (crq.Status != 0) { Reset(xportEvent: false); return; }
        var hmc = HmcAt(crq.HmcIndex, "CLOSE_RESP");
        if (hmc != null) ReturnHmc(hmc, releaseReaders: false);
    }

    /// <summary>The driver resetting itself as its tasklet does after a failed CLOSE_RESP: the
    /// interrupt handler had turned interrupts off, the reset task is woken and turns them on.</summary>
    public void ResetAdapter()
    {
        _p.VioSignal(false);
        Reset(xportEvent: false);
    }

    /// <summary>ibmvmc_reset.</summary>
    private void Reset(bool xportEvent)
    {
        if (State == DriverState.SchedReset) return;
        for (int i = 0; i < ModuleMaxHmcs; i++) ReturnHmc(_hmcs[i], xportEvent);
        if (xportEvent) { State = DriverState.CrqInit; TransportEvents++; }
        else { State = DriverState.SchedReset; _resetWake = true; Resets++; }
    }

    /// <summary>ibmvmc_return_hmc.</summary>
    private void ReturnHmc(Hmc hmc, bool releaseReaders)
    {
        if (!hmc.AdapterSet) return;     // never opened: its buffers survive (trap 7)
        if (releaseReaders && hmc.FileSession is { } session)
        {
            if (session.Freed) Violations.Add("trap 3: transport event writes session->valid into a file session freed by close() (use after free)");
            session.Valid = false;
        }
        hmc.Index = 0;
        hmc.State = DriverHmcState.Free;
        hmc.QueueHead = hmc.QueueTail = 0;
        for (int i = 0; i < ModulePool; i++)
        {
            if (hmc.Buffers[i].Valid) FreeDmaBuffer(hmc.Buffers[i].LocalIoba, hmc.Buffers[i].Size);
            hmc.Buffers[i] = default;
            hmc.Ring[i] = IbmVmc.InvalidBufferId;
        }
    }

    // ------------------------------------------------------------------ buffers

    /// <summary>ibmvmc_get_valid_hmc_buffer (over the module's pool size, as the driver loops).</summary>
    private int GetValidHmcBuffer(int index)
    {
        if (index > MaxHmcIndex || index >= _hmcs.Length) return -1;
        var hmc = _hmcs[index];
        for (int i = 0; i < ModulePool; i++)
            if (hmc.Buffers[i].Valid && hmc.Buffers[i].Free && hmc.Buffers[i].Owner == IbmVmc.BufOwnerAlpha) { hmc.Buffers[i].Free = false; return i; }
        return -1;
    }

    /// <summary>ibmvmc_get_free_hmc_buffer.</summary>
    private int GetFreeHmcBuffer(Hmc hmc)
    {
        for (int i = 0; i < ModulePool; i++)
            if (hmc.Buffers[i].Free && hmc.Buffers[i].Owner == IbmVmc.BufOwnerAlpha) { hmc.Buffers[i].Free = false; return i; }
        return -1;
    }

    private int CountValid(Hmc hmc)
    {
        int n = 0;
        for (int i = 0; i < ModulePool; i++) if (hmc.Buffers[i].Valid) n++;
        return n;
    }

    /// <summary>DMA buffers are reused by their own size (kzalloc + dma_map_single in the driver): a
    /// buffer from before an MTU renegotiation is never handed out as a larger one.</summary>
    private ulong AllocDmaBuffer(int size)
    {
        if (_freeDma.TryGetValue(size, out var free) && free.Count > 0) return free.Pop();
        return _p.AllocDma(size);
    }

    private void FreeDmaBuffer(ulong ioba, int size)
    {
        if (!_freeDma.TryGetValue(size, out var free)) _freeDma[size] = free = new Stack<ulong>();
        free.Push(ioba);
    }

    private void SendMessage(byte type, byte status, byte session, byte index, ushort bufferId, uint var3 = 0)
        => SendCrq(new CrqMsg { Valid = 0x80, Type = type, Status = status, HmcSession = session, HmcIndex = index, Var2 = bufferId, Var3 = var3 });

    /// <summary>Valid buffers of an HMC index (for tests).</summary>
    public int ValidBufferCount(int index) => CountValid(_hmcs[index]);
    /// <summary>Valid, free, partition-owned buffers: what write() can still use.</summary>
    public int WritableBufferCount(int index)
    {
        var hmc = _hmcs[index];
        int n = 0;
        for (int i = 0; i < ModulePool; i++) if (hmc.Buffers[i].Valid && hmc.Buffers[i].Free && hmc.Buffers[i].Owner == IbmVmc.BufOwnerAlpha) n++;
        return n;
    }
    public DriverHmcState HmcState(int index) => _hmcs[index].State;
    public byte HmcSession(int index) => _hmcs[index].Session;

    // ------------------------------------------------------------------ file operations (/dev/ibmvmc)

    /// <summary>A file opened on /dev/ibmvmc (struct ibmvmc_file_session).</summary>
    public sealed class VmcFile
    {
        internal Hmc? Hmc;
        internal bool Valid;
        /// <summary>kfree_sensitive'd by close().</summary>
        internal bool Freed;
    }

    /// <summary>ibmvmc_open.</summary>
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
        hmcId[..Math.Min(hmcId.Length, IbmVmc.HmcIdLen)].CopyTo(hmc.HmcId);
        int id = GetValidHmcBuffer(hmc.Index);
        if (id < 0) return -Errno.EIO;
        ref var b = ref hmc.Buffers[id];
        _p.WriteDma(b.LocalIoba, hmc.HmcId);
        // ibmvmc_send_open
        long rdma = _p.CopyRdma((ulong)b.Size, _p.LocalLiobn, b.LocalIoba, _p.RemoteLiobn, b.RemoteIoba);
        if (rdma != 0) return -Errno.EIO;    // the HMC stays in state initial: leaked (trap 4)
        hmc.State = DriverHmcState.Opening;
        SendMessage(IbmVmc.MsgOpen, 0, hmc.Session, (byte)hmc.Index, b.Id);
        return 0;
    }

    /// <summary>ibmvmc_setup_hmc.</summary>
    private int SetupHmc(VmcFile f)
    {
        if (State == DriverState.Failed) return -Errno.EIO;
        if (State < DriverState.Ready) return -Errno.EAGAIN;        // u32 compare: sched_reset passes
        for (uint index = 0; index <= MaxHmcIndex; index++)
        {
            if (index >= _hmcs.Length) { Violations.Add($"trap 1: setup_hmc counts buffers of hmcs[{index}] (out of bounds)"); break; }
            if (CountValid(_hmcs[index]) == 0) return -Errno.ENOBUFS;
        }
        Hmc? hmc = null;
        for (uint i = 0; i <= MaxHmcIndex && i < _hmcs.Length; i++)
            if (_hmcs[i].State == DriverHmcState.Free) { hmc = _hmcs[i]; hmc.Index = (int)i; hmc.State = DriverHmcState.Initial; break; }
        if (hmc == null) return -Errno.EBUSY;
        hmc.Session = (byte)(hmc.Session + 1);
        if (hmc.Session == 0xFF) hmc.Session = 1;
        f.Hmc = hmc;
        hmc.AdapterSet = true;
        hmc.FileSession = f;
        f.Valid = true;
        return 0;
    }

    /// <summary>ibmvmc_write: bytes written or -errno.</summary>
    public int Write(VmcFile f, ReadOnlySpan<byte> data)
    {
        var hmc = f.Hmc;
        if (hmc == null) return -Errno.EIO;
        if (hmc.State == DriverHmcState.Free || !hmc.AdapterSet) return -Errno.EIO;
        if (data.Length > MaxMtu) return -Errno.EIO;
        if (hmc.State == DriverHmcState.Opening) return -Errno.EBUSY;
        if (hmc.State != DriverHmcState.Ready) return -Errno.EIO;
        int id = GetValidHmcBuffer(hmc.Index);
        if (id < 0) return -Errno.EBUSY;
        if (data.Length == 0) return 0;      // the buffer taken above is never given back (driver quirk)
        ref var b = ref hmc.Buffers[id];
        _p.WriteDma(b.LocalIoba, data);
        // ibmvmc_send_msg
        long rc = _p.CopyRdma((ulong)data.Length, _p.LocalLiobn, b.LocalIoba, _p.RemoteLiobn, b.RemoteIoba);
        if (rc != 0)
        {
            RdmaFailures++;
            if (Version == DriverVersion.Linux612) { b.Free = true; return -Errno.EIO; }
            return data.Length;              // error ignored, buffer leaked (trap 5)
        }
        b.Owner = IbmVmc.BufOwnerHv;
        SendMessage(IbmVmc.MsgSignal, 0, hmc.Session, (byte)hmc.Index, b.Id, (uint)data.Length);
        return data.Length;
    }

    /// <summary>ibmvmc_read in O_NONBLOCK mode: bytes read, -EAGAIN when nothing is queued, or -errno.</summary>
    public int Read(VmcFile f, Span<byte> destination)
    {
        if (destination.Length == 0) return 0;
        if (destination.Length > MaxMtu) return -Errno.EINVAL;
        var hmc = f.Hmc;
        if (hmc == null) return -Errno.EIO;
        if (hmc.QueueTail == hmc.QueueHead) return f.Valid ? -Errno.EAGAIN : -Errno.EBADFD;
        ref var b = ref hmc.Buffers[hmc.Ring[hmc.QueueTail]];
        if (++hmc.QueueTail == ModulePool) hmc.QueueTail = 0;
        if (!b.Valid) { Violations.Add("read() of a queued buffer that is no longer valid (NULL real_addr_local)"); return -Errno.EFAULT; }
        int n = Math.Min(destination.Length, b.MsgLen);
        _p.ReadDma(b.LocalIoba, destination[..n]);
        b.Free = true;
        return n;
    }

    /// <summary>ibmvmc_poll: true when read() would find data.</summary>
    public bool Poll(VmcFile f) => f.Hmc is { } hmc && hmc.QueueHead != hmc.QueueTail;

    /// <summary>ibmvmc_close: 0 or -errno.</summary>
    public int Close(VmcFile f)
    {
        var hmc = f.Hmc;
        if (hmc != null)
        {
            if (!hmc.AdapterSet) return -Errno.EIO;
            if (State == DriverState.Failed) return -Errno.EIO;     // the session is not freed (trap 14)
            if (hmc.State >= DriverHmcState.Opening) SendMessage(IbmVmc.MsgClose, 0, hmc.Session, (byte)hmc.Index, 0);
        }
        f.Freed = true;            // kfree_sensitive(session); hmc->file_session still points at it (trap 3)
        return 0;
    }

    /// <summary>VMC_IOCTL_QUERY: have_vmc is state > initial in u32 (sched_reset counts as having one).</summary>
    public (bool HaveVmc, int State, uint DrcIndex) Query() => (State > DriverState.Initial, unchecked((int)(uint)State), VmcDrcIndex);

    /// <summary>VMC_IOCTL_REQUESTVMC: 0 or -errno; an rc the driver does not list reaches user space as is (trap 13).</summary>
    public long RequestVmc(out uint drcIndex)
    {
        drcIndex = 0;
        long rc;
        ulong drc;
        int tries = 0;
        do   // h_request_vmc
        {
            rc = _p.RequestVmc(out drc);
            if (++tries > 10_000) { Violations.Add("H_REQUEST_VMC busy forever"); return -Errno.EIO; }
        } while (rc == IbmVmc.HBusy || IbmVmc.IsLongBusy(rc));
        switch (rc)
        {
            case IbmVmc.HFunction or IbmVmc.HAuthority or IbmVmc.HNotAvailable: return -Errno.EPERM;
            case IbmVmc.HHardware: return -Errno.EIO;
            case IbmVmc.HResource: return -Errno.ENODEV;
            case IbmVmc.HParameter: return -Errno.EINVAL;
        }
        VmcDrcIndex = drcIndex = (uint)drc;
        return rc;
    }

    internal sealed class Hmc
    {
        public DriverHmcState State;
        public byte Session;
        public int Index;
        /// <summary>hmc->adapter set by setup_hmc and never cleared.</summary>
        public bool AdapterSet;
        /// <summary>hmc->file_session: set by setup_hmc, never cleared (trap 3).</summary>
        public VmcFile? FileSession;
        public readonly byte[] HmcId = new byte[IbmVmc.HmcIdLen];
        public readonly LocalBuffer[] Buffers = new LocalBuffer[IbmVmc.MaxBufPoolSize];
        public readonly ushort[] Ring = new ushort[IbmVmc.MaxBufPoolSize];
        public int QueueHead, QueueTail;
    }

    internal struct LocalBuffer
    {
        public bool Valid, Free;
        public byte Owner;
        public ushort Id;
        public int Size, MsgLen;
        public ulong LocalIoba;
        public uint RemoteIoba;
    }
}
