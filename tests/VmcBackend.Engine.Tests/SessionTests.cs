using VmcBackend.Testing;
using VmcBackend.Wire.Router;

namespace VmcBackend.Engine.Tests;

public class SessionTests
{
    [Test]
    public void OpenAddsThePoolAndCarriesTheHmcId()
    {
        var h = new Harness();
        var f = h.Client.OpenSession("my-hmc-id");
        Assert.That(h.Partition.HmcState(0), Is.EqualTo(DriverHmcState.Ready));
        Assert.That(h.Partition.ValidBufferCount(0), Is.EqualTo(32));
        var s = h.Engine.Session(0);
        Assert.That(s.HmcId, Is.EqualTo("my-hmc-id"));
        Assert.That(s.IsOpen, Is.True);
        Assert.That(s.Session, Is.EqualTo(h.Partition.HmcSession(0)));
        h.AssertHealthy();
        GC.KeepAlive(f);
    }

    [Test]
    public void OpenResponseComesAfterTheNewBuffers()
    {
        // PowerVM's order (ibmvmc.c ibmvmc_send_open, ibmvmc.rst): ADD_BUF x N for the HMC, then OPEN_RESP.
        var h = new Harness();
        int before = h.PayloadsSeen().Count;
        h.Client.OpenSession();
        var after = h.PayloadsSeen().Skip(before).ToList();
        Assert.That(after.Select(p => p.Type), Is.EqualTo(Enumerable.Repeat((byte)0x04, 31).Append((byte)0x82)));
        Assert.That(after.Take(31).Select(p => p.BufferId), Is.EqualTo(Enumerable.Range(1, 31).Select(i => (ushort)i)));
        Assert.That(after.Take(31).All(p => p.Owner == 0), "all partition-owned: nothing kept back from write()");
        h.AssertHealthy();
    }

    [Test]
    public void SetHmcIdBeforeReadyIsEagainAndWithoutBuffersEnobufs()
    {
        var h = new Harness(probe: false);
        Assert.That(h.Partition.SetHmcId(h.Partition.Open(), new byte[32]), Is.EqualTo(-Errno.EAGAIN), "not ready");
        // Let the guest see the init response and CAP_RESP, but not yet the ADD_BUF behind them.
        h.Device.OutputBudget = 2;
        Assert.That(h.Partition.Probe(), Is.EqualTo(0));
        h.Client.Settle();
        Assert.That(h.Partition.State, Is.EqualTo(DriverState.Ready));
        Assert.That(h.Partition.ValidBufferCount(0), Is.EqualTo(0));
        var f = h.Partition.Open();
        Assert.That(h.Partition.SetHmcId(f, new byte[32]), Is.EqualTo(-Errno.ENOBUFS), "ready, but no buffer for the HMC yet");
        h.Device.OutputBudget = null;
        h.Client.Settle();
        Assert.That(h.Partition.SetHmcId(f, new byte[32]), Is.EqualTo(0), "the ADD_BUF arrived");
        h.Client.Settle();
        Assert.That(h.Partition.HmcState(0), Is.EqualTo(DriverHmcState.Ready));
    }

    [TestCase(1)]
    [TestCase(100)]
    [TestCase(4096 - 32 - 1)]
    [TestCase(4096 - 32)]
    public void EchoReturnsTheSameData(int dataLength)
    {
        var h = new Harness();
        var f = h.OpenRouterSession();
        var data = new byte[dataLength];
        new Random(dataLength).NextBytes(data);
        var hdr = h.Client.Call(f, RouterOpcode.Echo, 7, data, out var resp);
        Assert.That(hdr.ReturnCode, Is.EqualTo(0));
        Assert.That(hdr.Token, Is.EqualTo(7u));
        Assert.That(hdr.Opcode, Is.EqualTo((ushort)RouterOpcode.Echo));
        Assert.That(resp.AsSpan(32).ToArray(), Is.EqualTo(data));
        h.AssertHealthy();
    }

