using System.Net.Sockets;
using VmcBackend.Engine;
using VmcBackend.ReferenceFrontEnd;
using VmcBackend.Testing;
using VmcBackend.Transport.Server;
using VmcBackend.Wire.Router;

namespace VmcBackend.Transport.Tests;

/// <summary>A vmcd server on a temporary socket, plus helpers to drive front-ends against it.</summary>
internal sealed class ServerFixture : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vmcd-test").FullName;

    public ServerFixture(VmcLimits? limits = null)
    {
        Limits = limits ?? new VmcLimits();
        Path = System.IO.Path.Combine(_dir, "vmcd.sock");
        Server = VmcServer.Listen(Path, Limits, Serilog.Core.Logger.None);
        Server.Start();
    }

    public VmcLimits Limits { get; }
    public string Path { get; }
    public VmcServer Server { get; private set; }

    /// <summary>Kills the server and starts a new one on the same path (a vmcd restart).</summary>
    public void Restart()
    {
        Server.Stop();
        Server = VmcServer.Listen(Path, Limits, Serilog.Core.Logger.None);
        Server.Start();
    }

    public static bool WaitFor(Func<bool> condition, int ms = 5000)
    {
        var end = DateTime.UtcNow.AddMilliseconds(ms);
        while (DateTime.UtcNow < end) { if (condition()) return true; Thread.Sleep(10); }
        return condition();
    }

    public Socket RawConnect()
    {
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        s.Connect(new UnixDomainSocketEndPoint(Path));
        return s;
    }

    public void Dispose()
    {
        Server.Stop();
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }
}

/// <summary>A front-end with a simulated partition on it, brought to the ready state.</summary>
internal sealed class Guest : IDisposable
{
    public Guest(ServerFixture fixture, int hmcs = 1, int mtu = 4096)
    {
        FrontEnd = new FrontEnd(fixture.Path);
        Partition = new SimulatedPartition(FrontEnd.Platform, mtu, maxHmcs: hmcs);
        Client = new PartitionClient(Partition, () => FrontEnd.TakeInterrupts());
        Assert.That(Partition.Probe(), Is.EqualTo(0));
        Client.Settle();
        Assert.That(Partition.State, Is.EqualTo(DriverState.Ready));
    }

    public FrontEnd FrontEnd { get; }
    public SimulatedPartition Partition { get; }
    public PartitionClient Client { get; }

    public SimulatedPartition.VmcFile OpenRouter(string id = "hmc")
    {
        var f = Client.OpenSession(id);
        Assert.That(Client.Call(f, RouterOpcode.ExchangeOps, 1, default, out _).ReturnCode, Is.EqualTo(0));
        return f;
    }

    public void Echo(SimulatedPartition.VmcFile f, int size, uint token)
    {
        var data = new byte[size];
        new Random((int)token).NextBytes(data);
        var h = Client.Call(f, RouterOpcode.Echo, token, data, out var resp);
        Assert.That(h.ReturnCode, Is.EqualTo(0));
        Assert.That(h.Token, Is.EqualTo(token));
        Assert.That(resp.AsSpan(32).SequenceEqual(data), "echoed data differs");
    }

    public void Dispose() => FrontEnd.Dispose();
}
