using System.Diagnostics;
using System.Globalization;
using VmcBackend.ReferenceFrontEnd;
using VmcBackend.Testing;

// vmc-frontend --socket PATH [--seconds N] [--hmcs 1|2] [--size BYTES]
// Plays QEMU's spapr-vmc device (vmc-user version 2) against a running vmcd, with the simulated
// ibmvmc partition on it, and echoes messages through the HMC command router for N seconds.
// Prints "PASS:" lines and one summary line; exit 1 on failure.
string? socket = null;
double seconds = 3;
int hmcs = 1, size = 1024;
for (int i = 0; i + 1 < args.Length; i += 2)
{
    switch (args[i])
    {
        case "--socket": socket = args[i + 1]; break;
        case "--seconds": seconds = double.Parse(args[i + 1], CultureInfo.InvariantCulture); break;
        case "--hmcs": hmcs = int.Parse(args[i + 1], CultureInfo.InvariantCulture); break;
        case "--size": size = int.Parse(args[i + 1], CultureInfo.InvariantCulture); break;
        default: Console.Error.WriteLine($"unknown option {args[i]}"); return 2;
    }
}
if (socket == null) { Console.Error.WriteLine("usage: vmc-frontend --socket PATH [--seconds N] [--hmcs 1|2] [--size BYTES]"); return 2; }

try
{
    using var g = new ReferenceGuest(socket, hmcs);
    var p = g.Partition;
    Console.WriteLine($"PASS: loopback/handshake (MTU {p.MaxMtu}, pool {p.MaxBufferPoolSize}, DRC 0x{g.Device.Config.DrcIndex:X8})");
    var files = new SimulatedPartition.VmcFile[hmcs];
    for (int h = 0; h < hmcs; h++) files[h] = g.OpenRouter($"loopback-{h}");
    Console.WriteLine($"PASS: loopback/sessions-opened ({hmcs})");
    var data = new byte[Math.Min(size, p.MaxMtu - RouterClient.HeaderSize)];
    var rng = new Random(1);
    long messages = 0, bytes = 0;
    var sw = Stopwatch.StartNew();
    while (sw.Elapsed.TotalSeconds < seconds)
    {
        rng.NextBytes(data);
        g.Echo(files[messages % hmcs], data, (uint)messages);
        messages++;
        bytes += 2L * (RouterClient.HeaderSize + data.Length);
    }
    Console.WriteLine($"PASS: loopback/echo ({messages} messages verified)");
    foreach (var f in files) p.Close(f);
    g.Client.Settle();
    if (p.Violations.Count > 0) throw new Exception("driver traps triggered: " + string.Join("; ", p.Violations));
    if (g.Device.Losses > 0) throw new Exception($"the back-end was lost: {g.Device.LastLoss}");
    Console.WriteLine($"loopback ok: {messages} messages echoed, {bytes} bytes moved, {messages / sw.Elapsed.TotalSeconds:F0} echoes/s, {p.Interrupts} interrupts");
    return 0;
}
catch (Exception e)
{
    Console.WriteLine($"FAIL: loopback: {e.Message}");
    return 1;
}
