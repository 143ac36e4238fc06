using VmcBackend.Engine.Router;
using VmcBackend.Testing;
using VmcBackend.Wire.Router;

namespace VmcBackend.Engine.Tests;

/// <summary>Replacing an HMC's session handler at run time (what vmcctl attach and detach do).</summary>
public class HandlerSwapTests
{
    [Test]
    public void ASwapMidSessionKeepsTheGuestsSessionAndEachHandlerSeesWholeSessions()
    {
        var router = new HmcCommandRouter();
        var h = new Harness(handlers: _ => router);
        var f = h.OpenRouterSession("swap");
        byte session = h.Partition.HmcSession(0);
        Assert.That(router.IsOpen, Is.True);

        var host = new HostEndpoint();
        Assert.That(h.Engine.SetHandler(0, host), Is.SameAs(router));
        Assert.That((host.Opens, host.Output?.IsOpen), Is.EqualTo((1, (bool?)true)), "the new handler is told the session is open");
        Assert.That(router.IsOpen, Is.False, "the old one that it closed");

        Assert.That(h.Partition.Write(f, new byte[] { 1, 2, 3 }), Is.EqualTo(3));
        h.Client.Settle();
        Assert.That(host.Received.Single(), Is.EqualTo(new byte[] { 1, 2, 3 }));
        // A host-side send outside any guest call reaches the guest: HostCall flushes it to the front-end.
        bool sent = false;
        h.Engine.HostCall(() => sent = host.Output!.TrySend([4, 5]));
        Assert.That(sent);
        h.Client.Settle();
        var buf = new byte[4096];
        Assert.That(h.Partition.Read(f, buf), Is.EqualTo(2));

        Assert.That(h.Engine.SetHandler(0, router), Is.SameAs(host));
        Assert.That(host.Closes, Is.EqualTo(1));
        Assert.That(h.Partition.HmcSession(0), Is.EqualTo(session), "the guest never saw a thing");
        Assert.That(h.Client.Call(f, RouterOpcode.ExchangeOps, 9, default, out _).ReturnCode, Is.EqualTo(0), "the router serves the session again from its start");
        h.AssertHealthy();
    }

    [Test]
    public void ASwapWithNoSessionOpenWaitsForTheNextOpen()
    {
        var h = new Harness();
        var host = new HostEndpoint();
        h.Engine.SetHandler(0, host);
        Assert.That(host.Opens, Is.EqualTo(0));
        h.Client.OpenSession("later");
        Assert.That(host.Opens, Is.EqualTo(1));
        Assert.Throws<ArgumentOutOfRangeException>(() => h.Engine.SetHandler(1, host), "no HMC index 1 with --max-hmcs 1");
        h.AssertHealthy();
    }
}
