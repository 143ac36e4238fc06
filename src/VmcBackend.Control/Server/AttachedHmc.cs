using System.Threading.Channels;
using Nerdbank.Streams;
using VmcBackend.Control.Protocol;
using VmcBackend.Engine;
using VmcBackend.Engine.Sessions;

namespace VmcBackend.Control.Server;

/// <summary>
/// A host program attached to one HMC index of a VM (vmcctl attach): the session handler that
/// replaces the built-in router while the program's channel is open. The guest's messages go to
/// the program through a bounded queue (<see cref="QueueCapacity"/> frames); when the program does
/// not read, the channel's flow control stops the queue's pump and new messages from the guest are
/// refused (counted, logged once per stall), as a slow HMC would leave them unanswered. The
/// program's messages reach the engine as posted work, at most <see cref="InFlight"/> at a time, so
/// a program that sends faster than the engine takes them is slowed on its own channel.
/// </summary>
internal sealed class AttachedHmc : IHmcSessionHandler
{
    public const int QueueCapacity = 64, InFlight = 64;
    private readonly HostedVm _vm;
    private readonly int _index;
    private readonly Channel<AttachFrame> _toClient = Channel.CreateBounded<AttachFrame>(
        new BoundedChannelOptions(QueueCapacity) { SingleReader = true, SingleWriter = true, FullMode = BoundedChannelFullMode.Wait });
    private readonly SemaphoreSlim _inFlight = new(InFlight, InFlight);
    // engine thread:
    private IHmcSessionOutput? _output;
    private IHmcSessionHandler? _previous;
    private bool _active;
    private long _refusedInStall;

    public AttachedHmc(HostedVm vm, int index, uint clientPid)
    {
        _vm = vm;
        _index = index;
        ClientPid = clientPid;
    }

    public uint ClientPid { get; }

    // ---------------------------------------------------------------- engine thread

    /// <summary>Takes the HMC over from its current handler; null, or why not (another client has it).</summary>
    public string? Install(VmcEngine engine)
    {
        if (_vm.Attached[_index] is { } other)
            return $"HMC {_index} of {_vm.Name} is attached to another client (vmcctl pid {other.ClientPid}), which keeps it until it detaches";
        _vm.Recorder.Attached(_index, ClientPid);
        _vm.Attached[_index] = this;
        _active = true;
        _previous = engine.SetHandler(_index, this);
        _vm.Log.Information("HMC {Index}: attached to a host program (vmcctl pid {Pid}); the built-in router is set aside", _index, ClientPid);
        return null;
    }

    /// <summary>Gives the HMC back to the handler it had (the built-in router); the guest's session goes on.</summary>
    public void Uninstall(VmcEngine engine, string reason)
    {
        if (!_active) return;
        _active = false;
        _vm.Recorder.Detached(_index, reason);
        engine.SetHandler(_index, _previous!);
        _vm.Attached[_index] = null;
        _toClient.Writer.TryComplete();
        _vm.Log.Information("HMC {Index}: host program (vmcctl pid {Pid}) detached ({Reason}); the built-in router serves it again", _index, ClientPid, reason);
    }

    /// <summary>The VM's connection ended.</summary>
    public void VmEnded()
    {
        _active = false;
        _toClient.Writer.TryComplete();
    }

    public void Opened(IHmcSessionOutput output, ReadOnlySpan<byte> hmcId)
    {
        _output = output;
        Queue(AttachFrameType.Opened, hmcId);
    }

    public void Message(IHmcSessionOutput output, ReadOnlySpan<byte> message)
    {
        if (Queue(AttachFrameType.Message, message))
        {
            if (_refusedInStall > 0)
                _vm.Log.Information("HMC {Index}: the host program (vmcctl pid {Pid}) reads again; {Count} messages from the guest were refused meanwhile",
                    _index, ClientPid, _refusedInStall);
            _refusedInStall = 0;
            return;
        }
        _vm.AttachRefused++;
        if (_refusedInStall++ == 0)
            _vm.Log.Warning("HMC {Index}: the host program (vmcctl pid {Pid}) is not reading; a message of {Length} bytes from the guest was refused ({Capacity} wait already; counted as attach_refused)",
                _index, ClientPid, message.Length, QueueCapacity);
    }

