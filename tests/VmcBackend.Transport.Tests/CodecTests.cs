using VmcBackend.Engine.Backend;
using FrontEndFailure = VmcBackend.ReferenceFrontEnd.Wire.ChannelFailure;
using ChannelFailure = VmcBackend.Engine.Backend.ChannelFailure;
using VmcBackend.ReferenceFrontEnd.Wire;
using VmcBackend.Transport.Protocol;

namespace VmcBackend.Transport.Tests;

/// <summary>vmcd's typed codec (src/.../Protocol) against the reference front-end's independent encoder.</summary>
public class CodecTests
{
    [Test]
    public void ConfigReplyDecodesOnTheFrontEnd()
    {
        var b = new byte[ConfigReply.Size];
        ConfigReply.From(new VmcBackendConfig(0x81000001, 16384, 64, 2, 300, 6 << 20)).Write(b);
        Assert.That(BackendConfig.Decode(b), Is.EqualTo(new BackendConfig(0x81000001, 16384, 64, 2, 254, 6 << 20)), "max_rdma_segments capped at 254");
        Assert.That(b[11], Is.EqualTo(0));
        Assert.That(b.AsSpan(24).ToArray(), Is.All.EqualTo(0));
    }

    [Test]
    public void FrontEndRequestsDecodeInVmcd()
    {
        var regions = new MemRegion[MemTableRequest.MaxRegions];
        Assert.That(MemTableRequest.TryRead(Vu.MemTable((0x1000, 0x2000, 0x3000), (1UL << 40, 4096, 0)), regions, out int n, out _));
        Assert.That(regions[..n], Is.EqualTo(new[] { new MemRegion(0x1000, 0x2000, 0x3000), new MemRegion(1UL << 40, 4096, 0) }));
        Assert.That(SetChannelRequest.Read(Vu.Channel()), Is.EqualTo(new SetChannelRequest(0x8000, 512, 1024, 0)));
        Assert.That(SetChannelRequest.Read(Vu.Channel()).Validate(), Is.Null);
        Assert.That(FrameHeader.Read(Vu.Request(Vu.SetChannel, new byte[16])), Is.EqualTo(new FrameHeader(VmcUserRequest.SetChannel, 2, 16)));
        Assert.That(SetFeaturesRequest.Read(Vu.U64(1)), Is.EqualTo(VmcUserFeatures.MemTableUpdates));
    }

    [TestCase("plain text")]
    [TestCase("")]
    [TestCase("with a NUL\0inside")]
    public void ChannelFailedRoundTrips(string text)
    {
        var b = new byte[FrameHeader.MaxPayload];
        int n = ChannelFailedMessage.Write(b, ChannelFailure.ProtocolViolation, text);
        var f = FrontEndFailure.Decode(b.AsSpan(0, n));
        Assert.That(f, Is.EqualTo(new FrontEndFailure(3, text.Replace("\0", ""))));
    }

    [Test]
    public void LongChannelFailedTextIsCutAtACharacterBoundary()
    {
        var b = new byte[FrameHeader.MaxPayload];
        string text = string.Concat(Enumerable.Repeat("é€😀", 2000));   // 2-, 3- and 4-byte UTF-8
        int n = ChannelFailedMessage.Write(b, ChannelFailure.InternalError, text);
        Assert.That(n, Is.LessThanOrEqualTo(FrameHeader.MaxPayload));
        var f = FrontEndFailure.Decode(b.AsSpan(0, n));
        Assert.That(f, Is.Not.Null);
        Assert.That(text.StartsWith(f!.Value.Text, StringComparison.Ordinal), "a prefix of the text, no broken character");
        Assert.That(f.Value.Text.Length, Is.GreaterThan(1000));
    }
}
