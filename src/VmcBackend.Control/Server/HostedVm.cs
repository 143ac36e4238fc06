using System.Globalization;
using Serilog;
using VmcBackend.Control.Protocol;
using VmcBackend.Control.Trace;
using VmcBackend.Engine;
using VmcBackend.Transport.Connection;

namespace VmcBackend.Control.Server;

/// <summary>
/// One connected VM as the control plane holds it: its connection (the only way to reach its
/// engine: work is posted to the connection's thread), its tracer, its attached HMCs. Fields
/// marked "engine thread" are touched only there.
/// </summary>
public sealed class HostedVm
{
    private readonly FrontEndConnection _connection;
    private readonly VmcEngine _engine;                        // engine thread
    private readonly CancellationTokenSource _ended = new();

    internal HostedVm(FrontEndConnection connection, VmcEngine engine, ushort number, ILogger log)
    {
        _connection = connection;
        _engine = engine;
        Number = number;
        Log = log.ForContext("Connection", connection.Name);
        Recorder = new TraceRecorder(number);
        Attached = new AttachedHmc?[engine.Limits.MaxHmcs];
        var l = engine.Limits;
        Info = new VmInfo(connection.Name, connection.PeerPid, l.MaxMtu, l.PoolSize, l.MaxHmcs, l.DrcIndex, l.OutputBacklog, engine.Time.TimestampFrequency);
    }

    public string Name => _connection.Name;
    public uint Pid => _connection.PeerPid;
    /// <summary>The VM's number in trace records.</summary>
    public ushort Number { get; }
    public VmInfo Info { get; }
    public int MaxHmcs => Info.MaxHmcs;
    internal ILogger Log { get; }
    internal TraceRecorder Recorder { get; }                   // engine thread
    internal AttachedHmc?[] Attached { get; }                  // engine thread
    /// <summary>Cancelled when the VM's connection has ended.</summary>
    public CancellationToken Ended => _ended.Token;

    /// <summary>
    /// Runs <paramref name="work"/> on the VM's connection thread with its engine; the task is
    /// cancelled if the VM goes away before it ran.
    /// </summary>
    public Task<T> Run<T>(Func<VmcEngine, T> work)
    {
        var done = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        var registration = _ended.Token.Register(() => done.TrySetCanceled());
        bool posted = _connection.Post(_ =>
        {
            registration.Unregister();
            try { done.TrySetResult(work(_engine)); }
            catch (Exception e) { done.TrySetException(e); }
        });
        if (!posted) done.TrySetCanceled();
        return done.Task;
    }

    /// <summary>Posts work that needs no answer (detach, a reader leaving); dropped if the VM has ended.</summary>
    public void Post(Action<VmcEngine> work) => _connection.Post(_ => work(_engine));

    /// <summary>Engine thread: a trace reader starts following this VM.</summary>
    internal void AddReader(RecordRing ring, bool joined)
    {
        Recorder.Add(ring, Info, joined);
        _engine.Observer = Recorder;
    }

    /// <summary>Engine thread: a trace reader leaves; with no reader left the engine has no observer (no cost).</summary>
    internal void RemoveReader(RecordRing ring)
    {
        Recorder.Remove(ring);
        if (Recorder.Readers == 0) _engine.Observer = null;
    }

    /// <summary>Connection thread, after the last reset: readers get VM_END, attached programs are told, waiting work is cancelled.</summary>
    internal void End()
    {
        Recorder.EndAll();
        _engine.Observer = null;
        _ended.Cancel();
        foreach (var a in Attached) a?.VmEnded();
    }

    /// <summary>Engine thread: what status shows of this VM.</summary>
    internal VmStatus Snapshot()
    {
        var e = _engine;
        var c = e.Counters;
        var counters = new Dictionary<string, long>
        {
            ["entries_received"] = c.EntriesReceived, ["entries_posted"] = c.EntriesPosted,
            ["messages_in"] = c.MessagesIn, ["messages_out"] = c.MessagesOut, ["dropped"] = c.Dropped,
            ["rdma_copies"] = c.RdmaCopies, ["rdma_bytes"] = c.RdmaBytes, ["rdma_failures"] = c.RdmaFailures,
            ["sessions_opened"] = c.SessionsOpened, ["sessions_closed"] = c.SessionsClosed,
            ["buffers_removed"] = c.BuffersRemoved, ["buffers_reclaimed"] = c.BuffersReclaimed,
            ["outbound_discarded"] = c.OutboundDiscarded, ["outbound_refused"] = c.OutboundRefused,
            ["attach_refused"] = AttachRefused,
        };
        var hmcs = new List<HmcStatus>();
        for (int i = 0; i < e.Limits.MaxHmcs; i++)
        {
            var s = e.Session(i);
            var a = Attached[i];
            hmcs.Add(new HmcStatus(i, s.IsOpen, s.Session, s.HmcId, a == null ? "router" : "attached", a?.ClientPid,
                new BufferStatus(s.PartitionBuffers, s.HypervisorBuffers, s.DeliveredBuffers), s.OutboundQueued));
        }
        return new VmStatus(Name, Pid, StateName(e.State), e.Mtu, e.PoolSize, e.HmcCount,
            string.Create(CultureInfo.InvariantCulture, $"0x{e.Config.DrcIndex:X8}"),
            new VmLimitsStatus(e.Limits.MaxMtu, e.Limits.PoolSize, e.Limits.MaxHmcs), e.BacklogCount, Recorder.Readers, counters, hmcs);
    }

    /// <summary>Messages from the guest that attached programs did not take in time (engine thread).</summary>
    internal long AttachRefused { get; set; }

    private static string StateName(Engine.Handshake.AdapterState s) => s switch
    {
        Engine.Handshake.AdapterState.NoQueue => "no-queue",
        Engine.Handshake.AdapterState.WaitInit => "wait-init",
        Engine.Handshake.AdapterState.WaitInitResponse => "wait-init-response",
        Engine.Handshake.AdapterState.WaitCapabilities => "wait-capabilities",
        Engine.Handshake.AdapterState.Ready => "ready",
        Engine.Handshake.AdapterState.Failed => "failed",
        _ => s.ToString(),
    };
}
