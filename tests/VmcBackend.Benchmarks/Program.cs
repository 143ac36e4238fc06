using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.Sockets;
using VmcBackend.ReferenceFrontEnd;
using VmcBackend.Testing;
using VmcBackend.Transport.Interop;
using VmcBackend.Transport.Memory;
using VmcBackend.Transport.Protocol;
using VmcBackend.Transport.Server;
using VmcBackend.Wire.Router;

// vmc-bench --vmcd PATH-TO-VMCD [--quick]
// Measures the physical baselines and vmcd side by side in one run and prints ratios.
// Also: vmc-bench --echo-server SOCKET (the baseline's second process).
if (args.Length == 2 && args[0] == "--echo-server") return EchoServer(args[1]);
string vmcd = args.Length >= 2 && args[0] == "--vmcd" ? args[1] : throw new ArgumentException("usage: vmc-bench --vmcd PATH [--quick]");
bool quick = args.Contains("--quick");
int rounds = quick ? 20_000 : 100_000;
var dir = Directory.CreateTempSubdirectory("vmc-bench").FullName;
var rows = new List<(string Name, string Value)>();
void Row(string name, string value) { rows.Add((name, value)); Console.Error.WriteLine($"  {name,-48} {value}"); }

// ---- baseline: raw AF_UNIX round trip between two processes, same sizes as SEND_CRQ (28 B out, 20 B back)
var rawSock = Path.Combine(dir, "raw.sock");
var echo = Process.Start(new ProcessStartInfo(Environment.ProcessPath!, $"--echo-server {rawSock}"))!;
WaitForSocket(rawSock);
var raw = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
raw.Connect(new UnixDomainSocketEndPoint(rawSock));
var outBuf = new byte[28];
var inBuf = new byte[20];
var rawLat = Measure(rounds, () => { raw.Send(outBuf); ReceiveExact(raw, inBuf); });
raw.Dispose();
echo.WaitForExit(5000);
Row("raw AF_UNIX round trip 28/20 B (median, p99)", $"{rawLat.Median:F1} us, {rawLat.P99:F1} us");

// ---- baseline: memcpy between two memfd mappings
using (var a = new SharedMemfd("a", 1 << 20))
using (var b = new SharedMemfd("b", 1 << 20))
{
    foreach (int size in new[] { 4096, 16384 })
    {
        double gbps = Throughput(size, () => a.Span[..size].CopyTo(b.Span), out _);
        Row($"memcpy memfd->memfd {size / 1024} KiB", $"{gbps:F1} GB/s");
        if (size == 16384) rows.Add(("memcpy16k_gbps", $"{gbps:F2}"));
    }
}

// ---- vmcd (separate process, Release)
var sock = Path.Combine(dir, "vmcd.sock");
var coldStarts = new List<double>();
for (int i = 0; i < 5; i++)
{
    var sw = Stopwatch.StartNew();
    var p = StartVmcd(sock, "");
    WaitForSocket(sock);
    coldStarts.Add(sw.Elapsed.TotalMilliseconds);
    p.Kill(); p.WaitForExit();
    File.Delete(sock);
}
coldStarts.Sort();
Row("vmcd cold start to listening (median of 5)", $"{coldStarts[2]:F0} ms");

