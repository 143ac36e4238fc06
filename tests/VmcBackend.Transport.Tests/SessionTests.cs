using VmcBackend.Engine;
using VmcBackend.ReferenceFrontEnd;
using VmcBackend.Testing;
using VmcBackend.Wire.Router;

namespace VmcBackend.Transport.Tests;

/// <summary>
/// vmcd's real engine behind the v2 transport, driven by the reference front-end (the spapr-vmc
/// device model over the socket and rings) with the simulated ibmvmc partition on it.
/// </summary>
public class SessionTests
{
    internal static ServerFixture Engine(VmcLimits? limits = null, Transport.Server.VmcServerOptions? options = null)
        => new(VmcEngine.Factory(limits ?? new VmcLimits { MaxHmcs = 2 }), options);

    private static byte[] Data(int size, int seed)
    {
        var d = new byte[size];
        new Random(seed).NextBytes(d);
        return d;
    }

    [Test]
    public void HandshakeAndEchoThroughTheRings()
    {
        using var fx = Engine();
        using var g = new ReferenceGuest(fx.Path);
        Assert.That(g.Device.Config.DrcIndex, Is.EqualTo(new VmcLimits().DrcIndex));
        Assert.That(g.Partition.RequestVmc(out uint drc), Is.EqualTo(0));
        Assert.That(drc, Is.EqualTo(new VmcLimits().DrcIndex));
        var f = g.OpenRouter();
        foreach (int size in new[] { 1, 32, 2048, 4096 - 32 }) g.Echo(f, Data(size, size), (uint)size);
        for (uint i = 0; i < 300; i++) g.Echo(f, Data(100, (int)i), i);
        Assert.That(g.Partition.Interrupts, Is.GreaterThan(300), "the device raised the VIO interrupt for vmcd's entries");
        Assert.That(g.Partition.Violations, Is.Empty);
        Assert.That(g.Device.Losses, Is.EqualTo(0));
        Assert.That(fx.Collector.Errors, Is.Empty);
        g.Dispose();
        Assert.That(ServerFixture.WaitFor(() => fx.Server.ConnectionCount == 0));
        var unnamed = fx.Collector.Events.Where(e => !e.Properties.ContainsKey("Connection")).Select(e => e.RenderMessage()).ToArray();
        Assert.That(unnamed, Is.Empty, "every line (the engine's too, at disconnect too) names its connection");
    }

    [Test]
    public void TwoVmsAtOnceHaveSeparateEngines()
    {
        using var fx = Engine();
        var errors = new System.Collections.Concurrent.ConcurrentQueue<string>();
        int bothConnected = -1;
        using var together = new Barrier(2, _ => bothConnected = fx.Server.ConnectionCount);
        void Run(int vm)
        {
            try
            {
                using var g = new ReferenceGuest(fx.Path);
                var f = g.OpenRouter($"vm{vm}");
                together.SignalAndWait();
                for (uint i = 0; i < 400; i++) g.Echo(f, Data(64 + vm * 100, vm), i + (uint)vm * 100000);
                if (g.Partition.Violations.Count > 0) errors.Enqueue(string.Join(";", g.Partition.Violations));
            }
            catch (Exception e) { errors.Enqueue($"vm{vm}: {e.Message}"); together.RemoveParticipant(); }
        }
        var t1 = new Thread(() => Run(1));
        var t2 = new Thread(() => Run(2));
        t1.Start(); t2.Start();
        t1.Join(); t2.Join();
        Assert.That(errors, Is.Empty);
        Assert.That(bothConnected, Is.EqualTo(2), "both VMs were connected at the same time");
        Assert.That(ServerFixture.WaitFor(() => fx.Server.ConnectionCount == 0), "connections freed after the front-ends closed");
    }

    [Test]
    public void FrontEndDisconnectMidSessionThenReconnect()
    {
        using var fx = Engine();
        using var g = new ReferenceGuest(fx.Path);
        var f = g.OpenRouter();
        g.Echo(f, Data(10, 1), 1);
        g.Device.Lose("test: the front-end drops the connection");
        g.Client.Settle();
        Assert.That(g.Partition.TransportEvents, Is.EqualTo(1), "the device delivered the transport event");
        g.Device.Connect(TimeSpan.FromSeconds(5));
        g.Client.Settle();
        Assert.That(g.Partition.State, Is.EqualTo(DriverState.Ready), "REG_CRQ with RECONNECT: vmcd started the handshake");
        Assert.That(g.Partition.Read(f, new byte[64]), Is.EqualTo(-Errno.EBADFD), "the old session is gone");
        var f2 = g.OpenRouter("again");
        g.Echo(f2, Data(500, 2), 2);
        Assert.That(ServerFixture.WaitFor(() => fx.Server.ConnectionCount == 1), "the old connection was freed");
        Assert.That(g.Partition.Violations, Is.Empty);
    }

    [Test]
    public void VmcdRestartMidSessionThenReconnect()
    {
        using var fx = Engine();
        using var g = new ReferenceGuest(fx.Path);
        var f = g.OpenRouter();
        g.Echo(f, Data(10, 1), 1);
        fx.Restart();
        // The device notices the closed socket in its event loop and gives the guest a transport event.
        Assert.That(ServerFixture.WaitFor(() => { g.Client.Settle(); return g.Device.Link == null; }), "the device saw vmcd go away");
        Assert.That(g.Partition.TransportEvents, Is.EqualTo(1));
        Assert.That(g.Partition.Write(f, RouterClient.Request(RouterOpcode.Echo, 2, [1])), Is.Negative, "writes fail while vmcd is away");
        g.Device.Connect(TimeSpan.FromSeconds(5));
        g.Client.Settle();
        Assert.That(g.Partition.State, Is.EqualTo(DriverState.Ready));
        var f2 = g.OpenRouter("after-restart");
        for (uint i = 0; i < 50; i++) g.Echo(f2, Data(200, (int)i), i);
        Assert.That(g.Partition.Violations, Is.Empty);
    }

