using VmcBackend.Benchmarks;
using VmcBackend.Engine;
using VmcBackend.ReferenceFrontEnd;
using VmcBackend.Transport.Server;

// vmc-bench --vmcd PATH [--quick]
// The physical baselines and vmcd (vmc-user version 2, reference front-end) measured in ONE run;
// prints a table and the closing line
//   bench: crq_rtt_ratio=X crq_vs_eventfd=Y rdma16k_vs_eventfd=Z alloc_per_msg=A rss_mb=W observer_noop_ratio=R
// Helper modes (second processes): --raw-echo PATH, --slot-echo PATH, --host-server SOCKET SPIN_US.
// --engine-echo N: the in-process echo rate only (5 rounds), to compare two builds of the engine.
// --tracing-cost N ROUNDS: only the three in-process echo rates of the tracing-cost rows.
if (args.Length == 2 && args[0] == "--engine-echo")
{
    for (int r = 0; r < 5; r++) Console.WriteLine($"engine echo: {EngineEcho.Rate(int.Parse(args[1])):F0} msg/s");
    return 0;
}
if (args.Length == 3 && args[0] == "--tracing-cost")
{
    var c = TracingCost.Measure(int.Parse(args[1]), int.Parse(args[2]));
    Console.WriteLine(FormattableString.Invariant($"tracing cost: none {c.None:F0} msg/s, noop observer x{c.Noop / c.None:F3}, tracer x{c.Traced / c.None:F3}, {c.Lost} records lost"));
    return 0;
}
if (args.Length == 2 && args[0] == "--raw-echo") return Baselines.RawEcho(args[1]);
if (args.Length == 2 && args[0] == "--slot-echo") return Baselines.SlotEcho(args[1]);
if (args.Length == 3 && args[0] == "--host-server") return HostServer(args[1], int.Parse(args[2]));
if (args.Length < 2 || args[0] != "--vmcd") { Console.Error.WriteLine("usage: vmc-bench --vmcd PATH [--quick]"); return 2; }
string vmcdPath = args[1];
bool quick = args.Contains("--quick");
int rounds = quick ? 20_000 : 100_000;
var dir = Directory.CreateTempSubdirectory("vmc-bench").FullName;
var rows = new List<(string Name, string Value)>();
void Row(string name, string value) { rows.Add((name, value)); Console.Error.WriteLine($"  {name,-62} {value}"); }

