using System.Net.Sockets;
using System.Text;
using Serilog;
using VmcBackend.Control.Server;
using VmcBackend.Engine;
using VmcBackend.Transport.Connection;
using VmcBackend.Transport.Server;
using Vmcd.Cli;
using Vmcd.Systemd;
using Tmds.Linux;
using static Tmds.Linux.LibC;

namespace Vmcd.Listening;

/// <summary>
/// The one place vmcd creates its server: on --socket-path, on --fd, or on the socket systemd
/// passed (LISTEN_FDS). Each way that cannot work is one error line saying what to do instead.
/// </summary>
public static class ServerStartup
{
    /// <summary>Longest unix socket path (sun_path is 108 bytes with the terminating NUL).</summary>
    public const int MaxSocketPath = 107;

    /// <param name="connections">Told about each connection (the control plane).</param>
    public static VmcServer? Open(VmcdSettings settings, ILogger log, IConnectionListener? connections, out string where)
    {
        int? activated = SocketActivation.TakeListenFd(out string? activationError);
        var options = new VmcServerOptions { AdmitPeer = settings.Peers.Check, Connections = connections };
        if (settings.SocketPath != null) return OpenPath(settings, options, log, where = settings.SocketPath);
        if (settings.Fd is int fd) return OpenFd(settings, options, fd, log, where = $"fd {fd}");
        where = $"fd {SocketActivation.FirstFd} (socket activation)";
        if (activationError != null) { log.Error("cannot serve the socket the service manager passed: {Error}", activationError); return null; }
        if (activated is int afd) return OpenFd(settings, options, afd, log, where);
        log.Error("no socket to serve: give --socket-path PATH or --fd N, or start vmcd through vmcd.socket (see vmcd --help)");
        return null;
    }

    private static VmcServer? OpenPath(VmcdSettings settings, VmcServerOptions options, ILogger log, string path)
    {
        if (Encoding.UTF8.GetByteCount(path) > MaxSocketPath)
        {
            log.Error("cannot listen on {Path}: a unix socket path has at most {Max} bytes; choose a shorter --socket-path", path, MaxSocketPath);
            return null;
        }
        string dir = Path.GetDirectoryName(Path.GetFullPath(path)) ?? "/";
        if (!Directory.Exists(dir))
        {
            log.Error("cannot listen on {Path}: directory {Dir} does not exist; create it (mkdir -p {Dir}) or choose another --socket-path", path, dir, dir);
            return null;
        }
        try { return VmcServer.Listen(path, VmcEngine.Factory(settings.Limits, log, faults: settings.Faults), log, options); }
        catch (Exception e) when (e is IOException or SocketException or UnauthorizedAccessException)
        {
            log.Error("cannot listen on {Path}: {Error}; check that {Dir} is writable for vmcd, or pass a listening socket with --fd", path, e.Message, dir);
            return null;
        }
    }

    private static VmcServer? OpenFd(VmcdSettings settings, VmcServerOptions options, int fd, ILogger log, string where)
    {
        string? problem = CheckListeningUnixSocket(fd);
        if (problem != null)
        {
            log.Error("cannot serve {Where}: {Problem}; pass a listening unix stream socket", where, problem);
            return null;
        }
        try { return VmcServer.FromFd(fd, VmcEngine.Factory(settings.Limits, log, faults: settings.Faults), log, options); }
        catch (Exception e) when (e is IOException or SocketException)
        {
            log.Error("cannot serve {Where}: {Error}", where, e.Message);
            return null;
        }
    }

    /// <summary>
    /// The control socket for vmcctl (<see cref="VmcdSettings.ControlSocket"/>), or null when there is
    /// none; <paramref name="failed"/> when it was asked for and cannot be created (logged: what to do).
    /// </summary>
    public static ControlServer? OpenControl(VmcdSettings settings, VmRegistry registry, ILogger log, string dataSocket, out bool failed)
    {
        failed = false;
        if (settings.ControlSocket is not { } path) return null;
        if (Encoding.UTF8.GetByteCount(path) > MaxSocketPath)
        {
            log.Error("cannot create the control socket {Path}: a unix socket path has at most {Max} bytes; give a shorter --control PATH (or --control none)", path, MaxSocketPath);
            failed = true;
            return null;
        }
        try { return ControlServer.Listen(path, registry, log, settings.Peers.Check, dataSocket); }
        catch (Exception e) when (e is IOException or SocketException or UnauthorizedAccessException)
        {
            log.Error("cannot create the control socket {Path}: {Error}; give another --control PATH (or --control none)", path, e.Message);
            failed = true;
            return null;
        }
    }

    /// <summary>Null when <paramref name="fd"/> is a listening AF_UNIX stream socket, else what it is not.</summary>
    private static unsafe string? CheckListeningUnixSocket(int fd)
    {
        int domain = 0, type = 0, listening = 0;
        if (!GetIntOption(fd, SO_DOMAIN, &domain, out int errno))
            return errno == EBADF ? "it is not an open file descriptor" : errno == ENOTSOCK ? "it is not a socket" : $"getsockopt failed (errno {errno})";
        if (domain != AF_UNIX) return $"it is not a unix socket (address family {domain})";
        if (!GetIntOption(fd, SO_TYPE, &type, out errno) || type != SOCK_STREAM) return "it is not a stream socket";
        if (!GetIntOption(fd, SO_ACCEPTCONN, &listening, out errno) || listening == 0) return "it is not listening (call listen() before passing it)";
        return null;
    }

    private static unsafe bool GetIntOption(int fd, int option, int* value, out int errno)
    {
        socklen_t len = sizeof(int);
        bool ok = getsockopt(fd, SOL_SOCKET, option, value, &len) == 0;
        errno = ok ? 0 : Tmds.Linux.LibC.errno;
        return ok;
    }
}