    [Test]
    public void MessageSizesAroundTheMtu()
    {
        var h = new Harness();
        var f = h.OpenRouterSession();
        int mtu = h.Partition.MaxMtu;
        // 0 bytes: write() returns 0 and sends nothing (the driver takes a buffer and keeps it).
        long inBefore = h.Engine.Counters.MessagesIn;
        Assert.That(h.Partition.Write(f, []), Is.EqualTo(0));
        h.Client.Settle();
        Assert.That(h.Engine.Counters.MessagesIn, Is.EqualTo(inBefore));
        // 1 byte: reaches the router, which answers invalid size.
        var r1 = RouterClient.Parse(h.Client.Transact(f, [0xDE]));
        Assert.That(r1!.Value.ReturnCode, Is.EqualTo((ushort)RouterReturnCode.InvalidSize));
        // MTU-1 and MTU: full echoes.
        foreach (int size in new[] { mtu - 1, mtu })
        {
            var data = new byte[size - 32];
            new Random(size).NextBytes(data);
            var resp = h.Client.Transact(f, RouterClient.Request(RouterOpcode.Echo, (uint)size, data));
            Assert.That(resp.Length, Is.EqualTo(size));
            Assert.That(resp.AsSpan(32).ToArray(), Is.EqualTo(data));
        }
        // MTU+1: the driver refuses the write.
        Assert.That(h.Partition.Write(f, new byte[mtu + 1]), Is.EqualTo(-Errno.EIO));
        // read() larger than the MTU is EINVAL.
        Assert.That(h.Partition.Read(f, new byte[mtu + 1]), Is.EqualTo(-Errno.EINVAL));
        h.AssertHealthy();
    }

    [Test]
    public void CloseThenReopenGetsANewSession()
    {
        var h = new Harness();
        var f = h.OpenRouterSession();
        Assert.That(h.Client.Call(f, RouterOpcode.Close, 2, default, out _).ReturnCode, Is.EqualTo(0));
        Assert.That(h.Partition.Close(f), Is.EqualTo(0));
        h.Client.Settle();
        Assert.That(h.Engine.Session(0).IsOpen, Is.False);
        Assert.That(h.Partition.HmcState(0), Is.EqualTo(DriverHmcState.Free));
        Assert.That(h.Partition.ValidBufferCount(0), Is.EqualTo(1), "the hypervisor re-adds one buffer after CLOSE");
        h.AssertHealthy();
        for (int round = 0; round < 5; round++)
        {
            var g = h.OpenRouterSession("again");
            Assert.That(h.Engine.Session(0).Session, Is.EqualTo(round + 2));
            Assert.That(h.Client.Call(g, RouterOpcode.Echo, 3, [1, 2, 3], out var resp).ReturnCode, Is.EqualTo(0));
            Assert.That(resp[32..], Is.EqualTo(new byte[] { 1, 2, 3 }));
            h.Partition.Close(g);
            h.Client.Settle();
        }
        h.AssertHealthy();
    }

    [Test]
    public void TwoHmcsInterleaved()
    {
        var h = new Harness(new VmcLimits { MaxHmcs = 2 }, hmcs: 2);
        var a = h.OpenRouterSession("hmc-a");
        var b = h.OpenRouterSession("hmc-b");
        Assert.That(h.Engine.Session(0).IsOpen && h.Engine.Session(1).IsOpen);
        var buf = new byte[4096];
        // Pipelined: up to 8 requests outstanding per HMC, interleaved 2:1, replies checked per session.
        var pendingA = new Queue<uint>(); var pendingB = new Queue<uint>();
        for (uint i = 0; i < 300; i++)
        {
            bool onB = i % 3 == 0;
            var f = onB ? b : a;
            var pending = onB ? pendingB : pendingA;
            Assert.That(h.Partition.Write(f, RouterClient.Request(RouterOpcode.Echo, i, [(byte)(onB ? 0xBB : 0xAA)])), Is.EqualTo(33));
            pending.Enqueue(i);
            h.Client.Settle();
            if (pending.Count == 8) Drain(f, pending, onB);
        }
        Drain(a, pendingA, false);
        Drain(b, pendingB, true);

        void Drain(SimulatedPartition.VmcFile f, Queue<uint> pending, bool onB)
        {
            while (pending.Count > 0)
            {
                Assert.That(h.Partition.Read(f, buf), Is.EqualTo(33));
                var r = RouterClient.Parse(buf.AsSpan(0, 33))!.Value;
                Assert.That(r.Token, Is.EqualTo(pending.Dequeue()));
                Assert.That(buf[32], Is.EqualTo(onB ? 0xBB : 0xAA));
            }
        }
        Assert.That(h.Engine.Counters.MessagesIn, Is.EqualTo(h.Engine.Counters.MessagesOut));
        h.AssertHealthy();
    }

