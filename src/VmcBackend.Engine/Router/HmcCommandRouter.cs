using Serilog;
using VmcBackend.Engine.Sessions;
using VmcBackend.Wire.Router;

namespace VmcBackend.Engine.Router;

/// <summary>
/// The hypervisor's HMC command router on one HMC session. Exchange-ops opens the router session,
/// echo returns the data unchanged, close closes it. Every malformed or out-of-order request gets
/// its router return code:
/// <list type="bullet">
/// <item>shorter than the 32-byte header: 0x8022 (token 0, category 0x8000, opcode 0);</item>
/// <item>longer than the router's 4096-byte limit, whatever the MTU: 0x8022 (token from bytes 8-11);</item>
/// <item>no DE CA FF descriptor: 0x8003 (token taken from bytes 8-11);</item>
/// <item>a response (flag 0x40) sent to the router: 0x802D;</item>
/// <item>header length, message length or data length not matching what arrived: 0x8022;</item>
/// <item>category outside 0x8000..0x8008: 0x8024; inside but not served here: 0x8023;</item>
/// <item>unknown opcode: 0x8001; echo/close before exchange-ops: 0x8028; exchange-ops twice: 0x802B.</item>
/// </list>
/// Requests without flag 0x80 (response expected) are carried out without a response.
/// </summary>
public sealed class HmcCommandRouter(ILogger? log = null) : IHmcSessionHandler
{
    private readonly byte[] _response = new byte[RouterHeader.MaxMessageLength];
    private readonly ILogger _log = log ?? Serilog.Core.Logger.None;

    /// <summary>True between exchange-ops and close.</summary>
    public bool IsOpen { get; private set; }

    public void Opened(IHmcSessionOutput output, ReadOnlySpan<byte> hmcId) => IsOpen = false;

    public void Closed() => IsOpen = false;

    public void Message(IHmcSessionOutput output, ReadOnlySpan<byte> message)
    {
        if (message.Length < RouterHeader.Size)
        {
            Reply(output, new RouterHeader(RouterHeader.Size, 0, 0, RouterCategory.Router, RouterFlags.ResponseExpected, 0, 0, 0),
                RouterReturnCode.InvalidSize, default);
            return;
        }
        var h = RouterHeader.Read(message);
        if (message.Length > RouterHeader.MaxMessageLength) { Reply(output, h with { Flags = RouterFlags.ResponseExpected }, RouterReturnCode.InvalidSize, default); return; }
        if (!RouterHeader.HasDescriptor(message)) { Reply(output, h, RouterReturnCode.InvalidData, default); return; }
        if (h.IsResponse) { Reply(output, h with { Flags = RouterFlags.ResponseExpected }, RouterReturnCode.InvalidResponse, default); return; }
        if (h.HeaderLength != RouterHeader.Size || h.MessageLength != (uint)message.Length
            || h.DataLength != (uint)(message.Length - RouterHeader.Size))
        {
            Reply(output, h, RouterReturnCode.InvalidSize, default);
            return;
        }
        if (h.Category < RouterCategory.First || h.Category > RouterCategory.Last) { Reply(output, h, RouterReturnCode.InvalidCategory, default); return; }
        if (h.Category != RouterCategory.Router) { Reply(output, h, RouterReturnCode.InvalidTarget, default); return; }

        var data = message[RouterHeader.Size..];
        switch (h.Opcode)
        {
            case RouterOpcode.ExchangeOps:
                if (IsOpen) { Reply(output, h, RouterReturnCode.AlreadyOpen, default); return; }
                IsOpen = true;
                _log.Information("router session opened");
                Reply(output, h, RouterReturnCode.Good, default);
                return;
            case RouterOpcode.Close:
                if (!IsOpen) { Reply(output, h, RouterReturnCode.InvalidState, default); return; }
                IsOpen = false;
                _log.Information("router session closed");
                Reply(output, h, RouterReturnCode.Good, default);
                return;
            case RouterOpcode.Echo:
                Reply(output, h, IsOpen ? RouterReturnCode.Good : RouterReturnCode.InvalidState, IsOpen ? data : default);
                return;
            default:
                Reply(output, h, RouterReturnCode.InvalidOpcode, default);
                return;
        }
    }

    private void Reply(IHmcSessionOutput output, in RouterHeader request, RouterReturnCode rc, ReadOnlySpan<byte> data)
    {
        if ((request.Flags & RouterFlags.ResponseExpected) == 0) return;
        if (RouterHeader.Size + data.Length > output.Mtu)
        {
            // Only an MTU below the router limit gets here (data never exceeds 4096 - 32).
            _log.Warning("router: response of {Length} bytes exceeds the MTU; answering invalid size", RouterHeader.Size + data.Length);
            data = default;
            rc = RouterReturnCode.InvalidSize;
        }
        var m = _response.AsSpan(0, RouterHeader.Size + data.Length);
        RouterHeader.ResponseTo(request, rc, data.Length).Write(m);
        data.CopyTo(m[RouterHeader.Size..]);
        if (!output.TrySend(m))
            _log.Warning("router: response to opcode {Opcode:X4} token {Token} could not be queued", (ushort)request.Opcode, request.Token);
    }
}
