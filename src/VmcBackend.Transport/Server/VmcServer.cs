using System.Net.Sockets;
using Serilog;
using VmcBackend.Engine;
using VmcBackend.Transport.Connection;

namespace VmcBackend.Transport.Server;

/// <summary>
/// vmcd's listener: a unix stream socket (created 0600, or inherited), one thread and one engine
/// per front-end connection, peers must have vmcd's uid (or be root). Stop() closes the listener and
/// every connection, freeing everything they held.
/// </summary>
public sealed class VmcServer : IDisposable
{
    private readonly Socket _listener;
    private readonly VmcLimits _limits;
    private readonly ILogger _log;
    private readonly string? _path;
    private readonly List<(Socket Socket, FrontEndConnection Connection, Thread Thread)> _connections = [];
    private readonly Lock _lock = new();
    private Thread? _acceptThread;
    private int _next;
    private volatile bool _stopped;
    // Stop() cancels the pending accept: closing the listener does not wake a thread blocked in
    // accept() on an inherited socket, and shutdown() would break the socket for systemd, which
    // keeps its own reference to it.
    private readonly CancellationTokenSource _stopAccept = new();

    /// <summary>
    /// Decides whether a connected front-end is served: null to serve it, else the reason it is
    /// refused (logged). Null: only vmcd's own uid or root.
    /// </summary>
    private readonly Func<Socket, string?>? _admitPeer;

    private VmcServer(Socket listener, string? path, VmcLimits limits, ILogger log, Func<Socket, string?>? admitPeer)
    {
        _listener = listener;
        _path = path;
        _limits = limits;
        _log = log;
        _admitPeer = admitPeer;
    }

    /// <summary>Creates the socket at <paramref name="path"/> (replacing a stale one), mode 0600.</summary>
    public static VmcServer Listen(string path, VmcLimits limits, ILogger log, Func<Socket, string?>? admitPeer = null)
    {
        limits.Validate();
        if (File.Exists(path) || Directory.Exists(path))
        {
            if (Directory.Exists(path)) throw new IOException($"{path} is a directory; give --socket a file path");
            File.Delete(path);
        }
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            s.Bind(new UnixDomainSocketEndPoint(path));
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            s.Listen(16);
        }
        catch { s.Dispose(); throw; }
        return new VmcServer(s, path, limits, log, admitPeer);
    }

    /// <summary>Serves on an inherited, already listening socket fd (systemd-style activation).</summary>
    public static VmcServer FromFd(int fd, VmcLimits limits, ILogger log, Func<Socket, string?>? admitPeer = null)
    {
        limits.Validate();
        var s = new Socket(new SafeSocketHandle(fd, ownsHandle: true));
        if (s.AddressFamily != AddressFamily.Unix || s.SocketType != SocketType.Stream)
            throw new IOException($"fd {fd} is not a unix stream socket");
        return new VmcServer(s, null, limits, log, admitPeer);
    }

    public int ConnectionCount { get { lock (_lock) return _connections.Count; } }

    /// <summary>Snapshot of the live connections (tests, statistics).</summary>
    public FrontEndConnection[] Connections { get { lock (_lock) return _connections.Select(c => c.Connection).ToArray(); } }

    public void Start()
    {
        _acceptThread = new Thread(AcceptLoop) { IsBackground = true, Name = "vmcd-accept" };
        _acceptThread.Start();
    }

    private void AcceptLoop()
    {
        while (!_stopped)
        {
            Socket client;
            try { client = _listener.AcceptAsync(_stopAccept.Token).AsTask().GetAwaiter().GetResult(); }
            catch (Exception) when (_stopped) { return; }
            catch (SocketException e) { _log.Error("accept failed: {Error}", e.Message); Thread.Sleep(100); continue; }
            catch (ObjectDisposedException) { return; }
            string? refusal = _admitPeer != null ? _admitPeer(client) : PeerAllowed(client, out uint uid) ? null : $"uid {uid}: only uid {OwnUid} or root may connect";
            if (refusal != null)
            {
                _log.Error("refused a front-end: {Reason}", refusal);
                client.Dispose();
                continue;
            }
            string name = $"vm{Interlocked.Increment(ref _next)}";
            var conn = new FrontEndConnection((int)client.Handle, _limits, _log, name);
            var t = new Thread(() => Serve(client, conn)) { IsBackground = true, Name = $"vmcd-{name}" };
            lock (_lock) _connections.Add((client, conn, t));
            t.Start();
        }
    }

    private void Serve(Socket client, FrontEndConnection conn)
    {
        try { conn.Run(); }
        finally
        {
            conn.Dispose();
            lock (_lock) _connections.RemoveAll(c => c.Connection == conn);
            client.Dispose();
        }
    }

    private static readonly uint OwnUid = Interop.LibC.GetUid();

    private static bool PeerAllowed(Socket s, out uint uid)
    {
        Span<byte> cred = stackalloc byte[12];   // struct ucred { pid_t pid; uid_t uid; gid_t gid; }
        uid = uint.MaxValue;
        try
        {
            if (s.GetRawSocketOption(Interop.LibC.SOL_SOCKET, Interop.LibC.SO_PEERCRED, cred) < 12) return false;
        }
        catch (SocketException) { return false; }
        uid = BitConverter.ToUInt32(cred[4..]);
        return uid == 0 || uid == OwnUid;
    }

    public void Stop()
    {
        if (_stopped) return;
        _stopped = true;
        _stopAccept.Cancel();
        try { _listener.Dispose(); } catch (Exception) { }
        (Socket Socket, FrontEndConnection Connection, Thread Thread)[] all;
        lock (_lock) all = _connections.ToArray();
        foreach (var c in all)
        {
            c.Connection.RequestStop();
            try { c.Socket.Shutdown(SocketShutdown.Both); } catch (Exception) { }
        }
        foreach (var c in all) c.Thread.Join(TimeSpan.FromSeconds(5));
        _acceptThread?.Join(TimeSpan.FromSeconds(5));
        if (_path != null) try { File.Delete(_path); } catch (IOException) { }
    }

    public void Dispose() => Stop();
}
