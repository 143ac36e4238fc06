using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Nerdbank.Streams;
using VmcBackend.Control.Protocol;

namespace VmcBackend.Control.Client;

/// <summary>Why a control request could not be served (vmcctl maps each to its exit code).</summary>
public enum ControlFailure
{
    /// <summary>No vmcd listens at the path.</summary>
    Unreachable,
    /// <summary>vmcd (or the socket's permissions) refused this client.</summary>
    Refused,
    /// <summary>The request named something that does not exist (VM, HMC index) or was malformed.</summary>
    BadInput,
    /// <summary>The HMC is attached to another client.</summary>
    Busy,
    /// <summary>The VM did not answer or went away.</summary>
    Unavailable,
    /// <summary>The other side does not speak this control protocol.</summary>
    Protocol,
}

/// <summary>A control request that failed; the message is one line saying what to do.</summary>
public sealed class ControlException(ControlFailure failure, string message) : Exception(message)
{
    public ControlFailure Failure => failure;
}

/// <summary>
/// The client side of vmcd's control socket (docs/control.md): greeting, MultiplexingStream,
/// control channel with one JSON request at a time, and the trace and attach channels vmcd offers.
/// </summary>
public sealed class ControlClient : IAsyncDisposable
{
    private readonly Socket _socket;
    private readonly MultiplexingStream _mx;
    private readonly MultiplexingStream.Channel _control;
    private readonly SemaphoreSlim _one = new(1, 1);

    private ControlClient(Socket socket, MultiplexingStream mx, MultiplexingStream.Channel control)
    {
        _socket = socket;
        _mx = mx;
        _control = control;
    }

    /// <summary>Completes when the connection to vmcd ends.</summary>
    public Task Completion => _mx.Completion;

