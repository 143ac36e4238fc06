using VmcBackend.Engine;
using VmcBackend.Engine.Handshake;
using VmcBackend.Testing;

namespace VmcBackend.Transport.Tests;

public class SocketSessionTests
{
    [Test]
    public void HandshakeAndEchoThroughTheSocket()
    {
        using var fx = new ServerFixture();
        using var g = new Guest(fx);
        Assert.That(ServerFixture.WaitFor(() => fx.Server.ConnectionCount == 1));
        Assert.That(fx.Server.Connections[0].Engine.State, Is.EqualTo(AdapterState.Ready));
        Assert.That(g.FrontEnd.Config.DrcIndex, Is.EqualTo(fx.Limits.DrcIndex));
        Assert.That(g.FrontEnd.Config.RemoteWindowSize, Is.EqualTo(fx.Server.Connections[0].Engine.Config.RemoteWindowSize));
        Assert.That(g.Partition.RequestVmc(out uint drc), Is.EqualTo(0));
        Assert.That(drc, Is.EqualTo(fx.Limits.DrcIndex));
        var f = g.OpenRouter();
        foreach (int size in new[] { 1, 32, 2048, 4096 - 32 }) g.Echo(f, size, (uint)size);
        for (uint i = 0; i < 300; i++) g.Echo(f, 100, i);
        Assert.That(g.FrontEnd.Interrupts, Is.GreaterThan(300), "vmcd wrote the call eventfd");
        Assert.That(g.Partition.Violations, Is.Empty);
    }

    [Test]
    public void TwoVmsAtOnceHaveSeparateEngines()
    {
        using var fx = new ServerFixture();
        var errors = new System.Collections.Concurrent.ConcurrentQueue<string>();
        void Run(int vm)
        {
            try
            {
                using var g = new Guest(fx);
                var f = g.OpenRouter($"vm{vm}");
                for (uint i = 0; i < 400; i++) g.Echo(f, 64 + vm * 100, i + (uint)vm * 100000);
                if (g.Partition.Violations.Count > 0) errors.Enqueue(string.Join(";", g.Partition.Violations));
            }
            catch (Exception e) { errors.Enqueue($"vm{vm}: {e.Message}"); }
        }
        var t1 = new Thread(() => Run(1));
        var t2 = new Thread(() => Run(2));
        t1.Start(); t2.Start();
        Assert.That(ServerFixture.WaitFor(() => fx.Server.ConnectionCount == 2, 10000) || !t1.IsAlive, "both VMs connected");
        t1.Join(); t2.Join();
        Assert.That(errors, Is.Empty);
        Assert.That(ServerFixture.WaitFor(() => fx.Server.ConnectionCount == 0), "connections freed after the front-ends closed");
    }

    [Test]
    public void FrontEndDisconnectMidSessionThenReconnect()
    {
        using var fx = new ServerFixture();
        using var g = new Guest(fx);
        var f = g.OpenRouter();
        g.Echo(f, 10, 1);
        g.FrontEnd.Reconnect(TimeSpan.FromSeconds(5));
        g.Client.Settle();
        Assert.That(g.Partition.TransportEvents, Is.EqualTo(1));
        Assert.That(g.Partition.State, Is.EqualTo(DriverState.Ready));
        Assert.That(g.Partition.Read(f, new byte[64]), Is.EqualTo(-Errno.EBADFD));
        var f2 = g.OpenRouter("again");
        g.Echo(f2, 500, 2);
        Assert.That(ServerFixture.WaitFor(() => fx.Server.ConnectionCount == 1), "the old connection was freed");
    }

    [Test]
    public void VmcdRestartMidSessionThenReconnect()
    {
        using var fx = new ServerFixture();
        using var g = new Guest(fx);
        var f = g.OpenRouter();
        g.Echo(f, 10, 1);
        fx.Restart();
        // The guest's next write finds vmcd gone: the device fails the hcall and notices.
        g.Partition.Write(f, RouterClient.Request(Wire.Router.RouterOpcode.Echo, 2, [1]));
        Assert.That(g.FrontEnd.Client.Connected, Is.False);
        g.FrontEnd.Reconnect(TimeSpan.FromSeconds(5));
        g.Client.Settle();
        Assert.That(g.Partition.State, Is.EqualTo(DriverState.Ready));
        var f2 = g.OpenRouter("after-restart");
        for (uint i = 0; i < 50; i++) g.Echo(f2, 200, i);
        Assert.That(g.Partition.Violations, Is.Empty);
    }

    [Test]
    public void SocketIsPrivateToTheOwner()
    {
        using var fx = new ServerFixture();
        var mode = File.GetUnixFileMode(fx.Path);
        Assert.That(mode, Is.EqualTo(UnixFileMode.UserRead | UnixFileMode.UserWrite));
    }
}