    [Test]
    public void ThirdSessionIsBusyWithTwoHmcs()
    {
        var h = new Harness(new VmcLimits { MaxHmcs = 2 }, hmcs: 2);
        h.OpenRouterSession("a");
        h.OpenRouterSession("b");
        Assert.That(h.Partition.SetHmcId(h.Partition.Open(), new byte[32]), Is.EqualTo(-Errno.EBUSY));
    }

    // ------------------------------------------------------------- unsolicited messages (host side)

    [Test]
    public void HostSendsToAReaderThatNeverWrote()
    {
        // Before hypervisor-owned buffers, a message from the host side waited for the guest's next
        // write: a client blocked in read() never got it.
        var host = new HostEndpoint();
        var h = new Harness(handlers: _ => host);
        var f = h.Client.OpenSession("host-attached");
        Assert.That(host.Output, Is.Not.Null);
        var rx = new byte[4096];
        Assert.That(h.Partition.Read(f, rx), Is.EqualTo(-Errno.EAGAIN), "nothing yet: the reader blocks");
        Assert.That(host.Output!.TrySend("hello from the host"u8), Is.True);
        h.Client.Settle();
        int n = h.Partition.Read(f, rx);
        Assert.That(n, Is.EqualTo(19), "the blocked reader got it without writing");
        Assert.That(System.Text.Encoding.ASCII.GetString(rx, 0, n), Is.EqualTo("hello from the host"));
        var ownersAdded = h.PayloadsSeen().Where(p => p.Type == 0x04).Select(p => p.Owner).ToList();
        Assert.That(ownersAdded, Does.Contain((byte)1), "a hypervisor-owned ADD_BUF carried it");
        h.Client.Settle();
        Assert.That(h.Partition.WritableBufferCount(0), Is.EqualTo(32), "the buffer went back to write()'s pool");
        h.AssertHealthy();
    }

    [Test]
    public void HostStreamsManyMessagesToAReaderThatOnlyReads()
    {
        var host = new HostEndpoint();
        var h = new Harness(pool: 16, limits: new VmcLimits { PoolSize = 16 }, handlers: _ => host);
        var f = h.Client.OpenSession();
        var rx = new byte[4096];
        int got = 0;
        for (int i = 0; i < 200; i++)
        {
            Assert.That(host.Output!.TrySend(BitConverter.GetBytes(i)), Is.True, $"message {i} accepted");
            h.Client.Settle();
            if (i % 7 == 6)      // the reader drains now and then, never writes
                while (h.Partition.Read(f, rx) is var n and > 0) { Assert.That(BitConverter.ToInt32(rx, 0), Is.EqualTo(got++)); Assert.That(n, Is.EqualTo(4)); }
        }
        for (int spins = 0; got < 200 && spins < 50; spins++)
        {
            while (h.Partition.Read(f, rx) > 0) Assert.That(BitConverter.ToInt32(rx, 0), Is.EqualTo(got++));
            h.Wait(TimeSpan.FromMilliseconds(60));
        }
        Assert.That(got, Is.EqualTo(200), "every accepted message arrived, in order");
        Assert.That(h.Engine.Counters.BuffersReclaimed, Is.GreaterThan(0));
        h.Client.Settle();
        Assert.That(h.Partition.WritableBufferCount(0), Is.EqualTo(16), "no buffer left behind with the hypervisor");
        h.AssertHealthy();
    }

    [Test]
    public void HostSendIsRefusedOutsideAnOpenSessionAndWhenTooLarge()
    {
        var host = new HostEndpoint();
        var h = new Harness(handlers: _ => host);
        var f = h.Client.OpenSession();
        var output = host.Output!;
        Assert.That(output.TrySend(new byte[4097]), Is.False, "above the MTU");
        Assert.That(output.TrySend([]), Is.False, "empty");
        h.Partition.Close(f);
        h.Client.Settle();
        Assert.That(host.Closes, Is.EqualTo(1));
        Assert.That(output.IsOpen, Is.False);
        Assert.That(output.TrySend([1]), Is.False, "the session is closed");
        h.AssertHealthy();
    }
}
