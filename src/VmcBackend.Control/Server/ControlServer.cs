using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Nerdbank.Streams;
using Serilog;
using VmcBackend.Control.Protocol;
using VmcBackend.Transport.Server;

namespace VmcBackend.Control.Server;

/// <summary>What a control operation answers, and, for one that opens a channel, how to serve it.</summary>
/// <param name="Serve">Runs on the channel vmcd offers after the response; called with null when the client did not accept it in time.</param>
public sealed record ControlReply(ControlResponse Response, Func<MultiplexingStream.Channel?, CancellationToken, Task>? Serve = null);

/// <summary>One request being handled: who asked, and what vmcd serves.</summary>
public sealed record ControlContext(ControlRequest Request, VmRegistry Registry, uint ClientPid, CancellationToken Stopping);

/// <summary>A control operation (status, trace, attach; more can be added, e.g. fault injection).</summary>
public delegate Task<ControlReply> ControlOperation(ControlContext context);

/// <summary>
/// vmcd's control socket (docs/control.md): a unix stream socket, mode 0600, served to the peers
/// the admission rule lets in (the data socket's rule: vmcd's uid, root, --allow-uid/--allow-gid);
/// a refused peer gets one greeting line saying why and is logged. An admitted client gets the
/// welcome line, then a Nerdbank.Streams MultiplexingStream (protocol version 3) carrying the
/// control channel and the trace and attach channels it opens. Runs on the thread pool; it reaches
/// a VM's engine only by posting work to the VM's connection thread.
/// </summary>
public sealed class ControlServer : IDisposable
{
    /// <summary>How long a client has to accept a channel vmcd offered, and a VM to answer a request.</summary>
    public static readonly TimeSpan ChannelTimeout = TimeSpan.FromSeconds(10), VmTimeout = TimeSpan.FromSeconds(2);

    private readonly Socket _listener;
    private readonly VmRegistry _registry;
    private readonly ILogger _log;
    private readonly Func<Socket, string?> _admit;
    private readonly string _path;
    private readonly string _dataSocket;
    private readonly Dictionary<string, ControlOperation> _operations = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _clients = [];
    private readonly DateTime _started = DateTime.UtcNow;
    private Task? _accepting;

    private ControlServer(Socket listener, string path, VmRegistry registry, ILogger log, Func<Socket, string?>? admit, string dataSocket)
    {
        _listener = listener;
        _path = path;
        _registry = registry;
        _log = log;
        _admit = admit ?? VmcServer.OwnUidOrRoot;
        _dataSocket = dataSocket;
        _operations[ControlOps.Status] = Status;
        _operations[ControlOps.Trace] = Trace;
        _operations[ControlOps.Attach] = Attach;
        _operations[ControlOps.Inject] = InjectOperation.Handle;
    }

    /// <summary>Creates the control socket at <paramref name="path"/> (mode 0600, replacing a stale one).</summary>
    /// <param name="admit">Null to serve, else the reason a peer is refused (default: vmcd's uid or root).</param>
    /// <param name="dataSocket">What status reports as vmcd's data socket.</param>
    public static ControlServer Listen(string path, VmRegistry registry, ILogger log, Func<Socket, string?>? admit = null, string dataSocket = "")
    {
        var s = UnixListener.Create(path, out string full);
        return new ControlServer(s, full, registry, log, admit, dataSocket);
    }

    public string Path => _path;

    /// <summary>Adds (or replaces) an operation of the control channel.</summary>
    public void AddOperation(string op, ControlOperation operation) => _operations[op] = operation;

    public void Start() => _accepting = AcceptLoop();

