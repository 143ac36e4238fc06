using System.Net.Sockets;
using System.Text;
using Serilog;

namespace Vmcd.Systemd;

/// <summary>
/// The service manager's readiness protocol (sd_notify, without libsystemd): one datagram per state
/// change to the AF_UNIX socket named by NOTIFY_SOCKET, a path or "@name" for an abstract socket.
/// Without NOTIFY_SOCKET (not started by a service manager) every call does nothing.
/// </summary>
public sealed class ServiceManager : IDisposable
{
    private readonly Socket? _socket;
    private readonly UnixDomainSocketEndPoint? _target;
    private readonly ILogger _log;

    private ServiceManager(Socket? socket, UnixDomainSocketEndPoint? target, ILogger log)
    {
        _socket = socket;
        _target = target;
        _log = log;
    }

    /// <summary>Reads NOTIFY_SOCKET and removes it from the environment (nothing vmcd starts should inherit it).</summary>
    public static ServiceManager FromEnvironment(ILogger log)
    {
        string? name = Environment.GetEnvironmentVariable("NOTIFY_SOCKET");
        Environment.SetEnvironmentVariable("NOTIFY_SOCKET", null);
        if (string.IsNullOrEmpty(name)) return new ServiceManager(null, null, log);
        if (name[0] != '/' && name[0] != '@')
        {
            log.Warning("NOTIFY_SOCKET={Name} is neither an absolute path nor an @abstract name: not notifying the service manager", name);
            return new ServiceManager(null, null, log);
        }
        // An abstract socket address is a NUL followed by the name; .NET takes it in that form.
        string address = name[0] == '@' ? "\0" + name[1..] : name;
        if (Encoding.UTF8.GetByteCount(address) > 107)
        {
            log.Warning("NOTIFY_SOCKET={Name} is longer than a unix socket address: not notifying the service manager", name);
            return new ServiceManager(null, null, log);
        }
        return new ServiceManager(new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified),
            new UnixDomainSocketEndPoint(address), log);
    }

    /// <summary>Sends newline-separated assignments such as "READY=1\nSTATUS=...". Failures are logged once per call, never thrown.</summary>
    public void Notify(string state)
    {
        if (_socket == null) return;
        try { _socket.SendTo(Encoding.UTF8.GetBytes(state), SocketFlags.None, _target!); }
        catch (SocketException e)
        {
            _log.Warning("could not notify the service manager ({State}): {Error}", state.Split('\n')[0], e.Message);
        }
    }

    public void Dispose() => _socket?.Dispose();
}