    public void Closed()
    {
        _output = null;
        Queue(AttachFrameType.Closed, default);
    }

    /// <summary>A message of the program's for the guest: sent on the session if it can be, else the program is told why not.</summary>
    private void Send(VmcEngine engine, byte[] message)
    {
        _inFlight.Release();
        if (!_active) return;
        _vm.Recorder.HostSending(_index, message);
        bool accepted = false;
        engine.HostCall(() => accepted = _output?.TrySend(message) ?? false);
        _vm.Recorder.HostSent(accepted);
        if (accepted) return;
        string why = _output == null ? $"no session is open on HMC {_index} of {_vm.Name}"
            : message.Length == 0 || message.Length > _output.Mtu ? $"a message of {message.Length} bytes; the session's MTU is {_output.Mtu}"
            : "the guest is not reading: its outbound queue is full";
        Queue(AttachFrameType.Refused, System.Text.Encoding.UTF8.GetBytes(why));
    }

    private bool Queue(AttachFrameType type, ReadOnlySpan<byte> payload) => _toClient.Writer.TryWrite(new AttachFrame(type, payload.ToArray()));

    // ---------------------------------------------------------------- the channel (thread pool)

    /// <summary>Serves the program's channel until it closes it, the VM ends or vmcd stops; then detaches.</summary>
    public async Task ServeAsync(MultiplexingStream.Channel channel, CancellationToken ct)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct, _vm.Ended);
        var toClient = ToClientAsync(channel, stop.Token);
        var fromClient = FromClientAsync(channel, stop.Token);
        var first = await Task.WhenAny(toClient, fromClient).ConfigureAwait(false);
        string reason = first == fromClient ? await fromClient.ConfigureAwait(false)
            : _vm.Ended.IsCancellationRequested ? "the VM disconnected"
            : ct.IsCancellationRequested ? "vmcd is stopping" : "the control client disconnected";
        _vm.Post(engine => Uninstall(engine, reason));
        await stop.CancelAsync().ConfigureAwait(false);
        try { await Task.WhenAll(toClient, fromClient).ConfigureAwait(false); }
        catch (Exception) { }     // both end by cancellation or a closed channel; the reason is known already
        await channel.Output.CompleteAsync().ConfigureAwait(false);
        channel.Dispose();
    }

    private async Task ToClientAsync(MultiplexingStream.Channel channel, CancellationToken ct)
    {
        await foreach (var f in _toClient.Reader.ReadAllAsync(ct).ConfigureAwait(false))
        {
            AttachFrames.Write(channel.Output, f.Type, f.Payload);
            await channel.Output.FlushAsync(ct).ConfigureAwait(false);
        }
    }

    /// <summary>Returns why it stopped.</summary>
    private async Task<string> FromClientAsync(MultiplexingStream.Channel channel, CancellationToken ct)
    {
        try
        {
            while (true)
            {
                var frame = await AttachFrames.ReadAsync(channel.Input, ct).ConfigureAwait(false);
                if (frame is not { } f) return "the program's channel closed: it detached, or its vmcctl ended";
                if (f.Type != AttachFrameType.Message) return $"the program sent an attach frame of type {(byte)f.Type}, not a message";
                await _inFlight.WaitAsync(ct).ConfigureAwait(false);
                _vm.Post(engine => Send(engine, f.Payload));
            }
        }
        catch (InvalidDataException e) { return $"the program broke the attach framing: {e.Message}"; }
        catch (OperationCanceledException) when (ct.IsCancellationRequested) { return "stopped"; }
        catch (OperationCanceledException) { return "the control client disconnected"; }
        catch (Exception e) when (e is IOException or ObjectDisposedException) { return "the control client disconnected"; }
    }
}
