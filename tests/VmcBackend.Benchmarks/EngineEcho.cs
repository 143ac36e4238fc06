using System.Diagnostics;
using VmcBackend.Engine;
using VmcBackend.Testing;
using VmcBackend.Wire.Router;

namespace VmcBackend.Benchmarks;

/// <summary>
/// The echo path inside one process, no sockets: simulated partition, in-process front-end model
/// and the engine behind the seam (what AllocationTests measures for allocations). Its rate is
/// what an engine-side change (an observer check, a tracer) costs, without socket noise.
/// </summary>
internal static class EngineEcho
{
    /// <summary>Echoes of <paramref name="size"/> bytes per second; <paramref name="setup"/> runs on the engine once the session is open.</summary>
    public static double Rate(int messages, int size = 256, Action<VmcEngine>? setup = null)
    {
        var rig = new InProcessRig();
        var partition = new SimulatedPartition(rig.Device);
        var client = new PartitionClient(partition, () => rig.Device.Run());
        if (partition.Probe() != 0) throw new InvalidOperationException("probe failed");
        client.Settle();
        var f = client.OpenSession("bench-engine");
        client.Call(f, RouterOpcode.ExchangeOps, 1, default, out _);
        setup?.Invoke(rig.Engine!);
        var request = new byte[size];
        var reply = new byte[4096];
        int len = RouterClient.Build(request, RouterOpcode.Echo, 2, new byte[size - RouterClient.HeaderSize]);
        void Echo()
        {
            if (partition.Write(f, request.AsSpan(0, len)) != len) throw new InvalidOperationException("write failed");
            client.Settle();
            if (partition.Read(f, reply) != len) throw new InvalidOperationException("read failed");
        }
        for (int i = 0; i < 2000; i++) Echo();
        var sw = Stopwatch.StartNew();
        for (int i = 0; i < messages; i++) Echo();
        return messages / sw.Elapsed.TotalSeconds;
    }
}

/// <summary>What tracing costs the echo path, measured in one run: no observer (the default), an
/// observer that does nothing (the cost of being consulted), and vmcd's tracer feeding a ring that a
/// reader thread drains. Rounds alternate so that machine noise hits all three alike.</summary>
internal static class TracingCost
{
    private sealed class NoObserver : VmcBackend.Engine.Observe.IEngineObserver
    {
        public void EntryReceived(ReadOnlySpan<byte> entry) { }
        public void QueueRegistering(uint entries, bool reconnect) { }
        public void QueueFreeing() { }
        public void RdmaRequested(VmcBackend.Engine.Backend.RdmaDirection direction, ulong remoteIoba, ulong length, ReadOnlySpan<VmcBackend.Engine.Memory.GuestSegment> local) { }
        public void VmcRequested() { }
        public void ResetRequested() { }
        public void Polling() { }
        public void Returned(VmcBackend.Wire.Hcall.HcallReturn rc, ulong value) { }
        public void EntryPosted(ReadOnlySpan<byte> entry) { }
        public void MemoryAccessed(ulong address, bool write, bool ok, ReadOnlySpan<byte> data) { }
        public void MessageSeen(int hmcIndex, VmcBackend.Engine.Observe.MessageDirection direction, ReadOnlySpan<byte> message) { }
        public void ChannelFailed(VmcBackend.Engine.Backend.ChannelFailure reason, string text) { }
        public void TimeRead(long timestamp) { }
    }

    public static (double None, double Noop, double Traced, long Lost) Measure(int messages, int rounds)
    {
        var none = new List<double>();
        var noop = new List<double>();
        var traced = new List<double>();
        long lost = 0;
        for (int r = 0; r < rounds; r++)
        {
            none.Add(EngineEcho.Rate(messages));
            noop.Add(EngineEcho.Rate(messages, setup: e => e.Observer = new NoObserver()));
            var ring = new VmcBackend.Control.Trace.RecordRing(4 << 20);
            using var stop = new CancellationTokenSource();
            var reader = new Thread(() =>
            {
                while (!stop.IsCancellationRequested)
                {
                    var (a, b) = ring.Available();
                    if (a.Length + b.Length == 0) { Thread.Yield(); continue; }
                    ring.Consumed(a.Length + b.Length);
                }
            }) { IsBackground = true };
            reader.Start();
            traced.Add(EngineEcho.Rate(messages, setup: e =>
            {
                var recorder = new VmcBackend.Control.Trace.TraceRecorder(1);
                recorder.Add(ring, new VmcBackend.Control.Trace.VmInfo("bench", 0, 4096, 32, 1, 0, 1024, 1000), joined: false);
                e.Observer = recorder;
            }));
            stop.Cancel();
            reader.Join();
            lost += ring.LostTotal;
        }
        return (Median(none), Median(noop), Median(traced), lost);
    }

    private static double Median(List<double> v)
    {
        v.Sort();
        return v[v.Count / 2];
    }
}
