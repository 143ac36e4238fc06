using System.Collections.Concurrent;
using VmcBackend.Engine.Backend;
using VmcBackend.Transport.Connection;
using VmcBackend.Transport.Server;

namespace VmcBackend.Transport.Tests;

/// <summary>Host-side work reaches a back-end only on its connection's thread (what vmcd's control plane relies on).</summary>
public class PostTests
{
    private sealed class Listener : IConnectionListener
    {
        public readonly ConcurrentQueue<string> Events = new();
        public volatile FrontEndConnection? Connection;
        public void Started(FrontEndConnection c, IVmcBackend b)
        {
            Events.Enqueue($"started {c.Name} on {Thread.CurrentThread.Name} pid {c.PeerPid}");
            Connection = c;
        }
        public void Ended(FrontEndConnection c) => Events.Enqueue($"ended {c.Name} on {Thread.CurrentThread.Name}");
    }

    [Test]
    public void PostedWorkRunsOnTheConnectionsThreadAndNotAfterItEnded()
    {
        var listener = new Listener();
        using var fx = new ServerFixture(options: new VmcServerOptions { Connections = listener });
        FrontEndConnection c;
        using (var fe = new LinkedFrontEnd(fx))
        {
            Assert.That(ServerFixture.WaitFor(() => listener.Connection != null));
            c = listener.Connection!;
            var ran = new ConcurrentQueue<string>();
            for (int i = 0; i < 100; i++)
            {
                int n = i;
                Assert.That(c.Post(b => ran.Enqueue($"{n} {Thread.CurrentThread.Name} {b.GetType().Name}")), Is.True);
            }
            Assert.That(ServerFixture.WaitFor(() => ran.Count == 100));
            Assert.That(ran, Is.EqualTo(Enumerable.Range(0, 100).Select(i => $"{i} vmcd-vm1 StubBackend")), "in order, on the connection's thread, with its back-end");
            // A failing item is logged and the connection goes on.
            c.Post(_ => throw new InvalidOperationException("boom"));
            Assert.That(fx.WaitForError("a control-plane request failed on this connection: \"boom\""));
            Assert.That(fe.Echo(new byte[] { 0x80, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7 })[15], Is.EqualTo(7));
        }
        Assert.That(ServerFixture.WaitFor(() => listener.Events.Count == 2));
        Assert.That(listener.Events, Is.EqualTo(new[] { $"started vm1 on vmcd-vm1 pid {Environment.ProcessId}", "ended vm1 on vmcd-vm1" }));
        Assert.That(c.Post(_ => Assert.Fail("ran after the connection ended")), Is.False);
    }
}
