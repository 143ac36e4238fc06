using System.Diagnostics;
using VmcBackend.ReferenceFrontEnd;
using VmcBackend.Testing;
using VmcBackend.Wire.Router;

// vmc-frontend --socket PATH [--seconds N] [--hmcs 1|2] [--size BYTES]
// Plays QEMU against a running vmcd with the simulated partition and echoes messages through the
// HMC command router for N seconds. Prints "PASS:" lines and one summary line; exit 1 on failure.
string? socket = null;
double seconds = 3;
int hmcs = 1, size = 1024;
for (int i = 0; i + 1 < args.Length; i += 2)
{
    switch (args[i])
    {
        case "--socket": socket = args[i + 1]; break;
        case "--seconds": seconds = double.Parse(args[i + 1], System.Globalization.CultureInfo.InvariantCulture); break;
        case "--hmcs": hmcs = int.Parse(args[i + 1]); break;
        case "--size": size = int.Parse(args[i + 1]); break;
        default: Console.Error.WriteLine($"unknown option {args[i]}"); return 2;
    }
}
if (socket == null) { Console.Error.WriteLine("usage: vmc-frontend --socket PATH [--seconds N] [--hmcs 1|2] [--size BYTES]"); return 2; }

try
{
    using var fe = new FrontEnd(socket);
    var partition = new SimulatedPartition(fe.Platform, maxHmcs: hmcs);
    var client = new PartitionClient(partition, () => fe.TakeInterrupts());
    if (partition.Probe() != 0) throw new Exception("H_REG_CRQ failed");
    client.Settle();
    if (partition.State != DriverState.Ready) throw new Exception($"adapter not ready (state {partition.State})");
    Console.WriteLine($"PASS: loopback/handshake (MTU {partition.MaxMtu}, pool {partition.MaxBufferPoolSize}, DRC 0x{fe.Config.DrcIndex:X8})");
    var files = new SimulatedPartition.VmcFile[hmcs];
    for (int h = 0; h < hmcs; h++)
    {
        files[h] = client.OpenSession($"loopback-{h}");
        if (client.Call(files[h], RouterOpcode.ExchangeOps, 0, default, out _).ReturnCode != 0) throw new Exception("exchange-ops failed");
    }
    Console.WriteLine($"PASS: loopback/sessions-opened ({hmcs})");
    var data = new byte[Math.Min(size, partition.MaxMtu - RouterHeader.Size)];
    var rng = new Random(1);
    long messages = 0, bytes = 0;
    var sw = Stopwatch.StartNew();
    while (sw.Elapsed.TotalSeconds < seconds)
    {
        rng.NextBytes(data);
        var f = files[messages % hmcs];
        var h = client.Call(f, RouterOpcode.Echo, (uint)messages, data, out var resp);
        if (h.ReturnCode != 0 || h.Token != (uint)messages || !resp.AsSpan(RouterHeader.Size).SequenceEqual(data))
            throw new Exception($"echo {messages} came back wrong (rc 0x{h.ReturnCode:X4})");
        messages++;
        bytes += 2L * (RouterHeader.Size + data.Length);
    }
    Console.WriteLine($"PASS: loopback/echo ({messages} messages verified)");
    foreach (var f in files) partition.Close(f);
    client.Settle();
    if (partition.Violations.Count > 0) throw new Exception("driver traps triggered: " + string.Join("; ", partition.Violations));
    Console.WriteLine($"loopback ok: {messages} messages echoed, {bytes} bytes moved, {messages / sw.Elapsed.TotalSeconds:F0} echoes/s, {fe.Interrupts} interrupts");
    return 0;
}
catch (Exception e)
{
    Console.WriteLine($"FAIL: loopback: {e.Message}");
    return 1;
}