    private async Task AcceptLoop()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try { client = await _listener.AcceptAsync(_stop.Token).ConfigureAwait(false); }
            catch (OperationCanceledException) { return; }
            catch (ObjectDisposedException) { return; }
            catch (SocketException e)
            {
                _log.Error("control socket: accept failed: {Error}; retrying in 100 ms", e.Message);
                await Task.Delay(100).ConfigureAwait(false);
                continue;
            }
            lock (_clients)
            {
                _clients.RemoveAll(t => t.IsCompleted);
                _clients.Add(Task.Run(() => ServeClient(client)));
            }
        }
    }

    private async Task ServeClient(Socket socket)
    {
        PeerCredentials.TryGet(socket, out uint pid, out uint uid, out _);
        var stream = new NetworkStream(socket, ownsSocket: true);
        await using var streamScope = stream.ConfigureAwait(false);
        string? refusal;
        try { refusal = _admit(socket); }
        catch (Exception e) { refusal = $"its credentials could not be checked ({e.Message})"; }
        if (refusal != null)
        {
            _log.Warning("refused a control client: {Reason}", refusal);
            await TryWriteGreeting(stream, ControlProtocol.Refusal(refusal)).ConfigureAwait(false);
            return;
        }
        if (!await TryWriteGreeting(stream, ControlProtocol.Welcome).ConfigureAwait(false)) return;
        _log.Debug("control client connected: pid {Pid} uid {Uid}", pid, uid);
        var mx = MultiplexingStream.Create(stream, new MultiplexingStream.Options { ProtocolMajorVersion = 3 });
        await using var mxScope = mx.ConfigureAwait(false);
        using var stopping = _stop.Token.Register(() => _ = mx.DisposeAsync().AsTask());
        var channels = new List<Task>();
        try
        {
            using var accept = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
            accept.CancelAfter(ChannelTimeout);
            var control = await mx.AcceptChannelAsync(ControlProtocol.ControlChannel, accept.Token).ConfigureAwait(false);
            int next = 0;
            while (await LineChannel.ReadLineAsync(control.Input, _stop.Token).ConfigureAwait(false) is { } line)
            {
                var (response, serve) = await Handle(line, pid).ConfigureAwait(false);
                string? name = serve != null ? $"{response.Channel}.{++next}" : null;
                if (name != null) response = response with { Channel = name };
                try { await LineChannel.WriteLineAsync(control.Output, JsonSerializer.Serialize(response, ControlJson.Default.ControlResponse), _stop.Token).ConfigureAwait(false); }
                catch when (serve != null)
                {
                    await serve(null, CancellationToken.None).ConfigureAwait(false);   // the answer never went out: undo what the operation set up
                    throw;
                }
                if (name != null) channels.Add(OfferAndServe(mx, name, serve!, pid));
            }
        }
        catch (OperationCanceledException) { }
        catch (Exception e) when (e is InvalidDataException or IOException or ObjectDisposedException or MultiplexingProtocolException)
        {
            if (!_stop.IsCancellationRequested) _log.Warning("control client pid {Pid}: {Error}; connection closed", pid, e.Message);
        }
        catch (Exception e)
        {
            _log.Error("control client pid {Pid}: internal error {Type}: {Error}; connection closed", pid, e.GetType().Name, e.Message);
        }
        // The client is gone (or broke the protocol): its channels end with it.
        await mx.DisposeAsync().ConfigureAwait(false);
        try { await Task.WhenAll(channels).ConfigureAwait(false); }
        catch (Exception e) { _log.Debug("control client pid {Pid}: a channel ended with {Error}", pid, e.Message); }
        _log.Debug("control client pid {Pid} disconnected", pid);
    }

    private static async Task<bool> TryWriteGreeting(Stream stream, string line)
    {
        var bytes = Encoding.UTF8.GetBytes(line + "\n");
        if (bytes.Length > ControlProtocol.MaxGreeting) bytes = [.. bytes.AsSpan(0, ControlProtocol.MaxGreeting - 1), (byte)'\n'];
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            await stream.WriteAsync(bytes, timeout.Token).ConfigureAwait(false);
            return true;
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException) { return false; }
    }

    private async Task OfferAndServe(MultiplexingStream mx, string name, Func<MultiplexingStream.Channel?, CancellationToken, Task> serve, uint pid)
    {
        MultiplexingStream.Channel? channel = null;
        try
        {
            using var offer = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
            offer.CancelAfter(ChannelTimeout);
            channel = await mx.OfferChannelAsync(name, offer.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or MultiplexingProtocolException)
        {
            _log.Warning("control client pid {Pid} did not accept channel {Channel}; abandoned", pid, name);
        }
        try { await serve(channel, _stop.Token).ConfigureAwait(false); }
        catch (Exception e) { _log.Debug("channel {Channel} of control client pid {Pid} ended: {Error}", name, pid, e.Message); }
        finally { channel?.Dispose(); }
    }

    private async Task<ControlReply> Handle(string line, uint pid)
    {
        ControlRequest? request;
        try { request = JsonSerializer.Deserialize(line, ControlJson.Default.ControlRequest); }
        catch (JsonException e) { return new(ControlResponse.Refused(ControlErrors.BadRequest, $"not a JSON control request: {e.Message}")); }
        if (request == null) return new(ControlResponse.Refused(ControlErrors.BadRequest, "not a JSON control request: null"));
        if (!_operations.TryGetValue(request.Op, out var op))
            return new(ControlResponse.Refused(ControlErrors.BadRequest, $"unknown operation \"{request.Op}\" (vmcd knows {string.Join(", ", _operations.Keys.Order())})") with { Id = request.Id });
        ControlReply reply;
        try { reply = await op(new ControlContext(request, _registry, pid, _stop.Token)).ConfigureAwait(false); }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            _log.Error("control request {Op} of pid {Pid} failed: {Type}: {Error}", request.Op, pid, e.GetType().Name, e.Message);
            reply = new(ControlResponse.Refused(ControlErrors.Unavailable, $"vmcd failed on this {request.Op} request ({e.Message}); see vmcd's log"));
        }
        return reply with { Response = reply.Response with { Id = request.Id } };
    }

    // ---------------------------------------------------------------- operations

    private async Task<ControlReply> Status(ControlContext c)
    {
        IReadOnlyList<HostedVm> vms = c.Registry.Vms;
        if (c.Request.Vm != null)
        {
            if (c.Registry.Find(c.Request.Vm, out string? error) is not { } one) return new(ControlResponse.Refused(ControlErrors.UnknownVm, error!));
            vms = [one];
        }
        var list = new List<VmStatus>();
        foreach (var vm in vms)
        {
            try { list.Add(await vm.Run(_ => vm.Snapshot()).WaitAsync(VmTimeout).ConfigureAwait(false)); }
            catch (OperationCanceledException) { }      // it disconnected meanwhile
            catch (TimeoutException)
            {
                list.Add(new VmStatus(vm.Name, vm.Pid, "not-answering", 0, 0, 0, "", new VmLimitsStatus(vm.Info.MaxMtu, vm.Info.PoolSize, vm.Info.MaxHmcs),
                    0, 0, new Dictionary<string, long>(), []));
            }
        }
        var report = new StatusReport(new VmcdStatus(Environment.ProcessId, (DateTime.UtcNow - _started).TotalSeconds, _dataSocket, c.Registry.TraceReaders), list);
        return new(new ControlResponse { Ok = true, Status = report });
    }

    private Task<ControlReply> Trace(ControlContext c)
    {
        HostedVm? only = null;
        if (c.Request.Vm != null && (only = c.Registry.Find(c.Request.Vm, out string? error)) == null)
            return Task.FromResult(new ControlReply(ControlResponse.Refused(ControlErrors.UnknownVm, error!)));
        var trace = new TraceSubscription();
        // Followed before the answer goes out: a VM that connects once the client has its answer is
        // traced from its start (the rings hold its records until the channel is accepted).
        c.Registry.Follow(trace, only);
        return Task.FromResult(new ControlReply(new ControlResponse { Ok = true, Channel = "trace" }, async (channel, ct) =>
        {
            if (channel == null) { c.Registry.Unfollow(trace); return; }
            _log.Information("trace started for vmcctl pid {Pid}: {What}", c.ClientPid, only?.Name ?? "every VM");
            try { await trace.PumpAsync(channel, ct).ConfigureAwait(false); }
            catch (Exception e) when (e is OperationCanceledException or IOException or ObjectDisposedException) { }
            finally
            {
                long lost = c.Registry.Unfollow(trace);
                if (lost > 0) _log.Information("trace for vmcctl pid {Pid} ended; {Lost} records were lost (the reader was too slow)", c.ClientPid, lost);
                else _log.Information("trace for vmcctl pid {Pid} ended", c.ClientPid);
            }
        }));
    }

    private async Task<ControlReply> Attach(ControlContext c)
    {
        if (c.Registry.Find(c.Request.Vm, out string? error) is not { } vm) return new(ControlResponse.Refused(ControlErrors.UnknownVm, error!));
        if (c.Request.Hmc is not int hmc) return new(ControlResponse.Refused(ControlErrors.BadRequest, "attach needs an HMC index (\"hmc\")"));
        if (hmc < 0 || hmc >= vm.MaxHmcs)
            return new(ControlResponse.Refused(ControlErrors.UnknownHmc, $"{vm.Name} has no HMC {hmc}: its HMC indexes are 0..{vm.MaxHmcs - 1} (vmcd --max-hmcs {vm.MaxHmcs})"));
        var attached = new AttachedHmc(vm, hmc, c.ClientPid);
        string? busy;
        try { busy = await vm.Run(engine => attached.Install(engine)).WaitAsync(VmTimeout).ConfigureAwait(false); }
        catch (Exception e) when (e is OperationCanceledException or TimeoutException)
        {
            return new(ControlResponse.Refused(ControlErrors.Unavailable, $"{vm.Name} did not answer (it disconnected or is stuck); try again"));
        }
        if (busy != null) return new(ControlResponse.Refused(ControlErrors.Busy, busy));
        return new(new ControlResponse { Ok = true, Channel = "attach" }, async (channel, ct) =>
        {
            if (channel == null)
            {
                vm.Post(engine => attached.Uninstall(engine, "the client did not accept the attach channel"));
                return;
            }
            await attached.ServeAsync(channel, ct).ConfigureAwait(false);
        });
    }

    public void Stop()
    {
        if (_stop.IsCancellationRequested) return;
        _stop.Cancel();
        try { _listener.Dispose(); } catch (Exception) { }
        Task[] all;
        lock (_clients) all = [.. _clients];
        try { Task.WaitAll([.. all, _accepting ?? Task.CompletedTask], TimeSpan.FromSeconds(5)); }
        catch (AggregateException) { }
        try { File.Delete(_path); } catch (IOException) { }
    }

    public void Dispose() => Stop();
}