    /// <summary>Connects to the control socket at <paramref name="path"/> and opens the control channel.</summary>
    public static async Task<ControlClient> ConnectAsync(string path, CancellationToken ct = default)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            try { await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), ct).ConfigureAwait(false); }
            catch (SocketException e)
            {
                throw e.SocketErrorCode switch
                {
                    SocketError.AddressNotAvailable or SocketError.AddressFamilyNotSupported when !File.Exists(path) => NoSocket(path),
                    SocketError.AccessDenied => new ControlException(ControlFailure.Refused,
                        $"permission denied on {path}: vmcd's control socket is mode 0600; run vmcctl as vmcd's user or root"),
                    SocketError.ConnectionRefused => new ControlException(ControlFailure.Unreachable,
                        $"nothing listens on {path} (a stale socket: is vmcd running?)"),
                    _ when !File.Exists(path) => NoSocket(path),
                    _ => new ControlException(ControlFailure.Unreachable, $"cannot connect to {path}: {e.Message}"),
                };
            }
            var stream = new NetworkStream(socket, ownsSocket: false);
            string greeting = await ReadGreeting(stream, path, ct).ConfigureAwait(false);
            string[] words = greeting.Split(' ', 4);
            if (words.Length < 3 || words[0] != "vmcd-control")
                throw new ControlException(ControlFailure.Protocol, $"{path} is not a vmcd control socket (it greeted \"{Shorten(greeting)}\")");
            if (words[1] != ControlProtocol.Version.ToString(System.Globalization.CultureInfo.InvariantCulture))
                throw new ControlException(ControlFailure.Protocol, $"vmcd speaks control protocol version {words[1]}; this vmcctl speaks version {ControlProtocol.Version}");
            if (words[2] == "refused")
                throw new ControlException(ControlFailure.Refused, $"vmcd refused this client: {(words.Length > 3 ? words[3] : "no reason given")}");
            if (words[2] != "ok") throw new ControlException(ControlFailure.Protocol, $"{path}: unexpected greeting \"{Shorten(greeting)}\"");
            var mx = MultiplexingStream.Create(stream, new MultiplexingStream.Options { ProtocolMajorVersion = 3 });
            try
            {
                using var offer = CancellationTokenSource.CreateLinkedTokenSource(ct);
                offer.CancelAfter(TimeSpan.FromSeconds(10));
                var control = await mx.OfferChannelAsync(ControlProtocol.ControlChannel, offer.Token).ConfigureAwait(false);
                return new ControlClient(socket, mx, control);
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                await mx.DisposeAsync().ConfigureAwait(false);
                throw new ControlException(ControlFailure.Protocol, $"vmcd at {path} did not accept the control channel");
            }
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    private static ControlException NoSocket(string path) => new(ControlFailure.Unreachable,
        $"no control socket at {path}: is vmcd running? (its control socket is --control PATH, by default <socket>.ctl; give vmcctl --control PATH)");

    private static string Shorten(string s) => s.Length > 60 ? s[..60] + "..." : s;

    private static async Task<string> ReadGreeting(NetworkStream stream, string path, CancellationToken ct)
    {
        var line = new List<byte>();
        var one = new byte[1];
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(3));
        try
        {
            while (line.Count < ControlProtocol.MaxGreeting)
            {
                if (await stream.ReadAsync(one, timeout.Token).ConfigureAwait(false) == 0)
                    throw new ControlException(ControlFailure.Protocol, $"{path} closed the connection before greeting: is it a vmcd control socket?");
                if (one[0] == (byte)'\n') return Encoding.UTF8.GetString([.. line]);
                line.Add(one[0]);
            }
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            throw new ControlException(ControlFailure.Protocol,
                $"{path} sent no control greeting: it is not a vmcd control socket (vmcd's data socket is the path without .ctl)");
        }
        catch (IOException e) { throw new ControlException(ControlFailure.Unreachable, $"{path}: {e.Message}"); }
        throw new ControlException(ControlFailure.Protocol, $"{path} sent a greeting longer than {ControlProtocol.MaxGreeting} bytes");
    }

    /// <summary>One request and its response (requests are answered in order, one at a time).</summary>
    public async Task<ControlResponse> RequestAsync(ControlRequest request, CancellationToken ct = default)
    {
        await _one.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            await LineChannel.WriteLineAsync(_control.Output, JsonSerializer.Serialize(request, ControlJson.Default.ControlRequest), ct).ConfigureAwait(false);
            string? line;
            try { line = await LineChannel.ReadLineAsync(_control.Input, ct).ConfigureAwait(false); }
            catch (Exception e) when (e is InvalidDataException or IOException or ObjectDisposedException)
            {
                throw new ControlException(ControlFailure.Unavailable, $"the connection to vmcd broke: {e.Message}");
            }
            if (line == null) throw new ControlException(ControlFailure.Unavailable, "vmcd closed the control connection");
            try { return JsonSerializer.Deserialize(line, ControlJson.Default.ControlResponse) ?? throw new JsonException("null"); }
            catch (JsonException e) { throw new ControlException(ControlFailure.Protocol, $"vmcd answered something that is not a control response: {e.Message}"); }
        }
        finally { _one.Release(); }
    }

    /// <summary>Throws the response's refusal as a <see cref="ControlException"/>.</summary>
    public static ControlResponse Check(ControlResponse r)
    {
        if (r.Ok) return r;
        var failure = r.Code switch
        {
            ControlErrors.UnknownVm or ControlErrors.UnknownHmc or ControlErrors.BadRequest => ControlFailure.BadInput,
            ControlErrors.Busy => ControlFailure.Busy,
            _ => ControlFailure.Unavailable,
        };
        throw new ControlException(failure, r.Error ?? $"vmcd refused the request ({r.Code})");
    }

    /// <summary>vmcd's status: every VM, or <paramref name="vm"/> only.</summary>
    public async Task<StatusReport> StatusAsync(string? vm = null, CancellationToken ct = default)
        => Check(await RequestAsync(new ControlRequest { Op = ControlOps.Status, Vm = vm }, ct).ConfigureAwait(false)).Status
           ?? throw new ControlException(ControlFailure.Protocol, "vmcd's status response has no status");

    /// <summary>Starts a trace (of <paramref name="vm"/>, or of every VM now and later): the channel carries a trace (docs/control.md).</summary>
    public async Task<MultiplexingStream.Channel> TraceAsync(string? vm = null, CancellationToken ct = default)
    {
        var r = Check(await RequestAsync(new ControlRequest { Op = ControlOps.Trace, Vm = vm }, ct).ConfigureAwait(false));
        return await AcceptAsync(r, ct).ConfigureAwait(false);
    }

    /// <summary>Attaches this client to HMC <paramref name="hmc"/> of <paramref name="vm"/> (null: the only VM).</summary>
    public async Task<AttachSession> AttachAsync(string? vm, int hmc, CancellationToken ct = default)
    {
        var r = Check(await RequestAsync(new ControlRequest { Op = ControlOps.Attach, Vm = vm, Hmc = hmc }, ct).ConfigureAwait(false));
        return new AttachSession(await AcceptAsync(r, ct).ConfigureAwait(false));
    }

    private async Task<MultiplexingStream.Channel> AcceptAsync(ControlResponse r, CancellationToken ct)
    {
        if (r.Channel == null) throw new ControlException(ControlFailure.Protocol, "vmcd's response names no channel");
        using var accept = CancellationTokenSource.CreateLinkedTokenSource(ct);
        accept.CancelAfter(TimeSpan.FromSeconds(10));
        try { return await _mx.AcceptChannelAsync(r.Channel, accept.Token).ConfigureAwait(false); }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            throw new ControlException(ControlFailure.Protocol, $"vmcd did not offer channel {r.Channel}");
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _mx.DisposeAsync().ConfigureAwait(false);
        _socket.Dispose();
        _one.Dispose();
    }
}

/// <summary>This client attached to one HMC: frames from vmcd (messages from the guest, session events) and messages for the guest.</summary>
public sealed class AttachSession(MultiplexingStream.Channel channel) : IAsyncDisposable
{
    /// <summary>The next frame from vmcd; null when the channel ended (detached, the VM went away, vmcd stopped).</summary>
    public ValueTask<AttachFrame?> ReadAsync(CancellationToken ct = default) => AttachFrames.ReadAsync(channel.Input, ct);

    /// <summary>Sends one whole HMC message to the guest (waits while vmcd's side is full).</summary>
    public async ValueTask SendAsync(ReadOnlyMemory<byte> message, CancellationToken ct = default)
    {
        AttachFrames.Write(channel.Output, AttachFrameType.Message, message.Span);
        await channel.Output.FlushAsync(ct).ConfigureAwait(false);
    }

    /// <summary>Detaches: vmcd gives the HMC back to its built-in router.</summary>
    public async ValueTask DisposeAsync()
    {
        try { await channel.Output.CompleteAsync().ConfigureAwait(false); }
        catch (Exception e) when (e is IOException or ObjectDisposedException or InvalidOperationException) { }
        channel.Dispose();
    }
}
