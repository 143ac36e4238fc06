using System.Globalization;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using static Tmds.Linux.LibC;

namespace Vmcd.Access;

/// <summary>
/// Who may connect as a front-end: root, vmcd's own effective uid, and the users and groups named
/// with --allow-uid / --allow-gid. A front-end's groups are its primary gid (SO_PEERCRED) and its
/// supplementary groups (SO_PEERGROUPS), as the kernel recorded them when it connected. Under
/// systemd the socket unit's SocketGroup=/SocketMode= decide who can reach the socket at all; this
/// rule is the second check, made on the connected peer.
/// </summary>
public sealed class PeerPolicy
{
    private readonly uint _ownUid;
    private readonly HashSet<uint> _uids;
    private readonly HashSet<uint> _gids;

    private PeerPolicy(uint ownUid, HashSet<uint> uids, HashSet<uint> gids)
    {
        _ownUid = ownUid;
        _uids = uids;
        _gids = gids;
    }

    /// <summary>Resolves names through /etc/passwd and /etc/group (numeric ids need no lookup).</summary>
    public static bool TryCreate(IEnumerable<string> users, IEnumerable<string> groups, out PeerPolicy policy, out string? error)
    {
        policy = null!;
        var uids = new HashSet<uint>();
        var gids = new HashSet<uint>();
        foreach (string u in users)
        {
            if (!TryResolve(u, "/etc/passwd", out uint id)) { error = $"--allow-uid {u}: no such user in /etc/passwd (give the numeric uid)"; return false; }
            uids.Add(id);
        }
        foreach (string g in groups)
        {
            if (!TryResolve(g, "/etc/group", out uint id)) { error = $"--allow-gid {g}: no such group in /etc/group (give the numeric gid)"; return false; }
            gids.Add(id);
        }
        error = null;
        policy = new PeerPolicy(geteuid(), uids, gids);
        return true;
    }

    /// <summary>What the startup line says about who may connect.</summary>
    public string Describe()
    {
        var parts = new List<string> { "root" };
        parts.AddRange(_uids.Append(_ownUid).Where(u => u != 0).Order().Select(u => $"uid {u}"));
        parts.AddRange(_gids.Order().Select(g => $"gid {g}"));
        return string.Join(", ", parts.Distinct());
    }

    /// <summary>Null when the connected peer may be served; otherwise why not, for the log.</summary>
    public string? Check(Socket peer)
    {
        Span<byte> cred = stackalloc byte[12];    // struct ucred { pid_t pid; uid_t uid; gid_t gid; }: the same on every Linux, native byte order
        try
        {
            if (peer.GetRawSocketOption(SOL_SOCKET, SO_PEERCRED, cred) < cred.Length) return "the kernel gave no peer credentials";
        }
        catch (SocketException e) { return $"reading its credentials failed ({e.Message})"; }
        uint pid = MemoryMarshal.Read<uint>(cred);
        uint uid = MemoryMarshal.Read<uint>(cred[4..]);
        uint gid = MemoryMarshal.Read<uint>(cred[8..]);
        if (uid == 0 || uid == _ownUid || _uids.Contains(uid) || _gids.Contains(gid)) return null;
        if (_gids.Count > 0)
        {
            Span<byte> groups = stackalloc byte[4 * 256];
            int len;
            try { len = peer.GetRawSocketOption(SOL_SOCKET, SO_PEERGROUPS, groups); }
            catch (SocketException) { len = 0; }     // more than 256 groups (ERANGE): judged by the primary gid only
            for (int i = 0; i + 4 <= len; i += 4)
                if (_gids.Contains(MemoryMarshal.Read<uint>(groups[i..]))) return null;
        }
        return $"pid {pid} runs as uid {uid} gid {gid}; allowed are {Describe()} (vmcd --allow-uid / --allow-gid)";
    }

    private static bool TryResolve(string text, string database, out uint id)
    {
        if (uint.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out id)) return true;
        try
        {
            foreach (string line in File.ReadLines(database))
            {
                string[] f = line.Split(':');
                if (f.Length > 2 && f[0] == text && uint.TryParse(f[2], NumberStyles.None, CultureInfo.InvariantCulture, out id)) return true;
            }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        id = 0;
        return false;
    }
}
