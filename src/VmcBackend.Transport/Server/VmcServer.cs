using System.Net.Sockets;
using Serilog;
using Tmds.Linux;
using VmcBackend.Engine.Backend;
using VmcBackend.Transport.Connection;
using VmcBackend.Transport.Interop;
using VmcBackend.Transport.Protocol;

namespace VmcBackend.Transport.Server;

/// <summary>
/// vmcd's listener: a unix stream socket (created 0600, or inherited), one thread and one back-end
/// per front-end connection (made by the <see cref="VmcBackendFactory"/>), peers checked with
/// SO_PEERCRED (or the <see cref="VmcServerOptions.AdmitPeer"/> rule), at most <see cref="VmcServerOptions.MaxConnections"/> at once. Stop() closes the
/// listener and every connection, freeing everything they held.
/// </summary>
public sealed class VmcServer : IDisposable
{
    private static readonly uint OwnUid = LibC.getuid();
    private readonly Socket _listener;
    private readonly VmcBackendFactory _factory;
    private readonly VmcServerOptions _options;
    private readonly ILogger _log;
    private readonly string? _path;
    private readonly List<(FrontEndConnection Connection, Thread Thread)> _connections = [];
    private readonly Lock _lock = new();
    private Thread? _acceptThread;
    private int _next;
    private volatile bool _stopped;
    // The accept thread sleeps in epoll on the listener and a stop eventfd, and accepts only when
    // the listener is readable: closing the listener would not wake a thread blocked in accept() on
    // an inherited socket, and shutdown() would break the socket for systemd, which keeps its own
    // reference to it. (No thread pool either: a connection is one thread, nothing else.)
    private readonly EventFd _stopAccept = EventFd.Create();
    private readonly Epoll _acceptEpoll = new();

    private VmcServer(Socket listener, string? path, VmcBackendFactory factory, VmcServerOptions? options, ILogger log)
    {
        _listener = listener;
        _path = path;
        _factory = factory;
        _options = options ?? new VmcServerOptions();
        _log = log;
    }

    /// <summary>Creates the socket at <paramref name="path"/> (mode 0600; see <see cref="UnixListener.Create"/>).</summary>
    public static VmcServer Listen(string path, VmcBackendFactory factory, ILogger log, VmcServerOptions? options = null)
    {
        var s = UnixListener.Create(path, out string full);
        return new VmcServer(s, full, factory, options, log);
    }

    /// <summary>Serves on an inherited, already listening socket fd (socket activation).</summary>
    public static VmcServer FromFd(int fd, VmcBackendFactory factory, ILogger log, VmcServerOptions? options = null)
    {
        var s = new Socket(new SafeSocketHandle(fd, ownsHandle: true));
        if (s.AddressFamily != AddressFamily.Unix || s.SocketType != SocketType.Stream)
        {
            s.Dispose();
            throw new IOException($"fd {fd} is not a unix stream socket");
        }
        return new VmcServer(s, null, factory, options, log);
    }

    /// <summary>Front-ends being served now.</summary>
    public int ConnectionCount { get { lock (_lock) return _connections.Count; } }

    public void Start()
    {
        _acceptEpoll.Add((int)_listener.Handle, 0);
        _acceptEpoll.Add(_stopAccept.Fd, 1);
        _acceptThread = new Thread(AcceptLoop) { IsBackground = true, Name = "vmcd-accept" };
        _acceptThread.Start();
    }

    private void AcceptLoop()
    {
        while (!_stopped)
        {
            Socket client;
            uint ready;
            try { ready = _acceptEpoll.Wait(-1); }
            catch (IOException e) { _log.Error("waiting for front-ends failed: {Error}", e.Message); return; }
            if ((ready & 2) != 0 || _stopped) return;
            if ((ready & 1) == 0) continue;
            try { client = _listener.Accept(); }
            catch (Exception) when (_stopped) { return; }
            catch (ObjectDisposedException) { return; }
            catch (SocketException e)
            {
                _log.Error("accept failed: {Error}; retrying in 100 ms", e.Message);
                Thread.Sleep(100);
                continue;
            }
            try { Admit(client); }
            catch (Exception e)
            {
                _log.Error("could not start serving a front-end: {Error}", e.Message);
                client.Dispose();
            }
        }
    }

    private void Admit(Socket client)
    {
        string? refusal = (_options.AdmitPeer ?? OwnUidOrRoot)(client);
        if (refusal != null)
        {
            _log.Error("refused a front-end: {Reason}", refusal);
            client.Dispose();
            return;
        }
        uint pid = PeerPid(client);
        string name = $"vm{Interlocked.Increment(ref _next)}";
        lock (_lock)
        {
            if (_connections.Count >= _options.MaxConnections)
            {
                _log.Error("refused front-end {Name} (pid {Pid}): {Count} front-ends are connected, the limit is {Max}",
                    name, pid, _connections.Count, _options.MaxConnections);
                RefuseFull(client);
                return;
            }
            var conn = new FrontEndConnection(client, _factory, _log, name, _options.SpinMicroseconds, pid, _options.Connections);
            var t = new Thread(() => Serve(client, conn)) { IsBackground = true, Name = $"vmcd-{name}" };
            _connections.Add((conn, t));
            t.Start();
        }
    }