try
{
    var raw = Baselines.RawSocket(dir, rounds);
    Row("raw AF_UNIX round trip 28/20 B, two processes (median, p99)", raw.ToString());
    var slot = Baselines.EventFdSlot(dir, rounds);
    Row("eventfd + shared-slot round trip, two processes (median, p99)", slot.ToString());
    var (copyGbps, copyNs) = Baselines.Memcpy(16384);
    Row("memcpy 16 KiB memfd -> memfd (hot)", $"{copyNs / 1000:F2} us, {copyGbps:F1} GB/s");

    Row("vmcd cold start to listening (median of 5)", $"{VmcdBench.ColdStartMs(vmcdPath, dir, 5):F0} ms");

    var cost = TracingCost.Measure(quick ? 200_000 : 1_000_000, quick ? 3 : 5);
    Row("in-process echo, 256 B, no observer (the default; median of rounds)", $"{cost.None:F0} msg/s");
    Row("  an observer that does nothing: ratio to no observer", $"{cost.Noop / cost.None:F3}");
    Row("  vmcd's tracer into a 4 MiB ring a reader drains: ratio to no observer", $"{cost.Traced / cost.None:F3} ({cost.Lost} records lost)");
    double traceOff = cost.Noop / cost.None;

    double crqRatio, crqVsEventfd, rdmaVsEventfd, alloc, rssMb;
    using (var vmcd = new VmcdProcess(vmcdPath, Path.Combine(dir, "vmcd.sock"), "--log-level Warning --max-mtu 16384 --max-hmcs 2", Path.Combine(dir, "vmcd.log")))
    {
        long rssStart = vmcd.RssKiB();
        var crq = VmcdBench.SendCrq(vmcd.Socket, rounds);
        Row("vmcd H_SEND_CRQ round trip via SQ/OQ + eventfds (median, p99)", crq.ToString());
        crqVsEventfd = crq.Median / slot.Median;
        crqRatio = crq.Median / raw.Median;
        Row("  ratio to the eventfd + shared-slot round trip (target <= 1.5)", $"{crqVsEventfd:F2}");
        Row("  ratio to the raw AF_UNIX round trip", $"{crqRatio:F2}");

        // The ratio uses a front-end that sleeps on the done eventfd at once, like the baseline;
        // the second figure is QEMU's way (spin briefly first).
        var rdma = VmcdBench.CopyRdma(vmcd.Socket, 16384, rounds / 2, frontEndSpinUs: 0);
        double floor = slot.Median + copyNs / 1000;
        rdmaVsEventfd = rdma.Median / floor;
        Row("vmcd H_COPY_RDMA 16 KiB via the request slot (median, p99)", $"{rdma} ({16384 / rdma.Median / 1000:F2} GB/s)");
        Row("  ratio to eventfd round trip + 16 KiB memcpy (target <= 1.5)", $"{rdmaVsEventfd:F2}");
        var rdmaSpin = VmcdBench.CopyRdma(vmcd.Socket, 16384, rounds / 2, frontEndSpinUs: 20);
        Row("vmcd H_COPY_RDMA 16 KiB, front-end spins 20 us first (median, p99)", $"{rdmaSpin} ({16384 / rdmaSpin.Median / 1000:F2} GB/s)");

        int echoes = quick ? 5_000 : 20_000;
        Row("vmcd full echo through a whole guest, 1 session", $"{VmcdBench.Echo(vmcd.Socket, 1, echoes):F0} msg/s");
        Row("vmcd full echo through a whole guest, 2 sessions", $"{VmcdBench.Echo(vmcd.Socket, 2, echoes):F0} msg/s");

        long rssBefore = vmcd.RssKiB();
        int million = quick ? 100_000 : 1_000_000;
        VmcdBench.SendCrq(vmcd.Socket, million);
        long rssAfter = vmcd.RssKiB();
        rssMb = rssAfter / 1024.0;
        Row($"vmcd RSS at start / before / after {million:N0} SEND_CRQ", $"{rssStart / 1024.0:F1} / {rssBefore / 1024.0:F1} / {rssAfter / 1024.0:F1} MiB");
    }
    using (var vmcd = new VmcdProcess(vmcdPath, Path.Combine(dir, "alloc.sock"), "--log-level Information", Path.Combine(dir, "alloc.log")))
    {
        alloc = VmcdBench.AllocationsPerMessage(vmcd, quick ? 5_000 : 20_000);
        Row("managed bytes vmcd allocates per echo (its connection thread)", $"{alloc:F2}");
    }
    // Spin before sleeping: the same server code hosted by this program with and without it.
    foreach (int spin in new[] { 0, 20, 100 })
    {
        using var host = new VmcdProcess(Path.Combine(dir, $"spin{spin}.sock"), ["--host-server", Path.Combine(dir, $"spin{spin}.sock"), spin.ToString()], "");
        var s = VmcdBench.SendCrq(host.Socket, rounds / 2);
        Row($"SEND_CRQ round trip, back-end spins {spin,3} us before epoll (median, p99)", $"{s} (x{s.Median / slot.Median:F2})");
    }

    Console.WriteLine();
    Console.WriteLine("| measurement | value |");
    Console.WriteLine("|---|---|");
    foreach (var r in rows) Console.WriteLine($"| {r.Name.Trim()} | {r.Value} |");
    Console.WriteLine();
    Console.WriteLine(FormattableString.Invariant($"bench: crq_rtt_ratio={crqRatio:F2} crq_vs_eventfd={crqVsEventfd:F2} rdma16k_vs_eventfd={rdmaVsEventfd:F2} alloc_per_msg={alloc:F2} rss_mb={rssMb:F1} observer_noop_ratio={traceOff:F3}"));
    return 0;
}
finally
{
    Directory.Delete(dir, true);
}

static int HostServer(string socket, int spin)
{
    using var server = VmcServer.Listen(socket, VmcEngine.Factory(new VmcLimits()), Serilog.Core.Logger.None,
        new VmcServerOptions { SpinMicroseconds = spin });
    server.Start();
    Thread.Sleep(Timeout.Infinite);
    return 0;
}
