using System.Buffers.Binary;
using VmcBackend.Testing;
using VmcBackend.Wire.Router;

namespace VmcBackend.Engine.Tests;

public class RouterTests
{
    private Harness _h = null!;
    private SimulatedPartition.VmcFile _f = null!;

    [SetUp]
    public void Open()
    {
        _h = new Harness();
        _f = _h.Client.OpenSession();
    }

    private RouterReply Send(byte[] message)
    {
        var resp = _h.Client.Transact(_f, message);
        return RouterClient.Parse(resp) ?? throw new AssertionException("malformed response");
    }

    private static ushort Rc(RouterReturnCode rc) => (ushort)rc;

    [Test]
    public void WrongOrder()
    {
        Assert.That(Send(RouterClient.Request(RouterOpcode.Echo, 1, [1])).ReturnCode, Is.EqualTo(Rc(RouterReturnCode.InvalidState)), "echo before exchange-ops");
        Assert.That(Send(RouterClient.Request(RouterOpcode.Close, 2)).ReturnCode, Is.EqualTo(Rc(RouterReturnCode.InvalidState)), "close before exchange-ops");
        Assert.That(Send(RouterClient.Request(RouterOpcode.ExchangeOps, 3)).ReturnCode, Is.EqualTo(Rc(RouterReturnCode.Good)));
        Assert.That(Send(RouterClient.Request(RouterOpcode.ExchangeOps, 4)).ReturnCode, Is.EqualTo(Rc(RouterReturnCode.AlreadyOpen)));
        Assert.That(Send(RouterClient.Request(RouterOpcode.Close, 5)).ReturnCode, Is.EqualTo(Rc(RouterReturnCode.Good)));
        Assert.That(Send(RouterClient.Request(RouterOpcode.Echo, 6, [1])).ReturnCode, Is.EqualTo(Rc(RouterReturnCode.InvalidState)), "echo after close");
    }

    [Test]
    public void ResponseEchoesTokenTargetAndOpcode()
    {
        var r = Send(RouterClient.Request(RouterOpcode.ExchangeOps, 0xCAFEBABE));
        Assert.That(r.Token, Is.EqualTo(0xCAFEBABE));
        Assert.That(r.Category, Is.EqualTo(0x8000));
        Assert.That(r.Opcode, Is.EqualTo((ushort)RouterOpcode.ExchangeOps));
        Assert.That(r.Flags, Is.EqualTo(0x40), "response flag set, response-expected clear");
    }

    [TestCase(0x7FFF, RouterReturnCode.InvalidCategory)]
    [TestCase(0x8009, RouterReturnCode.InvalidCategory)]
    [TestCase(0x8001, RouterReturnCode.InvalidTarget)]
    [TestCase(0x8008, RouterReturnCode.InvalidTarget)]
    public void Categories(int category, RouterReturnCode rc)
        => Assert.That(Send(RouterClient.Request(RouterOpcode.Echo, 1, [1], (ushort)category)).ReturnCode, Is.EqualTo(Rc(rc)));

    [Test]
    public void UnknownOpcode() => Assert.That(Send(RouterClient.Request((RouterOpcode)0x0777, 1)).ReturnCode, Is.EqualTo(Rc(RouterReturnCode.InvalidOpcode)));

    [TestCase(3, 16, "header length")]
    [TestCase(4, 99, "message length")]
    [TestCase(16, 7, "data length")]
    public void InconsistentLengths(int offset, int value, string what)
    {
        var m = RouterClient.Request(RouterOpcode.ExchangeOps, 1, [1, 2, 3]);
        if (offset == 3) m[3] = (byte)value;
        else BinaryPrimitives.WriteUInt32BigEndian(m.AsSpan(offset), (uint)value);
        Assert.That(Send(m).ReturnCode, Is.EqualTo(Rc(RouterReturnCode.InvalidSize)), what);
    }

    [Test]
    public void MalformedHeaders()
    {
        var shortMsg = Send(new byte[10]);
        Assert.That(shortMsg.ReturnCode, Is.EqualTo(Rc(RouterReturnCode.InvalidSize)));
        Assert.That(shortMsg.Token, Is.EqualTo(0u));
        var bad = RouterClient.Request(RouterOpcode.ExchangeOps, 77);
        bad[0] = 0xAB;
        var r = Send(bad);
        Assert.That(r.ReturnCode, Is.EqualTo(Rc(RouterReturnCode.InvalidData)));
        Assert.That(r.Token, Is.EqualTo(77u));
        var asResponse = RouterClient.Request(RouterOpcode.ExchangeOps, 78);
        asResponse[15] = 0x40;
        Assert.That(Send(asResponse).ReturnCode, Is.EqualTo(0x802D));
    }

    [Test]
    public void RequestWithoutResponseFlagIsCarriedOutSilently()
    {
        var m = RouterClient.Request(RouterOpcode.ExchangeOps, 1);
        m[15] = 0;
        Assert.That(_h.Partition.Write(_f, m), Is.EqualTo(32));
        _h.Client.Settle();
        Assert.That(_h.Partition.Read(_f, new byte[64]), Is.EqualTo(-Errno.EAGAIN));
        Assert.That(Send(RouterClient.Request(RouterOpcode.Echo, 2, [42])).ReturnCode, Is.EqualTo(Rc(RouterReturnCode.Good)), "the session was opened");
    }

    [Test]
    public void MessagesAboveTheRouterLimitAreRefusedWhateverTheMtu()
    {
        // The router's limit is 4096 bytes even when the VMC negotiated 16 KiB.
        var h = new Harness(new VmcLimits { MaxMtu = 16384 }, mtu: 16384);
        Assert.That(h.Partition.MaxMtu, Is.EqualTo(16384));
        var f = h.OpenRouterSession();
        var atLimit = h.Client.Call(f, RouterOpcode.Echo, 1, new byte[4096 - 32], out var resp);
        Assert.That(atLimit.ReturnCode, Is.EqualTo(0));
        Assert.That(resp, Has.Length.EqualTo(4096));
        foreach (int size in new[] { 4097, 8192, 16384 })
        {
            var r = h.Client.Call(f, RouterOpcode.Echo, (uint)size, new byte[size - 32], out resp);
            Assert.That(r.ReturnCode, Is.EqualTo(Rc(RouterReturnCode.InvalidSize)), $"{size} bytes");
            Assert.That(r.Token, Is.EqualTo((uint)size));
            Assert.That(resp, Has.Length.EqualTo(32), "no data in the error response");
        }
        h.AssertHealthy();
    }
}