    [Test]
    public void GuestResetDuringAnOutageSucceedsAndVmcdTakesTheQueueOver()
    {
        using var fx = Engine();
        using var g = new ReferenceGuest(fx.Path);
        g.OpenRouter();
        fx.Server.Stop();
        Assert.That(ServerFixture.WaitFor(() => { g.Client.Settle(); return g.Device.Link == null; }));
        // The driver's reset path (H_FREE_CRQ, H_REG_CRQ) while no back-end is there: 0 (docs/protocol.md section 4).
        g.Partition.ResetAdapter();
        g.Client.Settle();
        Assert.That(g.Device.Queue.IsRegistered, "H_REG_CRQ succeeded during the outage");
        fx.Restart();
        g.Device.Connect(TimeSpan.FromSeconds(5));
        g.Client.Settle();
        Assert.That(g.Partition.State, Is.EqualTo(DriverState.Ready));
        var f = g.OpenRouter("after-outage");
        g.Echo(f, Data(300, 3), 3);
    }

    /// <summary>Issue 12 item 6: 100 reference front-ends echo at once through one vmcd.</summary>
    [Test]
    public void HundredGuestsEchoAtOnceFairly()
    {
        using var fx = Engine();
        const int N = 100;
        var counts = new long[N];
        var errors = new System.Collections.Concurrent.ConcurrentQueue<string>();
        using var ready = new Barrier(N + 1);
        long stopAt = long.MaxValue;
        var threads = Enumerable.Range(0, N).Select(i => new Thread(() =>
        {
            bool signalled = false;
            try
            {
                using var g = new ReferenceGuest(fx.Path, ramBytes: 4 << 20);
                var f = g.OpenRouter($"g{i}");
                var data = Data(200, i);
                ready.SignalAndWait();
                signalled = true;
                long n = 0;
                while (Environment.TickCount64 < Volatile.Read(ref stopAt)) g.Echo(f, data, (uint)n++);
                counts[i] = n;
            }
            catch (Exception e) { errors.Enqueue($"guest {i}: {e.Message}"); if (!signalled) ready.RemoveParticipant(); }
        }) { IsBackground = true }).ToList();
        threads.ForEach(t => t.Start());
        Assert.That(ready.SignalAndWait(TimeSpan.FromSeconds(120)), "all 100 guests came up");
        Assert.That(fx.Server.ConnectionCount, Is.EqualTo(N));
        Volatile.Write(ref stopAt, Environment.TickCount64 + 5000);
        foreach (var t in threads) Assert.That(t.Join(TimeSpan.FromSeconds(60)), "guest finished");
        Assert.That(errors, Is.Empty);
        var sorted = counts.Order().ToArray();
        double median = sorted[N / 2] / 5.0, slowest = sorted[0] / 5.0;
        TestContext.Out.WriteLine($"100 guests echoing for 5 s through one vmcd: median {median:F0} echoes/s, slowest {slowest:F0}/s " +
            $"({slowest / median:P0} of the median), fastest {sorted[^1] / 5.0:F0}/s, total {counts.Sum() / 5.0:F0}/s");
        Assert.That(slowest, Is.GreaterThan(0), "every guest echoed");
        Assert.That(slowest, Is.GreaterThanOrEqualTo(median / 2), "slowest >= half the median");
    }

    /// <summary>
    /// Issue 12 item 6: 1,000 connect/disconnect cycles of whole guests against the real vmcd
    /// process leave its RSS, open fds and threads within 5% of where they started.
    /// </summary>
    [Test]
    public void ThousandGuestConnectionsLeaveVmcdWhereItStarted()
    {
        using var vmcd = VmcdProcess.Start();
        void Cycle(int i)
        {
            using var g = new ReferenceGuest(vmcd.Socket, ramBytes: 2 << 20);
            if (i % 10 == 0) g.Echo(g.OpenRouter(), Data(100, i), (uint)i);
        }
        // Warm-up: JIT and the GC heap's size (measured: RSS climbs ~4 MiB over the first ~500
        // connections, then stays flat for thousands more). vmcd's RSS moves up and down with its
        // GC cycle, so the starting level is the highest of the samples over the last 200 warm-up
        // connections; fds and threads are exact.
        long warmRss = 0;
        for (int i = 0; i < 600; i++)
        {
            Cycle(i);
            if (i >= 400 && i % 10 == 0) warmRss = Math.Max(warmRss, vmcd.Measure().RssKiB);
        }
        var start = vmcd.Measure() with { RssKiB = Math.Max(warmRss, vmcd.Measure().RssKiB) };
        for (int i = 0; i < 1000; i++) Cycle(i);
        VmcdProcess.Resources end = default;
        bool settled = ServerFixture.WaitFor(() => (end = vmcd.Measure()).Within(start, 0.05), 5000);
        TestContext.Out.WriteLine($"vmcd after 1,000 guest connections: RSS {start.RssKiB / 1024.0:F1} -> {end.RssKiB / 1024.0:F1} MiB, " +
            $"fds {start.Fds} -> {end.Fds}, threads {start.Threads} -> {end.Threads}");
        Assert.That(settled, "RSS, open fds and threads within 5% of the start");
        Assert.That(vmcd.ErrorLines(), Is.Empty);
    }
}