    /// <summary>Tells a front-end over the limit why, in the one unsolicited frame the protocol has, then closes.</summary>
    private void RefuseFull(Socket client)
    {
        try
        {
            var frame = new byte[FrameHeader.Length + FrameHeader.MaxPayload];
            int n = ChannelFailedMessage.Write(frame.AsSpan(FrameHeader.Length), ChannelFailure.InternalError,
                $"vmcd serves at most {_options.MaxConnections} front-ends at once; try again when one has disconnected");
            new FrameHeader(VmcUserRequest.ChannelFailed, FrameHeader.Version, (uint)n).Write(frame);
            client.SendTimeout = 1000;
            client.Send(frame.AsSpan(0, FrameHeader.Length + n), SocketFlags.None);
        }
        catch (SocketException) { }
        finally { client.Dispose(); }
    }

    private void Serve(Socket client, FrontEndConnection conn)
    {
        try
        {
            conn.Run();
        }
        catch (Exception e)
        {
            _log.Error("front-end connection {Name} ended with an internal error: {Error}", conn.Name, e.Message);
        }
        finally
        {
            lock (_lock) _connections.RemoveAll(c => c.Connection == conn);
            try { conn.Dispose(); }
            catch (Exception e) { _log.Error("freeing front-end connection {Name} failed: {Error}", conn.Name, e.Message); }
            client.Dispose();
        }
    }

    /// <summary>The default peer rule: vmcd's own uid or root (also the control socket's default).</summary>
    public static string? OwnUidOrRoot(Socket s)
    {
        if (!PeerCredentials.TryGet(s, out uint pid, out uint uid, out uint gid)) return "the kernel gave no peer credentials";
        return uid == 0 || uid == OwnUid ? null : $"pid {pid} runs as uid {uid} gid {gid}; only uid {OwnUid} or root may connect";
    }

    private static uint PeerPid(Socket s) => PeerCredentials.TryGet(s, out uint pid, out _, out _) ? pid : 0;

    public void Stop()
    {
        if (_stopped) return;
        _stopped = true;
        _stopAccept.Signal();
        _acceptThread?.Join(TimeSpan.FromSeconds(5));
        try { _listener.Dispose(); } catch (Exception) { }
        (FrontEndConnection Connection, Thread Thread)[] all;
        lock (_lock)
        {
            all = _connections.ToArray();
            foreach (var c in all) c.Connection.RequestStop();
        }
        foreach (var c in all) c.Thread.Join(TimeSpan.FromSeconds(5));
        if (_acceptThread == null || !_acceptThread.IsAlive)
        {
            _acceptEpoll.Dispose();
            _stopAccept.Dispose();
        }
        if (_path != null) try { File.Delete(_path); } catch (IOException) { }
    }

    public void Dispose() => Stop();
}

/// <summary>A connected unix socket peer's credentials as the kernel recorded them at connect (SO_PEERCRED).</summary>
public static class PeerCredentials
{
    public static bool TryGet(Socket s, out uint pid, out uint uid, out uint gid)
    {
        Span<byte> cred = stackalloc byte[12];   // struct ucred { pid_t pid; uid_t uid; gid_t gid; }, native byte order
        pid = 0; uid = gid = uint.MaxValue;
        try
        {
            if (s.GetRawSocketOption(LibC.SOL_SOCKET, LibC.SO_PEERCRED, cred) < 12) return false;
        }
        catch (SocketException) { return false; }
        pid = BitConverter.ToUInt32(cred);
        uid = BitConverter.ToUInt32(cred[4..]);
        gid = BitConverter.ToUInt32(cred[8..]);
        return true;
    }
}

/// <summary>A listening unix stream socket created the way vmcd creates its sockets.</summary>
public static class UnixListener
{
    /// <summary>
    /// Creates the socket at <paramref name="path"/> (replacing a stale one), mode 0600. It is bound
    /// and listening under a temporary name first and then renamed into place, so the path never
    /// names a socket that refuses connections or has a wider mode.
    /// </summary>
    public static Socket Create(string path, out string fullPath)
    {
        if (Directory.Exists(path)) throw new IOException($"{path} is a directory; give the socket a file path");
        string full = Path.GetFullPath(path);
        string? dir = Path.GetDirectoryName(full);
        if (dir != null && !Directory.Exists(dir)) throw new IOException($"the socket's directory {dir} does not exist; create it or choose another path");
        string temporary = Path.Combine(dir ?? "/", $".{Path.GetFileName(full)}.{Environment.ProcessId}.tmp");
        if (File.Exists(temporary)) File.Delete(temporary);
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            s.Bind(new UnixDomainSocketEndPoint(temporary));
            File.SetUnixFileMode(temporary, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            s.Listen(64);
            File.Move(temporary, full, overwrite: true);
        }
        catch
        {
            s.Dispose();
            try { File.Delete(temporary); } catch (IOException) { }
            throw;
        }
        fullPath = full;
        return s;
    }
}
