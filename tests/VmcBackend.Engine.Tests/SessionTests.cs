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
        Assert.That(System.Text.Encoding.ASCII.GetString(h.Engine.Hmc(0).HmcId).TrimEnd('\0'), Is.EqualTo("my-hmc-id"));
        Assert.That(h.Engine.Hmc(0).IsOpen, Is.True);
        Assert.That(h.Engine.Hmc(0).Session, Is.EqualTo(1));
        h.AssertHealthy();
        GC.KeepAlive(f);
    }

    [Test]
    public void SetHmcIdBeforeReadyIsEagainAndWithoutBuffersEnobufs()
    {
        var h = new Harness(probe: false);
        Assert.That(h.Partition.SetHmcId(h.Partition.Open(), new byte[32]), Is.EqualTo(-Errno.EAGAIN));
        h.Partition.Probe();
        // Process only the init response + CAP_RESP, not yet the ADD_BUF.
        h.Partition.ProcessCrq();
        Assert.That(h.Partition.State, Is.EqualTo(DriverState.Ready));
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
        Assert.That(hdr.ReturnCode, Is.EqualTo(RouterReturnCode.Good));
        Assert.That(hdr.Token, Is.EqualTo(7u));
        Assert.That(hdr.Opcode, Is.EqualTo(RouterOpcode.Echo));
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
        Assert.That(r1!.Value.ReturnCode, Is.EqualTo(RouterReturnCode.InvalidSize));
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
        Assert.That(h.Engine.Hmc(0).IsOpen, Is.False);
        Assert.That(h.Partition.HmcState(0), Is.EqualTo(DriverHmcState.Free));
        Assert.That(h.Partition.ValidBufferCount(0), Is.EqualTo(1), "the hypervisor re-adds one buffer after CLOSE");
        h.AssertHealthy();
        for (int round = 0; round < 5; round++)
        {
            var g = h.OpenRouterSession("again");
            Assert.That(h.Engine.Hmc(0).Session, Is.EqualTo(round + 2));
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
        Assert.That(h.Engine.Hmc(0).IsOpen && h.Engine.Hmc(1).IsOpen);
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
}
