using VmcBackend.ReferenceFrontEnd.Wire;

namespace VmcBackend.ReferenceFrontEnd;

/// <summary>
/// One front-end connection to a back-end, set up as docs/protocol.md section 1 says:
/// GET_FEATURES, SET_FEATURES, GET_CONFIG, SET_MEM_TABLE (the guest RAM memfd), SET_CHANNEL.
/// Every reply is awaited with a deadline; anything wrong makes <see cref="Connect"/> throw.
/// </summary>
public sealed class FrontEndLink : IDisposable
{
    private FrontEndLink(VmcUserSocket socket, FrontEndChannel channel)
    {
        Socket = socket;
        Channel = channel;
    }

    public VmcUserSocket Socket { get; }
    public FrontEndChannel Channel { get; }
    public BackendConfig Config { get; private set; }
    public ulong OfferedFeatures { get; private set; }

    public static FrontEndLink Connect(string path, Memfd ram, ulong features = 0, int deadlineMs = 5000)
    {
        var socket = new VmcUserSocket(path) { DeadlineMs = deadlineMs };
        var link = new FrontEndLink(socket, new FrontEndChannel());
        try
        {
            link.SetUp(ram, features);
            return link;
        }
        catch
        {
            link.Dispose();
            throw;
        }
    }

    private void SetUp(Memfd ram, ulong features)
    {
        OfferedFeatures = Socket.CallU64(Vu.GetFeatures, default) ?? throw Lost("GET_FEATURES");
        if (Socket.CallU64(Vu.SetFeatures, Vu.U64(features & OfferedFeatures)) is not 0) throw Lost("SET_FEATURES");
        if (!Socket.Send(Vu.GetConfig, default) || Socket.ReadReply(Vu.GetConfig) is not { Length: 32 } config) throw Lost("GET_CONFIG");
        Config = BackendConfig.Decode(config);
        if (Socket.CallU64(Vu.SetMemTable, Vu.MemTable((0, ram.Size, 0)), [ram.File.Number]) is not 0) throw Lost("SET_MEM_TABLE");
        if (Socket.CallU64(Vu.SetChannel, Vu.Channel(), Channel.Fds) is not 0) throw Lost("SET_CHANNEL");
    }

    private IOException Lost(string step) => new(Socket.Failure is { } f
        ? $"{step}: the back-end failed the channel (reason {f.Reason}): {f.Text}"
        : $"{step}: the back-end did not answer properly");

    public void Dispose()
    {
        Socket.Dispose();
        Channel.Dispose();
    }
}
