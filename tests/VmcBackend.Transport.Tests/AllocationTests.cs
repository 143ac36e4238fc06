using Serilog.Events;
using VmcBackend.ReferenceFrontEnd.Wire;

namespace VmcBackend.Transport.Tests;

/// <summary>
/// The ring path allocates nothing per message, measured on vmcd's connection thread itself
/// (GC.GetAllocatedBytesForCurrentThread, reported in the disconnect log line), not with a
/// process-wide counter that the test's own front-end would disturb.
/// </summary>
public class AllocationTests
{
    private static long ConnectionAllocations(ServerFixture fx, int echoes)
    {
        int before = fx.Collector.Lines.Count(l => l.Text.Contains("disconnected after"));
        using (var fe = new LinkedFrontEnd(fx))
        {
            Assert.That(fe.Channel.Request(Ch.KindRegCrq, 64)?.Rc, Is.EqualTo(0));
            var e = new byte[16];
            e[0] = 0x80; e[1] = 0x02;
            for (int i = 0; i < echoes; i++) { e[15] = (byte)i; fe.Echo(e); }
            Assert.That(fe.Channel.Request(Ch.KindRequestVmc)?.Rc, Is.EqualTo(0));
        }
        Assert.That(ServerFixture.WaitFor(() => fx.Collector.Lines.Count(l => l.Text.Contains("disconnected after")) > before));
        var ev = fx.Collector.Events.Last(e => e.MessageTemplate.Text.Contains("disconnected after"));
        return (long)((ScalarValue)ev.Properties["AllocatedBytes"]).Value!;
    }

    [Test]
    public void RingPathAllocatesNothingPerMessageOnTheConnectionThread()
    {
        using var fx = new ServerFixture();
        ConnectionAllocations(fx, 3000);                 // warm-up (JIT tiering)
        long small = ConnectionAllocations(fx, 1000);
        long large = ConnectionAllocations(fx, 21000);
        double perMessage = (large - small) / 20000.0;
        TestContext.Out.WriteLine($"connection thread: {small} bytes for 1,000 echoes, {large} for 21,000 ({perMessage:F3} bytes per message)");
        Assert.That(perMessage, Is.LessThan(0.5), "no managed allocation per message");
    }
}