var daemon = StartVmcd(sock, "--max-mtu 16384 --max-hmcs 2");
WaitForSocket(sock);
long rssStart = Rss(daemon.Id);
using (var fe = new FrontEnd(sock, 16 << 20))
{
    var partition = new SimulatedPartition(fe.Platform, 16384, maxHmcs: 2);
    var client = new PartitionClient(partition, () => fe.TakeInterrupts());
    partition.Probe();
    client.Settle();
    // SEND_CRQ round trip: an init entry, answered by an entry in the guest queue and the call eventfd.
    var init = new byte[16];
    init[0] = 0xC0; init[1] = 0x01;
    var segs = fe.Client.QueueSegments;
    uint entries = fe.Client.QueueEntries;
    var crqLat = Measure(rounds, () =>
    {
        if (fe.Client.SendCrq(init) != 0) throw new Exception("SEND_CRQ failed");
        if (fe.TakeInterrupts() == 0) throw new Exception("no interrupt");
        uint slot = (fe.PublishedTail + entries - 1) % entries;
        if (!VmcBackend.Testing.FrontEnd.GuestQueueWriter.TryLocateSlot(segs, slot, out ulong gpa)) throw new Exception("slot outside queue");
        if (!fe.GuestMemory.TryReadByteAcquire(gpa, out byte v) || v != 0xC0) throw new Exception("no entry in the guest queue");
        fe.GuestMemory.TryWriteByteRelease(gpa, 0);
    });
    Row("vmcd H_SEND_CRQ round trip (median, p99)", $"{crqLat.Median:F1} us, {crqLat.P99:F1} us");
    double ratio = crqLat.Median / rawLat.Median;
    Row("  ratio to raw AF_UNIX round trip (target <= 1.5)", $"{ratio:F2}");
    rows.Add(("crq_rtt_ratio", $"{ratio:F2}"));

    // Back to a working channel: the partition's own reset path.
    partition.ResetAdapter();
    client.Settle();
    var f1 = client.OpenSession("bench-1");
    client.Call(f1, RouterOpcode.ExchangeOps, 0, default, out _);

    // H_COPY_RDMA into buffer 0 of HMC 0 (partition-owned after the reply was read).
    foreach (int size in new[] { 4096, 16384 })
    {
        var local = new VmcBackend.Engine.Memory.GuestSegment[] { new(0x10_0000, (ulong)size) };
        double gbps = Throughput(size, () =>
        {
            if (fe.Client.CopyRdma(VmcBackend.Engine.Backend.RdmaDirection.LocalToRemote, 0, (ulong)size, local) != 0) throw new Exception("RDMA failed");
        }, out double perSec);
        Row($"vmcd H_COPY_RDMA {size / 1024} KiB", $"{perSec:F0} req/s, {gbps:F2} GB/s");
        if (size == 16384) rows.Add(("rdma16k_gbps", $"{gbps:F2}"));
    }

    // Full echo (RDMA in + SIGNAL + router + SIGNAL + RDMA out) on 1 and 2 sessions, allocation-free loop.
    var f2 = client.OpenSession("bench-2");
    client.Call(f2, RouterOpcode.ExchangeOps, 0, default, out _);
    var req = new byte[256];
    var resp = new byte[16384];
    int len = RouterClient.Build(req, RouterOpcode.Echo, 1, new byte[256 - 32]);
    void EchoOn(SimulatedPartition.VmcFile f)
    {
        if (partition.Write(f, req.AsSpan(0, len)) != len) throw new Exception("write failed");
        fe.TakeInterrupts();
        partition.Settle();
        if (partition.Read(f, resp) != len) throw new Exception("echo lost");
    }
    foreach (int sessions in new[] { 1, 2 })
    {
        int n = quick ? 5_000 : 20_000;
        for (int i = 0; i < 1000; i++) EchoOn(i % sessions == 0 ? f1 : f2);
        var sw = Stopwatch.StartNew();
        for (int i = 0; i < n; i++) EchoOn(i % sessions == 0 ? f1 : f2);
        Row($"vmcd full echo, {sessions} session(s)", $"{n / sw.Elapsed.TotalSeconds:F0} msg/s");
    }

    // Managed allocations per message: vmcd in-process on the same code path, whole-process count.
    rows.Add(("alloc_per_msg", $"{AllocationsPerMessage(dir, quick):F2}"));
    Row("managed bytes allocated per echo (vmcd in-process)", rows[^1].Value);

    // RSS flat over 1M messages (SEND_CRQ frames through the real daemon).
    int million = quick ? 200_000 : 1_000_000;
    long rssBefore = Rss(daemon.Id);
    var entry = new byte[16];
    entry[0] = 0x80; entry[1] = 0x99;           // unknown type: parsed, logged at debug, dropped
    for (int i = 0; i < million; i++) fe.Client.SendCrq(entry);
    long rssAfter = Rss(daemon.Id);
    Row($"vmcd RSS at start / before / after {million:N0} messages", $"{rssStart / 1024.0:F1} / {rssBefore / 1024.0:F1} / {rssAfter / 1024.0:F1} MiB");
    rows.Add(("rss_mb", $"{rssAfter / 1024.0:F1}"));
    rows.Add(("rss_growth_mb", $"{(rssAfter - rssBefore) / 1024.0:F1}"));
}
daemon.Kill();
daemon.WaitForExit();
Directory.Delete(dir, true);

