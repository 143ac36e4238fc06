namespace Vmcd.Systemd;

/// <summary>
/// systemd socket activation (sd_listen_fds without libsystemd): the service manager passes
/// listening sockets from fd 3 on and says so in LISTEN_FDS, for the process LISTEN_PID.
/// </summary>
public static class SocketActivation
{
    public const int FirstFd = 3;

    /// <summary>
    /// The passed listening fd, or null when vmcd was not socket-activated (no LISTEN_FDS, or they
    /// were meant for another process). The LISTEN_* variables are removed either way.
    /// <paramref name="error"/> is set when they are for us but unusable (vmcd serves one socket).
    /// </summary>
    public static int? TakeListenFd(out string? error)
    {
        error = null;
        string? pid = Environment.GetEnvironmentVariable("LISTEN_PID");
        string? fds = Environment.GetEnvironmentVariable("LISTEN_FDS");
        string? names = Environment.GetEnvironmentVariable("LISTEN_FDNAMES");
        foreach (string v in (string[])["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"]) Environment.SetEnvironmentVariable(v, null);
        if (fds == null || pid == null || !int.TryParse(pid, out int p) || p != Environment.ProcessId) return null;
        if (!int.TryParse(fds, out int n) || n < 1)
        {
            error = $"LISTEN_FDS={fds} passes no socket";
            return null;
        }
        if (n != 1)
        {
            error = $"LISTEN_FDS={n} (names {names ?? "unset"}): vmcd serves exactly one socket; give the socket unit one ListenStream=";
            return null;
        }
        return FirstFd;
    }
}