string Get(string k) => rows.First(r => r.Name == k).Value;
Console.WriteLine();
Console.WriteLine("| measurement | value |");
Console.WriteLine("|---|---|");
foreach (var r in rows.Where(r => r.Name.Contains(' '))) Console.WriteLine($"| {r.Name.Trim()} | {r.Value} |");
Console.WriteLine();
Console.WriteLine($"bench: crq_rtt_ratio={Get("crq_rtt_ratio")} rdma16k_gbps={Get("rdma16k_gbps")} alloc_per_msg={Get("alloc_per_msg")} rss_mb={Get("rss_mb")}");
return 0;

// ---------------------------------------------------------------- helpers

static (double Median, double P99) Measure(int n, Action op)
{
    for (int i = 0; i < Math.Min(n / 10, 5000); i++) op();
    var t = new double[n];
    for (int i = 0; i < n; i++)
    {
        long s = Stopwatch.GetTimestamp();
        op();
        t[i] = Stopwatch.GetElapsedTime(s).TotalMicroseconds;
    }
    Array.Sort(t);
    return (t[n / 2], t[(int)(n * 0.99)]);
}

static double Throughput(int bytes, Action op, out double perSecond)
{
    for (int i = 0; i < 2000; i++) op();
    int n = 0;
    var sw = Stopwatch.StartNew();
    while (sw.ElapsedMilliseconds < 500) { for (int i = 0; i < 100; i++) op(); n += 100; }
    perSecond = n / sw.Elapsed.TotalSeconds;
    return perSecond * bytes / 1e9;
}

static double AllocationsPerMessage(string dir, bool quick)
{
    var path = Path.Combine(dir, "inproc.sock");
    using var server = VmcServer.Listen(path, new VmcBackend.Engine.VmcLimits(), Serilog.Core.Logger.None);
    server.Start();
    using var fe = new FrontEnd(path);
    var partition = new SimulatedPartition(fe.Platform);
    var client = new PartitionClient(partition, () => fe.TakeInterrupts());
    partition.Probe();
    client.Settle();
    var f = client.OpenSession("alloc");
    client.Call(f, RouterOpcode.ExchangeOps, 0, default, out _);
    var req = new byte[128];
    var resp = new byte[4096];
    int len = RouterClient.Build(req, RouterOpcode.Echo, 1, new byte[96]);
    void Echo()
    {
        partition.Write(f, req.AsSpan(0, len));
        fe.TakeInterrupts();
        partition.Settle();
        if (partition.Read(f, resp) != len) throw new Exception("echo lost");
    }
    for (int i = 0; i < 5000; i++) Echo();
    int n = quick ? 10_000 : 50_000;
    long before = GC.GetTotalAllocatedBytes(true);
    for (int i = 0; i < n; i++) Echo();
    return (GC.GetTotalAllocatedBytes(true) - before) / (double)n;
}

static long Rss(int pid)
{
    foreach (var line in File.ReadLines($"/proc/{pid}/status"))
        if (line.StartsWith("VmRSS:")) return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]);
    return 0;
}

Process StartVmcd(string socket, string extra)
    => Process.Start(new ProcessStartInfo(vmcd, $"--socket {socket} --log-level Warning {extra}") { RedirectStandardError = false })!;

static void WaitForSocket(string path)
{
    var sw = Stopwatch.StartNew();
    while (!File.Exists(path)) { if (sw.ElapsedMilliseconds > 10000) throw new Exception($"{path} never appeared"); Thread.SpinWait(1000); }
}

static void ReceiveExact(Socket s, byte[] buf)
{
    int got = 0;
    while (got < buf.Length) { int n = s.Receive(buf, got, buf.Length - got, SocketFlags.None); if (n <= 0) throw new IOException("closed"); got += n; }
}

static int EchoServer(string path)
{
    using var l = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
    l.Bind(new UnixDomainSocketEndPoint(path));
    l.Listen(1);
    using var c = l.Accept();
    var inBuf = new byte[28];
    var outBuf = new byte[20];
    try { while (true) { ReceiveExact(c, inBuf); c.Send(outBuf); } }
    catch (IOException) { }
    catch (SocketException) { }
    return 0;
}
